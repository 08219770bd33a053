//! The whole path (see `mcp_gateway_tests::whole_path`): helm install → operator with the
//! chart's RBAC → kubectl apply → sidecar with the rendered config → a real MCP client with
//! a real token calls a tool through it → `kubectl get mcpgateways` shows it Ready.

use mcp_gateway_tests::cluster::Cluster;
use mcp_gateway_tests::whole_path;

#[tokio::test]
async fn a_client_calls_a_tool_through_what_the_operator_rendered() {
    // A cluster of its own: this test installs the chart cluster-wide.
    let cluster = std::sync::Arc::new(Cluster::start().expect("local control plane"));
    let path = whole_path::run(cluster, &|step| eprintln!("whole path: {step}"))
        .await
        .expect("whole path");

    assert!(
        path.call["result"]
            .to_string()
            .contains("hello from the whole path"),
        "{}",
        path.call
    );
    let header: Vec<&str> = path
        .table
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "HOST", "UPSTREAM", "AUTH", "READY", "URL", "AGE"]
    );
    let row = path.table.lines().nth(1).unwrap();
    assert!(
        row.contains("True") && row.contains(whole_path::PUBLIC_URL),
        "{}",
        path.table
    );

    // The upstream got the key from the operator-mounted Secret; the client's token stayed here.
    let requests = path.standin.requests().await.unwrap();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r["keyMatched"] == true && r["hasAuthorization"] == false)
    );
    // The operator ran with the chart's identity and never logged or stored the key.
    assert!(!path.operator.logs().contains(&path.key));
    assert!(!path.sidecar.logs().contains(&path.key));
    assert!(!path.call.to_string().contains(&path.key));
}
