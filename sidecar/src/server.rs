//! Listeners: the public MCP listener and the admin listener (`/livez`, `/readyz`,
//! `/metrics`, `/keyz`), both HTTP/1.1 and HTTP/2 (h2c), with graceful shutdown that lets open
//! streams drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::proxy::Gateway;
use crate::response;

/// The address a request's connection came from (a request extension), for the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// How long open connections (SSE streams included) get to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown` resolves, then waits (up to [`DRAIN_TIMEOUT`]) for
/// in-flight requests and streams to finish.
pub async fn serve<S, F>(listener: TcpListener, handler: S, shutdown: impl Future<Output = ()>)
where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            // Boxed so the request's future is freed when its response is ready: hyper keeps
            // the slot for an in-flight future as long as the connection, and an SSE stream's
            // connection lives for hours.
            let response = Box::pin(handler.clone()(req));
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}

/// Serves the MCP listener.
pub async fn serve_gateway(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, move |req| gateway.clone().handle(req), shutdown).await;
}

/// Serves `/livez`, `/readyz`, `/metrics` and `/keyz` (the system key's
/// [`KeyStatus`](crate::key::KeyStatus) as JSON).
pub async fn serve_admin(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |req: Request<Incoming>| {
        let gateway = gateway.clone();
        async move { admin(&gateway, req.uri().path()) }
    };
    serve(listener, handler, shutdown).await;
}

fn admin(gateway: &Gateway, path: &str) -> Response<Body> {
    let (status, content_type, text) = match path {
        "/livez" => (StatusCode::OK, "text/plain", "ok".to_string()),
        "/readyz" if gateway.ready() => (StatusCode::OK, "text/plain", "ready".to_string()),
        "/readyz" => {
            let why = if gateway.key.is_loaded() {
                "signing keys not fetched yet".to_string()
            } else {
                match gateway.key.source_error() {
                    Some(error) => format!("system key not loaded: {error}"),
                    None => "system key not loaded".to_string(),
                }
            };
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", why)
        }
        "/keyz" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&gateway.key.status()).expect("KeyStatus serializes"),
        ),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.metrics.encode(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_string()),
    };
    response::with_type(status, content_type, text)
}
