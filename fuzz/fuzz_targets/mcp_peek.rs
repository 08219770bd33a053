//! The request-log peek at a JSON-RPC message (`mcp_peek::peek`). Input: `name: value` header
//! lines, a blank line, then the body (no blank line: all body).
//!
//! Invariants: the method and name are at most 128 characters with no control characters (they
//! go into log lines); with a readable `Mcp-Method` header they come from the headers, else
//! whatever is reported is what the body's JSON says, clipped (checked against an independent
//! `serde_json::Value` reading).

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_gateway_sidecar::mcp_peek::peek;
use serde_json::Value;

const MAX: usize = 128;

fn clipped(s: &str) -> String {
    s.chars().take(MAX).filter(|c| !c.is_control()).collect()
}

fn check_field(field: &Option<String>) {
    if let Some(f) = field {
        assert!(f.chars().count() <= MAX, "{f:?} is longer than {MAX}");
        assert!(
            !f.chars().any(char::is_control),
            "{f:?} has a control character"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&b""[..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    let result = peek(&headers, body);
    check_field(&result.method);
    check_field(&result.name);

    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(method) = header("mcp-method") {
        assert_eq!(result.method, Some(clipped(method)));
        assert_eq!(result.name, header("mcp-name").map(clipped));
        return;
    }
    // `Value` refuses invalid UTF-8 even in members the peek skips, so it cannot always judge.
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(method) = &result.method {
        let from_json = json.get("method").and_then(Value::as_str);
        assert_eq!(Some(method.clone()), from_json.map(clipped));
    }
    if let Some(name) = &result.name {
        let from_json = json
            .get("params")
            .and_then(|p| p.get("name").filter(|n| !n.is_null()).or(p.get("uri")))
            .and_then(Value::as_str);
        assert_eq!(Some(name.clone()), from_json.map(clipped));
    }
});
