//! Response bodies: small fixed ones the gateway writes itself, and upstream bodies streamed
//! through frame by frame (no buffering), with an idle timeout, SSE keep-alive comments on
//! quiet event streams, the SSE `endpoint` rewrite where needed, and an open-stream gauge.
//! Dropping the body (client gone) drops the upstream body, which closes the upstream
//! request: disconnects propagate; keep-alives make a vanished client show up as a failed
//! write on a quiet stream too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::sse::EndpointRewriter;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Counts a stream as open for as long as it lives.
pub struct OpenStream(Arc<Metrics>);

impl OpenStream {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.open_streams.inc();
        Self(metrics)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.dec();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the upstream stream was idle for longer than {0:?}")]
struct IdleTimeout(Duration);

/// The SSE comment line sent on a quiet stream. A comment line is ignored wherever it falls
/// between lines, even inside an event; a blank line would not be (it ends the event).
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How an upstream body is relayed.
#[derive(Clone, Copy, Debug)]
pub struct RelayOptions {
    /// Upstream silence after which the client's stream is ended with an error.
    pub idle: Duration,
    /// Event streams only: client silence after which a [`KEEP_ALIVE`] comment is sent.
    pub keep_alive: Option<Duration>,
    /// The gateway already wrote to this stream (it opened it itself), so the upstream's bytes
    /// do not start it.
    pub after_own_bytes: bool,
}

struct Relay {
    upstream: Incoming,
    rewriter: Option<EndpointRewriter>,
    options: RelayOptions,
    _open: Option<OpenStream>,
    done: bool,
    /// When the upstream last sent a frame (the idle limit counts from there).
    upstream_at: Instant,
    /// The last byte sent to the client, if any.
    last_sent: Option<u8>,
    /// A keep-alive went out before the upstream's first byte: a byte order mark the upstream
    /// then starts with is no longer at the start of the stream, where clients skip it.
    strip_bom: bool,
}

impl Relay {
    /// A comment can go only between lines: never after a CR, whose LF may still follow.
    fn may_keep_alive(&self) -> bool {
        self.last_sent.is_none_or(|b| b == b'\n')
    }

    fn sent(&mut self, data: Bytes) -> Bytes {
        let data = if std::mem::take(&mut self.strip_bom) && data.starts_with(BOM) {
            data.slice(BOM.len()..)
        } else {
            data
        };
        if let Some(&last) = data.last() {
            self.last_sent = Some(last);
        }
        data
    }
}

/// Streams an upstream body to the client. `event_stream` marks a long-lived SSE response
/// (counted in `open_streams`, kept alive); `rewriter` applies to legacy SSE only.
pub fn relay(
    upstream: Incoming,
    rewriter: Option<EndpointRewriter>,
    options: RelayOptions,
    event_stream: bool,
    metrics: &Arc<Metrics>,
) -> Body {
    let options = RelayOptions {
        keep_alive: options.keep_alive.filter(|_| event_stream),
        ..options
    };
    let state = Relay {
        upstream,
        rewriter,
        options,
        _open: event_stream.then(|| OpenStream::new(metrics.clone())),
        done: false,
        upstream_at: Instant::now(),
        last_sent: options.after_own_bytes.then_some(b'\n'),
        strip_bom: options.after_own_bytes,
    };
    let frames = futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        // Called right after the last thing sent: the keep-alive interval counts from here.
        let mut keep_alive_deadline = s.options.keep_alive.map(|k| Instant::now() + k);
        loop {
            let keep_alive_due = async {
                match keep_alive_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                next = s.upstream.frame() => next,
                () = tokio::time::sleep_until(s.upstream_at + s.options.idle) => {
                    s.done = true;
                    tracing::warn!(
                        idle_seconds = s.options.idle.as_secs(),
                        "upstream response stream idle for too long; ending the client's stream"
                    );
                    return Some((Err(IdleTimeout(s.options.idle).into()), s));
                }
                () = keep_alive_due => {
                    if s.may_keep_alive() {
                        s.strip_bom |= s.last_sent.is_none();
                        s.last_sent = Some(b'\n');
                        return Some((Ok(Frame::data(Bytes::from_static(KEEP_ALIVE))), s));
                    }
                    // Mid-line: wait for the upstream (the idle limit still applies).
                    keep_alive_deadline = None;
                    continue;
                }
            };
            s.upstream_at = Instant::now();
            match next {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let data = match s.rewriter.as_mut() {
                            Some(r) => r.push(&data),
                            None => data,
                        };
                        let data = s.sent(data);
                        if data.is_empty() {
                            continue;
                        }
                        return Some((Ok(Frame::data(data)), s));
                    }
                    Err(frame) => return Some((Ok(frame), s)),
                },
                Some(Err(e)) => {
                    // The request's log line (status 200) is already out: without this the
                    // cut would leave no trace at the default log level.
                    s.done = true;
                    tracing::warn!(error = %e, "upstream response stream failed; ending the client's stream");
                    return Some((Err(e.into()), s));
                }
                None => {
                    s.done = true;
                    let tail = s.rewriter.as_mut().map(|r| r.finish()).unwrap_or_default();
                    let tail = s.sent(tail);
                    if tail.is_empty() {
                        return None;
                    }
                    return Some((Ok(Frame::data(tail)), s));
                }
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(frames.boxed()))
}
