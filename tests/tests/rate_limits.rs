//! Rate limits (`rateLimits`) end to end: Entra-shaped tokens of different users from the IdP
//! fixture, the Functions stand-in behind the gateway, raw requests for exact counts and the
//! TypeScript SDK client for what a user sees; 429 with `Retry-After` under a burst, and
//! recovery once the wait has passed.

use std::time::Duration;

use mcp_gateway_tests::entra_gateway::EntraGateway;
use mcp_gateway_tests::fixtures::EntraLike;
use mcp_gateway_tests::stack::initialize_body;
use serde_json::{Value, json};

async fn start(rate_limits: Value) -> EntraGateway {
    EntraGateway::start(
        &EntraLike::default(),
        &[],
        json!({"rateLimits": rate_limits}),
    )
    .await
}

/// An `initialize` POST: (status, Retry-After).
async fn initialize(gw: &EntraGateway, token: &str) -> (u16, Option<String>) {
    let answer = gw.post(token, &initialize_body()).await;
    (answer.status, answer.retry_after)
}

#[tokio::test]
async fn a_caller_over_its_rate_gets_429_with_retry_after_and_recovers() {
    // One request every 3 s, 5 at once.
    let gw = start(json!({"perCaller": {"requestsPerMinute": 20, "burst": 5}})).await;
    let alice = gw.token(json!({"sub": "alice"})).await;
    let bob = gw.token(json!({"sub": "bob"})).await;
    for _ in 0..5 {
        assert_eq!(initialize(&gw, &alice).await, (200, None));
    }
    let (status, retry_after) = initialize(&gw, &alice).await;
    assert_eq!(status, 429);
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=3).contains(&wait), "{wait}");
    // Another user has a bucket of its own.
    assert_eq!(initialize(&gw, &bob).await.0, 200);

    // After the wait the caller is let in again, once: the bucket refills at the rate.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(initialize(&gw, &alice).await.0, 200);
    assert_eq!(initialize(&gw, &alice).await.0, 429);
    // The SDK client shows the refusal to its user.
    let (ok, _, raw) = gw.call(&alice, "echo", r#"{"message":"x"}"#);
    assert!(!ok && raw.contains("rate limit exceeded"), "{raw}");

    // The two raw refusals and at least the SDK's first request.
    let metrics = gw.sidecar.metrics().await.unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"mcp_gateway_rate_limited_total{limit="caller"} "#))
        .unwrap_or_else(|| panic!("no caller refusals in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(refused >= 3, "{metrics}");
    gw.assert_nothing_leaked();
}

#[tokio::test]
async fn a_tool_limit_counts_that_tool_per_caller_only() {
    let gw = start(json!({
        "tools": [{"tools": ["ad?"], "requestsPerMinute": 1, "burst": 1}],
    }))
    .await;
    let alice = gw.token(json!({"sub": "alice"})).await;
    let (ok, out, raw) = gw.call(&alice, "add", r#"{"a":2,"b":3}"#);
    assert!(ok, "{raw}");
    assert_eq!(out["result"]["content"][0]["text"], "5", "{out}");
    // The second call of the tool within the minute is refused; other tools, and the same
    // tool for another user, are not.
    let (ok, _, raw) = gw.call(&alice, "add", r#"{"a":2,"b":3}"#);
    assert!(!ok && raw.contains("rate limit exceeded"), "{raw}");
    let (ok, _, raw) = gw.call(&alice, "echo", r#"{"message":"still here"}"#);
    assert!(ok, "{raw}");
    let bob = gw.token(json!({"sub": "bob"})).await;
    let (ok, _, raw) = gw.call(&bob, "add", r#"{"a":1,"b":1}"#);
    assert!(ok, "{raw}");
    let metrics = gw.sidecar.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"mcp_gateway_rate_limited_total{limit="ad?"} 1"#),
        "{metrics}"
    );
    gw.assert_nothing_leaked();
}
