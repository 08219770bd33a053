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

/// A rewrite of a streamed body: bytes in as they arrive, bytes out (possibly held back
/// until more arrive), the rest at the end.
pub trait Transform: Send {
    fn push(&mut self, chunk: &[u8]) -> Bytes;
    fn finish(&mut self) -> Bytes;
}

/// One transform, then another.
pub struct Chain(pub Box<dyn Transform>, pub Box<dyn Transform>);

impl Transform for Chain {
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        let first = self.0.push(chunk);
        self.1.push(&first)
    }

    fn finish(&mut self) -> Bytes {
        let first = self.0.finish();
        let mut out = self.1.push(&first).to_vec();
        out.extend_from_slice(&self.1.finish());
        out.into()
    }
}

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

struct Relay<B> {
    upstream: B,
    rewriter: Option<Box<dyn Transform>>,
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

impl<B> Relay<B> {
    /// A comment can go only between lines: never after a CR, whose LF may still follow.
    fn may_keep_alive(&self) -> bool {
        self.last_sent.is_none_or(|b| b == b'\n')
    }

    fn sent(&mut self, data: Bytes) -> Bytes {
        // Decided on the upstream's first bytes the client gets (a rewriter may hold some back
        // and hand over nothing at first).
        if data.is_empty() {
            return data;
        }
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
/// (counted in `open_streams`, kept alive); `rewriter` rewrites the bytes (the legacy SSE
/// endpoint, tool lists).
pub fn relay(
    upstream: Incoming,
    rewriter: Option<Box<dyn Transform>>,
    options: RelayOptions,
    event_stream: bool,
    metrics: &Arc<Metrics>,
) -> Body {
    relay_body(upstream, rewriter, options, event_stream, metrics)
}

/// [`relay`] for any body (tests feed it from a channel).
fn relay_body<B>(
    upstream: B,
    rewriter: Option<Box<dyn Transform>>,
    options: RelayOptions,
    event_stream: bool,
    metrics: &Arc<Metrics>,
) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + std::fmt::Display,
{
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::StreamExt;
    use http_body_util::StreamBody;
    use tokio::sync::mpsc;

    use super::*;
    use crate::sse::EndpointRewriter;

    const SECOND: Duration = Duration::from_secs(1);

    /// A relay of what the test sends on the channel, with keep-alives every second and a
    /// 10 s idle limit; `own` as if the gateway had opened the stream itself.
    fn relayed(own: bool) -> (mpsc::Sender<Bytes>, Body) {
        relayed_with(own, None)
    }

    fn relayed_with(
        own: bool,
        rewriter: Option<Box<dyn Transform>>,
    ) -> (mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let upstream =
            StreamBody::new(tokio_stream_from(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
        let options = RelayOptions {
            idle: 10 * SECOND,
            keep_alive: Some(SECOND),
            after_own_bytes: own,
        };
        let body = relay_body(upstream, rewriter, options, true, &Arc::new(Metrics::new()));
        (tx, body)
    }

    fn tokio_stream_from(
        mut rx: mpsc::Receiver<Bytes>,
    ) -> impl futures::Stream<Item = Bytes> + Unpin {
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    async fn next(body: &mut Body) -> Option<Result<Bytes, String>> {
        let frame = body.frame().await?;
        Some(
            frame
                .map(|f| f.into_data().unwrap_or_default())
                .map_err(|e| e.to_string()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_comments_only_between_lines() {
        let (tx, mut body) = relayed(false);
        tx.send(Bytes::from_static(b"event: message\n"))
            .await
            .unwrap();
        assert_eq!(next(&mut body).await.unwrap().unwrap(), "event: message\n");
        // Silence: a keep-alive each second, even inside the event (a comment line is
        // ignored there).
        for _ in 0..3 {
            assert_eq!(next(&mut body).await.unwrap().unwrap(), KEEP_ALIVE);
        }
        // Mid-line, and after a lone CR (its LF may follow), nothing is inserted until the
        // upstream finishes the line.
        for partial in [&b"data: {\"a\""[..], &b":1}\r"[..]] {
            tx.send(Bytes::copy_from_slice(partial)).await.unwrap();
            assert_eq!(next(&mut body).await.unwrap().unwrap(), partial);
        }
        tokio::time::advance(5 * SECOND).await;
        tx.send(Bytes::from_static(b"\n\n")).await.unwrap();
        assert_eq!(next(&mut body).await.unwrap().unwrap(), "\n\n");
        assert_eq!(next(&mut body).await.unwrap().unwrap(), KEEP_ALIVE);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_do_not_count_as_upstream_activity() {
        let (_tx, mut body) = relayed(false);
        let mut comments = 0;
        let error = loop {
            match next(&mut body).await.unwrap() {
                Ok(bytes) => {
                    assert_eq!(bytes, KEEP_ALIVE);
                    comments += 1;
                }
                Err(e) => break e,
            }
        };
        assert!(error.contains("idle"), "{error}");
        // About one per second of the 10 s idle limit, then the stream ends.
        assert!((9..=10).contains(&comments), "{comments}");
        assert!(next(&mut body).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_order_mark_after_an_early_keep_alive_is_dropped() {
        for own in [false, true] {
            let (tx, mut body) = relayed(own);
            if !own {
                // Nothing from the upstream for a second: the keep-alive starts the stream.
                assert_eq!(next(&mut body).await.unwrap().unwrap(), KEEP_ALIVE);
            }
            tx.send(Bytes::from_static(b"\xEF\xBB\xBFevent: endpoint\n"))
                .await
                .unwrap();
            assert_eq!(
                next(&mut body).await.unwrap().unwrap(),
                "event: endpoint\n",
                "own stream: {own}"
            );
        }
        // Behind the legacy SSE rewriter, which holds the endpoint event back: the mark still
        // goes, though the first upstream bytes gave the client nothing at once.
        let rewriter = EndpointRewriter::new(
            "/weather/message".into(),
            "/runtime/webhooks/mcp/message".into(),
        );
        let (tx, mut body) = relayed_with(false, Some(Box::new(rewriter)));
        assert_eq!(next(&mut body).await.unwrap().unwrap(), KEEP_ALIVE);
        tx.send(Bytes::from_static(b"\xEF\xBB\xBFevent: endpoint\n"))
            .await
            .unwrap();
        tx.send(Bytes::from_static(b"data: message?x=1\n\n"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut body).await.unwrap().unwrap(),
            "event: endpoint\ndata: /weather/message?x=1\n\n"
        );
        // Without an early keep-alive the mark is the stream's start, and stays.
        let (tx, mut body) = relayed(false);
        tx.send(Bytes::from_static(b"\xEF\xBB\xBFevent: x\n"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut body).await.unwrap().unwrap(),
            &b"\xEF\xBB\xBFevent: x\n"[..]
        );
    }
}
