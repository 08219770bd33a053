//! The `WWW-Authenticate` challenge (`auth::challenge`) with arbitrary resource-metadata URL
//! and scopes. Input: an error selector byte, then the URL and the scopes separated by NUL.
//!
//! Invariants: the value is a valid header value with no control characters at all (no CR/LF,
//! so no header injection); read back with an RFC 9110 auth-param parser it is exactly
//! `Bearer resource_metadata="…"[, scope="…"][, error="…", error_description="…"]`, each
//! quoted-string well formed and unescaping to the input minus its control characters (no
//! parameter injection through `"` or `\`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::fields;
use mcp_gateway_sidecar::auth::{AuthError, challenge, reason};

const ERRORS: [Option<AuthError>; 12] = [
    None,
    Some(AuthError::Missing),
    Some(AuthError::WrongScheme),
    Some(AuthError::Malformed),
    Some(AuthError::Oversized),
    Some(AuthError::InsufficientScope),
    Some(AuthError::JwksUnavailable),
    Some(AuthError::InvalidToken(reason::BAD_SIGNATURE)),
    Some(AuthError::InvalidToken(reason::EXPIRED)),
    Some(AuthError::InvalidToken(reason::WRONG_AUDIENCE)),
    Some(AuthError::InvalidToken(reason::DISALLOWED_ALG)),
    Some(AuthError::InvalidToken(reason::WRONG_TENANT)),
];

/// `name="value", name="value"` after the scheme, quoted-strings unescaped; panics on
/// anything else.
fn auth_params(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let name_len = s
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .expect("a parameter name ends");
        assert!(name_len > 0, "empty parameter name in {s:?}");
        let name = s[..name_len].to_string();
        s = s[name_len..]
            .strip_prefix("=\"")
            .expect("=\" after the name");
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("the quoted-string is closed");
            match c {
                '"' => break i,
                '\\' => {
                    let (_, escaped) = chars.next().expect("a quoted-pair is complete");
                    assert!(!escaped.is_control(), "escaped control character");
                    value.push(escaped);
                }
                c => {
                    assert!(!c.is_control(), "control character in a quoted-string");
                    value.push(c);
                }
            }
        };
        out.push((name, value));
        s = &s[end + 1..];
        if s.is_empty() {
            return out;
        }
        s = s.strip_prefix(", ").expect("\", \" between parameters");
    }
}

fn without_controls(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let error = ERRORS[usize::from(selector) % ERRORS.len()];
    let parts: Vec<String> = fields(rest, 0, 1 + usize::from(selector >> 4))
        .into_iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let (url, scopes) = (&parts[0], &parts[1..]);

    let value = challenge(url, scopes, error.as_ref());
    let bytes = value.as_bytes();
    assert!(
        bytes.iter().all(|&b| b >= 0x20 && b != 0x7f),
        "control byte in the challenge"
    );
    let text = std::str::from_utf8(bytes).expect("the challenge is UTF-8");
    let params = auth_params(text.strip_prefix("Bearer ").expect("Bearer scheme"));

    let mut expected = vec![("resource_metadata".to_string(), without_controls(url))];
    if !scopes.is_empty() {
        expected.push(("scope".into(), without_controls(&scopes.join(" "))));
    }
    let code = match error {
        Some(AuthError::Malformed | AuthError::Oversized | AuthError::InvalidToken(_)) => {
            Some("invalid_token")
        }
        Some(AuthError::InsufficientScope) => Some("insufficient_scope"),
        _ => None,
    };
    if let Some(code) = code {
        expected.push(("error".into(), code.into()));
        let (name, description) = params.last().expect("an error description");
        assert_eq!(name, "error_description");
        assert!(!description.is_empty() && description.is_ascii());
        expected.push((name.clone(), description.clone()));
    }
    assert_eq!(params, expected);
});
