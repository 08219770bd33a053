//! Scale benchmark (not a test): apply N McpGateways to a real local API server and measure
//! how long the operator takes until every one has a current `observedGeneration` (written
//! after all of its objects were applied), and the operator's peak RSS.
//!
//! `bench/operator-scale [N]` builds the release operator and runs this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use mcp_gateway_crds::v1alpha1::McpGateway;
use mcp_gateway_tests::cluster::{Cluster, TestNamespace};
use mcp_gateway_tests::operator::Operator;
use serde_json::json;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000);
    let cluster = Arc::new(Cluster::start()?);
    cluster.install_crd()?;
    let client = cluster.client().await?;
    let ns = TestNamespace::new(&client, "scale").await?;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "fn-keys"}, "stringData": {"mcp_extension": "k"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await?;
    let operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])?;
    let pid = operator.process.pid();
    let idle_rss = rss_kb(pid);

    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let gateways = gateways.clone();
            async move {
                let gw: McpGateway = serde_json::from_value(json!({
                    "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
                    "metadata": {"name": format!("gw-{i:04}")},
                    "spec": {
                        "upstream": {"url": "https://fn.azurewebsites.net"},
                        "systemKey": {"secretRef": {"name": "fn-keys"}},
                        "auth": {"mode": "Anonymous"},
                        "route": {"host": format!("gw-{i:04}.example.com")},
                    }
                }))
                .expect("valid gateway");
                gateways
                    .create(&PostParams::default(), &gw)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let created = started.elapsed();

    let mut peak_rss = rss_kb(pid);
    let deadline = Instant::now() + Duration::from_secs(600);
    let converged = loop {
        peak_rss = peak_rss.max(rss_kb(pid));
        let list = gateways.list(&ListParams::default()).await?;
        let current = list
            .items
            .iter()
            .filter(|g| {
                g.status.as_ref().and_then(|s| s.observed_generation) == g.metadata.generation
            })
            .count();
        if current == n {
            break started.elapsed();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {current}/{n} converged after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .list_metadata(&ListParams::default())
        .await?;
    anyhow::ensure!(
        deployments.items.len() == n,
        "{} deployments for {n} gateways",
        deployments.items.len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled_rss = rss_kb(pid);
    println!("gateways: {n}");
    println!("created all in: {:.1} s", created.as_secs_f64());
    println!(
        "converged (every observedGeneration current, objects applied): {:.1} s",
        converged.as_secs_f64()
    );
    println!(
        "operator RSS: idle {:.1} MB, peak {:.1} MB, settled {:.1} MB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        settled_rss as f64 / 1024.0
    );
    let metrics = operator.metrics().await?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("mcp_gateway_operator_reconcile"))
    {
        println!("{line}");
    }
    Ok(())
}
