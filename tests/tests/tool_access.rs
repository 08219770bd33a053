//! Per-tool authorization (`toolAccess`) end to end: Entra-shaped v2 tokens from the IdP
//! fixture carrying app roles, groups (and Entra's groups overage) and scopes; the Functions
//! stand-in (the TypeScript MCP SDK server) answering in event streams and, with
//! `--json-response`, in JSON; the TypeScript and Python SDK clients listing and calling tools
//! over Streamable HTTP and legacy SSE; and the TypeScript SDK's own step-up from a 403
//! `insufficient_scope` to a token with the tool's scope.

use mcp_gateway_tests::entra_gateway::EntraGateway;
use mcp_gateway_tests::fixtures::{self, EntraLike, VSCODE_CLIENT_ID};
use serde_json::{Value, json};

const GROUP: &str = "6f1e0c2a-8b7d-4e3f-a1b2-c3d4e5f60718";
const API: &str = "b7e3f1a2-5c4d-4e6f-8a9b-0c1d2e3f4a5b";

/// `echo` for everyone, `add` for the `Calculator.User` role, `slow_*` for one group,
/// `sleep` with the `mcp.admin` scope; the rest (`reset_stream`) denied by default.
async fn start(standin_args: &[&str]) -> EntraGateway {
    let idp = EntraLike {
        scopes: Some(format!(
            "openid profile email offline_access api://{API}/mcp.tools api://{API}/mcp.admin"
        )),
        ..EntraLike::default()
    };
    let gw = EntraGateway::start(
        &idp,
        standin_args,
        json!({
            "upstream": {"transports": ["StreamableHttp", "Sse"]},
            "auth": {"requiredScopes": [format!("api://{API}/mcp.tools")]},
            "toolAccess": {
                "default": "Deny",
                "rules": [
                    {"tools": ["echo"]},
                    {"tools": ["add"], "roles": ["Calculator.User"]},
                    {"tools": ["slow_*"], "groups": [GROUP.to_uppercase()]},
                    {"tools": ["sleep"], "scopes": [format!("api://{API}/mcp.admin")]},
                ],
            },
        }),
    )
    .await;
    assert_eq!(gw.api, API);
    gw
}

/// The tools each SDK client lists with `token`: TypeScript over Streamable HTTP and legacy
/// SSE, Python over Streamable HTTP.
fn listed(gw: &EntraGateway, token: &str) -> [Vec<String>; 3] {
    let url = gw.mcp_url();
    let sse = format!("{}/sse", gw.sidecar.url);
    let names = |out: (bool, Value, String)| -> Vec<String> {
        assert!(out.0, "client failed: {}", out.2);
        let mut names: Vec<String> = out.1["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    [
        names(fixtures::mcp_client(&["--url", &url, "--token", token, "--list-tools"]).unwrap()),
        names(
            fixtures::mcp_client(&[
                "--url",
                &sse,
                "--transport",
                "sse",
                "--token",
                token,
                "--list-tools",
            ])
            .unwrap(),
        ),
        names(fixtures::python_client(&["--url", &url, "--token", token, "--list-tools"]).unwrap()),
    ]
}

async fn upstream_tool_calls(gw: &EntraGateway) -> usize {
    gw.standin
        .requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r["rpcMethods"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "tools/call"))
        })
        .count()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn callers_see_and_call_only_the_tools_their_token_allows(standin_args: &[&str]) {
    let gw = start(standin_args).await;
    let plain = gw.token(json!({})).await;
    let calculator = gw.token(json!({"roles": ["Calculator.User"]})).await;
    let grouped = gw.token(json!({"groups": [GROUP]})).await;
    let overage = gw.token(json!({"groupsOverage": true})).await;
    let admin = gw.token(json!({"scp": "mcp.tools mcp.admin"})).await;

    for (token, expected) in [
        (&plain, strings(&["echo"])),
        (&calculator, strings(&["add", "echo"])),
        (&grouped, strings(&["echo", "slow_count"])),
        // Entra left the groups out: a group rule cannot be met from the token.
        (&overage, strings(&["echo"])),
        (&admin, strings(&["echo", "sleep"])),
    ] {
        for listed in listed(&gw, token) {
            assert_eq!(listed, expected);
        }
    }

    // Allowed calls reach the Function.
    let (ok, out, raw) = gw.call(&calculator, "add", r#"{"a":2,"b":3}"#);
    assert!(ok, "{raw}");
    assert_eq!(out["result"]["content"][0]["text"], "5", "{out}");
    let before = upstream_tool_calls(&gw).await;

    // A forbidden tool: the SDK shows the gateway's JSON-RPC error; the Function never sees it.
    let (ok, _, raw) = gw.call(&plain, "add", r#"{"a":2,"b":3}"#);
    assert!(!ok, "{raw}");
    assert!(
        raw.contains("does not let this caller call the tool"),
        "{raw}"
    );
    let answer = gw
        .post(
            &plain,
            &json!({"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"reset_stream","arguments":{}}}).to_string(),
        )
        .await;
    assert_eq!(answer.status, 200);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["id"], 41);
    assert_eq!(body["error"]["code"], -32003);
    // Another spelling of the method or of the tool is the same to the host: refused alike.
    let lowercase = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(b"post").unwrap(), gw.mcp_url())
        .bearer_auth(&plain)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":1}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 405);
    // Answered before its body was read: the client is told not to reuse the connection.
    assert_eq!(lowercase.headers()["connection"], "close");
    let (ok, _, raw) = gw.call(&plain, "ADD", r#"{"a":2,"b":3}"#);
    assert!(
        !ok && raw.contains("does not let this caller call the tool"),
        "{raw}"
    );
    // A name read two ways (a repeated key) is refused, not guessed at.
    let answer = gw
        .post(
            &calculator,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"reset_stream","arguments":{}}}"#,
        )
        .await;
    assert_eq!(answer.status, 400);

    // Short of the tool's scope only: 403 insufficient_scope naming what to ask for.
    let answer = gw
        .post(
            &plain,
            &json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":1}}}).to_string(),
        )
        .await;
    let challenge = answer.challenge;
    assert_eq!(answer.status, 403);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let api = &gw.api;
    assert!(
        challenge.contains(&format!(
            r#"scope="api://{api}/mcp.tools api://{api}/mcp.admin""#
        )),
        "{challenge}"
    );
    assert_eq!(
        upstream_tool_calls(&gw).await,
        before,
        "a refused call reached the Function"
    );

    let (ok, out, raw) = gw.call(&admin, "sleep", r#"{"ms":1}"#);
    assert!(ok, "{raw}");
    assert_eq!(out["result"]["content"][0]["text"], "slept 1", "{out}");

    let metrics = gw.sidecar.metrics().await.unwrap();
    for line in [
        r#"mcp_gateway_tool_calls_total{rule="add",decision="allowed"} 1"#,
        // `add` and `ADD`: one rule to the host and to the gateway.
        r#"mcp_gateway_tool_calls_total{rule="add",decision="denied"} 2"#,
        r#"mcp_gateway_tool_calls_total{rule="default",decision="denied"} 1"#,
        r#"mcp_gateway_tool_calls_total{rule="sleep",decision="step_up"} 1"#,
        r#"mcp_gateway_tool_calls_total{rule="sleep",decision="allowed"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    gw.assert_nothing_leaked();
}

#[tokio::test]
async fn callers_see_and_call_only_their_tools_over_event_streams() {
    callers_see_and_call_only_the_tools_their_token_allows(&[]).await;
}

#[tokio::test]
async fn callers_see_and_call_only_their_tools_over_json_responses() {
    callers_see_and_call_only_the_tools_their_token_allows(&["--json-response"]).await;
}

#[tokio::test]
async fn the_typescript_sdk_steps_up_to_the_tools_scope_and_calls_it() {
    let gw = start(&[]).await;
    let api = &gw.api;
    let (ok, out, raw) = fixtures::mcp_oauth_client(&[
        "--url",
        &gw.mcp_url(),
        "--client-id",
        VSCODE_CLIENT_ID,
        "--no-resource",
        "--skip-refresh",
        "--step-up",
        "--call",
        "sleep",
        "--args",
        r#"{"ms":1}"#,
    ])
    .unwrap();
    assert!(ok, "{raw}");
    // Signed in with the gateway's scope, `sleep` was not listed; the 403 named the tool's
    // scope, the SDK asked Entra for it, and the new token lists and calls `sleep`.
    assert_eq!(out["tools"], json!(["echo"]), "{out}");
    let scope = out["stepUp"]["scope"].as_str().unwrap_or_default();
    assert!(
        scope
            .split(' ')
            .any(|s| s == format!("api://{api}/mcp.admin")),
        "{out}"
    );
    assert_eq!(out["stepUp"]["tools"], json!(["echo", "sleep"]), "{out}");
    assert_eq!(
        out["stepUp"]["result"]["content"][0]["text"], "slept 1",
        "{out}"
    );
    gw.assert_nothing_leaked();
}
