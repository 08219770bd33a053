//! Response bodies: small fixed ones the gateway writes itself, and upstream bodies streamed
//! through frame by frame (no buffering), with an idle timeout, the SSE `endpoint` rewrite
//! where needed, and an open-stream gauge. Dropping the body (client gone) drops the
//! upstream body, which closes the upstream request: disconnects propagate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

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
struct OpenStream(Arc<Metrics>);

impl OpenStream {
    fn new(metrics: Arc<Metrics>) -> Self {
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

struct Relay {
    upstream: Incoming,
    rewriter: Option<EndpointRewriter>,
    idle: Duration,
    _open: Option<OpenStream>,
    done: bool,
}

/// Streams an upstream body to the client. `event_stream` marks a long-lived SSE response
/// (counted in `open_streams`); `rewriter` applies to legacy SSE only.
pub fn relay(
    upstream: Incoming,
    rewriter: Option<EndpointRewriter>,
    idle: Duration,
    event_stream: bool,
    metrics: &Arc<Metrics>,
) -> Body {
    let state = Relay {
        upstream,
        rewriter,
        idle,
        _open: event_stream.then(|| OpenStream::new(metrics.clone())),
        done: false,
    };
    let frames = futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let next = match tokio::time::timeout(s.idle, s.upstream.frame()).await {
                Err(_) => {
                    s.done = true;
                    tracing::warn!(
                        idle_seconds = s.idle.as_secs(),
                        "upstream response stream idle for too long; ending the client's stream"
                    );
                    return Some((Err(IdleTimeout(s.idle).into()), s));
                }
                Ok(next) => next,
            };
            match next {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let data = match s.rewriter.as_mut() {
                            Some(r) => r.push(&data),
                            None => data,
                        };
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
