//! Binds an upstream `Mcp-Session-Id` to the subject that opened it, without shared state.
//!
//! The client never sees the upstream session id: it gets the id sealed (XChaCha20-Poly1305)
//! with the subject as associated data, so an id presented by another subject, or altered, or
//! sealed with a key no replica holds any more, fails to open. Every replica that holds the same
//! keys opens every other replica's ids.
//!
//! Sealed form: base64url without padding of `version (1) | nonce (24) | ciphertext + tag`,
//! which is visible ASCII, as MCP requires of session ids.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
pub use mcp_gateway_contract::keys_file::{KeysFileError, parse_keys};
use rand::RngCore;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longer sealed ids are refused before any decoding: no real upstream id comes near this.
pub const MAX_SEALED_LEN: usize = 4096;

/// Seals and opens session ids. The first key seals; every key opens, so a key rotation is
/// "prepend the new key, remove the old one once clients have moved on". Tried in turn, which is
/// cheap for the two or three keys a rotation needs.
#[derive(Clone)]
pub struct SessionSealer {
    ciphers: Vec<XChaCha20Poly1305>,
}

/// A session id the client sent that does not open. Both mean the same to the client (the
/// session is not one it may use); they differ in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session id is not in the gateway's sealed format")]
    Malformed,
    #[error(
        "session id does not open: altered, issued to another subject, or sealed with a retired key"
    )]
    Rejected,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSealer")
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl SessionSealer {
    /// `keys[0]` seals, all open.
    ///
    /// # Panics
    /// If `keys` is empty: the callers build it from [`Self::from_keys_file_text`] or
    /// [`Self::random`], which never are.
    pub fn new(keys: Vec<[u8; 32]>) -> Self {
        assert!(!keys.is_empty(), "a SessionSealer needs at least one key");
        let ciphers = keys
            .iter()
            .map(|key| XChaCha20Poly1305::new(key.into()))
            .collect();
        Self { ciphers }
    }

    /// One random key: right for a single replica, whose restart ends every session anyway.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::new(vec![key])
    }

    /// Parses a keys file (see [`parse_keys`]).
    pub fn from_keys_file_text(text: &str) -> Result<Self, KeysFileError> {
        Ok(Self::new(parse_keys(text)?))
    }

    /// The id to hand the client in place of `upstream_session_id`.
    pub fn seal(&self, subject: &str, upstream_session_id: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: upstream_session_id.as_bytes(),
                    aad: &aad(subject),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The upstream session id inside `sealed`, if `subject` is the one it was sealed for.
    pub fn open(&self, subject: &str, sealed: &str) -> Result<String, SessionError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(SessionError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SessionError::Malformed)?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(SessionError::Malformed);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SessionError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = aad(subject);
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
            .ok_or(SessionError::Rejected)?;
        // Only this code seals, and it seals UTF-8; anything else means a key leaked.
        String::from_utf8(plain).map_err(|_| SessionError::Rejected)
    }
}

/// The version is authenticated too, so a later format cannot be confused with this one.
fn aad(subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + subject.len());
    aad.push(VERSION);
    aad.extend_from_slice(subject.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "CfDJ8Kx0uVh1vQ2_encrypted-client-state+/=";

    fn key(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn round_trip() {
        let sealer = SessionSealer::new(vec![key(1)]);
        let sealed = sealer.seal("tid/oid-alice", UPSTREAM);
        assert_eq!(sealer.open("tid/oid-alice", &sealed).unwrap(), UPSTREAM);
        assert!(!sealed.contains(UPSTREAM));
        // A fresh nonce each time: the same id seals differently.
        assert_ne!(sealed, sealer.seal("tid/oid-alice", UPSTREAM));
        // An empty upstream id and an empty subject (anonymous mode) work too.
        assert_eq!(sealer.open("", &sealer.seal("", "")).unwrap(), "");
    }

    #[test]
    fn another_subject_is_refused() {
        let sealer = SessionSealer::new(vec![key(1)]);
        let sealed = sealer.seal("alice", UPSTREAM);
        assert_eq!(sealer.open("bob", &sealed), Err(SessionError::Rejected));
        assert_eq!(sealer.open("alice ", &sealed), Err(SessionError::Rejected));
        assert_eq!(sealer.open("", &sealed), Err(SessionError::Rejected));
    }

    #[test]
    fn any_tampered_byte_is_refused() {
        let sealer = SessionSealer::new(vec![key(1)]);
        let bytes = URL_SAFE_NO_PAD
            .decode(sealer.seal("alice", UPSTREAM))
            .unwrap();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            let result = sealer.open("alice", &URL_SAFE_NO_PAD.encode(&tampered));
            assert!(result.is_err(), "flipping byte {i} went unnoticed");
        }
        // Truncated, or with a byte appended.
        let sealed = sealer.seal("alice", UPSTREAM);
        assert!(sealer.open("alice", &sealed[..sealed.len() - 1]).is_err());
        assert!(sealer.open("alice", &format!("{sealed}A")).is_err());
    }

    #[test]
    fn previous_key_opens_after_rotation_and_new_key_seals() {
        let old = SessionSealer::new(vec![key(1)]);
        let rotated = SessionSealer::new(vec![key(2), key(1)]);
        let new_only = SessionSealer::new(vec![key(2)]);

        let sealed_before = old.seal("alice", UPSTREAM);
        assert_eq!(rotated.open("alice", &sealed_before).unwrap(), UPSTREAM);

        let sealed_after = rotated.seal("alice", UPSTREAM);
        assert_eq!(new_only.open("alice", &sealed_after).unwrap(), UPSTREAM);
        assert_eq!(
            old.open("alice", &sealed_after),
            Err(SessionError::Rejected)
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let a = SessionSealer::new(vec![key(1)]);
        let b = SessionSealer::new(vec![key(2), key(3)]);
        assert_eq!(
            b.open("alice", &a.seal("alice", UPSTREAM)),
            Err(SessionError::Rejected)
        );
        assert_eq!(
            SessionSealer::random().open("alice", &SessionSealer::random().seal("alice", UPSTREAM)),
            Err(SessionError::Rejected)
        );
    }

    #[test]
    fn garbage_empty_and_oversized_are_malformed() {
        let sealer = SessionSealer::new(vec![key(1)]);
        for garbage in [
            "",
            "not base64!",
            "AQ",                               // version only
            &URL_SAFE_NO_PAD.encode([1u8; 40]), // too short for nonce + tag
            &URL_SAFE_NO_PAD.encode([2u8; 64]), // unknown version
            "AQID====",                         // padding is not part of the format
            &"A".repeat(MAX_SEALED_LEN + 1),
        ] {
            assert_eq!(
                sealer.open("alice", garbage),
                Err(SessionError::Malformed),
                "{garbage:.20}"
            );
        }
        // Long enough and well-formed, but not sealed by us.
        assert_eq!(
            sealer.open("alice", &URL_SAFE_NO_PAD.encode([1u8; 64])),
            Err(SessionError::Rejected)
        );
    }

    #[test]
    fn sealed_ids_are_visible_ascii_and_url_safe() {
        let sealer = SessionSealer::random();
        for len in 0..64 {
            let upstream: String = (0..len)
                .map(|i| char::from(b'!' + (i % 90) as u8))
                .collect();
            let sealed = sealer.seal("subject with spaces and ünïcode", &upstream);
            assert!(
                sealed
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{sealed}"
            );
            assert!(http::HeaderValue::from_str(&sealed).is_ok());
            assert_eq!(
                sealer
                    .open("subject with spaces and ünïcode", &sealed)
                    .unwrap(),
                upstream
            );
        }
    }

    #[test]
    fn keys_file_parses_keys_comments_and_blank_lines() {
        let k1 = base64::engine::general_purpose::STANDARD.encode(key(1));
        let k2 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key(2));
        let text = format!("# current\n{k1}\r\n\n   {k2}   # previous, retire after 2026-01\n");
        let sealer = SessionSealer::from_keys_file_text(&text).unwrap();
        assert_eq!(format!("{sealer:?}"), "SessionSealer { keys: 2 }");
        // The first key seals; the second opens.
        let sealed = sealer.seal("alice", UPSTREAM);
        assert!(
            SessionSealer::new(vec![key(1)])
                .open("alice", &sealed)
                .is_ok()
        );
        let old = SessionSealer::new(vec![key(2)]).seal("alice", UPSTREAM);
        assert_eq!(sealer.open("alice", &old).unwrap(), UPSTREAM);
    }

    #[test]
    fn keys_file_errors_reach_the_caller() {
        // The format's own tests (contract::keys_file) cover each mistake.
        assert_eq!(
            SessionSealer::from_keys_file_text("").unwrap_err(),
            KeysFileError::NoKeys
        );
    }
}
