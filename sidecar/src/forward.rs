//! What crosses the gateway: which request headers go upstream, which response headers come
//! back, and the query without the key. Pure functions over `http` types.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::code_param;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and others that describe one connection, not the
/// message; `Proxy-*` ones carry credentials for a proxy that is not us.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
/// The key header the Functions host reads, whatever header the config names.
const FUNCTIONS_KEY: HeaderName = HeaderName::from_static("x-functions-key");
const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // The headers `Connection` names (none without one: an empty Vec does not allocate).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Turns a client's request headers into the upstream's: strips the client's credentials
/// (no token passthrough), any client-supplied key header, `Host` (the client sets it from
/// the upstream URI), `Origin` (checked here, meaningless upstream) and `Accept-Encoding`
/// (event streams must arrive uncompressed so the SSE rewriter can read them and nothing
/// buffers them), then adds the system key. Everything else — `Accept`, `Content-Type`,
/// `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, `Last-Event-ID` and
/// unknown headers — passes byte for byte. The caller sets `Mcp-Session-Id`.
pub fn upstream_request_headers(
    mut headers: HeaderMap,
    key_header: &HeaderName,
    key: &HeaderValue,
) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::HOST,
        header::ORIGIN,
        header::ACCEPT_ENCODING,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers.remove(key_header);
    headers.remove(FUNCTIONS_KEY);
    let mut key = key.clone();
    key.set_sensitive(true);
    headers.insert(key_header.clone(), key);
    headers
}

/// Turns the upstream's response headers into the client's: hop-by-hop and cookies go (the
/// upstream's affinity cookies mean nothing to clients, whose cookies we strip anyway).
/// Event streams get `X-Accel-Buffering: no` so nginx-style proxies in front don't buffer.
pub fn client_response_headers(mut headers: HeaderMap) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    headers.remove(header::SET_COOKIE);
    if is_event_stream(&headers) {
        headers.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-cache"));
    }
    headers
}

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// The query without any `code` parameter (see [`code_param`] for what counts as one), or
/// `None` when nothing is left.
pub fn query_without_key(query: Option<&str>) -> Option<String> {
    let kept = code_param::strip(query?);
    (!kept.is_empty()).then(|| kept.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static("x-functions-key"),
            HeaderValue::from_static("SYSKEY"),
        )
    }

    #[test]
    fn strips_credentials_and_injects_the_key() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        h.insert("x-functions-key", "client-guess".parse().unwrap());
        h.insert("host", "mcp.example.com".parse().unwrap());
        h.insert("origin", "https://evil.example".parse().unwrap());
        h.insert("accept-encoding", "gzip".parse().unwrap());
        h.insert(
            "accept",
            "application/json, text/event-stream".parse().unwrap(),
        );
        h.insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
        h.insert("mcp-param-city", "Paris".parse().unwrap());
        h.insert("last-event-id", "42".parse().unwrap());
        h.insert("connection", "keep-alive, x-drop-me".parse().unwrap());
        h.insert("x-drop-me", "1".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        let (name, value) = key();
        let out = upstream_request_headers(h, &name, &value);
        assert_eq!(out.get_all("x-functions-key").iter().count(), 1);
        assert_eq!(out["x-functions-key"], "SYSKEY");
        assert!(out["x-functions-key"].is_sensitive());
        for gone in [
            "authorization",
            "cookie",
            "host",
            "origin",
            "accept-encoding",
            "connection",
            "x-drop-me",
            "proxy-authorization",
        ] {
            assert!(!out.contains_key(gone), "{gone} must not go upstream");
        }
        assert_eq!(out["accept"], "application/json, text/event-stream");
        assert_eq!(out["mcp-protocol-version"], "2025-11-25");
        assert_eq!(out["mcp-param-city"], "Paris");
        assert_eq!(out["last-event-id"], "42");
    }

    #[test]
    fn a_custom_key_header_still_drops_client_x_functions_key() {
        let mut h = HeaderMap::new();
        h.insert("x-functions-key", "client-guess".parse().unwrap());
        let out = upstream_request_headers(
            h,
            &HeaderName::from_static("x-custom-key"),
            &HeaderValue::from_static("K"),
        );
        assert!(!out.contains_key("x-functions-key"));
        assert_eq!(out["x-custom-key"], "K");
    }

    #[test]
    fn response_headers_for_streams() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/event-stream".parse().unwrap());
        h.insert("set-cookie", "ARRAffinity=x".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("mcp-session-id", "s".parse().unwrap());
        let out = client_response_headers(h);
        assert_eq!(out["x-accel-buffering"], "no");
        assert_eq!(out["cache-control"], "no-cache");
        assert!(!out.contains_key("set-cookie"));
        assert!(!out.contains_key("transfer-encoding"));
        assert_eq!(out["mcp-session-id"], "s");

        let mut json = HeaderMap::new();
        json.insert("content-type", "application/json".parse().unwrap());
        assert!(!client_response_headers(json).contains_key("x-accel-buffering"));
    }

    #[test]
    fn code_is_removed_from_queries() {
        assert_eq!(query_without_key(None), None);
        assert_eq!(query_without_key(Some("code=K")), None);
        assert_eq!(
            query_without_key(Some("azmcpcs=a%2Bb&code=K")).as_deref(),
            Some("azmcpcs=a%2Bb")
        );
        assert_eq!(
            query_without_key(Some("code=K&azmcpcs=x&z=1")).as_deref(),
            Some("azmcpcs=x&z=1")
        );
        assert_eq!(
            query_without_key(Some("CODE=K&Code=K2&c%6Fde=K3&x=1")).as_deref(),
            Some("x=1")
        );
        assert_eq!(
            query_without_key(Some("codex=1&acode=2")).as_deref(),
            Some("codex=1&acode=2")
        );
        // The same scrubber as the SSE stream's: `;` and padded names count too.
        assert_eq!(
            query_without_key(Some("x=1;code=K& code=K2")).as_deref(),
            Some("x=1")
        );
        assert_eq!(query_without_key(Some("&code=K")), None);
    }
}
