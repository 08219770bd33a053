//! The facade's own rules, end to end through `Facade::handle` but without an IdP: the
//! sign-in at the IdP is replaced by sealing a code directly, as the callback would. The
//! whole flow with a real IdP and real SDK clients is in tests/tests/facade_e2e.rs.

use http_body_util::BodyExt;

use super::*;
use crate::config::Config;

const RESOURCE: &str = "https://mcp.example.com/weather/mcp";
const ISSUER: &str = "https://mcp.example.com/weather";
const REDIRECT: &str = "http://127.0.0.1/callback";

fn config() -> Config {
    serde_yaml::from_str(
        "publicBaseUrl: https://mcp.example.com\npathPrefix: /weather\nupstream: {url: https://fn.example}\nsystemKey: {file: /k}\nauth:\n  mode: AuthorizationServer\n  idp: {issuer: 'https://login.microsoftonline.com/t/v2.0', clientId: gw, clientSecretFile: /nonexistent}\n  keysFile: /nonexistent\n  scopes: [mcp.tools]\n",
    )
    .unwrap()
}

fn facade() -> Facade {
    let config = config();
    let AuthConfig::AuthorizationServer(settings) = &config.auth else {
        panic!()
    };
    Facade::new(
        &config,
        settings,
        KeysFile::fixed(FacadeKeys::new(&[[3; 32]])),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

use crate::config::AuthConfig;

async fn call(
    f: &Facade,
    endpoint: Endpoint,
    method: Method,
    query: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let r = f
        .handle(
            endpoint,
            &method,
            query,
            &HeaderMap::new(),
            Bytes::from(body.to_string()),
        )
        .await;
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn register(f: &Facade) -> String {
    let (status, _, body) = call(
        f,
        Endpoint::Register,
        Method::POST,
        None,
        &json!({"redirect_uris": [REDIRECT], "client_name": "Test client"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["token_endpoint_auth_method"], "none");
    v["client_id"].as_str().unwrap().to_string()
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn code_for(f: &Facade, client_id: &str, exp: u64) -> String {
    grants::seal(
        &f.keys().sealer,
        Kind::Code,
        &Code {
            client_id: client_key(client_id),
            redirect_uri: REDIRECT.into(),
            code_challenge: pkce::challenge(VERIFIER),
            scopes: vec!["mcp.tools".into()],
            subject: "tenant/alice".into(),
            roles: vec!["Weather.Admin".into()],
            tenant: Some("tenant".into()),
            jti: pkce::random_token(),
            exp,
        },
    )
    .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn token(f: &Facade, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    let (status, headers, body) = call(f, Endpoint::Token, Method::POST, None, &form(pairs)).await;
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn metadata_advertises_what_strict_clients_require() {
    let f = facade();
    let (status, _, body) = call(&f, Endpoint::Metadata, Method::GET, None, "").await;
    assert_eq!(status, StatusCode::OK);
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        m["registration_endpoint"],
        format!("{ISSUER}/oauth/register")
    );
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["client_id_metadata_document_supported"], true);
    // The metadata is found where clients look for an issuer with a path.
    let c = config();
    for path in [
        "/.well-known/oauth-authorization-server/weather",
        "/.well-known/openid-configuration/weather",
        "/weather/.well-known/openid-configuration",
    ] {
        assert_eq!(
            Endpoint::route(&c, path),
            Some(Endpoint::Metadata),
            "{path}"
        );
    }
    assert_eq!(
        Endpoint::route(&c, "/.well-known/oauth-authorization-server"),
        None
    );
    assert_eq!(
        Endpoint::route(&c, "/weather/oauth/token"),
        Some(Endpoint::Token)
    );
}

#[tokio::test]
async fn registration_refuses_unsafe_redirect_uris() {
    let f = facade();
    for uris in [json!(["http://evil.example/cb"]), json!([]), json!(["cb"])] {
        let (status, _, body) = call(
            &f,
            Endpoint::Register,
            Method::POST,
            None,
            &json!({ "redirect_uris": uris }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uris}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "invalid_redirect_uri"
        );
    }
}

#[tokio::test]
async fn authorize_shows_consent_and_refuses_bad_clients_without_redirecting() {
    let f = facade();
    let client_id = register(&f).await;
    let challenge = pkce::challenge(VERIFIER);
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &client_id),
        ("redirect_uri", "http://127.0.0.1:4567/callback"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("state", "s1"),
        ("resource", RESOURCE),
    ]);
    let (status, headers, body) =
        call(&f, Endpoint::Authorize, Method::GET, Some(&query), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Test client") && body.contains("value=\"approve\""));
    assert_eq!(headers["x-frame-options"], "DENY");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with(COOKIE_PREFIX) && cookie.contains("HttpOnly"));
    assert!(cookie.contains("Secure") && cookie.contains("Path=/weather/oauth"));

    // A tampered client_id, or a redirect URI it did not register: shown, not redirected.
    let mut tampered = client_id.clone();
    tampered.replace_range(10..11, if &tampered[10..11] == "A" { "B" } else { "A" });
    for (id, redirect_uri) in [
        (tampered.as_str(), REDIRECT),
        (client_id.as_str(), "http://127.0.0.1/other"),
        (client_id.as_str(), "https://evil.example/callback"),
    ] {
        let q = form(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", redirect_uri),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let (status, headers, _) = call(&f, Endpoint::Authorize, Method::GET, Some(&q), "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect_uri}");
        assert!(headers.get(header::LOCATION).is_none());
    }

    // A state that would make the pending sign-in too large to open again (control
    // characters grow sixfold as JSON; found by fuzzing): refused up front, no cookie.
    let q = form(&[
        ("response_type", "code"),
        ("client_id", &client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("state", &"\u{1}".repeat(1000)),
    ]);
    let (status, headers, body) = call(&f, Endpoint::Authorize, Method::GET, Some(&q), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("too large"), "{body}");
    assert!(headers.get(header::SET_COOKIE).is_none());

    // No PKCE, or a resource that is not this server: redirected with the error and `iss`.
    for (extra, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("resource", "https://other.example/mcp"),
            ],
            "invalid_target",
        ),
    ] {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "s2"),
        ];
        pairs.extend(extra);
        let (status, headers, _) = call(
            &f,
            Endpoint::Authorize,
            Method::GET,
            Some(&form(&pairs)),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FOUND);
        let location = url::Url::parse(headers[header::LOCATION].to_str().unwrap()).unwrap();
        let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["error"], error);
        assert_eq!(q["state"], "s2");
        assert_eq!(q["iss"], ISSUER);
    }
}

#[tokio::test]
async fn codes_need_the_verifier_the_client_and_single_use() {
    let f = facade();
    let client_id = register(&f).await;
    let other_client = register(&f).await;
    let code = code_for(&f, &client_id, now() + 60);
    let good = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];

    // Wrong verifier, wrong client, altered redirect URI: refused, and the code survives.
    let wrong_verifier = "x".repeat(43);
    for (name, value) in [
        ("code_verifier", wrong_verifier.as_str()),
        ("client_id", other_client.as_str()),
        ("redirect_uri", "http://127.0.0.1/other"),
    ] {
        let pairs: Vec<_> = good
            .iter()
            .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
            .collect();
        let (status, body) = token(&f, &pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(body["error"], "invalid_grant", "{name}");
    }

    let (status, tokens) = token(&f, &good).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp.tools");

    // The access token verifies as the resource server will verify it.
    let rs = crate::auth::Authenticator::with_keys(
        crate::config::OidcConfig {
            issuer: ISSUER.into(),
            audiences: vec![RESOURCE.into()],
            required_scopes: vec!["mcp.tools".into()],
            allowed_tenants: vec![],
            jwks_uri: None,
            leeway_seconds: 60,
        },
        f.keys().jwks(),
        16 * 1024,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let bearer = HeaderValue::from_str(&format!(
        "Bearer {}",
        tokens["access_token"].as_str().unwrap()
    ))
    .unwrap();
    let principal = rs.authenticate(Some(&bearer)).await.unwrap();
    assert_eq!(principal.subject, "tenant/alice");
    // The sign-in's app roles and tenant are carried for per-tool rules (roles count as
    // scopes too, as in an Entra token).
    assert_eq!(principal.roles, ["Weather.Admin"]);
    assert_eq!(principal.tenant.as_deref(), Some("tenant"));
    assert_eq!(principal.scopes, ["mcp.tools", "Weather.Admin"]);

    // Replayed: refused.
    let (status, body) = token(&f, &good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "the code was already used");

    // Expired, or not a code at all (a refresh token passed off as one).
    let expired = code_for(&f, &client_id, now() - 1);
    let (_, body) = token(
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &expired),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(body["error_description"], "the code has expired");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (_, body) = token(
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", refresh),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(body["error_description"], "the code is not valid");

    // A resource other than this server.
    let fresh = code_for(&f, &client_id, now() + 60);
    let (_, body) = token(
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &fresh),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
            ("resource", "https://other.example/mcp"),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_target");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_the_sign_in() {
    let f = facade();
    let client_id = register(&f).await;
    let code = code_for(&f, &client_id, now() + 60);
    let (_, first) = token(
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let refresh = |t: String| {
        let f = &f;
        let client_id = client_id.clone();
        async move {
            token(
                f,
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
    assert_eq!(status, StatusCode::OK);
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "refresh tokens rotate");
    // ...without extending the sign-in: the new token expires when the first one does, and
    // carries the sign-in's roles on.
    let open = |t: &str| -> Refresh { grants::open(&f.keys().sealer, Kind::Refresh, t).unwrap() };
    let (o1, o2) = (open(&r1), open(&r2));
    assert!(o1.signed_in_at > 0 && o1.signed_in_at == o2.signed_in_at);
    assert_eq!(o1.exp, o2.exp);
    assert_eq!(o2.roles, ["Weather.Admin"]);
    // A sign-in of 1,000 s ago: the refreshed token ends 1,000 s before a fresh one would.
    let old = grants::seal(
        &f.keys().sealer,
        Kind::Refresh,
        &Refresh {
            signed_in_at: now() - 1000,
            jti: pkce::random_token(),
            ..o2.clone()
        },
    )
    .unwrap();
    let (status, third) = refresh(old).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let o3 = open(third["refresh_token"].as_str().unwrap());
    assert_eq!(o3.exp, o3.signed_in_at + f.refresh_ttl);
    assert!(
        o3.exp + 900 < o2.exp,
        "the sign-in slid: {} vs {}",
        o3.exp,
        o2.exp
    );
    // Reusing r1 is refused, and revokes r2 too (the whole sign-in).
    let (status, body) = refresh(r1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (_, body) = refresh(r2).await;
    assert_eq!(body["error_description"], "the refresh token was revoked");

    // Another client cannot use a client's refresh token.
    let code = code_for(&f, &client_id, now() + 60);
    let (_, tokens) = token(
        &f,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let other = register(&f).await;
    let (_, body) = token(
        &f,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &other),
        ],
    )
    .await;
    assert_eq!(
        body["error_description"],
        "the refresh token was issued to another client"
    );
}

#[tokio::test]
async fn consent_and_callback_need_the_browser_that_started() {
    let f = facade();
    let form_body = form(&[("nonce", "forged"), ("decision", "approve")]);
    let (status, headers, body) = call(&f, Endpoint::Consent, Method::POST, None, &form_body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get(header::LOCATION).is_none());
    assert!(body.contains("another browser"), "{body}");
    let (status, _, _) = call(
        &f,
        Endpoint::Callback,
        Method::GET,
        Some("code=x&state=forged"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
