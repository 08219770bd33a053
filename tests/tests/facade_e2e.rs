//! The authorization-server facade with real peers: the real sidecar binary, a real OpenID
//! provider (`oidc-provider`) configured like Entra ID (no registration endpoint, no PKCE
//! methods in its metadata, `resource` refused), the Functions stand-in upstream, and real
//! MCP clients. The browser part of each sign-in is `mcp_gateway_tests::browser`, a cookie-jar
//! user agent that also answers the consent page; the IdP's own login auto-approves (a test
//! fixture setting).

use base64::Engine;
use mcp_gateway_contract::config::AuthConfig;
use mcp_gateway_sidecar::facade::pkce;
use mcp_gateway_tests::browser::Browser;
use mcp_gateway_tests::facade::{
    EntraLike, Files, GATEWAY_SECRET, REDIRECT, SCOPE, SYSTEM_KEY, facade_config,
};
use mcp_gateway_tests::fixtures::{self, Standin};
use mcp_gateway_tests::must_eventually;
use mcp_gateway_tests::round_robin::RoundRobin;
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use serde_json::{Value, json};

/// One gateway at `<base>/weather` with an Entra-like IdP and the stand-in.
struct Stack {
    files: Files,
    idp: EntraLike,
    _standin: Standin,
    sidecar: Sidecar,
    base: String,
}

impl Stack {
    async fn start() -> Stack {
        let files = Files::new();
        let standin = Standin::start(&files.path("system-key")).expect("stand-in");
        let (listen, base) = public_listener();
        let idp = EntraLike::start(&[format!("{base}/weather/oauth/callback")]).expect("IdP");
        let config = facade_config(listen, &base, "/weather", &idp.issuer, &standin.url, &files);
        let sidecar = Sidecar::start(config).expect("sidecar");
        sidecar.wait_ready().await.expect("ready");
        Stack {
            files,
            idp,
            _standin: standin,
            sidecar,
            base,
        }
    }

    fn issuer(&self) -> String {
        format!("{}/weather", self.base)
    }

    fn resource(&self) -> String {
        format!("{}/weather/mcp", self.base)
    }
}

async fn register(http: &reqwest::Client, issuer: &str, redirect: &str) -> String {
    let r = http
        .post(format!("{issuer}/oauth/register"))
        .json(&json!({"redirect_uris": [redirect], "client_name": "Rust test client"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["client_id"].as_str().unwrap().to_string()
}

fn authorize_url(
    issuer: &str,
    client_id: &str,
    verifier: &str,
    state: &str,
    resource: &str,
) -> String {
    let mut url = url::Url::parse(&format!("{issuer}/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &pkce::challenge(verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("scope", SCOPE)
        .append_pair("resource", resource);
    url.to_string()
}

async fn token(http: &reqwest::Client, issuer: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(format!("{issuer}/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Signs in through the gateway and the IdP; returns the code.
async fn sign_in(
    browser: &Browser,
    issuer: &str,
    client_id: &str,
    verifier: &str,
    resource: &str,
) -> String {
    let landing = browser
        .sign_in(
            &authorize_url(issuer, client_id, verifier, "st-1", resource),
            REDIRECT,
            "approve",
        )
        .await
        .expect("sign-in");
    assert_eq!(landing.param("state").as_deref(), Some("st-1"));
    assert_eq!(
        landing.param("iss").as_deref(),
        Some(issuer),
        "RFC 9207 iss"
    );
    landing.param("code").expect("a code")
}

fn call_echo(url: &str, token: &str) -> (bool, Value, String) {
    fixtures::mcp_client(&[
        "--url",
        url,
        "--transport",
        "streamable",
        "--token",
        token,
        "--call",
        "echo",
        "--args",
        r#"{"message":"through the facade"}"#,
    ])
    .unwrap()
}

#[tokio::test]
async fn a_client_registers_signs_in_through_the_idp_and_calls_a_tool() {
    let stack = Stack::start().await;
    let issuer = stack.issuer();
    let http = reqwest::Client::new();

    // Discovery as a client does it: 401 → PRM → authorization-server metadata.
    let r = http.post(stack.resource()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/weather/mcp"),
        "{challenge}"
    );
    let prm: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/weather/mcp",
            stack.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"][0], issuer);
    let metadata: Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server/weather",
            stack.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], issuer);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    // The IdP itself would fail a strict client: that is why the facade exists.
    let idp_metadata: Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            stack.idp.issuer
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        idp_metadata
            .get("code_challenge_methods_supported")
            .is_none()
    );
    assert!(idp_metadata.get("registration_endpoint").is_none());

    let client_id = register(&http, &issuer, REDIRECT).await;
    let browser = Browser::new();
    let verifier = pkce::random_token();
    let code = sign_in(&browser, &issuer, &client_id, &verifier, &stack.resource()).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
        ("resource", &stack.resource()),
    ];
    let (status, tokens) = token(&http, &issuer, &form).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    // The token carries the IdP user (Entra: tid/oid), the resource and the scope.
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], stack.resource());
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["scope"], SCOPE);
    assert!(
        claims["sub"].as_str().unwrap().contains('/'),
        "tid/oid subject: {claims}"
    );

    let (ok, out, raw) = call_echo(&stack.resource(), &access);
    assert!(ok, "{raw}");
    assert!(
        out["result"].to_string().contains("through the facade"),
        "{out}"
    );

    // The same code again: refused (single use).
    let (status, body) = token(&http, &issuer, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Refresh rotates; the old refresh token is then refused and ends the sign-in.
    let r1 = tokens["refresh_token"].as_str().unwrap().to_string();
    let refresh = |t: String| {
        let http = &http;
        let issuer = &issuer;
        let client_id = client_id.clone();
        async move {
            token(
                http,
                issuer,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &t),
                    ("client_id", &client_id),
                ],
            )
            .await
        }
    };
    let (status, second) = refresh(r1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let (ok, _, raw) = call_echo(&stack.resource(), second["access_token"].as_str().unwrap());
    assert!(ok, "the refreshed token works: {raw}");
    let (status, body) = refresh(r1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (_, body) = refresh(second["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(body["error_description"], "the refresh token was revoked");

    // PKCE: a code redeemed with another verifier is refused.
    let code = sign_in(&browser, &issuer, &client_id, &verifier, &stack.resource()).await;
    let wrong = pkce::random_token();
    let (status, body) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &wrong),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Denied at the consent page: the client hears access_denied, with iss.
    let landing = browser
        .sign_in(
            &authorize_url(&issuer, &client_id, &verifier, "st-2", &stack.resource()),
            REDIRECT,
            "deny",
        )
        .await
        .unwrap();
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(landing.param("iss").as_deref(), Some(issuer.as_str()));

    // The IdP's secret and the system key never reach a log line.
    let logs = stack.sidecar.logs();
    for secret in [GATEWAY_SECRET, SYSTEM_KEY, access.as_str()] {
        assert!(!logs.contains(secret));
    }
}

#[tokio::test]
async fn hostile_requests_get_the_right_oauth_error() {
    let stack = Stack::start().await;
    let issuer = stack.issuer();
    // Redirects are looked at, not followed.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client_id = register(&http, &issuer, REDIRECT).await;
    let verifier = pkce::random_token();
    let get = |url: String| {
        let http = &http;
        async move { http.get(url).send().await.unwrap() }
    };

    // An altered redirect URI, and a redirect URI that is not https or loopback: shown, not
    // redirected, so a code can never be sent there.
    for redirect in ["http://127.0.0.1/other", "https://attacker.example/cb"] {
        let url = authorize_url(&issuer, &client_id, &verifier, "s", &stack.resource()).replace(
            &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
        );
        let r = get(url).await;
        assert_eq!(r.status(), 400, "{redirect}");
        assert!(r.headers().get("location").is_none());
    }
    // Registration refuses them up front too.
    let r = http
        .post(format!("{issuer}/oauth/register"))
        .json(&json!({"redirect_uris": ["http://attacker.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "invalid_redirect_uri"
    );

    // A tampered client_id.
    let mut tampered = client_id.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let r = get(authorize_url(
        &issuer,
        &tampered,
        &verifier,
        "s",
        &stack.resource(),
    ))
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not issued by this gateway")
    );

    // A Client ID Metadata Document on a private address: refused before any request.
    let r = get(authorize_url(
        &issuer,
        "https://169.254.169.254/latest/meta-data/client.json",
        &verifier,
        "s",
        &stack.resource(),
    ))
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("private"));

    // A token request for another resource.
    let (status, body) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
            ("resource", "https://other.example/mcp"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    // A token the gateway minted for another resource (another gateway with the same keys)
    // does not open this one.
    let browser = Browser::new();
    let other_resource = format!("{}/other/mcp", stack.base);
    let r = get(authorize_url(
        &issuer,
        &client_id,
        &verifier,
        "s",
        &other_resource,
    ))
    .await;
    assert_eq!(
        r.status(),
        302,
        "a resource that is not this server is redirected as an error"
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("error=invalid_target"), "{location}");
    // And a syntactically valid JWT signed by someone else is refused at /mcp.
    let code = sign_in(&browser, &issuer, &client_id, &verifier, &stack.resource()).await;
    let (_, tokens) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut parts: Vec<&str> = access.split('.').collect();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"iss": issuer, "aud": stack.resource(), "sub": "mallory", "scope": SCOPE, "exp": 4102444800u64}).to_string());
    parts[1] = &forged_claims;
    let forged = parts.join(".");
    let ping = |url: String, bearer: String| {
        let http = &http;
        async move {
            http.post(url)
                .bearer_auth(bearer)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(ping(stack.resource(), forged).await.status(), 401);

    // A genuine token of this gateway presented to another gateway (same facade keys,
    // another resource): its audience is wrong there.
    let (listen, other_base) = public_listener();
    let other = Sidecar::start(facade_config(
        listen,
        &other_base,
        "/news",
        &stack.idp.issuer,
        &stack.sidecar.url,
        &stack.files,
    ))
    .unwrap();
    other.wait_ready().await.unwrap();
    let r = ping(format!("{other_base}/news/mcp"), access.to_string()).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // The same token works where it belongs.
    assert_ne!(
        ping(stack.resource(), access.to_string()).await.status(),
        401
    );
}

// Multi-threaded: the balancer runs on the test's runtime while the SDK client blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_round_robin_share_nothing_but_keys() {
    let files = Files::new();
    let standin = Standin::start(&files.path("system-key")).expect("stand-in");
    let (public, base) = public_listener();
    let idp = EntraLike::start(&[format!("{base}/weather/oauth/callback")]).expect("IdP");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (listen, _) = public_listener();
        let config = facade_config(listen, &base, "/weather", &idp.issuer, &standin.url, &files);
        let sidecar = Sidecar::start(config).expect("sidecar");
        sidecar.wait_ready().await.unwrap();
        replicas.push(sidecar);
    }
    let backends = replicas
        .iter()
        .map(|s| s.url.trim_start_matches("http://").parse().unwrap())
        .collect();
    let balancer = RoundRobin::start(public, backends).await.unwrap();
    let issuer = format!("{base}/weather");
    let resource = format!("{base}/weather/mcp");

    // Every request on a new connection: register, authorize, consent, callback and token
    // each land on the replica after the previous one's.
    let browser = Browser::one_connection_per_request();
    let client_id = register(browser.http(), &issuer, REDIRECT).await;
    let verifier = pkce::random_token();
    let code = sign_in(&browser, &issuer, &client_id, &verifier, &resource).await;
    let (status, tokens) = token(
        browser.http(),
        &issuer,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let counts = balancer.counts();
    assert!(
        counts.iter().all(|&c| c >= 2),
        "both replicas served the sign-in: {counts:?}"
    );
    // The token works on both replicas.
    for replica in &replicas {
        let r = browser
            .http()
            .post(format!("{}/weather/mcp", replica.url))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", replica.url);
    }
    // And an SDK client's whole session alternates between them.
    let (ok, _, raw) = call_echo(&resource, tokens["access_token"].as_str().unwrap());
    assert!(ok, "{raw}");
}

#[tokio::test]
async fn the_typescript_and_python_sdks_log_in_and_refresh() {
    let stack = Stack::start().await;
    let resource = stack.resource();
    let args = [
        "--url",
        resource.as_str(),
        "--call",
        "echo",
        "--args",
        r#"{"message":"sdk through the facade"}"#,
    ];
    // The TypeScript SDK: 401 → PRM → metadata → DCR → authorize (consent, IdP) → token →
    // tools/call → refresh → tools/call.
    let (ok, out, raw) = fixtures::mcp_oauth_client(&args).unwrap();
    assert!(ok, "{raw}");
    assert_eq!(out["registered"], "dcr", "{out}");
    assert!(
        out["result"].to_string().contains("sdk through the facade"),
        "{out}"
    );
    assert_eq!(out["refreshed"], true, "{out}");
    assert_eq!(out["refreshRotated"], true, "{out}");
    assert!(
        out["resultAfterRefresh"]
            .to_string()
            .contains("sdk through the facade")
    );

    // The Python SDK: it also checks `iss` against the metadata's issuer, byte for byte.
    let (ok, out, raw) = fixtures::python_oauth_client(&args).unwrap();
    assert!(ok, "{raw}");
    assert_eq!(out["registered"], "dcr", "{out}");
    assert_eq!(out["refreshed"], true, "{out}");
    assert!(
        out["resultAfterRefresh"]
            .to_string()
            .contains("sdk through the facade")
    );

    // Denied at the consent page: the SDK reports access_denied, and has no token.
    let (ok, out, _) = fixtures::mcp_oauth_client(&[
        "--url",
        resource.as_str(),
        "--decision",
        "deny",
        "--skip-refresh",
    ])
    .unwrap();
    assert!(!ok);
    assert!(
        out["error"].as_str().unwrap().contains("access_denied"),
        "{out}"
    );
    let logs = stack.sidecar.logs();
    assert!(!logs.contains(GATEWAY_SECRET) && !logs.contains(SYSTEM_KEY));
}

#[tokio::test]
async fn a_multi_tenant_idp_signs_in_users_of_allowed_tenants_only() {
    // The IdP side as a multi-tenant Entra app: the `{tenantid}` issuer template, users sent to
    // `organizations`, ID tokens whose `iss` names their own `tid`.
    for (allowed, signs_in) in [
        (None, true),
        (Some("9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"), false),
    ] {
        let files = Files::new();
        let standin = Standin::start(&files.path("system-key")).expect("stand-in");
        let (listen, base) = public_listener();
        let idp = EntraLike::start(&[format!("{base}/weather/oauth/callback")]).expect("IdP");
        let template = idp.ready["organizationsIssuer"].as_str().unwrap();
        let tenant = idp.ready["tenantId"].as_str().unwrap();
        let mut config = facade_config(listen, &base, "/weather", template, &standin.url, &files);
        let AuthConfig::AuthorizationServer(facade) = &mut config.auth else {
            panic!("facade config")
        };
        facade.allowed_tenants = vec![allowed.unwrap_or(tenant).to_string()];
        let sidecar = Sidecar::start(config).expect("sidecar");
        sidecar.wait_ready().await.expect("ready");
        let resource = format!("{base}/weather/mcp");
        let (ok, out, raw) = fixtures::mcp_oauth_client(&[
            "--url",
            &resource,
            "--call",
            "echo",
            "--args",
            r#"{"message":"any tenant of the list"}"#,
            "--skip-refresh",
        ])
        .unwrap();
        let logs = sidecar.logs();
        if signs_in {
            assert!(ok, "{raw}\n{logs}");
            assert!(
                out["result"].to_string().contains("any tenant of the list"),
                "{out}"
            );
        } else {
            assert!(!ok, "a user of a tenant not listed signed in: {out}");
            assert!(logs.contains("wrong_tenant"), "{logs}");
        }
        assert!(!logs.contains(GATEWAY_SECRET) && !logs.contains(SYSTEM_KEY));
    }
}

/// Serves one JSON document over https on 127.0.0.1 (a client's metadata document).
async fn serve_document(dir: &std::path::Path, listener: tokio::net::TcpListener, body: String) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor =
        tokio_rustls::TlsAcceptor::from(mcp_gateway_tests::tls::server_config(dir, &[b"http/1.1"]));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from(body)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}

// Multi-threaded: the document server runs on the test's runtime while the client blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_metadata_document_client_logs_in_without_registering() {
    let files = Files::new();
    mcp_gateway_tests::tls::make_certificates(files.dir.path());
    let standin = Standin::start(&files.path("system-key")).expect("stand-in");
    let (listen, base) = public_listener();
    let idp = EntraLike::start(&[format!("{base}/weather/oauth/callback")]).expect("IdP");
    let mut config = facade_config(listen, &base, "/weather", &idp.issuer, &standin.url, &files);
    if let mcp_gateway_contract::config::AuthConfig::AuthorizationServer(f) = &mut config.auth {
        // Test setting: the document is served on loopback by a test CA.
        f.client_metadata_documents.allow_private_addresses = true;
        f.client_metadata_documents.ca_file = Some(files.path("ca.pem"));
    }
    let sidecar = Sidecar::start(config).expect("sidecar");
    sidecar.wait_ready().await.unwrap();

    let documents = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cimd_url = format!(
        "https://127.0.0.1:{}/clients/mcp-test.json",
        documents.local_addr().unwrap().port()
    );
    let redirect = {
        let (addr, _) = public_listener();
        format!("http://{addr}/callback")
    };
    let resource = format!("{base}/weather/mcp");
    let (ok, document, raw) = fixtures::mcp_oauth_client(&[
        "--url",
        &resource,
        "--cimd-url",
        &cimd_url,
        "--redirect-url",
        &redirect,
        "--print-client-metadata",
    ])
    .unwrap();
    assert!(ok, "{raw}");
    assert_eq!(document["client_id"], cimd_url.as_str());
    serve_document(files.dir.path(), documents, document.to_string()).await;

    let (ok, out, raw) = tokio::task::spawn_blocking(move || {
        fixtures::mcp_oauth_client(&[
            "--url",
            &resource,
            "--cimd-url",
            &cimd_url,
            "--redirect-url",
            &redirect,
            "--call",
            "echo",
            "--args",
            r#"{"message":"cimd"}"#,
        ])
        .unwrap()
    })
    .await
    .unwrap();
    assert!(ok, "{raw}\n{}", sidecar.logs());
    assert_eq!(out["registered"], "cimd", "{out}");
    assert!(out["result"].to_string().contains("cimd"), "{out}");
    assert_eq!(out["refreshed"], true, "{out}");
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_rotated_facade_keys_file_takes_effect_while_a_client_is_signed_in() {
    let stack = Stack::start().await;
    let issuer = stack.issuer();
    let http = reqwest::Client::new();
    let jwks = || {
        let (http, url) = (http.clone(), format!("{issuer}/oauth/jwks"));
        async move {
            let doc: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            doc["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let refresh = |refresh_token: String, client_id: String| {
        let (http, issuer) = (http.clone(), issuer.clone());
        async move {
            token(
                &http,
                &issuer,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh_token),
                    ("client_id", &client_id),
                ],
            )
            .await
        }
    };
    let sign_in_and_redeem = |client_id: String| {
        let (http, issuer, resource) = (http.clone(), issuer.clone(), stack.resource());
        async move {
            let browser = Browser::new();
            let verifier = pkce::random_token();
            let code = sign_in(&browser, &issuer, &client_id, &verifier, &resource).await;
            let (status, tokens) = token(
                &http,
                &issuer,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", &client_id),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
            assert_eq!(status, 200, "{tokens}");
            tokens
        }
    };
    let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let keys_file = stack.files.path("facade-keys");

    // Signed in under the first key.
    let client_id = register(&http, &issuer, REDIRECT).await;
    let tokens = sign_in_and_redeem(client_id.clone()).await;
    let old_access = tokens["access_token"].as_str().unwrap().to_string();
    let old_refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let old_kid = jwks().await[0].clone();
    assert_eq!(kid_of(&old_access), old_kid);

    // Rotation: a new key first, the old one still listed. No restart.
    std::fs::write(&keys_file, format!("{}\n{}\n", key(8), key(7))).unwrap();
    let rotated = must_eventually(10, "the JWKS to list the new key first", || async {
        let kids = jwks().await;
        if kids.len() == 2 {
            Ok(kids)
        } else {
            Err(format!("{kids:?}"))
        }
    })
    .await;
    let new_kid = rotated[0].clone();
    assert_eq!(rotated[1], old_kid);
    assert_ne!(new_kid, old_kid);

    // What the old key made keeps working: the access token, the refresh token, the
    // registration; what is made now is signed with the new key.
    let (ok, _, raw) = call_echo(&stack.resource(), &old_access);
    assert!(ok, "the old access token after the rotation: {raw}");
    let (status, refreshed) = refresh(old_refresh, client_id.clone()).await;
    assert_eq!(status, 200, "{refreshed}");
    let new_access = refreshed["access_token"].as_str().unwrap().to_string();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(kid_of(&new_access), new_kid);
    let (ok, _, raw) = call_echo(&stack.resource(), &new_access);
    assert!(ok, "an access token signed with the new key: {raw}");
    let again = sign_in_and_redeem(client_id.clone()).await;
    assert_eq!(kid_of(again["access_token"].as_str().unwrap()), new_kid);

    // The old key retired: what it signed or sealed stops working, the new key's grants stay.
    std::fs::write(&keys_file, format!("{}\n", key(8))).unwrap();
    must_eventually(10, "the old access token to be refused", || async {
        let status = http
            .post(stack.resource())
            .bearer_auth(&old_access)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    })
    .await;
    assert_eq!(jwks().await, vec![new_kid.clone()]);
    let (status, body) = refresh(new_refresh, client_id.clone()).await;
    assert_eq!(
        status, 200,
        "a refresh token sealed with the new key: {body}"
    );
    let r = http
        .get(authorize_url(
            &issuer,
            &client_id,
            &pkce::random_token(),
            "st-2",
            &stack.resource(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a registration sealed with the retired key"
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not issued by this gateway")
    );
    let (ok, _, raw) = call_echo(&stack.resource(), &new_access);
    assert!(ok, "the new key's access token after the retirement: {raw}");
}

#[tokio::test]
async fn a_rotated_session_keys_file_takes_effect_without_a_restart() {
    use mcp_gateway_tests::stack::{ACCEPT, initialize_body};

    let stack = Stack::start().await;
    let issuer = stack.issuer();
    let http = reqwest::Client::new();
    let client_id = register(&http, &issuer, REDIRECT).await;
    let verifier = pkce::random_token();
    let code = sign_in(
        &Browser::new(),
        &issuer,
        &client_id,
        &verifier,
        &stack.resource(),
    )
    .await;
    let (status, tokens) = token(
        &http,
        &issuer,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let post = |session: Option<&str>, body: String| {
        let mut r = http
            .post(stack.resource())
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .bearer_auth(&access)
            .body(body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let session = r
                .headers()
                .get("mcp-session-id")
                .map(|v| v.to_str().unwrap().to_string());
            (status, session, r.text().await.unwrap())
        }
    };
    let open = || async {
        let (status, session, body) = post(None, initialize_body()).await;
        assert_eq!(status, 200, "initialize: {body}");
        let session = session.expect("a session id");
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(post(Some(&session), initialized.to_string()).await.0, 202);
        session
    };
    let list = || json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let keys_file = stack.files.path("session-keys");

    let old_session = open().await;
    // A new key first, the old one still listed: the open session keeps working.
    std::fs::write(&keys_file, format!("{}\n{}\n", key(10), key(9))).unwrap();
    // Sessions opened once the new key is in use are sealed with it; the only outside sign
    // is that they survive the old key's retirement below, so open one after the file has
    // surely been read again.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let new_session = open().await;
    let (status, _, body) = post(Some(&old_session), list()).await;
    assert_eq!(
        status, 200,
        "the old session while its key is listed: {body}"
    );

    // The old key retired: its session is gone, the new key's stays.
    std::fs::write(&keys_file, format!("{}\n", key(10))).unwrap();
    must_eventually(10, "the old session to be refused", || async {
        match post(Some(&old_session), list()).await {
            (404, _, _) => Ok(()),
            (status, _, body) => Err(format!("answered {status}: {body}")),
        }
    })
    .await;
    let (status, _, body) = post(Some(&new_session), list()).await;
    assert_eq!(status, 200, "a session sealed with the new key: {body}");
    assert!(body.contains("echo"), "{body}");
}

/// Per-tool rules through the facade: the app roles of the user's ID token at sign-in reach
/// the gateway's own tokens, so `roles` rules decide tools for any MCP client that signs in
/// through the gateway (here the TypeScript SDK's own OAuth code, with registration).
#[tokio::test]
async fn app_roles_from_the_sign_in_decide_which_tools_a_facade_client_sees_and_calls() {
    let files = Files::new();
    let standin = Standin::start(&files.path("system-key")).expect("stand-in");
    let (listen, base) = public_listener();
    let idp = EntraLike::start(&[format!("{base}/weather/oauth/callback")]).expect("IdP");
    let mut config = facade_config(listen, &base, "/weather", &idp.issuer, &standin.url, &files);
    config.tool_access = Some(
        serde_json::from_value(json!({
            "default": "Deny",
            "rules": [
                {"tools": ["echo"]},
                {"tools": ["add"], "roles": ["Calculator.User"], "tenants": [idp.ready["tenantId"]]},
            ],
        }))
        .unwrap(),
    );
    let sidecar = Sidecar::start(config).expect("sidecar");
    sidecar.wait_ready().await.expect("ready");
    let resource = format!("{base}/weather/mcp");
    let sign_in_and_add = || {
        fixtures::mcp_oauth_client(&[
            "--url",
            &resource,
            "--call",
            "add",
            "--args",
            r#"{"a":2,"b":3}"#,
            "--skip-refresh",
        ])
        .unwrap()
    };

    idp.sign_in_as("carol", &["Calculator.User"]).await.unwrap();
    let (ok, out, raw) = sign_in_and_add();
    assert!(ok, "{raw}");
    assert_eq!(out["tools"], json!(["echo", "add"]), "{out}");
    assert_eq!(out["result"]["content"][0]["text"], "5", "{out}");

    idp.sign_in_as("dave", &[]).await.unwrap();
    let (ok, out, raw) = sign_in_and_add();
    assert!(!ok, "{raw}");
    assert_eq!(out["tools"], json!(["echo"]), "{out}");
    assert!(
        raw.contains("does not let this caller call the tool"),
        "{raw}"
    );
    let logs = sidecar.logs();
    assert!(!logs.contains(GATEWAY_SECRET) && !logs.contains(SYSTEM_KEY));
}
