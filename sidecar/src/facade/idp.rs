//! The upstream identity provider: where the facade sends users to sign in, and where it
//! redeems their code for an ID token. The ID token is verified like any token (JWKS by
//! `kid`, `iss`, `aud` = the gateway's client id, `exp`), by an [`Authenticator`] of its own.
//!
//! Entra preset: no RFC 8707 `resource` parameter anywhere (Entra v2 rejects it), and users
//! are identified by `tid`/`oid`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use url::Url;

use crate::auth::{Authenticator, Principal};
use crate::config::{IdpConfig, OidcConfig};
use crate::fetch::{self, ReadError, Redirects};
use crate::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(10);
/// ID tokens larger than this are refused unparsed.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// Largest token endpoint answer read: an ID token plus the IdP's access and refresh tokens.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Where the IdP signs users in and redeems their codes.
struct Endpoints {
    authorization: Url,
    token: Url,
}

pub struct Idp {
    config: IdpConfig,
    /// For the token endpoint, which gets the client secret: never redirected.
    http: reqwest::Client,
    /// Verifies ID tokens, and holds the discovery document (one fetch for keys and
    /// endpoints).
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
            http: fetch::client(TIMEOUT, Redirects::Never),
            id_tokens,
        }
    }

    /// Starts fetching the IdP's signing keys in the background.
    pub fn start(&self) {
        self.id_tokens.start();
    }

    /// The IdP's endpoints, from its discovery document (whose issuer must match).
    async fn endpoints(&self) -> Result<Endpoints, IdpError> {
        let doc = self
            .id_tokens
            .discovery()
            .await
            .map_err(IdpError::Unavailable)?;
        match (&doc.authorization_endpoint, &doc.token_endpoint) {
            (Some(authorization), Some(token)) => Ok(Endpoints {
                authorization: authorization.clone(),
                token: token.clone(),
            }),
            _ => Err(IdpError::Unavailable(format!(
                "the discovery document of {} names no authorization_endpoint or token_endpoint",
                self.config.issuer
            ))),
        }
    }

    /// Where to send the user: the IdP's authorization endpoint with the gateway's client,
    /// its callback, `state` and its own PKCE challenge.
    pub async fn authorization_url(
        &self,
        callback: &str,
        state: &str,
        code_challenge: &str,
    ) -> Result<Url, IdpError> {
        let mut url = self.endpoints().await?.authorization;
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
            .post(endpoints.token.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| IdpError::Unavailable(fetch::describe(&e)))?;
        let status = response.status();
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            id_token: Option<String>,
            #[serde(default)]
            error: Option<String>,
        }
        let body: TokenResponse = fetch::read_json(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::NotJson { .. } => {
                    IdpError::Unavailable(format!("token endpoint answered {status} without JSON"))
                }
                e => IdpError::Unavailable(format!("token endpoint answered {status}: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdpPreset;
    use crate::fetch::tests::serve_routes;

    /// An IdP whose token endpoint answers `token_body`, and whose discovery document is
    /// padded to `discovery_len` bytes.
    async fn idp(token_body: Vec<u8>, discovery_len: usize) -> Idp {
        let base = serve_routes(
            move |base, path| match path {
                "/.well-known/openid-configuration" => {
                    let mut doc = serde_json::json!({
                        "issuer": base,
                        "jwks_uri": format!("{base}/keys"),
                        "authorization_endpoint": format!("{base}/authorize"),
                        "token_endpoint": format!("{base}/token"),
                    })
                    .to_string()
                    .into_bytes();
                    if doc.len() < discovery_len {
                        doc.resize(discovery_len, b' ');
                    }
                    (200, doc)
                }
                "/token" => (200, token_body.clone()),
                _ => (404, b"{}".to_vec()),
            },
            // No length: the limit must hold while reading, not only from the header.
            false,
        )
        .await;
        let secret = std::env::temp_dir().join(format!(
            "mcpgw-idp-secret-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&secret, "s3cret\n").unwrap();
        Idp::new(
            IdpConfig {
                issuer: base,
                client_id: "gateway".into(),
                client_secret_file: secret,
                scopes: vec!["openid".into()],
                preset: IdpPreset::Generic,
            },
            Vec::new(),
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn the_idp_answers_are_size_limited() {
        // A token endpoint answer past the limit is refused, not read into memory.
        let huge = vec![b' '; MAX_TOKEN_RESPONSE_BYTES + 1];
        let error = idp(huge, 0)
            .await
            .redeem("code", "verifier", "https://gw.example/oauth/callback")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, IdpError::Unavailable(m) if m.contains("larger than 65536 bytes")),
            "{error}"
        );
        // Under the limit, the answer is read (and here found to have no ID token).
        let error = idp(br#"{"token_type":"Bearer"}"#.to_vec(), 0)
            .await
            .redeem("code", "verifier", "https://gw.example/oauth/callback")
            .await
            .unwrap_err();
        assert!(matches!(error, IdpError::BadIdToken(_)), "{error}");

        // So is a discovery document past the limit.
        let error = idp(Vec::new(), crate::discovery::MAX_DOCUMENT_BYTES + 1)
            .await
            .authorization_url("https://gw.example/oauth/callback", "state", "challenge")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, IdpError::Unavailable(m) if m.contains("more than")),
            "{error}"
        );
        // And the endpoints come from the document when it fits.
        let url = idp(Vec::new(), 0)
            .await
            .authorization_url("https://gw.example/oauth/callback", "state", "challenge")
            .await
            .unwrap();
        assert!(url.path().ends_with("/authorize"), "{url}");
    }
}
