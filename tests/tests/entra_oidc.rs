//! Oidc mode against tokens shaped exactly as Entra ID issues them (the IdP fixture in
//! `--entra-like` mode signs them with its published keys): v2 delegated tokens whose `aud` is
//! the API's client-ID GUID and whose `scp` holds the short scope name, app-only tokens with
//! `roles`, v1 tokens from `sts.windows.net` (refused with what to change), and a multi-tenant
//! gateway (`{tenantid}` issuer template plus `allowedTenants`). The settings are the ones
//! `examples/oidc-entra.yaml` writes. Clients: the TypeScript and Python SDKs, with tokens
//! from the fixture's token route, and signing in through their own OAuth code as VS Code's
//! pre-authorized client does (no registration, no RFC 8707 `resource`).

use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::fixtures::{self, EntraLike, Idp, Standin, VSCODE_CLIENT_ID};
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use mcp_gateway_tests::stack::{initialize_body, system_key};
use serde_json::{Value, json};

/// A tenant that is not the fixture's.
const OTHER_TENANT: &str = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

struct Entra {
    _dir: TempDir,
    _standin: Standin,
    idp: Idp,
    sidecar: Sidecar,
    key: String,
}

impl Entra {
    /// The gateway as `examples/oidc-entra.yaml` configures it: the issuer (or the
    /// `{tenantid}` template), the API's client ID as the audience, the fully qualified scope.
    async fn start(multi_tenant: bool) -> Entra {
        let dir = TempDir::new("entra");
        let key = system_key("entra");
        let key_file = dir.path().join("mcp_extension");
        std::fs::write(&key_file, &key).unwrap();
        let standin = Standin::start(&key_file).expect("stand-in");
        let idp = Idp::start_entra_like(&EntraLike::default()).expect("entra-like IdP");
        let api = idp.ready["apiClientId"].as_str().unwrap().to_string();
        let tenant = idp.ready["tenantId"].as_str().unwrap().to_string();
        let mut oidc = json!({
            "mode": "Oidc",
            "issuer": idp.issuer,
            "audiences": [api],
            "requiredScopes": [format!("api://{api}/mcp.tools")],
        });
        if multi_tenant {
            oidc["issuer"] = idp.ready["organizationsIssuer"].clone();
            oidc["allowedTenants"] = json!([tenant]);
        }
        let (listen, base) = public_listener();
        let config: Config = serde_json::from_value(json!({
            "listen": listen.to_string(),
            "publicBaseUrl": base,
            "upstream": {"url": standin.url},
            "systemKey": {"file": key_file},
            "auth": oidc,
        }))
        .unwrap();
        let sidecar = Sidecar::start(config).expect("sidecar starts");
        sidecar.wait_ready().await.expect("sidecar ready");
        Entra {
            _dir: dir,
            _standin: standin,
            idp,
            sidecar,
            key,
        }
    }

    /// The gateway's protected resource metadata.
    async fn metadata(&self) -> Value {
        reqwest::get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            self.sidecar.url
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.sidecar.url)
    }

    async fn initialize(&self, token: &str) -> (u16, String, String) {
        let response = reqwest::Client::new()
            .post(self.mcp_url())
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(initialize_body())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, challenge, response.text().await.unwrap())
    }

    fn assert_nothing_leaked(&self) {
        let logs = self.sidecar.logs();
        assert!(!logs.contains(&self.key), "the system key reached the logs");
        assert!(!logs.contains("eyJ"), "a token reached the logs");
    }
}

fn ok(client: (bool, Value, String)) -> Value {
    let (ok, value, raw) = client;
    assert!(ok, "client failed: {raw}");
    value
}

#[tokio::test]
async fn sdk_clients_call_a_tool_with_a_real_shaped_v2_token() {
    let entra = Entra::start(false).await;
    let api = entra.idp.ready["apiClientId"].as_str().unwrap();
    // Resource metadata advertises the scope clients must request from Entra.
    let prm = entra.metadata().await;
    assert_eq!(
        prm["scopes_supported"],
        json!([format!("api://{api}/mcp.tools")])
    );
    assert_eq!(prm["authorization_servers"], json!([entra.idp.issuer]));

    // A delegated token as VS Code (pre-authorized on the API) gets it: `aud` is the GUID,
    // `scp` the short name.
    let token = entra
        .idp
        .entra_token(json!({"version": "2.0"}))
        .await
        .unwrap();
    let url = entra.mcp_url();
    let out = ok(fixtures::mcp_client(&[
        "--url",
        &url,
        "--token",
        &token,
        "--call",
        "echo",
        "--args",
        r#"{"message":"from entra"}"#,
    ])
    .unwrap());
    assert!(out["result"].to_string().contains("from entra"), "{out}");
    let out = ok(fixtures::python_client(&[
        "--url",
        &url,
        "--token",
        &token,
        "--mode",
        "legacy",
        "--call",
        "add",
        "--args",
        r#"{"a":2,"b":3}"#,
    ])
    .unwrap());
    assert_eq!(out["result"]["content"][0]["text"], "5", "{out}");
    assert_eq!(
        out["protocolVersion"], "2025-06-18",
        "the host's ceiling: {out}"
    );

    // An app-only token (client credentials) carries the app role in `roles`, no `scp`.
    let app = entra
        .idp
        .entra_token(json!({"version": "2.0", "appOnly": true}))
        .await
        .unwrap();
    let (status, _, body) = entra.initialize(&app).await;
    assert_eq!(status, 200, "{body}");
    // A token for another API (its own client ID as `aud`) is not for this resource.
    let other = entra
        .idp
        .entra_token(json!({"aud": "11111111-2222-4333-8444-555555555555"}))
        .await
        .unwrap();
    let (status, challenge, _) = entra.initialize(&other).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("not intended for this resource"),
        "{challenge}"
    );
    entra.assert_nothing_leaked();
}

#[tokio::test]
async fn sdk_clients_sign_in_through_entra_as_a_pre_authorized_client_and_call_a_tool() {
    let entra = Entra::start(false).await;
    let api = entra.idp.ready["apiClientId"].as_str().unwrap();
    let scope = format!("api://{api}/mcp.tools");
    let url = entra.mcp_url();
    let common = [
        "--url",
        url.as_str(),
        "--client-id",
        VSCODE_CLIENT_ID,
        "--no-resource",
    ];
    // Each SDK: 401 -> the gateway's metadata -> Entra's discovery -> code + PKCE with the
    // fully qualified scope the metadata advertises -> an Entra-shaped v2 JWT -> a tool call.
    // The TypeScript SDK asks for that scope alone (no refresh token); the Python SDK adds
    // offline_access and refreshes, getting a new JWT for the API.
    let ts = ok(fixtures::mcp_oauth_client(
        &[
            &common[..],
            &[
                "--skip-refresh",
                "--call",
                "echo",
                "--args",
                r#"{"message":"signed in"}"#,
            ],
        ]
        .concat(),
    )
    .unwrap());
    let py = ok(fixtures::python_oauth_client(
        &[
            &common[..],
            &["--call", "add", "--args", r#"{"a":2,"b":3}"#],
        ]
        .concat(),
    )
    .unwrap());
    assert!(ts["result"].to_string().contains("signed in"), "{ts}");
    assert_eq!(py["result"]["content"][0]["text"], "5", "{py}");
    assert_eq!(py["resultAfterRefresh"]["content"][0]["text"], "5", "{py}");
    assert_eq!(py["refreshed"], true, "{py}");
    for out in [&ts, &py] {
        assert_eq!(out["registered"], "preregistered", "{out}");
        let request = &out["authorizationRequest"];
        assert_eq!(
            request["url"], entra.idp.ready["authorizationEndpoint"],
            "{out}"
        );
        let requested = request["scope"].as_str().unwrap_or_default();
        assert!(requested.split(' ').any(|s| s == scope), "{out}");
        assert_eq!(request["resource"], Value::Null, "{out}");
        let tokens = out["tokenRequests"].as_array().unwrap();
        assert_eq!(tokens[0]["grantType"], "authorization_code", "{out}");
        for exchange in tokens {
            assert_eq!(exchange["status"], 200, "{out}");
            assert_eq!(exchange["resource"], Value::Null, "{out}");
            assert_eq!(exchange["response"]["scope"], scope.as_str(), "{out}");
        }
    }
    assert_eq!(py["tokenRequests"][1]["grantType"], "refresh_token", "{py}");

    // The SDK's default, RFC 8707 `resource` = the MCP URL, is what Entra refuses
    // (AADSTS9010010): such clients need the facade (docs/entra.md's client table).
    let (refused, out, raw) = fixtures::mcp_oauth_client(&[
        "--url",
        &url,
        "--client-id",
        VSCODE_CLIENT_ID,
        "--skip-refresh",
    ])
    .unwrap();
    assert!(!refused, "{raw}");
    assert!(out["error"].to_string().contains("AADSTS9010010"), "{out}");
    assert_eq!(
        out["authorizationRequest"]["resource"],
        url.as_str(),
        "{out}"
    );
    entra.assert_nothing_leaked();
}

#[tokio::test]
async fn a_v1_token_is_refused_with_what_to_change() {
    let entra = Entra::start(false).await;
    let v1 = entra
        .idp
        .entra_token(json!({"version": "1.0"}))
        .await
        .unwrap();
    let (status, challenge, _) = entra.initialize(&v1).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error="invalid_token""#)
            && challenge.contains("requestedAccessTokenVersion to 2"),
        "{challenge}"
    );
    let failures = entra
        .sidecar
        .metric(r#"mcp_gateway_auth_failures_total{reason="entra_v1_token"}"#)
        .await
        .unwrap();
    assert_eq!(failures, 1.0);
    entra.assert_nothing_leaked();
}

#[tokio::test]
async fn a_multi_tenant_gateway_admits_an_allowed_tenant_and_refuses_another() {
    let entra = Entra::start(true).await;
    // Discovery came from `organizations`, whose issuer is the template; clients are sent there.
    let prm = entra.metadata().await;
    let organizations = entra.idp.ready["organizationsIssuer"]
        .as_str()
        .unwrap()
        .replace("{tenantid}", "organizations");
    assert_eq!(prm["authorization_servers"], json!([organizations]));

    let allowed = entra.idp.entra_token(json!({})).await.unwrap();
    let url = entra.mcp_url();
    let out =
        ok(fixtures::mcp_client(&["--url", &url, "--token", &allowed, "--list-tools"]).unwrap());
    assert!(out["tools"].to_string().contains("echo"), "{out}");

    // A real token of another tenant: same signing keys, its own issuer, not admitted.
    let other = entra
        .idp
        .entra_token(json!({"tid": OTHER_TENANT}))
        .await
        .unwrap();
    let (status, challenge, _) = entra.initialize(&other).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains("tenant that is not allowed"),
        "{challenge}"
    );
    entra.assert_nothing_leaked();
}
