//! The facade's keys, from one file of base64 32-byte secrets (the first is current): each
//! secret yields, through HKDF-SHA256, a sealing key (registrations, transactions, codes,
//! refresh tokens) and an Ed25519 signing key (access tokens). Every replica with the same
//! file seals, opens, signs and verifies alike: that is what makes the facade store-less.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use hkdf::Hkdf;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::seal::Sealer;
use crate::session::{KeysFileError, parse_keys};

pub struct FacadeKeys {
    /// Seals with the current key, opens with any.
    pub sealer: Sealer,
    signing: SigningKey,
    kid: String,
    /// The public keys of every secret, as a JWKS document.
    jwks: String,
}

impl std::fmt::Debug for FacadeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacadeKeys")
            .field("kid", &self.kid)
            .finish()
    }
}

fn derive(secret: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret)
        .expand(purpose.as_bytes(), &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

fn kid(key: &SigningKey) -> String {
    let digest = Sha256::digest(key.verifying_key().as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

impl FacadeKeys {
    pub fn new(secrets: &[[u8; 32]]) -> Self {
        assert!(!secrets.is_empty(), "at least one facade key");
        let sealing: Vec<[u8; 32]> = secrets
            .iter()
            .map(|s| derive(s, "mcp-gateway facade seal v1"))
            .collect();
        let sealer = Sealer::new(&sealing);
        let signers: Vec<SigningKey> = secrets
            .iter()
            .map(|s| SigningKey::from_bytes(&derive(s, "mcp-gateway facade sign v1")))
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
            sealer,
            kid: kid(&signing),
            signing,
            jwks: json!({ "keys": keys }).to_string(),
        }
    }

    /// Reads the keys file (the session keys file's format).
    pub fn from_file_text(text: &str) -> Result<Self, KeysFileError> {
        Ok(Self::new(&parse_keys(text)?))
    }

    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A compact JWS (`EdDSA`, `typ: at+jwt`) of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid});
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
