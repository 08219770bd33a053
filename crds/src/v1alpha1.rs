//! `mcpgateway.dev/v1alpha1`: the McpGateway API users write.
//!
//! Doc comments on these types become the CRD's descriptions, so they are written for
//! `kubectl explain mcpgateway.spec...` readers. CEL rules (`x_kube(validation)`) reject at
//! admission everything that can be checked without reading other objects; each message says
//! what to write instead.

// kube's derive takes one `printcolumn(...)` per column, which clippy reads as a repeat.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default upstream path of the Azure Functions MCP extension (Streamable HTTP endpoint).
pub const DEFAULT_UPSTREAM_PATH: &str = "/runtime/webhooks/mcp";
/// The header the Functions host reads the system key from.
pub const DEFAULT_KEY_HEADER: &str = "x-functions-key";
/// The name of the MCP extension's system key in a Function App's key listing.
pub const DEFAULT_SECRET_KEY: &str = "mcp_extension";
/// How the Functions host names the `mcp_extension` system key in Key Vault
/// (`host--systemKey--<name>`, with `_` escaped as `-095`).
pub const DEFAULT_KEY_VAULT_SECRET_NAME: &str = "host--systemKey--mcp-095extension";

/// An McpGateway puts one Azure Functions MCP server on a public, authenticated endpoint.
///
/// The operator turns it into an auth proxy (ConfigMap, Deployment, Service, Ingress) that
/// authenticates MCP clients with standard MCP authorization and adds the Function App's
/// `mcp_extension` system key to every upstream request, so no client ever holds that key.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpgateway.dev",
    version = "v1alpha1",
    kind = "McpGateway",
    plural = "mcpgateways",
    shortname = "mcpgw",
    category = "mcp",
    namespaced,
    status = "McpGatewayStatus",
    derive = "PartialEq",
    validation = Rule::new("self.metadata.name.size() <= 55 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be at most 55 lowercase letters, digits and '-', starting with a letter: the gateway's Service is named <name>-gateway, a DNS label of at most 63"),
    doc = "McpGateway puts an Azure Functions MCP server on a public, authenticated endpoint without giving clients its system key.",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.route.host"),
    printcolumn(name = "Upstream", type_ = "string", json_path = ".status.upstream"),
    printcolumn(name = "Auth", type_ = "string", json_path = ".spec.auth.mode"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.auth.mode != 'Anonymous' || !has(self.toolAccess) || !has(self.toolAccess.rules) || self.toolAccess.rules.all(r, !has(r.scopes) && !has(r.roles) && !has(r.groups) && !has(r.tenants))").message("toolAccess rules can require scopes, roles, groups or tenants only when clients authenticate: auth.mode Anonymous has no caller to check (list tools without requirements, or choose an auth mode)"))]
#[x_kube(validation = Rule::new("self.auth.mode != 'AuthorizationServer' || !has(self.toolAccess) || !has(self.toolAccess.rules) || self.toolAccess.rules.all(r, !has(r.groups))").message("toolAccess rules in auth.mode AuthorizationServer cannot require groups: the gateway's own access tokens carry the user's app roles and tenant, not groups (assign app roles to the groups instead)"))]
#[x_kube(validation = Rule::new("self.auth.mode != 'Anonymous' || !has(self.callerIdentity)").message("callerIdentity needs an auth mode: auth.mode Anonymous has no caller to name"))]
pub struct McpGatewaySpec {
    /// The Function App that hosts the MCP server.
    pub upstream: Upstream,

    /// Where the gateway reads the Function App's `mcp_extension` system key. The key is
    /// added to upstream requests only; clients never see it.
    pub system_key: SystemKey,

    /// How MCP clients authenticate to the gateway.
    pub auth: Auth,

    /// The public endpoint: host, path prefix, ingress class and TLS.
    pub route: Route,

    /// Number of gateway replicas. Replicas share no state, so any number serves any request.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("replicas must be between 0 and 100"))]
    pub replicas: i32,

    /// Overrides the gateway (sidecar) container image the operator is configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0 && !self.contains(' ')").message("image must be an image reference such as registry.example.com/mcp-gateway-sidecar:1.0, without spaces"))]
    #[schemars(length(max = 512))]
    pub image: Option<String>,

    /// Compute resources for the gateway container. Defaults to a small request and limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Where and how the gateway's pods run: scheduling, image pull secrets, extra labels
    /// and annotations. What the operator sets itself (the selector labels, its own
    /// annotations, the security context) cannot be overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    /// CA certificates the gateway trusts besides the public web roots, for every connection
    /// it opens (the Function App, the OIDC issuer and its keys, the facade's IdP, Key Vault):
    /// for peers behind a private CA. A change of the bundle rolls the gateway's pods.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "trustedCA")]
    pub trusted_ca: Option<TrustedCa>,

    /// Per-tool authorization: who may call which tool. The first rule whose `tools` match a
    /// tool's name decides; tools no rule names get `default`. A caller never sees in
    /// `tools/list` a tool it may not call. Absent: every authenticated caller may call
    /// every tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_access: Option<ToolAccess>,

    /// Request rates per caller (its token's subject; without client authentication its
    /// address), and per caller and tool: over the limit, `429` with `Retry-After`. Counted in
    /// each replica: N replicas allow N times these rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,

    /// Tell the Function who calls: every upstream request carries a short-lived JWT the
    /// gateway signs (subject, Entra `oid`/`tid`, name, roles, granted scopes, client ID;
    /// audience the Function App), never the client's token, in a header no client can set.
    /// Tools verify it with the keys at `<pathPrefix>/caller-identity/jwks`
    /// (docs/caller-identity.md). Present (even `{}`): on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_identity: Option<CallerIdentity>,

    /// OpenTelemetry traces and audit records. Audit records (one per tool call and per
    /// refused request, in the gateway's log with `target` `audit`) are on unless turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,

    /// Who the client is when proxies stand in front of the gateway (the ingress
    /// controller, a load balancer): their connections may name the client in a forwarded
    /// header. Used for logs, audit records, traces and anonymous rate limits. Absent: the
    /// connection's address (behind an ingress, the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<ClientAddress>,
}

/// The gateway pods' scheduling and metadata.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Nodes the pods may run on, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate (for dedicated node pools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// Node and pod (anti-)affinity. The operator's own soft spread over zones and nodes stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')").message("pod.priorityClassName must be a PriorityClass name (lower-case letters, digits, '-' and '.')"))]
    pub priority_class_name: Option<String>,

    /// Secrets (in the gateway's namespace) for pulling a private gateway image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Extra pod labels (the API server checks their syntax when the operator applies the
    /// Deployment; a refusal shows in the gateway's status). The labels that select the gateway's pods
    /// (`app.kubernetes.io/name`, `instance`, `component`, `managed-by`) and the workload
    /// identity opt-in are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("self.all(k, !(k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/managed-by', 'azure.workload.identity/use']))").message("pod.labels cannot set app.kubernetes.io/name, instance, component or managed-by, nor azure.workload.identity/use: the operator sets them"))]
    pub labels: BTreeMap<String, String>,

    /// Extra pod annotations. Keys under `mcpgateway.dev/` are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('mcpgateway.dev/'))").message("pod.annotations cannot use keys under mcpgateway.dev/: they are the operator's"))]
    pub annotations: BTreeMap<String, String>,
}

/// Traces and audit records.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Observability {
    /// OpenTelemetry traces over OTLP/HTTP: a span per request (MCP method, tool, auth
    /// outcome) with the call to the Function App as its child, and W3C `traceparent` sent to
    /// the Function so Application Insights joins the trace. Absent: no traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,

    /// Audit records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// Where and how many traces go.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tracing {
    /// The collector's OTLP/HTTP base URL, such as `http://otel-collector.monitoring:4318`
    /// (spans go to `<otlpEndpoint>/v1/traces`).
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != '' && !self.contains('@') && !self.contains('?') && !self.contains('#')").message("observability.tracing.otlpEndpoint must be an http(s) URL without credentials, query or fragment, such as http://otel-collector.monitoring:4318"))]
    #[schemars(length(max = 512))]
    pub otlp_endpoint: String,

    /// Share of traces recorded, from "0" to "1", such as "0.1". Default "1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^(0(\\\\.[0-9]{1,6})?|1(\\\\.0{1,6})?)$')").message("observability.tracing.samplingRatio must be a decimal from 0 to 1, such as \"0.1\""))]
    pub sampling_ratio: Option<String>,

    /// Continue a client's trace from its `traceparent` header. Off by default: on a public
    /// endpoint anyone can send one.
    #[serde(default)]
    pub trust_incoming_trace_context: bool,

    /// `service.name` of the spans. Default `mcp-gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() >= 1").message("observability.tracing.serviceName must not be empty"))]
    #[schemars(length(max = 128))]
    pub service_name: Option<String>,
}

/// Audit records.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Put each tool call's arguments in its record. Off by default: arguments may hold
    /// personal data. Results are never recorded.
    #[serde(default)]
    pub include_arguments: bool,
}

/// The proxies whose forwarded header is believed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientAddress {
    /// Address ranges (such as `10.244.0.0/16`, the pod network of the ingress controller)
    /// or addresses of the proxies in front of the gateway.
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.all(c, isCIDR(c) || isIP(c))").message("clientAddress.trustedProxies needs at least one address range such as 10.244.0.0/16 or an address"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 64)))]
    pub trusted_proxies: Vec<String>,

    /// The header the proxies name the client in. Default `X-Forwarded-For`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]{1,64}$') && !(self.lowerAscii() in ['authorization', 'host', 'cookie', 'content-type', 'content-length'])").message("clientAddress.header must be a header name such as X-Forwarded-For"))]
    pub header: Option<String>,
}

/// The caller-identity header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallerIdentity {
    /// Default `x-mcp-gateway-caller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]{1,64}$') && !(self.lowerAscii() in ['authorization', 'host', 'content-type', 'content-length', 'content-encoding', 'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'cookie', 'origin', 'mcp-session-id', 'mcp-protocol-version', 'mcp-method', 'mcp-name', 'last-event-id', 'x-functions-key', 'x-request-id']) && !self.lowerAscii().startsWith('proxy-')").message("callerIdentity.header must be a header name of its own, such as x-mcp-gateway-caller (letters, digits and '-'; not one HTTP, MCP or the system key uses)"))]
    pub header: Option<String>,

    /// Lifetime of one assertion, in seconds. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 3600").message("callerIdentity.ttlSeconds must be between 10 and 3600"))]
    pub ttl_seconds: Option<u32>,
}

/// Rate limits.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimits {
    /// Every MCP request of one caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_caller: Option<RateLimit>,

    /// `tools/call`s of one caller to the tools a rule names; the first matching rule counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tools: Vec<ToolRateLimit>,
}

/// A sustained rate and the burst allowed above it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// The sustained rate.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000000").message("rateLimits requestsPerMinute must be between 1 and 1000000"))]
    pub requests_per_minute: u32,

    /// Requests allowed at once after a quiet spell. Default: a tenth of a minute's worth, at
    /// least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100000").message("rateLimits burst must be between 1 and 100000"))]
    pub burst: Option<u32>,
}

/// A rate for some tools, per caller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolRateLimit {
    /// Tool names, exact or with `*` and `?`, as in `toolAccess`.
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.all(t, t.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("rateLimits.tools[].tools needs at least one tool name or pattern: 1-128 letters, digits, '_', '-', '.', '/', with '*' and '?' as wildcards"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 128)))]
    pub tools: Vec<String>,

    /// The sustained rate.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000000").message("rateLimits requestsPerMinute must be between 1 and 1000000"))]
    pub requests_per_minute: u32,

    /// Requests allowed at once. Default: a tenth of a minute's worth, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100000").message("rateLimits burst must be between 1 and 100000"))]
    pub burst: Option<u32>,
}

/// Per-tool authorization rules.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolAccess {
    /// For tools no rule names: `Allow` (default) or `Deny`.
    #[serde(default)]
    pub default: ToolDecision,

    /// Checked in order; the first whose `tools` match decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<ToolRule>,
}

/// Allow or deny.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ToolDecision {
    #[default]
    Allow,
    Deny,
}

/// Tools and what a caller needs to call them: all of `scopes`, and one of `roles`, one of
/// `groups` and one of `tenants`, for each that is given. A rule with no requirement admits
/// every authenticated caller (with `default: Deny`, an allow-list).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolRule {
    /// Tool names, exact or with `*` (any characters) and `?` (one character), such as
    /// `get_weather` or `admin_*`.
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.all(t, t.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("toolAccess.rules[].tools needs at least one tool name or pattern: 1-128 letters, digits, '_', '-', '.', '/', with '*' and '?' as wildcards"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 128)))]
    pub tools: Vec<String>,

    /// Scopes the caller's token must all carry (`scp`/`scope`, as for `requiredScopes`). A
    /// caller short of them only is answered 403 `insufficient_scope` naming them, so an
    /// MCP client can ask for a token with them (step-up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[\\\\x21\\\\x23-\\\\x5B\\\\x5D-\\\\x7E]+$'))").message("toolAccess.rules[].scopes must be scope names such as mcp.admin: printable ASCII without spaces, quotes or backslashes"))]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(max = 256)))]
    pub scopes: Vec<String>,

    /// Entra app roles (the token's `roles`; in mode `AuthorizationServer`, the roles in the
    /// user's ID token at sign-in), any one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[\\\\x21\\\\x23-\\\\x5B\\\\x5D-\\\\x7E]+$'))").message("toolAccess.rules[].roles must be app role values such as Tools.Admin: printable ASCII without spaces, quotes or backslashes"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 256)))]
    pub roles: Vec<String>,

    /// Entra group object IDs (the token's `groups`), any one of them. Mode `Oidc` only. A
    /// user in more groups than fit in a token (Entra's overage) does not match; assign app
    /// roles to groups instead where that can happen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'))").message("toolAccess.rules[].groups must be Entra group object IDs (GUIDs)"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 36)))]
    pub groups: Vec<String>,

    /// Entra tenant IDs (the token's `tid`), any one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'))").message("toolAccess.rules[].tenants must be Entra tenant IDs (GUIDs)"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 36)))]
    pub tenants: Vec<String>,
}

/// Where the extra CA certificates are.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustedCa {
    /// A ConfigMap in the gateway's namespace whose key holds PEM certificates, such as the
    /// one cert-manager's trust-manager writes for a Bundle.
    pub config_map_ref: ConfigMapKeyRef,
}

/// A key of a ConfigMap in the gateway's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("trustedCA.configMapRef.name must be a ConfigMap name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub name: String,

    /// Key within the ConfigMap's data. Default `ca.crt`.
    #[serde(default = "default_ca_key")]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]{1,253}$')").message("trustedCA.configMapRef.key must be a ConfigMap data key (letters, digits, '-', '_' and '.')"))]
    #[schemars(length(max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_string()
}

fn default_replicas() -> i32 {
    2
}

/// The Function App's MCP endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("isURL(self.url) && (url(self.url).getScheme() == 'https' || (url(self.url).getScheme() == 'http' && self.allowInsecureUpstream))").message("upstream.url must be an https URL such as https://my-app.azurewebsites.net (plain http only with upstream.allowInsecureUpstream: true)"))]
// The rules on `url` sit on the object, not the field: the API server quotes a rejected
// string field's value in its error, and this value may hold the system key.
#[x_kube(validation = Rule::new("!self.url.contains('?') && !self.url.contains('#')").message("upstream.url must have no query or fragment: the key belongs in systemKey, never in the URL (no ?code=); write the app's base URL such as https://my-app.azurewebsites.net"))]
#[x_kube(validation = Rule::new("!self.url.contains('@')").message("upstream.url must not contain credentials (user:password@): the key belongs in systemKey; write the app's base URL such as https://my-app.azurewebsites.net"))]
#[x_kube(validation = Rule::new("!isURL(self.url) || url(self.url).getHostname() != ''").message("upstream.url must name the app's host, such as https://my-app.azurewebsites.net"))]
#[x_kube(validation = Rule::new("!isURL(self.url) || url(self.url).getEscapedPath() in ['', '/']").message("upstream.url must be the app's base URL with no path, such as https://my-app.azurewebsites.net; the MCP path is upstream.path"))]
pub struct Upstream {
    /// Base URL of the Function App, for example `https://my-app.azurewebsites.net`: scheme,
    /// host and optional port only. Must be https unless `allowInsecureUpstream` is true.
    /// The system key never goes here (no `?code=`): it comes from `systemKey`. The MCP path
    /// is `path`.
    #[schemars(length(max = 2048))]
    pub url: String,

    /// Allow a plain-http upstream. Only for tests and in-cluster upstreams: the system key
    /// would cross the network unencrypted.
    #[serde(default)]
    pub allow_insecure_upstream: bool,

    /// Which MCP transports to expose. `StreamableHttp` is the current MCP transport;
    /// `Sse` is the legacy HTTP+SSE transport (deprecated by MCP, still used by some clients).
    /// Default: both.
    #[serde(default = "default_transports")]
    #[x_kube(validation = Rule::new("self.size() >= 1").message("upstream.transports needs at least one of StreamableHttp or Sse"))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 2))]
    pub transports: Vec<Transport>,

    /// Path of the MCP extension's Streamable HTTP endpoint on the Function App. The legacy
    /// SSE endpoints are `<path>/sse` and `<path>/message`. Default `/runtime/webhooks/mcp`.
    #[serde(default = "default_upstream_path")]
    #[x_kube(validation = Rule::new("self.matches(\"^(/[-A-Za-z0-9._~!$&'()*+,;=:@]+)+$\") && !self.contains('..') && !self.matches('(^|/)[.](/|$)')").message("upstream.path must be an absolute path such as /runtime/webhooks/mcp: letters, digits and -._~!$&'()*+,;=:@ in segments, no '%', '?', '#' or '..', no empty or '.' segments, no trailing '/'"))]
    #[schemars(length(max = 256))]
    pub path: String,

    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
}

fn default_transports() -> Vec<Transport> {
    vec![Transport::StreamableHttp, Transport::Sse]
}

fn default_upstream_path() -> String {
    DEFAULT_UPSTREAM_PATH.to_string()
}

/// An MCP transport.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// Legacy HTTP+SSE (MCP 2024-11-05).
    Sse,
}

/// Upstream timeouts, in seconds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Time to establish a connection to the Function App. Default 5.
    #[serde(default = "default_connect_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 60").message("timeouts.connectSeconds must be between 1 and 60"))]
    pub connect_seconds: u32,

    /// Time to first byte: until the Function App starts its response (status and headers).
    /// Exceeded: 504 (or, for a request already given a gateway-opened event stream, a
    /// JSON-RPC error on it). The Functions host sends nothing until a tool's result is ready,
    /// and Azure's front end allows 230 s, so that is the default.
    #[serde(default = "default_response_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 600").message("timeouts.responseSeconds must be between 1 and 600"))]
    pub response_seconds: u32,

    /// How long a streamed response (SSE) may stay silent before the gateway closes it.
    /// Default 3600.
    #[serde(default = "default_stream_idle_seconds")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 86400").message("timeouts.streamIdleSeconds must be between 10 and 86400"))]
    pub stream_idle_seconds: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_seconds: default_connect_seconds(),
            response_seconds: default_response_seconds(),
            stream_idle_seconds: default_stream_idle_seconds(),
        }
    }
}

fn default_connect_seconds() -> u32 {
    5
}
fn default_response_seconds() -> u32 {
    230
}
fn default_stream_idle_seconds() -> u32 {
    3600
}

/// Where the system key comes from: exactly one of `secretRef` or `keyVault`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.keyVault)").message("systemKey needs exactly one of secretRef (a Kubernetes Secret) or keyVault (Azure Key Vault)"))]
pub struct SystemKey {
    /// A Kubernetes Secret in the McpGateway's namespace that holds the key, typically synced
    /// from Azure Key Vault by the Secrets Store CSI driver or External Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// Read the key from Azure Key Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault: Option<KeyVaultSource>,

    /// The request header the key is sent in. Default `x-functions-key`.
    #[serde(default = "default_key_header")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9-]{1,64}$') && !(self.lowerAscii() in ['authorization', 'cookie', 'host', 'content-length', 'transfer-encoding', 'connection'])").message("systemKey.header must be a plain header name such as x-functions-key (letters, digits, '-'), not a hop-by-hop or credential header"))]
    #[schemars(length(max = 64))]
    pub header: String,
}

fn default_key_header() -> String {
    DEFAULT_KEY_HEADER.to_string()
}

/// A key in a Secret in the McpGateway's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("systemKey.secretRef.name must be a Secret name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub name: String,

    /// Key within the Secret's data. Default `mcp_extension`.
    #[serde(default = "default_secret_key")]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]{1,253}$')").message("systemKey.secretRef.key must be a Secret data key (letters, digits, '-', '_' and '.')"))]
    #[schemars(length(max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    DEFAULT_SECRET_KEY.to_string()
}

/// The system key in Azure Key Vault. With `CsiDriver` and `Direct` the gateway's own
/// workload identity (`clientId`, `tenantId`) reads the one secret; with `ExternalSecrets`
/// the referenced `SecretStore` holds the vault and the identity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.sync) && self.sync == 'ExternalSecrets') || (has(self.vaultName) != has(self.vaultUrl))").message("systemKey.keyVault needs exactly one of vaultName or vaultUrl"))]
#[x_kube(validation = Rule::new("(has(self.sync) && self.sync == 'ExternalSecrets') || (has(self.clientId) && has(self.tenantId))").message("systemKey.keyVault needs clientId and tenantId (the workload identity that reads the secret) with sync CsiDriver or Direct"))]
#[x_kube(validation = Rule::new("!has(self.sync) || self.sync != 'ExternalSecrets' || has(self.secretStoreRef)").message("systemKey.keyVault.sync ExternalSecrets needs secretStoreRef: the SecretStore or ClusterSecretStore that reads the vault"))]
#[x_kube(validation = Rule::new("!has(self.sync) || self.sync != 'ExternalSecrets' || !(has(self.vaultName) || has(self.vaultUrl) || has(self.clientId) || has(self.tenantId))").message("with sync ExternalSecrets the SecretStore names the vault and the identity: remove vaultName, vaultUrl, clientId and tenantId"))]
#[x_kube(validation = Rule::new("(has(self.sync) && self.sync == 'ExternalSecrets') || !has(self.secretStoreRef)").message("systemKey.keyVault.secretStoreRef is only used with sync ExternalSecrets"))]
#[x_kube(validation = Rule::new("!has(self.vaultUrl) || (has(self.sync) && self.sync == 'Direct') || self.vaultUrl.matches('^https://[^/.]+[.](vault[.]azure[.]net|vault[.]azure[.]cn|vault[.]usgovcloudapi[.]net)/?$')").message("systemKey.keyVault.vaultUrl must be in a cloud the CSI driver knows (vault.azure.net, vault.azure.cn, vault.usgovcloudapi.net); for another host use sync Direct"))]
pub struct KeyVaultSource {
    /// Name of the vault (`https://<vaultName>.vault.azure.net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z][-a-zA-Z0-9]{1,22}[a-zA-Z0-9]$')").message("systemKey.keyVault.vaultName must be a Key Vault name: 3-24 letters, digits and '-', starting with a letter"))]
    #[schemars(length(max = 24))]
    pub vault_name: Option<String>,

    /// Full vault URL, for sovereign clouds (for example `https://my-vault.vault.azure.cn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https://[a-zA-Z][-a-zA-Z0-9]{1,22}[a-zA-Z0-9][.][-a-zA-Z0-9.]+/?$')").message("systemKey.keyVault.vaultUrl must be a vault's https URL with no path, such as https://my-vault.vault.azure.net"))]
    #[schemars(length(max = 256))]
    pub vault_url: Option<String>,

    /// Name of the secret. Default `host--systemKey--mcp-095extension`, the name the Functions
    /// host uses when the app keeps its keys in Key Vault.
    #[serde(default = "default_key_vault_secret_name")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-zA-Z-]{1,127}$')").message("systemKey.keyVault.secretName must be a Key Vault secret name: letters, digits and '-'"))]
    #[schemars(length(max = 127))]
    pub secret_name: String,

    /// Client ID of the managed identity or app registration the gateway uses
    /// (Azure workload identity), granted "Key Vault Secrets User" on this one secret.
    /// Needed with `CsiDriver` and `Direct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')").message("systemKey.keyVault.clientId must be a GUID (the identity's client ID)"))]
    #[schemars(length(max = 36))]
    pub client_id: Option<String>,

    /// Entra tenant ID of the identity. Needed with `CsiDriver` and `Direct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')").message("systemKey.keyVault.tenantId must be a GUID (the Entra tenant ID)"))]
    #[schemars(length(max = 36))]
    pub tenant_id: Option<String>,

    /// How the key gets from Key Vault to the gateway. Default `CsiDriver`.
    #[serde(default)]
    pub sync: KeyVaultSync,

    /// The External Secrets Operator store that reads the vault, for sync `ExternalSecrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_ref: Option<SecretStoreRef>,

    /// How often the key is re-read from Key Vault, in seconds: the `ExternalSecret`'s
    /// `refreshInterval`, or the gateway's own period with `Direct`. (The CSI driver's
    /// rotation period is a driver-wide setting.) A rejected key is re-read at once with
    /// `Direct`. Default 300.
    #[serde(default = "default_key_vault_refresh_seconds")]
    #[x_kube(validation = Rule::new("self >= 30 && self <= 86400").message("systemKey.keyVault.refreshSeconds must be between 30 and 86400"))]
    pub refresh_seconds: u32,
}

/// An External Secrets Operator store in the McpGateway's namespace (`SecretStore`) or
/// cluster-wide (`ClusterSecretStore`), with provider `azurekv`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    /// Name of the store.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("systemKey.keyVault.secretStoreRef.name must be a store name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub name: String,

    /// `SecretStore` (default) or `ClusterSecretStore`.
    #[serde(default)]
    pub kind: SecretStoreKind,
}

/// The kind of an External Secrets Operator store.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecretStoreKind {
    #[default]
    SecretStore,
    ClusterSecretStore,
}

pub const DEFAULT_KEY_VAULT_REFRESH_SECONDS: u32 = 300;

fn default_key_vault_refresh_seconds() -> u32 {
    DEFAULT_KEY_VAULT_REFRESH_SECONDS
}

fn default_key_vault_secret_name() -> String {
    DEFAULT_KEY_VAULT_SECRET_NAME.to_string()
}

/// How a Key Vault secret reaches the gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyVaultSync {
    /// The Secrets Store CSI driver (Azure provider) mounts the secret as a file.
    #[default]
    CsiDriver,
    /// External Secrets Operator syncs it into a Kubernetes Secret.
    ExternalSecrets,
    /// The gateway reads Key Vault itself over REST with a workload-identity token.
    Direct,
}

/// Client authentication. `mode` is required: there is no implicit default, so an
/// unauthenticated gateway exists only when someone writes `mode: Anonymous`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Oidc' || has(self.oidc)").message("auth.mode Oidc needs auth.oidc with an issuer and at least one audience"))]
#[x_kube(validation = Rule::new("self.mode == 'Oidc' || !has(self.oidc)").message("auth.oidc is only used with auth.mode Oidc; remove it or set mode: Oidc"))]
#[x_kube(validation = Rule::new("self.mode != 'AuthorizationServer' || has(self.authorizationServer)").message("auth.mode AuthorizationServer needs auth.authorizationServer with the IdP to sign users in at"))]
#[x_kube(validation = Rule::new("self.mode == 'AuthorizationServer' || !has(self.authorizationServer)").message("auth.authorizationServer is only used with auth.mode AuthorizationServer"))]
pub struct Auth {
    /// `Oidc`: clients present access tokens from an OpenID Connect provider (OAuth 2.1
    /// resource server). `AuthorizationServer`: the gateway is the clients' OAuth
    /// authorization server (registration, PKCE, consent) and signs users in at an IdP
    /// without client registration, such as Entra ID.
    /// `Anonymous`: no client authentication; the system key is still kept server-side.
    pub mode: AuthMode,

    /// OpenID Connect settings, for mode `Oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,

    /// Authorization-server facade settings, for mode `AuthorizationServer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<AuthorizationServer>,
}

/// The gateway as the MCP clients' authorization server. Its signing and sealing keys are in
/// Secret `<name>-gateway-facade` (key `keys`, one base64 32-byte key per line, the first
/// current), which the operator creates when absent; prepend a key to rotate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.idp.issuer.contains('{tenantid}') || (has(self.allowedTenants) && self.allowedTenants.size() > 0)").message("auth.authorizationServer.allowedTenants must list the tenants whose users may sign in when idp.issuer is a multi-tenant {tenantid} template: Entra signs every tenant's tokens with the same keys"))]
pub struct AuthorizationServer {
    /// Where users sign in.
    pub idp: UpstreamIdp,

    /// Scopes the gateway grants and requires, for example `mcp.tools`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[A-Za-z0-9._:/-]{1,128}$'))").message("auth.authorizationServer.scopes must be scope names such as mcp.tools (letters, digits, '.', '_', ':', '/', '-')"))]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(max = 128)))]
    pub scopes: Vec<String>,

    /// Lifetime of the gateway's access tokens. Default 3600.
    #[serde(default = "default_access_token_ttl")]
    #[x_kube(validation = Rule::new("self >= 60 && self <= 86400").message("auth.authorizationServer.accessTokenTtlSeconds must be between 60 and 86400"))]
    pub access_token_ttl_seconds: u32,

    /// How long one sign-in lasts: each use of a refresh token returns a new one that expires
    /// at the same time, after which the user signs in again (and the app roles the gateway's
    /// tokens carry are read anew). Default 604800 (7 days).
    #[serde(default = "default_refresh_token_ttl")]
    #[x_kube(validation = Rule::new("self >= 300 && self <= 7776000").message("auth.authorizationServer.refreshTokenTtlSeconds must be between 300 and 7776000 (90 days)"))]
    pub refresh_token_ttl_seconds: u32,

    /// If set, only users of these Entra tenants may sign in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'))").message("auth.authorizationServer.allowedTenants must be Entra tenant IDs (GUIDs)"))]
    #[schemars(length(max = 64))]
    #[schemars(inner(length(max = 36)))]
    pub allowed_tenants: Vec<String>,

    /// Accept clients identified by a Client ID Metadata Document (an HTTPS `client_id`),
    /// fetched with SSRF guards. Default true.
    #[serde(default = "default_true")]
    pub client_metadata_documents: bool,
}

/// The IdP the facade signs users in with, and the gateway's registration there.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamIdp {
    /// The IdP's issuer, for Entra `https://login.microsoftonline.com/<tenant>/v2.0`; for a
    /// multi-tenant app `https://login.microsoftonline.com/{tenantid}/v2.0` with
    /// `allowedTenants` (users sign in at `…/organizations/…`; an ID token's `iss` must name
    /// its own `tid`).
    #[x_kube(validation = Rule::new("!self.contains('?') && !self.contains('#')").message("auth.authorizationServer.idp.issuer must have no query or fragment (OpenID Connect issuers have none)"))]
    #[x_kube(validation = Rule::new("!self.matches('[{]tenantid[}].*[{]tenantid[}]')").message("auth.authorizationServer.idp.issuer may hold {tenantid} once"))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHostname() != '' && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['127.0.0.1', 'localhost']))").message("auth.authorizationServer.idp.issuer must be an https URL such as https://login.microsoftonline.com/<tenant>/v2.0 (plain http only on 127.0.0.1 or localhost, for local testing)"))]
    #[schemars(length(max = 512))]
    pub issuer: String,

    /// The gateway's application (client) ID at the IdP.
    #[x_kube(validation = Rule::new("self.size() > 0").message("auth.authorizationServer.idp.clientId must be set"))]
    #[schemars(length(max = 256))]
    pub client_id: String,

    /// The Secret (in the McpGateway's namespace) holding that application's client secret.
    pub client_secret_ref: ClientSecretRef,

    /// Scopes requested at the IdP. Default `openid profile`.
    #[serde(default = "default_idp_scopes")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[\\\\x21\\\\x23-\\\\x5B\\\\x5D-\\\\x7E]+$'))").message("auth.authorizationServer.idp.scopes must be scope names such as openid or api://<app>/mcp.tools: printable ASCII without spaces, quotes or backslashes"))]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(max = 256)))]
    pub scopes: Vec<String>,

    /// `Entra` (default): no RFC 8707 `resource` parameter, users identified by `tid`/`oid`.
    /// `Generic`: any OpenID provider.
    #[serde(default)]
    pub preset: IdpPreset,
}

/// A client secret in a Secret in the McpGateway's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecretRef {
    /// Name of the Secret.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("auth.authorizationServer.idp.clientSecretRef.name must be a Secret name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub name: String,

    /// Key within the Secret's data. Default `client-secret`.
    #[serde(default = "default_client_secret_key")]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]{1,253}$')").message("auth.authorizationServer.idp.clientSecretRef.key must be a Secret data key"))]
    #[schemars(length(max = 253))]
    pub key: String,
}

fn default_client_secret_key() -> String {
    "client-secret".into()
}

/// Which IdP conventions the facade follows.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdpPreset {
    #[default]
    Entra,
    Generic,
}

fn default_access_token_ttl() -> u32 {
    3600
}
fn default_refresh_token_ttl() -> u32 {
    7 * 24 * 3600
}
fn default_true() -> bool {
    true
}
fn default_idp_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into()]
}

/// How clients authenticate.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Validate bearer tokens from an OpenID Connect provider.
    Oidc,
    /// Act as an OAuth authorization server in front of an IdP without client registration.
    AuthorizationServer,
    /// No client authentication. Only when written explicitly.
    Anonymous,
}

/// Validate access tokens issued by an OpenID Connect provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.issuer.contains('{tenantid}') || (has(self.allowedTenants) && self.allowedTenants.size() > 0)").message("auth.oidc.allowedTenants must list the tenants to admit when auth.oidc.issuer is a multi-tenant {tenantid} template: Entra signs every tenant's tokens with the same keys"))]
pub struct Oidc {
    /// The token issuer, exactly as in the tokens' `iss` claim, for example
    /// `https://login.microsoftonline.com/<tenant>/v2.0`. Its
    /// `/.well-known/openid-configuration` names the signing keys. A multi-tenant app writes
    /// `https://login.microsoftonline.com/{tenantid}/v2.0` (with `allowedTenants`): a token's
    /// `iss` must then name its own `tid`, and discovery is read from `…/organizations/v2.0`.
    #[x_kube(validation = Rule::new("!self.contains('?') && !self.contains('#')").message("auth.oidc.issuer must have no query or fragment (OpenID Connect issuers have none)"))]
    #[x_kube(validation = Rule::new("!self.matches('[{]tenantid[}].*[{]tenantid[}]')").message("auth.oidc.issuer may hold {tenantid} once"))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHostname() != '' && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['127.0.0.1', 'localhost']))").message("auth.oidc.issuer must be the https issuer URL from the tokens' iss claim, such as https://login.microsoftonline.com/<tenant>/v2.0 (plain http only on 127.0.0.1 or localhost, for local testing)"))]
    #[schemars(length(max = 2048))]
    pub issuer: String,

    /// Accepted `aud` values: the gateway's public MCP URL and/or the API's client ID or App ID
    /// URI. A trailing slash is tolerated.
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.all(a, a.size() > 0)").message("auth.oidc.audiences needs at least one non-empty audience, such as the public MCP URL or api://<client-id>"))]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(max = 2048)))]
    pub audiences: Vec<String>,

    /// Scopes every request's token must carry (from `scp`, `scope` or `roles`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[\\\\x21\\\\x23-\\\\x5B\\\\x5D-\\\\x7E]+$'))").message("auth.oidc.requiredScopes must be scope names such as mcp.tools: printable ASCII without spaces, quotes or backslashes"))]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 256)))]
    pub required_scopes: Vec<String>,

    /// If set, only tokens whose `tid` claim is one of these Entra tenant IDs are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'))").message("auth.oidc.allowedTenants must be Entra tenant IDs (GUIDs)"))]
    #[schemars(length(max = 64))]
    #[schemars(inner(length(max = 36)))]
    pub allowed_tenants: Vec<String>,

    /// The JWKS URL, when it should not be taken from OpenID discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.contains('#')").message("auth.oidc.jwksUri must have no fragment"))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHostname() != '' && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['127.0.0.1', 'localhost']))").message("auth.oidc.jwksUri must be an https URL (plain http only on 127.0.0.1 or localhost, for local testing)"))]
    #[schemars(length(max = 2048))]
    pub jwks_uri: Option<String>,
}

/// The public endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.gatewayRef) || (!has(self.ingressClassName) && !has(self.tls))").message("route.gatewayRef attaches an HTTPRoute to a Gateway, whose listener holds the TLS certificate: remove route.tls and route.ingressClassName (they are for an Ingress), or remove route.gatewayRef"))]
pub struct Route {
    /// Public DNS name clients use, for example `mcp.example.com`.
    #[x_kube(validation = Rule::new("self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')").message("route.host must be a lowercase DNS name such as mcp.example.com (no scheme, port or path; labels of at most 63 characters)"))]
    #[x_kube(validation = Rule::new("!self.matches('(^|[.])[0-9]+$')").message("route.host must be a DNS name, not an IP address: MCP clients and certificates need a name such as mcp.example.com"))]
    #[schemars(length(max = 253))]
    pub host: String,

    /// Path prefix for this gateway's endpoints, so several gateways can share a host. The MCP
    /// endpoint is `<pathPrefix>/mcp`; legacy SSE is `<pathPrefix>/sse` and
    /// `<pathPrefix>/message`. Default `/`.
    #[serde(default = "default_path_prefix")]
    #[x_kube(validation = Rule::new("self.matches('^/[A-Za-z0-9._~/-]*$') && !self.contains('..') && !self.contains('//') && !self.matches('(^|/)[.](/|$)') && self.size() <= 200").message("route.pathPrefix must start with '/' and contain only letters, digits, '-', '_', '.', '~' and '/', without '..', '//' or '.' segments, such as /weather"))]
    #[x_kube(validation = Rule::new("!self.matches('(^|/)([.]well-known|oauth)(/|$)')").message("route.pathPrefix must not contain a .well-known or oauth segment: the gateway serves its OAuth metadata and sign-in endpoints there; choose a prefix such as /weather"))]
    #[schemars(length(max = 200))]
    pub path_prefix: String,

    /// Attach to a Gateway API `Gateway` with an `HTTPRoute` instead of an Ingress (AKS app
    /// routing's Gateway API mode, Application Gateway for Containers, Istio, Envoy Gateway,
    /// Traefik). TLS is then the Gateway listener's, so `tls` and `ingressClassName` do not
    /// apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ref: Option<GatewayRef>,

    /// IngressClass for the Ingress; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("route.ingressClassName must be an IngressClass name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub ingress_class_name: Option<String>,

    /// TLS for the host. Strongly recommended: MCP clients require https outside localhost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,

    /// Browser origins allowed to call the gateway besides `https://<host>` itself, for
    /// browser-based MCP clients such as the MCP Inspector (`http://localhost:6274`). `*`
    /// allows any origin. Clients that send no `Origin` (CLIs, SDKs) are not affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(o, o == '*' || (isURL(o) && url(o).getScheme() in ['http', 'https'] && url(o).getEscapedPath() in ['', '/']))").message("route.allowedOrigins entries must be origins such as http://localhost:6274 (scheme, host, optional port; no path), or *"))]
    pub allowed_origins: Vec<String>,

    /// Extra annotations for the Ingress, for example cert-manager's
    /// `cert-manager.io/cluster-issuer`. Configuration snippets (any key containing
    /// `snippet`) are refused: they would let a gateway's author program the shared ingress
    /// controller. The operator accepts only annotations under the prefixes a cluster admin
    /// allows (chart value `operator.allowedAnnotationPrefixes`; by default cert-manager,
    /// external-dns and the streaming timeouts and buffering the operator itself sets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.lowerAscii().contains('snippet'))").message("route.annotations must not contain configuration snippets (keys with 'snippet', such as nginx.ingress.kubernetes.io/configuration-snippet): they inject configuration into the shared ingress controller"))]
    #[schemars(extend("maxProperties" = 32))]
    pub annotations: BTreeMap<String, String>,

    /// Seconds between SSE keep-alive comments on a quiet stream toward a client, so the
    /// ingress and load balancers in front (idle limits of 60 s are common) keep long calls
    /// open. A call that has had no answer from the Function App for this long gets an event
    /// stream the gateway opens itself, with the result delivered as its `message` event.
    /// Default 20.
    #[serde(default = "default_keep_alive_seconds")]
    #[x_kube(validation = Rule::new("self >= 5 && self <= 300").message("route.keepAliveSeconds must be between 5 and 300"))]
    pub keep_alive_seconds: u32,
}

fn default_keep_alive_seconds() -> u32 {
    20
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// The Gateway API `Gateway` the gateway's `HTTPRoute` attaches to (its `parentRefs`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the Gateway, for example `approuting-istio`'s or a shared `public` Gateway.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("route.gatewayRef.name must be a Gateway name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub name: String,

    /// Namespace of the Gateway; the McpGateway's own when unset. The Gateway's listener
    /// must allow routes from this namespace (`allowedRoutes.namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.size() <= 63").message("route.gatewayRef.namespace must be a namespace name"))]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,

    /// The listener to attach to (its `name`); every listener that matches the host when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("route.gatewayRef.sectionName must be a listener name"))]
    #[schemars(length(max = 253))]
    pub section_name: Option<String>,
}

/// TLS settings of the public endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// Secret of type kubernetes.io/tls holding the certificate for the host.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("route.tls.secretName must be a Secret name"))]
    #[schemars(length(max = 253))]
    pub secret_name: String,
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct McpGatewayStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `ConfigValid`, `KeyAvailable`, ... Keyed by `type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The public MCP URL clients connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// The Function App the gateway forwards to: the origin (scheme, host, port) of
    /// `upstream.url` as the operator validated it, never a path, query or credentials. The
    /// UPSTREAM column shows this rather than the spec, which an object stored before the
    /// CRD's rules existed could hold a key in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,

    /// Gateway pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Where the system key comes from and when the gateway last saw it change. Never the
    /// key, nor anything derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_key: Option<SystemKeyStatus>,
}

/// The system key's provenance, as the operator and the gateway pods see it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SystemKeyStatus {
    /// For example `Secret apps/fn-keys (key mcp_extension)` or
    /// `Key Vault my-vault, secret host--systemKey--mcp-095extension (Direct)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,

    /// When a gateway pod last loaded a new key value (the newest over all pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// The Key Vault secret version in use (`Direct` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
