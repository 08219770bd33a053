//! `fast-upstream`: a minimal, fast stand-in for the Functions host's MCP routes, used by
//! `bench/run` as the upstream so that the through/direct ratio measures the sidecar, not
//! the upstream. Not a fixture for behaviour (use `tests/fixtures/node` for that).
//!
//! ```text
//! fast-upstream [--port 0] [--key bench-key] [--threads 2]
//! ```
//! Listens on 127.0.0.1 only (HTTP/1.1) and prints one JSON ready line on stdout:
//! `{"ready":true,"port":N,"url":"http://127.0.0.1:N"}`.
//!
//! - `POST /runtime/webhooks/mcp` → 200 `application/json`, `{"jsonrpc":"2.0","id":<id>,"result":{}}`
//!   (the request's id echoed). Needs header `x-functions-key: <key>`, else 401.
//! - `GET /runtime/webhooks/mcp/sse` → `text/event-stream`: `event: endpoint` with
//!   `data: message?azmcpcs=x&code=<key>` at once, then a `: ping` comment every 15 s, open
//!   until the client goes away. Same key check.
//! - anything else → 404.
//!
//! Exits when stdin reaches EOF (so it dies with the script that started it) unless
//! `--no-stdin-watch`, and on SIGTERM/SIGINT.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

type Body = UnsyncBoxBody<Bytes, Infallible>;

const MCP_PATH: &str = "/runtime/webhooks/mcp";
const SSE_PATH: &str = "/runtime/webhooks/mcp/sse";

struct Args {
    port: u16,
    key: String,
    threads: usize,
    stdin_watch: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        port: 0,
        key: "bench-key".into(),
        threads: 2,
        stdin_watch: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => args.port = it.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--key" => args.key = it.next().expect("--key VALUE"),
            "--threads" => {
                args.threads = it.next().and_then(|v| v.parse().ok()).expect("--threads N")
            }
            "--no-stdin-watch" => args.stdin_watch = false,
            other => {
                eprintln!("fast-upstream: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    args
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The JSON-RPC id of a request body, as raw JSON text (`null` if none or unparsable).
fn request_id(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Req {
        #[serde(default)]
        id: serde_json::Value,
    }
    serde_json::from_slice::<Req>(body)
        .map(|r| r.id.to_string())
        .unwrap_or_else(|_| "null".into())
}

async fn handle(key: &'static str, req: Request<Incoming>) -> Response<Body> {
    let key_ok = req
        .headers()
        .get("x-functions-key")
        .is_some_and(|v| v.as_bytes() == key.as_bytes());
    let path = req.uri().path();
    if path != MCP_PATH && path != SSE_PATH {
        return full(StatusCode::NOT_FOUND, "text/plain", "not found");
    }
    if !key_ok {
        return full(StatusCode::UNAUTHORIZED, "text/plain", "Unauthorized");
    }
    match (req.method(), path) {
        (&Method::POST, MCP_PATH) => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return full(StatusCode::BAD_REQUEST, "text/plain", "bad body"),
            };
            let id = request_id(&body);
            full(
                StatusCode::OK,
                "application/json",
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
            )
        }
        (&Method::GET, SSE_PATH) => {
            let first = Bytes::from(format!(
                "event: endpoint\ndata: message?azmcpcs=x&code={key}\n\n"
            ));
            let frames = futures::stream::unfold(Some(first), |first| async move {
                let data = match first {
                    Some(first) => first,
                    None => {
                        tokio::time::sleep(Duration::from_secs(15)).await;
                        Bytes::from_static(b": ping\n\n")
                    }
                };
                Some((Ok::<_, Infallible>(Frame::data(data)), None))
            });
            let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            r
        }
        _ => full(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed",
        ),
    }
}

fn main() -> std::io::Result<()> {
    let args = parse_args();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let key: &'static str = Box::leak(args.key.into_boxed_str());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    println!(r#"{{"ready":true,"port":{port},"url":"http://127.0.0.1:{port}"}}"#);

    let stop = async move {
        let stdin_eof = async {
            if args.stdin_watch {
                use tokio::io::AsyncReadExt;
                let mut stdin = tokio::io::stdin();
                let mut buf = [0u8; 64];
                while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            } else {
                std::future::pending::<()>().await;
            }
        };
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = stdin_eof => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tokio::pin!(stop);

    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("fast-upstream: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut stop => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(handle(key, req).await)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
