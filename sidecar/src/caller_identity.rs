//! The caller's identity for the Function: a short-lived JWT the gateway signs, sent in a
//! header of its own, so a tool can know who calls it without ever seeing the client's
//! token. The signing key is derived from the session keys file every replica already shares
//! (its own HKDF purpose), so replicas sign alike, a rotation of that file rotates this key
//! too, and no new Secret is needed. The public keys are published at
//! `<prefix>/caller-identity/jwks`.

use serde_json::{Value, json};

use crate::auth::Principal;
use crate::jws::Ed25519Signer;
use crate::session::{KeysFileError, parse_keys};

const PURPOSE: &str = "mcp-gateway caller identity sign v1";
/// The JWS `typ`: not an access token, and not to be taken for one.
pub const TYP: &str = "mcp-caller+jwt";

/// The caller-identity signing keys.
#[derive(Debug)]
pub struct CallerKeys(Ed25519Signer);

impl CallerKeys {
    pub fn new(secrets: &[[u8; 32]]) -> Self {
        Self(Ed25519Signer::new(secrets, PURPOSE))
    }

    /// From the session keys file's text.
    pub fn from_file_text(text: &str) -> Result<Self, KeysFileError> {
        Ok(Self::new(&parse_keys(text)?))
    }

    /// Keys of this process alone (no session keys file: local runs).
    pub fn random() -> Self {
        Self::new(&[rand::random()])
    }

    pub fn jwks(&self) -> &str {
        self.0.jwks()
    }

    /// The assertion for `caller`, for `audience` (the upstream's origin), valid `ttl`
    /// seconds from `now`.
    pub fn assert(
        &self,
        caller: &Principal,
        issuer: &str,
        audience: &str,
        now: u64,
        ttl: u64,
    ) -> String {
        self.0
            .sign(TYP, &claims(caller, issuer, audience, now, ttl))
    }
}

fn claims(caller: &Principal, issuer: &str, audience: &str, now: u64, ttl: u64) -> Value {
    // `scopes` also holds the roles (they meet `requiredScopes` for app-only tokens); `scp`
    // says the delegated scopes alone. A scope named like a role is left out: less, not more.
    let scp: Vec<&str> = caller
        .scopes
        .iter()
        .filter(|s| !caller.roles.contains(s))
        .map(String::as_str)
        .collect();
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": caller.subject,
        "iat": now,
        "nbf": now,
        // Never past the client's own token.
        "exp": (now + ttl).min(caller.expires_at),
        "scp": scp.join(" "),
        "roles": caller.roles,
    });
    for (name, value) in [
        ("tid", &caller.tenant),
        ("oid", &caller.oid),
        ("name", &caller.name),
        ("azp", &caller.client_id),
    ] {
        if let Some(value) = value {
            claims[name] = Value::String(value.clone());
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn the_assertion_names_the_caller_and_nothing_of_its_token() {
        let caller = Principal {
            subject: "tid-1/oid-1".into(),
            client_id: Some("aebc6443-996d-45c2-90f0-388ff96faa56".into()),
            tenant: Some("tid-1".into()),
            oid: Some("oid-1".into()),
            name: Some("Ada".into()),
            scopes: vec!["mcp.tools".into(), "mcp.admin".into(), "Tools.Admin".into()],
            roles: vec!["Tools.Admin".into()],
            groups: vec!["g".into()],
            groups_overage: false,
            expires_at: 5000,
        };
        let keys = CallerKeys::new(&[[7; 32]]);
        let jwt = keys.assert(
            &caller,
            "https://mcp.example.com/weather",
            "https://fn.example",
            1000,
            300,
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["typ"], TYP);
        assert_eq!(
            claims,
            json!({"iss": "https://mcp.example.com/weather", "aud": "https://fn.example",
                   "sub": "tid-1/oid-1", "iat": 1000, "nbf": 1000, "exp": 1300,
                   "scp": "mcp.tools mcp.admin", "roles": ["Tools.Admin"], "tid": "tid-1",
                   "oid": "oid-1", "name": "Ada", "azp": "aebc6443-996d-45c2-90f0-388ff96faa56"})
        );
        // An assertion never outlives the client's token.
        let short = Principal {
            expires_at: 1100,
            ..caller.clone()
        };
        let jwt = keys.assert(&short, "https://i", "https://a", 1000, 300);
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["exp"], 1100);
        // Not the facade's keys, though derived from the same kind of file.
        let facade = crate::facade::keys::FacadeKeys::new(&[[7; 32]]);
        assert_ne!(facade.jwks(), keys.jwks());
    }
}
