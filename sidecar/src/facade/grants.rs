//! What the facade hands out instead of storing it: every registration, pending
//! authorization, authorization code and refresh token is its own state, sealed
//! (XChaCha20-Poly1305) under the facade key with a purpose tag as associated data, so one
//! kind can never be passed off as another and any replica opens any other's. Pure.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::seal::{MAX_SEALED_LEN, Sealer};

/// The kind of a sealed value; its tag is the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A dynamically registered client (its `client_id`).
    Client,
    /// A pending authorization, kept in the user's browser (cookie) during sign-in.
    Transaction,
    /// An authorization code.
    Code,
    /// A refresh token.
    Refresh,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Client => "mcp-gateway/facade/client",
            Kind::Transaction => "mcp-gateway/facade/transaction",
            Kind::Code => "mcp-gateway/facade/code",
            Kind::Refresh => "mcp-gateway/facade/refresh",
        }
    }
}

/// `None` when the sealed form would be longer than [`open`] accepts (found by fuzzing: a
/// `state` of control characters grows sixfold as JSON): handing out what can never open
/// would only fail later and less clearly.
pub fn seal<T: Serialize>(sealer: &Sealer, kind: Kind, value: &T) -> Option<String> {
    let json = serde_json::to_string(value).expect("grants always serialize");
    let sealed = sealer.seal(kind.tag().as_bytes(), &json);
    (sealed.len() <= MAX_SEALED_LEN).then_some(sealed)
}

/// `None` for anything altered, of another kind, or sealed under a retired key.
pub fn open<T: DeserializeOwned>(sealer: &Sealer, kind: Kind, sealed: &str) -> Option<T> {
    let json = sealer.open(kind.tag().as_bytes(), sealed).ok()?;
    serde_json::from_str(&json).ok()
}

/// A client registered through DCR: the `client_id` is this, sealed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Registration {
    #[serde(rename = "r")]
    pub redirect_uris: Vec<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(rename = "t")]
    pub issued_at: u64,
}

/// An authorization between `/authorize` and `/callback`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Transaction {
    /// The client, as `client_key` names it.
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub state: Option<String>,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    /// Random; the consent form echoes it (CSRF) and it is the `state` sent to the IdP.
    pub nonce: String,
    /// The facade's own PKCE verifier towards the IdP.
    pub idp_verifier: String,
    pub exp: u64,
}

/// An authorization code.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub subject: String,
    /// The user's app roles and tenant at sign-in, carried into the tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Unique per code: the replay check's key.
    pub jti: String,
    pub exp: u64,
}

/// A refresh token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Refresh {
    pub client_id: String,
    pub subject: String,
    pub scopes: Vec<String>,
    /// As at sign-in (the ID token's): a role removed in Entra stays until the user signs in
    /// again, at most `refreshTokenTtlSeconds` after the sign-in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When the user signed in at the IdP (unix seconds; 0 in tokens from before this field,
    /// which starts the clock at their next use). No refresh token of the sign-in outlives
    /// it by more than the refresh lifetime: a sign-in does not slide forever.
    #[serde(default)]
    pub signed_in_at: u64,
    /// Shared by every token rotated from one sign-in: a reused token revokes its family.
    pub family: String,
    pub jti: String,
    pub exp: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> Code {
        Code {
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".into(),
            scopes: vec!["mcp.tools".into()],
            subject: "alice".into(),
            roles: vec!["Weather.Admin".into()],
            tenant: None,
            jti: "j".into(),
            exp: 10,
        }
    }

    #[test]
    fn a_sealed_value_opens_only_as_its_own_kind() {
        let sealer = Sealer::new(&[[9; 32]]);
        let sealed = seal(&sealer, Kind::Code, &code()).unwrap();
        assert_eq!(open::<Code>(&sealer, Kind::Code, &sealed), Some(code()));
        assert_eq!(open::<Code>(&sealer, Kind::Refresh, &sealed), None);
        assert_eq!(open::<Code>(&sealer, Kind::Client, &sealed), None);
        assert!(!sealed.contains("alice"));
        // Tampering anywhere fails.
        let mut bytes = sealed.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open::<Code>(&sealer, Kind::Code, &String::from_utf8(bytes).unwrap()),
            None
        );
        // Too large to open again: not handed out at all.
        let huge = Code {
            subject: "\u{0}".repeat(1000),
            ..code()
        };
        assert_eq!(seal(&sealer, Kind::Code, &huge), None);
        // Another key does not open it.
        let other = Sealer::new(&[[8; 32]]);
        assert_eq!(open::<Code>(&other, Kind::Code, &sealed), None);
    }
}
