//! Operator metrics: reconciles by outcome, their duration, failures by reason, and the
//! gateways by their `Ready` condition (counted from the controller's cache at each scrape, so
//! a deleted gateway leaves the count at once).

use std::sync::{Arc, OnceLock};

use kube::runtime::reflector::Store;
use mcp_gateway_crds::v1alpha1::McpGateway;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::Gauge;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabel {
    /// `True`, `False`, `Unknown`, or `none` (no status yet).
    pub ready: &'static str,
}

pub struct Metrics {
    /// The controller's cache of gateways, once it runs.
    pub gateways: Arc<OnceLock<Store<McpGateway>>>,
    pub reconciles: Family<Outcome, Counter>,
    pub failures: Family<Reason, Counter>,
    pub duration: Histogram,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let reconciles = Family::<Outcome, Counter>::default();
        let failures = Family::<Reason, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let gateways = Arc::new(OnceLock::new());
        let mut registry = Registry::with_prefix("mcp_gateway_operator");
        registry.register_collector(Box::new(GatewaysByReady(gateways.clone())));
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        Self {
            gateways,
            reconciles,
            failures,
            duration,
            registry,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `mcp_gateway_operator_gateways{ready}`: every gateway in the cache, by its Ready status.
struct GatewaysByReady(Arc<OnceLock<Store<McpGateway>>>);

impl std::fmt::Debug for GatewaysByReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewaysByReady")
    }
}

impl Collector for GatewaysByReady {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.0.get() else {
            return Ok(());
        };
        let family = Family::<ReadyLabel, Gauge>::default();
        // Every status appears, at 0 when no gateway has it, so alerts need no absent().
        for ready in ["True", "False", "Unknown", "none"] {
            let _ = family.get_or_create(&ReadyLabel { ready });
        }
        for gateway in store.state() {
            let ready = gateway
                .status
                .as_ref()
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == crate::conditions::READY)
                })
                .map_or("none", |c| match c.status.as_str() {
                    "True" => "True",
                    "False" => "False",
                    _ => "Unknown",
                });
            family.get_or_create(&ReadyLabel { ready }).inc();
        }
        let metric = encoder.encode_descriptor(
            "gateways",
            "McpGateways by their Ready condition",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}
