//! The gateway against the stand-in's faithful copy of the Functions host's wire behaviour
//! (MCP extension 1.6.0): the host's JSON-RPC `ping` requests on legacy SSE streams, real
//! keys' raw base64 in the endpoint event, both endpoint forms, per-request servers with
//! sealed session ids, and the 2025-06-18 ceiling, with the TypeScript SDK's client; and which
//! 401/403 is the key's fault (the host's) and which is not (App Service Authentication's).

use std::time::Duration;

use futures::StreamExt;
use mcp_gateway_tests::stack::{
    Stack, StackOptions, first_event, initialize_body, write_secret_volume,
};
use mcp_gateway_tests::{TempDir, eventually};
use serde_json::{Value, json};

/// Shaped like a real `mcp_extension` key: 56 base64 characters with `+`, `/` and `==`.
const REAL_SHAPED_KEY: &str = "SYSKEY+/a1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ012345+/ab==";

async fn faithful(standin_args: &[&str]) -> Stack {
    Stack::start_with(
        StackOptions {
            standin_args: standin_args.iter().map(|a| a.to_string()).collect(),
            key: Some(REAL_SHAPED_KEY.into()),
            ..Default::default()
        },
        |_| {},
    )
    .await
}

/// Reads SSE text until `enough` holds for it (bounded by 10 s).
async fn read_until(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    text: &mut String,
    enough: impl Fn(&str) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !enough(text) {
            let chunk = stream.next().await.expect("the stream stays open").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not seen within 10 s: {text:?}"));
}

fn pings(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|m| m["method"] == "ping")
        .collect()
}

#[tokio::test]
async fn the_hosts_pings_reach_sse_clients_and_their_replies_reach_the_host() {
    assert_eq!(REAL_SHAPED_KEY.len(), 56);
    for endpoint_form in [None, Some("--absolute-endpoint")] {
        let mut args = vec!["--ping-seconds", "1"];
        args.extend(endpoint_form);
        let stack = faithful(&args).await;
        let http = reqwest::Client::new();
        let response = http
            .get(format!("{}/sse", stack.sidecar.url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (stream, first) = first_event(response).await;
        let mut stream = Box::pin(stream);
        let data = first
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        // The raw key (`+`, `/`, `==`) is gone from either form of the endpoint.
        assert!(data.starts_with("/message?s="), "{endpoint_form:?}: {data}");
        let message_url = format!("{}{data}", stack.sidecar.url);

        // A client that does not answer: the pings keep coming, the stream stays up.
        let mut text = first.clone();
        read_until(&mut stream, &mut text, |t| pings(t).len() >= 3).await;
        // Then it answers one; the reply reaches the host as a ping reply.
        let ping = pings(&text).pop().unwrap();
        let reply = json!({"jsonrpc": "2.0", "id": ping["id"], "result": {}});
        let (status, _, _) = stack
            .send(
                http.post(&message_url)
                    .header("content-type", "application/json")
                    .body(reply.to_string()),
            )
            .await;
        assert_eq!(status, 202);
        eventually(10, "the ping reply reached the host", || async {
            let stats = stack.standin.stats().await.map_err(|e| e.to_string())?;
            (stats["pingReplies"] == 1)
                .then_some(())
                .ok_or(stats.to_string())
        })
        .await
        .unwrap();
        // And MCP still works on the same stream.
        let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"message": "after pings"}}});
        let (status, _, _) = stack
            .send(
                http.post(&message_url)
                    .header("content-type", "application/json")
                    .body(call.to_string()),
            )
            .await;
        assert_eq!(status, 202);
        read_until(&mut stream, &mut text, |t| t.contains("after pings")).await;
        stack.record(text.as_bytes());
        assert!(!text.contains("code="), "{text}");
        stack.assert_no_key_leak();
    }
}

#[tokio::test]
async fn the_sdk_client_works_against_the_faithful_host_on_both_transports() {
    let stack = faithful(&[]).await;
    for transport in ["streamable", "sse"] {
        let out = stack.client(&[
            "--url",
            &if transport == "sse" {
                format!("{}/sse", stack.sidecar.url)
            } else {
                stack.mcp_url()
            },
            "--transport",
            transport,
            "--list-tools",
            "--call",
            "add",
            "--args",
            r#"{"a":2,"b":40}"#,
        ]);
        assert_eq!(
            out["result"]["content"][0]["text"], "42",
            "{transport}: {out}"
        );
    }
    // Streamable HTTP: a sealed session id per initialize, per-request servers, and the
    // 2025-06-18 ceiling although the SDK asks for its newest revision.
    let requests = stack.standin.requests().await.unwrap();
    assert!(
        requests
            .iter()
            .any(|r| r["rpcMethods"] == json!(["initialize"]) && r["status"] == 200),
        "{requests:?}"
    );
    let stats = stack.standin.stats().await.unwrap();
    assert!(stats["sessionsIssued"].as_u64().unwrap() >= 1, "{stats}");
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_newer_client_is_negotiated_down_to_the_hosts_ceiling() {
    let stack = faithful(&[]).await;
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "newer", "version": "1"}}});
    let (status, headers, body) = stack
        .send(stack.post(&http, None, None, initialize.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""protocolVersion":"2025-06-18""#), "{body}");
    // The host's sealed id reaches the client sealed again by the gateway, and works.
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, body) = stack
        .send(stack.post(&http, None, Some(&session), list.to_string()))
        .await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""name":"echo""#), "{body}");
}

const PLATFORM_REFUSALS: &str = "mcp_gateway_upstream_platform_refusals_total";
const KEY_REJECTIONS: &str = "mcp_gateway_upstream_key_rejections_total";
const KEY_RETRIES: &str = "mcp_gateway_upstream_key_retries_total";
const KEY_REJECTED: &str = "mcp_gateway_upstream_key_rejected";

#[tokio::test]
async fn app_service_authentication_in_front_is_not_taken_for_a_rejected_key() {
    for platform in ["401", "403", "302"] {
        let stack = faithful(&["--app-service-auth", platform]).await;
        let http = reqwest::Client::new();
        let (status, _, body) = stack
            .send(stack.post(&http, None, None, initialize_body()))
            .await;
        assert_eq!(status, 502, "{platform}: {body}");
        assert!(
            body.contains("App Service Authentication") && body.contains("/runtime/webhooks/mcp"),
            "{platform}: {body}"
        );
        // No retry with a renewed key, no verdict on the key, and nothing of the platform's
        // answer (its login redirect, its resource_metadata) reaches the client.
        assert!(!body.contains(".auth/login") && !body.contains("resource_metadata"));
        let sidecar = &stack.sidecar;
        assert_eq!(
            sidecar.metric(PLATFORM_REFUSALS).await.unwrap(),
            1.0,
            "{platform}"
        );
        assert_eq!(
            sidecar.metric(KEY_REJECTIONS).await.unwrap(),
            0.0,
            "{platform}"
        );
        assert_eq!(
            sidecar.metric(KEY_RETRIES).await.unwrap(),
            0.0,
            "{platform}"
        );
        assert_eq!(
            sidecar.metric(KEY_REJECTED).await.unwrap(),
            0.0,
            "{platform}"
        );
        assert_eq!(
            stack.standin.requests().await.unwrap().len(),
            1,
            "{platform}"
        );
        stack.assert_no_key_leak();
    }
}

#[tokio::test]
async fn the_hosts_own_refusals_are_the_keys_fault() {
    // The gateway holds a function key: a key the host knows, of the wrong kind (403).
    let dir = TempDir::new("function-key");
    let function_key_file = dir.path().join("function-key");
    let function_key = "SYSKEY-function-0123456789abcdef==";
    std::fs::write(&function_key_file, function_key).unwrap();
    let stack = Stack::start_with(
        StackOptions {
            separate_key_files: true,
            key: Some(function_key.into()),
            standin_args: vec![
                "--function-key-file".into(),
                function_key_file.display().to_string(),
            ],
            ..Default::default()
        },
        |_| {},
    )
    .await;
    std::fs::write(&stack.standin_key_file, "SYSKEY-the-apps-own-system-key").unwrap();
    let http = reqwest::Client::new();
    let (status, _, body) = stack
        .send(stack.post(&http, None, None, initialize_body()))
        .await;
    assert_eq!(status, 502);
    assert_eq!(body, "the MCP server rejected the gateway's system key");
    let requests = stack.standin.requests().await.unwrap();
    assert_eq!(requests[0]["status"], 403, "{requests:?}");
    assert_eq!(requests[0]["keyKind"], "function", "{requests:?}");
    assert!(stack.sidecar.metric(KEY_REJECTIONS).await.unwrap() >= 1.0);
    assert_eq!(stack.sidecar.metric(KEY_REJECTED).await.unwrap(), 1.0);
    assert_eq!(stack.sidecar.metric(PLATFORM_REFUSALS).await.unwrap(), 0.0);

    // An unknown key: 401 with an empty body, the key's fault too.
    write_secret_volume(&stack.dir.path().join("secret"), "SYSKEY-unknown-key");
    *stack.key.lock().unwrap() = "SYSKEY-unknown-key".into();
    eventually(10, "a 401 for the unknown key", || async {
        let http = reqwest::Client::new();
        let (status, _, _) = stack
            .send(stack.post(&http, None, None, initialize_body()))
            .await;
        let requests = stack.standin.requests().await.map_err(|e| e.to_string())?;
        let last = requests.last().cloned().unwrap_or_default();
        (status == 502 && last["status"] == 401 && last["keyKind"].is_null())
            .then_some(())
            .ok_or(format!("{status} {last}"))
    })
    .await
    .unwrap();
    assert_eq!(stack.sidecar.metric(PLATFORM_REFUSALS).await.unwrap(), 0.0);
    stack.assert_no_key_leak();
}

#[tokio::test]
async fn a_key_rotated_in_before_the_host_reloads_its_keys_recovers_when_it_does() {
    // The host reloads its keys on an unknown one at most every 5 s here (a minute on Azure).
    let stack = Stack::start_with(
        StackOptions {
            key: Some(REAL_SHAPED_KEY.into()),
            standin_args: vec!["--unknown-key-cache-seconds".into(), "5".into()],
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let http = reqwest::Client::new();
    let (status, _, _) = stack
        .send(stack.post(&http, None, None, initialize_body()))
        .await;
    assert_eq!(status, 200);
    // The app's key and the synced Secret change together; the host has not reloaded yet.
    let rotated = "SYSKEY+/rotatedkey4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ012+/ab==";
    write_secret_volume(&stack.dir.path().join("secret"), rotated);
    *stack.key.lock().unwrap() = rotated.into();
    // Until the host reloads, the new key is refused and the gateway says so; then the same
    // key works: no restart, and the verdict clears.
    let answers = |status: u16, rejected: f64| {
        let (stack, http) = (&stack, &http);
        move || async move {
            let (got, _, body) = stack
                .send(stack.post(http, None, None, initialize_body()))
                .await;
            let verdict = stack
                .sidecar
                .metric(KEY_REJECTED)
                .await
                .map_err(|e| e.to_string())?;
            (got == status && verdict == rejected)
                .then_some(())
                .ok_or(format!("{got} {body} rejected={verdict}"))
        }
    };
    eventually(
        5,
        "the new key refused while the host holds the old ones",
        answers(502, 1.0),
    )
    .await
    .unwrap();
    eventually(
        15,
        "the new key accepted after the host's reload",
        answers(200, 0.0),
    )
    .await
    .unwrap();
    stack.assert_no_key_leak();
}
