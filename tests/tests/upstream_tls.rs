//! An https upstream: the sidecar negotiates HTTP/2 over rustls (ALPN), trusts a private CA
//! only when `upstream.caFile` names it, and still sends the key. The upstream here is a
//! small hyper server with a certificate from a CA made by `openssl` for this test.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use mcp_gateway_tests::tls::{make_certificates, server_config};
use serde_json::json;

const KEY: &str = "SYSKEY-tls-3c1d";

/// Serves https on 127.0.0.1 (h2 and http/1.1 by ALPN); records each request's HTTP version
/// and whether it carried the key.
async fn tls_upstream(dir: &Path) -> (String, Arc<Mutex<Vec<(String, bool)>>>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(dir, &[b"h2", b"http/1.1"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let has_key = req
                        .headers()
                        .get("x-functions-key")
                        .is_some_and(|v| v == KEY);
                    record
                        .lock()
                        .unwrap()
                        .push((format!("{:?}", req.version()), has_key));
                    async move {
                        let body = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
                        let status = if has_key { 200 } else { 401 };
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, seen)
}

fn config(upstream: &str, key_file: &Path, ca_file: Option<&Path>) -> Config {
    let (listen, base) = public_listener();
    serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": upstream, "caFile": ca_file},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Anonymous"},
    }))
    .unwrap()
}

async fn post(sidecar: &Sidecar) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/mcp", sidecar.url))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn https_upstream_gets_http2_and_the_key_through_a_private_ca() {
    let dir = TempDir::new("tls");
    make_certificates(dir.path());
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let (upstream, seen) = tls_upstream(dir.path()).await;

    // Without the private CA the upstream's certificate is not trusted: 502, nothing sent.
    let untrusting = Sidecar::start(config(&upstream, &key_file, None)).unwrap();
    untrusting.wait_ready().await.unwrap();
    assert_eq!(post(&untrusting).await, 502);
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request may reach an untrusted upstream"
    );

    let trusting = Sidecar::start(config(
        &upstream,
        &key_file,
        Some(&dir.path().join("ca.pem")),
    ))
    .unwrap();
    trusting.wait_ready().await.unwrap();
    assert_eq!(post(&trusting).await, 200);
    assert_eq!(post(&trusting).await, 200);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("HTTP/2.0".to_string(), true),
            ("HTTP/2.0".to_string(), true)
        ]
    );
    assert!(!trusting.logs().contains(KEY) && !untrusting.logs().contains(KEY));
}

/// `trustedCaFile` (the CRD's `trustedCA`): one private CA for every peer. An https issuer
/// and an https upstream behind it are both reached only by the gateway that trusts it.
#[tokio::test]
async fn a_trusted_ca_file_reaches_an_https_issuer_and_upstream_behind_a_private_ca() {
    let dir = TempDir::new("tls-trusted");
    make_certificates(dir.path());
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let (upstream, seen) = tls_upstream(dir.path()).await;
    let idp = mcp_gateway_tests::fixtures::Idp::start_https("127.0.0.1", dir.path()).unwrap();
    assert!(
        idp.issuer.starts_with("https://127.0.0.1:"),
        "{}",
        idp.issuer
    );

    let start = |trusted: Option<&Path>| {
        let (listen, base) = public_listener();
        let config: Config = serde_json::from_value(json!({
            "listen": listen.to_string(),
            "publicBaseUrl": base,
            "upstream": {"url": upstream},
            "systemKey": {"file": key_file},
            "auth": {"mode": "Oidc", "issuer": idp.issuer, "audiences": [format!("{base}/mcp")]},
            "trustedCaFile": trusted,
        }))
        .unwrap();
        let resource = format!("{base}/mcp");
        (Sidecar::start(config), resource)
    };
    let call = |sidecar: &Sidecar, token: String| {
        let url = format!("{}/mcp", sidecar.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // Not trusting the CA, the gateway cannot fetch the issuer's keys: it never turns ready,
    // says why, verifies no token, and nothing reaches the upstream.
    let (untrusting, resource) = start(None);
    let untrusting = untrusting.unwrap();
    mcp_gateway_tests::eventually(30, "the untrusted issuer is logged", || async {
        let logs = untrusting.logs();
        if logs.contains("UnknownIssuer") {
            Ok(())
        } else {
            Err(logs)
        }
    })
    .await
    .unwrap();
    assert_eq!(untrusting.readyz().await.unwrap().0, 503);
    let token = idp.token(&resource, "mcp:tools", "RS256").unwrap();
    let status = call(&untrusting, token.clone()).await;
    assert!(status == 401 || status == 503, "untrusted issuer: {status}");
    assert!(seen.lock().unwrap().is_empty());

    let (trusting, resource) = start(Some(&dir.path().join("ca.pem")));
    let trusting = trusting.unwrap();
    trusting.wait_ready().await.unwrap();
    let token = idp.token(&resource, "mcp:tools", "RS256").unwrap();
    assert_eq!(call(&trusting, token.clone()).await, 200);
    assert_eq!(seen.lock().unwrap().len(), 1, "the upstream got the call");
    assert!(seen.lock().unwrap()[0].1, "with the key");
    for logs in [trusting.logs(), untrusting.logs()] {
        assert!(!logs.contains(KEY) && !logs.contains(&token));
    }

    // A file with no certificate in it stops the gateway at start with the reason.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let error = start(Some(&empty)).0.err().expect("no start").to_string();
    assert!(
        error.contains("trustedCaFile") && error.contains("no PEM certificate"),
        "{error}"
    );
}
