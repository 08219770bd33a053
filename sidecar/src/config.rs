//! The sidecar's configuration: the contract between the operator (which renders it into a
//! ConfigMap) and the sidecar (which reads it). One type, serialized as YAML or JSON;
//! `examples/sidecar/config.yaml` is a complete, commented example.
//!
//! The config holds no secrets: the system key and the session keys are read from files
//! (mounted Secrets) named here, so the ConfigMap can be shown to anyone.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

pub use mcp_gateway_crds::v1alpha1::Transport;

/// The whole sidecar configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where MCP clients connect (behind the Ingress). Default `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Health and metrics (`/livez`, `/readyz`, `/metrics`). Default `0.0.0.0:9090`.
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
    /// Until the upstream's response headers arrive; exceeded → 504.
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

/// Where the Functions system key is read from, and how it is sent upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemKeyConfig {
    /// A file holding the key (a mounted Secret or CSI volume); re-read when it changes.
    pub file: PathBuf,
    /// Request header the key is sent in. Default `x-functions-key`.
    #[serde(default = "default_key_header")]
    pub header: String,
}

/// How clients authenticate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "mode")]
pub enum AuthConfig {
    /// Bearer JWTs from an OpenID Connect provider.
    Oidc(OidcConfig),
    /// No client authentication (the system key stays hidden all the same).
    Anonymous,
}

/// Token validation settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// Exact `iss` value; `<issuer>/.well-known/openid-configuration` names the JWKS.
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
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}
fn default_path_prefix() -> String {
    "/".into()
}
fn default_upstream_path() -> String {
    mcp_gateway_crds::v1alpha1::DEFAULT_UPSTREAM_PATH.into()
}
fn default_transports() -> Vec<Transport> {
    vec![Transport::StreamableHttp, Transport::Sse]
}
fn default_connect_timeout() -> u32 {
    5
}
fn default_response_timeout() -> u32 {
    60
}
fn default_stream_idle_timeout() -> u32 {
    3600
}
fn default_key_header() -> String {
    mcp_gateway_crds::v1alpha1::DEFAULT_KEY_HEADER.into()
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
        if let AuthConfig::Oidc(oidc) = &self.auth {
            if oidc.issuer.is_empty() {
                return invalid("auth.issuer must be set");
            }
            if oidc.audiences.is_empty() {
                return invalid("auth.audiences needs at least one audience");
            }
        }
        Ok(())
    }

    /// The prefix without a trailing slash (`""` for `/`), ready to prepend to route names.
    pub fn prefix(&self) -> &str {
        self.path_prefix.trim_end_matches('/')
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
