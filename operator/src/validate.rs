//! Turns a user's McpGateway into a checked, typed plan: the sidecar config the operator will
//! render, and where the key comes from. Every user mistake becomes one message that says
//! what to fix (shown in the `ConfigValid` condition and an Event). Pure: no API calls.

use mcp_gateway_crds::v1alpha1::{AuthMode, McpGateway};
use mcp_gateway_sidecar::config::{
    AuthConfig, Config, Limits, OidcConfig, SessionConfig, SystemKeyConfig, UpstreamConfig,
};

/// Where things are mounted in the sidecar container.
pub const KEY_DIR: &str = "/var/run/secrets/mcp-gateway/system-key";
pub const KEY_FILE_NAME: &str = "key";
pub const SESSION_DIR: &str = "/var/run/secrets/mcp-gateway/session";
pub const SESSION_FILE_NAME: &str = "keys";
pub const CONFIG_DIR: &str = "/etc/mcp-gateway";
pub const CONFIG_FILE_NAME: &str = "config.yaml";
pub const PUBLIC_PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 9090;

/// Objects are named `<gateway>-gateway`; a Service name is a DNS label of at most 63.
pub const MAX_NAME_LEN: usize = 55;

/// A gateway the operator can render.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The sidecar's configuration, exactly as it will be serialized into the ConfigMap.
    pub sidecar: Config,
    /// The Secret (in the gateway's namespace) and the key in it that hold the system key.
    pub key_secret: String,
    pub key_name: String,
    /// The public MCP URL.
    pub url: String,
}

pub fn validate(gateway: &McpGateway) -> Result<Plan, String> {
    let name = gateway.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "metadata.name is {} characters; use at most {MAX_NAME_LEN} so the objects named after it are valid",
            name.len()
        ));
    }
    let spec = &gateway.spec;
    let Some(secret_ref) = &spec.system_key.secret_ref else {
        return Err("systemKey.keyVault is not supported by this operator version yet; sync the key into a Secret (Secrets Store CSI driver or External Secrets) and use systemKey.secretRef".into());
    };
    let auth = match spec.auth.mode {
        AuthMode::Anonymous => AuthConfig::Anonymous,
        AuthMode::Oidc => {
            let Some(oidc) = &spec.auth.oidc else {
                return Err(
                    "auth.mode Oidc needs auth.oidc with an issuer and at least one audience"
                        .into(),
                );
            };
            AuthConfig::Oidc(OidcConfig {
                issuer: oidc.issuer.clone(),
                audiences: oidc.audiences.clone(),
                required_scopes: oidc.required_scopes.clone(),
                allowed_tenants: oidc.allowed_tenants.clone(),
                jwks_uri: match &oidc.jwks_uri {
                    Some(u) => Some(
                        u.parse()
                            .map_err(|_| "auth.oidc.jwksUri is not a valid URL".to_string())?,
                    ),
                    None => None,
                },
                leeway_seconds: 60,
            })
        }
        AuthMode::AuthorizationServer => {
            return Err("auth.mode AuthorizationServer is not supported by this operator version yet; use Oidc".into());
        }
    };
    let upstream_url: url::Url = spec
        .upstream
        .url
        .parse()
        .map_err(|_| "upstream.url is not a valid URL".to_string())?;
    if upstream_url.scheme() == "http" && !spec.upstream.allow_insecure_upstream {
        return Err(
            "upstream.url must be https (or set upstream.allowInsecureUpstream: true)".into(),
        );
    }
    let prefix = normalize_prefix(&spec.route.path_prefix);
    let public_base_url: url::Url = format!("https://{}", spec.route.host)
        .parse()
        .map_err(|_| "route.host is not a valid host name".to_string())?;
    let sidecar = Config {
        listen: ([0, 0, 0, 0], PUBLIC_PORT).into(),
        admin_listen: ([0, 0, 0, 0], ADMIN_PORT).into(),
        public_base_url,
        path_prefix: prefix,
        upstream: UpstreamConfig {
            url: upstream_url,
            path: spec.upstream.path.clone(),
            transports: spec.upstream.transports.clone(),
            connect_timeout_seconds: spec.upstream.timeouts.connect_seconds,
            response_timeout_seconds: spec.upstream.timeouts.response_seconds,
            stream_idle_timeout_seconds: spec.upstream.timeouts.stream_idle_seconds,
            ca_file: None,
        },
        system_key: SystemKeyConfig {
            file: Some(format!("{KEY_DIR}/{KEY_FILE_NAME}").into()),
            key_vault: None,
            header: spec.system_key.header.clone(),
        },
        auth,
        session: SessionConfig {
            keys_file: Some(format!("{SESSION_DIR}/{SESSION_FILE_NAME}").into()),
        },
        limits: Limits::default(),
        allowed_origins: spec.route.allowed_origins.clone(),
    };
    sidecar.validate().map_err(|e| e.to_string())?;
    let url = sidecar.resource_url();
    Ok(Plan {
        sidecar,
        key_secret: secret_ref.name.clone(),
        key_name: secret_ref.key.clone(),
        url,
    })
}

/// `/`, `/weather` or `/weather/` → `/` or `/weather` (no trailing slash but the root).
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn gateway(spec: serde_json::Value) -> McpGateway {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
            "metadata": {"name": "weather", "namespace": "apps", "uid": "0000-uid", "generation": 3},
            "spec": spec,
        }))
        .unwrap()
    }

    pub fn oidc_spec() -> serde_json::Value {
        serde_json::json!({
            "upstream": {"url": "https://weather-fn.azurewebsites.net"},
            "systemKey": {"secretRef": {"name": "fn-keys"}},
            "auth": {"mode": "Oidc", "oidc": {"issuer": "https://login.microsoftonline.com/t/v2.0",
                     "audiences": ["api://weather"], "requiredScopes": ["mcp.tools"]}},
            "route": {"host": "mcp.example.com", "pathPrefix": "/weather/"},
        })
    }

    #[test]
    fn renders_the_sidecar_config_from_the_spec() {
        let plan = validate(&gateway(oidc_spec())).unwrap();
        assert_eq!(plan.url, "https://mcp.example.com/weather/mcp");
        assert_eq!(plan.key_secret, "fn-keys");
        assert_eq!(plan.key_name, "mcp_extension");
        let c = &plan.sidecar;
        assert_eq!(c.path_prefix, "/weather");
        assert_eq!(c.upstream.path, "/runtime/webhooks/mcp");
        assert_eq!(
            c.system_key.file.as_deref().unwrap().to_str().unwrap(),
            "/var/run/secrets/mcp-gateway/system-key/key"
        );
        let AuthConfig::Oidc(oidc) = &c.auth else {
            panic!("oidc")
        };
        assert_eq!(oidc.audiences, ["api://weather"]);
        assert_eq!(oidc.required_scopes, ["mcp.tools"]);
        assert!(c.allowed_origins.is_empty());

        let mut spec = oidc_spec();
        spec["route"]["allowedOrigins"] = serde_json::json!(["http://localhost:6274"]);
        let plan = validate(&gateway(spec)).unwrap();
        assert_eq!(plan.sidecar.allowed_origins, ["http://localhost:6274"]);
    }

    #[test]
    fn user_mistakes_become_messages() {
        let mut spec = oidc_spec();
        spec["systemKey"] =
            serde_json::json!({"keyVault": {"vaultName": "kv", "clientId": "c", "tenantId": "t"}});
        assert!(
            validate(&gateway(spec))
                .unwrap_err()
                .contains("systemKey.secretRef")
        );

        let mut spec = oidc_spec();
        spec["upstream"]["url"] = "http://fn.example".into();
        assert!(
            validate(&gateway(spec))
                .unwrap_err()
                .contains("allowInsecureUpstream")
        );

        let mut spec = oidc_spec();
        spec["auth"] = serde_json::json!({"mode": "Oidc"});
        assert!(validate(&gateway(spec)).unwrap_err().contains("auth.oidc"));

        let mut long = gateway(oidc_spec());
        long.metadata.name = Some("x".repeat(56));
        assert!(validate(&long).unwrap_err().contains("at most 55"));
    }

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix("/"), "/");
        assert_eq!(normalize_prefix("/a/"), "/a");
        assert_eq!(normalize_prefix("/a/b"), "/a/b");
    }
}
