//! Fault injection against the real sidecar binary, with real peers: the OpenID provider goes
//! away, comes late or rotates its keys; the Functions host stand-in dies, comes back, is slow
//! or cuts a stream; the key file breaks; clients vanish mid-stream; the config is wrong.
//! Every fault is caused by a real process or file, never by a mock, and every recovery is
//! waited for with `eventually`, never with a sleep.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::StreamExt;
use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::fixtures::{Idp, Standin};
use mcp_gateway_tests::process::ProcStats;
use mcp_gateway_tests::sidecar::{Sidecar, public_listener, run_to_exit};
use mcp_gateway_tests::stack::{
    ACCEPT, SCOPE, Stack, StackOptions, first_event, initialize_body, oidc_auth, system_key,
    tool_call,
};
use mcp_gateway_tests::{TempDir, eventually};
use serde_json::json;

const REFRESH_OK: &str = r#"mcp_gateway_jwks_refreshes_total{outcome="ok"}"#;
const REFRESH_ERROR: &str = r#"mcp_gateway_jwks_refreshes_total{outcome="error"}"#;
const KEY_OK: &str = r#"mcp_gateway_key_reloads_total{outcome="ok"}"#;
const KEY_ERROR: &str = r#"mcp_gateway_key_reloads_total{outcome="error"}"#;
const OPEN_STREAMS: &str = "mcp_gateway_open_streams";

/// A well-formed RS256 JWT naming key `kid`, with a signature nobody made: it gets as far as
/// the key lookup.
fn forged_token(kid: &str) -> String {
    let header = B64.encode(json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}).to_string());
    let claims = B64.encode(json!({"iss": "x", "sub": "x", "aud": "x", "exp": 4e9}).to_string());
    format!("{header}.{claims}.{}", B64.encode([7u8; 256]))
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// The sidecar must not have panicked, whatever it went through.
fn assert_no_panic(sidecar: &Sidecar) {
    let logs = sidecar.logs();
    assert!(!logs.contains("panicked"), "the sidecar panicked:\n{logs}");
}

#[tokio::test]
async fn idp_down_at_start_then_up() {
    // The IdP's port (and so its issuer) is fixed before it runs, as a real issuer URL is.
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let dir = TempDir::new("idp-late");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, system_key("late-idp")).unwrap();
    let standin = Standin::start(&key_file).expect("stand-in");
    let (listen, base) = public_listener();
    let config: Config = serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": standin.url},
        "systemKey": {"file": key_file},
        "auth": oidc_auth(&issuer, &base),
    }))
    .unwrap();
    let sidecar = Sidecar::start(config).expect("the sidecar starts without its IdP");
    eventually(20, "a failed JWKS fetch", || async {
        let errors = sidecar
            .metric(REFRESH_ERROR)
            .await
            .map_err(|e| e.to_string())?;
        (errors >= 1.0).then_some(()).ok_or(format!("{errors}"))
    })
    .await
    .unwrap();

    let (status, body) = sidecar.readyz().await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, "signing keys not fetched yet")
    );
    let http = reqwest::Client::new();
    let post = |token: Option<&str>| {
        let r = http
            .post(format!("{base}/mcp"))
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .body(initialize_body());
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    // No token: the usual challenge, no keys needed for that.
    let r = post(None).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // A token that would need the keys: 503 (a server-side problem), not a 401 that sends
    // the client off to re-authenticate, and not a crash.
    let r = post(Some(&forged_token("some-key"))).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.text().await.unwrap(),
        "the gateway cannot verify access tokens yet"
    );
    let metrics = sidecar.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"mcp_gateway_auth_failures_total{reason="jwks_unavailable"} 1"#),
        "{metrics}"
    );

    // The IdP comes up: the background retry finds it, with no restart of the sidecar.
    let idp = Idp::start_on(idp_port).expect("the IdP starts on its port");
    assert_eq!(idp.issuer, issuer);
    let token = idp.token(&format!("{base}/mcp"), SCOPE, "RS256").unwrap();
    eventually(90, "ready once the IdP is up", || async {
        let (status, body) = sidecar.readyz().await.map_err(|e| e.to_string())?;
        (status == 200).then_some(()).ok_or(body)
    })
    .await
    .unwrap();
    let r = post(Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        standin_requests(&standin).await,
        1,
        "only the good call went upstream"
    );
    assert_no_panic(&sidecar);
}

async fn standin_requests(standin: &Standin) -> usize {
    standin.requests().await.unwrap().len()
}

#[tokio::test]
async fn idp_down_mid_run_keeps_the_cached_keys() {
    let mut stack = Stack::start(true, |_| {}).await;
    let http = reqwest::Client::new();
    let warm = stack.token();
    let (status, _, _) = stack
        .send(stack.post(&http, Some(&warm), None, initialize_body()))
        .await;
    assert_eq!(status, 200);
    // Minted now, presented only once the IdP is gone: a token the gateway has never
    // verified, so only the cached JWKS can accept it.
    let fresh = stack.token();
    // Signed with a key published after the gateway's fetch: it has never seen that key.
    stack.idp().rotate("RS256", false).await.unwrap();
    let unseen = stack.token();
    stack.idp.as_mut().unwrap().stop();

    let (status, _, _) = stack
        .send(stack.post(&http, Some(&fresh), None, initialize_body()))
        .await;
    assert_eq!(
        status, 200,
        "a fresh token with a cached key works while the IdP is down"
    );
    // The unknown key makes the gateway refetch (at most every 30 s, so this can take that
    // long): the fetch fails, and the token is refused as a bad token (401), not as a
    // gateway failure.
    let mut refused = 0u32;
    eventually(60, "a refetch attempt while the IdP is down", || {
        let (stack, http, unseen) = (&stack, &http, &unseen);
        refused += 1;
        async move {
            let (status, headers, _) = stack
                .send(stack.post(http, Some(unseen), None, initialize_body()))
                .await;
            assert_eq!(status, 401, "an unseen key while the IdP is down");
            let challenge = headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.contains("invalid_token"), "{challenge}");
            let errors = stack
                .sidecar
                .metric(REFRESH_ERROR)
                .await
                .map_err(|e| e.to_string())?;
            (errors >= 1.0)
                .then_some(())
                .ok_or(format!("fetch errors {errors}"))
        }
    })
    .await
    .unwrap();
    eprintln!("unseen-key token refused {refused} times until the failed refetch");
    // The failed fetch did not throw the cached keys away.
    let (status, _, _) = stack
        .send(stack.post(&http, Some(&fresh), None, initialize_body()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stack.sidecar.readyz().await.unwrap().0, 200);
    let metrics = stack.sidecar.metrics().await.unwrap();
    assert!(metrics.contains(r#"reason="unknown_key""#), "{metrics}");
    assert!(
        !metrics.contains(r#"reason="jwks_unavailable""#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"status="5"#), "no 5xx: {metrics}");
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn idp_key_rotation_is_followed_and_a_withdrawn_key_is_refused() {
    let stack = Stack::start(true, |_| {}).await;
    let http = reqwest::Client::new();
    let old = stack.token();
    let (status, _, _) = stack
        .send(stack.post(&http, Some(&old), None, initialize_body()))
        .await;
    assert_eq!(status, 200);
    let old_unused = stack.token();
    // The IdP publishes a new key, signs with it, and withdraws the old one.
    let keys = stack.idp().rotate("RS256", true).await.unwrap();
    let new = stack.token();
    let new_kid = keys["active"]["RS256"].as_str().unwrap();
    assert!(
        B64.decode(new.split('.').next().unwrap())
            .is_ok_and(|h| String::from_utf8_lossy(&h).contains(new_kid))
    );

    // Unknown kid → refetch (rate limited to one per 30 s, counted from the start-up fetch,
    // so this can take that long); meanwhile the token is refused with 401, nothing else.
    let mut refused = 0u32;
    eventually(60, "the new key accepted", || {
        let (stack, http, new) = (&stack, &http, &new);
        refused += 1;
        async move {
            let (status, _, body) = stack
                .send(stack.post(http, Some(new), None, initialize_body()))
                .await;
            match status {
                200 => Ok(()),
                401 => Err(format!("401 {body}")),
                other => panic!("a token with the new key got {other}: {body}"),
            }
        }
    })
    .await
    .unwrap();
    eprintln!(
        "new-key token refused {} times until the refetch",
        refused - 1
    );
    assert_eq!(stack.sidecar.metric(REFRESH_OK).await.unwrap(), 2.0);
    // The withdrawn key: a token verified with it before is refused now (the verified-token
    // cache was flushed), and so is one never seen.
    for (what, token) in [("already verified", &old), ("never presented", &old_unused)] {
        let (status, headers, _) = stack
            .send(stack.post(&http, Some(token), None, initialize_body()))
            .await;
        assert_eq!(status, 401, "{what} old-key token");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn upstream_down_gives_502_and_recovers_on_the_same_port() {
    let mut stack = Stack::start(false, |_| {}).await;
    let http = reqwest::Client::new();
    stack.open_session(&http, None).await;
    stack.standin.stop();

    let (status, headers, body) = stack
        .send(stack.post(&http, None, None, initialize_body()))
        .await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, "the MCP server could not be reached");
    let (status, _, body) = stack
        .send(
            http.get(format!("{}/sse", stack.sidecar.url))
                .header("accept", "text/event-stream"),
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (502, "the MCP server could not be reached")
    );
    // The log says what failed, where, and why: the upstream's origin and the cause.
    let upstream = stack.standin.url.clone();
    eventually(10, "the failure logged with its cause", || async {
        let logs = stack.sidecar.logs();
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|l| {
                l["message"] == "upstream request failed"
                    && l["cause"] == "refused"
                    && l["upstream"] == upstream.as_str()
                    && l["error"].as_str().is_some_and(|e| e.contains("refused"))
            })
            .then_some(())
            .ok_or(logs)
    })
    .await
    .unwrap();
    let logs = stack.sidecar.logs();
    assert!(
        logs.lines().any(|l| l.contains(r#""message":"request""#)
            && l.contains(r#""status":502"#)
            && l.contains(r#""reason":"upstream_unreachable""#)),
        "{logs}"
    );

    // The Function App comes back at the same address: the next request works, with the same
    // sidecar process (no stale pooled connection to the dead one is used).
    stack
        .restart_standin()
        .expect("the stand-in restarts on its port");
    let session = stack.open_session(&http, None).await;
    let (status, _, body) = stack
        .send(stack.post(
            &http,
            None,
            Some(&session),
            tool_call(2, "add", json!({"a": 40, "b": 2})),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""text":"42""#), "{body}");
    let sse = http
        .get(format!("{}/sse", stack.sidecar.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let (events, first) = first_event(sse).await;
    stack.record(first.as_bytes());
    assert!(first.starts_with("event: endpoint"), "{first}");
    drop(events);

    // A restart the sidecar does not see (no request while it is down): its pooled
    // keep-alive connection to the old process is dead, and the first request after must
    // still succeed.
    stack.standin.stop();
    stack
        .restart_standin()
        .expect("the stand-in restarts on its port");
    let (status, _, body) = stack
        .send(stack.post(&http, None, None, initialize_body()))
        .await;
    assert_eq!(status, 200, "first request after an unseen restart: {body}");
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_slow_upstream_gets_504_and_the_call_is_cancelled_upstream() {
    // --json-response: the stand-in sends no response headers until the tool is done, like a
    // host that buffers the function's output (or is cold-starting).
    let stack = Stack::start_with(
        StackOptions {
            standin_args: vec!["--json-response".into()],
            ..Default::default()
        },
        |c| c.upstream.response_timeout_seconds = 1,
    )
    .await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let (status, headers, body) = stack
        .send(stack.post(
            &http,
            None,
            Some(&session),
            tool_call(2, "sleep", json!({"ms": 4000})),
        ))
        .await;
    assert_eq!(status, 504);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, "the MCP server did not answer in time");
    // The sidecar let go of the upstream request (closed its connection) rather than leave it
    // waiting.
    eventually(10, "the upstream request aborted", || async {
        let stats = stack.standin.stats().await.map_err(|e| e.to_string())?;
        (stats["aborted"] == 1)
            .then_some(())
            .ok_or(stats.to_string())
    })
    .await
    .unwrap();
    // The session and the sidecar carry on.
    let (status, _, body) = stack
        .send(stack.post(
            &http,
            None,
            Some(&session),
            tool_call(3, "sleep", json!({"ms": 10})),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("slept 10"), "{body}");
    let metrics = stack.sidecar.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"mcp_gateway_requests_total{route="mcp",status="504"} 1"#),
        "{metrics}"
    );
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_silent_stream_is_ended_at_the_idle_timeout() {
    // With --headers-at-once the stand-in opens the event stream at once (as the TypeScript
    // SDK does; the real host waits for the result), so a slow tool is a silent stream: the
    // idle timeout applies. The gateway's keep-alives toward the client do not count as
    // upstream activity.
    let stack = Stack::start_with(
        StackOptions {
            standin_args: vec!["--headers-at-once".into()],
            ..Default::default()
        },
        |c| {
            c.upstream.stream_idle_timeout_seconds = 2;
            c.client_keep_alive_seconds = 1;
        },
    )
    .await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let response = stack
        .post(
            &http,
            None,
            Some(&session),
            tool_call(2, "sleep", json!({"ms": 5000})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Err(e) => return Some(e),
            }
        }
        None
    })
    .await
    .expect("the silent stream was ended by the sidecar");
    assert!(
        outcome.is_some(),
        "the stream should fail (not end cleanly, like a finished response): {text}"
    );
    assert!(!text.contains("slept"), "{text}");
    assert!(text.starts_with(": keep-alive\n"), "{text:?}");
    eventually(10, "the idle timeout logged", || async {
        let logs = stack.sidecar.logs();
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("idle for too long"))
            .then_some(())
            .ok_or(logs)
    })
    .await
    .unwrap();
    eventually(10, "open_streams back to 0", || async {
        let open = stack
            .sidecar
            .metric(OPEN_STREAMS)
            .await
            .map_err(|e| e.to_string())?;
        (open == 0.0).then_some(()).ok_or(format!("{open}"))
    })
    .await
    .unwrap();
    assert_no_panic(&stack.sidecar);
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_ends_the_clients_stream() {
    let stack = Stack::start(false, |_| {}).await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let response = stack
        .post(
            &http,
            None,
            Some(&session),
            tool_call(2, "reset_stream", json!({"notifications": 2})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let (mut text, mut error) = (String::new(), None);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client's stream did not end: {text}");
    stack.record(text.as_bytes());
    assert_eq!(text.matches("step ").count(), 2, "{text}");
    assert!(!text.contains(r#""result""#), "{text}");
    // The cut is passed on as a cut (an incomplete chunked body), not as a clean end that
    // would look like a finished response.
    let error = error.expect("the client sees the stream fail, not end cleanly");
    eprintln!("client-side error: {error:?}");
    assert_eq!(stack.standin.stats().await.unwrap()["resets"], 1);
    eventually(10, "open_streams back to 0", || async {
        let open = stack
            .sidecar
            .metric(OPEN_STREAMS)
            .await
            .map_err(|e| e.to_string())?;
        (open == 0.0).then_some(()).ok_or(format!("{open}"))
    })
    .await
    .unwrap();
    eventually(10, "the reset logged", || async {
        let logs = stack.sidecar.logs();
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("upstream response stream failed"))
            .then_some(())
            .ok_or(logs)
    })
    .await
    .unwrap();
    // Other requests, on the same session, are served.
    let (status, _, body) = stack
        .send(stack.post(
            &http,
            None,
            Some(&session),
            tool_call(3, "echo", json!({"message": "still here"})),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("still here"), "{body}");
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_broken_key_file_keeps_the_last_good_key() {
    // The stand-in reads its own copy of the key, so breaking the sidecar's file breaks only
    // the sidecar's view. (`sidecar_e2e` covers a good key replaced by another good key.)
    let stack = Stack::start_with(
        StackOptions {
            separate_key_files: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let mut n = 1;
    let mut call_ok = || {
        n += 1;
        let (stack, http, session, id) = (&stack, &http, &session, n);
        async move {
            let (status, _, body) = stack
                .send(stack.post(
                    http,
                    None,
                    Some(session),
                    tool_call(id, "echo", json!({"message": "ok"})),
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            let last = stack.standin.requests().await.unwrap().pop().unwrap();
            assert_eq!(last["keyMatched"], true, "{last}");
        }
    };
    call_ok().await;
    let metric = |series: &'static str| {
        let sidecar = &stack.sidecar;
        async move { sidecar.metric(series).await.unwrap() }
    };
    assert_eq!((metric(KEY_OK).await, metric(KEY_ERROR).await), (1.0, 0.0));

    type Fault = Box<dyn Fn(&std::path::Path)>;
    let faults: [(&str, Fault); 4] = [
        ("deleted", Box::new(|f| std::fs::remove_file(f).unwrap())),
        ("emptied", Box::new(|f| std::fs::write(f, "").unwrap())),
        (
            "whitespace",
            Box::new(|f| std::fs::write(f, " \n\t\n").unwrap()),
        ),
        (
            "not a header value",
            Box::new(|f| std::fs::write(f, b"SYSKEY-\x00\xff\r\nInjected: 1").unwrap()),
        ),
    ];
    for (i, (what, fault)) in faults.iter().enumerate() {
        fault(&stack.key_file);
        let want = (i + 1) as f64;
        eventually(10, &format!("key file {what}: an error reload"), || async {
            let errors = metric(KEY_ERROR).await;
            (errors == want).then_some(()).ok_or(format!("{errors}"))
        })
        .await
        .unwrap();
        call_ok().await;
        assert_eq!(
            metric(KEY_OK).await,
            1.0,
            "{what}: the bad file was not taken"
        );
        assert_eq!(stack.sidecar.readyz().await.unwrap().0, 200, "{what}");
    }
    // Each change of failure was reported once: emptied and whitespace are the same failure
    // (an empty key), so three warnings (logs are written by a background thread: wait).
    eventually(10, "a warning per change of failure", || async {
        let warnings = stack
            .sidecar
            .logs()
            .lines()
            .filter(|l| {
                l.contains("system key source failing") && l.contains(r#""kept_previous":true"#)
            })
            .count();
        (warnings == faults.len() - 1)
            .then_some(())
            .ok_or(format!("{warnings} warnings"))
    })
    .await
    .unwrap();

    // A good key again: picked up; the stand-in then accepts only that key, and the sidecar's
    // requests match it.
    let new_key = system_key("b");
    std::fs::write(&stack.key_file, &new_key).unwrap();
    eventually(10, "the new key loaded", || async {
        let ok = metric(KEY_OK).await;
        (ok == 2.0).then_some(()).ok_or(format!("{ok}"))
    })
    .await
    .unwrap();
    std::fs::write(&stack.standin_key_file, &new_key).unwrap();
    *stack.key.lock().unwrap() = new_key;
    call_ok().await;
    assert_eq!(
        metric("mcp_gateway_upstream_key_rejections_total").await,
        0.0
    );
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn client_disconnects_mid_stream_release_everything() {
    const SSE_STREAMS: usize = 30;
    const TOOL_STREAMS: usize = 20;
    let stack = Stack::start(false, |_| {}).await;
    let pid = stack.sidecar.process.pid();
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let baseline = ProcStats::of(pid);

    // A client with its own connection pool, dropped whole: every socket closes at once, as
    // when a client process dies.
    let clients = reqwest::Client::new();
    let mut held = Vec::new();
    for _ in 0..SSE_STREAMS {
        let r = clients
            .get(format!("{}/sse", stack.sidecar.url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (events, _) = first_event(r).await;
        held.push(events);
    }
    for id in 0..TOOL_STREAMS {
        let call = tool_call(
            100 + id as u64,
            "slow_count",
            json!({"n": 100000, "delay_ms": 200}),
        );
        let r = stack
            .post(&clients, None, Some(&session), call)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (events, first) = first_event(r).await;
        assert!(first.contains("step 1"), "{first}");
        held.push(events);
    }
    let total = (SSE_STREAMS + TOOL_STREAMS) as f64;
    assert_eq!(stack.sidecar.metric(OPEN_STREAMS).await.unwrap(), total);
    let peak = ProcStats::of(pid);
    let stats = stack.standin.stats().await.unwrap();
    assert_eq!(stats["sseSessions"], SSE_STREAMS);

    drop(held);
    drop(clients);
    eventually(20, "every stream released", || async {
        let open = stack
            .sidecar
            .metric(OPEN_STREAMS)
            .await
            .map_err(|e| e.to_string())?;
        let stats = stack.standin.stats().await.map_err(|e| e.to_string())?;
        let now = ProcStats::of(pid);
        let released = open == 0.0
            && stats["sseStreamsClosed"] == SSE_STREAMS
            && stats["aborted"] == TOOL_STREAMS
            && now.fds <= baseline.fds + 2;
        released.then_some(()).ok_or(format!(
            "open_streams {open}, fds {} (baseline {}), stand-in {stats}",
            now.fds, baseline.fds
        ))
    })
    .await
    .unwrap();
    let after = ProcStats::of(pid);
    eprintln!(
        "sidecar after {} client disconnects: fds baseline {} peak {} after {}; threads {} {} {}; \
         rss KiB {} {} {}",
        SSE_STREAMS + TOOL_STREAMS,
        baseline.fds,
        peak.fds,
        after.fds,
        baseline.threads,
        peak.threads,
        after.threads,
        baseline.rss_kb,
        peak.rss_kb,
        after.rss_kb
    );
    // Each stream held two sockets in the sidecar (client side and upstream side).
    assert!(
        peak.fds >= baseline.fds + 2 * (SSE_STREAMS + TOOL_STREAMS),
        "{peak:?}"
    );
    // Still serving.
    let (status, _, _) = stack
        .send(stack.post(
            &http,
            None,
            Some(&session),
            tool_call(2, "echo", json!({"message": "x"})),
        ))
        .await;
    assert_eq!(status, 200);
    assert_no_panic(&stack.sidecar);
    stack.assert_no_key_leak();
}

/// The sidecar reads its config once: it does not reload it at run time, because the operator
/// rolls the pods when the rendered config changes. So a bad config can only meet the sidecar
/// at start, and there it must stop with a message that says what to fix.
#[test]
fn an_invalid_config_is_refused_with_the_field_named() {
    let good = "listen: 127.0.0.1:0\nadminListen: 127.0.0.1:0\npublicBaseUrl: http://127.0.0.1:1\n\
                upstream: {url: 'http://127.0.0.1:9'}\nsystemKey: {file: /nonexistent/key}\n\
                auth: {mode: Anonymous}\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown field",
            format!("{good}bogusSetting: 1\n"),
            "bogusSetting",
        ),
        (
            "missing field",
            good.replace("publicBaseUrl: http://127.0.0.1:1\n", ""),
            "publicBaseUrl",
        ),
        (
            "wrong type",
            good.replace(
                "upstream: {url: 'http://127.0.0.1:9'}",
                "upstream: {url: 'http://127.0.0.1:9', responseTimeoutSeconds: soon}",
            ),
            "responseTimeoutSeconds",
        ),
        (
            "bad scheme",
            good.replace("'http://127.0.0.1:9'", "'ftp://127.0.0.1:9'"),
            "upstream.url",
        ),
        (
            "bad header name",
            good.replace(
                "{file: /nonexistent/key}",
                "{file: /nonexistent/key, header: 'x key'}",
            ),
            "systemKey.header",
        ),
        (
            "no audiences",
            good.replace(
                "{mode: Anonymous}",
                "{mode: Oidc, issuer: 'http://127.0.0.1:1', audiences: []}",
            ),
            "auth.audiences",
        ),
        ("not YAML", "listen: [\n".to_string(), "config.yaml"),
    ];
    for (what, text, field) in cases {
        let (code, stderr) = run_to_exit(text).unwrap();
        assert!(
            code.is_some_and(|c| c != 0),
            "{what}: exit code {code:?}; stderr:\n{stderr}"
        );
        // The first thing said is the error, one JSON line like every other, and it names
        // what to fix; it is said once.
        let first = stderr.lines().next().unwrap_or_default();
        let line: serde_json::Value = serde_json::from_str(first)
            .unwrap_or_else(|e| panic!("{what}: the first line is not JSON ({e}):\n{stderr}"));
        assert_eq!(line["level"], "ERROR", "{what}: {first}");
        assert!(
            line["error"].as_str().is_some_and(|e| e.contains(field)),
            "{what}: no mention of {field} in the first line:\n{stderr}"
        );
        assert_eq!(
            stderr.matches(field).count(),
            1,
            "{what}: the error is said more than once:\n{stderr}"
        );
        let lower = stderr.to_lowercase();
        assert!(
            !lower.contains("panicked") && !lower.contains("backtrace"),
            "{what}: a panic or a backtrace:\n{stderr}"
        );
    }
}
