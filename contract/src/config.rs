//! The sidecar's configuration: the contract between the operator (which renders it into a
//! ConfigMap) and the sidecar (which reads it). One type, serialized as YAML or JSON;
//! `examples/sidecar/config.yaml` is a complete, commented example.
//!
//! The config holds no secrets: the system key and the session keys are read from files
//! (mounted Secrets) named here, or the system key from Key Vault with a workload identity
//! whose token is a file too, so the ConfigMap can be shown to anyone.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::paths::{ADMIN_PORT, PUBLIC_PORT};

/// The Functions MCP extension's Streamable HTTP path.
pub const DEFAULT_UPSTREAM_PATH: &str = "/runtime/webhooks/mcp";
/// The header the Functions host reads a key from.
pub const DEFAULT_KEY_HEADER: &str = "x-functions-key";

/// The whole sidecar configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where MCP clients connect (behind the Ingress). Default `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Health, metrics and the key's status (`/livez`, `/readyz`, `/metrics`, `/keyz`).
    /// Default `0.0.0.0:9090`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Scheme and host clients use, e.g. `https://mcp.example.com`. Every URL the gateway
    /// hands out (resource metadata, SSE endpoint) is built from this, never from `Host`.
    pub public_base_url: Url,
    /// Prefix of this gateway's routes: `<prefix>/mcp`, `<prefix>/sse`, `<prefix>/message`.
    /// `/` for none.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    pub upstream: UpstreamConfig,
    pub system_key: SystemKeyConfig,
    pub auth: AuthConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Browser origins allowed to call the gateway (CORS and DNS-rebinding protection).
    /// Requests without `Origin` (non-browser clients) are always allowed; the public base
    /// URL's own origin is always allowed; `*` allows every origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How often a quiet event stream toward a client gets an SSE comment, so proxies and load
    /// balancers with idle limits (often 60 s) keep it open and a vanished client is noticed.
    /// A request that has had no response headers from the upstream for this long is answered
    /// with an event stream the gateway opens itself (see the README's "Long tool calls").
    /// Default 20.
    #[serde(default = "default_client_keep_alive")]
    pub client_keep_alive_seconds: u32,
    /// Extra CA certificates (PEM) trusted, besides the public web roots, by every connection
    /// the gateway opens: to the upstream, the OIDC issuer and its key set, the facade's IdP
    /// and Key Vault. For peers behind a private CA (an App Service Environment's internal
    /// certificate, a company IdP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_ca_file: Option<PathBuf>,
}

/// An MCP transport the gateway exposes (the operator maps the CRD's own enum onto this).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// Legacy HTTP+SSE (MCP 2024-11-05).
    Sse,
}

/// The Function App.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the Function App (scheme, host, optional port).
    pub url: Url,
    /// Streamable HTTP path; legacy SSE uses `<path>/sse` and `<path>/message`.
    #[serde(default = "default_upstream_path")]
    pub path: String,
    #[serde(default = "default_transports")]
    pub transports: Vec<Transport>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u32,
    /// Time to first byte: until the upstream's response headers arrive; exceeded → 504. The
    /// Functions host writes no headers until a tool's result is ready, and Azure's front end
    /// allows 230 s, so that is the default.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_seconds: u32,
    /// A streamed response silent for longer than this is closed.
    #[serde(default = "default_stream_idle_timeout")]
    pub stream_idle_timeout_seconds: u32,
    /// Extra CA certificates (PEM) trusted for an https upstream, besides the public web
    /// roots: for a Function host behind a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Where the Functions system key is read from (exactly one of `file` or `keyVault`), and
/// how it is sent upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemKeyConfig {
    /// A file holding the key (a mounted Secret or CSI volume); re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Read the key from Azure Key Vault directly, with Azure workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault: Option<KeyVaultConfig>,
    /// Request header the key is sent in. Default `x-functions-key`.
    #[serde(default = "default_key_header")]
    pub header: String,
}

/// A Key Vault secret holding the system key, read with a workload identity token
/// (client assertion from a projected service account token file). The identity fields
/// default to the variables the AKS workload identity webhook injects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyVaultConfig {
    /// The vault, e.g. `https://my-vault.vault.azure.net` (https; http only on loopback).
    pub vault_url: Url,
    /// The secret, e.g. `host--systemKey--mcp-095extension`.
    pub secret_name: String,
    /// How often the secret is read again. Default 300, at least 5. A key the Function App
    /// rejects also triggers a (rate-limited) read.
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u32,
    /// Client ID of the identity. Default: env `AZURE_CLIENT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Entra tenant of the identity. Default: env `AZURE_TENANT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Entra authority. Default: env `AZURE_AUTHORITY_HOST`, else
    /// `https://login.microsoftonline.com/` (https; http only on loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<Url>,
    /// The federated (service account) token file, re-read for every token request.
    /// Default: env `AZURE_FEDERATED_TOKEN_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// The least `keyVault.refreshSeconds`.
pub const MIN_KEY_VAULT_REFRESH_SECONDS: u32 = 5;

/// Whether `url` is an https URL, or an http URL on a loopback host (local tests only).
pub fn https_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// A Key Vault secret name: 1-127 letters, digits and `-`.
pub fn is_key_vault_secret_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A client ID, tenant ID or tenant domain: safe as one URL path segment.
pub fn is_id_segment(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.starts_with('.')
}

/// How clients authenticate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "mode")]
pub enum AuthConfig {
    /// Bearer JWTs from an OpenID Connect provider.
    Oidc(OidcConfig),
    /// The gateway is the clients' authorization server (DCR, Client ID Metadata
    /// Documents, PKCE) and signs users in at an upstream IdP such as Entra ID.
    AuthorizationServer(FacadeConfig),
    /// No client authentication (the system key stays hidden all the same).
    Anonymous,
}

/// The authorization-server facade.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FacadeConfig {
    /// Where users sign in.
    pub idp: IdpConfig,
    /// A file of base64 32-byte keys, one per line: the first signs tokens and seals
    /// registrations, codes and refresh tokens; all are accepted (rotation: prepend a new
    /// key, drop the old one after the refresh-token lifetime).
    pub keys_file: PathBuf,
    /// Scopes the gateway grants and requires (advertised in its metadata).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime of the access tokens it issues. Default 3600.
    #[serde(default = "default_access_token_ttl")]
    pub access_token_ttl_seconds: u64,
    /// Lifetime of a refresh token (each use returns a new one). Default 7 days.
    #[serde(default = "default_refresh_token_ttl")]
    pub refresh_token_ttl_seconds: u64,
    /// If not empty, only users of these Entra tenants (`tid`) may sign in.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    #[serde(default)]
    pub client_metadata_documents: ClientMetadataDocuments,
}

/// The upstream identity provider the facade signs users in with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdpConfig {
    /// The IdP's issuer; its discovery document names the endpoints and keys.
    pub issuer: String,
    /// The gateway's client registration at the IdP.
    pub client_id: String,
    /// A file holding that registration's client secret.
    pub client_secret_file: PathBuf,
    /// Scopes requested at the IdP. Default `openid profile`.
    #[serde(default = "default_idp_scopes")]
    pub scopes: Vec<String>,
    /// `Entra`: never send RFC 8707 `resource` (Entra v2 rejects it) and identify users by
    /// `tid`/`oid`. `Generic`: a standard OpenID provider.
    #[serde(default)]
    pub preset: IdpPreset,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdpPreset {
    #[default]
    Entra,
    Generic,
}

/// Client ID Metadata Documents: a client whose `client_id` is an HTTPS URL describing it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientMetadataDocuments {
    /// Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// TEST ONLY: allow documents on loopback and private addresses (SSRF guard off).
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Extra CA certificates (PEM) trusted when fetching documents (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientMetadataDocuments {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_addresses: false,
            ca_file: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_access_token_ttl() -> u64 {
    3600
}
fn default_refresh_token_ttl() -> u64 {
    7 * 24 * 3600
}
fn default_idp_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

/// The placeholder a multi-tenant issuer carries for the token's tenant, as Entra's
/// `organizations` discovery document writes it.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Token validation settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// Exact `iss` value; `<issuer>/.well-known/openid-configuration` names the JWKS. A
    /// multi-tenant Entra app writes the template `https://login.microsoftonline.com/{tenantid}/v2.0`:
    /// a token's `iss` must then be the template with the token's own `tid`, that `tid` must
    /// be in `allowedTenants` (required), and discovery is read from the `organizations` one.
    pub issuer: String,
    /// Accepted `aud` values (a trailing slash on either side is tolerated).
    pub audiences: Vec<String>,
    /// Scopes every token must carry (`scp`, `scope` or `roles`); also advertised in
    /// resource metadata and in `WWW-Authenticate`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// If not empty, the `tid` claim must be one of these.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// Skip discovery and fetch keys from here.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// Clock skew tolerated on `exp` and `nbf`. Default 60.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

/// A multi-tenant `{tenantid}` issuer holds the placeholder once and comes with the tenants
/// to admit: Entra signs every tenant's tokens with the same keys.
fn check_tenant_template(
    issuer: &str,
    allowed_tenants: &[String],
    field: &str,
) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    match issuer.matches(TENANT_PLACEHOLDER).count() {
        0 => Ok(()),
        1 if allowed_tenants.is_empty() => invalid(format!(
            "auth.allowedTenants must list the tenants to admit when {field} is a {{tenantid}} template: Entra signs every tenant's tokens with the same keys"
        )),
        1 => Ok(()),
        _ => invalid(format!("{field} may hold {{tenantid}} once")),
    }
}

impl OidcConfig {
    /// Whether the issuer is a multi-tenant template (see [`OidcConfig::issuer`]).
    pub fn is_multi_tenant(&self) -> bool {
        self.issuer.contains(TENANT_PLACEHOLDER)
    }

    /// The issuer discovery, metadata and clients use: the template's tenant is Entra's
    /// `organizations` (work and school accounts of any tenant).
    pub fn discovery_issuer(&self) -> String {
        self.issuer.replace(TENANT_PLACEHOLDER, "organizations")
    }
}

/// Keys that seal the `Mcp-Session-Id` handed to clients, binding each upstream session to
/// the subject that opened it, without shared state between replicas.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionConfig {
    /// A file of base64 32-byte keys, one per line: the first seals, all open (so the
    /// previous key keeps working through a rotation). Without it each process makes a
    /// random key, which is right for one replica only.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
}

/// Request limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted; larger → 413. Default 4 MiB.
    #[serde(default = "default_max_body")]
    pub max_request_body_bytes: usize,
    /// Largest `Authorization` header accepted; larger tokens are refused unparsed.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body_bytes: default_max_body(),
            max_token_bytes: default_max_token(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], PUBLIC_PORT))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], ADMIN_PORT))
}
fn default_path_prefix() -> String {
    "/".into()
}
fn default_upstream_path() -> String {
    DEFAULT_UPSTREAM_PATH.into()
}
fn default_transports() -> Vec<Transport> {
    vec![Transport::StreamableHttp, Transport::Sse]
}
fn default_connect_timeout() -> u32 {
    5
}
/// Azure's front end ends a request after 230 s.
pub const DEFAULT_RESPONSE_TIMEOUT_SECONDS: u32 = 230;

fn default_response_timeout() -> u32 {
    DEFAULT_RESPONSE_TIMEOUT_SECONDS
}
fn default_client_keep_alive() -> u32 {
    DEFAULT_CLIENT_KEEP_ALIVE_SECONDS
}

/// Below the 60 s idle limit common to ingress controllers, with room for one lost beat.
pub const DEFAULT_CLIENT_KEEP_ALIVE_SECONDS: u32 = 20;
fn default_stream_idle_timeout() -> u32 {
    3600
}
fn default_key_header() -> String {
    DEFAULT_KEY_HEADER.into()
}
fn default_refresh_seconds() -> u32 {
    300
}
fn default_leeway() -> u64 {
    60
}
fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_max_token() -> usize {
    16 * 1024
}

/// A configuration mistake, phrased as what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl KeyVaultConfig {
    /// The checks that need no environment; the identity defaults are resolved at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !https_or_loopback(&self.vault_url) {
            return invalid(
                "systemKey.keyVault.vaultUrl must be an https URL such as https://my-vault.vault.azure.net",
            );
        }
        if self.vault_url.path() != "/"
            || self.vault_url.query().is_some()
            || self.vault_url.fragment().is_some()
            || !self.vault_url.username().is_empty()
            || self.vault_url.password().is_some()
        {
            return invalid(
                "systemKey.keyVault.vaultUrl must be the vault's base URL, with no path, query or credentials",
            );
        }
        if !is_key_vault_secret_name(&self.secret_name) {
            return invalid(
                "systemKey.keyVault.secretName must be a Key Vault secret name: 1-127 letters, digits and '-'",
            );
        }
        if self.refresh_seconds < MIN_KEY_VAULT_REFRESH_SECONDS {
            return invalid("systemKey.keyVault.refreshSeconds must be at least 5");
        }
        if self
            .client_id
            .as_deref()
            .is_some_and(|c| c.is_empty() || !is_id_segment(c))
        {
            return invalid(
                "systemKey.keyVault.clientId must be the identity's client ID (a GUID)",
            );
        }
        if self.tenant_id.as_deref().is_some_and(|t| !is_id_segment(t)) {
            return invalid("systemKey.keyVault.tenantId must be a tenant ID (a GUID) or domain");
        }
        if self
            .authority_host
            .as_ref()
            .is_some_and(|a| !https_or_loopback(a) || a.query().is_some())
        {
            return invalid(
                "systemKey.keyVault.authorityHost must be an https URL such as https://login.microsoftonline.com/",
            );
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return invalid("systemKey.keyVault.tokenFile must not be empty");
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a YAML (or JSON) config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Config = serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot; the operator runs the same check before rendering.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !matches!(self.public_base_url.scheme(), "https" | "http")
            || self.public_base_url.host().is_none()
        {
            return invalid("publicBaseUrl must be an http(s) URL such as https://mcp.example.com");
        }
        if self.public_base_url.path() != "/"
            || self.public_base_url.query().is_some()
            || self.public_base_url.fragment().is_some()
        {
            return invalid(
                "publicBaseUrl must have no path, query or fragment; put the path in pathPrefix",
            );
        }
        // Public URLs are the prefix written as is, so it must need no escaping and no
        // normalization (the CRD's rule, plus no `.` segment).
        if !self.path_prefix.starts_with('/')
            || !self
                .path_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
            || self.path_prefix.contains("..")
            || self.path_prefix.contains("//")
            || self.path_prefix.split('/').any(|segment| segment == ".")
        {
            return invalid(
                "pathPrefix must start with '/' and contain only letters, digits, '-', '_', '.', \
                 '~' and '/', without '..', '//' or '.' segments, such as /weather",
            );
        }
        if !matches!(self.upstream.url.scheme(), "https" | "http") {
            return invalid("upstream.url must be an http(s) URL");
        }
        // The key belongs in systemKey: a `?code=`, a password or a path here would be
        // shown wherever the config is (a ConfigMap anyone with read access sees). The
        // message never repeats the URL.
        let url = &self.upstream.url;
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
        {
            return invalid(
                "upstream.url must be the app's base URL (scheme, host, port), such as https://my-app.azurewebsites.net: the key belongs in systemKey and the MCP path in upstream.path",
            );
        }
        // Upstream URIs are built from it and must parse.
        if !self.upstream.path.starts_with('/')
            || !self
                .upstream
                .path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%/".contains(&b))
            || self.upstream.path.contains("..")
        {
            return invalid(
                "upstream.path must be an absolute path of URL path characters without '..', \
                 such as /runtime/webhooks/mcp",
            );
        }
        for (name, value) in [
            (
                "upstream.connectTimeoutSeconds",
                self.upstream.connect_timeout_seconds,
            ),
            (
                "upstream.responseTimeoutSeconds",
                self.upstream.response_timeout_seconds,
            ),
            (
                "upstream.streamIdleTimeoutSeconds",
                self.upstream.stream_idle_timeout_seconds,
            ),
            ("clientKeepAliveSeconds", self.client_keep_alive_seconds),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.upstream.transports.is_empty() {
            return invalid("upstream.transports needs at least one transport");
        }
        // The proxy builds `<origin of upstream.url><upstream.path>…` for every request; the
        // URL parser takes hosts (with '`', say) that the HTTP client's does not.
        let origin = self.upstream.url.origin().ascii_serialization();
        if format!("{origin}{}", self.upstream.path)
            .parse::<http::Uri>()
            .is_err()
        {
            return invalid("upstream.url must be a URL the HTTP client can request");
        }
        if http::HeaderName::from_bytes(self.system_key.header.as_bytes()).is_err() {
            return invalid("systemKey.header must be a valid header name");
        }
        match (&self.system_key.file, &self.system_key.key_vault) {
            (Some(_), None) => {}
            (None, Some(kv)) => kv.validate()?,
            _ => {
                return invalid(
                    "systemKey needs exactly one of file (a mounted key file) or keyVault (read from Azure Key Vault)",
                );
            }
        }
        if let AuthConfig::Oidc(oidc) = &self.auth {
            if oidc.issuer.is_empty() {
                return invalid("auth.issuer must be set");
            }
            if oidc.audiences.is_empty() {
                return invalid("auth.audiences needs at least one audience");
            }
            check_tenant_template(&oidc.issuer, &oidc.allowed_tenants, "auth.issuer")?;
        }
        if let AuthConfig::AuthorizationServer(facade) = &self.auth {
            let issuer = Url::parse(&facade.idp.issuer).ok();
            let loopback = issuer
                .as_ref()
                .and_then(|u| u.host_str())
                .is_some_and(|h| matches!(h, "127.0.0.1" | "localhost" | "[::1]"));
            match issuer.as_ref().map(Url::scheme) {
                Some("https") => {}
                Some("http") if loopback => {}
                _ => {
                    return invalid(
                        "auth.idp.issuer must be an https URL (http only on loopback, for tests)",
                    );
                }
            }
            check_tenant_template(
                &facade.idp.issuer,
                &facade.allowed_tenants,
                "auth.idp.issuer",
            )?;
            if facade.idp.client_id.is_empty() {
                return invalid("auth.idp.clientId must be set");
            }
            if !(60..=86_400).contains(&facade.access_token_ttl_seconds) {
                return invalid("auth.accessTokenTtlSeconds must be between 60 and 86400");
            }
            if !(300..=90 * 86_400).contains(&facade.refresh_token_ttl_seconds) {
                return invalid("auth.refreshTokenTtlSeconds must be between 300 and 7776000");
            }
        }
        Ok(())
    }

    /// The prefix without a trailing slash (`""` for `/`), ready to prepend to route names.
    pub fn prefix(&self) -> &str {
        self.path_prefix.trim_end_matches('/')
    }

    /// The facade's issuer: the public base URL plus the prefix, no trailing slash.
    pub fn issuer_url(&self) -> String {
        self.public_url(self.prefix())
    }

    /// The public MCP endpoint URL, which is also the OAuth resource identifier.
    pub fn resource_url(&self) -> String {
        self.public_url(&format!("{}/mcp", self.prefix()))
    }

    /// Where this resource's Protected Resource Metadata is served (path-inserted form).
    pub fn resource_metadata_url(&self) -> String {
        self.public_url(&format!(
            "/.well-known/oauth-protected-resource{}/mcp",
            self.prefix()
        ))
    }

    /// A public URL for a path on this gateway.
    pub fn public_url(&self, path: &str) -> String {
        let base = self.public_base_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    /// Whether a transport is exposed.
    pub fn serves(&self, transport: Transport) -> bool {
        self.upstream.transports.contains(&transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/sidecar/config.yaml");
        Config::load(&path).expect("the example config is valid")
    }

    #[test]
    fn example_config_loads_and_builds_public_urls() {
        let config = example();
        assert_eq!(config.resource_url(), "https://mcp.example.com/weather/mcp");
        assert_eq!(
            config.resource_metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/weather/mcp"
        );
        assert!(matches!(config.auth, AuthConfig::Oidc(_)));
    }

    #[test]
    fn root_prefix_has_no_double_slash() {
        let mut config = example();
        config.path_prefix = "/".into();
        assert_eq!(config.resource_url(), "https://mcp.example.com/mcp");
        assert_eq!(
            config.resource_metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn round_trips_through_yaml() {
        let config = example();
        let yaml = serde_yaml::to_string(&config).unwrap();
        let back: Config = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(config, back);
    }

    #[test]
    fn an_upstream_url_carrying_a_key_or_a_path_is_refused_without_repeating_it() {
        for url in [
            "https://app.azurewebsites.net/runtime/webhooks/mcp?code=SYSKEY-x",
            "https://app.azurewebsites.net/?code=SYSKEY-x",
            "https://u:SYSKEY-x@app.azurewebsites.net",
            "https://app.azurewebsites.net/#SYSKEY-x",
            "https://app.azurewebsites.net/runtime/webhooks/mcp",
        ] {
            let mut config = example();
            config.upstream.url = Url::parse(url).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("base URL"), "{url}: {err}");
            assert!(!err.contains("SYSKEY"), "{err}");
        }
        let mut config = example();
        config.upstream.url = Url::parse("http://127.0.0.1:7071").unwrap();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rejects_mistakes_with_a_message() {
        let mut config = example();
        config.public_base_url = Url::parse("https://mcp.example.com/x").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("pathPrefix"), "{err}");

        let mut config = example();
        config.path_prefix = "/a/../b".into();
        assert!(config.validate().is_err());

        let mut config = example();
        config.system_key.header = "bad header".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_multi_tenant_issuer_needs_its_tenants() {
        let yaml = |tenants: &str| {
            format!(
                "publicBaseUrl: https://a.example\nupstream: {{url: https://b.example}}\nsystemKey: {{file: /k}}\nauth: {{mode: Oidc, issuer: 'https://login.microsoftonline.com/{{tenantid}}/v2.0', audiences: [x]{tenants}}}\n"
            )
        };
        let config: Config = serde_yaml::from_str(&yaml("")).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("allowedTenants"), "{err}");
        let config: Config = serde_yaml::from_str(&yaml(
            ", allowedTenants: [72f988bf-86f1-41af-91ab-2d7cd011db47]",
        ))
        .unwrap();
        config.validate().unwrap();
        let AuthConfig::Oidc(oidc) = &config.auth else {
            panic!("oidc")
        };
        assert!(oidc.is_multi_tenant());
        assert_eq!(
            oidc.discovery_issuer(),
            "https://login.microsoftonline.com/organizations/v2.0"
        );
    }

    #[test]
    fn timeouts_default_to_what_the_functions_host_needs() {
        let config: Config = serde_yaml::from_str(
            "publicBaseUrl: https://a.example\nupstream: {url: https://b.example}\nauth: {mode: Anonymous}\nsystemKey: {file: /k}\n",
        )
        .unwrap();
        config.validate().unwrap();
        // Azure's front end ends a request at 230 s, and the host sends nothing before then.
        assert_eq!(config.upstream.response_timeout_seconds, 230);
        assert_eq!(config.upstream.connect_timeout_seconds, 5);
        assert_eq!(config.upstream.stream_idle_timeout_seconds, 3600);
        // Under the common 60 s ingress idle limit, with room for a lost beat.
        assert_eq!(config.client_keep_alive_seconds, 20);
        for zero in [
            "upstream.responseTimeoutSeconds",
            "upstream.connectTimeoutSeconds",
            "upstream.streamIdleTimeoutSeconds",
            "clientKeepAliveSeconds",
        ] {
            let mut c = config.clone();
            match zero {
                "upstream.responseTimeoutSeconds" => c.upstream.response_timeout_seconds = 0,
                "upstream.connectTimeoutSeconds" => c.upstream.connect_timeout_seconds = 0,
                "upstream.streamIdleTimeoutSeconds" => c.upstream.stream_idle_timeout_seconds = 0,
                _ => c.client_keep_alive_seconds = 0,
            }
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(zero) && err.contains("at least 1"), "{err}");
        }
    }

    fn key_vault() -> KeyVaultConfig {
        serde_yaml::from_str(
            "vaultUrl: https://my-vault.vault.azure.net\nsecretName: host--systemKey--mcp-095extension\n",
        )
        .unwrap()
    }

    #[test]
    fn key_vault_source_parses_with_defaults() {
        let config: Config = serde_yaml::from_str(
            "publicBaseUrl: https://a.example\nupstream: {url: https://b.example}\nauth: {mode: Anonymous}\nsystemKey:\n  keyVault:\n    vaultUrl: https://my-vault.vault.azure.net\n    secretName: host--systemKey--mcp-095extension\n    clientId: 00000000-1111-2222-3333-444444444444\n",
        )
        .unwrap();
        config.validate().unwrap();
        let kv = config.system_key.key_vault.as_ref().unwrap();
        assert_eq!(kv.refresh_seconds, 300);
        assert_eq!(kv.tenant_id, None);
        assert_eq!(config.system_key.file, None);
        assert_eq!(config.system_key.header, "x-functions-key");
        // Unset optional fields are not rendered.
        let yaml = serde_yaml::to_string(&config.system_key).unwrap();
        assert!(!yaml.contains("file"), "{yaml}");
        assert!(!yaml.contains("tenantId"), "{yaml}");
    }

    #[test]
    fn exactly_one_key_source() {
        let mut config = example();
        config.system_key.key_vault = Some(key_vault());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("exactly one of file"), "{err}");
        config.system_key.file = None;
        config.validate().unwrap();
        config.system_key.key_vault = None;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("exactly one of file"), "{err}");
    }

    #[test]
    fn key_vault_mistakes_become_messages() {
        let check = |patch: fn(&mut KeyVaultConfig)| {
            let mut kv = key_vault();
            patch(&mut kv);
            kv.validate().map_err(|e| e.to_string())
        };
        check(|_| {}).unwrap();
        assert!(
            check(|k| k.vault_url = Url::parse("http://vault.example").unwrap())
                .unwrap_err()
                .contains("https")
        );
        check(|k| k.vault_url = Url::parse("http://127.0.0.1:8200").unwrap()).unwrap();
        check(|k| k.vault_url = Url::parse("http://localhost:8200").unwrap()).unwrap();
        check(|k| k.vault_url = Url::parse("http://[::1]:8200").unwrap()).unwrap();
        assert!(
            check(|k| k.vault_url = Url::parse("https://v.example/x").unwrap())
                .unwrap_err()
                .contains("no path")
        );
        assert!(
            check(|k| k.secret_name = "a_b".into())
                .unwrap_err()
                .contains("secretName")
        );
        assert!(check(|k| k.secret_name = String::new()).is_err());
        assert!(
            check(|k| k.refresh_seconds = 4)
                .unwrap_err()
                .contains("at least 5")
        );
        check(|k| k.refresh_seconds = 5).unwrap();
        assert!(
            check(|k| k.tenant_id = Some("a/b".into()))
                .unwrap_err()
                .contains("tenantId")
        );
        assert!(
            check(|k| k.client_id = Some("x?y".into()))
                .unwrap_err()
                .contains("clientId")
        );
        assert!(
            check(|k| k.authority_host = Some(Url::parse("http://login.example/").unwrap()))
                .unwrap_err()
                .contains("authorityHost")
        );
        check(|k| k.authority_host = Some(Url::parse("http://127.0.0.1:9/").unwrap())).unwrap();
    }

    #[test]
    fn paths_must_make_valid_urls() {
        // Found by fuzzing: an upstream path with a quote, or a host with a backtick,
        // validated, and every request then panicked building the upstream URI.
        for path in [
            "/a\"b",
            "/runtime webhooks/mcp",
            "/a?b",
            "/a#b",
            "/é",
            "/a/../b",
        ] {
            let mut config = example();
            config.upstream.path = path.into();
            assert!(config.validate().is_err(), "{path:?}");
        }
        // Public URLs must read back as written.
        for prefix in ["/a b", "/a%20b", "/a?b", "/./a", "/a/.", "/é"] {
            let mut config = example();
            config.path_prefix = prefix.into();
            assert!(config.validate().is_err(), "{prefix:?}");
        }
        let mut config = example();
        config.upstream.url = Url::parse("https://fn`app.example").unwrap();
        assert!(config.validate().is_err());
        let mut config = example();
        config.public_base_url = Url::parse("https://mcp.example.com#x").unwrap();
        assert!(config.validate().is_err());
        for (prefix, path) in [("/", "/"), ("/a.b/c_d~e-f/", "/api/mcp;v=1/x@y")] {
            let mut config = example();
            config.path_prefix = prefix.into();
            config.upstream.path = path.into();
            assert!(config.validate().is_ok(), "{prefix:?} {path:?}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_yaml::from_str::<Config>(
            "publicBaseUrl: https://a.example\nupstream: {url: https://b.example}\nsystemKey: {file: /k}\nauth: {mode: Anonymous}\nbogus: 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
