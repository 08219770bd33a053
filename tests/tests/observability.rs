//! What an on-call engineer reads: audit records and the client's address behind a trusted
//! proxy, from a gateway in Oidc mode with Entra-shaped tokens in front of the Functions
//! stand-in, called by the TypeScript SDK client and by raw requests; and OpenTelemetry
//! traces received by a real OpenTelemetry Collector, joined by the stand-in through the
//! `traceparent` the gateway sent it.

use std::time::Duration;

use mcp_gateway_tests::entra_gateway::EntraGateway;
use mcp_gateway_tests::fixtures::EntraLike;
use mcp_gateway_tests::otel_collector::{OtelCollector, Span};
use serde_json::{Value, json};

/// Log lines of the sidecar that match `pred`, waited for (a background thread writes them).
async fn lines_where(
    gw: &EntraGateway,
    what: &str,
    count: usize,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    mcp_gateway_tests::eventually(10, what, || async {
        let lines: Vec<Value> = gw
            .sidecar
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l| pred(l))
            .collect();
        (lines.len() >= count)
            .then_some(lines.clone())
            .ok_or(format!("{lines:?}"))
    })
    .await
    .unwrap()
}

async fn raw_post(
    gw: &EntraGateway,
    token: Option<&str>,
    forwarded_for: &str,
    request_id: &str,
    body: &str,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(gw.mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded_for)
        .header("x-request-id", request_id)
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn tool_call(name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_say_who_called_which_tool_and_who_was_refused() {
    let gw = EntraGateway::start(
        &EntraLike::default(),
        &[],
        json!({
            "toolAccess": {"rules": [{"tools": ["add"], "roles": ["Calculator.Admin"]}]},
            "observability": {"audit": {"includeArguments": true}},
            // The loopback peer is the trusted ingress here.
            "clientAddress": {"trustedProxies": ["127.0.0.1/32"]},
        }),
    )
    .await;
    let token = gw.token(json!({})).await;

    // A real SDK client's session: initialize, list, call. Only the call is audited.
    let (ok, out, raw) = gw.call(&token, "echo", r#"{"message":"audited-argument-7"}"#);
    assert!(ok, "{raw}");
    assert!(out.to_string().contains("audited-argument-7"), "{out}");
    // A tool the caller may not call, through a proxy that names the client.
    let (status, body) = raw_post(
        &gw,
        Some(&token),
        "6.6.6.6, 198.51.100.7",
        "denied-call-1",
        &tool_call("add", json!({"a": 1, "b": 2})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("-32003"), "{body}");
    // No token at all.
    let (status, _) = raw_post(
        &gw,
        None,
        "198.51.100.8",
        "no-token-1",
        &tool_call("echo", json!({})),
    )
    .await;
    assert_eq!(status, 401);

    let audit = lines_where(&gw, "three audit records", 3, |l| l["target"] == "audit").await;
    assert_eq!(
        audit.len(),
        3,
        "one record per tool call or refusal: {audit:#?}"
    );
    let echo = &audit[0];
    assert_eq!(echo["event"], "tool_call", "{echo}");
    assert_eq!(echo["tool"], "echo");
    assert_eq!(echo["outcome"], "forwarded");
    assert_eq!(echo["status"], 200);
    assert_eq!(echo["mcp_method"], "tools/call");
    assert!(
        echo["subject"].is_string() && echo["oid"].is_string() && echo["tenant"].is_string(),
        "{echo}"
    );
    assert!(echo["client_id"].is_string(), "{echo}");
    assert_eq!(echo["client"], "127.0.0.1");
    assert!(echo["latency_ms"].as_f64().is_some(), "{echo}");
    let args: Value = serde_json::from_str(echo["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"message": "audited-argument-7"}));

    let denied = &audit[1];
    assert_eq!(
        (
            &denied["event"],
            &denied["tool"],
            &denied["outcome"],
            &denied["reason"]
        ),
        (
            &json!("tool_call"),
            &json!("add"),
            &json!("denied"),
            &json!("tool_denied")
        ),
        "{denied}"
    );
    assert_eq!(denied["request_id"], "denied-call-1");
    // The rightmost address the trusted proxy appended, not the one the client wrote.
    assert_eq!(denied["client"], "198.51.100.7");

    let refused = &audit[2];
    assert_eq!(refused["event"], "refused", "{refused}");
    assert_eq!(
        (refused["status"].as_u64(), refused["reason"].as_str()),
        (Some(401), Some("missing"))
    );
    assert_eq!(refused["client"], "198.51.100.8");
    assert!(
        refused["subject"].is_null() && refused["tool"].is_null(),
        "{refused}"
    );

    // The request line carries the same client, and the connection it came over.
    let request = lines_where(&gw, "the denied call's request line", 1, |l| {
        l["message"] == "request" && l["request_id"] == "denied-call-1"
    })
    .await;
    assert_eq!(request[0]["client"], "198.51.100.7");
    assert!(
        request[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    gw.assert_nothing_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_trusted_proxy_the_connection_is_the_client_and_arguments_stay_out() {
    let gw = EntraGateway::start(
        &EntraLike::default(),
        &[],
        json!({"clientAddress": {"trustedProxies": ["10.0.0.0/8"]}}),
    )
    .await;
    let token = gw.token(json!({})).await;
    let (status, body) = raw_post(
        &gw,
        Some(&token),
        "198.51.100.9",
        "untrusted-1",
        &tool_call("echo", json!({"message": "not-for-the-audit-log"})),
    )
    .await;
    // The stand-in wants a session first; what matters is the record.
    assert!(status < 500, "{status} {body}");
    let audit = lines_where(&gw, "the audit record", 1, |l| l["target"] == "audit").await;
    assert_eq!(audit[0]["tool"], "echo", "{:?}", audit[0]);
    assert_eq!(
        audit[0]["client"], "127.0.0.1",
        "a forwarded header from an untrusted peer"
    );
    assert!(audit[0].get("arguments").is_none(), "{:?}", audit[0]);
    assert!(!gw.sidecar.logs().contains("not-for-the-audit-log"));
    gw.assert_nothing_leaked();
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_reach_a_real_collector_and_the_function_joins_them() {
    let dir = mcp_gateway_tests::TempDir::new("otel");
    let collector = OtelCollector::start(dir.path()).expect("the OpenTelemetry Collector starts");
    let gw = EntraGateway::start(
        &EntraLike::default(),
        &[],
        json!({"observability": {"tracing": {
            "otlpEndpoint": collector.endpoint(),
            "serviceName": "weather-gateway",
        }}}),
    )
    .await;
    let token = gw.token(json!({})).await;
    // A real SDK client's call, and a refused request.
    let (ok, _, raw) = gw.call(&token, "echo", r#"{"message":"traced-7"}"#);
    assert!(ok, "{raw}");
    // A client's own trace context is not continued (trustIncomingTraceContext is off).
    let forged_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .post(gw.mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header(
            "traceparent",
            format!("00-{forged_trace}-00f067aa0ba902b7-01"),
        )
        .header("tracestate", "vendor=forged")
        .header("x-request-id", "forged-trace-1")
        .bearer_auth(&token)
        .body(tool_call("echo", json!({"message": "forged"})))
        .send()
        .await
        .unwrap();
    assert!(response.status().as_u16() < 500);
    let (status, _) = raw_post(&gw, None, "", "untraced-401", &tool_call("echo", json!({}))).await;
    assert_eq!(status, 401);

    let is_call = |s: &Span| s.attr_str("gen_ai.tool.name") == Some("echo") && s.kind == 2;
    let spans = collector
        .wait_for_spans(
            |spans| {
                spans.iter().filter(|s| is_call(s)).count() >= 2
                    && spans
                        .iter()
                        .any(|s| s.attr_str("mcp_gateway.auth") == Some("missing"))
                    && spans.iter().filter(|s| s.kind == 3).count() >= 2
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let server = spans
        .iter()
        .find(|s| is_call(s) && s.attr_str("mcp_gateway.request_id") != Some("forged-trace-1"))
        .expect("the SDK's tools/call span");
    assert_eq!(server.name, "POST /mcp");
    assert_eq!(server.service_name, "weather-gateway");
    assert_eq!(server.parent_span_id, "", "a root span: {:?}", server.raw);
    assert_eq!(server.attr_str("mcp.method.name"), Some("tools/call"));
    assert_eq!(server.attr_str("mcp_gateway.auth"), Some("authenticated"));
    assert!(server.attr_str("enduser.id").is_some(), "{:?}", server.raw);
    assert_eq!(server.attributes["http.response.status_code"], json!(200));
    assert_eq!(server.attr_str("client.address"), Some("127.0.0.1"));
    // The upstream call is the server span's child, to the Function's MCP path, no query.
    let upstream = spans
        .iter()
        .find(|s| s.parent_span_id == server.span_id)
        .expect("the upstream call's span");
    assert_eq!((upstream.kind, upstream.name.as_str()), (3, "POST"));
    assert_eq!(upstream.trace_id, server.trace_id);
    assert_eq!(
        upstream.attr_str("url.full"),
        Some(format!("{}/runtime/webhooks/mcp", gw.standin.url).as_str())
    );
    assert_eq!(upstream.attributes["http.response.status_code"], json!(200));
    // The Function received that span as its parent: Application Insights joins the trace.
    let requests = gw.standin.requests().await.unwrap();
    let expected = format!("00-{}-{}-01", server.trace_id, upstream.span_id);
    assert!(
        requests
            .iter()
            .any(|r| r["traceparent"] == expected.as_str()),
        "no upstream request carried {expected}: {requests:?}"
    );
    // The forged context was replaced: a new trace, and no client tracestate upstream.
    let forged = spans
        .iter()
        .find(|s| is_call(s) && s.attr_str("mcp_gateway.request_id") == Some("forged-trace-1"))
        .expect("the forged request's span");
    assert_ne!(forged.trace_id, forged_trace);
    assert_eq!(forged.parent_span_id, "");
    assert!(requests.iter().all(|r| {
        r["traceparent"]
            .as_str()
            .is_none_or(|t| !t.contains(forged_trace))
            && r["tracestate"].is_null()
    }));
    // The refusal is traced too, with no upstream child.
    let refused = spans
        .iter()
        .find(|s| s.attr_str("mcp_gateway.auth") == Some("missing"))
        .unwrap();
    assert_eq!(refused.attributes["http.response.status_code"], json!(401));
    assert!(spans.iter().all(|s| s.parent_span_id != refused.span_id));
    // The request line names the trace, for going from a log line to the trace.
    let lines = lines_where(&gw, "the call's request line", 1, |l| {
        l["message"] == "request" && l["trace_id"] == server.trace_id.as_str()
    })
    .await;
    assert_eq!(lines[0]["mcp_name"], "echo");
    // No key and no token in anything the collector received or logged.
    let exported = std::fs::read_to_string(dir.path().join("spans.jsonl")).unwrap();
    for text in [&exported, &collector.log()] {
        assert!(
            !text.contains(&gw.key),
            "the system key reached the collector"
        );
        assert!(!text.contains("eyJ"), "a token reached the collector");
        assert!(!text.contains(&token));
    }
    gw.assert_nothing_leaked();
}
