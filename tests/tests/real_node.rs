//! Tier 5 (see `mcp_gateway_tests::node`): the product on a real node. The chart installs
//! the operator as a pod from an image built here; an McpGateway becomes a sidecar
//! Deployment whose pods the real Deployment controller, scheduler and kubelet start; the
//! gateway turns Ready from real pod status; an MCP request from the host reaches the
//! Functions stand-in (on the host, at the node's bridge IP) through the pod, with the key
//! from the mounted Secret and no key in the pod's logs.
//!
//! Needs root (a kubelet); without it these tests fail with the reason, never pass.
//! Each test has a namespace, a gateway (on a host of its own: one host and path belong to
//! one gateway) and a stand-in of its own on the shared node.

use base64::Engine;
use mcp_gateway_tests::fixtures::{self, Standin};
use mcp_gateway_tests::node::{self, Node, OPERATOR_SELECTOR, RELEASE_NAMESPACE};
use mcp_gateway_tests::{TempDir, eventually};
use serde_json::Value;

const SIDECAR_PODS: &str = "app.kubernetes.io/name=mcp-gateway-sidecar";

fn secret_manifest(namespace: &str, key: &str) -> String {
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: weather-fn-keys
  namespace: {namespace}
data:
  mcp_extension: {key_b64}
"#
    )
}

fn gateway_manifest(namespace: &str, upstream: &str, replicas: u32, cpu: &str) -> String {
    format!(
        r#"apiVersion: mcpgateway.dev/v1alpha1
kind: McpGateway
metadata:
  name: weather
  namespace: {namespace}
spec:
  replicas: {replicas}
  upstream:
    url: {upstream}
    allowInsecureUpstream: true
  systemKey:
    secretRef:
      name: weather-fn-keys
  auth:
    mode: Anonymous
  resources:
    requests: {{cpu: {cpu}, memory: 32Mi}}
    limits: {{memory: 128Mi}}
  route:
    host: {namespace}.example.com
    pathPrefix: /weather
"#
    )
}

/// A gateway of its own in `namespace`: the stand-in on the node's bridge IP (where pods
/// reach the host), the key Secret, the McpGateway; returns once it is Ready=True.
struct Gateway {
    namespace: String,
    standin: Standin,
    key_file: std::path::PathBuf,
    _dir: TempDir,
}

impl Gateway {
    async fn deploy(node: &Node, namespace: &str, replicas: u32) -> Gateway {
        node.ensure_operator().await.expect("the operator pod");
        let dir = TempDir::new("real-node");
        let key = format!("SYSKEY-{namespace}-{}", std::process::id());
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, &key).unwrap();
        let standin = Standin::start_on(&key_file, 0, &["--host".into(), node.ip.clone()])
            .expect("functions stand-in on the bridge IP");
        node.kubectl(&["create", "namespace", namespace], None)
            .unwrap();
        let gw = Gateway {
            namespace: namespace.into(),
            standin,
            key_file,
            _dir: dir,
        };
        node.kubectl(
            &["apply", "-f", "-"],
            Some(&secret_manifest(namespace, &key)),
        )
        .unwrap();
        gw.apply(node, replicas, "10m");
        gw.wait_ready(node, replicas).await;
        gw
    }

    fn key(&self) -> String {
        std::fs::read_to_string(&self.key_file).unwrap()
    }

    fn apply(&self, node: &Node, replicas: u32, cpu: &str) {
        let manifest = gateway_manifest(&self.namespace, &self.standin.url, replicas, cpu);
        node.kubectl(&["apply", "-f", "-"], Some(&manifest))
            .expect("kubectl apply the McpGateway");
    }

    /// Ready=True (which follows the real Deployment's status) with `replicas` sidecar pods
    /// Running and Ready, and no others; returns the pods.
    async fn wait_ready(&self, node: &Node, replicas: u32) -> Vec<Value> {
        let ns = &self.namespace;
        eventually(180, "the McpGateway is Ready=True", || async {
            let out = node
                .kubectl(
                    &["get", "mcpgateway", "weather", "-n", ns, "-o", "json"],
                    None,
                )
                .map_err(|e| e.to_string())?;
            let gw: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let ready = gw["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
            match ready {
                Some(c) if c["status"] == "True" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.describe(ns)));
        eventually(120, "every sidecar pod Ready, no old ones left", || async {
            let pods = node.pods(ns, SIDECAR_PODS).map_err(|e| e.to_string())?;
            let ready = pods.iter().filter(|p| node::pod_ready(p)).count();
            if pods.len() == replicas as usize && ready == pods.len() {
                Ok(pods)
            } else {
                Err(format!("{ready} of {} pods ready", pods.len()))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.describe(ns)))
    }

    /// The Service's ClusterIP:port.
    fn cluster_ip(&self, node: &Node) -> String {
        node.kubectl(
            &[
                "get",
                "service",
                "weather-gateway",
                "-n",
                &self.namespace,
                "-o",
                "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}",
            ],
            None,
        )
        .unwrap()
    }
}

/// An MCP client on the host calls the echo tool at `base` (host:port); returns its output.
fn call(base: &str, message: &str) -> Result<Value, String> {
    let url = format!("http://{base}/weather/mcp");
    let args = format!(r#"{{"message":"{message}"}}"#);
    let (ok, call, raw) = fixtures::mcp_client(&[
        "--url",
        &url,
        "--transport",
        "streamable",
        "--list-tools",
        "--call",
        "echo",
        "--args",
        &args,
    ])
    .map_err(|e| e.to_string())?;
    if ok && call["result"].to_string().contains(message) {
        Ok(call)
    } else {
        Err(format!("MCP client via {url}: {raw}"))
    }
}

fn pod_names(pods: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_operator_and_a_gateway_run_as_pods_and_serve_mcp() {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    let gw = Gateway::deploy(&node, "weather", 1).await;
    let key = gw.key();

    let operator = node.pods(RELEASE_NAMESPACE, OPERATOR_SELECTOR).unwrap();
    assert_eq!(operator.len(), 1);
    assert!(node::pod_ready(&operator[0]), "{}", operator[0]["status"]);
    assert_eq!(
        operator[0]["spec"]["securityContext"]["runAsUser"], 65532,
        "the chart's security context"
    );

    let pods = node.pods("weather", SIDECAR_PODS).unwrap();
    let table = node
        .kubectl(&["get", "mcpgateways", "-n", "weather"], None)
        .unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let ready = header.iter().position(|h| *h == "READY").unwrap();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[ready], "True", "{table}");

    // Through the pod (its IP on the bridge) and through the Service (kube-proxy's rules).
    let pod_ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    for base in [format!("{pod_ip}:8080"), gw.cluster_ip(&node)] {
        let out = call(&base, "hello from a pod").unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.to_string().contains(&key));
    }
    let requests = gw.standin.requests().await.unwrap();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r["keyMatched"] == true && r["hasAuthorization"] == false),
        "{requests:?}"
    );

    // The logs, read through the API server from the kubelet (authenticated), hold no key.
    let logs = node
        .kubectl(
            &["logs", "-n", "weather", "deployment/weather-gateway"],
            None,
        )
        .unwrap();
    assert!(
        logs.contains("tools/call"),
        "the sidecar logged no request:\n{logs}"
    );
    assert!(!logs.contains(&key), "the sidecar logged the key");
    let operator_logs = node
        .kubectl(
            &[
                "logs",
                "-n",
                RELEASE_NAMESPACE,
                "-l",
                OPERATOR_SELECTOR,
                "--tail=-1",
            ],
            None,
        )
        .unwrap();
    assert!(!operator_logs.contains(&key), "the operator logged the key");
}

#[tokio::test]
async fn a_rotated_secret_reaches_the_running_pod_without_a_restart() {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    let gw = Gateway::deploy(&node, "rotate", 1).await;
    let before = node.pods("rotate", SIDECAR_PODS).unwrap();
    let pod_ip = before[0]["status"]["podIP"].as_str().unwrap().to_string();
    let base = format!("{pod_ip}:8080");
    call(&base, "before the rotation").unwrap_or_else(|e| panic!("{e}"));

    // The Function App's key rotates: the host takes only the new one from now on, and the
    // Secret is updated; the kubelet refreshes the mounted file, the sidecar reloads it.
    let new_key = format!("SYSKEY-rotated-{}", std::process::id());
    std::fs::write(&gw.key_file, &new_key).unwrap();
    node.kubectl(
        &["apply", "-f", "-"],
        Some(&secret_manifest("rotate", &new_key)),
    )
    .unwrap();
    eventually(90, "a call succeeds with the rotated key", || async {
        call(&base, "after the rotation")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", node.describe("rotate")));

    let after = node.pods("rotate", SIDECAR_PODS).unwrap();
    assert_eq!(
        pod_names(&before),
        pod_names(&after),
        "the pod was replaced"
    );
    assert_eq!(
        after[0]["status"]["containerStatuses"][0]["restartCount"], 0,
        "the sidecar restarted"
    );
    let logs = node
        .kubectl(
            &["logs", "-n", "rotate", "deployment/weather-gateway"],
            None,
        )
        .unwrap();
    assert!(!logs.contains(&new_key), "the sidecar logged the new key");
}

#[tokio::test]
async fn a_spec_change_rolls_the_pods_and_two_replicas_serve_behind_the_service() {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    let gw = Gateway::deploy(&node, "rollout", 1).await;
    let before = node.pods("rollout", SIDECAR_PODS).unwrap();

    // A change to the pod template (resources) and two replicas: new pods replace the old.
    gw.apply(&node, 2, "20m");
    let after = gw.wait_ready(&node, 2).await;
    let old = pod_names(&before);
    assert!(
        pod_names(&after).iter().all(|n| !old.contains(n)),
        "{old:?} still there after the rollout: {:?}",
        pod_names(&after)
    );
    for pod in &after {
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "20m"
        );
    }

    // Both pods are behind the Service, and the Service answers.
    let ns = "rollout";
    eventually(60, "two endpoints ready behind the Service", || async {
        let out = node
            .kubectl(
                &[
                    "get",
                    "endpointslices",
                    "-n",
                    ns,
                    "-l",
                    "kubernetes.io/service-name=weather-gateway",
                    "-o",
                    "json",
                ],
                None,
            )
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let ready = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count();
        if ready == 2 {
            Ok(())
        } else {
            Err(format!("{ready} ready endpoints"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let service = gw.cluster_ip(&node);
    for i in 0..4 {
        call(&service, &format!("through the Service {i}")).unwrap_or_else(|e| panic!("{e}"));
    }
}
