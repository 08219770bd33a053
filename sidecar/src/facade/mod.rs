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
//! One file per flow, in the order a sign-in goes through them: `register` (DCR, and which
//! client a `client_id` names), `authorize` (the request, the consent page and the user's
//! answer), `callback` (back from the IdP: its code for ours), `token` (codes and refresh
//! tokens for access tokens). Their parts:
//! - `grants`: the sealed state; `pkce`; `client`: registration and redirect URI rules;
//! - `cimd`: fetching metadata documents with SSRF guards; `idp`: the upstream IdP;
//! - `keys`: the facade key file; `pages`: the consent and error pages.

mod authorize;
mod callback;
mod cimd;
pub mod client;
pub mod grants;
mod idp;
pub mod keys;
mod pages;
pub mod pkce;
mod register;
mod token;

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
use crate::body::Body;
use crate::config::{Config, FacadeConfig};
use crate::metrics::{Metrics, OauthLabels};
use crate::polled_file::KeysFile;
use crate::response;

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
    /// Followed while the sidecar runs: a rotated facade keys file needs no restart.
    keys: Arc<KeysFile<FacadeKeys>>,
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
    response::oauth_json(status, value.to_string())
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn error_page(message: &str) -> Response<Body> {
    response::html(StatusCode::BAD_REQUEST, pages::error(message))
}

/// A redirect, or the error page when `location` cannot be sent as one.
fn redirect(location: &str) -> Response<Body> {
    response::redirect(location).unwrap_or_else(|| error_page("the redirect URI cannot be used"))
}

impl Facade {
    pub fn new(
        config: &Config,
        facade: &FacadeConfig,
        keys: Arc<KeysFile<FacadeKeys>>,
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

    /// The keys in use: each request takes them once, so a rotation never splits one.
    fn keys(&self) -> Arc<FacadeKeys> {
        self.keys.current()
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
                (response::public_json(self.keys().jwks().to_string()), "ok")
            }
            (Endpoint::Register, &Method::POST) => self.register(&body),
            (Endpoint::Authorize, &Method::GET) => self.authorize(query.unwrap_or_default()).await,
            (Endpoint::Consent, &Method::POST) => self.consent(headers, &body).await,
            (Endpoint::Callback, &Method::GET) => {
                self.callback(query.unwrap_or_default(), headers).await
            }
            (Endpoint::Token, &Method::POST) => self.token(&body),
            _ => (
                response::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                "method_not_allowed",
            ),
        };
        self.count(endpoint, outcome);
        response
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
}

#[cfg(test)]
mod tests;
