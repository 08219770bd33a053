//! The authorization-server facade (`auth.mode: AuthorizationServer`): the gateway is the
//! OAuth 2.1 authorization server MCP clients expect (RFC 8414 metadata with S256, Dynamic
//! Client Registration, Client ID Metadata Documents, `iss` in responses), and users sign in
//! at an upstream IdP that offers none of that, such as Entra ID.
//!
//! No database: registrations, pending authorizations, codes and refresh tokens are sealed
//! into what the client or browser carries ([`grants`]), and access tokens are JWTs signed
//! with the facade key, so any replica serves any request. What needs memory — that a code
//! or refresh token is used once — is remembered per replica only; docs/entra.md says what
//! that allows.
//!
//! - `grants`: the sealed state; `pkce`; `client`: registration and redirect URI rules;
//! - `cimd`: fetching metadata documents with SSRF guards; `idp`: the upstream IdP;
//! - `keys`: the facade key file; `pages`: the consent and error pages.

mod cimd;
pub mod client;
pub mod grants;
mod idp;
pub mod keys;
mod pages;
pub mod pkce;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use self::client::Client;
use self::grants::{Code, Kind, Refresh, Registration, Transaction};
use self::keys::FacadeKeys;
use crate::body::{self, Body};
use crate::config::{Config, FacadeConfig};
use crate::metrics::{Metrics, OauthLabels};

/// The facade's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Metadata,
    Jwks,
    Register,
    Authorize,
    Consent,
    Callback,
    Token,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Metadata => "oauth_metadata",
            Endpoint::Jwks => "oauth_jwks",
            Endpoint::Register => "oauth_register",
            Endpoint::Authorize => "oauth_authorize",
            Endpoint::Consent => "oauth_consent",
            Endpoint::Callback => "oauth_callback",
            Endpoint::Token => "oauth_token",
        }
    }

    /// The endpoint a path names, if this gateway is an authorization server.
    pub fn route(config: &Config, path: &str) -> Option<Self> {
        let prefix = config.prefix();
        for well_known in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            if path.strip_prefix(well_known) == Some(prefix) {
                return Some(Endpoint::Metadata);
            }
        }
        let rest = path.strip_prefix(prefix)?;
        Some(match rest {
            "/.well-known/openid-configuration" => Endpoint::Metadata,
            "/oauth/jwks" => Endpoint::Jwks,
            "/oauth/register" => Endpoint::Register,
            "/oauth/authorize" => Endpoint::Authorize,
            "/oauth/consent" => Endpoint::Consent,
            "/oauth/callback" => Endpoint::Callback,
            "/oauth/token" => Endpoint::Token,
            _ => return None,
        })
    }
}

/// A pending sign-in lives this long in the browser.
const TRANSACTION_TTL: u64 = 600;
/// Authorization codes are short-lived.
const CODE_TTL: u64 = 60;
/// Longest `state` a client may send.
const MAX_STATE_LEN: usize = 1024;
/// Cookie carrying one pending sign-in, suffixed by its nonce (several may be in flight).
const COOKIE_PREFIX: &str = "mcpgw-tx-";
/// Used codes and refresh tokens remembered per replica.
const USED_CAPACITY: u64 = 100_000;

pub struct Facade {
    issuer: String,
    resource: String,
    scopes: Vec<String>,
    access_ttl: u64,
    refresh_ttl: u64,
    keys: FacadeKeys,
    idp: idp::Idp,
    documents: Option<cimd::MetadataFetcher>,
    used_codes: moka::sync::Cache<String, ()>,
    used_refresh_tokens: moka::sync::Cache<String, ()>,
    revoked_families: moka::sync::Cache<String, ()>,
    cookie_path: String,
    secure_cookies: bool,
    metrics: Arc<Metrics>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Form or query parameters; `None` if one is repeated (RFC 6749 §3.1).
fn params(text: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// How sealed grants name a client: a metadata document URL as is; a registered client (whose
/// `client_id` is a long sealed registration) by a digest of it, which keeps the browser's
/// cookie and the codes small.
fn client_key(client_id: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    if client_id.starts_with("https://") {
        return client_id.to_string();
    }
    let digest = sha2::Sha256::digest(client_id.as_bytes());
    format!(
        "dcr:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    )
}

/// The resource a client names, compared as the SDKs send it (with or without a slash).
fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(value.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Public endpoints without cookies: browser-based clients may call them.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn html(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn error_page(message: &str) -> Response<Body> {
    html(StatusCode::BAD_REQUEST, pages::error(message))
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(header::LOCATION, v);
        }
        Err(_) => return error_page("the redirect URI cannot be used"),
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

impl Facade {
    pub fn new(
        config: &Config,
        facade: &FacadeConfig,
        keys: FacadeKeys,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let documents = if facade.client_metadata_documents.enabled {
            Some(cimd::MetadataFetcher::new(
                &facade.client_metadata_documents,
            )?)
        } else {
            None
        };
        let used = |ttl: u64| {
            moka::sync::Cache::builder()
                .max_capacity(USED_CAPACITY)
                .time_to_live(Duration::from_secs(ttl))
                .build()
        };
        Ok(Self {
            issuer: config.issuer_url(),
            resource: config.resource_url(),
            scopes: facade.scopes.clone(),
            access_ttl: facade.access_token_ttl_seconds,
            refresh_ttl: facade.refresh_token_ttl_seconds,
            idp: idp::Idp::new(
                facade.idp.clone(),
                facade.allowed_tenants.clone(),
                metrics.clone(),
            ),
            keys,
            documents,
            used_codes: used(CODE_TTL * 2),
            used_refresh_tokens: used(facade.refresh_token_ttl_seconds),
            revoked_families: used(facade.refresh_token_ttl_seconds),
            cookie_path: format!("{}/oauth", config.prefix()),
            secure_cookies: config.public_base_url.scheme() == "https",
            metrics,
        })
    }

    /// Starts fetching the IdP's signing keys.
    pub fn start(&self) {
        self.idp.start();
    }

    /// The issuer clients see and the facade's tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS the resource-server side verifies the facade's access tokens with.
    pub fn jwks(&self) -> &str {
        self.keys.jwks()
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/oauth/{endpoint}", self.issuer)
    }

    fn count(&self, endpoint: Endpoint, outcome: &'static str) {
        self.metrics
            .oauth
            .get_or_create(&OauthLabels {
                endpoint: endpoint.name(),
                outcome,
            })
            .inc();
    }

    /// Serves one facade request; `body` is already read (bounded by the caller).
    pub async fn handle(
        &self,
        endpoint: Endpoint,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Body> {
        let (response, outcome) = match (endpoint, method) {
            (Endpoint::Metadata, &Method::GET | &Method::HEAD) => {
                (json_response(StatusCode::OK, &self.metadata()), "ok")
            }
            (Endpoint::Jwks, &Method::GET | &Method::HEAD) => {
                let mut r = json_response(StatusCode::OK, &Value::Null);
                *r.body_mut() = body::full(self.keys.jwks().to_string());
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=300"),
                );
                (r, "ok")
            }
            (Endpoint::Register, &Method::POST) => self.register(&body),
            (Endpoint::Authorize, &Method::GET) => self.authorize(query.unwrap_or_default()).await,
            (Endpoint::Consent, &Method::POST) => self.consent(headers, &body).await,
            (Endpoint::Callback, &Method::GET) => {
                self.callback(query.unwrap_or_default(), headers).await
            }
            (Endpoint::Token, &Method::POST) => self.token(&body),
            _ => {
                let mut r = Response::new(body::full("method not allowed"));
                *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                (r, "method_not_allowed")
            }
        };
        self.count(endpoint, outcome);
        response
    }

    /// RFC 8414 metadata (also served at the OpenID discovery paths clients probe).
    pub fn metadata(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.url("authorize"),
            "token_endpoint": self.url("token"),
            "registration_endpoint": self.url("register"),
            "jwks_uri": self.url("jwks"),
            "scopes_supported": self.scopes,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": self.documents.is_some(),
            "authorization_response_iss_parameter_supported": true,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        })
    }

    /// Dynamic Client Registration (RFC 7591): the answer's `client_id` is the registration.
    fn register(&self, body: &[u8]) -> (Response<Body>, &'static str) {
        let Ok(metadata) = serde_json::from_slice::<client::Metadata>(body) else {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    "the registration request is not a JSON object",
                ),
                "invalid",
            );
        };
        if let Err(refusal) = client::check_metadata(&metadata) {
            return (
                oauth_error(StatusCode::BAD_REQUEST, refusal.error, &refusal.description),
                "invalid",
            );
        }
        let registration = Registration {
            redirect_uris: metadata.redirect_uris,
            client_name: metadata.client_name,
            issued_at: now(),
        };
        let Some(client_id) = grants::seal(&self.keys.sealer, Kind::Client, &registration) else {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    "the registration is too large",
                ),
                "invalid",
            );
        };
        let answer = json!({
            "client_id": client_id,
            "client_id_issued_at": registration.issued_at,
            "redirect_uris": registration.redirect_uris,
            "client_name": registration.client_name,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        (json_response(StatusCode::CREATED, &answer), "ok")
    }

    /// The client behind a `client_id`: a sealed registration, or a metadata document URL.
    async fn client(&self, client_id: &str) -> Result<Client, String> {
        if client_id.starts_with("https://") {
            return match &self.documents {
                Some(fetcher) => fetcher.client(client_id).await.map_err(|r| r.description),
                None => Err("client metadata documents are not accepted by this gateway".into()),
            };
        }
        let registration: Registration = grants::open(&self.keys.sealer, Kind::Client, client_id)
            .ok_or("the client_id was not issued by this gateway")?;
        Ok(Client {
            client_id: client_id.to_string(),
            name: registration.client_name,
            redirect_uris: registration.redirect_uris,
            metadata_document: false,
        })
    }

    /// Sends an error to the client's (verified) redirect URI.
    fn redirect_error(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        error: &str,
        description: &str,
    ) -> Response<Body> {
        let mut url = match url::Url::parse(redirect_uri) {
            Ok(url) => url,
            Err(_) => return error_page("the redirect URI cannot be used"),
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("error", error)
                .append_pair("error_description", description);
            if let Some(state) = state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", &self.issuer);
        }
        redirect(url.as_str())
    }

    /// `/authorize`: checks the client and its redirect URI (errors shown, not redirected),
    /// then the request (errors redirected), then asks the user.
    async fn authorize(&self, query: &str) -> (Response<Body>, &'static str) {
        let Some(p) = params(query) else {
            return (error_page("a request parameter is repeated"), "invalid");
        };
        let Some(client_id) = p.get("client_id") else {
            return (error_page("the request names no client_id"), "invalid");
        };
        let client = match self.client(client_id).await {
            Ok(c) => c,
            Err(why) => return (error_page(&why), "invalid_client"),
        };
        let redirect_uri = match (p.get("redirect_uri"), client.redirect_uris.as_slice()) {
            (Some(r), registered) if client::match_redirect_uri(registered, r).is_some() => {
                r.clone()
            }
            (Some(_), _) => {
                return (
                    error_page("the redirect_uri is not one this client registered"),
                    "invalid_redirect_uri",
                );
            }
            (None, [only]) => only.clone(),
            (None, _) => return (error_page("the request names no redirect_uri"), "invalid"),
        };
        let state = p.get("state").map(String::as_str);
        if state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return (error_page("the state parameter is too long"), "invalid");
        }
        let fail = |error: &str, description: &str| {
            (
                self.redirect_error(&redirect_uri, state, error, description),
                "invalid",
            )
        };
        if p.get("response_type").map(String::as_str) != Some("code") {
            return fail("unsupported_response_type", "response_type must be code");
        }
        let challenge = match (
            p.get("code_challenge"),
            p.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) if pkce::is_valid_challenge(c) => c.clone(),
            _ => {
                return fail(
                    "invalid_request",
                    "PKCE is required: code_challenge with code_challenge_method S256",
                );
            }
        };
        if let Some(resource) = p.get("resource")
            && !same_resource(resource, &self.resource)
        {
            return fail("invalid_target", "resource is not this MCP server");
        }
        let nonce = pkce::random_token();
        let transaction = Transaction {
            client_id: client_key(&client.client_id),
            redirect_uri: redirect_uri.clone(),
            state: state.map(str::to_string),
            code_challenge: challenge,
            scopes: self.scopes.clone(),
            nonce: nonce.clone(),
            idp_verifier: pkce::random_token(),
            exp: now() + TRANSACTION_TTL,
        };
        let Some(sealed) = grants::seal(&self.keys.sealer, Kind::Transaction, &transaction) else {
            return (
                error_page("the authorization request is too large"),
                "invalid",
            );
        };
        let page = pages::consent(&pages::Consent {
            client_name: client.name.as_deref(),
            client_id: &client.client_id,
            metadata_document: client.metadata_document,
            redirect_uri: &redirect_uri,
            resource: &self.resource,
            scopes: &self.scopes,
            action: &self.url("consent"),
            nonce: &nonce,
        });
        let mut response = html(StatusCode::OK, page);
        self.set_cookie(&mut response, &nonce, &sealed, TRANSACTION_TTL);
        (response, "consent_asked")
    }

    fn set_cookie(&self, response: &mut Response<Body>, nonce: &str, value: &str, max_age: u64) {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE_PREFIX}{nonce}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_path
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// The pending sign-in whose nonce this is, from the browser's cookie.
    fn transaction(&self, headers: &HeaderMap, nonce: &str) -> Result<Transaction, &'static str> {
        let sealed = cookie(headers, &format!("{COOKIE_PREFIX}{nonce}"))
            .ok_or("this sign-in was started in another browser, or it expired: start again from your MCP client")?;
        let transaction: Transaction =
            grants::open(&self.keys.sealer, Kind::Transaction, sealed)
                .ok_or("this sign-in is not valid: start again from your MCP client")?;
        if transaction.nonce != nonce || transaction.exp <= now() {
            return Err("this sign-in expired: start again from your MCP client");
        }
        Ok(transaction)
    }

    /// The user's answer on the consent page.
    async fn consent(&self, headers: &HeaderMap, body: &[u8]) -> (Response<Body>, &'static str) {
        let Some(p) = std::str::from_utf8(body).ok().and_then(params) else {
            return (error_page("the form is not valid"), "invalid");
        };
        let Some(nonce) = p.get("nonce") else {
            return (error_page("the form is not valid"), "invalid");
        };
        let transaction = match self.transaction(headers, nonce) {
            Ok(t) => t,
            Err(why) => return (error_page(why), "invalid"),
        };
        if p.get("decision").map(String::as_str) != Some("approve") {
            return (
                self.redirect_error(
                    &transaction.redirect_uri,
                    transaction.state.as_deref(),
                    "access_denied",
                    "the user denied access",
                ),
                "denied",
            );
        }
        match self
            .idp
            .authorization_url(
                &self.url("callback"),
                nonce,
                &pkce::challenge(&transaction.idp_verifier),
            )
            .await
        {
            Ok(url) => (redirect(url.as_str()), "approved"),
            Err(error) => {
                tracing::warn!(%error, "cannot send the user to the IdP");
                (
                    self.redirect_error(
                        &transaction.redirect_uri,
                        transaction.state.as_deref(),
                        "temporarily_unavailable",
                        "the identity provider cannot be reached",
                    ),
                    "idp_unavailable",
                )
            }
        }
    }

    /// The IdP sends the user back here: redeem its code, then hand the client ours.
    async fn callback(&self, query: &str, headers: &HeaderMap) -> (Response<Body>, &'static str) {
        let Some(p) = params(query) else {
            return (error_page("a response parameter is repeated"), "invalid");
        };
        let Some(nonce) = p.get("state") else {
            return (
                error_page("the identity provider's answer has no state"),
                "invalid",
            );
        };
        let transaction = match self.transaction(headers, nonce) {
            Ok(t) => t,
            Err(why) => return (error_page(why), "invalid"),
        };
        let state = transaction.state.as_deref();
        let mut response = match (p.get("code"), p.get("error")) {
            (Some(code), None) => {
                match self
                    .idp
                    .redeem(code, &transaction.idp_verifier, &self.url("callback"))
                    .await
                {
                    Ok(principal) => {
                        let code = Code {
                            client_id: transaction.client_id.clone(),
                            redirect_uri: transaction.redirect_uri.clone(),
                            code_challenge: transaction.code_challenge.clone(),
                            scopes: transaction.scopes.clone(),
                            subject: principal.subject,
                            jti: pkce::random_token(),
                            exp: now() + CODE_TTL,
                        };
                        let Some(sealed) = grants::seal(&self.keys.sealer, Kind::Code, &code)
                        else {
                            return (
                                self.redirect_error(
                                    &transaction.redirect_uri,
                                    state,
                                    "server_error",
                                    "the identity provider's subject is too large",
                                ),
                                "invalid",
                            );
                        };
                        let mut url = url::Url::parse(&transaction.redirect_uri)
                            .expect("checked at /authorize");
                        {
                            let mut q = url.query_pairs_mut();
                            q.append_pair("code", &sealed);
                            if let Some(state) = state {
                                q.append_pair("state", state);
                            }
                            q.append_pair("iss", &self.issuer);
                        }
                        (redirect(url.as_str()), "ok")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "sign-in at the IdP failed");
                        (
                            self.redirect_error(
                                &transaction.redirect_uri,
                                state,
                                "access_denied",
                                "signing in at the identity provider failed",
                            ),
                            "idp_refused",
                        )
                    }
                }
            }
            _ => (
                self.redirect_error(
                    &transaction.redirect_uri,
                    state,
                    "access_denied",
                    "the identity provider did not sign the user in",
                ),
                "idp_error",
            ),
        };
        // The pending sign-in is over either way.
        self.set_cookie(&mut response.0, nonce, "", 0);
        response
    }

    /// `/token`: authorization_code (PKCE) and refresh_token (rotating) grants.
    fn token(&self, body: &[u8]) -> (Response<Body>, &'static str) {
        let Some(p) = std::str::from_utf8(body).ok().and_then(params) else {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the body must be form-encoded with no repeated parameter",
                ),
                "invalid",
            );
        };
        if let Some(resource) = p.get("resource")
            && !same_resource(resource, &self.resource)
        {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource is not this MCP server",
                ),
                "invalid_target",
            );
        }
        let result = match p.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(&p),
            Some("refresh_token") => self.refresh(&p),
            _ => Err((
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
        };
        match result {
            Ok(tokens) => (json_response(StatusCode::OK, &tokens), "ok"),
            Err((error, description)) => (
                oauth_error(StatusCode::BAD_REQUEST, error, description),
                "refused",
            ),
        }
    }

    fn redeem_code(
        &self,
        p: &HashMap<String, String>,
    ) -> Result<Value, (&'static str, &'static str)> {
        let invalid = |d| ("invalid_grant", d);
        let code: Code = p
            .get("code")
            .and_then(|c| grants::open(&self.keys.sealer, Kind::Code, c))
            .ok_or(invalid("the code is not valid"))?;
        if code.exp <= now() {
            return Err(invalid("the code has expired"));
        }
        if p.get("client_id").map(|c| client_key(c)) != Some(code.client_id.clone()) {
            return Err(invalid("the code was issued to another client"));
        }
        if p.get("redirect_uri")
            .is_some_and(|r| *r != code.redirect_uri)
        {
            return Err(invalid(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier = p
            .get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default();
        if !pkce::verifies(verifier, &code.code_challenge) {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        // Checked last, so a failed attempt does not burn the code for its rightful owner.
        if self.used_codes.contains_key(&code.jti) {
            return Err(invalid("the code was already used"));
        }
        self.used_codes.insert(code.jti.clone(), ());
        Ok(self.issue(
            &code.client_id,
            &code.subject,
            &code.scopes,
            pkce::random_token(),
        ))
    }

    fn refresh(&self, p: &HashMap<String, String>) -> Result<Value, (&'static str, &'static str)> {
        let invalid = |d| ("invalid_grant", d);
        let refresh: Refresh = p
            .get("refresh_token")
            .and_then(|t| grants::open(&self.keys.sealer, Kind::Refresh, t))
            .ok_or(invalid("the refresh token is not valid"))?;
        if refresh.exp <= now() {
            return Err(invalid("the refresh token has expired"));
        }
        if p.get("client_id").map(|c| client_key(c)) != Some(refresh.client_id.clone()) {
            return Err(invalid("the refresh token was issued to another client"));
        }
        if self.revoked_families.contains_key(&refresh.family) {
            return Err(invalid("the refresh token was revoked"));
        }
        if self.used_refresh_tokens.contains_key(&refresh.jti) {
            // Reuse means two parties hold it: end the whole sign-in (OAuth 2.1 §4.3.1).
            self.revoked_families.insert(refresh.family.clone(), ());
            tracing::warn!("a refresh token was used twice; its sign-in is revoked");
            return Err(invalid("the refresh token was already used"));
        }
        self.used_refresh_tokens.insert(refresh.jti.clone(), ());
        Ok(self.issue(
            &refresh.client_id,
            &refresh.subject,
            &refresh.scopes,
            refresh.family,
        ))
    }

    /// An access token (a JWT for this resource) and a new refresh token.
    fn issue(&self, client_id: &str, subject: &str, scopes: &[String], family: String) -> Value {
        let issued = now();
        let scope = scopes.join(" ");
        let access = self.keys.sign(&json!({
            "iss": self.issuer,
            "aud": self.resource,
            "sub": subject,
            "client_id": client_id,
            "scope": scope,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.access_ttl,
            "jti": pkce::random_token(),
        }));
        let refresh = grants::seal(
            &self.keys.sealer,
            Kind::Refresh,
            &Refresh {
                client_id: client_id.to_string(),
                subject: subject.to_string(),
                scopes: scopes.to_vec(),
                family,
                jti: pkce::random_token(),
                exp: issued + self.refresh_ttl,
            },
        );
        // A refresh token is never larger than the code or refresh token it replaces, so it
        // always seals; were it not to, the client signs in again when the access expires.
        let mut tokens = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "scope": scope,
        });
        if let Some(refresh) = refresh {
            tokens["refresh_token"] = Value::String(refresh);
        }
        tokens
    }
}

#[cfg(test)]
mod tests;
