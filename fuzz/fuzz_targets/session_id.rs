//! Sealed session ids (`session::SessionSealer`). Input, NUL-separated: subject, another
//! subject, upstream session id, a client-supplied sealed id, a mutation (position, XOR byte),
//! keys-file text.
//!
//! Invariants:
//! - a client-supplied id never opens under a key nothing was ever sealed with (a tag cannot be
//!   forged), and fails as `Malformed` or `Rejected`, never panics. (Under the key this target
//!   seals with, libFuzzer would soon replay ids it saw sealed, which is no forgery.)
//! - sealing then opening round-trips, for the sealing key and after a rotation that keeps it;
//! - a sealed id is visible ASCII (MCP's rule for session ids) and a valid header value;
//! - it never opens for another subject, nor after any change to its text, nor under a
//!   set of keys without the sealing key;
//! - a keys file either loads or fails with a message that contains none of its lines.

#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::fields;
use mcp_gateway_sidecar::session::{SessionError, SessionSealer};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 0, 6);
    let (subject, other, upstream, presented) = (text(f[0]), text(f[1]), text(f[2]), text(f[3]));
    let (mutation, keys_file) = (f[4], f[5]);

    let unused = SessionSealer::new(vec![[5u8; 32]]);
    match unused.open(&subject, &presented) {
        Ok(opened) => panic!("a presented id opened: {opened:?}"),
        Err(SessionError::Malformed | SessionError::Rejected) => {}
    }

    let sealer = SessionSealer::new(vec![[7u8; 32]]);
    let sealed = sealer.seal(&subject, &upstream);
    assert!(sealed.bytes().all(|b| b.is_ascii_graphic()), "{sealed:?}");
    assert!(HeaderValue::from_str(&sealed).is_ok());
    if sealed.len() <= 4096 {
        assert_eq!(
            sealer.open(&subject, &sealed).as_deref(),
            Ok(upstream.as_str())
        );
        let rotated = SessionSealer::new(vec![[8u8; 32], [7u8; 32]]);
        assert_eq!(
            rotated.open(&subject, &sealed).as_deref(),
            Ok(upstream.as_str())
        );
    }
    if other != subject {
        assert!(
            sealer.open(&other, &sealed).is_err(),
            "opened for another subject"
        );
    }
    assert!(
        SessionSealer::new(vec![[8u8; 32]])
            .open(&subject, &sealed)
            .is_err()
    );

    // Any change to the text: a flipped byte, a cut, an extension.
    let mut changed = sealed.clone().into_bytes();
    match mutation {
        [pos, x, ..] if *x != 0 => {
            let i = usize::from(*pos) % changed.len();
            changed[i] ^= x;
        }
        [n] => changed.truncate(changed.len().saturating_sub(usize::from(*n).max(1))),
        _ => changed.extend_from_slice(b"A"),
    }
    let changed = String::from_utf8_lossy(&changed).into_owned();
    if changed != sealed {
        assert!(
            sealer.open(&subject, &changed).is_err(),
            "opened an altered id {changed:?}"
        );
    }

    let keys_text = text(keys_file);
    if let Err(error) = SessionSealer::from_keys_file_text(&keys_text) {
        let message = error.to_string();
        for line in keys_text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            // What could be key material: a run of base64 characters.
            let base64ish = line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            if line.len() >= 8 && base64ish {
                assert!(!message.contains(line), "the error quotes key material");
            }
        }
    }
});
