//! The legacy-SSE endpoint rewriter (`sse::EndpointRewriter`, with and without a query
//! sealer) on an arbitrary upstream stream cut into arbitrary chunks.
//!
//! Input: one flags byte (bit 0: use a sealer; bits 4-7: how many chunk-length bytes follow),
//! the chunk lengths, then the stream. Invariants:
//!
//! 1. The output does not depend on the chunking (checked against the stream in one piece).
//! 2. Every `endpoint` event a client dispatches from the output (reference reader, WHATWG
//!    rules) is the public message URL with a query that has no `code` parameter (by the
//!    strictest reading: split on `&`, `;` and `\u0026`, names decoded and trimmed); with the
//!    sealer, the sealed query opens to one without `code` either.
//! 3. In every output line, the query after a `message?` at a path-segment start has no
//!    `code` parameter (the defence in depth the module promises for every line passed).
//! 4. The output has as many complete events as the input, and every complete input event
//!    with neither `endpoint` nor `message?` in it comes out byte for byte; the unfinished
//!    tail, if it has neither, comes out as a prefix of itself.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::query::has_code_param_strict as has_code_param;
use mcp_gateway_fuzz::sse_client;
use mcp_gateway_sidecar::sse::{EndpointRewriter, MAX_HELD_EVENT_BYTES};

const PUBLIC: &str = "/weather/message";
const UPSTREAM: &str = "/runtime/webhooks/mcp/message";
const ANCHOR: &[u8] = b"message?";

fn rewriter(sealed: bool) -> EndpointRewriter {
    let r = EndpointRewriter::new(PUBLIC.into(), UPSTREAM.into());
    if sealed {
        // Deterministic and reversible, so outputs compare and the sealed query can be read.
        r.with_query_sealer(Box::new(|query| {
            format!("s={}", URL_SAFE_NO_PAD.encode(query))
        }))
    } else {
        r
    }
}

fn run(sealed: bool, chunks: &[&[u8]]) -> Vec<u8> {
    let mut r = rewriter(sealed);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&r.push(chunk));
    }
    out.extend_from_slice(&r.finish());
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Where a query that follows `message?` ends, as a client or server would read it; JSON's
/// `\u0026` (an escaped `&`) does not end it.
fn query_end(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].len() >= 6 && bytes[i..i + 6].eq_ignore_ascii_case(b"\\u0026") {
            i += 6;
            continue;
        }
        let b = bytes[i];
        if b.is_ascii_whitespace() || b.is_ascii_control() || b"\"'<>`#\\".contains(&b) {
            break;
        }
        i += 1;
    }
    i
}

fn check_endpoint(data: &str, sealed: bool) {
    let query = match data.strip_prefix(PUBLIC) {
        Some("") => return,
        Some(rest) => rest
            .strip_prefix('?')
            .unwrap_or_else(|| panic!("endpoint {data:?} is not the public message URL")),
        None => panic!("endpoint {data:?} is not the public message URL"),
    };
    assert!(!has_code_param(query), "endpoint {data:?} carries code");
    if sealed {
        let opened = query
            .strip_prefix("s=")
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .unwrap_or_else(|| panic!("endpoint {data:?} is not sealed"));
        let opened = String::from_utf8(opened).unwrap();
        assert!(
            !has_code_param(&opened),
            "sealed query {opened:?} carries code"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let sealed = flags & 1 == 1;
    let n = usize::from(flags >> 4).min(rest.len());
    let (lengths, stream) = rest.split_at(n);
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    for &len in lengths {
        let end = (at + usize::from(len)).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    chunks.push(&stream[at..]);

    // 1
    let out = run(sealed, &chunks);
    assert_eq!(
        out,
        run(sealed, &[stream]),
        "the output depends on the chunking"
    );

    // 2
    for event in sse_client::events(&out) {
        if event.event_type == "endpoint" {
            check_endpoint(&event.data, sealed);
        }
    }

    // 3
    let (lines, tail) = sse_client::lines(&out);
    for line in lines.iter().map(|(line, _)| *line).chain([tail]) {
        let segment = |b: u8| b.is_ascii_alphanumeric() || b"-._~%".contains(&b);
        for i in 0..line.len() {
            if line[i..].starts_with(ANCHOR) && (i == 0 || !segment(line[i - 1])) {
                let query = &line[i + ANCHOR.len()..];
                let query = String::from_utf8_lossy(&query[..query_end(query)]);
                for part in query.replace("\\U0026", "\\u0026").split("\\u0026") {
                    assert!(
                        !has_code_param(part),
                        "code left in {:?}",
                        String::from_utf8_lossy(line)
                    );
                }
            }
        }
    }

    // 4
    if stream.len() >= MAX_HELD_EVENT_BYTES {
        return;
    }
    let (events_in, tail_in) = sse_client::raw_events(stream);
    let (events_out, tail_out) = sse_client::raw_events(&out);
    assert_eq!(events_in.len(), events_out.len(), "event framing changed");
    let plain = |e: &[u8]| !contains(e, b"endpoint") && !contains(e, ANCHOR);
    for (i, (e_in, e_out)) in events_in.iter().zip(&events_out).enumerate() {
        if plain(e_in) {
            assert_eq!(
                e_in,
                e_out,
                "event {i} changed: {:?} -> {:?}",
                String::from_utf8_lossy(e_in),
                String::from_utf8_lossy(e_out)
            );
        }
    }
    if plain(tail_in) {
        assert!(tail_in.starts_with(tail_out), "the unfinished tail changed");
    }
});
