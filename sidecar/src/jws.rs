//! Ed25519 JWS signing with keys derived from shared secrets: every replica given the same
//! secrets signs alike and publishes the same key set, so nothing needs to be stored. One
//! purpose string per use keeps the keys of different uses apart.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use hkdf::Hkdf;
use serde_json::json;
use sha2::{Digest, Sha256};

/// 32 bytes for `purpose`, derived from `secret` (HKDF-SHA256).
pub fn derive(secret: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret)
        .expand(purpose.as_bytes(), &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// Signs with the first secret's key; publishes every secret's public key.
pub struct Ed25519Signer {
    signing: SigningKey,
    kid: String,
    /// The public keys of every secret, as a JWKS document.
    jwks: String,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("kid", &self.kid)
            .finish()
    }
}

fn kid(key: &SigningKey) -> String {
    let digest = Sha256::digest(key.verifying_key().as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

impl Ed25519Signer {
    pub fn new(secrets: &[[u8; 32]], purpose: &str) -> Self {
        assert!(!secrets.is_empty(), "at least one signing secret");
        let signers: Vec<SigningKey> = secrets
            .iter()
            .map(|s| SigningKey::from_bytes(&derive(s, purpose)))
            .collect();
        let keys: Vec<_> = signers
            .iter()
            .map(|k| {
                json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                       "kid": kid(k), "x": URL_SAFE_NO_PAD.encode(k.verifying_key().as_bytes())})
            })
            .collect();
        let signing = signers.into_iter().next().expect("checked non-empty");
        Self {
            kid: kid(&signing),
            signing,
            jwks: json!({ "keys": keys }).to_string(),
        }
    }

    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS (`EdDSA`) of `claims` with header `typ`.
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signing.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_give_different_keys_and_every_key_is_published() {
        assert_ne!(derive(&[1; 32], "a"), derive(&[1; 32], "b"));
        let a = Ed25519Signer::new(&[[1; 32], [2; 32]], "a");
        let b = Ed25519Signer::new(&[[1; 32], [2; 32]], "b");
        assert_ne!(a.kid(), b.kid());
        let jwks: serde_json::Value = serde_json::from_str(a.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], a.kid());
        let header = a
            .sign("JWT", &json!({}))
            .split('.')
            .next()
            .unwrap()
            .to_string();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "typ": "JWT", "kid": a.kid()})
        );
    }
}
