//! Prometheus metrics. Labels are closed sets chosen by the code (route names, status codes,
//! failure reasons) or written in the config (the tool names and patterns of per-tool
//! rules), never request data, so no token, key or user input becomes a label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// A Key Vault fetch: why it ran (`periodic` or `rejection`) and how it ended
/// (`ok`, `unreachable`, `denied`, `not_found`, `invalid`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyFetch {
    pub trigger: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OauthLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
}

/// A `tools/call` decision: the config's tool name or pattern that decided it (or
/// `default`), and `allowed`, `step_up` or `denied`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolCall {
    pub rule: String,
    pub decision: &'static str,
}

/// The limit that refused a request: `caller`, or a tool rule's patterns from the config.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Limit {
    pub limit: String,
}

/// Every metric the sidecar exports.
pub struct Metrics {
    pub requests: Family<RouteStatus, Counter>,
    pub auth_failures: Family<Reason, Counter>,
    pub upstream_latency: Family<Route, Histogram>,
    pub key_reloads: Family<Outcome, Counter>,
    pub jwks_refreshes: Family<Outcome, Counter>,
    pub open_streams: Gauge,
    pub upstream_key_rejections: Counter,
    /// Authorization-server facade requests by endpoint and outcome.
    pub oauth: Family<OauthLabels, Counter>,
    pub upstream_key_retries: Counter,
    pub upstream_key_rejected: Gauge,
    pub key_source_fetches: Family<KeyFetch, Counter>,
    pub key_source_failing: Gauge,
    pub long_calls: Family<Outcome, Counter>,
    pub upstream_platform_refusals: Counter,
    pub tool_calls: Family<ToolCall, Counter>,
    pub rate_limited: Family<Limit, Counter>,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<RouteStatus, Counter>::default();
        let auth_failures = Family::<Reason, Counter>::default();
        let upstream_latency = Family::<Route, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let key_reloads = Family::<Outcome, Counter>::default();
        let jwks_refreshes = Family::<Outcome, Counter>::default();
        let open_streams = Gauge::default();
        let upstream_key_rejections = Counter::default();
        let upstream_key_retries = Counter::default();
        let upstream_key_rejected = Gauge::default();
        let key_source_fetches = Family::<KeyFetch, Counter>::default();
        let key_source_failing = Gauge::default();
        let long_calls = Family::<Outcome, Counter>::default();
        let upstream_platform_refusals = Counter::default();
        let mut registry = Registry::with_prefix("mcp_gateway");
        registry.register("requests", "Requests by route and status", requests.clone());
        registry.register(
            "auth_failures",
            "Rejected client credentials by reason",
            auth_failures.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time until the upstream's response headers, by route",
            upstream_latency.clone(),
        );
        registry.register(
            "key_reloads",
            "System key loads (ok: a new key is in use) and source failures (error)",
            key_reloads.clone(),
        );
        registry.register(
            "jwks_refreshes",
            "JWKS fetches by outcome",
            jwks_refreshes.clone(),
        );
        registry.register(
            "open_streams",
            "Streamed (SSE) responses in flight",
            open_streams.clone(),
        );
        registry.register(
            "upstream_key_rejections",
            "Requests the upstream finally refused with 401/403: no renewed key, or the renewed key refused too",
            upstream_key_rejections.clone(),
        );
        let oauth = Family::<OauthLabels, Counter>::default();
        registry.register(
            "oauth_requests",
            "Authorization-server facade requests by endpoint and outcome",
            oauth.clone(),
        );
        registry.register(
            "upstream_key_retries",
            "Requests repeated with a renewed key after the upstream refused the one they carried",
            upstream_key_retries.clone(),
        );
        registry.register(
            "upstream_key_rejected",
            "1 while the upstream's last verdict on the current system key is a rejection",
            upstream_key_rejected.clone(),
        );
        registry.register(
            "key_source_fetches",
            "Key Vault reads of the system key by trigger and outcome",
            key_source_fetches.clone(),
        );
        registry.register(
            "key_source_failing",
            "1 while the system key's source (file or Key Vault) cannot deliver a key; the last good key stays in use",
            key_source_failing.clone(),
        );
        registry.register(
            "long_calls",
            "Requests answered on an event stream the gateway opened because the upstream had not answered within a keep-alive interval: opened, then answered or failed",
            long_calls.clone(),
        );
        registry.register(
            "upstream_platform_refusals",
            "Requests App Service Authentication refused in front of the Function App (not the key: no retry, no verdict on it)",
            upstream_platform_refusals.clone(),
        );
        let tool_calls = Family::<ToolCall, Counter>::default();
        registry.register(
            "tool_calls",
            "tools/call requests by the per-tool rule that decided them (its tool name or pattern, or default) and the decision",
            tool_calls.clone(),
        );
        let rate_limited = Family::<Limit, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by the limit that refused them (caller, or a tool rule's patterns)",
            rate_limited.clone(),
        );
        Self {
            rate_limited,
            tool_calls,
            upstream_platform_refusals,
            long_calls,
            oauth,
            requests,
            auth_failures,
            upstream_latency,
            key_reloads,
            jwks_refreshes,
            open_streams,
            upstream_key_rejections,
            upstream_key_retries,
            upstream_key_rejected,
            key_source_fetches,
            key_source_failing,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
