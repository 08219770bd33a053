//! What a request asks for, for the request log: the JSON-RPC method and the tool, prompt
//! or resource it names. Read from the 2026 `Mcp-Method`/`Mcp-Name` headers when present,
//! else from the body. Only a log field: nothing is decided on it.

use http::HeaderMap;
use serde::Deserialize;

const MAX_FIELD: usize = 128;

#[derive(Debug, Default, PartialEq)]
pub struct Peek {
    pub method: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
    uri: Option<String>,
}

pub fn clip(s: &str) -> String {
    s.chars()
        .take(MAX_FIELD)
        .filter(|c| !c.is_control())
        .collect()
}

pub fn peek(headers: &HeaderMap, body: &[u8]) -> Peek {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(clip);
    if let Some(method) = header("mcp-method") {
        return Peek {
            method: Some(method),
            name: header("mcp-name"),
        };
    }
    of_body(body)
}

/// What the body says, whatever the headers claim: for audit records, which a client must
/// not be able to steer with an `Mcp-Method` or `Mcp-Name` header the body contradicts.
pub fn of_body(body: &[u8]) -> Peek {
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => Peek {
            method: m.method.as_deref().map(clip),
            name: m.params.and_then(|p| p.name.or(p.uri)).as_deref().map(clip),
        },
        Err(_) => Peek::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_body_or_headers() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        assert_eq!(
            peek(&HeaderMap::new(), body),
            Peek {
                method: Some("tools/call".into()),
                name: Some("echo".into())
            }
        );
        let mut h = HeaderMap::new();
        h.insert("mcp-method", "resources/read".parse().unwrap());
        h.insert("mcp-name", "file:///a".parse().unwrap());
        assert_eq!(peek(&h, b"").name.as_deref(), Some("file:///a"));
        assert_eq!(peek(&HeaderMap::new(), b"[1,2]"), Peek::default());
        assert_eq!(peek(&HeaderMap::new(), b"garbage"), Peek::default());
        let long = format!(r#"{{"method":"{}"}}"#, "x".repeat(1000));
        assert_eq!(
            peek(&HeaderMap::new(), long.as_bytes())
                .method
                .unwrap()
                .len(),
            MAX_FIELD
        );
    }
}
