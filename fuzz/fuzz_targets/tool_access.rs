//! Per-tool authorization's two readers of untrusted bytes.
//!
//! Input: one flags byte (bits 4-7: how many chunk-length bytes follow), the chunk lengths,
//! then the bytes, read both as a request body and as an upstream event stream. Invariants:
//!
//! 1. `tool_requests::read` is never more lenient than a JSON parser, and never reads a
//!    `tools/call` name other than the one a JSON parser sees (`serde_json::Value`, which
//!    keeps the last of repeated keys): a body it accepts names the same tools both ways.
//! 2. The event filter's output does not depend on the chunking.
//! 3. No event a client dispatches from the filter's output (reference reader, WHATWG rules)
//!    is a JSON-RPC response whose `result.tools` holds the hidden tool.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::sse_client;
use mcp_gateway_sidecar::body::Transform;
use mcp_gateway_sidecar::tool_requests;
use mcp_gateway_sidecar::tools_list::EventFilter;
use serde_json::Value;

const HIDDEN: &str = "secret";

fn filtered(chunks: &[&[u8]]) -> Vec<u8> {
    let mut f = EventFilter::new(Box::new(|name| name != HIDDEN));
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&f.push(chunk));
    }
    out.extend_from_slice(&f.finish());
    out
}

/// `tools/call` names as a JSON parser reads them.
fn calls_by_value(value: &Value) -> Vec<String> {
    let messages = match value {
        Value::Array(batch) => batch.iter().collect(),
        one => vec![one],
    };
    messages
        .into_iter()
        .filter(|m| m.get("method").and_then(Value::as_str) == Some("tools/call"))
        .map(|m| {
            m.get("params")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(flags >> 4).min(rest.len());
    let (lengths, bytes) = rest.split_at(cuts);

    // 1.
    if let Ok(read) = tool_requests::read(bytes) {
        let value: Value = serde_json::from_slice(bytes).expect("read accepts only JSON");
        let names: Vec<String> = read.calls.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            names,
            calls_by_value(&value),
            "the gateway and the server disagree"
        );
    }

    // 2.
    let mut chunks = Vec::new();
    let mut at = 0;
    for &len in lengths {
        let end = (at + usize::from(len)).min(bytes.len());
        chunks.push(&bytes[at..end]);
        at = end;
    }
    chunks.push(&bytes[at..]);
    let out = filtered(&chunks);
    assert_eq!(
        out,
        filtered(&[bytes]),
        "the output depends on the chunking"
    );

    // 3.
    for event in sse_client::events(&out) {
        let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        let responses = match &message {
            Value::Array(batch) => batch.iter().collect(),
            one => vec![one],
        };
        for response in responses {
            if response.get("method").is_some() {
                continue;
            }
            if let Some(tools) = response
                .get("result")
                .and_then(|r| r.get("tools"))
                .and_then(Value::as_array)
            {
                assert!(
                    !tools
                        .iter()
                        .any(|t| t.get("name").and_then(Value::as_str) == Some(HIDDEN)),
                    "a hidden tool reached a client: {}",
                    event.data
                );
            }
        }
    }
});
