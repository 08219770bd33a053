//! Long tool calls against the Functions host stand-in, which (like the real host) writes no
//! response headers until a tool's result is ready: the gateway opens the client's event
//! stream itself after one keep-alive interval, keeps it busy with SSE comments, and delivers
//! the result (or a JSON-RPC error) as its `message` event; quiet upstream streams get
//! keep-alives too. Driven by raw HTTP (to see every byte) and by the TypeScript SDK's client.

use std::time::Duration;

use futures::StreamExt;
use mcp_gateway_tests::eventually;
use mcp_gateway_tests::stack::{Stack, StackOptions, tool_call};
use serde_json::{Value, json};

const KEEP_ALIVE: &str = ": keep-alive\n";
const OPEN_STREAMS: &str = "mcp_gateway_open_streams";

/// A stack whose gateway keeps alive every second and waits `response_seconds` for the first
/// byte.
async fn stack(standin_args: &[&str], response_seconds: u32) -> Stack {
    Stack::start_with(
        StackOptions {
            standin_args: standin_args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        },
        |c| {
            c.client_keep_alive_seconds = 1;
            c.upstream.response_timeout_seconds = response_seconds;
        },
    )
    .await
}

/// A `tools/call` of the stand-in's `sleep` tool (`ms` milliseconds, no progress) as request
/// `id` on `session`.
async fn sleep_call(
    stack: &Stack,
    http: &reqwest::Client,
    session: &str,
    id: u64,
    ms: u64,
) -> reqwest::Response {
    stack
        .post(
            http,
            None,
            Some(session),
            tool_call(id, "sleep", json!({"ms": ms})),
        )
        .send()
        .await
        .unwrap()
}

/// `mcp_gateway_long_calls_total{outcome}`.
async fn long_calls(stack: &Stack, outcome: &str) -> f64 {
    let series = format!(r#"mcp_gateway_long_calls_total{{outcome="{outcome}"}}"#);
    stack.sidecar.metric(&series).await.unwrap()
}

/// Reads a whole response body (bounded by `limit`); returns status, content type and text.
/// The `sleep` call's audit record, written once its outcome is known: failed, with this
/// status and reason.
async fn assert_sleep_audited(stack: &Stack, status: u16, reason: &str) {
    let record = eventually(10, "the sleep call's audit record", || async {
        stack
            .sidecar
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["target"] == "audit" && l["tool"] == "sleep")
            .ok_or("no record yet".to_string())
    })
    .await
    .unwrap();
    assert_eq!(
        (&record["outcome"], &record["status"], &record["reason"]),
        (&json!("failed"), &json!(status), &json!(reason)),
        "{record}"
    );
}

async fn read_all(response: reqwest::Response, limit: Duration) -> (u16, String, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(limit, async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(
                &chunk.expect("the stream stays intact"),
            ));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the response ended within {limit:?}: {text:?}"));
    (status, content_type, text)
}

/// The `data` of every `message` event in an SSE text, parsed as JSON.
fn messages(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|event| event.lines().any(|l| l == "event: message"))
        .map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            serde_json::from_str(&data.join("\n")).unwrap_or_else(|e| panic!("{e}: {event:?}"))
        })
        .collect()
}

#[tokio::test]
async fn a_call_longer_than_a_keep_alive_gets_the_gateways_stream_then_its_result() {
    let stack = stack(&[], 30).await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let response = sleep_call(&stack, &http, &session, 2, 3500).await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let (status, content_type, text) = read_all(response, Duration::from_secs(20)).await;
    stack.record(text.as_bytes());
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    // Keep-alives came while the tool ran (the stand-in sent nothing for 3.5 s), then the
    // result, answering request 2.
    let before_result = text.split("event: message").next().unwrap();
    assert!(before_result.starts_with(KEEP_ALIVE), "{text:?}");
    assert!(before_result.matches(KEEP_ALIVE).count() >= 2, "{text:?}");
    let answers = messages(&text);
    assert_eq!(answers.len(), 1, "{text:?}");
    assert_eq!(answers[0]["id"], 2);
    assert_eq!(answers[0]["result"]["content"][0]["text"], "slept 3500");
    let metrics = stack.sidecar.metrics().await.unwrap();
    for outcome in ["opened", "answered"] {
        let series = format!(r#"mcp_gateway_long_calls_total{{outcome="{outcome}"}} 1"#);
        assert!(metrics.contains(&series), "{series}: {metrics}");
    }
    assert_eq!(stack.sidecar.metric(OPEN_STREAMS).await.unwrap(), 0.0);
    // The outcome's log line carries the request's id (its request line said 200 at the open).
    eventually(10, "the outcome logged with the request id", || async {
        let logs = stack.sidecar.logs();
        logs.lines()
            .any(|l| l.contains("a long call was answered") && l.contains(&request_id))
            .then_some(())
            .ok_or(logs)
    })
    .await
    .unwrap();
    // A quick call on the same session keeps the upstream's own response, untouched.
    let (status, _, body) = stack
        .send(stack.post(
            &http,
            None,
            Some(&session),
            tool_call(3, "sleep", json!({"ms": 10})),
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("keep-alive") && body.contains("slept 10"),
        "{body}"
    );
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_json_answer_after_the_stream_opened_becomes_its_message_event() {
    // --json-response: the upstream answers with one application/json body once done.
    let stack = stack(&["--json-response"], 30).await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let response = sleep_call(&stack, &http, &session, 7, 2500).await;
    let (status, content_type, text) = read_all(response, Duration::from_secs(20)).await;
    assert_eq!((status, content_type.as_str()), (200, "text/event-stream"));
    assert!(text.starts_with(KEEP_ALIVE), "{text:?}");
    let answers = messages(&text);
    assert_eq!(answers.len(), 1, "{text:?}");
    assert_eq!(answers[0]["id"], 7);
    assert_eq!(answers[0]["result"]["content"][0]["text"], "slept 2500");
    assert!(text.ends_with("\n\n"), "{text:?}");
}

#[tokio::test]
async fn past_the_time_to_first_byte_the_open_stream_gets_a_json_rpc_error() {
    let stack = stack(&[], 3).await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let response = sleep_call(&stack, &http, &session, 4, 20000).await;
    let (status, _, text) = read_all(response, Duration::from_secs(15)).await;
    assert_eq!(status, 200, "the stream was open before the timeout");
    let answers = messages(&text);
    assert_eq!(answers.len(), 1, "{text:?}");
    assert_eq!(answers[0]["id"], 4);
    assert_eq!(
        answers[0]["error"]["message"],
        "the MCP server did not answer in time"
    );
    assert_eq!(answers[0]["error"]["data"]["httpStatus"], 504);
    // The gateway let go of the upstream request rather than leave the tool running for no one.
    eventually(10, "the upstream request aborted", || async {
        let stats = stack.standin.stats().await.map_err(|e| e.to_string())?;
        (stats["aborted"] == 1)
            .then_some(())
            .ok_or(stats.to_string())
    })
    .await
    .unwrap();
    let failed = long_calls(&stack, "failed").await;
    assert_eq!(failed, 1.0);
    // The audit record waits for the outcome: the timeout, not the stream's 200.
    assert_sleep_audited(&stack, 504, "upstream_timeout").await;
}

#[tokio::test]
async fn a_client_gone_during_a_silent_call_drops_the_upstream_call() {
    let stack = stack(&[], 120).await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let caller = reqwest::Client::new();
    let response = sleep_call(&stack, &caller, &session, 5, 100000).await;
    assert_eq!(response.status(), 200);
    let mut stream = Box::pin(response.bytes_stream());
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a keep-alive within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], KEEP_ALIVE.as_bytes());
    assert_eq!(stack.sidecar.metric(OPEN_STREAMS).await.unwrap(), 1.0);
    drop(stream);
    drop(caller);
    // Nothing more comes from the upstream for 100 s. Here the closed socket itself tells the
    // gateway (hyper sees the EOF, as it did before keep-alives: checked by disabling them);
    // behind a proxy that keeps its side open, the next keep-alive's failed write does.
    eventually(10, "the upstream request aborted", || async {
        let stats = stack.standin.stats().await.map_err(|e| e.to_string())?;
        let open = stack
            .sidecar
            .metric(OPEN_STREAMS)
            .await
            .map_err(|e| e.to_string())?;
        (stats["aborted"] == 1 && open == 0.0)
            .then_some(())
            .ok_or(format!("open_streams {open}, stand-in {stats}"))
    })
    .await
    .unwrap();
    // The abandoned call still has its audit record, saying the client left.
    assert_sleep_audited(&stack, 499, "client_gone").await;
}

#[tokio::test]
async fn a_quiet_upstream_stream_gets_keep_alives_between_its_events() {
    // --headers-at-once: the upstream opens its event stream at once (as the TypeScript SDK
    // does), then stays silent while the tool runs.
    let stack = stack(&["--headers-at-once"], 30).await;
    let http = reqwest::Client::new();
    let session = stack.open_session(&http, None).await;
    let response = sleep_call(&stack, &http, &session, 6, 2500).await;
    let (status, _, text) = read_all(response, Duration::from_secs(20)).await;
    assert_eq!(status, 200);
    assert!(text.matches(KEEP_ALIVE).count() >= 2, "{text:?}");
    let answers = messages(&text);
    assert_eq!(answers.len(), 1, "{text:?}");
    assert_eq!(answers[0]["id"], 6);
    // The upstream's own stream: nothing was opened by the gateway.
    let opened = long_calls(&stack, "opened").await;
    assert_eq!(opened, 0.0);
}

#[tokio::test]
async fn the_sdk_client_gets_a_long_result_and_its_progress_through_the_gateway() {
    let stack = stack(&[], 60).await;
    // A silent 4 s tool, then one that reports progress slowly: the TypeScript SDK's client
    // takes both streams (keep-alive comments included) as valid Streamable HTTP.
    let out = stack.client(&[
        "--url",
        &stack.mcp_url(),
        "--transport",
        "streamable",
        "--call",
        "sleep",
        "--args",
        r#"{"ms":4000}"#,
    ]);
    assert_eq!(out["result"]["content"][0]["text"], "slept 4000", "{out}");
    let out = stack.client(&[
        "--url",
        &stack.mcp_url(),
        "--transport",
        "streamable",
        "--call",
        "slow_count",
        "--args",
        r#"{"n":3,"delay_ms":1500}"#,
        "--progress",
    ]);
    assert_eq!(out["result"]["content"][0]["text"], "counted to 3", "{out}");
    assert_eq!(out["notifications"]["progress"], 3, "{out}");
    let opened = long_calls(&stack, "opened").await;
    // The silent call got the gateway's stream (slow_count's first progress event comes
    // after 1.5 s, which may or may not beat the 1 s keep-alive: not counted).
    assert!(opened >= 1.0, "{opened}");
    stack.assert_no_key_leak();
}
