//! Keeping the system key out of forwarded queries. The input is a query string, used twice:
//!
//! 1. As a client's query, through `forward::query_without_key` (the sidecar's one `code`
//!    scrubber, `code_param::strip`, which the SSE rewriter uses too): the result is exactly
//!    what an independent reference (`mcp_gateway_fuzz::query::without_code`) keeps — the
//!    input less every pair whose name is some form of `code`, split on `&`, `;` and `\u0026`,
//!    names decoded and trimmed — or `None` when that is empty; it has no `code` parameter as
//!    the Functions host reads it; and if the input was a valid request-target query, the
//!    upstream URI the proxy builds from the result (and `.expect`s) parses.
//! 2. As the URL of an upstream `endpoint` event, through the whole legacy-SSE message path:
//!    `sse::rewrite_endpoint_url` → the query sealed for the subject → opened when the client
//!    posts → `query_without_key` → the upstream URI. The public URL has no `code` parameter,
//!    the seal round-trips, and the upstream URI parses.

#![no_main]

use http::Uri;
use http::uri::PathAndQuery;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::query::{has_code_param, has_code_param_strict, without_code};
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
    let reference = without_code(input);
    assert_eq!(
        out.as_deref(),
        (!reference.is_empty()).then_some(reference.as_str()),
        "the scrubber and the reference disagree on {input:?}"
    );
    if let Some(o) = &out {
        assert!(!has_code_param(o), "code left in {o:?}");
        assert!(!has_code_param_strict(o), "code left in {o:?}");
    }
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
