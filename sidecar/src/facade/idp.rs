//! The upstream identity provider: where the facade sends users to sign in, and where it
//! redeems their code for an ID token. The ID token is verified like any token (JWKS by
//! `kid`, `iss`, `aud` = the gateway's client id, `exp`), by an [`Authenticator`] of its own.
//!
//! Entra preset: no RFC 8707 `resource` parameter anywhere (Entra v2 rejects it), and users
//! are identified by `tid`/`oid`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use url::Url;

use crate::auth::{Authenticator, Principal};
use crate::config::{IdpConfig, OidcConfig};
use crate::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(10);
/// ID tokens larger than this are refused unparsed.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
}

pub struct Idp {
    config: IdpConfig,
    http: reqwest::Client,
    endpoints: RwLock<Option<Endpoints>>,
    id_tokens: Arc<Authenticator>,
}

/// A sign-in that did not work out. The text is for logs and never holds a code, token or
/// secret; the client only learns `access_denied` or `server_error`.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("the IdP could not be reached or answered unexpectedly: {0}")]
    Unavailable(String),
    #[error("the IdP refused to redeem the code: {0}")]
    Refused(String),
    #[error("the IdP's ID token is not valid: {0}")]
    BadIdToken(&'static str),
    #[error("cannot read the IdP client secret file: {0}")]
    Secret(std::io::ErrorKind),
}

impl Idp {
    pub fn new(config: IdpConfig, allowed_tenants: Vec<String>, metrics: Arc<Metrics>) -> Self {
        let id_tokens = Arc::new(Authenticator::new(
            OidcConfig {
                issuer: config.issuer.clone(),
                audiences: vec![config.client_id.clone()],
                required_scopes: Vec::new(),
                allowed_tenants,
                jwks_uri: None,
                leeway_seconds: 60,
            },
            MAX_ID_TOKEN_BYTES,
            metrics,
        ));
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("mcp-gateway-sidecar/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the HTTP client for the IdP builds"),
            endpoints: RwLock::new(None),
            id_tokens,
        }
    }

    /// Starts fetching the IdP's signing keys in the background.
    pub fn start(&self) {
        self.id_tokens.start();
    }

    /// The IdP's endpoints, from its discovery document (whose issuer must match).
    async fn endpoints(&self) -> Result<Endpoints, IdpError> {
        if let Some(e) = self.endpoints.read().expect("lock").clone() {
            return Ok(e);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let unavailable = |e: &dyn std::fmt::Display| IdpError::Unavailable(format!("{url}: {e}"));
        let endpoints: Endpoints = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(&e))?
            .error_for_status()
            .map_err(|e| unavailable(&e))?
            .json()
            .await
            .map_err(|e| unavailable(&e))?;
        if endpoints.issuer != self.config.issuer {
            return Err(IdpError::Unavailable(format!(
                "{url} names issuer {}, not the configured {}",
                endpoints.issuer, self.config.issuer
            )));
        }
        *self.endpoints.write().expect("lock") = Some(endpoints.clone());
        Ok(endpoints)
    }

    /// Where to send the user: the IdP's authorization endpoint with the gateway's client,
    /// its callback, `state` and its own PKCE challenge.
    pub async fn authorization_url(
        &self,
        callback: &str,
        state: &str,
        code_challenge: &str,
    ) -> Result<Url, IdpError> {
        let mut url = self.endpoints().await?.authorization_endpoint;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", callback)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("response_mode", "query");
        Ok(url)
    }

    /// Redeems the IdP's code and returns who signed in.
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        callback: &str,
    ) -> Result<Principal, IdpError> {
        let endpoints = self.endpoints().await?;
        // Re-read each time, so a rotated secret needs no restart.
        let secret = std::fs::read_to_string(&self.config.client_secret_file)
            .map_err(|e| IdpError::Secret(e.kind()))?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", callback),
            ("code_verifier", verifier),
            ("client_id", &self.config.client_id),
            ("client_secret", secret.trim()),
        ];
        let response = self
            .http
            .post(endpoints.token_endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| IdpError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            id_token: Option<String>,
            #[serde(default)]
            error: Option<String>,
        }
        let body: TokenResponse = response.json().await.map_err(|_| {
            IdpError::Unavailable(format!("token endpoint answered {status} without JSON"))
        })?;
        if !status.is_success() {
            // Only the error code: descriptions can echo request parameters.
            return Err(IdpError::Refused(
                body.error.unwrap_or_else(|| status.as_u16().to_string()),
            ));
        }
        let id_token = body.id_token.ok_or(IdpError::BadIdToken(
            "the token response has no id_token (is `openid` among the IdP scopes?)",
        ))?;
        let header = HeaderValue::from_str(&format!("Bearer {id_token}"))
            .map_err(|_| IdpError::BadIdToken("not a compact JWT"))?;
        self.id_tokens
            .authenticate(Some(&header))
            .await
            .map_err(|e| IdpError::BadIdToken(e.reason()))
    }
}
