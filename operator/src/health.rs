//! The operator's `/healthz`, `/readyz` and `/metrics` listener. HTTP/1.1 only (kubelet
//! probes and Prometheus speak it), written here in a few lines so the operator does not link
//! the sidecar's server for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Serves until the task is dropped. `ready` turns `/readyz` green.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (metrics, ready) = (metrics.clone(), ready.clone());
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let response = respond(req.uri().path(), &metrics, ready.load(Ordering::Relaxed));
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                // A client that never finishes its headers does not hold a task forever.
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "health connection ended with an error");
            }
        });
    }
}

fn respond(path: &str, metrics: &Metrics, ready: bool) -> Response<Full<Bytes>> {
    let (status, text) = match path {
        "/healthz" => (StatusCode::OK, "ok".to_string()),
        "/readyz" if ready => (StatusCode::OK, "ready".to_string()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "starting".to_string()),
        "/metrics" => (StatusCode::OK, metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), ready.clone()));
        let client = reqwest::Client::new();
        let get = |path: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let r = client.get(format!("{base}{path}")).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz").await, (200, "ok".into()));
        assert_eq!(get("/readyz").await, (503, "starting".into()));
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await, (200, "ready".into()));
        let (status, metrics) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        assert_eq!(get("/nope").await.0, 404);
        server.abort();
    }
}
