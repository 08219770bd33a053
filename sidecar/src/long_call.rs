//! Long calls: a Streamable HTTP request the upstream has not answered (no response headers)
//! within one keep-alive interval is answered on an event stream the gateway opens itself.
//!
//! Why: the Functions host writes nothing, not even headers, until a tool's result is ready,
//! and every hop in front of the gateway (an ingress with a 60 s read timeout, a load balancer
//! with a 4 or 5 minute idle limit) cuts a silent request. An event stream with SSE comment
//! keep-alives is valid Streamable HTTP for any POSTed request whose client accepts
//! `text/event-stream` (MCP requires clients to), and it keeps every hop busy until the result
//! comes, delivered as the stream's `message` event. A vanished client is noticed at the next
//! keep-alive, which drops the upstream request.
//!
//! What it costs: once the stream is open the HTTP status is 200 whatever the upstream says,
//! so a failure (timeout, upstream error) becomes a JSON-RPC error response with the request's
//! id, and the upstream's response headers are not seen by the client. So only requests that
//! can take long and need nothing from the headers qualify: one JSON-RPC request with an id,
//! not `initialize` (its response carries `Mcp-Session-Id`). Fast calls, which are almost all,
//! never reach this module and keep the upstream's exact status and headers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::body::{self, Body, BoxError, KEEP_ALIVE, RelayOptions};
use crate::forward;
use crate::metrics::{Metrics, Outcome, Route as RouteLabel};
use crate::tools_list::ToolsView;
use crate::upstream::UpstreamFailure;

/// The upstream request still in flight.
pub type Pending =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, UpstreamFailure>> + Send>>;

/// JSON-RPC's range for implementation-defined server errors starts here.
const SERVER_ERROR: i64 = -32000;

/// Whether the client takes an event stream as the answer to its POST.
pub fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// The id of the one JSON-RPC request in `body`, if it may be answered on a gateway-opened
/// stream (see the module docs); `None` for notifications, responses, batches and `initialize`.
pub fn request_id(body: &[u8]) -> Option<Value> {
    #[derive(Deserialize)]
    struct Request {
        id: Option<Value>,
        method: Option<String>,
    }
    let request: Request = serde_json::from_slice(body).ok()?;
    let method = request.method?;
    let id = request.id.filter(|id| id.is_string() || id.is_number())?;
    (method != "initialize").then_some(id)
}

/// The `message` event carrying a JSON-RPC error for request `id`.
pub fn error_event(id: &Value, status: StatusCode, message: &str) -> Bytes {
    let error = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": SERVER_ERROR,
            "message": message,
            "data": {"httpStatus": status.as_u16()},
        },
    });
    Bytes::from(format!("event: message\ndata: {error}\n\n"))
}

/// Start of the event that carries a JSON response body.
const JSON_EVENT_START: &[u8] = b"event: message\ndata: ";
const EVENT_END: &[u8] = b"\n\n";

/// A chunk of a JSON body as part of one SSE `data:` line: CR and LF go. Outside strings they
/// are insignificant whitespace; inside a string JSON allows them only escaped.
pub fn json_chunk_as_data(chunk: &[u8]) -> Bytes {
    if !chunk.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Bytes::copy_from_slice(chunk);
    }
    let mut out = BytesMut::with_capacity(chunk.len());
    out.extend(chunk.iter().copied().filter(|&b| b != b'\r' && b != b'\n'));
    out.freeze()
}

/// How the gateway-opened stream behaves.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub keep_alive: Duration,
    pub idle: Duration,
}

/// What the outcome's log line repeats from the request's (which is written when the stream
/// opens, with status 200), and what is said once the outcome is known: the request's span
/// and audit records, with the upstream's status (or the failure's) and reason.
#[derive(Default)]
pub struct LogContext {
    pub request_id: String,
    pub finish: Option<Finish>,
}

/// Says the request's outcome: its status and, when the gateway answered itself, why.
pub type Finish = Box<dyn FnOnce(StatusCode, Option<&'static str>) + Send>;

enum Phase {
    Waiting(Pending),
    /// An upstream event stream, relayed.
    Events(Body),
    /// An upstream JSON body, written as the `data` of one event.
    Json(Body),
    Done,
}

struct State {
    phase: Phase,
    id: Value,
    options: Options,
    metrics: Arc<Metrics>,
    started: Instant,
    log: LogContext,
    /// Filters a tool list in the answer, with per-tool rules.
    tools: Option<ToolsView>,
    /// Counts the stream in `open_streams` while the gateway holds it open itself.
    _open: Option<body::OpenStream>,
}

/// The response to a request whose upstream answer is `pending`: a 200 event stream that
/// starts with a keep-alive, sends one each interval while waiting, then carries the answer.
pub fn respond(
    pending: Pending,
    id: Value,
    options: Options,
    metrics: Arc<Metrics>,
    started: Instant,
    log: LogContext,
    tools: Option<ToolsView>,
) -> Response<Body> {
    metrics
        .long_calls
        .get_or_create(&Outcome { outcome: "opened" })
        .inc();
    let state = State {
        phase: Phase::Waiting(pending),
        id,
        options,
        _open: Some(body::OpenStream::new(metrics.clone())),
        metrics,
        started,
        log,
        tools,
    };
    let first = futures::stream::once(async { Ok(Frame::data(Bytes::from_static(KEEP_ALIVE))) });
    let rest = futures::stream::unfold(state, next_frame);
    let body = BodyExt::boxed_unsync(StreamBody::new(first.chain(rest).boxed()));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    let mut response = Response::new(body);
    *response.headers_mut() = forward::client_response_headers(headers);
    response
}

type Item = Result<Frame<Bytes>, BoxError>;

async fn next_frame(mut s: State) -> Option<(Item, State)> {
    loop {
        match &mut s.phase {
            Phase::Done => return None,
            Phase::Waiting(pending) => {
                let answer = tokio::select! {
                    answer = pending => answer,
                    () = tokio::time::sleep(s.options.keep_alive) => {
                        return Some((Ok(Frame::data(Bytes::from_static(KEEP_ALIVE))), s));
                    }
                };
                let (phase, first) = s.answered(answer);
                s.phase = phase;
                if let Some(first) = first {
                    return Some((Ok(Frame::data(first)), s));
                }
            }
            Phase::Events(relayed) => {
                let next = relayed.frame().await;
                if next.is_none() {
                    s.phase = Phase::Done;
                    return None;
                }
                return next.map(|item| (item, s));
            }
            Phase::Json(relayed) => match relayed.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let data = json_chunk_as_data(data);
                        return Some((Ok(Frame::data(data)), s));
                    }
                }
                Some(Err(e)) => {
                    s.phase = Phase::Done;
                    return Some((Err(e), s));
                }
                None => {
                    s.phase = Phase::Done;
                    return Some((Ok(Frame::data(Bytes::from_static(EVENT_END))), s));
                }
            },
        }
    }
}

/// The client left before the answer: its records say so (the upstream call is dropped with
/// the state).
impl Drop for State {
    fn drop(&mut self) {
        if let Some(finish) = self.log.finish.take() {
            finish(CLIENT_GONE, Some("client_gone"));
        }
    }
}

/// The status nginx logs for a request whose client closed the connection first.
const CLIENT_GONE: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl State {
    /// What follows the keep-alives once the upstream has answered (or failed), and the bytes
    /// that start it.
    fn answered(
        &mut self,
        answer: Result<Response<Incoming>, UpstreamFailure>,
    ) -> (Phase, Option<Bytes>) {
        let waited = self.started.elapsed();
        self.metrics
            .upstream_latency
            .get_or_create(&RouteLabel { route: "mcp" })
            .observe(waited.as_secs_f64());
        let relay = |event_stream: bool| RelayOptions {
            idle: self.options.idle,
            keep_alive: event_stream.then_some(self.options.keep_alive),
            after_own_bytes: true,
        };
        let failed = |status: StatusCode, message: &str| {
            (Phase::Done, Some(error_event(&self.id, status, message)))
        };
        let said = match &answer {
            Err(failure) => (failure.status(), Some(failure.reason())),
            Ok(response) => (response.status(), None),
        };
        if let Some(finish) = self.log.finish.take() {
            finish(said.0, said.1);
        }
        let (outcome, next) = match answer {
            Err(failure) => ("failed", failed(failure.status(), failure.message())),
            Ok(response) if !response.status().is_success() => {
                let status = response.status();
                (
                    "failed",
                    failed(
                        status,
                        &format!("the MCP server answered with HTTP {}", status.as_u16()),
                    ),
                )
            }
            Ok(response) if forward::is_event_stream(response.headers()) => {
                let filter = self.tools.take().and_then(|t| t.filter(true));
                let relayed = body::relay(
                    response.into_body(),
                    filter,
                    relay(true),
                    true,
                    &self.metrics,
                );
                ("answered", (Phase::Events(relayed), None))
            }
            Ok(response) if is_json(response.headers()) => {
                let filter = self.tools.take().and_then(|t| t.filter(false));
                let relayed = body::relay(
                    response.into_body(),
                    filter,
                    relay(false),
                    false,
                    &self.metrics,
                );
                (
                    "answered",
                    (
                        Phase::Json(relayed),
                        Some(Bytes::from_static(JSON_EVENT_START)),
                    ),
                )
            }
            Ok(_) => (
                "failed",
                failed(
                    StatusCode::BAD_GATEWAY,
                    "the MCP server answered with neither JSON nor an event stream",
                ),
            ),
        };
        self.metrics
            .long_calls
            .get_or_create(&Outcome { outcome })
            .inc();
        if outcome == "failed" {
            tracing::warn!(
                request_id = %self.log.request_id,
                waited_seconds = waited.as_secs(),
                "a long call failed on the stream the gateway opened; the client got a JSON-RPC error"
            );
        } else {
            tracing::info!(
                request_id = %self.log.request_id,
                waited_seconds = waited.as_secs(),
                "a long call was answered on the stream the gateway opened"
            );
        }
        // The relay counts the stream from here.
        self._open = None;
        next
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_requests_other_than_initialize_qualify() {
        let id = |body: &str| request_id(body.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#),
            Some(json!(7))
        );
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":"a","method":"resources/read"}"#),
            Some(json!("a"))
        );
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#,
            "not json",
        ] {
            assert_eq!(id(body), None, "{body}");
        }
    }

    #[test]
    fn accept_is_read_per_media_type() {
        let accepts = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            accepts_event_stream(&h)
        };
        assert!(accepts("application/json, text/event-stream"));
        assert!(accepts("Text/Event-Stream;q=0.5"));
        assert!(!accepts("application/json"));
        assert!(!accepts("text/event-streams"));
        assert!(!accepts_event_stream(&HeaderMap::new()));
    }

    #[test]
    fn an_error_event_is_a_json_rpc_error_for_the_request() {
        let event = error_event(&json!(3), StatusCode::GATEWAY_TIMEOUT, "too \"slow\"");
        let text = std::str::from_utf8(&event).unwrap();
        let data = text
            .strip_prefix("event: message\ndata: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .expect("one message event");
        assert!(!data.contains('\n'));
        let error: Value = serde_json::from_str(data).unwrap();
        assert_eq!(error["id"], 3);
        assert_eq!(error["error"]["code"], SERVER_ERROR);
        assert_eq!(error["error"]["message"], "too \"slow\"");
        assert_eq!(error["error"]["data"]["httpStatus"], 504);
    }

    #[test]
    fn a_json_body_becomes_one_data_line() {
        let body = b"{\r\n  \"id\": 1,\n  \"result\": {\"text\": \"a\\nb\"}\r}";
        let data = json_chunk_as_data(body);
        assert!(!data.contains(&b'\n') && !data.contains(&b'\r'));
        let value: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(value["result"]["text"], "a\nb");
        let plain = b"{\"id\":1}";
        assert_eq!(&json_chunk_as_data(plain)[..], plain);
    }
}
