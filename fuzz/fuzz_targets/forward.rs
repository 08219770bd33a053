//! Keeping the system key out of forwarded queries. The input is a query string, used twice:
//!
//! 1. As a client's query, through `forward::query_without_key`: the result has no `code`
//!    parameter as the Functions host reads it (`&`-separated, names percent-decoded,
//!    case-insensitive); it is the input's non-empty pairs in order, less only pairs whose
//!    name is some form of `code`; and if the input was a valid request-target query, the
//!    upstream URI the proxy builds from the result (and `.expect`s) parses.
//! 2. As the URL of an upstream `endpoint` event, through the whole legacy-SSE message path:
//!    `sse::rewrite_endpoint_url` → the query sealed for the subject → opened when the client
//!    posts → `query_without_key` → the upstream URI. The public URL has no `code` parameter,
//!    the seal round-trips, and the upstream URI parses.

#![no_main]

use http::Uri;
use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::query::{has_code_param, has_code_param_strict, pair_name};
use mcp_gateway_sidecar::forward::query_without_key;
use mcp_gateway_sidecar::session::SessionSealer;
use mcp_gateway_sidecar::sse::rewrite_endpoint_url;

const UPSTREAM_ORIGIN: &str = "https://fn-weather.azurewebsites.net";
const UPSTREAM_MESSAGE: &str = "/runtime/webhooks/mcp/message";
const PUBLIC_MESSAGE: &str = "/weather/message";

fn upstream_uri(path: &str, query: Option<&str>) -> Uri {
    let uri = match query {
        Some(q) => format!("{UPSTREAM_ORIGIN}{path}?{q}"),
        None => format!("{UPSTREAM_ORIGIN}{path}"),
    };
    uri.parse()
        .unwrap_or_else(|e| panic!("the proxy's upstream URI {uri:?} does not parse: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    // 1
    let out = query_without_key(Some(input));
    let kept: Vec<&str> = out
        .as_deref()
        .map_or(Vec::new(), |o| o.split('&').collect());
    if let Some(o) = &out {
        assert!(!o.is_empty());
        assert!(!has_code_param(o), "code left in {o:?}");
    }
    let mut rest = kept.iter().peekable();
    for pair in input.split('&').filter(|p| !p.is_empty()) {
        if rest.peek() == Some(&&pair) {
            rest.next();
        } else {
            assert!(
                pair_name(pair).trim().eq_ignore_ascii_case("code"),
                "dropped {pair:?}, which is not a code parameter"
            );
        }
    }
    assert!(rest.next().is_none(), "pairs reordered or invented");
    if !input.contains('#') && format!("/mcp?{input}").parse::<PathAndQuery>().is_ok() {
        upstream_uri("/runtime/webhooks/mcp", out.as_deref());
    }

    // 2
    let Some(public) = rewrite_endpoint_url(input, PUBLIC_MESSAGE, UPSTREAM_MESSAGE) else {
        return;
    };
    let query = match public.strip_prefix(PUBLIC_MESSAGE) {
        Some("") => None,
        Some(rest) => Some(rest.strip_prefix('?').expect("a query after the path")),
        None => panic!("{public:?} is not the public message URL"),
    };
    let Some(query) = query else {
        upstream_uri(UPSTREAM_MESSAGE, None);
        return;
    };
    assert!(!has_code_param_strict(query), "code left in {public:?}");
    let sessions = SessionSealer::new(vec![[9u8; 32]]);
    let sealed = sessions.seal("tid/oid", query);
    let client_url = format!("{PUBLIC_MESSAGE}?s={sealed}");
    assert!(client_url.parse::<PathAndQuery>().is_ok(), "{client_url:?}");
    let opened = sessions.open("tid/oid", &sealed);
    if sealed.len() <= 4096 {
        assert_eq!(opened.as_deref(), Ok(query));
        upstream_uri(UPSTREAM_MESSAGE, query_without_key(Some(query)).as_deref());
    }
});
