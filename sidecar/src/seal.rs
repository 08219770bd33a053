//! Sealing: XChaCha20-Poly1305 under a list of keys, with explicit associated data that
//! binds each sealed value to its purpose (a session id to its subject, a facade grant to its
//! kind), so a value sealed for one purpose never opens for another. Every replica holding the
//! same keys opens what any other sealed.
//!
//! Sealed form: base64url without padding of `version (1) | nonce (24) | ciphertext + tag`,
//! which is visible ASCII (usable as a session id, a cookie value or a URL parameter).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longer sealed values are refused before any decoding: nothing the gateway seals comes near
/// this.
pub const MAX_SEALED_LEN: usize = 4096;

/// Seals with the first key; opens with any, so a key rotation is "prepend the new key, remove
/// the old one once clients have moved on". Tried in turn, which is cheap for the two or three
/// keys a rotation needs.
#[derive(Clone)]
pub struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
}

/// A sealed value that does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not in the gateway's sealed format")]
    Malformed,
    #[error("does not open: altered, sealed for another purpose, or with a retired key")]
    Rejected,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl Sealer {
    /// `keys[0]` seals, all open.
    ///
    /// # Panics
    /// If `keys` is empty: the callers build it from a parsed keys file or one random key,
    /// which never are.
    pub fn new(keys: &[[u8; 32]]) -> Self {
        assert!(!keys.is_empty(), "a Sealer needs at least one key");
        let ciphers = keys
            .iter()
            .map(|key| XChaCha20Poly1305::new(key.into()))
            .collect();
        Self { ciphers }
    }

    /// One random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::new(&[key])
    }

    /// How many keys open (the first of which seals).
    pub fn key_count(&self) -> usize {
        self.ciphers.len()
    }

    /// `plaintext` sealed for `associated_data`, which [`Sealer::open`] must be given again.
    pub fn seal(&self, associated_data: &[u8], plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad(associated_data),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext inside `sealed`, if it was sealed for `associated_data` under one of the
    /// keys.
    pub fn open(&self, associated_data: &[u8], sealed: &str) -> Result<String, SealError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(SealError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Malformed)?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(SealError::Malformed);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = aad(associated_data);
        let plain = self
            .ciphers
            .iter()
            .find_map(|cipher| {
                cipher
                    .decrypt(
                        XNonce::from_slice(nonce),
                        Payload {
                            msg: ciphertext,
                            aad: &aad,
                        },
                    )
                    .ok()
            })
            .ok_or(SealError::Rejected)?;
        // Only this code seals, and it seals UTF-8; anything else means a key leaked.
        String::from_utf8(plain).map_err(|_| SealError::Rejected)
    }
}

/// The version is authenticated too, so a later format cannot be confused with this one.
fn aad(associated_data: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + associated_data.len());
    aad.push(VERSION);
    aad.extend_from_slice(associated_data);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_for_the_same_associated_data() {
        let sealer = Sealer::new(&[[1; 32]]);
        let sealed = sealer.seal(b"purpose-a", "value");
        assert_eq!(sealer.open(b"purpose-a", &sealed).unwrap(), "value");
        assert_eq!(sealer.open(b"purpose-b", &sealed), Err(SealError::Rejected));
        assert_eq!(sealer.open(b"", &sealed), Err(SealError::Rejected));
        assert_eq!(format!("{sealer:?}"), "Sealer { keys: 1 }");
        // Error texts name no purpose and no key.
        assert!(!SealError::Rejected.to_string().contains("purpose-a"));
    }
}
