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

use mcp_gateway_tests::fixtures::{self, Standin};
use mcp_gateway_tests::node::{self, Node, OPERATOR_SELECTOR, RELEASE_NAMESPACE, SIDECAR_PODS};
use mcp_gateway_tests::public_gateway::{
    PublicGateway, Publish, https_client, ingress_certificate, ingress_tls_secret, secret_manifest,
};
use mcp_gateway_tests::tls;
use mcp_gateway_tests::traefik::{GATEWAY_CLASS, HTTPS_PORT, INGRESS_CLASS, PUBLIC_HOST};
use mcp_gateway_tests::{TempDir, eventually};
use serde_json::Value;

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
        node.wait_gateway_ready(&self.namespace, replicas)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
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

    // The gateway's disruption budget, kept by the real disruption controller, allows one
    // pod of the two to go at a time.
    eventually(60, "the budget allows one disruption", || async {
        let out = node
            .kubectl(
                &[
                    "get",
                    "pdb",
                    "weather-gateway",
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.status.expectedPods}/{.status.disruptionsAllowed}",
                ],
                None,
            )
            .map_err(|e| e.to_string())?;
        if out == "2/1" {
            Ok(())
        } else {
            Err(format!("expectedPods/disruptionsAllowed {out:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_client_with_a_real_token_reaches_the_tool_through_traefik_over_https() {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    let gw = PublicGateway::deploy(&node, "public", 1)
        .await
        .expect("a public gateway");
    let traefik = node.traefik().unwrap();

    let status = node
        .kubectl(
            &[
                "get",
                "mcpgateway",
                "weather",
                "-n",
                "public",
                "-o",
                "jsonpath={.status.url}",
            ],
            None,
        )
        .unwrap();
    assert_eq!(
        status, gw.url,
        "the URL the operator reports is the one clients use"
    );
    // Traefik picks the Ingress up within moments of its creation.
    let out = eventually(60, "a tool call through Traefik", || async {
        gw.call("through traefik")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", node.describe("public"), traefik.logs()));
    assert!(
        out["discovery"]
            .to_string()
            .contains("oauth-protected-resource"),
        "the SDK discovered the resource metadata through the ingress: {out}"
    );

    // Without a token: the challenge names the metadata at the public URL, which resolves
    // through the ingress (the path-inserted form of RFC 9728: this gateway has a prefix).
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&gw.client_ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let challenge = http
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let metadata_url =
        format!("https://{PUBLIC_HOST}/.well-known/oauth-protected-resource/public/mcp");
    assert!(header.contains(&metadata_url), "{header}");
    for url in [metadata_url.clone()] {
        let doc: Value = http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        assert_eq!(doc["resource"], gw.url, "{url}: {doc}");
        assert_eq!(
            doc["authorization_servers"][0], gw.idp.issuer,
            "{url}: {doc}"
        );
    }

    // The upstream got the key, never the token; no log holds either.
    let requests = gw.standin.requests().await.unwrap();
    assert!(requests.iter().any(|r| r["keyMatched"] == true));
    assert!(
        requests.iter().all(|r| r["hasAuthorization"] == false),
        "{requests:?}"
    );
    let logs = node
        .kubectl(
            &["logs", "-n", "public", "deployment/weather-gateway"],
            None,
        )
        .unwrap();
    assert!(logs.contains("tools/call"), "{logs}");
    assert!(!logs.contains(&gw.key), "the sidecar logged the key");
    assert!(!logs.contains("eyJ"), "the sidecar logged a token");
    assert!(!traefik.logs().contains(&gw.key));
    drop(gw.namespace);
}

/// The route's `RouteAccepted` condition (status, reason).
fn route_accepted(node: &Node, namespace: &str) -> Option<(String, String)> {
    let out = node
        .kubectl(
            &[
                "get",
                "mcpgateway",
                "weather",
                "-n",
                namespace,
                "-o",
                "json",
            ],
            None,
        )
        .ok()?;
    let gw: Value = serde_json::from_str(&out).ok()?;
    let c = gw["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "RouteAccepted")?
        .clone();
    Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into()))
}

#[tokio::test]
async fn two_gateways_on_one_host_serve_through_one_gateway_api_gateway_and_sse_outlives_its_timeouts()
 {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    let traefik = node.traefik().unwrap();
    // The shared Gateway, as a platform team would run it: one HTTPS listener for the host,
    // routes from every namespace.
    let infra = "gwapi-infra";
    node.kubectl(&["create", "namespace", infra], None).unwrap();
    let gateway = format!(
        r#"{tls}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: public
  namespace: {infra}
spec:
  gatewayClassName: {GATEWAY_CLASS}
  listeners:
    - name: https
      protocol: HTTPS
      port: {HTTPS_PORT}
      hostname: {PUBLIC_HOST}
      tls:
        mode: Terminate
        certificateRefs: [{{name: public-tls}}]
      allowedRoutes:
        namespaces: {{from: All}}
"#,
        tls = ingress_tls_secret(infra, "public-tls"),
    );
    node.kubectl(&["apply", "-f", "-"], Some(&gateway)).unwrap();
    let publish = || Publish::Gateway {
        namespace: infra.into(),
        name: "public".into(),
    };
    let a = PublicGateway::deploy_with(&node, "gwapi-a", 1, publish())
        .await
        .expect("a public gateway");
    let b = PublicGateway::deploy_with(&node, "gwapi-b", 1, publish())
        .await
        .expect("a public gateway");

    for gw in [&a, &b] {
        // Traefik's verdict on the route, read back by the operator.
        eventually(60, "RouteAccepted=True from Traefik", || async {
            match route_accepted(&node, &gw.namespace) {
                Some((s, r)) if s == "True" && r == "Accepted" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", traefik.logs()));
        let out = eventually(60, "a tool call through the HTTPRoute", || async {
            gw.call(&format!("through the gateway api to {}", gw.namespace))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", node.describe(&gw.namespace), traefik.logs()));
        assert!(
            out["discovery"]
                .to_string()
                .contains("oauth-protected-resource"),
            "{out}"
        );
    }

    // Legacy SSE through the route, held open past Traefik's 60 s read timeout: the
    // gateway's keep-alives (every 5 s here) keep it alive, and a call still answers on it.
    let http = https_client(&a);
    let (mut stream, token, endpoint) = open_sse(&a).await;
    let started = std::time::Instant::now();
    let mut seen = String::new();
    let mut keep_alives = 0;
    while started.elapsed() < std::time::Duration::from_secs(65) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(15), stream.chunk())
            .await
            .expect("the stream went silent for 15 s")
            .expect("the stream failed")
            .expect("the stream ended");
        let text = String::from_utf8_lossy(&chunk).to_string();
        keep_alives += text.matches(": keep-alive").count();
        seen.push_str(&text);
    }
    assert!(
        keep_alives >= 10,
        "{keep_alives} keep-alives in 65 s: {seen}"
    );
    assert!(
        !endpoint.contains(&a.key) && !endpoint.contains("code="),
        "{endpoint}"
    );
    let posted = http
        .post(&endpoint)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"after 65 s"}}}"#)
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let mut answer = String::new();
    while !answer.contains("after 65 s") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(15), stream.chunk())
            .await
            .expect("no answer on the stream within 15 s")
            .unwrap()
            .expect("the stream ended before the answer");
        answer.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!traefik.logs().contains(&token), "traefik logged the token");

    // The second gateway moves to the host's root: its resource metadata is then at both the
    // path-inserted and the root well-known URL, both routed through the Gateway.
    node.kubectl(
        &[
            "patch",
            "mcpgateway",
            "weather",
            "-n",
            &b.namespace,
            "--type=merge",
            "-p",
            r#"{"spec":{"route":{"pathPrefix":"/"}}}"#,
        ],
        None,
    )
    .unwrap();
    let http = https_client(&b);
    let root_resource = format!("https://{PUBLIC_HOST}/mcp");
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let url = format!("https://{PUBLIC_HOST}{path}");
        eventually(120, "the root metadata through the HTTPRoute", || async {
            let answer = http.get(&url).send().await.map_err(|e| e.to_string())?;
            let doc: Value = answer.json().await.map_err(|e| e.to_string())?;
            if doc["resource"] == root_resource.as_str() {
                Ok(())
            } else {
                Err(format!("{url}: {doc}"))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", traefik.logs()));
    }
}

/// Opens a legacy SSE stream to `gw` with a token; returns it once its endpoint event came,
/// with the token and the endpoint's absolute URL.
async fn open_sse(gw: &PublicGateway) -> (reqwest::Response, String, String) {
    let http = https_client(gw);
    let token = gw.idp.token(&gw.url, "mcp:tools", "RS256").unwrap();
    let sse_url = gw.url.trim_end_matches("/mcp").to_string() + "/sse";
    let mut stream = http
        .get(&sse_url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    let endpoint = loop {
        if let Some(event) = seen
            .split("\n\n")
            .find(|e| e.contains("event: endpoint") && seen.contains(&format!("{e}\n\n")))
            && let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
        {
            break data.trim().to_string();
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(15), stream.chunk())
            .await
            .expect("no endpoint event within 15 s")
            .unwrap()
            .expect("the stream ended before its endpoint event");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    };
    let endpoint = if endpoint.starts_with('/') {
        format!("https://{PUBLIC_HOST}{endpoint}")
    } else {
        endpoint
    };
    (stream, token, endpoint)
}

#[tokio::test]
async fn a_pod_killed_mid_stream_is_replaced_and_new_requests_succeed() {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    let gw = PublicGateway::deploy(&node, "killed", 1)
        .await
        .expect("a public gateway");
    let traefik = node.traefik().unwrap();
    eventually(60, "a tool call through Traefik", || async {
        gw.call("before the kill")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", traefik.logs()));
    let (mut stream, _, _) = open_sse(&gw).await;
    let before = pod_names(&node.pods("killed", SIDECAR_PODS).unwrap());

    // The pod is killed under the open stream: deleted at once, no grace.
    node.kubectl(
        &[
            "delete",
            "pod",
            &before[0],
            "-n",
            "killed",
            "--grace-period=0",
            "--force",
        ],
        None,
    )
    .unwrap();
    // The client learns: the stream ends (or fails) instead of hanging.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream stayed open 30 s after its pod was killed"
    );

    // A new pod replaces it, and new requests through the same URL succeed.
    let after = node
        .wait_gateway_ready("killed", 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(pod_names(&after), before, "the pod was not replaced");
    eventually(60, "a tool call after the kill", || async {
        gw.call("after the kill")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", traefik.logs()));
    let _ = open_sse(&gw).await;
}

#[tokio::test]
async fn the_facade_signs_a_user_in_across_two_replicas_through_traefik() {
    let node = Node::shared().expect("a real node (scripts/local-cluster start --node)");
    node.ensure_operator().await.expect("the operator pod");
    let traefik = node.traefik().unwrap();
    let ns = "facade";
    let dir = TempDir::new("real-node-facade");
    let key = format!("SYSKEY-{ns}-{}", std::process::id());
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, &key).unwrap();
    let standin = Standin::start_on(&key_file, 0, &["--host".into(), node.ip.clone()])
        .expect("functions stand-in on the bridge IP");
    let idp_dir = dir.path().join("idp");
    std::fs::create_dir_all(&idp_dir).unwrap();
    tls::make_certificates_for(&idp_dir, &format!("IP:{}", node.ip));
    let url = format!("https://{PUBLIC_HOST}/{ns}/mcp");
    // An Entra-like IdP (no DCR, no resource parameter) behind a private CA, with the
    // gateway's app registration for the public callback.
    let idp = fixtures::Idp::start_entra_like(&fixtures::EntraLike {
        redirect_uris: vec![format!("https://{PUBLIC_HOST}/{ns}/oauth/callback")],
        https: Some((node.ip.clone(), idp_dir.clone())),
        ..Default::default()
    })
    .expect("an Entra-like IdP on the bridge");
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::write(
        &client_ca,
        read(idp_dir.join("ca.pem")) + &read(ingress_certificate().join("ca.pem")),
    )
    .unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
{secret}---
{tls_secret}---
apiVersion: v1
kind: Secret
metadata:
  name: entra-app
  namespace: {ns}
stringData:
  client-secret: {client_secret}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: idp-ca
  namespace: {ns}
data:
  ca.crt: |
    {ca}
---
apiVersion: mcpgateway.dev/v1alpha1
kind: McpGateway
metadata:
  name: weather
  namespace: {ns}
spec:
  replicas: 2
  upstream:
    url: {upstream}
    allowInsecureUpstream: true
  systemKey:
    secretRef:
      name: weather-fn-keys
  auth:
    mode: AuthorizationServer
    authorizationServer:
      idp:
        issuer: {issuer}
        clientId: {client_id}
        clientSecretRef:
          name: entra-app
        preset: Entra
      scopes: [mcp.tools]
      allowedTenants: [{tenant}]
  trustedCA:
    configMapRef:
      name: idp-ca
  resources:
    requests: {{cpu: 10m, memory: 32Mi}}
    limits: {{memory: 128Mi}}
  route:
    host: {PUBLIC_HOST}
    pathPrefix: /{ns}
    ingressClassName: {INGRESS_CLASS}
    tls:
      secretName: public-tls
"#,
        secret = secret_manifest(ns, &key),
        tls_secret = ingress_tls_secret(ns, "public-tls"),
        client_secret = fixtures::ENTRA_GATEWAY_CLIENT_SECRET,
        ca = read(idp_dir.join("ca.pem")).replace('\n', "\n    "),
        upstream = standin.url,
        issuer = idp.issuer,
        client_id = fixtures::ENTRA_GATEWAY_CLIENT_ID,
        tenant = fixtures::ENTRA_TENANT_ID,
    );
    node.kubectl(&["apply", "-f", "-"], Some(&manifest))
        .unwrap();
    let pods = node
        .wait_gateway_ready(ns, 2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Both pods in Traefik's configuration before the sign-in starts, so it can spread.
    eventually(60, "Traefik balances over both replicas", || async {
        match traefik.backends(ns, "weather-gateway") {
            2 => Ok(()),
            n => Err(format!("{n} backends")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", traefik.logs()));

    // The SDK's whole sign-in (DCR, authorize, consent, the IdP, callback, token, refresh)
    // through Traefik, which spreads its requests over both replicas: they share no state
    // but their keys.
    let out = eventually(90, "an OAuth sign-in through the facade", || async {
        let (ok, out, raw) = fixtures::mcp_oauth_client_trusting(
            &client_ca,
            &[
                "--url",
                &url,
                "--call",
                "echo",
                "--args",
                r#"{"message":"signed in on a node"}"#,
            ],
        )
        .map_err(|e| e.to_string())?;
        if ok { Ok(out) } else { Err(raw) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", node.describe(ns), traefik.logs()));
    assert_eq!(out["registered"], "dcr", "{out}");
    assert!(
        out["result"].to_string().contains("signed in on a node"),
        "{out}"
    );
    assert_eq!(out["refreshed"], true, "{out}");
    for pod in pod_names(&pods) {
        let logs = node.kubectl(&["logs", "-n", ns, &pod], None).unwrap();
        assert!(
            logs.contains(r#""message":"request""#),
            "replica {pod} served none of the sign-in:\n{logs}"
        );
        assert!(!logs.contains(&key), "{pod} logged the key");
        assert!(
            !logs.contains(fixtures::ENTRA_GATEWAY_CLIENT_SECRET),
            "{pod} logged the client secret"
        );
        assert!(!logs.contains("eyJ"), "{pod} logged a token");
    }
    let requests = standin.requests().await.unwrap();
    assert!(
        requests.iter().all(|r| r["hasAuthorization"] == false),
        "{requests:?}"
    );
}
