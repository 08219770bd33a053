//! The facade's sealed grants (`facade::grants`): what a client presents as a `client_id`,
//! code, refresh token or (in a cookie) pending sign-in. Input: a kind byte, then text.
//!
//! Invariants: text the fuzzer makes never opens as any kind (it would take the key); opening
//! never panics; a grant sealed from fuzz-chosen fields (when it is handed out at all: too
//! large a grant is refused) opens to itself as its own kind only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_sidecar::facade::grants::{self, Code, Kind, Refresh, Registration};
use mcp_gateway_sidecar::seal::Sealer;

const KINDS: [Kind; 4] = [Kind::Client, Kind::Transaction, Kind::Code, Kind::Refresh];

fuzz_target!(|data: &[u8]| {
    mcp_gateway_fuzz::crypto();
    let sealer = Sealer::new(&[[0x5a; 32]]);
    // Presented text is checked against a key nothing is ever sealed with here: libFuzzer
    // replays strings it saw the target compare, including grants sealed below.
    let untouched = Sealer::new(&[[0xa5; 32]]);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = KINDS[usize::from(selector) % KINDS.len()];
    // Presented text never opens.
    assert!(grants::open::<serde_json::Value>(&untouched, kind, text).is_none());
    // Sealed from arbitrary fields: opens as itself, only as its kind.
    let mut fields = text.split('\n');
    let mut field = || fields.next().unwrap_or_default().to_string();
    let code = Code {
        client_id: field(),
        redirect_uri: field(),
        code_challenge: field(),
        scopes: vec![field()],
        subject: field(),
        roles: vec![field()],
        tenant: Some(field()),
        jti: field(),
        exp: u64::from(selector),
    };
    let Some(sealed) = grants::seal(&sealer, Kind::Code, &code) else {
        return;
    };
    assert_eq!(grants::open::<Code>(&sealer, Kind::Code, &sealed), Some(code.clone()));
    for other in [Kind::Client, Kind::Transaction, Kind::Refresh] {
        assert!(grants::open::<serde_json::Value>(&sealer, other, &sealed).is_none());
    }
    let refresh = Refresh {
        client_id: code.client_id.clone(),
        subject: code.subject,
        scopes: code.scopes,
        roles: code.roles,
        tenant: code.tenant,
        signed_in_at: code.exp,
        family: code.jti.clone(),
        jti: code.jti,
        exp: code.exp,
    };
    let Some(sealed) = grants::seal(&sealer, Kind::Refresh, &refresh) else {
        return;
    };
    assert_eq!(grants::open::<Refresh>(&sealer, Kind::Refresh, &sealed), Some(refresh));
    let registration = Registration {
        redirect_uris: vec![code.redirect_uri],
        client_name: Some(code.client_id),
        issued_at: code.exp,
    };
    let Some(sealed) = grants::seal(&sealer, Kind::Client, &registration) else {
        return;
    };
    assert_eq!(
        grants::open::<Registration>(&sealer, Kind::Client, &sealed),
        Some(registration)
    );
});
