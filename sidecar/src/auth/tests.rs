//! End-to-end tests of [`Authenticator`]: real keys (testdata/), tokens signed with them, and
//! a JWKS served by a tiny HTTP server on 127.0.0.1.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const AUDIENCE: &str = "https://mcp.example.com/weather/mcp";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// The test keys, parsed once.
pub(crate) struct Keys {
    rsa_a: EncodingKey,
    rsa_b: EncodingKey,
    ec: EncodingKey,
    ed: EncodingKey,
}

impl Keys {
    pub(crate) fn get() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| Keys {
            rsa_a: EncodingKey::from_rsa_pem(include_bytes!("testdata/rsa_a.pem")).unwrap(),
            rsa_b: EncodingKey::from_rsa_pem(include_bytes!("testdata/rsa_b.pem")).unwrap(),
            ec: EncodingKey::from_ec_pem(include_bytes!("testdata/ec_p256.pem")).unwrap(),
            ed: EncodingKey::from_ed_pem(include_bytes!("testdata/ed25519.pem")).unwrap(),
        })
    }

    /// The public JWK of a signing key, without `alg` (so its key type decides).
    fn public(key: &EncodingKey, alg: Algorithm) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_algorithm = None;
        jwk
    }

    pub(crate) fn rsa_a_jwk(&self) -> Jwk {
        Self::public(&self.rsa_a, Algorithm::RS256)
    }

    pub(crate) fn ec_jwk(&self) -> Jwk {
        Self::public(&self.ec, Algorithm::ES256)
    }
}

/// A JWK entry with a `kid`.
fn entry(jwk: Jwk, kid: &str) -> Value {
    let mut value = serde_json::to_value(jwk).unwrap();
    value["kid"] = json!(kid);
    value
}

fn rsa_a(kid: &str) -> Value {
    entry(Keys::get().rsa_a_jwk(), kid)
}

fn rsa_b(kid: &str) -> Value {
    entry(Keys::public(&Keys::get().rsa_b, Algorithm::RS256), kid)
}

fn ec(kid: &str) -> Value {
    entry(Keys::get().ec_jwk(), kid)
}

fn ed(kid: &str) -> Value {
    entry(Keys::public(&Keys::get().ed, Algorithm::EdDSA), kid)
}

/// What the loopback IdP serves, and what it was asked.
struct IdpState {
    jwks: Value,
    /// The `issuer` the discovery document names (default: the real one).
    discovery_issuer: Option<String>,
    /// Overrides the JWKS body.
    jwks_body: Option<Vec<u8>>,
    down: bool,
    discovery_hits: usize,
    jwks_hits: usize,
}

struct Idp {
    base: String,
    state: Arc<Mutex<IdpState>>,
}

impl Idp {
    /// An IdP on 127.0.0.1 serving discovery at `/.well-known/openid-configuration` and
    /// `keys` at `/keys`. One request per connection (`Connection: close`).
    async fn start(keys: Vec<Value>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(IdpState {
            jwks: json!({ "keys": keys }),
            discovery_issuer: None,
            jwks_body: None,
            down: false,
            discovery_hits: 0,
            jwks_hits: 0,
        }));
        let (server_base, server_state) = (base.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (base, state) = (server_base.clone(), server_state.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request);
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let (status, body) = Idp::answer(&base, &state, &path);
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Idp { base, state }
    }

    fn answer(base: &str, state: &Mutex<IdpState>, path: &str) -> (&'static str, Vec<u8>) {
        let mut state = state.lock().unwrap();
        match path {
            "/.well-known/openid-configuration" => {
                state.discovery_hits += 1;
                if state.down {
                    return ("503 Service Unavailable", b"{}".to_vec());
                }
                let issuer = state
                    .discovery_issuer
                    .clone()
                    .unwrap_or_else(|| base.to_string());
                let doc = json!({ "issuer": issuer, "jwks_uri": format!("{base}/keys") });
                ("200 OK", doc.to_string().into_bytes())
            }
            "/keys" => {
                state.jwks_hits += 1;
                if state.down {
                    return ("503 Service Unavailable", b"{}".to_vec());
                }
                let body = state.jwks_body.clone();
                (
                    "200 OK",
                    body.unwrap_or_else(|| state.jwks.to_string().into_bytes()),
                )
            }
            _ => ("404 Not Found", b"{}".to_vec()),
        }
    }

    fn set_keys(&self, keys: Vec<Value>) {
        self.state.lock().unwrap().jwks = json!({ "keys": keys });
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    fn jwks_hits(&self) -> usize {
        self.state.lock().unwrap().jwks_hits
    }

    fn discovery_hits(&self) -> usize {
        self.state.lock().unwrap().discovery_hits
    }

    fn config(&self) -> OidcConfig {
        OidcConfig {
            issuer: self.base.clone(),
            audiences: vec![AUDIENCE.into()],
            required_scopes: vec!["mcp.tools".into()],
            allowed_tenants: vec![],
            jwks_uri: None,
            leeway_seconds: 60,
        }
    }

    fn authenticator(&self) -> Authenticator {
        with_config(self.config())
    }

    /// Claims that pass every check.
    fn claims(&self) -> Value {
        let now = unix_now();
        json!({
            "iss": self.base,
            "aud": AUDIENCE,
            "sub": "user-1",
            "azp": "client-1",
            "iat": now,
            "exp": now + 300,
            "scp": "mcp.tools offline_access",
        })
    }

    /// Valid claims with some members replaced (`null` removes a member).
    fn claims_with(&self, patch: Value) -> Value {
        let mut claims = self.claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }
}

fn with_config(config: OidcConfig) -> Authenticator {
    Authenticator::new(config, 16 * 1024, Arc::new(Metrics::new()))
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// An RS256 token signed with key A under kid "a".
fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("a"), &Keys::get().rsa_a, claims)
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

async fn check(auth: &Authenticator, token: &str) -> Result<Principal, AuthError> {
    auth.authenticate(Some(&bearer(token))).await
}

fn refused(reason: &'static str) -> Result<Principal, AuthError> {
    Err(AuthError::InvalidToken(reason))
}

fn signature_checks(auth: &Authenticator) -> u64 {
    auth.signature_checks.load(Ordering::Relaxed)
}

// ---- the happy paths -------------------------------------------------------------------

#[tokio::test]
async fn discovery_then_a_valid_token_is_accepted() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let mut auth = idp.authenticator();
    auth.refresh_interval = Duration::from_millis(50);
    let auth = Arc::new(auth);
    assert!(!auth.ready());
    let task = auth.start();
    for _ in 0..100 {
        if auth.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(auth.ready());
    assert_eq!(idp.discovery_hits(), 1);

    let claims = idp.claims();
    let principal = check(&auth, &rs256(&claims)).await.unwrap();
    assert_eq!(
        principal,
        Principal {
            subject: "user-1".into(),
            client_id: Some("client-1".into()),
            tenant: None,
            oid: None,
            name: None,
            scopes: vec!["mcp.tools".into(), "offline_access".into()],
            roles: Vec::new(),
            groups: Vec::new(),
            groups_overage: false,
            expires_at: claims["exp"].as_u64().unwrap(),
        }
    );

    // The refresh task ends (at its next wake-up) once the authenticator is dropped.
    drop(auth);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn every_key_type_verifies_with_its_algorithms() {
    let idp = Idp::start(vec![rsa_a("a"), ec("e"), ed("d")]).await;
    let auth = idp.authenticator();
    let claims = idp.claims();
    let keys = Keys::get();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS512,
    ] {
        assert!(
            check(&auth, &sign(alg, Some("a"), &keys.rsa_a, &claims))
                .await
                .is_ok(),
            "{alg:?}"
        );
    }
    assert!(
        check(&auth, &sign(Algorithm::ES256, Some("e"), &keys.ec, &claims))
            .await
            .is_ok()
    );
    assert!(
        check(&auth, &sign(Algorithm::EdDSA, Some("d"), &keys.ed, &claims))
            .await
            .is_ok()
    );
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn entra_tokens_identify_by_tenant_and_object_id() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = with_config(OidcConfig {
        allowed_tenants: vec![TENANT.to_uppercase()],
        ..idp.config()
    });
    let delegated =
        idp.claims_with(json!({"tid": TENANT, "oid": "o-1", "azp": null, "appid": "app-1"}));
    let principal = check(&auth, &rs256(&delegated)).await.unwrap();
    assert_eq!(principal.subject, format!("{TENANT}/o-1"));
    assert_eq!(principal.tenant.as_deref(), Some(TENANT));
    assert_eq!(principal.client_id.as_deref(), Some("app-1"));

    let app_only =
        idp.claims_with(json!({"tid": TENANT, "oid": "sp-1", "scp": null, "roles": ["mcp.tools"]}));
    let principal = check(&auth, &rs256(&app_only)).await.unwrap();
    assert_eq!(principal.scopes, ["mcp.tools"]);
}

// ---- hostile tokens --------------------------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    for header in [
        json!({"alg": "none", "kid": "a"}),
        json!({"alg": "none"}),
        json!({"alg": "NONE"}),
    ] {
        let unsigned = format!("{}.{}.", b64(header), b64(idp.claims()));
        assert_eq!(check(&auth, &unsigned).await, refused("disallowed_alg"));
        // Even with a (meaningless) signature part.
        assert_eq!(
            check(&auth, &format!("{unsigned}c2ln")).await,
            refused("disallowed_alg")
        );
    }
    assert_eq!(signature_checks(&auth), 0);
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let public_pem = include_bytes!("testdata/rsa_a.pub.pem");
    let n = serde_json::to_value(Keys::get().rsa_a_jwk()).unwrap()["n"]
        .as_str()
        .unwrap()
        .to_string();
    for secret in [&public_pem[..], n.as_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(
                alg,
                Some("a"),
                &EncodingKey::from_secret(secret),
                &idp.claims(),
            );
            assert_eq!(
                check(&auth, &token).await,
                refused("disallowed_alg"),
                "{alg:?}"
            );
        }
    }
    assert_eq!(signature_checks(&auth), 0);
}

#[tokio::test]
async fn the_algorithm_must_fit_the_key() {
    let mut stated = rsa_b("b");
    stated["alg"] = json!("PS256");
    let idp = Idp::start(vec![rsa_a("a"), ec("e"), stated]).await;
    let auth = idp.authenticator();
    let keys = Keys::get();
    let claims = idp.claims();
    // An EC signature presented under the RSA key's kid, and the reverse.
    let ec_as_rsa = sign(Algorithm::ES256, Some("a"), &keys.ec, &claims);
    assert_eq!(check(&auth, &ec_as_rsa).await, refused("disallowed_alg"));
    let rsa_as_ec = sign(Algorithm::RS256, Some("e"), &keys.rsa_a, &claims);
    assert_eq!(check(&auth, &rsa_as_ec).await, refused("disallowed_alg"));
    // The JWK says PS256; RS256 with the same key is refused.
    let rs_for_ps = sign(Algorithm::RS256, Some("b"), &keys.rsa_b, &claims);
    assert_eq!(check(&auth, &rs_for_ps).await, refused("disallowed_alg"));
    assert!(
        check(
            &auth,
            &sign(Algorithm::PS256, Some("b"), &keys.rsa_b, &claims)
        )
        .await
        .is_ok()
    );
    assert_eq!(signature_checks(&auth), 1);
}

#[tokio::test]
async fn wrong_or_missing_issuer() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let other = idp.claims_with(json!({"iss": "https://evil.example.com"}));
    assert_eq!(check(&auth, &rs256(&other)).await, refused("wrong_issuer"));
    let slash = idp.claims_with(json!({"iss": format!("{}/", idp.base)}));
    assert_eq!(check(&auth, &rs256(&slash)).await, refused("wrong_issuer"));
    let missing = idp.claims_with(json!({"iss": null}));
    assert_eq!(
        check(&auth, &rs256(&missing)).await,
        refused("wrong_issuer")
    );
}

#[tokio::test]
async fn audience_must_be_this_resource_with_or_without_a_slash() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let wrong = idp.claims_with(json!({"aud": "https://mcp.example.com/other/mcp"}));
    assert_eq!(
        check(&auth, &rs256(&wrong)).await,
        refused("wrong_audience")
    );
    let missing = idp.claims_with(json!({"aud": null}));
    assert_eq!(
        check(&auth, &rs256(&missing)).await,
        refused("wrong_audience")
    );
    let slash = idp.claims_with(json!({"aud": format!("{AUDIENCE}/")}));
    assert!(check(&auth, &rs256(&slash)).await.is_ok());
    let array = idp.claims_with(json!({"aud": ["api://other", AUDIENCE]}));
    assert!(check(&auth, &rs256(&array)).await.is_ok());
    // A configured audience with a trailing slash accepts a token without one.
    let auth = with_config(OidcConfig {
        audiences: vec![format!("{AUDIENCE}/")],
        ..idp.config()
    });
    assert!(check(&auth, &rs256(&idp.claims())).await.is_ok());
}

#[tokio::test]
async fn expiry_and_not_before_with_leeway() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator(); // leeway 60 s
    let now = unix_now();
    let expired = idp.claims_with(json!({"exp": now - 120}));
    assert_eq!(check(&auth, &rs256(&expired)).await, refused("expired"));
    let early = idp.claims_with(json!({"nbf": now + 120}));
    assert_eq!(check(&auth, &rs256(&early)).await, refused("not_yet_valid"));
    // Within the leeway.
    assert!(
        check(&auth, &rs256(&idp.claims_with(json!({"exp": now - 30}))))
            .await
            .is_ok()
    );
    assert!(
        check(&auth, &rs256(&idp.claims_with(json!({"nbf": now + 30}))))
            .await
            .is_ok()
    );
    // Without it.
    let strict = with_config(OidcConfig {
        leeway_seconds: 0,
        ..idp.config()
    });
    assert_eq!(
        check(&strict, &rs256(&idp.claims_with(json!({"exp": now - 30})))).await,
        refused("expired")
    );
    assert_eq!(
        check(&strict, &rs256(&idp.claims_with(json!({"nbf": now + 30})))).await,
        refused("not_yet_valid")
    );
    // `exp` is required.
    let forever = idp.claims_with(json!({"exp": null}));
    assert_eq!(
        check(&auth, &rs256(&forever)).await,
        Err(AuthError::Malformed)
    );
}

#[tokio::test]
async fn tampered_or_foreign_signatures_are_refused() {
    let idp = Idp::start(vec![rsa_a("a"), ec("e")]).await;
    let auth = idp.authenticator();
    let token = rs256(&idp.claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let raise = idp.claims_with(json!({"sub": "admin", "scp": "mcp.tools mcp.admin"}));
    parts[1] = URL_SAFE_NO_PAD.encode(raise.to_string());
    assert_eq!(
        check(&auth, &parts.join(".")).await,
        refused("bad_signature")
    );

    // Signed by another RSA key under kid "a".
    let foreign = sign(
        Algorithm::RS256,
        Some("a"),
        &Keys::get().rsa_b,
        &idp.claims(),
    );
    assert_eq!(check(&auth, &foreign).await, refused("bad_signature"));

    // A valid signature moved onto another token.
    let other = rs256(&idp.claims_with(json!({"sub": "user-2"})));
    let stolen = format!(
        "{}.{}",
        parts[..2].join("."),
        other.rsplit('.').next().unwrap()
    );
    assert_eq!(check(&auth, &stolen).await, refused("bad_signature"));
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    assert!(check(&auth, &rs256(&idp.claims())).await.is_ok());
    let token = sign(
        Algorithm::RS256,
        Some("nope"),
        &Keys::get().rsa_a,
        &idp.claims(),
    );
    // The first fetch just happened, so the rate limit forbids another.
    assert_eq!(check(&auth, &token).await, refused("unknown_key"));
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn scopes_are_required_from_scp_scope_or_roles() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = with_config(OidcConfig {
        required_scopes: vec!["mcp.tools".into(), "mcp.read".into()],
        ..idp.config()
    });
    let short = idp.claims_with(json!({"scp": "mcp.tools"}));
    let error = check(&auth, &rs256(&short)).await.unwrap_err();
    assert_eq!(error, AuthError::InsufficientScope);
    assert_eq!(
        (error.status(), error.reason()),
        (403, "insufficient_scope")
    );
    let none = idp.claims_with(json!({"scp": null}));
    assert_eq!(
        check(&auth, &rs256(&none)).await,
        Err(AuthError::InsufficientScope)
    );

    for granted in [
        json!({"scp": "mcp.read mcp.tools"}),
        json!({"scp": null, "scope": "mcp.tools mcp.read"}),
        json!({"scp": null, "roles": ["mcp.read", "mcp.tools"]}),
        json!({"scp": "mcp.tools", "scope": null, "roles": ["mcp.read"]}),
        json!({"scp": "mcp.read", "scope": "mcp.tools"}),
    ] {
        let principal = check(&auth, &rs256(&idp.claims_with(granted.clone()))).await;
        assert!(principal.is_ok(), "{granted}");
    }
}

#[tokio::test]
async fn entra_short_scope_names_meet_full_scope_uris() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = with_config(OidcConfig {
        audiences: vec!["11111111-2222-3333-4444-555555555555".into()],
        required_scopes: vec!["api://11111111-2222-3333-4444-555555555555/mcp.tools".into()],
        ..idp.config()
    });
    let claims =
        idp.claims_with(json!({"aud": "11111111-2222-3333-4444-555555555555", "scp": "mcp.tools"}));
    assert!(check(&auth, &rs256(&claims)).await.is_ok());
    let other =
        idp.claims_with(json!({"aud": "11111111-2222-3333-4444-555555555555", "scp": "mcp.read"}));
    assert_eq!(
        check(&auth, &rs256(&other)).await,
        Err(AuthError::InsufficientScope)
    );
}

#[tokio::test]
async fn foreign_tenant_is_refused() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = with_config(OidcConfig {
        allowed_tenants: vec![TENANT.into()],
        ..idp.config()
    });
    let foreign =
        idp.claims_with(json!({"tid": "00000000-0000-0000-0000-000000000001", "oid": "o"}));
    let error = check(&auth, &rs256(&foreign)).await.unwrap_err();
    assert_eq!((error.reason(), error.status()), ("wrong_tenant", 401));
    let none = idp.claims();
    assert_eq!(check(&auth, &rs256(&none)).await, refused("wrong_tenant"));
    let upper = idp.claims_with(json!({"tid": TENANT.to_uppercase(), "oid": "o"}));
    assert!(check(&auth, &rs256(&upper)).await.is_ok());
}

#[tokio::test]
async fn garbage_is_malformed() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let valid = rs256(&idp.claims());
    let (head, rest) = valid.split_once('.').unwrap();
    let not_json = URL_SAFE_NO_PAD.encode("not json");
    for token in [
        "garbage".to_string(),
        "a.b".to_string(),
        "....".to_string(),
        format!("{valid}.extra.parts"),
        format!("{not_json}.{rest}"),
        format!("{head}.!!!.sig"),
    ] {
        assert_eq!(
            check(&auth, &token).await,
            Err(AuthError::Malformed),
            "{token}"
        );
    }
    // Valid base64 but not the claims of a JWT: the signature check fails first.
    let bad_payload = format!("{head}.{not_json}.{}", valid.rsplit('.').next().unwrap());
    assert_eq!(check(&auth, &bad_payload).await, refused("bad_signature"));
    let header = HeaderValue::from_static("Bearer a.b.c extra");
    assert_eq!(
        auth.authenticate(Some(&header)).await,
        Err(AuthError::Malformed)
    );
}

/// RFC 7519 §7.2: a signed payload that is not a completely valid JSON object is malformed,
/// even where the claims this gateway reads are all there and valid.
#[tokio::test]
async fn a_signed_payload_must_be_a_valid_json_object() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let valid = idp.claims().to_string();
    let inner = valid.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"a"}"#);
    let signed = |payload: &[u8]| {
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
        let key = &Keys::get().rsa_a;
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, Algorithm::RS256);
        format!("{input}.{}", signature.unwrap())
    };
    assert!(check(&auth, &signed(valid.as_bytes())).await.is_ok());
    for payload in [
        format!(r#"{{{inner}, "x": "\ud800"}}"#).into_bytes(),
        [format!(r#"{{{inner}, "x": ""#).as_bytes(), b"\xff\"}"].concat(),
        format!(r#"{{{inner}, "x": 1e400}}"#).into_bytes(),
        format!("[{valid}]").into_bytes(),
    ] {
        assert_eq!(
            check(&auth, &signed(&payload)).await,
            Err(AuthError::Malformed),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
}

#[tokio::test]
async fn oversized_tokens_are_refused_unparsed() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let token = rs256(&idp.claims());
    let auth = Authenticator::new(idp.config(), token.len() - 1, Arc::new(Metrics::new()));
    let error = check(&auth, &token).await.unwrap_err();
    assert_eq!((error.reason(), error.status()), ("oversized", 401));
    let huge = "x".repeat(100_000);
    assert_eq!(check(&auth, &huge).await, Err(AuthError::Oversized));
    assert_eq!(idp.jwks_hits(), 0);
    let auth = Authenticator::new(idp.config(), token.len(), Arc::new(Metrics::new()));
    assert!(check(&auth, &token).await.is_ok());
}

#[tokio::test]
async fn wrong_scheme_or_no_header() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let token = rs256(&idp.claims());
    for scheme in ["Basic", "DPoP", "Token", "Bearer:"] {
        let header = HeaderValue::from_str(&format!("{scheme} {token}")).unwrap();
        let error = auth.authenticate(Some(&header)).await.unwrap_err();
        assert_eq!(
            (error.reason(), error.status()),
            ("wrong_scheme", 401),
            "{scheme}"
        );
    }
    let lower = HeaderValue::from_str(&format!("bearer {token}")).unwrap();
    assert!(auth.authenticate(Some(&lower)).await.is_ok());
    let error = auth.authenticate(None).await.unwrap_err();
    assert_eq!((error.reason(), error.status()), ("missing", 401));
}

// ---- keys: discovery, refetch, outages -------------------------------------------------

#[tokio::test]
async fn unknown_kid_triggers_a_refetch_that_finds_a_rotated_key() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let mut auth = idp.authenticator();
    auth.refetch_interval = Duration::ZERO;
    assert!(check(&auth, &rs256(&idp.claims())).await.is_ok());
    assert_eq!(idp.jwks_hits(), 1);

    idp.set_keys(vec![rsa_a("a"), rsa_b("b")]);
    let rotated = sign(
        Algorithm::RS256,
        Some("b"),
        &Keys::get().rsa_b,
        &idp.claims(),
    );
    assert!(check(&auth, &rotated).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2);
    // The discovered jwks_uri is remembered.
    assert_eq!(idp.discovery_hits(), 1);
}

#[tokio::test]
async fn refetches_are_rate_limited() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let mut auth = idp.authenticator();
    auth.refetch_interval = Duration::from_millis(500);
    // Signed up front: RSA signing is slow in debug builds and the interval is short.
    let (valid, late) = (
        rs256(&idp.claims()),
        sign(
            Algorithm::RS256,
            Some("late"),
            &Keys::get().rsa_a,
            &idp.claims(),
        ),
    );
    let unknown: Vec<String> = (0..20)
        .map(|i| {
            sign(
                Algorithm::RS256,
                Some(&format!("k{i}")),
                &Keys::get().rsa_a,
                &idp.claims(),
            )
        })
        .collect();
    assert!(check(&auth, &valid).await.is_ok());
    for token in &unknown {
        assert_eq!(check(&auth, token).await, refused("unknown_key"));
    }
    assert_eq!(idp.jwks_hits(), 1);
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(check(&auth, &late).await, refused("unknown_key"));
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn an_unreachable_idp_leaves_the_cached_keys_in_use() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let mut auth = idp.authenticator();
    auth.refetch_interval = Duration::ZERO;
    assert!(auth.refresh().await);
    idp.set_down(true);
    assert!(!auth.refresh().await);
    assert!(auth.ready());
    assert!(check(&auth, &rs256(&idp.claims())).await.is_ok());
    // An unknown kid still tries the IdP, fails, and is refused as unknown.
    let token = sign(
        Algorithm::RS256,
        Some("b"),
        &Keys::get().rsa_b,
        &idp.claims(),
    );
    assert_eq!(check(&auth, &token).await, refused("unknown_key"));
    assert!(
        check(&auth, &rs256(&idp.claims_with(json!({"sub": "user-2"}))))
            .await
            .is_ok()
    );
    let metrics = auth.metrics.encode();
    assert!(
        metrics.contains(r#"mcp_gateway_jwks_refreshes_total{outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mcp_gateway_jwks_refreshes_total{outcome="error"} 2"#),
        "{metrics}"
    );

    // A JWKS without usable keys does not replace the good one either.
    idp.set_down(false);
    idp.set_keys(vec![json!({"kty": "oct", "kid": "a", "k": "c2VjcmV0"})]);
    assert!(!auth.refresh().await);
    assert!(
        check(&auth, &rs256(&idp.claims_with(json!({"sub": "user-3"}))))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn without_keys_tokens_get_503() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    idp.set_down(true);
    let auth = idp.authenticator();
    let error = check(&auth, &rs256(&idp.claims())).await.unwrap_err();
    assert_eq!((error.reason(), error.status()), ("jwks_unavailable", 503));
    assert!(!auth.ready());
    // Requests cannot hammer the IdP: the next one within the interval does not fetch.
    let hits = idp.discovery_hits();
    assert_eq!(
        check(&auth, &rs256(&idp.claims())).await,
        Err(AuthError::JwksUnavailable)
    );
    assert_eq!(idp.discovery_hits(), hits);
}

#[tokio::test]
async fn the_refresh_task_retries_until_the_idp_answers() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    idp.set_down(true);
    let auth = Arc::new(idp.authenticator());
    let task = auth.start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!auth.ready());
    idp.set_down(false);
    for _ in 0..150 {
        if auth.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(auth.ready());
    task.abort();
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    idp.state.lock().unwrap().discovery_issuer = Some("https://evil.example.com".into());
    let auth = idp.authenticator();
    assert!(!auth.refresh().await);
    assert!(!auth.ready());
    assert_eq!(idp.jwks_hits(), 0);
    assert_eq!(
        check(&auth, &rs256(&idp.claims())).await,
        Err(AuthError::JwksUnavailable)
    );
}

#[tokio::test]
async fn a_configured_jwks_uri_skips_discovery() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let jwks_uri = Some(url::Url::parse(&format!("{}/keys", idp.base)).unwrap());
    let auth = with_config(OidcConfig {
        jwks_uri,
        ..idp.config()
    });
    assert!(check(&auth, &rs256(&idp.claims())).await.is_ok());
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (0, 1));
}

#[tokio::test]
async fn oversized_or_invalid_jwks_is_refused() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let padding = " ".repeat(crate::discovery::MAX_DOCUMENT_BYTES);
    let big = format!("{{\"keys\": [{}]}}{padding}", rsa_a("a"));
    idp.state.lock().unwrap().jwks_body = Some(big.into_bytes());
    assert!(!auth.refresh().await);
    idp.state.lock().unwrap().jwks_body = Some(b"<html>".to_vec());
    assert!(!auth.refresh().await);
    assert!(!auth.ready());
    idp.state.lock().unwrap().jwks_body = None;
    assert!(auth.refresh().await);
}

#[tokio::test]
async fn a_token_without_kid_needs_an_unambiguous_key() {
    let idp = Idp::start(vec![rsa_a("a"), ec("e")]).await;
    let auth = idp.authenticator();
    let no_kid = sign(Algorithm::RS256, None, &Keys::get().rsa_a, &idp.claims());
    assert!(check(&auth, &no_kid).await.is_ok());

    let idp = Idp::start(vec![rsa_a("a"), rsa_b("b")]).await;
    let auth = idp.authenticator();
    let no_kid = sign(Algorithm::RS256, None, &Keys::get().rsa_a, &idp.claims());
    assert_eq!(check(&auth, &no_kid).await, refused("unknown_key"));
}

// ---- the verified-token cache ----------------------------------------------------------

#[tokio::test]
async fn a_verified_token_is_not_verified_again() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let token = rs256(&idp.claims());
    let first = check(&auth, &token).await.unwrap();
    for _ in 0..5 {
        assert_eq!(check(&auth, &token).await.unwrap(), first);
    }
    assert_eq!(signature_checks(&auth), 1);
    // Served from the cache even while the IdP is down.
    idp.set_down(true);
    assert!(!auth.refresh().await);
    assert_eq!(check(&auth, &token).await.unwrap(), first);
    assert_eq!(signature_checks(&auth), 1);
    // Refusals are not cached.
    let short = rs256(&idp.claims_with(json!({"scp": "other"})));
    assert_eq!(
        check(&auth, &short).await,
        Err(AuthError::InsufficientScope)
    );
    assert_eq!(
        check(&auth, &short).await,
        Err(AuthError::InsufficientScope)
    );
    assert_eq!(signature_checks(&auth), 3);
}

#[tokio::test]
async fn a_cached_token_is_not_served_past_exp() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = with_config(OidcConfig {
        leeway_seconds: 0,
        ..idp.config()
    });
    let exp = unix_now() + 2;
    let token = rs256(&idp.claims_with(json!({ "exp": exp })));
    assert!(check(&auth, &token).await.is_ok());
    assert!(check(&auth, &token).await.is_ok());
    assert_eq!(signature_checks(&auth), 1);
    while unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(check(&auth, &token).await, refused("expired"));
    assert_eq!(signature_checks(&auth), 2);
}

#[tokio::test]
async fn a_token_past_exp_but_within_leeway_is_never_cached() {
    let idp = Idp::start(vec![rsa_a("a")]).await;
    let auth = idp.authenticator();
    let token = rs256(&idp.claims_with(json!({"exp": unix_now() - 5})));
    assert!(check(&auth, &token).await.is_ok());
    assert!(check(&auth, &token).await.is_ok());
    assert_eq!(signature_checks(&auth), 2);
}

#[tokio::test]
async fn a_withdrawn_key_empties_the_cache() {
    let idp = Idp::start(vec![rsa_a("a"), rsa_b("b")]).await;
    let auth = idp.authenticator();
    let token = rs256(&idp.claims());
    assert!(check(&auth, &token).await.is_ok());
    idp.set_keys(vec![rsa_b("b")]);
    assert!(auth.refresh().await);
    assert_eq!(check(&auth, &token).await, refused("unknown_key"));
}

// ---- the static verifier ---------------------------------------------------------------

#[tokio::test]
async fn the_static_verifier_agrees_with_the_authenticator() {
    let keys = vec![rsa_a("a"), ec("e"), ed("d")];
    let idp = Idp::start(keys.clone()).await;
    let auth = idp.authenticator();
    let jwks = json!({ "keys": keys }).to_string();
    let fixed = StaticVerifier::new(&idp.config(), jwks.as_bytes(), 16 * 1024).unwrap();
    assert_eq!(fixed.key_count(), 3);
    let k = Keys::get();
    let claims = idp.claims();
    let tokens = [
        rs256(&claims),
        sign(Algorithm::ES256, Some("e"), &k.ec, &claims),
        sign(Algorithm::EdDSA, Some("d"), &k.ed, &claims),
        sign(Algorithm::RS256, Some("b"), &k.rsa_b, &claims),
        sign(Algorithm::ES256, Some("a"), &k.ec, &claims),
        sign(Algorithm::RS256, Some("a"), &k.rsa_b, &claims),
        rs256(&idp.claims_with(json!({"exp": unix_now() - 600}))),
        rs256(&idp.claims_with(json!({"aud": "https://other.example"}))),
        rs256(&idp.claims_with(json!({"scp": "offline_access"}))),
        "not-a-token".to_string(),
    ];
    for token in &tokens {
        let header = bearer(token);
        assert_eq!(
            fixed.verify(Some(&header)),
            auth.authenticate(Some(&header)).await,
            "{token}"
        );
    }
    assert!(fixed.verify(Some(&bearer(&tokens[0]))).is_ok());
    assert_eq!(fixed.verify(None), Err(AuthError::Missing));
    assert!(StaticVerifier::new(&idp.config(), b"{\"keys\":[]}", 1024).is_err());
}

#[tokio::test]
async fn a_short_ed25519_key_is_skipped_not_a_panic() {
    // Found by the `jwks` fuzz target: jsonwebtoken's EdDSA verifier slices the key to 32
    // bytes, so a shorter `x` panicked on the request path of any EdDSA token naming it.
    let idp = Idp::start(vec![]).await;
    let short =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": "Wg8UPP0f5GDdfXdUI-JBpwct"});
    let jwks = json!({ "keys": [rsa_a("a"), short] }).to_string();
    let fixed = StaticVerifier::new(&idp.config(), jwks.as_bytes(), 16 * 1024).unwrap();
    assert_eq!(fixed.key_count(), 1);
    let token = sign(Algorithm::EdDSA, Some("d"), &Keys::get().ed, &idp.claims());
    assert_eq!(fixed.verify(Some(&bearer(&token))), refused("unknown_key"));
}
