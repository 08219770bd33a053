//! The facade's client rules: a Client ID Metadata Document fetched for a URL
//! (`client_from_document`), a registration request (`check_metadata`), and redirect URI
//! matching (`match_redirect_uri`). Input: the client_id URL, a newline, a requested redirect
//! URI, a newline, then the JSON document.
//!
//! Invariants: an accepted document names itself and every redirect URI in it is https, or
//! http on a loopback host, with no fragment or credentials; a registration that passes has
//! 1-4 such URIs; a redirect URI only matches one that was registered, exactly, or for an http
//! loopback URI with only the port different.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_sidecar::facade::client::{
    Metadata, check_metadata, client_from_document, match_redirect_uri,
};
use url::Url;

fn loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn assert_safe_redirect(uri: &str) {
    let url = Url::parse(uri).expect("an accepted redirect URI parses");
    assert!(url.fragment().is_none() && url.username().is_empty() && url.password().is_none());
    assert!(
        url.scheme() == "https" || (url.scheme() == "http" && loopback(&url)),
        "{uri} is neither https nor loopback http"
    );
}

fuzz_target!(|data: &[u8]| {
    mcp_gateway_fuzz::crypto();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(client_id), Some(requested), Some(document)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if let Ok(client) = client_from_document(client_id, document.as_bytes()) {
        assert_eq!(client.client_id, client_id);
        assert!(client.metadata_document);
        assert!((1..=4).contains(&client.redirect_uris.len()));
        client.redirect_uris.iter().for_each(|u| assert_safe_redirect(u));
    }
    if let Ok(metadata) = serde_json::from_str::<Metadata>(document)
        && check_metadata(&metadata).is_ok()
    {
        assert!((1..=4).contains(&metadata.redirect_uris.len()));
        metadata.redirect_uris.iter().for_each(|u| assert_safe_redirect(u));
        if let Some(matched) = match_redirect_uri(&metadata.redirect_uris, requested) {
            assert!(metadata.redirect_uris.contains(matched));
            if matched != requested {
                let asked = Url::parse(requested).expect("a matched URI parses");
                assert!(asked.scheme() == "http" && loopback(&asked), "{requested}");
                let mut registered = Url::parse(matched).unwrap();
                registered.set_port(asked.port()).unwrap();
                assert_eq!(registered, asked);
            }
        }
    }
});
