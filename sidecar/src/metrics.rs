//! Prometheus metrics. Labels are closed sets chosen by the code (route names, status codes,
//! failure reasons), never request data, so no token, key or user input becomes a label.

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OauthLabels {
    pub endpoint: &'static str,
    pub outcome: &'static str,
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
            "System key file reloads by outcome",
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
            "Upstream answers 401/403 to a request that carried the system key",
            upstream_key_rejections.clone(),
        );
        let oauth = Family::<OauthLabels, Counter>::default();
        registry.register(
            "oauth_requests",
            "Authorization-server facade requests by endpoint and outcome",
            oauth.clone(),
        );
        Self {
            oauth,
            requests,
            auth_failures,
            upstream_latency,
            key_reloads,
            jwks_refreshes,
            open_streams,
            upstream_key_rejections,
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
