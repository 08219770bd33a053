//! A reference `text/event-stream` reader, written from the WHATWG HTML spec ("Interpreting an
//! event stream"), for checking what a client makes of the gateway's output; and a splitter
//! into raw events for byte-level comparisons.

/// One dispatched event, as a browser `EventSource` or the MCP SDKs see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: String,
    pub data: String,
}

/// A line's content and its terminator.
pub type Line<'a> = (&'a [u8], &'a [u8]);

/// The lines of `stream` with their terminators (CRLF, LF or CR), and the unterminated rest
/// (possibly empty).
pub fn lines(stream: &[u8]) -> (Vec<Line<'_>>, &[u8]) {
    let mut out = Vec::new();
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let end = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
            i + 2
        } else {
            i + 1
        };
        out.push((&rest[..i], &rest[i..end]));
        rest = &rest[end..];
    }
    (out, rest)
}

/// The events a client dispatches from the complete stream `stream` (UTF-8 decoded with
/// replacement, one leading BOM dropped; an event cut off before its blank line is never
/// dispatched).
pub fn events(stream: &[u8]) -> Vec<Event> {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let (lines, _unterminated) = lines(text.as_bytes());
    let mut out = Vec::new();
    let mut event_type = String::new();
    let mut data = String::new();
    for (line, _) in lines {
        let line = std::str::from_utf8(line).expect("split at ASCII bytes of valid UTF-8");
        if line.is_empty() {
            if !data.is_empty() {
                if data.ends_with('\n') {
                    data.pop();
                }
                out.push(Event {
                    event_type: if event_type.is_empty() {
                        "message".into()
                    } else {
                        event_type.clone()
                    },
                    data: std::mem::take(&mut data),
                });
            }
            data.clear();
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The stream cut into raw events: each complete event is its bytes up to and including the
/// terminator of its blank line; the rest (an unfinished event) is returned apart. A BOM at
/// the very start does not count as line content.
pub fn raw_events(stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let bom = if stream.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let (lines, _) = lines(&stream[bom..]);
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = bom;
    for (line, term) in lines {
        at += line.len() + term.len();
        if line.is_empty() {
            out.push(&stream[start..at]);
            start = at;
        }
    }
    (out, &stream[start..])
}
