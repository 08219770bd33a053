//! Rewrites the `endpoint` event of a legacy HTTP+SSE stream, which carries the system key.
//!
//! When the gateway opens `GET <upstream>/sse` with the system key, the Functions MCP extension
//! answers `event: endpoint` / `data: message?azmcpcs=<state>&code=<SYSTEM KEY>`: relative to the
//! SSE URL by default, absolute (`https://<app>/runtime/webhooks/mcp/message?...`) with
//! `messageOptions.useAbsoluteUriForEndpoint`. [`EndpointRewriter`] replaces that URL by the
//! public message route, keeping every query parameter but `code`, and passes the rest of the
//! stream through byte for byte, holding back no more than it must:
//!
//! - A line is held until its terminator (LF, CR or CRLF, as the SSE spec allows).
//! - An event whose `event:` field names another type is passed line by line.
//! - An event whose type is not known yet passes its leading non-`data` lines (comments, `id:`,
//!   `retry:`) at once; from its first `data:` line on it is held, because a later
//!   `event: endpoint` line would make that data the endpoint URL. The Functions extension writes
//!   `event:` first, so in practice only `event: endpoint` events are held.
//! - A held event is bounded ([`MAX_HELD_EVENT_BYTES`]); past that it is dropped (its blank line
//!   still passes, so the client's framing stays intact), as is an endpoint event whose URL is
//!   not on the upstream message route and an event that turns into an endpoint event after its
//!   first lines were passed. A dropped endpoint event leaves the client without a message URL,
//!   which is loud; a leaked system key would be silent.
//! - Each line passes with its own terminator, except that the blank line ending an event goes
//!   as CRLF, not LF, when dropped or rewritten lines before it leave the line sent before it
//!   ending in a lone CR (which the LF would otherwise complete into one CRLF, losing the
//!   blank line and with it the event's end).
//! - Defence in depth: in every line passed, a `code` parameter in the query after
//!   `<last segment of the upstream message path>?` (`message?`) is removed, whatever the event.
//!
//! The public URL is written as given; the gateway passes the root-relative `<prefix>/message`,
//! which the client resolves against the origin it actually connected to (the TypeScript SDK
//! refuses an endpoint on another origin), so no host is ever guessed.

use std::borrow::Cow;

use bytes::Bytes;
use url::Url;

use crate::code_param;

/// The most an event that may be an endpoint event is held before it is dropped. An endpoint
/// event is one short URL; this only stops an endless event from growing memory.
pub const MAX_HELD_EVENT_BYTES: usize = 64 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An incremental `endpoint` event rewriter for one upstream SSE stream.
pub struct EndpointRewriter {
    /// Replaces the (key-free) query of the endpoint URL: the gateway seals it to the
    /// authenticated subject, so message POSTs are bound to whoever opened the stream.
    query_sealer: Option<QuerySealer>,
    public_message_url: String,
    upstream_message_path: String,
    /// `<last segment of the upstream message path>?`, which starts a query worth scrubbing.
    anchor: Vec<u8>,
    /// The current line, without terminator.
    line: Vec<u8>,
    /// Whether the current line has any byte (a dropped line's bytes are not kept).
    line_started: bool,
    /// Clients ignore a byte order mark at the very start of the stream; so must the parser.
    first_line: bool,
    /// The last chunk ended with a CR: an LF opening the next one completes a CRLF and follows
    /// the line it ends.
    cr_sink: Option<Sink>,
    /// The last byte sent to the client is a CR, which ended a line.
    sent_cr: bool,
    state: State,
    held: Vec<HeldLine>,
    held_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No `event:` field yet in this event.
    Undecided,
    /// `event: endpoint` seen: every line is held until the blank line.
    Endpoint,
    /// Another event type: lines pass as they complete.
    Passing,
    /// Lines are dropped until the blank line.
    Dropping,
}

/// Where a completed line went, so that the LF of a CRLF split across chunks follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Sent,
    Held,
    Dropped,
}

#[derive(Debug)]
struct HeldLine {
    /// Content and terminator.
    bytes: Vec<u8>,
    content_len: usize,
    /// Where the value starts, for a `data` line.
    data_at: Option<usize>,
}

enum Field<'a> {
    Blank,
    Event(&'a [u8]),
    Data {
        value_at: usize,
    },
    /// A comment, `id`, `retry` or unknown field: passed unchanged.
    Other,
}

/// Turns the upstream's message query into what the client is given instead.
pub type QuerySealer = Box<dyn Fn(&str) -> String + Send + Sync>;

impl EndpointRewriter {
    /// Seals the endpoint's query (see [`QuerySealer`]).
    pub fn with_query_sealer(mut self, sealer: QuerySealer) -> Self {
        self.query_sealer = Some(sealer);
        self
    }

    /// `public_message_url`: what clients POST to, root-relative (`/weather/message`) or
    /// absolute, without query. `upstream_message_path`: the extension's message route
    /// (`/runtime/webhooks/mcp/message`), which relative endpoint URLs are resolved against.
    pub fn new(public_message_url: String, upstream_message_path: String) -> Self {
        let anchor = message_anchor(&upstream_message_path);
        Self {
            query_sealer: None,
            public_message_url,
            upstream_message_path,
            anchor,
            line: Vec::new(),
            line_started: false,
            first_line: true,
            cr_sink: None,
            sent_cr: false,
            state: State::Undecided,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Takes the next upstream bytes; returns what can be sent to the client now (empty while
    /// a line or a held event is incomplete).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len() + self.line.len());
        let mut rest = chunk;
        if let Some(&first) = rest.first()
            && let Some(sink) = self.cr_sink.take()
            && first == b'\n'
        {
            self.route_lf(sink, &mut out);
            rest = &rest[1..];
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.extend_line(&rest[..i]);
            let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
            let end = i + 1 + usize::from(crlf);
            let sink = self.end_line(&rest[i..end], &mut out);
            if rest[i] == b'\r' && !crlf && end == rest.len() {
                self.cr_sink = Some(sink);
            }
            rest = &rest[end..];
        }
        self.extend_line(rest);
        if let Some(&last) = out.last() {
            self.sent_cr = last == b'\r';
        }
        Bytes::from(out)
    }

    /// End of the upstream stream. Clients never dispatch an event cut off before its blank
    /// line, so what is still held is dropped rather than risk a key; an unterminated last line
    /// passes only when it cannot be an endpoint URL (its event has another type, or it is not a
    /// `data` line and nothing is held).
    pub fn finish(&mut self) -> Bytes {
        let mut out = Vec::new();
        if self.line_started {
            let content = scrub(&self.line, &self.anchor);
            let pass = match self.state {
                State::Passing => true,
                State::Undecided => {
                    self.held.is_empty()
                        && !matches!(parse(&content, self.first_line), Field::Data { .. })
                }
                State::Endpoint | State::Dropping => false,
            };
            if pass {
                out.extend_from_slice(&content);
            }
        }
        self.line.clear();
        self.line_started = false;
        self.cr_sink = None;
        self.clear_event();
        Bytes::from(out)
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.line_started = true;
        if self.state == State::Dropping {
            return;
        }
        self.line.extend_from_slice(bytes);
        if matches!(self.state, State::Undecided | State::Endpoint)
            && self.held_bytes + self.line.len() > MAX_HELD_EVENT_BYTES
        {
            self.drop_event(
                "it is larger than the limit for an event that may be an endpoint event",
            );
        }
    }

    fn end_line(&mut self, term: &[u8], out: &mut Vec<u8>) -> Sink {
        let first_line = std::mem::replace(&mut self.first_line, false);
        let started = std::mem::replace(&mut self.line_started, false);
        let raw = std::mem::take(&mut self.line);
        if self.state == State::Dropping {
            if started {
                return Sink::Dropped;
            }
            self.clear_event();
            return self.send_blank(out, b"", term);
        }
        let content = scrub(&raw, &self.anchor);
        let field = parse(&content, first_line);
        match (self.state, field) {
            (_, Field::Blank) => {
                match self.state {
                    State::Undecided => self.flush_held(out),
                    State::Endpoint => self.emit_endpoint(out),
                    State::Passing | State::Dropping => {}
                }
                self.clear_event();
                self.send_blank(out, &content, term)
            }
            (State::Undecided | State::Endpoint, Field::Event(b"endpoint")) => {
                self.state = State::Endpoint;
                self.hold(content, term, None)
            }
            (State::Undecided | State::Endpoint, Field::Event(_)) => {
                self.state = State::Passing;
                self.flush_held(out);
                send(out, &content, term)
            }
            (State::Undecided | State::Endpoint, Field::Data { value_at }) => {
                self.hold(content, term, Some(value_at))
            }
            (State::Undecided, Field::Other) if self.held.is_empty() => send(out, &content, term),
            (State::Undecided | State::Endpoint, Field::Other) => self.hold(content, term, None),
            (State::Passing, Field::Event(b"endpoint")) => {
                self.drop_event("it became an endpoint event after its first lines were sent");
                Sink::Dropped
            }
            (State::Passing, _) => send(out, &content, term),
            (State::Dropping, _) => unreachable!("dropped lines return early"),
        }
    }

    /// Sends the blank line that ends an event. When lines before it were dropped or rewritten,
    /// the line sent before it may end in a lone CR; an LF right after that would make one CRLF
    /// of the two and the event would never end, so the blank line then goes as CRLF.
    fn send_blank(&self, out: &mut Vec<u8>, content: &[u8], term: &[u8]) -> Sink {
        let after_cr = out.last().map_or(self.sent_cr, |&b| b == b'\r');
        if after_cr && content.is_empty() && term == b"\n" {
            out.push(b'\r');
        }
        send(out, content, term)
    }

    fn hold(&mut self, content: Cow<'_, [u8]>, term: &[u8], data_at: Option<usize>) -> Sink {
        let mut bytes = content.into_owned();
        let content_len = bytes.len();
        bytes.extend_from_slice(term);
        self.held_bytes += bytes.len();
        self.held.push(HeldLine {
            bytes,
            content_len,
            data_at,
        });
        Sink::Held
    }

    fn route_lf(&mut self, sink: Sink, out: &mut Vec<u8>) {
        match sink {
            Sink::Sent => out.push(b'\n'),
            Sink::Held => {
                if let Some(last) = self.held.last_mut() {
                    last.bytes.push(b'\n');
                    self.held_bytes += 1;
                }
            }
            Sink::Dropped => {}
        }
    }

    fn flush_held(&mut self, out: &mut Vec<u8>) {
        for line in self.held.drain(..) {
            out.extend_from_slice(&line.bytes);
        }
        self.held_bytes = 0;
    }

    /// Writes the held endpoint event with its data lines replaced by one rewritten `data:`
    /// line, or nothing if its URL is not one the gateway can route.
    fn emit_endpoint(&mut self, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let data: Vec<&[u8]> = held
            .iter()
            .filter_map(|line| line.data_at.map(|at| &line.bytes[at..line.content_len]))
            .collect();
        if data.is_empty() {
            // No data, so clients dispatch nothing: pass it as it is.
            held.iter()
                .for_each(|line| out.extend_from_slice(&line.bytes));
            return;
        }
        // Several data lines are one value joined by LF, as clients see it.
        let value = String::from_utf8_lossy(&data.join(&b'\n')).into_owned();
        let rewritten = rewrite_endpoint_url(
            &value,
            &self.public_message_url,
            &self.upstream_message_path,
        );
        let Some(url) = rewritten.map(|url| match (&self.query_sealer, url.split_once('?')) {
            (Some(seal), Some((path, query))) => format!("{path}?{}", seal(query)),
            _ => url,
        }) else {
            tracing::warn!(
                upstream_message_path = %self.upstream_message_path,
                "dropped the upstream SSE endpoint event: its URL is not on the upstream message \
                 route, so the client cannot be given a gateway URL for it"
            );
            return;
        };
        let mut written = false;
        for line in &held {
            match line.data_at {
                Some(_) if written => {}
                Some(_) => {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(url.as_bytes());
                    out.extend_from_slice(&line.bytes[line.content_len..]);
                    written = true;
                }
                None => out.extend_from_slice(&line.bytes),
            }
        }
    }

    fn drop_event(&mut self, why: &'static str) {
        tracing::warn!(
            reason = why,
            "dropped an upstream SSE event that could carry the system key"
        );
        self.held.clear();
        self.held_bytes = 0;
        self.line.clear();
        self.state = State::Dropping;
    }

    fn clear_event(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
        self.state = State::Undecided;
    }
}

/// `<last segment of the upstream message path>?`, which starts a query worth scrubbing.
impl crate::body::Transform for EndpointRewriter {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        EndpointRewriter::push(self, chunk)
    }

    fn finish(&mut self) -> Bytes {
        EndpointRewriter::finish(self)
    }
}

fn message_anchor(upstream_message_path: &str) -> Vec<u8> {
    let segment = upstream_message_path.rsplit('/').next().unwrap_or_default();
    format!("{segment}?").into_bytes()
}

fn send(out: &mut Vec<u8>, content: &[u8], term: &[u8]) -> Sink {
    out.extend_from_slice(content);
    out.extend_from_slice(term);
    Sink::Sent
}

/// Splits a line as the SSE spec does: `name[:[ ]value]`, `:` starting a comment.
fn parse(content: &[u8], first_line: bool) -> Field<'_> {
    let start = if first_line && content.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    let line = &content[start..];
    if line.is_empty() {
        return Field::Blank;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return match line {
            b"data" => Field::Data {
                value_at: content.len(),
            },
            b"event" => Field::Event(b""),
            _ => Field::Other,
        };
    };
    let value_at = start + colon + 1 + usize::from(line.get(colon + 1) == Some(&b' '));
    match &line[..colon] {
        b"data" => Field::Data { value_at },
        b"event" => Field::Event(&content[value_at..]),
        _ => Field::Other,
    }
}

/// Rewrites an endpoint URL (relative, root-relative or absolute; relative ones resolve against
/// `upstream_message_path` as they would against the SSE URL beside it) to `public_message_url`
/// plus the original query without any `code` parameter ([`code_param::strip`]). `None` if
/// the URL is not an http(s) URL on the upstream message route, or `public_message_url` is not
/// visible ASCII.
pub fn rewrite_endpoint_url(
    data: &str,
    public_message_url: &str,
    upstream_message_path: &str,
) -> Option<String> {
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if data.trim().is_empty() || !printable(public_message_url) {
        return None;
    }
    // Resolves like a client does (including stripping tabs and newlines), so what is checked is
    // what the client would have used.
    let base = Url::parse("http://upstream.invalid/")
        .ok()?
        .join(upstream_message_path)
        .ok()?;
    let url = base.join(data).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.path().eq_ignore_ascii_case(base.path()) {
        return None;
    }
    // The query may hold a nested message URL whose `code` only shows once a pair before it
    // is gone: scrub it as any passed line is.
    let query = code_param::strip(url.query().unwrap_or_default());
    let anchor = message_anchor(upstream_message_path);
    let query = String::from_utf8_lossy(&scrub(query.as_bytes(), &anchor)).into_owned();
    Some(if query.is_empty() {
        public_message_url.to_owned()
    } else {
        format!("{public_message_url}?{query}")
    })
}

/// Removes `code` parameters from every query that follows `anchor` in `line`, the last first:
/// a query may hold another URL with a query of its own (`message?next=…/message?code=…`),
/// which is scrubbed before the one around it. Removing a pair can put a later anchor at a
/// segment start (`message?code=1\u0026message?code=K` becomes `message?message?code=K`), so
/// passes repeat until one removes nothing; each pass that changes the line shortens it.
fn scrub<'a>(line: &'a [u8], anchor: &[u8]) -> Cow<'a, [u8]> {
    if find_anchor(line, anchor, 0).is_none() {
        return Cow::Borrowed(line);
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    while scrub_pass(&mut text, anchor) {}
    Cow::Owned(text.into_bytes())
}

/// One pass of [`scrub`]; whether it removed anything.
fn scrub_pass(text: &mut String, anchor: &[u8]) -> bool {
    let mut anchors: Vec<usize> = Vec::new();
    let mut from = 0;
    while let Some(at) = find_anchor(text.as_bytes(), anchor, from) {
        anchors.push(at);
        from = at + 1;
    }
    let mut changed = false;
    for at in anchors.into_iter().rev() {
        let query_start = at + anchor.len();
        let query_end = query_start + query_len(&text.as_bytes()[query_start..]);
        if let Cow::Owned(stripped) = code_param::strip(&text[query_start..query_end]) {
            text.replace_range(query_start..query_end, &stripped);
            changed = true;
        }
    }
    changed
}

/// The next `anchor` at a path-segment start (so `message?` but not `mymessage?`).
fn find_anchor(hay: &[u8], anchor: &[u8], from: usize) -> Option<usize> {
    let segment_byte =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%');
    (from..=hay.len().checked_sub(anchor.len())?)
        .find(|&i| hay[i..].starts_with(anchor) && (i == 0 || !segment_byte(hay[i - 1])))
}

/// How far a query runs: to the first byte that cannot be in a URL (whitespace, quotes, `<>`,
/// `#`), reading JSON's `\u0026` as the `&` it encodes.
fn query_len(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if code_param::separator_len(&bytes[i..]) > 0 => i += 6,
            b if b.is_ascii_whitespace()
                || b.is_ascii_control()
                || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b'#' | b'\\') =>
            {
                break;
            }
            _ => i += 1,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "SyStEmKeY_0123456789abcdefAzFuXyZ==";
    const PUBLIC: &str = "/weather/message";
    const UPSTREAM: &str = "/runtime/webhooks/mcp/message";

    fn rewriter() -> EndpointRewriter {
        EndpointRewriter::new(PUBLIC.into(), UPSTREAM.into())
    }

    fn one_shot(input: &[u8]) -> Vec<u8> {
        let mut r = rewriter();
        let mut out = r.push(input).to_vec();
        out.extend_from_slice(&r.finish());
        out
    }

    fn in_pieces(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut r = rewriter();
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in cuts {
            out.extend_from_slice(&r.push(&input[last..cut]));
            last = cut;
        }
        out.extend_from_slice(&r.push(&input[last..]));
        out.extend_from_slice(&r.finish());
        out
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn rewrite(data: &str) -> Option<String> {
        rewrite_endpoint_url(data, PUBLIC, UPSTREAM)
    }

    /// What the extension sends: the endpoint, then JSON-RPC messages, pings as comments.
    fn azure_stream(newline: &str) -> String {
        [
            "event: endpoint".to_string(),
            format!("data: message?azmcpcs=Q2xpZW50U3RhdGU%3D&code={KEY}"),
            String::new(),
            ": ping".into(),
            String::new(),
            "event: message".into(),
            r#"data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_weather","description":"code=1 message?"}]}}"#.into(),
            "id: 7".into(),
            String::new(),
            "retry: 3000".into(),
            String::new(),
        ]
        .join(newline)
            + newline
    }

    fn azure_expected(newline: &str) -> String {
        azure_stream(newline).replace(
            &format!("data: message?azmcpcs=Q2xpZW50U3RhdGU%3D&code={KEY}"),
            "data: /weather/message?azmcpcs=Q2xpZW50U3RhdGU%3D",
        )
    }

    #[test]
    fn rewrites_the_azure_endpoint_event() {
        let input = azure_stream("\n");
        let out = text(&one_shot(input.as_bytes()));
        assert_eq!(out, azure_expected("\n"));
        assert!(
            out.starts_with(
                "event: endpoint\ndata: /weather/message?azmcpcs=Q2xpZW50U3RhdGU%3D\n\n"
            )
        );
    }

    #[test]
    fn rewrites_root_relative_and_absolute_endpoints() {
        for data in [
            format!("/runtime/webhooks/mcp/message?azmcpcs=abc&code={KEY}"),
            format!(
                "https://app.azurewebsites.net/runtime/webhooks/mcp/message?azmcpcs=abc&code={KEY}"
            ),
            format!("http://localhost:7071/runtime/webhooks/mcp/message?azmcpcs=abc&code={KEY}"),
        ] {
            let input = format!("event: endpoint\ndata: {data}\n\n");
            assert_eq!(
                text(&one_shot(input.as_bytes())),
                "event: endpoint\ndata: /weather/message?azmcpcs=abc\n\n",
                "{data}"
            );
        }
    }

    #[test]
    fn code_is_removed_wherever_it_is_in_the_query() {
        let cases = [
            (
                format!("message?code={KEY}&azmcpcs=abc&x=1"),
                "/weather/message?azmcpcs=abc&x=1",
            ),
            (
                format!("message?azmcpcs=abc&code={KEY}&x=1"),
                "/weather/message?azmcpcs=abc&x=1",
            ),
            (
                format!("message?azmcpcs=abc&x=1&code={KEY}"),
                "/weather/message?azmcpcs=abc&x=1",
            ),
            (format!("message?code={KEY}"), "/weather/message"),
            ("message?azmcpcs=abc".into(), "/weather/message?azmcpcs=abc"),
            ("message".into(), "/weather/message"),
            (
                format!("message?azmcpcs=abc&code={KEY}&code=again"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("message?azmcpcs=abc&CODE={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("message?azmcpcs=abc&%63ode={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("message?azmcpcs=abc&c%6F%64e={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("message?azmcpcs=abc;code={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("message?azmcpcs=abc&code={KEY}#frag"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("  message?azmcpcs=abc&code={KEY}  "),
                "/weather/message?azmcpcs=abc",
            ),
            // Parameters that merely contain "code" stay.
            (
                "message?azmcpcs=abc&codec=1&xcode=2&c=code".into(),
                "/weather/message?azmcpcs=abc&codec=1&xcode=2&c=code",
            ),
            // Relative references resolve as a client resolves them.
            (
                format!("./message?azmcpcs=abc&code={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("../mcp/message?azmcpcs=abc&code={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
            (
                format!("/runtime/webhooks/MCP/Message?azmcpcs=abc&code={KEY}"),
                "/weather/message?azmcpcs=abc",
            ),
        ];
        for (data, expected) in cases {
            assert_eq!(rewrite(&data).as_deref(), Some(expected), "{data}");
        }
    }

    #[test]
    fn endpoint_urls_off_the_message_route_are_refused() {
        for data in [
            format!("/runtime/webhooks/mcp/other?code={KEY}"),
            format!("sse?code={KEY}"),
            format!("//evil.example/steal?code={KEY}"),
            format!("ftp://app/runtime/webhooks/mcp/message?code={KEY}"),
            "".into(),
            "   ".into(),
        ] {
            assert_eq!(rewrite(&data), None, "{data}");
        }
        assert_eq!(
            rewrite_endpoint_url("message?a=1", "/x\n/message", UPSTREAM),
            None
        );
        assert_eq!(rewrite_endpoint_url("message?a=1", "", UPSTREAM), None);
        assert_eq!(
            rewrite_endpoint_url("message?a=1", "https://mcp.example.com/w/message", UPSTREAM)
                .as_deref(),
            Some("https://mcp.example.com/w/message?a=1")
        );

        // In a stream, such an event is dropped whole; the rest goes on.
        let input = format!(
            "id: 1\nevent: endpoint\ndata: /elsewhere?code={KEY}\n\nevent: message\ndata: 1\n\n"
        );
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "id: 1\n\nevent: message\ndata: 1\n\n"
        );
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        for newline in ["\r\n", "\r"] {
            let out = text(&one_shot(azure_stream(newline).as_bytes()));
            assert_eq!(out, azure_expected(newline), "{newline:?}");
        }
        // Mixed within one stream.
        let input = format!("event: endpoint\r\ndata: message?azmcpcs=a&code={KEY}\r\r\n: x\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "event: endpoint\r\ndata: /weather/message?azmcpcs=a\r\r\n: x\n\n"
        );
    }

    #[test]
    fn every_split_point_gives_the_one_shot_output() {
        for newline in ["\n", "\r\n", "\r"] {
            let input = azure_stream(newline).repeat(2);
            let input = input.as_bytes();
            let expected = one_shot(input);
            assert_eq!(text(&expected), azure_expected(newline).repeat(2));
            for cut in 0..=input.len() {
                assert_eq!(
                    in_pieces(input, &[cut]),
                    expected,
                    "cut at {cut} ({newline:?})"
                );
            }
            let every_byte: Vec<usize> = (1..input.len()).collect();
            assert_eq!(
                in_pieces(input, &every_byte),
                expected,
                "byte by byte ({newline:?})"
            );
        }
    }

    #[test]
    fn other_events_pass_byte_for_byte() {
        let input = concat!(
            ":ok\n\n",
            "retry: 1000\n",
            "id: 42\n",
            "event: message\n",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n",
            "data:second line\n",
            "\n",
            "data: no event line, default type\n",
            "id\n",
            "\n",
            "event: message\r\n",
            ": comment inside\r\n",
            "unknown: field\r\n",
            "data\r\n",
            "\r\n",
            "event\n",
            "data: empty event name\n\n",
            "\u{feff}is not a BOM here\n\n",
        );
        assert_eq!(text(&one_shot(input.as_bytes())), input);
        let every_byte: Vec<usize> = (1..input.len()).collect();
        assert_eq!(text(&in_pieces(input.as_bytes(), &every_byte)), input);
    }

    #[test]
    fn other_events_are_not_held_beyond_the_current_line() {
        let mut r = rewriter();
        assert_eq!(&r.push(b": keepalive\n")[..], b": keepalive\n");
        assert_eq!(
            &r.push(b"id: 3\nevent: message\ndata: {\"a\"")[..],
            b"id: 3\nevent: message\n"
        );
        assert_eq!(&r.push(b":1}\r")[..], b"data: {\"a\":1}\r");
        assert_eq!(&r.push(b"\n\r\n")[..], b"\n\r\n");
        // An endpoint event is held until its blank line.
        assert_eq!(&r.push(b"event: endpoint\ndata: message?a=1\n")[..], b"");
        assert_eq!(
            &r.push(b"\n")[..],
            b"event: endpoint\ndata: /weather/message?a=1\n\n"
        );
        assert_eq!(&r.finish()[..], b"");
    }

    #[test]
    fn event_line_after_the_data_line() {
        let input = format!("id: 1\ndata: message?azmcpcs=a&code={KEY}\nevent: endpoint\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "id: 1\ndata: /weather/message?azmcpcs=a\nevent: endpoint\n\n"
        );
        // Last `event:` wins: an endpoint event renamed is another event, passed (and scrubbed).
        let input =
            format!("event: endpoint\ndata: message?azmcpcs=a&code={KEY}\nevent: message\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "event: endpoint\ndata: message?azmcpcs=a\nevent: message\n\n"
        );
        // An event renamed to endpoint after lines were passed is dropped from there on.
        let input = format!(
            "event: message\ndata: x\nevent: endpoint\ndata: message?code={KEY}\n\ndata: y\n\n"
        );
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "event: message\ndata: x\n\ndata: y\n\n"
        );
    }

    #[test]
    fn multi_line_endpoint_data_is_joined_like_a_client_joins_it() {
        // Clients join data lines with LF, and URL parsers drop the LF: still the same URL.
        let input = format!("event: endpoint\ndata: message?azmcpcs=a&co\ndata: de={KEY}\n\n");
        let out = text(&one_shot(input.as_bytes()));
        assert_eq!(out, "event: endpoint\ndata: /weather/message?azmcpcs=a\n\n");
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_endpoint_event() {
        let input = format!("\u{feff}event: endpoint\ndata: message?azmcpcs=a&code={KEY}\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "\u{feff}event: endpoint\ndata: /weather/message?azmcpcs=a\n\n"
        );
    }

    #[test]
    fn oversized_events_that_may_be_endpoints_are_dropped() {
        let big = "x".repeat(MAX_HELD_EVENT_BYTES);
        let input = format!(
            "event: endpoint\ndata: message?azmcpcs={big}&code={KEY}\n\nevent: message\ndata: after\n\n"
        );
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "\nevent: message\ndata: after\n\n"
        );
        // Many small lines add up the same way.
        let lines = "data: 0123456789abcdef\n".repeat(MAX_HELD_EVENT_BYTES / 16);
        let input = format!("event: endpoint\n{lines}\n: next\n\n");
        assert_eq!(text(&one_shot(input.as_bytes())), "\n: next\n\n");
        // An event of unknown type is held from its first data line, so it is bounded too.
        let input = format!("data: {big}\n\nevent: message\ndata: after\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "\nevent: message\ndata: after\n\n"
        );
        // A large event of another type is not held, so not bounded.
        let input = format!("event: message\ndata: {big}{big}\n\n");
        assert_eq!(text(&one_shot(input.as_bytes())), input);
    }

    #[test]
    fn a_lone_cr_before_dropped_lines_does_not_swallow_the_blank_line() {
        // Found by fuzzing: the rewritten line kept the first data line's CR, the second data
        // line went, and the blank line's LF made "\r\n" of it: the event never ended.
        let cases = [
            (
                format!(
                    "event: endpoint\ndata: message?a=1\rdata: &code={KEY}\n\nevent: message\ndata: y\n\n"
                ),
                "event: endpoint\ndata: /weather/message?a=1\r\r\nevent: message\ndata: y\n\n",
            ),
            // A refused endpoint event after a line already passed.
            (
                format!("id: 1\revent: endpoint\ndata: /elsewhere?code={KEY}\n\ndata: y\n\n"),
                "id: 1\r\r\ndata: y\n\n",
            ),
            // An event dropped after its first lines were passed.
            (
                format!(
                    "event: message\rdata: x\revent: endpoint\ndata: message?code={KEY}\n\ndata: y\n\n"
                ),
                "event: message\rdata: x\r\r\ndata: y\n\n",
            ),
        ];
        for (input, expected) in cases {
            let input = input.as_bytes();
            assert_eq!(text(&one_shot(input)), expected, "{input:?}");
            let every_byte: Vec<usize> = (1..input.len()).collect();
            assert_eq!(text(&in_pieces(input, &every_byte)), expected, "{input:?}");
        }
    }

    #[test]
    fn defence_in_depth_strips_code_from_any_line() {
        let cases = [
            (
                format!("event: message\ndata: see /runtime/webhooks/mcp/message?azmcpcs=a&code={KEY} now\n\n"),
                "event: message\ndata: see /runtime/webhooks/mcp/message?azmcpcs=a now\n\n".to_string(),
            ),
            (
                format!("event: message\ndata: {{\"u\":\"https://app/runtime/webhooks/mcp/message?code={KEY}\\u0026azmcpcs=a\"}}\n\n"),
                "event: message\ndata: {\"u\":\"https://app/runtime/webhooks/mcp/message?azmcpcs=a\"}\n\n".into(),
            ),
            (
                format!("data: message?azmcpcs=a\\u0026code={KEY}\n\n"),
                "data: message?azmcpcs=a\n\n".into(),
            ),
            (format!(": message?code={KEY}\n\n"), ": message?\n\n".into()),
            (format!("id: message?code={KEY}\n\n"), "id: message?\n\n".into()),
        ];
        for (input, expected) in cases {
            assert_eq!(text(&one_shot(input.as_bytes())), expected, "{input}");
        }
        // A URL inside a query: its own query is scrubbed too (found by fuzzing).
        let input = format!(
            "data: {{\"next\":\"/runtime/webhooks/mcp/message?to=https://app/runtime/webhooks/mcp/message?code={KEY}\\u0026azmcpcs=a\"}}\n\n"
        );
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "data: {\"next\":\"/runtime/webhooks/mcp/message?to=https://app/runtime/webhooks/mcp/message?azmcpcs=a\"}\n\n"
        );
        // Removing a pair can put a later `message?` at a segment start (`\u0026message?`
        // has none before it, `message?message?` has), which is scrubbed in turn (found by
        // fuzzing).
        let input = format!("id: message?code=1\\u0026message?code={KEY}\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "id: message?message?\n\n"
        );
        let input = format!("event: endpoint\ndata: message?code=1\\u0026message?code={KEY}\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "event: endpoint\ndata: /weather/message?message?\n\n"
        );
        let input = format!("id: message?message?code={KEY}&x=1\n\n");
        assert_eq!(
            text(&one_shot(input.as_bytes())),
            "id: message?message?x=1\n\n"
        );
        // Only after the message route's segment.
        let input = "data: mymessage?code=1 and /x?code=2\n\n";
        assert_eq!(text(&one_shot(input.as_bytes())), input);
    }

    #[test]
    fn end_of_stream() {
        // An endpoint event cut off before its blank line is dropped, held or not.
        for input in [
            format!("event: endpoint\ndata: message?code={KEY}\n"),
            format!("event: endpoint\ndata: message?code={KEY}"),
            format!("data: message?azmcpcs=a&code={KEY}\nevent: endp"),
            format!("data: message?code={KEY}"),
        ] {
            let out = text(&one_shot(input.as_bytes()));
            assert!(!out.contains("message?"), "{input:?} -> {out:?}");
        }
        // An unterminated line of another event passes.
        let input = "event: message\ndata: {\"partial\":";
        assert_eq!(text(&one_shot(input.as_bytes())), input);
        assert_eq!(text(&one_shot(b": bye")), ": bye");
        assert_eq!(text(&one_shot(b"id: 9")), "id: 9");
        // A trailing CR is a complete line.
        assert_eq!(
            text(&one_shot(b"event: message\rdata: x\r\r")),
            "event: message\rdata: x\r\r"
        );
    }

    /// splitmix64: deterministic, no crate needed.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A random stream of realistic events with random line endings; also returns whether it
    /// holds an endpoint event.
    fn random_stream(rng: &mut Rng) -> (Vec<u8>, bool) {
        let mut out = String::new();
        let mut endpoint = false;
        for _ in 0..1 + rng.below(8) {
            let nl = ["\n", "\r\n", "\r"][rng.below(3)];
            let event: Vec<String> = match rng.below(7) {
                0 => {
                    endpoint = true;
                    vec![
                        "event: endpoint".into(),
                        format!("data: message?azmcpcs=s{}&code={KEY}", rng.below(100)),
                    ]
                }
                1 => {
                    endpoint = true;
                    vec![
                        format!(
                            "data: https://app.azurewebsites.net{UPSTREAM}?code={KEY}&azmcpcs=z"
                        ),
                        "event: endpoint".into(),
                    ]
                }
                2 => vec![": ping".into()],
                3 => vec!["id: 12".into(), "retry: 5000".into()],
                4 => vec!["data: no type".into(), "data: two lines".into()],
                _ => {
                    let body = "é{\"jsonrpc\":\"2.0\"}".repeat(1 + rng.below(20));
                    vec![
                        "event: message".into(),
                        format!("data: {body}"),
                        "id: 5".into(),
                    ]
                }
            };
            for line in event {
                out.push_str(&line);
                out.push_str(nl);
            }
            out.push_str(nl);
        }
        (out.into_bytes(), endpoint)
    }

    #[test]
    fn random_streams_and_random_splits_agree_with_one_shot() {
        let mut rng = Rng(0x5EED);
        for round in 0..400 {
            let (input, has_endpoint) = random_stream(&mut rng);
            let expected = one_shot(&input);
            let expected_text = text(&expected);
            assert!(
                !expected_text.contains(KEY),
                "round {round}: {expected_text:?}"
            );
            if !has_endpoint {
                assert_eq!(expected, input, "round {round}");
            } else {
                assert!(
                    expected_text.contains("data: /weather/message"),
                    "round {round}"
                );
            }
            for _ in 0..20 {
                let mut cuts: Vec<usize> = (0..rng.below(12))
                    .map(|_| rng.below(input.len() + 1))
                    .collect();
                cuts.sort_unstable();
                let out = in_pieces(&input, &cuts);
                assert_eq!(out, expected, "round {round}, cuts {cuts:?}");
            }
        }
    }

    #[test]
    fn a_real_shaped_raw_key_goes_in_every_endpoint_form_at_every_split() {
        // What the host writes: 56 base64 characters, raw (`+`, `/`, `==` not encoded).
        let key = "Ab3+/x9ZqLmN0pQrStUvWxYz12345678+/abcdefghijKLMNOPqrst==";
        assert_eq!(key.len(), 56);
        for data in [
            format!("message?azmcpcs=Q2xp%2BZQ&code={key}"),
            format!("message?code={key}&azmcpcs=Q2xp%2BZQ"),
            format!("{UPSTREAM}?azmcpcs=Q2xp%2BZQ&code={key}"),
            format!("https://app.azurewebsites.net{UPSTREAM}?azmcpcs=Q2xp%2BZQ&code={key}"),
        ] {
            for newline in ["\n", "\r\n"] {
                let input = format!("event: endpoint{newline}data: {data}{newline}{newline}");
                let expected = format!(
                    "event: endpoint{newline}data: /weather/message?azmcpcs=Q2xp%2BZQ{newline}{newline}"
                );
                for cut in 0..=input.len() {
                    let out = text(&in_pieces(input.as_bytes(), &[cut]));
                    assert_eq!(out, expected, "{data:?} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn the_key_never_leaks_at_any_split_even_when_cut_short() {
        let input = azure_stream("\r\n");
        let input = input.as_bytes();
        for end in 0..=input.len() {
            for cut in [0, end / 3, end / 2, end.saturating_sub(1)] {
                let out = text(&in_pieces(&input[..end], &[cut]));
                // No prefix of the key longer than its first bytes appears either.
                assert!(!out.contains(&KEY[..4]), "end {end}, cut {cut}: {out:?}");
            }
        }
    }
}
