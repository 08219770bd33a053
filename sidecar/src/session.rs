//! Binds an upstream `Mcp-Session-Id` to the subject that opened it, without shared state.
//!
//! The client never sees the upstream session id: it gets the id sealed ([`Sealer`]) with the
//! subject as associated data, so an id presented by another subject, or altered, or sealed
//! with a key no replica holds any more, fails to open. Every replica that holds the same keys
//! opens every other replica's ids. The sealed form is visible ASCII, as MCP requires of
//! session ids.

pub use mcp_gateway_contract::keys_file::{KeysFileError, parse_keys};

pub use crate::seal::MAX_SEALED_LEN;
use crate::seal::{SealError, Sealer};

/// Seals and opens session ids (and the legacy SSE message query) for a subject. The first key
/// seals; every key opens.
#[derive(Clone)]
pub struct SessionSealer {
    sealer: Sealer,
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
            .field("keys", &self.sealer.key_count())
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
        Self {
            sealer: Sealer::new(&keys),
        }
    }

    /// One random key: right for a single replica, whose restart ends every session anyway.
    pub fn random() -> Self {
        Self {
            sealer: Sealer::random(),
        }
    }

    /// Parses a keys file (see [`parse_keys`]).
    pub fn from_keys_file_text(text: &str) -> Result<Self, KeysFileError> {
        Ok(Self::new(parse_keys(text)?))
    }

    /// The id to hand the client in place of `upstream_session_id`.
    pub fn seal(&self, subject: &str, upstream_session_id: &str) -> String {
        self.sealer.seal(subject.as_bytes(), upstream_session_id)
    }

    /// The upstream session id inside `sealed`, if `subject` is the one it was sealed for.
    pub fn open(&self, subject: &str, sealed: &str) -> Result<String, SessionError> {
        self.sealer
            .open(subject.as_bytes(), sealed)
            .map_err(|e| match e {
                SealError::Malformed => SessionError::Malformed,
                SealError::Rejected => SessionError::Rejected,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
