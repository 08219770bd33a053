//! `scripts/demo`: the whole path for a person to watch. Runs until Ctrl-C, or exits after the
//! tool call with `--exit`.
//!
//! As root (a kubelet needs cgroups, mounts, a bridge), on a real node: the chart installs the
//! operator as a pod, an McpGateway becomes sidecar pods, Traefik routes
//! `https://localhost/demo/mcp` to them, and the TypeScript SDK client gets a token from the
//! IdP through MCP's own discovery and calls a tool. Elsewhere, or with `--process`, on a bare
//! API server with the sidecar as a local process (`whole_path`).

use std::sync::Arc;

use mcp_gateway_tests::cluster::Cluster;
use mcp_gateway_tests::node::{self, Node};
use mcp_gateway_tests::public_gateway::PublicGateway;
use mcp_gateway_tests::{eventually, whole_path};

const NAMESPACE: &str = "demo";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit = std::env::args().any(|a| a == "--exit");
    let process = std::env::args().any(|a| a == "--process");
    match node::unsupported() {
        None if !process => on_a_node(exit).await,
        why => {
            if let Some(why) = why {
                eprintln!("==> no real node here ({why}); the process-based path instead");
            }
            with_processes(exit).await
        }
    }
}

async fn on_a_node(exit: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    eprintln!(
        "==> start a real node (etcd, kube-apiserver, controllers, scheduler, containerd, kubelet, kube-proxy) and build the images"
    );
    let node = Node::shared()?;
    eprintln!(
        "==> helm install the chart (the operator runs as a pod), start Traefik, the Functions stand-in and an IdP; kubectl apply an McpGateway"
    );
    let gw = PublicGateway::deploy(&node, NAMESPACE, 1).await?;
    eprintln!(
        "==> a real MCP client: 401, resource metadata, a token from the IdP, then a tool call through Traefik and the gateway pod"
    );
    let out = eventually(60, "a tool call through Traefik", || async {
        gw.call("hello from a real node")
    })
    .await?;
    let table = node.kubectl(&["get", "mcpgateways", "-n", NAMESPACE], None)?;
    println!("\n$ kubectl get mcpgateways -n {NAMESPACE}\n{table}");
    println!(
        "$ kubectl get pods -n {NAMESPACE}\n{}",
        node.kubectl(&["get", "pods", "-n", NAMESPACE], None)?
    );
    println!("tool result (echo through {}): {}", gw.url, out["result"]);
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    if exit {
        return Ok(());
    }
    println!(
        "\nThe gateway's public URL: {url}\nKUBECONFIG={kubeconfig}\nThe ingress certificate's CA (for clients): {ca}\n  e.g. NODE_EXTRA_CA_CERTS={ca} npx @modelcontextprotocol/inspector\nPress Ctrl-C to stop everything (the node is taken down and the machine put back).",
        url = gw.url,
        kubeconfig = node.cluster.kubeconfig.display(),
        ca = gw.client_ca.display(),
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn with_processes(exit: bool) -> anyhow::Result<()> {
    eprintln!("==> start a local control plane (kube-apiserver + etcd on 127.0.0.1)");
    let cluster = Arc::new(Cluster::start()?);
    let path = whole_path::run(cluster, &|step| eprintln!("==> {step}")).await?;
    println!(
        "\n$ kubectl get mcpgateways -n {}\n{}",
        whole_path::NAMESPACE,
        path.table
    );
    println!(
        "tool result (echo through the gateway): {}",
        path.call["result"]
    );
    println!("tools: {}", path.call["tools"]);
    if exit {
        return Ok(());
    }
    println!(
        "\nThe gateway listens on {} (public URL {}).\nKUBECONFIG={}\nPress Ctrl-C to stop everything.",
        path.sidecar.url,
        whole_path::PUBLIC_URL,
        path.cluster.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
