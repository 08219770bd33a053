//! `tools/list` results filtered per caller, so nobody sees a tool they may not call: in a
//! JSON response (read whole, it is one message) and in an event stream, event by event
//! (only the event being read is held, never the stream).

use bytes::Bytes;
use serde_json::Value;

use crate::body::Transform;

/// Whether the caller may see a tool (by name).
pub type Visible = Box<dyn Fn(&str) -> bool + Send>;

/// What one caller may see, and whether the request listed tools (so a JSON response is a
/// tool list to filter; any event stream may carry one).
pub struct ToolsView {
    pub visible: Visible,
    pub lists_tools: bool,
}

impl ToolsView {
    /// The filter for a response body, if it needs one.
    pub fn filter(self, event_stream: bool) -> Option<Box<dyn Transform>> {
        if event_stream {
            Some(Box::new(EventFilter::new(self.visible)))
        } else if self.lists_tools {
            Some(Box::new(JsonFilter::new(self.visible)))
        } else {
            None
        }
    }
}

/// The largest message held to be filtered; a larger one is dropped (an event) or replaced
/// by an error (a JSON response), never passed unfiltered.
pub const MAX_MESSAGE: usize = 8 << 20;

/// What [`filter`] made of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// No tool list to filter, or nothing hidden: the bytes pass as they are.
    Unchanged,
    Changed(Vec<u8>),
    /// It may hold a tool list (it says `"tools"`, or escapes a character) but does not parse:
    /// it must not pass, since a client's parser may read it.
    Unreadable,
}

/// `json` (a JSON-RPC message or batch) with every `result.tools` entry the caller may not
/// see removed.
pub fn filter(json: &[u8], visible: &dyn Fn(&str) -> bool) -> Filtered {
    // Cheap test first: most messages are not tool lists. An escaped key (`"tool\u0073"`)
    // would hide from it, so any escape gets the parse.
    if !mentions_tools(json) && !has_escape(json) {
        return Filtered::Unchanged;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(json) else {
        return Filtered::Unreadable;
    };
    let changed = match &mut value {
        Value::Array(batch) => batch
            .iter_mut()
            .fold(false, |c, m| filter_message(m, visible) | c),
        message => filter_message(message, visible),
    };
    if changed {
        Filtered::Changed(serde_json::to_vec(&value).expect("a Value serializes"))
    } else {
        Filtered::Unchanged
    }
}

/// Whether the bytes hold `"tools"`: a message without it (and without escapes) is no tool
/// list.
fn mentions_tools(bytes: &[u8]) -> bool {
    bytes.windows(7).any(|w| w == b"\"tools\"")
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\\u")
}

fn filter_message(message: &mut Value, visible: &dyn Fn(&str) -> bool) -> bool {
    if message.get("method").is_some() {
        return false;
    }
    let Some(tools) = message
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = tools.len();
    tools.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(visible)
    });
    tools.len() != before
}

/// A JSON response body, held whole and filtered at its end.
pub struct JsonFilter {
    visible: Visible,
    held: Vec<u8>,
    too_large: bool,
}

impl JsonFilter {
    pub fn new(visible: Visible) -> Self {
        Self {
            visible,
            held: Vec::new(),
            too_large: false,
        }
    }
}

impl Transform for JsonFilter {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.held.len() + chunk.len() > MAX_MESSAGE {
            self.too_large = true;
            self.held = Vec::new();
        }
        if !self.too_large {
            self.held.extend_from_slice(chunk);
        }
        Bytes::new()
    }

    fn finish(&mut self) -> Bytes {
        if self.too_large {
            tracing::warn!(
                limit = MAX_MESSAGE,
                "a tools/list response is too large to filter; the client gets an error instead"
            );
            return Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the tool list is too large for the gateway to filter"}}"#,
            );
        }
        let held = std::mem::take(&mut self.held);
        match filter(&held, &*self.visible) {
            Filtered::Changed(filtered) => filtered.into(),
            Filtered::Unchanged => held.into(),
            Filtered::Unreadable => {
                tracing::warn!(
                    "a tools/list response the gateway cannot parse was replaced by an error"
                );
                Bytes::from_static(
                    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the MCP server's tool list could not be read"}}"#,
                )
            }
        }
    }
}

/// An event stream, filtered event by event. Events without a tool list pass byte for byte.
pub struct EventFilter {
    visible: Visible,
    /// The event being read.
    pending: Vec<u8>,
    /// Where the next unscanned line of `pending` starts.
    line_start: usize,
    /// Reading the rest of an event too large to filter, which is dropped.
    skipping: bool,
    /// Nothing passed yet: a leading byte order mark, which clients drop, is passed first
    /// and not taken for part of the first line.
    at_start: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl EventFilter {
    pub fn new(visible: Visible) -> Self {
        Self {
            visible,
            pending: Vec::new(),
            line_start: 0,
            skipping: false,
            at_start: true,
        }
    }

    /// Passes a leading BOM on; `false` while what arrived may still be the start of one.
    fn take_bom(&mut self, out: &mut Vec<u8>, final_bytes: bool) -> bool {
        if !self.at_start {
            return true;
        }
        if !final_bytes && self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) {
            return false;
        }
        self.at_start = false;
        if self.pending.starts_with(BOM) {
            out.extend_from_slice(BOM);
            self.pending.drain(..BOM.len());
        }
        true
    }

    /// The next line terminator at or after `from`: (its start, its length). A `\r` at the
    /// end of what has arrived may be half of `\r\n`: not decided until `final_bytes`.
    fn next_terminator(&self, from: usize, final_bytes: bool) -> Option<(usize, usize)> {
        let rel = self.pending[from..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')?;
        let at = from + rel;
        if self.pending[at] == b'\n' {
            return Some((at, 1));
        }
        match self.pending.get(at + 1) {
            Some(b'\n') => Some((at, 2)),
            Some(_) => Some((at, 1)),
            None if final_bytes => Some((at, 1)),
            None => None,
        }
    }

    fn drain(&mut self, out: &mut Vec<u8>, final_bytes: bool) {
        while let Some((at, len)) = self.next_terminator(self.line_start, final_bytes) {
            let empty_line = at == self.line_start;
            self.line_start = at + len;
            if empty_line {
                let event: Vec<u8> = self.pending.drain(..self.line_start).collect();
                self.line_start = 0;
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                if event.len() > MAX_MESSAGE {
                    tracing::warn!(
                        limit = MAX_MESSAGE,
                        "an event too large to filter for tools/list was dropped"
                    );
                    continue;
                }
                self.emit(&event, out);
            }
        }
        if self.pending.len() > MAX_MESSAGE {
            if !self.skipping {
                tracing::warn!(
                    limit = MAX_MESSAGE,
                    "an event too large to filter for tools/list was dropped"
                );
            }
            self.skipping = true;
            // Keep the unfinished line's tail: it may end the event.
            self.pending.drain(..self.line_start);
            self.line_start = 0;
            if self.pending.len() > MAX_MESSAGE {
                // Keep the last byte (a `\r` may be half a CRLF) behind a stand-in for the
                // rest of the line, so a `\n` that follows ends this line, not the event.
                let keep = self.pending.len() - 1;
                self.pending.drain(..keep);
                self.pending.insert(0, b'x');
            }
        }
    }

    fn emit(&self, event: &[u8], out: &mut Vec<u8>) {
        if !mentions_tools(event) && !has_escape(event) {
            out.extend_from_slice(event);
            return;
        }
        let text = String::from_utf8_lossy(event);
        let mut data: Vec<&str> = Vec::new();
        let mut other: Vec<&str> = Vec::new();
        for line in text.lines_sse() {
            if line.is_empty() {
                continue;
            }
            match line.strip_prefix("data") {
                Some(rest) if rest.is_empty() || rest.starts_with(':') => {
                    let value = rest.strip_prefix(':').unwrap_or(rest);
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
                _ => other.push(line),
            }
        }
        match filter(data.join("\n").as_bytes(), &*self.visible) {
            Filtered::Changed(filtered) => {
                for line in other {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&filtered);
                out.extend_from_slice(b"\n\n");
            }
            Filtered::Unchanged => out.extend_from_slice(event),
            Filtered::Unreadable => {
                tracing::warn!("an event the gateway cannot parse for tools/list was dropped");
            }
        }
    }
}

/// SSE lines: split at `\r\n`, `\n` or `\r`.
trait SseLines {
    fn lines_sse(&self) -> impl Iterator<Item = &str>;
}

impl SseLines for str {
    fn lines_sse(&self) -> impl Iterator<Item = &str> {
        self.split('\n')
            .flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'))
    }
}

impl Transform for EventFilter {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        if self.take_bom(&mut out, false) {
            self.drain(&mut out, false);
        }
        out.into()
    }

    fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        self.take_bom(&mut out, true);
        self.drain(&mut out, true);
        // An unterminated last event is not dispatched by a client either; pass it as is
        // unless it holds a tool list.
        let rest = std::mem::take(&mut self.pending);
        if !self.skipping && !mentions_tools(&rest) {
            out.extend_from_slice(&rest);
        }
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn visible() -> Visible {
        Box::new(|name| name != "secret")
    }

    fn list(id: i64) -> Value {
        json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
            {"name":"echo","inputSchema":{"type":"object"}},
            {"name":"secret","inputSchema":{"type":"object"}},
            {"inputSchema":{}}
        ]}})
    }

    fn names(v: &Value) -> Vec<&str> {
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    fn changed(f: Filtered) -> Value {
        match f {
            Filtered::Changed(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_lists_and_batches_are_filtered_and_other_messages_pass() {
        let v = visible();
        let out = changed(filter(list(1).to_string().as_bytes(), &*v));
        assert_eq!(names(&out), ["echo"]);
        let batch = json!([list(1), {"jsonrpc":"2.0","id":2,"result":{"content":[]}}]);
        let out = changed(filter(batch.to_string().as_bytes(), &*v));
        assert_eq!(names(&out[0]), ["echo"]);
        assert_eq!(out[1], batch[1]);
        // A request (it has a method) and a result without tools are left alone.
        let request =
            json!({"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"secret"}]}});
        assert_eq!(
            filter(request.to_string().as_bytes(), &*v),
            Filtered::Unchanged
        );
        assert_eq!(
            filter(
                br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]}}"#,
                &*v
            ),
            Filtered::Unchanged
        );
    }

    #[test]
    fn escaped_or_unparsable_tool_lists_do_not_pass() {
        let v = visible();
        // An escaped key is a key all the same.
        let escaped = br#"{"jsonrpc":"2.0","id":1,"result":{"tool\u0073":[{"name":"secret"}]}}"#;
        assert_eq!(names(&changed(filter(escaped, &*v))), Vec::<&str>::new());
        // JSON.parse reads a lone surrogate; serde_json does not: not passed unread.
        let lone =
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret","d":"\ud800"}]}}"#;
        assert_eq!(filter(lone, &*v), Filtered::Unreadable);
        let event = format!(
            "data: {}\n\nevent: next\ndata: ok\n\n",
            String::from_utf8_lossy(lone)
        );
        assert_eq!(
            through_events(event.as_bytes(), &[]),
            b"event: next\ndata: ok\n\n"
        );
        let mut f = JsonFilter::new(visible());
        let _ = f.push(lone);
        assert!(String::from_utf8_lossy(&f.finish()).contains("could not be read"));
    }

    #[test]
    fn a_json_body_in_pieces_is_filtered_at_its_end() {
        let mut f = JsonFilter::new(visible());
        let text = list(3).to_string();
        let (a, b) = text.as_bytes().split_at(10);
        assert!(f.push(a).is_empty() && f.push(b).is_empty());
        let out: Value = serde_json::from_slice(&f.finish()).unwrap();
        assert_eq!(names(&out), ["echo"]);
    }

    fn through_events(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut f = EventFilter::new(visible());
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            let cut = cut.min(input.len()).max(at);
            out.extend_from_slice(&f.push(&input[at..cut]));
            at = cut;
        }
        out.extend_from_slice(&f.finish());
        out
    }

    #[test]
    fn events_are_filtered_at_every_split_and_others_pass_byte_for_byte() {
        for newline in ["\n", "\r\n", "\r"] {
            let stream = format!(
                ": ping{n}{n}event: message{n}id: 1{n}data: {}{n}{n}event: message{n}data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}}{n}{n}",
                list(1),
                n = newline
            );
            let one_shot = through_events(stream.as_bytes(), &[]);
            let text = String::from_utf8(one_shot.clone()).unwrap();
            assert!(!text.contains("secret"), "{text:?}");
            assert!(text.contains("\"echo\""));
            assert!(text.starts_with(&format!(
                ": ping{newline}{newline}event: message\nid: 1\ndata: "
            )));
            assert!(text.ends_with(&format!(
                "event: message{n}data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}}{n}{n}",
                n = newline
            )));
            for cut in 0..stream.len() {
                assert_eq!(
                    through_events(stream.as_bytes(), &[cut]),
                    one_shot,
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_leading_byte_order_mark_does_not_hide_a_tool_list() {
        let stream = format!("\u{feff}data: {}\n\n", list(1));
        for cut in 0..6 {
            let out = String::from_utf8(through_events(stream.as_bytes(), &[cut])).unwrap();
            assert!(
                out.starts_with('\u{feff}') && !out.contains("secret"),
                "{cut}: {out:?}"
            );
        }
    }

    #[test]
    fn multi_line_data_is_joined_as_a_client_joins_it() {
        let stream = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\n\
                      data: \"result\":{\"tools\":[{\"name\":\"secret\"},{\"name\":\"echo\"}]}}\n\n";
        let out = String::from_utf8(through_events(stream.as_bytes(), &[])).unwrap();
        assert_eq!(
            out,
            "data: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[{\"name\":\"echo\"}]}}\n\n"
        );
    }

    #[test]
    fn a_crlf_split_after_an_oversized_line_does_not_end_the_event() {
        let long = format!("data: {}\r", "x".repeat(MAX_MESSAGE + 10));
        let stream = format!("{long}\ndata: tail\r\n\r\nevent: next\ndata: ok\n\n");
        let one_shot = through_events(stream.as_bytes(), &[]);
        assert_eq!(one_shot, b"event: next\ndata: ok\n\n");
        assert_eq!(through_events(stream.as_bytes(), &[long.len()]), one_shot);
    }

    #[test]
    fn an_event_too_large_to_filter_is_dropped() {
        let big = format!(
            "data: {{\"result\":{{\"tools\":[{{\"name\":\"secret\",\"d\":\"{}\"}}]}}}}\n\nevent: next\ndata: ok\n\n",
            "x".repeat(MAX_MESSAGE)
        );
        let out =
            String::from_utf8(through_events(big.as_bytes(), &[1000, MAX_MESSAGE / 2])).unwrap();
        assert_eq!(out, "event: next\ndata: ok\n\n");
        // Cut off before its end: a tool list is not passed either.
        let cut = "data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}";
        assert_eq!(through_events(cut.as_bytes(), &[]), b"");
    }
}
