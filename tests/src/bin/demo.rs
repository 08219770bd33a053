//! `scripts/demo`: the whole path on a local control plane, for a person to watch. Runs
//! until Ctrl-C, or exits after the tool call with `--exit`.

use std::sync::Arc;

use mcp_gateway_tests::cluster::Cluster;
use mcp_gateway_tests::whole_path;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit = std::env::args().any(|a| a == "--exit");
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
