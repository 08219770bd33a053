//! Turns a user's McpGateway into a checked, typed plan: the sidecar config the operator will
//! render, and where the key comes from. Every user mistake becomes one message that says
//! what to fix (shown in the `ConfigValid` condition and an Event). Pure: no API calls.

use mcp_gateway_contract::config::{
    AuditConfig, AuthConfig, CallerIdentity, ClientAddress, ClientMetadataDocuments, Config,
    DEFAULT_CALLER_IDENTITY_HEADER, DEFAULT_FORWARDED_HEADER, FacadeConfig, IdpConfig, IdpPreset,
    KeyVaultConfig, Limits, Observability, OidcConfig, RateLimit, RateLimits, SessionConfig,
    SystemKeyConfig, ToolAccess, ToolDecision, ToolRateLimit, ToolRule, TracingConfig, Transport,
    UpstreamConfig,
};
use mcp_gateway_crds::v1alpha1::{
    self as crd, AuthMode, IdpPreset as CrdPreset, KeyVaultSource, KeyVaultSync, McpGateway,
    RateLimits as CrdRateLimits, SecretStoreRef, SystemKey, ToolAccess as CrdToolAccess,
    ToolDecision as CrdToolDecision, Transport as CrdTransport,
};

/// Where things are mounted in the sidecar container, and its ports: part of the contract
/// with the sidecar.
pub use mcp_gateway_contract::paths::*;

pub use crate::spec_checks::MAX_NAME_LEN;

/// A gateway the operator can render.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The sidecar's configuration, exactly as it will be serialized into the ConfigMap.
    pub sidecar: Config,
    /// How the system key reaches the sidecar.
    pub key: KeySource,
    /// With auth mode `AuthorizationServer`: the IdP client secret to mount.
    pub facade: Option<FacadePlan>,
    /// The public MCP URL.
    pub url: String,
    /// With `trustedCA`: the ConfigMap to mount.
    pub trusted_ca: Option<TrustedCaPlan>,
}

/// The ConfigMap key of `trustedCA`, mounted as `trustedCaFile`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustedCaPlan {
    pub config_map: String,
    pub key: String,
    /// A digest of the bundle, once the reconcile has read it: in the pod template, so that a
    /// new bundle rolls the pods (the sidecar reads it only at start).
    pub digest: Option<String>,
}

/// What the authorization-server facade needs mounted besides its keys Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct FacadePlan {
    pub client_secret: String,
    pub client_secret_key: String,
}

/// How the system key reaches the sidecar, with everything the operator renders for it.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySource {
    /// A Secret in the gateway's namespace, mounted as a volume: the user's own
    /// (`secretRef`) or the one an `ExternalSecret` the operator renders produces.
    Secret {
        name: String,
        key: String,
        /// Set when the operator renders an `ExternalSecret` that writes this Secret.
        external: Option<ExternalSecretPlan>,
    },
    /// A `SecretProviderClass` the operator renders, mounted as a CSI volume.
    CsiDriver(CsiPlan),
    /// The sidecar reads Key Vault itself (its config carries the details).
    Direct {
        vault: String,
        secret_name: String,
        client_id: String,
        tenant_id: String,
    },
}

/// What the `ExternalSecret` says.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalSecretPlan {
    pub store: SecretStoreRef,
    pub remote_key: String,
    pub refresh_seconds: u32,
}

/// What the `SecretProviderClass` says (Azure provider, workload identity).
#[derive(Clone, Debug, PartialEq)]
pub struct CsiPlan {
    pub vault_name: String,
    /// The Azure provider's `cloudName` for sovereign clouds; `None` for the public cloud.
    pub cloud_name: Option<&'static str>,
    pub secret_name: String,
    pub client_id: String,
    pub tenant_id: String,
}

impl KeySource {
    /// The workload identity's client ID, when the gateway pod itself reads Key Vault (or
    /// the CSI driver reads it on the pod's behalf): the service account is annotated with
    /// it and the pod labelled for the Azure workload identity webhook.
    pub fn workload_identity(&self) -> Option<&str> {
        match self {
            KeySource::CsiDriver(csi) => Some(&csi.client_id),
            KeySource::Direct { client_id, .. } => Some(client_id),
            KeySource::Secret { .. } => None,
        }
    }

    /// The workload identity's tenant, alongside [`Self::workload_identity`].
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            KeySource::CsiDriver(csi) => Some(&csi.tenant_id),
            KeySource::Direct { tenant_id, .. } => Some(tenant_id),
            KeySource::Secret { .. } => None,
        }
    }

    /// Where the key comes from, in words, for the status (no value, no hash).
    pub fn describe(&self, namespace: &str) -> String {
        match self {
            KeySource::Secret {
                name,
                key,
                external: None,
            } => format!("Secret {namespace}/{name} (key {key})"),
            KeySource::Secret {
                name,
                external: Some(es),
                ..
            } => format!(
                "Key Vault secret {} via External Secrets ({:?} {}) into Secret {namespace}/{name}",
                es.remote_key, es.store.kind, es.store.name
            ),
            KeySource::CsiDriver(csi) => format!(
                "Key Vault {}, secret {} (Secrets Store CSI driver)",
                csi.vault_name, csi.secret_name
            ),
            KeySource::Direct {
                vault, secret_name, ..
            } => format!("Key Vault {vault}, secret {secret_name} (read directly)"),
        }
    }
}

/// The Secret an `ExternalSecret` writes for a gateway, and the key in it.
pub fn external_secret_target(gateway_name: &str) -> String {
    format!("{gateway_name}-gateway-key")
}
pub const EXTERNAL_SECRET_KEY: &str = "key";
/// The file name the CSI driver writes the secret to (the object's alias).
pub const CSI_OBJECT_ALIAS: &str = "key";

/// Public clouds and their Key Vault DNS suffixes, as the CSI driver's Azure provider
/// names them.
const VAULT_CLOUDS: [(&str, Option<&str>); 3] = [
    ("vault.azure.net", None),
    ("vault.azure.cn", Some("AzureChinaCloud")),
    ("vault.usgovcloudapi.net", Some("AzureUSGovernmentCloud")),
];

/// The vault's URL and, for the CSI driver, its name and cloud.
fn vault_location(kv: &KeyVaultSource) -> Result<(url::Url, String, Option<&'static str>), String> {
    match (&kv.vault_name, &kv.vault_url) {
        (Some(name), _) => {
            let url = format!("https://{name}.vault.azure.net")
                .parse()
                .map_err(|_| {
                    "systemKey.keyVault.vaultName is not a valid vault name".to_string()
                })?;
            Ok((url, name.clone(), None))
        }
        (None, Some(raw)) => {
            let url: url::Url = raw
                .parse()
                .map_err(|_| "systemKey.keyVault.vaultUrl is not a valid URL".to_string())?;
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let (name, suffix) = host.split_once('.').unwrap_or((&host, ""));
            let cloud = VAULT_CLOUDS
                .iter()
                .find(|(s, _)| *s == suffix)
                .map(|(_, cloud)| *cloud);
            match cloud {
                Some(cloud) => Ok((url.clone(), name.to_string(), cloud)),
                None if kv.sync == KeyVaultSync::Direct => {
                    Ok((url.clone(), name.to_string(), None))
                }
                None => Err(format!(
                    "systemKey.keyVault.vaultUrl host {host} is not in a cloud the CSI driver knows ({}); use sync Direct",
                    VAULT_CLOUDS.map(|(s, _)| s).join(", ")
                )),
            }
        }
        (None, None) => Err("systemKey.keyVault needs vaultName or vaultUrl".into()),
    }
}

/// Turns `spec.systemKey` into a key source and the sidecar's key config.
fn key_source(gateway_name: &str, key: &SystemKey) -> Result<(KeySource, SystemKeyConfig), String> {
    let file = |name: &str| Some(format!("{KEY_DIR}/{name}").into());
    let config = |file, key_vault| SystemKeyConfig {
        file,
        key_vault,
        header: key.header.clone(),
    };
    match (&key.secret_ref, &key.key_vault) {
        (Some(secret), None) => Ok((
            KeySource::Secret {
                name: secret.name.clone(),
                key: secret.key.clone(),
                external: None,
            },
            config(file(KEY_FILE_NAME), None),
        )),
        (None, Some(kv)) => {
            let identity = || -> Result<(String, String), String> {
                match (&kv.client_id, &kv.tenant_id) {
                    (Some(c), Some(t)) => Ok((c.clone(), t.clone())),
                    _ => Err("systemKey.keyVault needs clientId and tenantId with sync CsiDriver or Direct".into()),
                }
            };
            match kv.sync {
                KeyVaultSync::ExternalSecrets => {
                    let store = kv.secret_store_ref.clone().ok_or_else(|| {
                        "systemKey.keyVault.sync ExternalSecrets needs secretStoreRef".to_string()
                    })?;
                    Ok((
                        KeySource::Secret {
                            name: external_secret_target(gateway_name),
                            key: EXTERNAL_SECRET_KEY.into(),
                            external: Some(ExternalSecretPlan {
                                store,
                                remote_key: kv.secret_name.clone(),
                                refresh_seconds: kv.refresh_seconds,
                            }),
                        },
                        config(file(KEY_FILE_NAME), None),
                    ))
                }
                KeyVaultSync::CsiDriver => {
                    let (client_id, tenant_id) = identity()?;
                    let (_, vault_name, cloud_name) = vault_location(kv)?;
                    Ok((
                        KeySource::CsiDriver(CsiPlan {
                            vault_name,
                            cloud_name,
                            secret_name: kv.secret_name.clone(),
                            client_id,
                            tenant_id,
                        }),
                        config(file(CSI_OBJECT_ALIAS), None),
                    ))
                }
                KeyVaultSync::Direct => {
                    let (client_id, tenant_id) = identity()?;
                    let (vault_url, vault_name, _) = vault_location(kv)?;
                    Ok((
                        KeySource::Direct {
                            vault: vault_name,
                            secret_name: kv.secret_name.clone(),
                            client_id: client_id.clone(),
                            tenant_id: tenant_id.clone(),
                        },
                        // The token file and authority host come from the environment the
                        // Azure workload identity webhook injects.
                        config(
                            None,
                            Some(KeyVaultConfig {
                                vault_url,
                                secret_name: kv.secret_name.clone(),
                                refresh_seconds: kv.refresh_seconds,
                                client_id: Some(client_id),
                                tenant_id: Some(tenant_id),
                                authority_host: None,
                                token_file: None,
                            }),
                        ),
                    ))
                }
            }
        }
        _ => Err("systemKey needs exactly one of secretRef or keyVault".into()),
    }
}

pub fn validate(gateway: &McpGateway) -> Result<Plan, String> {
    let name = gateway.metadata.name.as_deref().unwrap_or_default();
    let spec = &gateway.spec;
    crate::spec_checks::check(name, spec)?;
    let (key, system_key) = key_source(name, &spec.system_key)?;
    let mut facade = None;
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
            let Some(server) = &spec.auth.authorization_server else {
                return Err("auth.mode AuthorizationServer needs auth.authorizationServer".into());
            };
            facade = Some(FacadePlan {
                client_secret: server.idp.client_secret_ref.name.clone(),
                client_secret_key: server.idp.client_secret_ref.key.clone(),
            });
            AuthConfig::AuthorizationServer(FacadeConfig {
                idp: IdpConfig {
                    issuer: server.idp.issuer.clone(),
                    client_id: server.idp.client_id.clone(),
                    client_secret_file: format!("{IDP_DIR}/{IDP_SECRET_FILE_NAME}").into(),
                    scopes: server.idp.scopes.clone(),
                    preset: match server.idp.preset {
                        CrdPreset::Entra => IdpPreset::Entra,
                        CrdPreset::Generic => IdpPreset::Generic,
                    },
                },
                keys_file: format!("{FACADE_DIR}/{FACADE_FILE_NAME}").into(),
                scopes: server.scopes.clone(),
                access_token_ttl_seconds: server.access_token_ttl_seconds.into(),
                refresh_token_ttl_seconds: server.refresh_token_ttl_seconds.into(),
                allowed_tenants: server.allowed_tenants.clone(),
                client_metadata_documents: ClientMetadataDocuments {
                    enabled: server.client_metadata_documents,
                    ..Default::default()
                },
            })
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
    let public_base_url: url::Url =
        format!("https://{}", spec.route.host)
            .parse()
            .map_err(|_| {
                "route.host is not a valid host name (an xn-- label must be valid punycode)"
                    .to_string()
            })?;
    let sidecar = Config {
        listen: ([0, 0, 0, 0], PUBLIC_PORT).into(),
        admin_listen: ([0, 0, 0, 0], ADMIN_PORT).into(),
        public_base_url,
        path_prefix: prefix,
        upstream: UpstreamConfig {
            url: upstream_url,
            path: spec.upstream.path.clone(),
            transports: spec
                .upstream
                .transports
                .iter()
                .map(|t| match t {
                    CrdTransport::StreamableHttp => Transport::StreamableHttp,
                    CrdTransport::Sse => Transport::Sse,
                })
                .collect(),
            connect_timeout_seconds: spec.upstream.timeouts.connect_seconds,
            response_timeout_seconds: spec.upstream.timeouts.response_seconds,
            stream_idle_timeout_seconds: spec.upstream.timeouts.stream_idle_seconds,
            ca_file: None,
        },
        system_key,
        auth,
        session: SessionConfig {
            keys_file: Some(format!("{SESSION_DIR}/{SESSION_FILE_NAME}").into()),
        },
        limits: Limits::default(),
        allowed_origins: spec.route.allowed_origins.clone(),
        client_keep_alive_seconds: spec.route.keep_alive_seconds,
        trusted_ca_file: spec
            .trusted_ca
            .as_ref()
            .map(|_| format!("{TRUSTED_CA_DIR}/{TRUSTED_CA_FILE_NAME}").into()),
        tool_access: spec.tool_access.as_ref().map(tool_access),
        rate_limits: spec.rate_limits.as_ref().map(rate_limits),
        caller_identity: spec.caller_identity.as_ref().map(|c| CallerIdentity {
            header: c
                .header
                .clone()
                .unwrap_or_else(|| DEFAULT_CALLER_IDENTITY_HEADER.into()),
            ttl_seconds: c.ttl_seconds.unwrap_or(300),
        }),
        observability: spec
            .observability
            .as_ref()
            .map(observability)
            .transpose()?
            .unwrap_or_default(),
        client_address: spec.client_address.as_ref().map(|c| ClientAddress {
            trusted_proxies: c.trusted_proxies.clone(),
            header: c
                .header
                .clone()
                .unwrap_or_else(|| DEFAULT_FORWARDED_HEADER.into()),
        }),
    };
    sidecar.validate().map_err(|e| e.to_string())?;
    let url = sidecar.resource_url();
    Ok(Plan {
        sidecar,
        key,
        facade,
        url,
        trusted_ca: spec.trusted_ca.as_ref().map(|t| TrustedCaPlan {
            config_map: t.config_map_ref.name.clone(),
            key: t.config_map_ref.key.clone(),
            digest: None,
        }),
    })
}

fn tool_access(crd: &CrdToolAccess) -> ToolAccess {
    ToolAccess {
        default: match crd.default {
            CrdToolDecision::Allow => ToolDecision::Allow,
            CrdToolDecision::Deny => ToolDecision::Deny,
        },
        rules: crd
            .rules
            .iter()
            .map(|r| ToolRule {
                tools: r.tools.clone(),
                scopes: r.scopes.clone(),
                roles: r.roles.clone(),
                groups: r.groups.clone(),
                tenants: r.tenants.clone(),
            })
            .collect(),
    }
}

fn rate_limits(crd: &CrdRateLimits) -> RateLimits {
    RateLimits {
        per_caller: crd.per_caller.as_ref().map(|l| RateLimit {
            requests_per_minute: l.requests_per_minute,
            burst: l.burst,
        }),
        tools: crd
            .tools
            .iter()
            .map(|t| ToolRateLimit {
                tools: t.tools.clone(),
                requests_per_minute: t.requests_per_minute,
                burst: t.burst,
            })
            .collect(),
    }
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

/// `spec.observability` as the sidecar reads it.
fn observability(spec: &crd::Observability) -> Result<Observability, String> {
    let tracing = match &spec.tracing {
        None => None,
        Some(t) => Some(TracingConfig {
            otlp_endpoint: t.otlp_endpoint.parse().map_err(|_| {
                "observability.tracing.otlpEndpoint must be an http(s) URL such as http://otel-collector.monitoring:4318".to_string()
            })?,
            sampling_ratio: match &t.sampling_ratio {
                None => 1.0,
                Some(r) => r.parse().map_err(|_| {
                    "observability.tracing.samplingRatio must be a decimal from 0 to 1, such as \"0.1\"".to_string()
                })?,
            },
            trust_incoming_trace_context: t.trust_incoming_trace_context,
            service_name: t
                .service_name
                .clone()
                .unwrap_or_else(|| "mcp-gateway".into()),
        }),
    };
    let audit = spec
        .audit
        .as_ref()
        .map_or_else(AuditConfig::default, |a| AuditConfig {
            enabled: a.enabled.unwrap_or(true),
            include_arguments: a.include_arguments,
        });
    Ok(Observability { tracing, audit })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_crd_defaults_are_the_contracts() {
        // Two copies, since the contract may not depend on the API types: they must agree.
        use mcp_gateway_contract::config as contract;
        use mcp_gateway_crds::v1alpha1 as crd;
        assert_eq!(crd::DEFAULT_UPSTREAM_PATH, contract::DEFAULT_UPSTREAM_PATH);
        assert_eq!(crd::DEFAULT_KEY_HEADER, contract::DEFAULT_KEY_HEADER);
        let gw = gateway(oidc_spec());
        assert_eq!(
            validate(&gw).unwrap().sidecar.upstream.transports,
            vec![Transport::StreamableHttp, Transport::Sse]
        );
    }

    #[test]
    fn tool_rules_rate_limits_and_caller_identity_reach_the_sidecar_config() {
        let mut spec = oidc_spec();
        spec["toolAccess"] = serde_json::json!({"default": "Deny", "rules": [
            {"tools": ["get_*"]},
            {"tools": ["admin_*"], "roles": ["Weather.Admin"], "scopes": ["mcp.admin"]},
        ]});
        spec["rateLimits"] = serde_json::json!({
            "perCaller": {"requestsPerMinute": 600},
            "tools": [{"tools": ["search"], "requestsPerMinute": 6, "burst": 2}],
        });
        spec["callerIdentity"] = serde_json::json!({});
        let sidecar = validate(&gateway(spec)).unwrap().sidecar;
        let access = sidecar.tool_access.unwrap();
        assert_eq!(access.default, ToolDecision::Deny);
        assert_eq!(access.rules[1].roles, ["Weather.Admin"]);
        assert_eq!(access.rules[1].scopes, ["mcp.admin"]);
        let limits = sidecar.rate_limits.unwrap();
        assert_eq!(limits.per_caller.unwrap().burst_or_default(), 60);
        assert_eq!(limits.tools[0].limit().burst_or_default(), 2);
        let identity = sidecar.caller_identity.unwrap();
        assert_eq!(
            (identity.header.as_str(), identity.ttl_seconds),
            (DEFAULT_CALLER_IDENTITY_HEADER, 300)
        );

        // Absent: off, as before.
        let plain = validate(&gateway(oidc_spec())).unwrap().sidecar;
        assert!(plain.tool_access.is_none() && plain.rate_limits.is_none());
        assert!(plain.caller_identity.is_none());
    }

    #[test]
    fn observability_and_client_address_reach_the_sidecar_config() {
        let mut spec = oidc_spec();
        spec["observability"] = serde_json::json!({
            "tracing": {"otlpEndpoint": "http://otel-collector.monitoring:4318", "samplingRatio": "0.25"},
            "audit": {"includeArguments": true},
        });
        spec["clientAddress"] = serde_json::json!({"trustedProxies": ["10.244.0.0/16"]});
        let sidecar = validate(&gateway(spec.clone())).unwrap().sidecar;
        let tracing = sidecar.observability.tracing.unwrap();
        assert_eq!(
            tracing.traces_url(),
            "http://otel-collector.monitoring:4318/v1/traces"
        );
        assert_eq!(tracing.sampling_ratio, 0.25);
        assert!(!tracing.trust_incoming_trace_context);
        assert_eq!(tracing.service_name, "mcp-gateway");
        assert!(
            sidecar.observability.audit.enabled && sidecar.observability.audit.include_arguments
        );
        let client = sidecar.client_address.unwrap();
        assert_eq!(client.header, DEFAULT_FORWARDED_HEADER);
        assert_eq!(client.trusted_proxies, ["10.244.0.0/16"]);

        // An object stored before the CRD's rules: the operator's own checks refuse it.
        spec["observability"]["tracing"]["samplingRatio"] = serde_json::json!("2");
        let error = validate(&gateway(spec)).unwrap_err();
        assert!(error.contains("samplingRatio"), "{error}");

        // Absent: audit records on, no traces, the connection's address.
        let plain = validate(&gateway(oidc_spec())).unwrap().sidecar;
        assert!(plain.observability.tracing.is_none() && plain.observability.audit.enabled);
        assert!(plain.client_address.is_none());
    }

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
        assert_eq!(
            plan.key,
            KeySource::Secret {
                name: "fn-keys".into(),
                key: "mcp_extension".into(),
                external: None
            }
        );
        assert_eq!(plan.key.workload_identity(), None);
        let c = &plan.sidecar;
        assert_eq!(c.path_prefix, "/weather");
        assert_eq!(c.upstream.path, "/runtime/webhooks/mcp");
        assert_eq!(
            c.system_key.file.as_deref().unwrap().to_str().unwrap(),
            "/var/run/secrets/mcp-gateway/system-key/key"
        );
        assert_eq!(c.system_key.key_vault, None);
        let AuthConfig::Oidc(oidc) = &c.auth else {
            panic!("oidc")
        };
        assert_eq!(oidc.audiences, ["api://weather"]);
        assert_eq!(oidc.required_scopes, ["mcp.tools"]);
        assert!(c.allowed_origins.is_empty());
        // The CRD's defaults reach the sidecar: 230 s to first byte, keep-alives every 20 s.
        assert_eq!(c.upstream.response_timeout_seconds, 230);
        assert_eq!(c.client_keep_alive_seconds, 20);

        let mut spec = oidc_spec();
        spec["route"]["allowedOrigins"] = serde_json::json!(["http://localhost:6274"]);
        spec["route"]["keepAliveSeconds"] = serde_json::json!(45);
        let plan = validate(&gateway(spec)).unwrap();
        assert_eq!(plan.sidecar.allowed_origins, ["http://localhost:6274"]);
        assert_eq!(plan.sidecar.client_keep_alive_seconds, 45);
    }

    const CLIENT: &str = "00000000-0000-0000-0000-00000000000c";
    const TENANT: &str = "00000000-0000-0000-0000-00000000000t";

    fn with_key_vault(key_vault: serde_json::Value) -> Plan {
        let mut spec = oidc_spec();
        spec["systemKey"] = serde_json::json!({ "keyVault": key_vault });
        validate(&gateway(spec)).unwrap()
    }

    #[test]
    fn csi_driver_mounts_the_secret_under_a_fixed_alias() {
        let plan = with_key_vault(
            serde_json::json!({"vaultName": "kv1", "clientId": CLIENT, "tenantId": TENANT}),
        );
        let KeySource::CsiDriver(csi) = &plan.key else {
            panic!("{:?}", plan.key)
        };
        assert_eq!(csi.vault_name, "kv1");
        assert_eq!(csi.cloud_name, None);
        assert_eq!(csi.secret_name, "host--systemKey--mcp-095extension");
        assert_eq!(plan.key.workload_identity(), Some(CLIENT));
        assert_eq!(
            plan.sidecar
                .system_key
                .file
                .as_deref()
                .unwrap()
                .to_str()
                .unwrap(),
            "/var/run/secrets/mcp-gateway/system-key/key"
        );
        // A sovereign cloud's vault URL becomes name + cloudName.
        let plan = with_key_vault(serde_json::json!({
            "vaultUrl": "https://kv2.vault.azure.cn", "clientId": CLIENT, "tenantId": TENANT}));
        let KeySource::CsiDriver(csi) = &plan.key else {
            panic!()
        };
        assert_eq!(
            (csi.vault_name.as_str(), csi.cloud_name),
            ("kv2", Some("AzureChinaCloud"))
        );
    }

    #[test]
    fn external_secrets_mount_the_secret_the_external_secret_writes() {
        let plan = with_key_vault(serde_json::json!({
            "sync": "ExternalSecrets", "secretName": "fn-key",
            "secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"}}));
        let KeySource::Secret {
            name,
            key,
            external: Some(es),
        } = &plan.key
        else {
            panic!("{:?}", plan.key)
        };
        assert_eq!(
            (name.as_str(), key.as_str()),
            ("weather-gateway-key", "key")
        );
        assert_eq!(es.remote_key, "fn-key");
        assert_eq!(es.store.name, "vault");
        assert_eq!(es.refresh_seconds, 300);
        assert_eq!(plan.key.workload_identity(), None);
    }

    #[test]
    fn direct_puts_the_vault_in_the_sidecar_config() {
        let plan = with_key_vault(serde_json::json!({
            "vaultName": "kv1", "clientId": CLIENT, "tenantId": TENANT,
            "sync": "Direct", "refreshSeconds": 60}));
        assert_eq!(plan.sidecar.system_key.file, None);
        let kv = plan.sidecar.system_key.key_vault.as_ref().unwrap();
        assert_eq!(kv.vault_url.as_str(), "https://kv1.vault.azure.net/");
        assert_eq!(kv.secret_name, "host--systemKey--mcp-095extension");
        assert_eq!(kv.refresh_seconds, 60);
        assert_eq!(kv.client_id.as_deref(), Some(CLIENT));
        assert_eq!(kv.tenant_id.as_deref(), Some(TENANT));
        // The webhook's environment supplies these.
        assert_eq!((&kv.authority_host, &kv.token_file), (&None, &None));
        assert_eq!(plan.key.workload_identity(), Some(CLIENT));
        assert!(plan.key.describe("apps").contains("kv1"));
    }

    pub fn facade_spec() -> serde_json::Value {
        let mut spec = oidc_spec();
        spec["auth"] = serde_json::json!({"mode": "AuthorizationServer", "authorizationServer": {
            "idp": {"issuer": "https://login.microsoftonline.com/t/v2.0", "clientId": "gw-app",
                    "clientSecretRef": {"name": "entra-app"}},
            "scopes": ["mcp.tools"]}});
        spec
    }

    #[test]
    fn authorization_server_mode_renders_the_facade() {
        let plan = validate(&gateway(facade_spec())).unwrap();
        let AuthConfig::AuthorizationServer(f) = &plan.sidecar.auth else {
            panic!("{:?}", plan.sidecar.auth)
        };
        assert_eq!(f.idp.client_id, "gw-app");
        assert_eq!(f.idp.scopes, ["openid", "profile"]);
        assert_eq!(f.idp.preset, IdpPreset::Entra);
        assert_eq!(
            f.idp.client_secret_file.to_str().unwrap(),
            "/var/run/secrets/mcp-gateway/idp/client-secret"
        );
        assert_eq!(
            f.keys_file.to_str().unwrap(),
            "/var/run/secrets/mcp-gateway/facade/keys"
        );
        assert_eq!(f.scopes, ["mcp.tools"]);
        assert!(f.client_metadata_documents.enabled);
        assert!(!f.client_metadata_documents.allow_private_addresses);
        assert_eq!(
            plan.facade,
            Some(FacadePlan {
                client_secret: "entra-app".into(),
                client_secret_key: "client-secret".into()
            })
        );
        assert_eq!(plan.sidecar.issuer_url(), "https://mcp.example.com/weather");
    }

    #[test]
    fn user_mistakes_become_messages() {
        let mut spec = oidc_spec();
        spec["systemKey"] = serde_json::json!({"keyVault": {
            "vaultUrl": "https://kv.example.com", "clientId": CLIENT, "tenantId": TENANT}});
        assert!(
            validate(&gateway(spec))
                .unwrap_err()
                .contains("use sync Direct")
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
