//! The facade's keys, from one file of base64 32-byte secrets (the first is current): each
//! secret yields, through HKDF-SHA256, a sealing key (registrations, transactions, codes,
//! refresh tokens) and an Ed25519 signing key (access tokens). Every replica with the same
//! file seals, opens, signs and verifies alike: that is what makes the facade store-less.

use crate::jws::{Ed25519Signer, derive};
use crate::seal::Sealer;
use crate::session::{KeysFileError, parse_keys};

pub struct FacadeKeys {
    /// Seals with the current key, opens with any.
    pub sealer: Sealer,
    signer: Ed25519Signer,
}

impl std::fmt::Debug for FacadeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacadeKeys")
            .field("kid", &self.signer.kid())
            .finish()
    }
}

impl FacadeKeys {
    pub fn new(secrets: &[[u8; 32]]) -> Self {
        assert!(!secrets.is_empty(), "at least one facade key");
        let sealing: Vec<[u8; 32]> = secrets
            .iter()
            .map(|s| derive(s, "mcp-gateway facade seal v1"))
            .collect();
        Self {
            sealer: Sealer::new(&sealing),
            signer: Ed25519Signer::new(secrets, "mcp-gateway facade sign v1"),
        }
    }

    /// Reads the keys file (the session keys file's format).
    pub fn from_file_text(text: &str) -> Result<Self, KeysFileError> {
        Ok(Self::new(&parse_keys(text)?))
    }

    pub fn jwks(&self) -> &str {
        self.signer.jwks()
    }

    /// A compact JWS (`EdDSA`, `typ: at+jwt`) of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        self.signer.sign("at+jwt", claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    #[test]
    fn every_key_is_published_and_the_first_signs() {
        let keys = FacadeKeys::new(&[[1; 32], [2; 32]]);
        let jwks: serde_json::Value = serde_json::from_str(keys.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        let token = keys.sign(&json!({"sub": "a"}));
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
        assert_eq!(header["alg"], "EdDSA");
        // Sealing and signing keys differ from each other and from the secret.
        assert_ne!(derive(&[1; 32], "a"), derive(&[1; 32], "b"));
        // Another replica with the same secrets opens what this one sealed.
        let other = FacadeKeys::new(&[[1; 32], [2; 32]]);
        let sealed = keys.sealer.seal(b"aad", "hello");
        assert_eq!(other.sealer.open(b"aad", &sealed).unwrap(), "hello");
        assert_eq!(other.jwks(), keys.jwks());
    }
}
