//! Which public route a request path names. Pure: the prefix comes from config.

use crate::config::{AuthConfig, Config, Transport};
use crate::facade::Endpoint;

/// A public route of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `<prefix>/mcp`: Streamable HTTP.
    Mcp,
    /// `<prefix>/sse`: the legacy HTTP+SSE stream.
    Sse,
    /// `<prefix>/message`: legacy HTTP+SSE messages.
    Message,
    /// Protected Resource Metadata (path-inserted or root).
    ResourceMetadata,
    /// The authorization-server facade (`auth.mode: AuthorizationServer` only).
    Facade(Endpoint),
    /// `<prefix>/caller-identity/jwks`: the keys that verify caller-identity assertions
    /// (with `callerIdentity` only).
    CallerKeys,
    NotFound,
}

impl Route {
    /// A fixed label for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Route::Mcp => "mcp",
            Route::Sse => "sse",
            Route::Message => "message",
            Route::ResourceMetadata => "resource_metadata",
            Route::Facade(endpoint) => endpoint.name(),
            Route::CallerKeys => "caller_keys",
            Route::NotFound => "not_found",
        }
    }

    /// Routes that reach the upstream and so need a client credential.
    pub fn is_upstream(self) -> bool {
        matches!(self, Route::Mcp | Route::Sse | Route::Message)
    }

    /// The upstream path this route maps to.
    pub fn upstream_path(self, config: &Config) -> Option<String> {
        let base = config.upstream.path.trim_end_matches('/');
        match self {
            Route::Mcp => Some(base.to_string()),
            Route::Sse => Some(format!("{base}/sse")),
            Route::Message => Some(format!("{base}/message")),
            _ => None,
        }
    }
}

const PRM_ROOT: &str = "/.well-known/oauth-protected-resource";

/// Maps a request path to a route. Paths match exactly; transports that are not enabled
/// are not found.
pub fn route(config: &Config, path: &str) -> Route {
    let prefix = config.prefix();
    if matches!(config.auth, AuthConfig::AuthorizationServer(_))
        && let Some(endpoint) = Endpoint::route(config, path)
    {
        return Route::Facade(endpoint);
    }
    if let Some(rest) = path.strip_prefix(PRM_ROOT) {
        let inserted = format!("{prefix}/mcp");
        return if rest.is_empty() || rest == inserted {
            Route::ResourceMetadata
        } else {
            Route::NotFound
        };
    }
    let Some(name) = path.strip_prefix(prefix) else {
        return Route::NotFound;
    };
    match name {
        "/mcp" if config.serves(Transport::StreamableHttp) => Route::Mcp,
        "/sse" if config.serves(Transport::Sse) => Route::Sse,
        "/message" if config.serves(Transport::Sse) => Route::Message,
        "/caller-identity/jwks" if config.caller_identity.is_some() => Route::CallerKeys,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(prefix: &str, transports: Vec<Transport>) -> Config {
        let mut c: Config = serde_yaml::from_str(
            "publicBaseUrl: https://mcp.example.com\nupstream: {url: https://fn.example}\nsystemKey: {file: /k}\nauth: {mode: Anonymous}\n",
        )
        .unwrap();
        c.path_prefix = prefix.into();
        c.upstream.transports = transports;
        c
    }

    #[test]
    fn routes_with_and_without_prefix() {
        let both = vec![Transport::StreamableHttp, Transport::Sse];
        let root = config("/", both.clone());
        assert_eq!(route(&root, "/mcp"), Route::Mcp);
        assert_eq!(route(&root, "/sse"), Route::Sse);
        assert_eq!(route(&root, "/message"), Route::Message);
        assert_eq!(
            route(&root, "/.well-known/oauth-protected-resource/mcp"),
            Route::ResourceMetadata
        );
        assert_eq!(
            route(&root, "/.well-known/oauth-protected-resource"),
            Route::ResourceMetadata
        );
        assert_eq!(route(&root, "/mcp/"), Route::NotFound);
        assert_eq!(route(&root, "/runtime/webhooks/mcp"), Route::NotFound);

        let weather = config("/weather/", both);
        assert_eq!(route(&weather, "/weather/mcp"), Route::Mcp);
        assert_eq!(route(&weather, "/weather/message"), Route::Message);
        assert_eq!(route(&weather, "/mcp"), Route::NotFound);
        assert_eq!(route(&weather, "/weathermcp"), Route::NotFound);
        assert_eq!(
            route(
                &weather,
                "/.well-known/oauth-protected-resource/weather/mcp"
            ),
            Route::ResourceMetadata
        );
        assert_eq!(
            route(&weather, "/.well-known/oauth-protected-resource/other/mcp"),
            Route::NotFound
        );
        assert_eq!(
            Route::Message.upstream_path(&weather).unwrap(),
            "/runtime/webhooks/mcp/message"
        );
    }

    #[test]
    fn disabled_transports_are_not_found() {
        let only_http = config("/", vec![Transport::StreamableHttp]);
        assert_eq!(route(&only_http, "/sse"), Route::NotFound);
        assert_eq!(route(&only_http, "/message"), Route::NotFound);
        let only_sse = config("/", vec![Transport::Sse]);
        assert_eq!(route(&only_sse, "/mcp"), Route::NotFound);
    }
}
