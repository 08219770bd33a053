//! The real sidecar binary between real MCP clients (TypeScript SDK, Python SDK) and a real
//! MCP server behind the Functions host stand-in, with tokens from a real OpenID provider.
//! Every raw response byte and every log line is checked for the system key.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::fixtures;
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use mcp_gateway_tests::stack::{
    ACCEPT, SCOPE, Stack, first_event, initialize_body, system_key, write_secret_volume,
};
use serde_json::{Value, json};

#[tokio::test]
async fn typescript_client_discovers_auth_and_calls_tools_over_both_transports() {
    let stack = Stack::start(true, |_| {}).await;

    // The SDK's own OAuth flow: 401 → resource metadata → AS metadata → client_credentials.
    let out = stack.client(&[
        "--url",
        &stack.mcp_url(),
        "--transport",
        "streamable",
        "--oauth-client-credentials",
        "--client-id",
        fixtures::CLIENT_ID,
        "--client-secret",
        fixtures::CLIENT_SECRET,
        "--scope",
        SCOPE,
        "--expected-issuer",
        &stack.idp().issuer,
        "--list-tools",
        "--call",
        "echo",
        "--args",
        r#"{"message":"hello through the gateway"}"#,
    ]);
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tools.contains(&"echo") && tools.contains(&"add"), "{out}");
    assert!(
        out["result"]
            .to_string()
            .contains("hello through the gateway"),
        "{out}"
    );
    assert!(
        out["discovery"]
            .to_string()
            .contains("oauth-protected-resource"),
        "the client should have discovered the resource metadata: {out}"
    );

    // Legacy HTTP+SSE with a bearer token: the endpoint event is rewritten to our route.
    let token = stack.token();
    let out = stack.client(&[
        "--url",
        &format!("{}/sse", stack.sidecar.url),
        "--transport",
        "sse",
        "--token",
        &token,
        "--call",
        "add",
        "--args",
        r#"{"a":2,"b":40}"#,
    ]);
    assert!(out["result"].to_string().contains("42"), "{out}");

    // Upstream saw the key on every request and never the client's token or cookies.
    let requests = stack.standin.requests().await.unwrap();
    assert!(requests.len() >= 4, "{requests:?}");
    for r in &requests {
        assert_eq!(r["keyMatched"], true, "{r}");
        assert_eq!(r["hasAuthorization"], false, "token passed through: {r}");
    }
    assert!(
        requests
            .iter()
            .any(|r| r["path"] == "/runtime/webhooks/mcp/sse")
    );
    assert!(
        requests
            .iter()
            .any(|r| r["path"] == "/runtime/webhooks/mcp/message")
    );

    // Structured request logs name the subject and the MCP method and tool.
    let logs = stack.sidecar.logs();
    let call = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["mcp_method"] == "tools/call" && l["mcp_name"] == "echo")
        .expect("a log line for the echo call");
    assert_eq!(call["subject"], fixtures::CLIENT_ID);
    assert_eq!(call["status"], 200);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn python_client_negotiates_the_protocol_era_and_calls_a_tool() {
    let stack = Stack::start(true, |_| {}).await;
    let token = stack.token();
    // `auto` first probes the 2026-07-28 `server/discover`; the 2025-era upstream answers 400,
    // which must reach the client untouched for it to fall back to `initialize`.
    let (ok, out, raw) = fixtures::python_client(&[
        "--url",
        &stack.mcp_url(),
        "--token",
        &token,
        "--mode",
        "auto",
        "--list-tools",
        "--call",
        "echo",
        "--args",
        r#"{"message":"hello from python"}"#,
    ])
    .expect("python client runs");
    stack.record(raw.as_bytes());
    assert!(ok, "python client failed: {raw}");
    assert!(
        out["result"].to_string().contains("hello from python"),
        "{out}"
    );
    assert!(
        out["protocolVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("2025")),
        "{out}"
    );
    let requests = stack.standin.requests().await.unwrap();
    assert!(
        requests.iter().any(|r| r["status"] == 400),
        "the 2026 probe reached the upstream: {requests:?}"
    );
    assert!(!raw.contains(&token));
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn unauthenticated_requests_get_a_challenge_and_metadata_is_public() {
    let stack = Stack::start(true, |_| {}).await;
    let http = reqwest::Client::new();
    let (status, headers, _) = stack
        .send(
            http.post(stack.mcp_url())
                .header("accept", ACCEPT)
                .header("content-type", "application/json")
                .body(initialize_body()),
        )
        .await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        stack.sidecar.url
    );
    assert_eq!(
        challenge,
        format!(r#"Bearer resource_metadata="{prm_url}", scope="{SCOPE}""#)
    );

    for url in [
        prm_url.clone(),
        format!("{}/.well-known/oauth-protected-resource", stack.sidecar.url),
    ] {
        let (status, _, body) = stack.send(http.get(&url)).await;
        assert_eq!(status, 200, "{url}");
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["resource"], stack.mcp_url());
        assert_eq!(doc["authorization_servers"], json!([stack.idp().issuer]));
        assert_eq!(doc["scopes_supported"], json!([SCOPE]));
    }

    // Nothing reached the upstream.
    assert!(stack.standin.requests().await.unwrap().is_empty());
    stack.assert_no_key_leak();
}

fn tamper_payload(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(payload.to_string()),
        parts[2]
    )
}

fn with_header(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    edit(&mut header);
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        parts[1],
        parts[2]
    )
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_the_right_status_and_header() {
    let stack = Stack::start(true, |_| {}).await;
    let good = stack.token();
    let resource = stack.mcp_url();
    let idp = stack.idp();
    let alg_none = {
        let t = with_header(&good, |h| h["alg"] = json!("none"));
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[2] = "";
        parts.join(".")
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "garbage",
            "not-a-jwt".into(),
            401,
            r#"error="invalid_token""#,
        ),
        ("alg none", alg_none, 401, r#"error="invalid_token""#),
        (
            "HS256 header",
            with_header(&good, |h| h["alg"] = json!("HS256")),
            401,
            r#"error="invalid_token""#,
        ),
        (
            "tampered payload",
            tamper_payload(&good, |p| p["sub"] = json!("admin")),
            401,
            r#"error="invalid_token""#,
        ),
        (
            "unknown kid",
            with_header(&good, |h| h["kid"] = json!("no-such-key")),
            401,
            r#"error="invalid_token""#,
        ),
        (
            "wrong audience",
            idp.token("https://other.example/mcp", SCOPE, "RS256")
                .unwrap(),
            401,
            r#"error="invalid_token""#,
        ),
        (
            "missing scope",
            idp.token(&resource, "mcp:read", "RS256").unwrap(),
            403,
            r#"error="insufficient_scope""#,
        ),
        (
            "oversized",
            format!("{good}{}", "A".repeat(20_000)),
            401,
            r#"error="invalid_token""#,
        ),
    ];
    let http = reqwest::Client::new();
    for (name, token, status, error) in cases {
        let (got, headers, _) = stack
            .send(
                http.post(&resource)
                    .header("accept", ACCEPT)
                    .header("content-type", "application/json")
                    .bearer_auth(&token)
                    .body(initialize_body()),
            )
            .await;
        assert_eq!(got, status, "{name}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(error), "{name}: {challenge}");
        assert!(
            challenge.contains("resource_metadata="),
            "{name}: {challenge}"
        );
        assert!(
            !challenge.contains(&token[..20.min(token.len())]) || token.len() < 20,
            "{name}: token echoed"
        );
    }

    // Expired: a 1-second token, used after it expired (leeway 0 in this config).
    let short = idp.token_with(&resource, SCOPE, "RS256", Some(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (got, headers, _) = stack
        .send(
            http.post(&resource)
                .header("accept", ACCEPT)
                .bearer_auth(&short)
                .body(initialize_body()),
        )
        .await;
    assert_eq!(got, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Both signature algorithms the provider uses are accepted.
    for alg in ["RS256", "ES256"] {
        let token = idp.token(&resource, SCOPE, alg).unwrap();
        let (got, _, _) = stack
            .send(
                http.post(&resource)
                    .header("accept", ACCEPT)
                    .header("content-type", "application/json")
                    .bearer_auth(&token)
                    .body(initialize_body()),
            )
            .await;
        assert_eq!(got, 200, "{alg}");
    }

    let metrics = stack.sidecar.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"mcp_gateway_auth_failures_total{reason="insufficient_scope"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reason="disallowed_alg""#), "{metrics}");
    // Only the two good initializes reached the upstream.
    assert_eq!(stack.standin.requests().await.unwrap().len(), 2);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_session_belongs_to_the_subject_that_opened_it() {
    let stack = Stack::start(true, |_| {}).await;
    let http = reqwest::Client::new();
    let resource = stack.mcp_url();
    let mine = stack.token();
    let theirs = stack
        .idp()
        .token_for(
            (fixtures::OTHER_CLIENT_ID, fixtures::OTHER_CLIENT_SECRET),
            &resource,
            SCOPE,
            "RS256",
            None,
        )
        .unwrap();
    let post = |token: &str, session: Option<&str>, body: String| {
        let mut r = http
            .post(&resource)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .bearer_auth(token)
            .body(body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    };
    let (status, headers, _) = stack.send(post(&mine, None, initialize_body())).await;
    assert_eq!(status, 200);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let (status, _, _) = stack.send(post(&mine, Some(&session), initialized)).await;
    assert_eq!(status, 202);
    let (status, _, body) = stack.send(post(&mine, Some(&session), list.clone())).await;
    assert_eq!(status, 200);
    assert!(body.contains("echo"));
    let upstream_ids: Vec<String> = stack
        .standin
        .requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r["mcpSessionId"].as_str().map(String::from))
        .collect();
    assert!(
        !upstream_ids.is_empty(),
        "the upstream saw its own session id"
    );
    assert!(
        !upstream_ids.contains(&session),
        "the client must get a sealed id, not the upstream's"
    );

    // Another subject presenting the same id gets "session not found".
    let (status, _, body) = stack
        .send(post(&theirs, Some(&session), list.clone()))
        .await;
    assert_eq!(status, 404, "{body}");
    // A forged id too.
    let (status, _, _) = stack
        .send(post(&mine, Some("forged-session-id"), list))
        .await;
    assert_eq!(status, 404);

    // Legacy SSE: the message URL from the endpoint event works for the stream's subject only.
    let sse = http
        .get(format!("{}/sse", stack.sidecar.url))
        .header("accept", "text/event-stream")
        .bearer_auth(&mine)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let (events, text) = first_event(sse).await;
    stack.record(text.as_bytes());
    let endpoint = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap()
        .to_string();
    let message_url = format!("{}{endpoint}", stack.sidecar.url);
    let message = |token: &str, url: &str| {
        http.post(url)
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(initialize_body())
    };
    let (status, _, _) = stack.send(message(&theirs, &message_url)).await;
    assert_eq!(
        status, 404,
        "another subject must not post into this stream"
    );
    let forged = format!("{}/message?s=AAAA", stack.sidecar.url);
    let (status, _, _) = stack.send(message(&mine, &forged)).await;
    assert_eq!(status, 404);
    let (status, _, _) = stack.send(message(&mine, &message_url)).await;
    assert_eq!(status, 202, "the stream's own subject can post");
    drop(events);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn legacy_sse_endpoint_event_hides_the_key_and_points_at_the_public_route() {
    let stack = Stack::start(false, |c| c.path_prefix = "/weather".into()).await;
    let response = reqwest::Client::new()
        .get(format!("{}/weather/sse", stack.sidecar.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let (_stream, text) = first_event(response).await;
    stack.record(text.as_bytes());
    assert!(text.starts_with("event: endpoint"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    // The upstream's query (azmcpcs=…&code=<key>) is gone: the client gets our sealed form.
    assert!(data.starts_with("/weather/message?s="), "{data}");
    assert!(
        !data.contains("code=") && !data.contains("azmcpcs"),
        "{data}"
    );

    // Anonymous mode: no metadata is advertised.
    let (status, _, _) = stack
        .send(reqwest::Client::new().get(format!(
            "{}/.well-known/oauth-protected-resource/weather/mcp",
            stack.sidecar.url
        )))
        .await;
    assert_eq!(status, 404);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn key_rotation_under_load_fails_no_request() {
    let stack = Arc::new(Stack::start(false, |_| {}).await);
    let http = reqwest::Client::new();
    let url = stack.mcp_url();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .header("accept", ACCEPT)
                    .header("content-type", "application/json")
                    .body(initialize_body())
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                if status == 200 {
                    ok += 1
                } else {
                    failed.push(status)
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The Function App's key is renewed and the synced Secret volume swaps to it at once.
    let new_key = system_key("b");
    write_secret_volume(&stack.dir.path().join("secret"), &new_key);
    *stack.key.lock().unwrap() = new_key;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reloads_after_1s = stack.sidecar.metrics().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "requests failed during rotation: {failed:?}"
    );
    assert!(ok > 20, "too few requests to prove anything: {ok}");
    // Within a second the sidecar was using the new key (first load + the rotation).
    assert!(
        reloads_after_1s.contains(r#"mcp_gateway_key_reloads_total{outcome="ok"} 2"#),
        "{reloads_after_1s}"
    );
    let requests = stack.standin.requests().await.unwrap();
    assert!(
        requests
            .iter()
            .rev()
            .take(10)
            .all(|r| r["keyMatched"] == true)
    );
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn origin_body_size_and_upstream_timeouts_are_enforced() {
    // An upstream that accepts connections but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let stack = Stack::start(false, |c| {
        c.limits.max_request_body_bytes = 1024;
        c.upstream.response_timeout_seconds = 1;
    })
    .await;
    let http = reqwest::Client::new();
    let url = stack.mcp_url();

    let (status, _, _) = stack
        .send(
            http.post(&url)
                .header("origin", "https://evil.example")
                .header("accept", ACCEPT)
                .body(initialize_body()),
        )
        .await;
    assert_eq!(status, 403);
    let (status, headers, _) = stack
        .send(
            http.post(&url)
                .header("origin", "http://localhost:6274")
                .header("accept", ACCEPT)
                .header("content-type", "application/json")
                .body(initialize_body()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let (status, headers, _) = stack
        .send(
            http.request(reqwest::Method::OPTIONS, &url)
                .header("origin", "http://localhost:6274")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, mcp-session-id",
                ),
        )
        .await;
    assert_eq!(status, 204);
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Mcp-Session-Id")
    );

    let (status, _, _) = stack
        .send(
            http.post(&url)
                .header("accept", ACCEPT)
                .body(vec![b'x'; 4096]),
        )
        .await;
    assert_eq!(status, 413);

    // 405 and 406 from the upstream pass through with their bodies.
    let (status, _, _) = stack
        .send(http.get(&url).header("accept", "text/event-stream"))
        .await;
    assert_eq!(status, 405);
    let (status, _, _) = stack
        .send(
            http.post(&url)
                .header("accept", "application/json")
                .body(initialize_body()),
        )
        .await;
    assert_eq!(status, 406);
    stack.assert_no_key_leak();
    drop(stack);

    let slow = Stack::start(false, |c| {
        c.upstream.url = silent_url.parse().unwrap();
        c.upstream.response_timeout_seconds = 1;
    })
    .await;
    let (status, _, _) = slow
        .send(
            http.post(slow.mcp_url())
                .header("accept", ACCEPT)
                .body(initialize_body()),
        )
        .await;
    assert_eq!(status, 504);
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_stream() {
    let stack = Stack::start(false, |_| {}).await;
    let out = stack.client(&[
        "--url",
        &stack.mcp_url(),
        "--transport",
        "streamable",
        "--call",
        "slow_count",
        "--args",
        r#"{"n":200,"delay_ms":50}"#,
        "--disconnect-after-notifications",
        "3",
    ]);
    let _ = out;
    // The stand-in notices the closed stream well before slow_count would have finished (10 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = stack.standin.stats().await.unwrap();
        if stats["aborted"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upstream request was not cancelled: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = stack.sidecar.metrics().await.unwrap();
    assert!(metrics.contains("mcp_gateway_open_streams 0"), "{metrics}");
}

#[tokio::test]
async fn graceful_shutdown_exits_cleanly() {
    let mut stack = Stack::start(false, |_| {}).await;
    let code = stack.sidecar.process.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn readiness_waits_for_the_key_and_recovers_when_it_appears() {
    let dir = TempDir::new("ready");
    let key_file = dir.path().join("key");
    let (listen, base) = public_listener();
    let config: Config = serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": "http://127.0.0.1:9"},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Anonymous"},
    }))
    .unwrap();
    let sidecar = Sidecar::start(config).expect("sidecar starts without its key");
    let readyz = || async {
        reqwest::get(format!("{}/readyz", sidecar.admin_url))
            .await
            .unwrap()
    };
    let not_ready = readyz().await;
    assert_eq!(not_ready.status(), 503);
    let why = not_ready.text().await.unwrap();
    assert!(
        why.starts_with("system key not loaded: cannot read the system key file"),
        "{why}"
    );
    // Requests meanwhile get a clear 503, not an unauthenticated upstream call.
    let r = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", ACCEPT)
        .body(initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    std::fs::write(&key_file, system_key("late")).unwrap();
    sidecar
        .wait_ready()
        .await
        .expect("ready once the key file appears");
    assert!(
        reqwest::get(format!("{}/livez", sidecar.admin_url))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

#[tokio::test]
async fn shutdown_drains_open_streams_before_exiting() {
    let mut stack = Stack::start(false, |_| {}).await;
    let sse = reqwest::Client::new()
        .get(format!("{}/sse", stack.sidecar.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut events = sse.bytes_stream();
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stack.record(&first);

    // SIGTERM with a stream open: the sidecar stops accepting but keeps serving the stream.
    let pid = stack.sidecar.process.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let refused = reqwest::Client::new()
        .post(stack.mcp_url())
        .header("accept", ACCEPT)
        .body(initialize_body())
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a draining sidecar must not accept new connections"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the sidecar exited while a stream was still open"
    );

    // The stream ends (here because the upstream goes away; an idle client that leaves is
    // only noticed at the next write); the sidecar then exits cleanly, before the drain
    // timeout.
    stack.standin.stop();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = events.next().await {
            stack.record(&chunk);
        }
    })
    .await;
    assert!(
        rest.is_ok(),
        "the client's stream should end when the upstream's does"
    );
    let code = stack.sidecar.process.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn every_request_line_says_which_request_from_where_and_why() {
    let stack = Stack::start(true, |_| {}).await;
    let http = reqwest::Client::new();
    // An incoming request id is kept, echoed and passed upstream.
    let token = stack.token();
    let (status, headers, _) = stack
        .send(
            stack
                .post(&http, Some(&token), None, initialize_body())
                .header("x-request-id", "call-7f3a"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-request-id"], "call-7f3a");
    let requests = stack.standin.requests().await.unwrap();
    assert!(
        requests.last().unwrap()["headerNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "x-request-id"),
        "{requests:?}"
    );
    // Without one, the gateway makes one up; a 401 line says why.
    let (status, headers, _) = stack
        .send(stack.post(&http, None, None, initialize_body()))
        .await;
    assert_eq!(status, 401);
    let generated = headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 32, "{generated}");
    // Log lines are written by a background thread: wait for both.
    let lines = mcp_gateway_tests::eventually(10, "both request lines", || async {
        let lines: Vec<Value> = stack
            .sidecar
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &Value| l["message"] == "request")
            .collect();
        let has = |id: &str| lines.iter().any(|l| l["request_id"] == id);
        (has("call-7f3a") && has(&generated))
            .then_some(lines.clone())
            .ok_or(format!("{lines:?}"))
    })
    .await
    .unwrap();
    let ok = lines
        .iter()
        .find(|l| l["request_id"] == "call-7f3a")
        .expect("the request's line");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["client"], "127.0.0.1", "{ok}");
    assert!(
        ok["peer"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{ok}"
    );
    assert!(ok["subject"].is_string(), "{ok}");
    let refused = lines
        .iter()
        .find(|l| l["request_id"] == generated.as_str())
        .expect("the 401's line");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["reason"], "missing", "{refused}");
    stack.assert_no_key_leak();
}
