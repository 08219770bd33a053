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

pub use crate::observability::{
    AuditConfig, ClientAddress, DEFAULT_FORWARDED_HEADER, Observability, TracingConfig,
};
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
    /// Who may call which tool. Absent: every authenticated caller may call every tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_access: Option<ToolAccess>,
    /// Request rates per caller, and per caller and tool. Absent: no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    /// Tell the Function who is calling, in a header the gateway signs. Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_identity: Option<CallerIdentity>,
    /// Traces and audit records. Default: audit records on, no traces.
    #[serde(default)]
    pub observability: Observability,
    /// Who the client is behind proxies. Absent: the connection's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<ClientAddress>,
}

/// The header a client can never forge: never a client's token, and any client-sent header
/// of this name is removed.
pub const DEFAULT_CALLER_IDENTITY_HEADER: &str = "x-mcp-gateway-caller";

/// Headers the caller-identity header may not be: HTTP's own and hop-by-hop ones, MCP's, the
/// system key's default, and the request id the gateway sets.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "cookie",
    "origin",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "x-functions-key",
    "x-request-id",
];

/// The caller's identity for the Function: a short-lived JWT (EdDSA) the gateway signs with
/// a key derived from the session keys file, verifiable with the key set it publishes at
/// `<prefix>/caller-identity/jwks`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallerIdentity {
    /// Default `x-mcp-gateway-caller`.
    #[serde(default = "default_caller_identity_header")]
    pub header: String,
    /// Lifetime of one assertion. Default 300, at most 3600.
    #[serde(default = "default_caller_identity_ttl")]
    pub ttl_seconds: u32,
}

fn default_caller_identity_header() -> String {
    DEFAULT_CALLER_IDENTITY_HEADER.into()
}
fn default_caller_identity_ttl() -> u32 {
    300
}

/// Token buckets in each replica (N replicas allow N times the rate), keyed by the caller's
/// subject (anonymous callers: by client address).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    /// Every MCP request of one caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_caller: Option<RateLimit>,
    /// `tools/call`s of one caller to the tools a rule names; the first matching rule counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolRateLimit>,
}

/// A sustained rate and the burst allowed above it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_minute: u32,
    /// Requests allowed at once after a quiet spell. Default: a tenth of a minute's worth,
    /// at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl RateLimit {
    pub fn burst_or_default(&self) -> u32 {
        self.burst.unwrap_or((self.requests_per_minute / 10).max(1))
    }
}

/// A rate for some tools.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRateLimit {
    /// Tool names, exact or with `*` and `?`, as in `toolAccess`.
    pub tools: Vec<String>,
    pub requests_per_minute: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl ToolRateLimit {
    pub fn limit(&self) -> RateLimit {
        RateLimit {
            requests_per_minute: self.requests_per_minute,
            burst: self.burst,
        }
    }
}

/// Per-tool authorization: the first rule whose `tools` match a tool's name decides whether a
/// caller may call it (and see it in `tools/list`); a tool no rule matches gets `default`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolAccess {
    /// For tools no rule names. Default `Allow`.
    #[serde(default)]
    pub default: ToolDecision,
    #[serde(default)]
    pub rules: Vec<ToolRule>,
}

/// Longest tool-name pattern.
pub const MAX_TOOL_PATTERN: usize = 128;

impl ToolAccess {
    fn validate(&self, auth: &AuthConfig) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        for rule in &self.rules {
            if rule.tools.is_empty()
                || rule
                    .tools
                    .iter()
                    .any(|t| t.is_empty() || t.len() > MAX_TOOL_PATTERN)
            {
                return invalid(
                    "toolAccess.rules[].tools needs at least one tool name or pattern of 1-128 characters",
                );
            }
            let needs_identity =
                !rule.roles.is_empty() || !rule.groups.is_empty() || !rule.tenants.is_empty();
            match auth {
                AuthConfig::Anonymous if needs_identity || !rule.scopes.is_empty() => {
                    return invalid(
                        "toolAccess rules can require scopes, roles, groups or tenants only when clients authenticate (auth mode Anonymous has no caller to check); list the tools without requirements, or set an auth mode",
                    );
                }
                // The facade's own access tokens carry the granted scopes, the subject, and the
                // sign-in's app roles and tenant; groups do not fit in its codes.
                AuthConfig::AuthorizationServer(_) if !rule.groups.is_empty() => {
                    return invalid(
                        "toolAccess rules in auth mode AuthorizationServer cannot require groups: the gateway's own tokens carry the user's app roles and tenant, not groups (assign app roles to the groups instead)",
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl RateLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        let limits = self
            .per_caller
            .into_iter()
            .chain(self.tools.iter().map(ToolRateLimit::limit));
        for limit in limits {
            if !(1..=1_000_000).contains(&limit.requests_per_minute)
                || !(1..=100_000).contains(&limit.burst_or_default())
            {
                return Err(ConfigError::Invalid(
                    "rateLimits: requestsPerMinute must be between 1 and 1000000 and burst between 1 and 100000".into(),
                ));
            }
        }
        if self.tools.iter().any(|t| {
            t.tools.is_empty()
                || t.tools
                    .iter()
                    .any(|p| p.is_empty() || p.len() > MAX_TOOL_PATTERN)
        }) {
            return Err(ConfigError::Invalid(
                "rateLimits.tools[].tools needs at least one tool name or pattern of 1-128 characters".into(),
            ));
        }
        Ok(())
    }
}

/// Allow or deny.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ToolDecision {
    #[default]
    Allow,
    Deny,
}

/// Tools and what a caller needs to call them. Every kind of requirement given must be met:
/// all of `scopes`, and one of `roles`, one of `groups`, one of `tenants`. A rule with no
/// requirement admits every authenticated caller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRule {
    /// Tool names, exact or with `*` (any run of characters) and `?` (one character).
    pub tools: Vec<String>,
    /// Scopes the token must all carry (`scp`/`scope`, as for `requiredScopes`); a caller
    /// short of them is asked to step up (403 `insufficient_scope`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Entra app roles (`roles`), any one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Entra group object IDs (`groups`), any one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Entra tenant IDs (`tid`), any one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
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
    /// How long one sign-in lasts: each refresh returns a new refresh token expiring at the
    /// same time. Default 7 days.
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
        if let Some(access) = &self.tool_access {
            access.validate(&self.auth)?;
        }
        if let Some(limits) = &self.rate_limits {
            limits.validate()?;
        }
        if let Some(identity) = &self.caller_identity {
            let header = identity.header.to_ascii_lowercase();
            if http::HeaderName::from_bytes(header.as_bytes()).is_err()
                || header == self.system_key.header.to_ascii_lowercase()
                || RESERVED_HEADERS.contains(&header.as_str())
                || header.starts_with("proxy-")
            {
                return invalid(
                    "callerIdentity.header must be a header name of its own, such as x-mcp-gateway-caller (not the key's, nor one HTTP or MCP uses)",
                );
            }
            if !(10..=3600).contains(&identity.ttl_seconds) {
                return invalid("callerIdentity.ttlSeconds must be between 10 and 3600");
            }
            if matches!(self.auth, AuthConfig::Anonymous) {
                return invalid(
                    "callerIdentity needs an auth mode: auth mode Anonymous has no caller to name",
                );
            }
        }
        self.observability.validate()?;
        if let Some(client_address) = &self.client_address {
            client_address.validate()?;
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
    fn tool_rules_need_tools_and_a_caller_to_check() {
        let config = example();
        assert_eq!(config.tool_access.as_ref().unwrap().rules.len(), 3);
        let rule = |yaml: &str| -> ToolRule { serde_yaml::from_str(yaml).unwrap() };
        let with = |auth: AuthConfig, r: ToolRule| {
            let mut c = config.clone();
            c.auth = auth;
            c.tool_access = Some(ToolAccess {
                default: ToolDecision::Deny,
                rules: vec![r],
            });
            c.validate().map_err(|e| e.to_string())
        };
        let oidc = config.auth.clone();
        assert_eq!(
            with(oidc.clone(), rule("tools: [a, 'b_*']\nroles: [R]")),
            Ok(())
        );
        for bad in ["tools: []", "tools: ['']"] {
            let err = with(oidc.clone(), rule(bad)).unwrap_err();
            assert!(err.contains("needs at least one tool name"), "{err}");
        }
        assert_eq!(with(AuthConfig::Anonymous, rule("tools: [a]")), Ok(()));
        let err = with(AuthConfig::Anonymous, rule("tools: [a]\nscopes: [s]")).unwrap_err();
        assert!(err.contains("Anonymous has no caller"), "{err}");
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
