//! The secret-leak audit: one gateway in authorization-server mode runs real traffic with a
//! recognizable system key, IdP client secret and the tokens a real SDK client obtained, and
//! everything an outsider or an operator can see is captured — every response (status,
//! headers, body) to good and hostile requests, the SSE stream, the sidecar's logs, `/metrics`,
//! `/keyz`, `/readyz`, the client's own output and what the upstream stand-in recorded. None
//! of it may contain a secret. (The operator's statuses, Events and logs are audited in
//! operator_api.rs and operator_keyvault.rs, with the same kind of recognizable values.)

use futures::StreamExt;
use mcp_gateway_sidecar::facade::pkce;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::browser::Browser;
use mcp_gateway_tests::facade::{
    EntraLike, Files, GATEWAY_SECRET, REDIRECT, SCOPE, SYSTEM_KEY, facade_config,
};
use mcp_gateway_tests::fixtures::{self, Standin};
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use serde_json::{Value, json};

/// Everything captured, as text.
#[derive(Default)]
struct Capture {
    seen: Vec<(String, String)>,
}

impl Capture {
    async fn response(&mut self, what: &str, r: reqwest::Response) -> (u16, String) {
        let status = r.status().as_u16();
        let headers = format!("{:?}", r.headers());
        let body = r.text().await.unwrap_or_default();
        self.seen
            .push((what.to_string(), format!("{status}\n{headers}\n{body}")));
        (status, body)
    }

    fn text(&mut self, what: &str, text: String) {
        self.seen.push((what.to_string(), text));
    }

    /// Panics naming where `secret` (called `name`) showed up.
    fn assert_absent(&self, name: &str, secret: &str) {
        assert!(secret.len() >= 16, "{name} is too short to audit for");
        for (what, text) in &self.seen {
            assert!(!text.contains(secret), "{name} leaked in {what}");
        }
    }
}

#[tokio::test]
async fn no_secret_reaches_a_client_a_log_or_a_metric() {
    let files = Files::new();
    let standin = Standin::start(&files.path("system-key")).expect("stand-in");
    let (listen, base) = public_listener();
    let idp = EntraLike::start(&[format!("{base}/weather/oauth/callback")]).expect("IdP");
    let sidecar = Sidecar::start(facade_config(
        listen,
        &base,
        "/weather",
        &idp.issuer,
        &standin.url,
        &files,
    ))
    .expect("sidecar");
    sidecar.wait_ready().await.unwrap();
    let issuer = format!("{base}/weather");
    let resource = format!("{base}/weather/mcp");
    let mut capture = Capture::default();

    // A real SDK client signs in, calls a tool and refreshes; it leaves its tokens in a file
    // (test only) so the audit knows what to look for.
    let dir = TempDir::new("leak-audit");
    let dump = dir.path().join("tokens.json");
    let (ok, out, raw) = fixtures::mcp_oauth_client(&[
        "--url",
        &resource,
        "--call",
        "echo",
        "--args",
        r#"{"message":"audit"}"#,
        "--dump-tokens-to",
        dump.to_str().unwrap(),
    ])
    .unwrap();
    assert!(ok, "{raw}");
    assert_eq!(out["refreshed"], true);
    capture.text("the SDK client's output", raw);
    let tokens: Value = serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let secret = |name: &str| tokens[name].as_str().unwrap().to_string();
    let (access, refresh, old_refresh) = (
        secret("access_token"),
        secret("refresh_token"),
        secret("previous_refresh_token"),
    );
    let (code, verifier, client_id) = (
        secret("authorization_code_used"),
        secret("code_verifier"),
        secret("client_id"),
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let accept = "application/json, text/event-stream";
    let rpc = |method: &str| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}});

    // Public documents and challenges.
    for (what, url) in [
        (
            "PRM",
            format!("{base}/.well-known/oauth-protected-resource/weather/mcp"),
        ),
        (
            "AS metadata",
            format!("{base}/.well-known/oauth-authorization-server/weather"),
        ),
        ("JWKS", format!("{issuer}/oauth/jwks")),
    ] {
        let r = http.get(url).send().await.unwrap();
        capture.response(what, r).await;
    }
    for (what, bearer) in [
        ("no token", None),
        ("garbage token", Some("not-a-jwt".to_string())),
        (
            "token with a flipped signature",
            Some(format!("{}x", &access[..access.len() - 1])),
        ),
        ("a refresh token as bearer", Some(refresh.clone())),
    ] {
        let mut request = http
            .post(&resource)
            .header("accept", accept)
            .json(&rpc("ping"));
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        let (status, _) = capture.response(what, request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{what}");
    }

    // Good traffic: Streamable HTTP, and a legacy SSE stream's endpoint event (where the
    // Functions host puts `code=<key>`).
    let r = http
        .post(&resource)
        .bearer_auth(&access)
        .header("accept", accept)
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "audit", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap();
    let (status, _) = capture.response("initialize", r).await;
    assert_eq!(status, 200);
    let sse = http
        .get(format!("{issuer}/sse"))
        .bearer_auth(&access)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let headers = format!("{:?}", sse.headers());
    let mut stream = sse.bytes_stream();
    let mut first = Vec::new();
    while !String::from_utf8_lossy(&first).contains("\n\n") {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(chunk))) => first.extend_from_slice(&chunk),
            other => panic!("no endpoint event: {other:?}"),
        }
    }
    let event = String::from_utf8_lossy(&first).into_owned();
    assert!(event.contains("event: endpoint"), "{event}");
    capture.text("the SSE endpoint event", format!("{headers}\n{event}"));
    drop(stream);

    // Hostile OAuth requests, replaying what the client used.
    let form = |pairs: &[(&str, &str)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    for (what, body) in [
        (
            "a replayed code",
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("code_verifier", &verifier),
            ]),
        ),
        (
            "a reused refresh token",
            form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &old_refresh),
                ("client_id", &client_id),
            ]),
        ),
        (
            "a refresh token of another client",
            form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "someone-else"),
            ]),
        ),
    ] {
        let r = http
            .post(format!("{issuer}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, _) = capture.response(what, r).await;
        assert_eq!(status, 400, "{what}");
    }
    let r = http
        .post(format!("{issuer}/oauth/register"))
        .json(&json!({"redirect_uris": ["http://attacker.example/cb"], "client_name": "x"}))
        .send()
        .await
        .unwrap();
    capture.response("a refused registration", r).await;
    // A whole sign-in in a browser: consent page, redirects, cookies, the code in the URL.
    let browser = Browser::new();
    let mut authorize = url::Url::parse(&format!("{issuer}/oauth/authorize")).unwrap();
    let browser_verifier = pkce::random_token();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &pkce::challenge(&browser_verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", SCOPE);
    let page = http.get(authorize.as_str()).send().await.unwrap();
    capture.response("the consent page", page).await;
    let landing = browser
        .sign_in(authorize.as_str(), REDIRECT, "approve")
        .await
        .unwrap();
    capture.text("the sign-in's pages", format!("{:?}", landing.visited));

    // What operators see.
    for (what, path) in [
        ("/metrics", "/metrics"),
        ("/keyz", "/keyz"),
        ("/readyz", "/readyz"),
    ] {
        let r = http
            .get(format!("{}{path}", sidecar.admin_url))
            .send()
            .await
            .unwrap();
        capture.response(what, r).await;
    }
    let upstream_saw = standin.requests().await.unwrap();
    assert!(!upstream_saw.is_empty());
    capture.text("the stand-in's request log", format!("{upstream_saw:?}"));
    // Last, so every request above has been logged.
    capture.text("the sidecar's logs", sidecar.logs());

    // The audit itself can fail: a capture holding a secret is caught.
    let canary = Capture {
        seen: vec![("canary".into(), format!("x{access}x"))],
    };
    assert!(std::panic::catch_unwind(|| canary.assert_absent("canary", &access)).is_err());

    capture.assert_absent("the system key", SYSTEM_KEY);
    capture.assert_absent("the IdP client secret", GATEWAY_SECRET);
    capture.assert_absent("the access token", &access);
    capture.assert_absent("the refresh token", &refresh);
    capture.assert_absent("the previous refresh token", &old_refresh);
    capture.assert_absent("the authorization code", &code);
    capture.assert_absent("the PKCE verifier", &verifier);
}
