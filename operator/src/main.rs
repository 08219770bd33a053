//! `mcp-gateway-operator`: reconciles McpGateways. Serves `/healthz`, `/readyz` and
//! `/metrics`; with leader election (a Lease), only one replica reconciles at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser;
use kube_lease_manager::LeaseManagerBuilder;
use mcp_gateway_operator::controller::{self, Context};
use mcp_gateway_operator::health;
use mcp_gateway_operator::metrics::Metrics;
use mcp_gateway_operator::render::Defaults;

#[derive(Parser)]
#[command(version, about = "Kubernetes operator for McpGateway resources")]
struct Args {
    /// Image of the auth proxy the gateways run (unless a gateway sets spec.image).
    #[arg(long, env = "MCP_GATEWAY_SIDECAR_IMAGE")]
    sidecar_image: String,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(long, env = "MCP_GATEWAY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease, so several replicas are safe.
    #[arg(long, env = "MCP_GATEWAY_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "mcp-gateway-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// How often each running gateway's pods are asked how the system key is doing
    /// (`KeyAccepted`, `status.systemKey`).
    #[arg(long, env = "MCP_GATEWAY_KEY_STATUS_INTERVAL_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    key_status_interval_seconds: u64,
    /// Prefixes of the `route.annotations` keys gateways may set on their Ingress
    /// (comma-separated). Snippets are refused whatever this says. Default: cert-manager,
    /// external-dns and the streaming timeouts/buffering the operator sets.
    #[arg(long, env = "MCP_GATEWAY_ALLOWED_ANNOTATION_PREFIXES", value_delimiter = ',', default_values_t = mcp_gateway_operator::annotations::default_allowed_prefixes())]
    allowed_annotation_prefixes: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCP_GATEWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let client = kube::Client::try_default()
        .await
        .context("cannot configure a Kubernetes client")?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tracing::info!(metrics = %listener.local_addr()?, "mcp-gateway-operator started");
    tokio::spawn(health::serve(listener, metrics.clone(), ready.clone()));

    let defaults = Defaults {
        sidecar_image: args.sidecar_image,
        allowed_annotation_prefixes: args.allowed_annotation_prefixes,
    };
    let mut ctx = Context::new(client.clone(), defaults, metrics, args.pod_name.clone());
    ctx.key_status_interval = std::time::Duration::from_secs(args.key_status_interval_seconds);

    if !args.leader_election {
        ready.store(true, Ordering::Relaxed);
        controller::run(ctx).await;
        return Ok(());
    }
    let identity = args
        .pod_name
        .unwrap_or_else(|| format!("mcp-gateway-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .context("cannot set up leader election")?;
    let (mut leader, _task) = manager.watch().await;
    // A standby replica is ready: it serves health and takes over when the leader goes.
    ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = %args.lease_name, %identity, "waiting to become the leader");
    while !*leader.borrow_and_update() {
        leader.changed().await.context("leader election stopped")?;
    }
    tracing::info!("became the leader; reconciling");
    tokio::select! {
        () = controller::run(ctx) => Ok(()),
        lost = async {
            loop {
                if leader.changed().await.is_err() || !*leader.borrow() {
                    break;
                }
            }
        } => {
            let () = lost;
            // Stop at once: another replica may already be reconciling.
            anyhow::bail!("lost the leader lease; exiting so a fresh start can re-elect")
        }
    }
}
