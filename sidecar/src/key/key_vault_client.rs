//! Azure Key Vault as the source of the system key, read with Azure workload identity.
//!
//! One fetch: an Entra access token for Key Vault (client credentials, the pod's projected
//! service account token as the client assertion, re-read from its file for every token
//! request because the kubelet rotates it), cached until shortly before it expires; then
//! `GET {vault}/secrets/{name}?api-version=7.4`. Scheduling (periodic, on demand, single
//! flight) lives in [`super::key_vault`]; this module only knows how to talk to Entra and Key
//! Vault.
//!
//! Nothing secret ever reaches an error or a log: not the key, the access token nor the
//! assertion. Error bodies are summarised by their error *codes* only, because an Entra
//! `error_description` can quote the request.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;
use url::Url;

use super::value::{KeyFileError, parse_key};
use crate::config::{KeyVaultConfig, https_or_loopback, is_id_segment};
use crate::fetch::{self, Redirects};

/// The token scope for Key Vault's data plane.
pub const SCOPE: &str = "https://vault.azure.net/.default";
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const API_VERSION: &str = "7.4";
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Token and secret responses are small; anything larger is not what we asked for.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A cached token is renewed this long before it expires, or at half its lifetime if that is
/// sooner (so a token valid for 2 s is used for 1 s, and one without a lifetime only once).
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The Key Vault settings with the workload identity defaults filled in from the environment.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyVaultSettings {
    pub vault_url: Url,
    pub secret_name: String,
    pub refresh: Duration,
    pub client_id: String,
    pub tenant_id: String,
    pub authority_host: Url,
    pub token_file: PathBuf,
}

impl KeyVaultSettings {
    /// Fills `clientId`, `tenantId`, `authorityHost` and `tokenFile` from the variables the
    /// AKS workload identity webhook injects (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_AUTHORITY_HOST`, `AZURE_FEDERATED_TOKEN_FILE`) where the config leaves them out.
    pub fn resolve(
        config: &KeyVaultConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        config.validate().map_err(|e| e.to_string())?;
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let webhook = "is the pod labelled azure.workload.identity/use: \"true\" with a service \
                       account annotated azure.workload.identity/client-id?";
        let client_id = match &config.client_id {
            Some(id) => id.clone(),
            None => env("AZURE_CLIENT_ID").ok_or_else(|| {
                format!("systemKey.keyVault.clientId is not set and AZURE_CLIENT_ID is not in the environment: {webhook}")
            })?,
        };
        if !is_id_segment(&client_id) {
            return Err("AZURE_CLIENT_ID is not a client ID (a GUID)".into());
        }
        let tenant_id = match &config.tenant_id {
            Some(id) => id.clone(),
            None => env("AZURE_TENANT_ID").ok_or_else(|| {
                format!("systemKey.keyVault.tenantId is not set and AZURE_TENANT_ID is not in the environment: {webhook}")
            })?,
        };
        if !is_id_segment(&tenant_id) {
            return Err("AZURE_TENANT_ID is not a tenant ID (a GUID) or domain".into());
        }
        let authority_host = match &config.authority_host {
            Some(url) => url.clone(),
            None => match env("AZURE_AUTHORITY_HOST") {
                Some(text) => Url::parse(text.trim()).map_err(|e| {
                    format!("AZURE_AUTHORITY_HOST is not a URL ({e}); it should be like {DEFAULT_AUTHORITY_HOST}")
                })?,
                None => Url::parse(DEFAULT_AUTHORITY_HOST).expect("a valid URL"),
            },
        };
        if !https_or_loopback(&authority_host) || authority_host.query().is_some() {
            return Err(format!(
                "the Entra authority host {authority_host} must be an https URL such as {DEFAULT_AUTHORITY_HOST}"
            ));
        }
        let token_file = match &config.token_file {
            Some(path) => path.clone(),
            None => env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from).ok_or_else(|| {
                format!("systemKey.keyVault.tokenFile is not set and AZURE_FEDERATED_TOKEN_FILE is not in the environment: {webhook}")
            })?,
        };
        Ok(Self {
            vault_url: config.vault_url.clone(),
            secret_name: config.secret_name.clone(),
            refresh: Duration::from_secs(config.refresh_seconds.into()),
            client_id,
            tenant_id,
            authority_host,
            token_file,
        })
    }

    /// `{authorityHost}{tenantId}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host.as_str().trim_end_matches('/'),
            self.tenant_id
        )
    }

    /// `{vaultUrl}/secrets/{secretName}?api-version=7.4`.
    pub fn secret_url(&self) -> String {
        format!(
            "{}/secrets/{}?api-version={API_VERSION}",
            self.vault_origin(),
            self.secret_name
        )
    }

    /// The vault's URL without a trailing slash, for messages.
    pub fn vault_origin(&self) -> &str {
        self.vault_url.as_str().trim_end_matches('/')
    }
}

/// The secret as Key Vault returned it.
#[derive(Debug)]
pub struct Secret {
    /// The key, marked sensitive.
    pub value: HeaderValue,
    /// The secret version: the last path segment of the bundle's `id`.
    pub version: Option<String>,
    /// `attributes.updated` (Unix seconds).
    pub updated: Option<u64>,
}

/// Why a fetch failed, phrased for an operator. Each kind is a metrics outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// Entra or Key Vault could not be reached, timed out, or answered 429/5xx.
    #[error("{0}")]
    Unreachable(String),
    /// The identity could not get a token, or may not read the secret.
    #[error("{0}")]
    Denied(String),
    /// The vault has no such secret.
    #[error("{0}")]
    NotFound(String),
    /// An answer that is not what Entra or Key Vault should send, or an unusable secret.
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// The `outcome` label of `key_source_fetches_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Denied(_) => "denied",
            FetchError::NotFound(_) => "not_found",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

/// An `Authorization: Bearer …` value, marked sensitive (its `Debug` shows no token).
#[derive(Clone, Debug)]
struct Bearer(HeaderValue);

struct CachedToken {
    bearer: Bearer,
    renew_at: Instant,
}

/// Talks to Entra and Key Vault. Used by one task at a time (the key refresher).
pub struct KeyVaultClient {
    settings: KeyVaultSettings,
    http: reqwest::Client,
    token: Mutex<Option<CachedToken>>,
}

impl KeyVaultClient {
    pub fn new(settings: KeyVaultSettings) -> Self {
        // Never follow a redirect with a bearer token or an assertion.
        let http = fetch::client(REQUEST_TIMEOUT, Redirects::Never);
        Self {
            settings,
            http,
            token: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &KeyVaultSettings {
        &self.settings
    }

    /// Reads the secret once. A cached token that Key Vault refuses with 401 is dropped and
    /// the read repeated once with a new token.
    pub async fn fetch(&self) -> Result<Secret, FetchError> {
        let (bearer, cached) = self.token().await?;
        let (mut status, mut body) = self.get_secret(&bearer).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED && cached {
            self.forget_token();
            let (bearer, _) = self.token().await?;
            (status, body) = self.get_secret(&bearer).await?;
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // A token Key Vault will not take is worth no more than a new one.
            self.forget_token();
        }
        self.secret_from(status, &body)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A token for Key Vault: the cached one while it is fresh, else a new one. The flag
    /// says whether it came from the cache.
    async fn token(&self) -> Result<(Bearer, bool), FetchError> {
        if let Some(cached) = self
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
        {
            return Ok((cached.bearer.clone(), true));
        }
        let requested = Instant::now();
        let (bearer, lifetime) = self.request_token().await?;
        let margin = TOKEN_RENEW_MARGIN.min(lifetime / 2);
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(CachedToken {
            bearer: bearer.clone(),
            renew_at: requested + lifetime - margin,
        });
        Ok((bearer, false))
    }

    async fn request_token(&self) -> Result<(Bearer, Duration), FetchError> {
        let s = &self.settings;
        let url = s.token_url();
        let assertion = std::fs::read_to_string(&s.token_file).map_err(|e| {
            FetchError::Denied(format!(
                "cannot read the workload identity token file {} ({}): is the pod set up for \
                 Azure workload identity (label azure.workload.identity/use: \"true\")?",
                s.token_file.display(),
                e.kind()
            ))
        })?;
        let assertion = assertion.trim();
        if assertion.is_empty() {
            return Err(FetchError::Denied(format!(
                "the workload identity token file {} is empty",
                s.token_file.display()
            )));
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", s.client_id.as_str()),
            ("scope", SCOPE),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ];
        let response = self
            .http
            .post(&url)
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                FetchError::Unreachable(format!(
                    "the Entra token endpoint {url} is unreachable: {}",
                    fetch::describe(&e)
                ))
            })?;
        let status = response.status();
        let body = read_capped(response).await.map_err(|e| {
            FetchError::Unreachable(format!("reading the answer of {url} failed: {e}"))
        })?;
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED
        {
            return Err(FetchError::Denied(format!(
                "Entra refused a token for client {} in tenant {} ({status}{}): check that the \
                 identity has a federated credential for this pod's service account (issuer: \
                 the cluster's OIDC issuer URL; subject: \
                 system:serviceaccount:<namespace>:<service account>; audience: \
                 api://AzureADTokenExchange) and that {} holds the projected token",
                s.client_id,
                s.tenant_id,
                entra_error_codes(&body),
                s.token_file.display()
            )));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(FetchError::Unreachable(format!(
                "the Entra token endpoint {url} answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(FetchError::Invalid(format!(
                "the Entra token endpoint {url} answered {status}: check \
                 systemKey.keyVault.authorityHost and tenantId"
            )));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            token_type: Option<String>,
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
        }
        let not_a_token = || {
            FetchError::Invalid(format!(
                "the Entra token endpoint {url} answered with something that is not a token response"
            ))
        };
        // The parse error is not shown: it could quote the token.
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| not_a_token())?;
        if parsed
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(not_a_token());
        }
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", parsed.access_token))
            .map_err(|_| not_a_token())?;
        if parsed.access_token.is_empty() {
            return Err(not_a_token());
        }
        bearer.set_sensitive(true);
        let lifetime = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(0);
        Ok((Bearer(bearer), Duration::from_secs(lifetime)))
    }

    async fn get_secret(
        &self,
        bearer: &Bearer,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), FetchError> {
        let s = &self.settings;
        let unreachable = |what: String| {
            FetchError::Unreachable(format!(
                "Key Vault {} is unreachable: {what}",
                s.vault_origin()
            ))
        };
        let response = self
            .http
            .get(s.secret_url())
            .header(http::header::AUTHORIZATION, bearer.0.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable(fetch::describe(&e)))?;
        let status = response.status();
        let body = read_capped(response).await.map_err(unreachable)?;
        Ok((status, body))
    }

    fn secret_from(&self, status: reqwest::StatusCode, body: &[u8]) -> Result<Secret, FetchError> {
        let s = &self.settings;
        let (vault, name) = (s.vault_origin(), &s.secret_name);
        if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(FetchError::Denied(format!(
                "the identity {} may not read secret {name} in {vault}: grant it Key Vault \
                 Secrets User on that secret (Key Vault answered {status}{})",
                s.client_id,
                key_vault_error_codes(body)
            )));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound(format!(
                "Key Vault {vault} has no secret {name} (answered {status}{}): check \
                 systemKey.keyVault.secretName and vaultUrl",
                key_vault_error_codes(body)
            )));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(FetchError::Unreachable(format!(
                "Key Vault {vault} is unavailable (answered {status})"
            )));
        }
        if !status.is_success() {
            return Err(FetchError::Invalid(format!(
                "Key Vault {vault} answered {status}{} for secret {name}",
                key_vault_error_codes(body)
            )));
        }
        #[derive(Deserialize)]
        struct Bundle {
            value: String,
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            attributes: Option<Attributes>,
        }
        #[derive(Deserialize)]
        struct Attributes {
            #[serde(default)]
            enabled: Option<bool>,
            #[serde(default)]
            updated: Option<u64>,
        }
        // The parse error is not shown: it could quote the value.
        let bundle: Bundle = serde_json::from_slice(body).map_err(|_| {
            FetchError::Invalid(format!(
                "Key Vault {vault} answered with something that is not a secret bundle for secret {name}"
            ))
        })?;
        let attributes = bundle.attributes.unwrap_or(Attributes {
            enabled: None,
            updated: None,
        });
        if attributes.enabled == Some(false) {
            return Err(FetchError::Invalid(format!(
                "secret {name} in {vault} is disabled: enable it or set a new version"
            )));
        }
        let value = parse_key(bundle.value.as_bytes()).map_err(|e| {
            FetchError::Invalid(match e {
                KeyFileError::Empty => format!("secret {name} in {vault} is empty"),
                _ => format!(
                    "secret {name} in {vault} holds a value that cannot be sent in a header: it \
                     must be the key alone, without spaces or line breaks"
                ),
            })
        })?;
        Ok(Secret {
            value,
            version: bundle.id.as_deref().and_then(version_of),
            updated: attributes.updated,
        })
    }
}

/// The version in a secret id `https://{vault}/secrets/{name}/{version}`.
pub fn version_of(id: &str) -> Option<String> {
    let url = Url::parse(id).ok()?;
    let mut segments = url.path_segments()?;
    if segments.next() != Some("secrets") {
        return None;
    }
    let _name = segments.next()?;
    let version = segments.next()?;
    (segments.next().is_none() && is_code(version) && !version.is_empty())
        .then(|| version.to_string())
}

/// A short identifier safe to repeat in a log (error codes, versions).
fn is_code(s: &str) -> bool {
    s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `", codes: invalid_client AADSTS700213"` from an Entra error body, or `""`.
fn entra_error_codes(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct EntraError {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_codes: Vec<u64>,
    }
    let Ok(e) = serde_json::from_slice::<EntraError>(body) else {
        return String::new();
    };
    let codes: Vec<String> = e
        .error
        .into_iter()
        .filter(|c| is_code(c))
        .chain(e.error_codes.iter().take(4).map(|c| format!("AADSTS{c}")))
        .collect();
    if codes.is_empty() {
        String::new()
    } else {
        format!(", error {}", codes.join(" "))
    }
}

/// `", error Forbidden ForbiddenByRbac"` from a Key Vault error body, or `""`.
fn key_vault_error_codes(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let error = &v["error"];
    let codes: Vec<&str> = [&error["code"], &error["innererror"]["code"]]
        .into_iter()
        .filter_map(|c| c.as_str())
        .filter(|c| is_code(c))
        .collect();
    if codes.is_empty() {
        String::new()
    } else {
        format!(", error {}", codes.join(" "))
    }
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, String> {
    fetch::read_capped(response, MAX_BODY_BYTES)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    //! The client against a small Entra + Key Vault double on 127.0.0.1 (the Node stand-in
    //! covers the same ground end to end in tests/tests/sidecar_keyvault.rs).

    use std::collections::HashMap;
    use std::sync::Arc;

    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use hyper::body::Incoming;

    use super::*;
    use crate::body::{self, Body};

    pub(crate) const CLIENT: &str = "00000000-1111-2222-3333-444444444444";
    pub(crate) const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    pub(crate) const NAME: &str = "host--systemKey--mcp-095extension";

    /// What the double answers and what it saw.
    pub(crate) struct VaultState {
        pub value: String,
        pub version: u32,
        /// Status for secret reads, instead of the secret (e.g. 403, 503).
        pub vault_status: Option<u16>,
        /// Status and body for token requests, instead of a token.
        pub token_answer: Option<(u16, String)>,
        pub expires_in: u64,
        pub tokens: HashMap<String, ()>,
        pub token_requests: Vec<HashMap<String, String>>,
        pub secret_reads: usize,
        /// Delay before answering a secret read.
        pub delay: Duration,
    }

    pub(crate) struct Vault {
        pub url: String,
        pub state: Arc<Mutex<VaultState>>,
        pub assertion_file: PathBuf,
        _dir: TempDir,
    }

    pub(crate) struct TempDir(pub PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl Vault {
        pub(crate) async fn start(value: &str) -> Vault {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mcpgw-kv-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let assertion_file = dir.join("token");
            std::fs::write(&assertion_file, "ASSERTION-one\n").unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let state = Arc::new(Mutex::new(VaultState {
                value: value.into(),
                version: 1,
                vault_status: None,
                token_answer: None,
                expires_in: 3600,
                tokens: HashMap::new(),
                token_requests: Vec::new(),
                secret_reads: 0,
                delay: Duration::ZERO,
            }));
            let (s, u) = (state.clone(), url.clone());
            let handler = move |req: Request<Incoming>| {
                let (s, u) = (s.clone(), u.clone());
                async move { answer(&s, &u, req).await }
            };
            tokio::spawn(crate::server::serve(
                listener,
                handler,
                std::future::pending::<()>(),
            ));
            Vault {
                url,
                state,
                assertion_file,
                _dir: TempDir(dir),
            }
        }

        pub(crate) fn settings(&self) -> KeyVaultSettings {
            KeyVaultSettings {
                vault_url: Url::parse(&self.url).unwrap(),
                secret_name: NAME.into(),
                refresh: Duration::from_secs(300),
                client_id: CLIENT.into(),
                tenant_id: TENANT.into(),
                authority_host: Url::parse(&format!("{}/", self.url)).unwrap(),
                token_file: self.assertion_file.clone(),
            }
        }

        pub(crate) fn set(&self, f: impl FnOnce(&mut VaultState)) {
            f(&mut self.state.lock().unwrap())
        }

        pub(crate) fn get<T>(&self, f: impl FnOnce(&VaultState) -> T) -> T {
            f(&self.state.lock().unwrap())
        }
    }

    async fn answer(
        state: &Mutex<VaultState>,
        base: &str,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let reply = |status: u16, body: String| {
            let mut r = Response::new(body::full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        };
        if path == format!("/{TENANT}/oauth2/v2.0/token") {
            let form: HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let mut s = state.lock().unwrap();
            s.token_requests.push(form.clone());
            if let Some((status, body)) = s.token_answer.clone() {
                return reply(status, body);
            }
            let token = format!("KVTOKEN-{}", s.token_requests.len());
            s.tokens.insert(token.clone(), ());
            let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": s.expires_in});
            return reply(200, body.to_string());
        }
        if path == format!("/secrets/{NAME}") && query == "api-version=7.4" {
            let delay = state.lock().unwrap().delay;
            tokio::time::sleep(delay).await;
            let mut s = state.lock().unwrap();
            s.secret_reads += 1;
            let valid = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| s.tokens.contains_key(t));
            if !valid {
                return reply(401, r#"{"error":{"code":"Unauthorized"}}"#.into());
            }
            if let Some(status) = s.vault_status {
                let body = r#"{"error":{"code":"Forbidden","message":"Caller is not authorized","innererror":{"code":"ForbiddenByRbac"}}}"#;
                return reply(status, body.into());
            }
            let body = serde_json::json!({
                "value": s.value,
                "id": format!("{base}/secrets/{NAME}/v{:031}", s.version),
                "attributes": {"enabled": true, "created": 1_700_000_000u64, "updated": 1_700_000_000u64 + u64::from(s.version)},
            });
            return reply(200, body.to_string());
        }
        reply(404, r#"{"error":{"code":"SecretNotFound"}}"#.into())
    }

    #[tokio::test]
    async fn reads_the_secret_with_a_workload_identity_token() {
        let vault = Vault::start("SYSKEY-kv-1").await;
        let client = KeyVaultClient::new(vault.settings());
        let secret = client.fetch().await.unwrap();
        assert_eq!(secret.value, "SYSKEY-kv-1");
        assert!(secret.value.is_sensitive());
        assert_eq!(secret.version.as_deref(), Some(&*format!("v{:031}", 1)));
        assert_eq!(secret.updated, Some(1_700_000_001));
        assert!(!format!("{secret:?}").contains("SYSKEY"));
        let requests = vault.get(|s| s.token_requests.clone());
        assert_eq!(requests.len(), 1);
        let form = &requests[0];
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], CLIENT);
        assert_eq!(form["scope"], "https://vault.azure.net/.default");
        assert_eq!(form["client_assertion_type"], ASSERTION_TYPE);
        assert_eq!(form["client_assertion"], "ASSERTION-one");

        // The token is cached: a second read asks Entra nothing.
        client.fetch().await.unwrap();
        assert_eq!(vault.get(|s| s.token_requests.len()), 1);
        assert_eq!(vault.get(|s| s.secret_reads), 2);
    }

    #[tokio::test]
    async fn short_lived_tokens_are_renewed_and_the_assertion_is_read_each_time() {
        let vault = Vault::start("SYSKEY-kv-1").await;
        vault.set(|s| s.expires_in = 2);
        let client = KeyVaultClient::new(vault.settings());
        client.fetch().await.unwrap();
        client.fetch().await.unwrap();
        // Valid for 2 s, renewed after half of that.
        assert_eq!(vault.get(|s| s.token_requests.len()), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        std::fs::write(&vault.assertion_file, "ASSERTION-two").unwrap();
        client.fetch().await.unwrap();
        let requests = vault.get(|s| s.token_requests.clone());
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1]["client_assertion"], "ASSERTION-two");

        // No lifetime at all: the token is used once.
        vault.set(|s| s.expires_in = 0);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        client.fetch().await.unwrap();
        client.fetch().await.unwrap();
        assert_eq!(vault.get(|s| s.token_requests.len()), 4);
    }

    #[tokio::test]
    async fn a_refused_cached_token_is_replaced_once() {
        let vault = Vault::start("SYSKEY-kv-1").await;
        let client = KeyVaultClient::new(vault.settings());
        client.fetch().await.unwrap();
        vault.set(|s| s.tokens.clear());
        client.fetch().await.unwrap();
        assert_eq!(vault.get(|s| s.token_requests.len()), 2);
    }

    #[tokio::test]
    async fn failures_are_classified_and_explained_without_secrets() {
        let vault = Vault::start("SYSKEY-kv-1").await;
        let client = KeyVaultClient::new(vault.settings());

        vault.set(|s| s.vault_status = Some(403));
        let e = client.fetch().await.unwrap_err();
        assert_eq!(e.outcome(), "denied");
        let text = e.to_string();
        assert!(
            text.contains(&format!("the identity {CLIENT} may not read secret {NAME}")),
            "{text}"
        );
        assert!(text.contains("Key Vault Secrets User"), "{text}");
        assert!(text.contains("ForbiddenByRbac"), "{text}");

        vault.set(|s| s.vault_status = Some(503));
        let e = client.fetch().await.unwrap_err();
        assert_eq!(e.outcome(), "unreachable");
        assert!(e.to_string().contains("503"), "{e}");

        vault.set(|s| s.vault_status = None);
        vault.set(|s| s.value = "two words".into());
        let e = client.fetch().await.unwrap_err();
        assert_eq!(e.outcome(), "invalid");
        assert!(!e.to_string().contains("two words"), "{e}");

        // Entra refuses the assertion: the error names the federated credential and the
        // error codes, never the description (which may quote the request).
        vault.set(|s| {
            s.tokens.clear();
            s.token_answer = Some((
                400,
                r#"{"error":"invalid_client","error_description":"AADSTS700213: DESCRIPTION-CANARY","error_codes":[700213]}"#.into(),
            ));
        });
        let e = client.fetch().await.unwrap_err();
        assert_eq!(e.outcome(), "denied");
        let text = e.to_string();
        assert!(text.contains("federated credential"), "{text}");
        assert!(text.contains("invalid_client AADSTS700213"), "{text}");
        assert!(!text.contains("CANARY"), "{text}");
        assert!(!text.contains("ASSERTION"), "{text}");

        vault.set(|s| s.token_answer = Some((200, r#"{"access_token": 5}"#.into())));
        assert_eq!(client.fetch().await.unwrap_err().outcome(), "invalid");

        std::fs::remove_file(&vault.assertion_file).unwrap();
        let e = client.fetch().await.unwrap_err();
        assert!(e.to_string().contains("token file"), "{e}");
        std::fs::write(&vault.assertion_file, "ASSERTION-one").unwrap();

        let mut settings = vault.settings();
        settings.vault_url = Url::parse("http://127.0.0.1:9").unwrap();
        settings.authority_host = Url::parse("http://127.0.0.1:9/").unwrap();
        let e = KeyVaultClient::new(settings).fetch().await.unwrap_err();
        assert_eq!(e.outcome(), "unreachable");
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }

    #[test]
    fn versions_come_from_the_secret_id() {
        assert_eq!(
            version_of("https://v.vault.azure.net/secrets/name/0123abc").as_deref(),
            Some("0123abc")
        );
        assert_eq!(version_of("https://v.vault.azure.net/secrets/name"), None);
        assert_eq!(version_of("https://v.vault.azure.net/keys/name/1"), None);
        assert_eq!(version_of("not a url"), None);
    }

    #[test]
    fn identity_defaults_come_from_the_workload_identity_environment() {
        let config: KeyVaultConfig =
            serde_yaml::from_str("vaultUrl: https://my-vault.vault.azure.net\nsecretName: s\n")
                .unwrap();
        fn lookup(
            env: &HashMap<&'static str, &'static str>,
        ) -> impl Fn(&str) -> Option<String> + use<> {
            let env = env.clone();
            move |name| env.get(name).map(|v| v.to_string())
        }
        let env: HashMap<&'static str, &'static str> = [
            ("AZURE_CLIENT_ID", CLIENT),
            ("AZURE_TENANT_ID", TENANT),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ]
        .into();
        let s = KeyVaultSettings::resolve(&config, lookup(&env)).unwrap();
        assert_eq!(s.client_id, CLIENT);
        assert_eq!(
            s.token_url(),
            format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
        );
        assert_eq!(
            s.secret_url(),
            "https://my-vault.vault.azure.net/secrets/s?api-version=7.4"
        );
        assert_eq!(s.refresh, Duration::from_secs(300));

        let mut with_authority = env.clone();
        with_authority.insert("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us");
        let s = KeyVaultSettings::resolve(&config, lookup(&with_authority)).unwrap();
        assert_eq!(
            s.token_url(),
            format!("https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token")
        );
        with_authority.insert("AZURE_AUTHORITY_HOST", "http://login.example/");
        assert!(KeyVaultSettings::resolve(&config, lookup(&with_authority)).is_err());

        let mut missing = env.clone();
        missing.remove("AZURE_CLIENT_ID");
        let e = KeyVaultSettings::resolve(&config, lookup(&missing)).unwrap_err();
        assert!(e.contains("AZURE_CLIENT_ID"), "{e}");
        assert!(e.contains("azure.workload.identity/use"), "{e}");
        let mut missing = env.clone();
        missing.remove("AZURE_FEDERATED_TOKEN_FILE");
        let e = KeyVaultSettings::resolve(&config, lookup(&missing)).unwrap_err();
        assert!(e.contains("AZURE_FEDERATED_TOKEN_FILE"), "{e}");

        // The config wins over the environment.
        let mut config = config;
        config.client_id = Some("11111111-1111-1111-1111-111111111111".into());
        let s = KeyVaultSettings::resolve(&config, lookup(&env)).unwrap();
        assert_eq!(s.client_id, "11111111-1111-1111-1111-111111111111");
    }
}
