//! What a request body asks of tools, read exactly as the MCP server will read it: the
//! `tools/call`s it makes (by name) and whether it lists tools. Per-tool authorization is
//! decided on this, so a body the gateway cannot read as JSON-RPC is refused, not guessed at.

use serde::Deserialize;
use serde_json::Value;

use crate::dotnet_case;

/// The tool-related parts of one request body (a JSON-RPC message or a batch of them).
#[derive(Debug, Default, PartialEq)]
pub struct ToolRequests {
    pub calls: Vec<ToolCall>,
    /// A `tools/list` request is among the messages: its response is filtered per caller.
    pub lists_tools: bool,
    /// The body is a JSON-RPC batch (MCP 2025-03-26).
    pub batch: bool,
}

/// One `tools/call`.
#[derive(Debug, PartialEq)]
pub struct ToolCall {
    /// The JSON-RPC id, for an error response of the gateway's own.
    pub id: Value,
    pub name: String,
    /// `params.arguments` as sent (for audit records that include them).
    pub arguments: Option<Value>,
}

/// Why a body cannot be decided on.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

// serde refuses a repeated field, so `{"name":"allowed","name":"forbidden"}` is unreadable
// here instead of read one way by the gateway and another by the server.
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: Value,
    /// Everything else. Being flattened also makes serde read a message from a JSON object
    /// only, not from an array of field values.
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    name: Option<Value>,
    /// As in [`Message`]: read from an object only.
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Whether `rest` (the keys serde did not take) holds another spelling of one of `known`: the
/// C# MCP SDK reads property names ignoring case, so `"Name"` beside `"name"` is a second
/// name to the server, and `"Name"` alone is the name.
fn respells(rest: &serde_json::Map<String, Value>, known: &[&str]) -> bool {
    rest.keys().any(|k| {
        known
            .iter()
            .any(|name| k != name && dotnet_case::same(k, name))
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    One(Message),
    Batch(Vec<Message>),
}

/// Reads `body`. A response or notification (no `method` or not a tools method) is fine and
/// yields nothing; anything that is not a JSON object or array of objects is `Unreadable`.
pub fn read(body: &[u8]) -> Result<ToolRequests, Unreadable> {
    let (messages, batch) = match serde_json::from_slice::<Body>(body).map_err(|_| Unreadable)? {
        Body::One(m) => (vec![m], false),
        Body::Batch(messages) => (messages, true),
    };
    let mut out = ToolRequests {
        batch,
        ..ToolRequests::default()
    };
    for m in messages {
        if respells(&m.rest, &["id", "method", "params", "jsonrpc"])
            || m.params
                .as_ref()
                .is_some_and(|p| respells(&p.rest, &["name", "arguments"]))
        {
            return Err(Unreadable);
        }
        match m.method.as_deref() {
            Some("tools/call") => {
                // A name that is not a string names no tool the server has; the policy
                // still decides on it (as the empty name), so default Deny holds.
                let (name, arguments) = match m.params {
                    Some(mut p) => (p.name, p.rest.remove("arguments")),
                    None => (None, None),
                };
                let name = match name {
                    Some(Value::String(name)) => name,
                    _ => String::new(),
                };
                out.calls.push(ToolCall {
                    id: m.id,
                    name,
                    arguments,
                });
            }
            Some("tools/list") => out.lists_tools = true,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_and_lists_in_single_messages_and_batches() {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        assert_eq!(
            read(call),
            Ok(ToolRequests {
                calls: vec![ToolCall {
                    id: json!(7),
                    name: "echo".into(),
                    arguments: Some(json!({})),
                }],
                lists_tools: false,
                batch: false,
            })
        );
        let batch = br#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},
            {"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"rm\u0020rf"}},
            {"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        let r = read(batch).unwrap();
        assert!(r.lists_tools && r.batch);
        assert_eq!(r.calls.len(), 1);
        // Escapes are read as the server reads them.
        assert_eq!(r.calls[0].name, "rm rf");
        assert_eq!(
            read(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Ok(ToolRequests::default())
        );
    }

    #[test]
    fn a_body_read_two_ways_is_refused() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"b"}}"#,
            b"not json",
            b"[1]",
            b"\"tools/call\"",
            b"",
        ] {
            assert_eq!(read(body), Err(Unreadable), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn another_spelling_of_a_field_is_refused_as_the_server_would_read_it() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","paramſ":{"name":"secret"}}"#,
            // Arguments the audit record would miss but the server would read.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Arguments":{"x":1}}}"#,
        ] {
            assert_eq!(read(body.as_bytes()), Err(Unreadable), "{body}");
        }
        // Other unknown keys are fine.
        assert!(read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{}}}"#).is_ok());
    }

    #[test]
    fn params_are_read_from_an_object_only() {
        assert_eq!(
            read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["add"]}"#),
            Err(Unreadable)
        );
    }

    #[test]
    fn a_name_that_is_not_a_string_is_the_empty_name() {
        let r =
            read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["echo"]}}"#)
                .unwrap();
        assert_eq!(r.calls[0].name, "");
    }
}
