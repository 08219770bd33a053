//! The caller's identity for the Function (`callerIdentity`): the gateway signs a short-lived
//! assertion per request; the Functions stand-in verifies it as docs/caller-identity.md's
//! TypeScript sample does (jose, the gateway's published keys, this app as the audience), and
//! the docs' Python sample (PyJWT) verifies the same assertion. A client's own header of that
//! name never reaches the Function; the client's token never does either.

use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::fixtures::{self, EntraLike, Idp, Standin};
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use mcp_gateway_tests::stack::{initialize_body, system_key, tool_call};
use serde_json::{Value, json};

#[tokio::test]
async fn the_function_verifies_who_calls_and_a_client_cannot_forge_it() {
    let dir = TempDir::new("caller-identity");
    let key = system_key("caller-identity");
    let key_file = dir.path().join("mcp_extension");
    std::fs::write(&key_file, &key).unwrap();
    let idp = Idp::start_entra_like(&EntraLike::default()).expect("entra-like IdP");
    let api = idp.ready["apiClientId"].as_str().unwrap().to_string();
    let (listen, base) = public_listener();
    let mut config: Config = serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "pathPrefix": "/weather",
        "upstream": {"url": "http://127.0.0.1:9"},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Oidc", "issuer": idp.issuer, "audiences": [api]},
        "callerIdentity": {},
    }))
    .unwrap();
    let issuer = config.issuer_url();
    let jwks = format!("{issuer}/caller-identity/jwks");
    let dump = dir.path().join("assertion");
    let standin = Standin::start_on(
        &key_file,
        0,
        &[
            "--caller-identity-jwks".into(),
            jwks.clone(),
            "--caller-identity-issuer".into(),
            issuer.clone(),
            "--caller-identity-dump".into(),
            dump.display().to_string(),
        ],
    )
    .expect("stand-in");
    config.upstream.url = standin.url.parse().unwrap();
    let sidecar = Sidecar::start(config).expect("sidecar starts");
    sidecar.wait_ready().await.expect("sidecar ready");

    // The key set is public, Ed25519 only.
    let keys: Value = reqwest::get(&jwks).await.unwrap().json().await.unwrap();
    assert_eq!(keys["keys"][0]["kty"], "OKP", "{keys}");
    assert!(
        keys["keys"][0].get("d").is_none(),
        "a private key is published: {keys}"
    );

    let token = idp
        .entra_token(json!({"roles": ["Weather.Reader"]}))
        .await
        .unwrap();
    let url = format!("{}/weather/mcp", sidecar.url);
    let whoami = |extra: &[&str]| {
        let mut args = vec!["--url", url.as_str(), "--token", token.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--call", "whoami"]);
        let (ok, out, raw) = fixtures::mcp_client(&args).unwrap();
        assert!(ok, "{raw}");
        let text = out["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_ne!(out["result"]["isError"], true, "{out}");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|_| panic!("{out}"))
    };
    let claims = whoami(&[]);
    let tenant = idp.ready["tenantId"].as_str().unwrap();
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], standin.url.as_str());
    assert_eq!(claims["tid"], tenant);
    assert_eq!(
        claims["sub"],
        format!("{tenant}/{}", claims["oid"].as_str().unwrap())
    );
    assert_eq!(claims["roles"], json!(["Weather.Reader"]));
    assert_eq!(claims["scp"], "mcp.tools");
    assert_eq!(claims["azp"], fixtures::VSCODE_CLIENT_ID);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 300);

    // A client's own header of that name, in any case, is replaced by the gateway's.
    let forged = whoami(&["--header", "X-MCP-Gateway-Caller: eyJhbGciOiJub25lIn0.e30."]);
    assert_eq!(forged["sub"], claims["sub"]);

    // A client's `Connection: <that header>` cannot strip the gateway's own on the way out.
    let http = reqwest::Client::new();
    let post = |session: Option<&str>, body: String| {
        let mut r = http
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("connection", "x-mcp-gateway-caller, mcp-session-id")
            .body(body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.send()
    };
    let init = post(None, initialize_body()).await.unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = init.text().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        post(Some(&session), initialized.to_string())
            .await
            .unwrap()
            .status(),
        202
    );
    let answer = post(Some(&session), tool_call(2, "whoami", json!({})))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        answer.contains(r#"\"sub\""#) && !answer.contains("caller identity"),
        "{answer}"
    );

    // The docs' Python sample accepts the same assertion, and refuses it for another app or
    // from another issuer.
    let file = dump.display().to_string();
    let verify = |issuer: &str, audience: &str| {
        fixtures::python_verify_caller(&[
            "--jwks",
            &jwks,
            "--issuer",
            issuer,
            "--audience",
            audience,
            "--assertion-file",
            &file,
        ])
        .unwrap()
    };
    let (ok, out, raw) = verify(&issuer, &standin.url);
    assert!(ok, "{raw}");
    assert_eq!(out["sub"], claims["sub"], "{out}");
    let (ok, out, _) = verify(&issuer, "https://other-app.azurewebsites.net");
    assert!(
        !ok && out["error"].to_string().contains("Audience"),
        "{out}"
    );
    let (ok, out, _) = verify("https://evil.example", &standin.url);
    assert!(!ok && out["error"].to_string().contains("Issuer"), "{out}");

    // The Function never sees the client's token, nor the gateway the client's header.
    for request in standin.requests().await.unwrap() {
        assert_eq!(request["hasAuthorization"], false, "{request}");
    }
    let logs = sidecar.logs();
    assert!(!logs.contains(&key), "the system key reached the logs");
    assert!(
        !logs.contains("eyJ"),
        "a token or assertion reached the logs"
    );
}

#[tokio::test]
async fn with_caller_identity_off_a_client_header_of_its_name_is_still_removed() {
    let dir = TempDir::new("caller-identity-off");
    let key = system_key("caller-identity-off");
    let key_file = dir.path().join("mcp_extension");
    std::fs::write(&key_file, &key).unwrap();
    let standin = Standin::start(&key_file).expect("stand-in");
    let (listen, base) = public_listener();
    let config: Config = serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": standin.url},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Anonymous"},
    }))
    .unwrap();
    let sidecar = Sidecar::start(config).expect("sidecar starts");
    sidecar.wait_ready().await.expect("sidecar ready");
    let (ok, _, raw) = fixtures::mcp_client(&[
        "--url",
        &format!("{}/mcp", sidecar.url),
        "--header",
        "X-MCP-Gateway-Caller: eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
        "--header",
        "x-mcp-probe: 1",
        "--call",
        "echo",
        "--args",
        r#"{"message":"hi"}"#,
    ])
    .unwrap();
    assert!(ok, "{raw}");
    let requests = standin.requests().await.unwrap();
    assert!(!requests.is_empty());
    for request in requests {
        let names = request["headerNames"].as_array().unwrap();
        // Other client headers pass, so the probe shows the request is the client's.
        assert!(names.iter().any(|n| n == "x-mcp-probe"), "{request}");
        assert!(
            !names.iter().any(|n| n == "x-mcp-gateway-caller"),
            "{request}"
        );
    }
    // The key set is not served when the feature is off.
    let status = reqwest::get(format!("{}/caller-identity/jwks", sidecar.url))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}
