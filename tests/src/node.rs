//! Tier 5: a real node. `scripts/local-cluster start --node` (kubelet, containerd,
//! kube-proxy, the controllers and the scheduler on the bridge `mcpgw0`, the node named by
//! its IP), the operator and sidecar images built here (`scripts/node-images`) and imported
//! into the node's containerd, and the chart installed with them: the operator and the
//! gateways run as pods. One node per test binary while a test holds it (there is at most one
//! per machine); the last holder to drop stops it, and `stop` puts the machine back.
//!
//! The only non-loopback addresses used are the node's own (the bridge) and its pods'.

use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::traefik::Traefik;
use crate::workspace_root;

pub const RELEASE: &str = "mcp-gateway";
pub const RELEASE_NAMESPACE: &str = "mcp-gateway-system";
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/instance=mcp-gateway";
/// Every gateway's sidecar pods.
pub const SIDECAR_PODS: &str = "app.kubernetes.io/name=mcp-gateway-sidecar";

pub struct Node {
    /// Started on first use ([`Node::traefik`]); dropped before the cluster stops.
    traefik: Mutex<Option<Arc<Traefik>>>,
    pub cluster: Cluster,
    /// The node's IP, on the bridge: the host's address as pods see it.
    pub ip: String,
    pub operator_image: String,
    pub sidecar_image: String,
    chart: tokio::sync::Mutex<bool>,
}

/// Why this machine cannot run a node, if it cannot. A node needs root (cgroups, mounts, a
/// bridge, iptables); without it the tier-5 tests fail with this message, they never pass
/// silently.
pub fn unsupported() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if uid != "0" {
        return Some(format!(
            "the real-node tests need root (this is uid {uid}): a kubelet needs cgroups, mounts, \
             a bridge and iptables. Run scripts/test as root, as CI does."
        ));
    }
    if !std::path::Path::new("/sys/fs/cgroup").is_dir() {
        return Some("the real-node tests need cgroups (/sys/fs/cgroup is missing)".into());
    }
    None
}

impl Node {
    /// The node every test in this process shares while one holds it.
    pub fn shared() -> anyhow::Result<Arc<Node>> {
        static SHARED: Mutex<Weak<Node>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = slot.upgrade() {
            return Ok(node);
        }
        let node = Arc::new(Self::start()?);
        *slot = Arc::downgrade(&node);
        Ok(node)
    }

    fn start() -> anyhow::Result<Self> {
        if let Some(why) = unsupported() {
            bail!("{why}");
        }
        let cluster = Cluster::start_with_node()?;
        let env = std::fs::read_to_string(cluster.state_dir().join("env"))?;
        let ip = env
            .lines()
            .find_map(|l| l.strip_prefix("MCPGW_NODE_IP="))
            .context("MCPGW_NODE_IP in the env file")?
            .to_string();
        let out = Command::new(workspace_root().join("scripts/node-images"))
            .arg("--import")
            .arg(cluster.state_dir())
            .current_dir(workspace_root())
            .output()
            .context("run scripts/node-images")?;
        ensure!(
            out.status.success(),
            "scripts/node-images failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout)?;
        let get = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::to_string)
                .with_context(|| format!("{key} from scripts/node-images"))
        };
        Ok(Self {
            operator_image: get("OPERATOR_IMAGE=")?,
            sidecar_image: get("SIDECAR_IMAGE=")?,
            ip,
            traefik: Mutex::new(None),
            cluster,
            chart: tokio::sync::Mutex::new(false),
        })
    }

    /// Traefik on this node (started once): the ingress controller and Gateway API
    /// implementation clients reach on 127.0.0.1.
    pub fn traefik(&self) -> anyhow::Result<Arc<Traefik>> {
        let mut slot = self.traefik.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(traefik) = slot.as_ref() {
            return Ok(traefik.clone());
        }
        let traefik = Arc::new(Traefik::start(&self.cluster, &self.cluster.state_dir())?);
        *slot = Some(traefik.clone());
        Ok(traefik)
    }

    /// kubectl with `args`; fails with its stderr.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let (ok, out, err) = self.cluster.kubectl_run(args, stdin);
        ensure!(ok, "kubectl {}: {err}", args.join(" "));
        Ok(out)
    }

    /// The chart installed once for every test on this node, with its operator pod Ready.
    pub async fn ensure_operator(&self) -> anyhow::Result<()> {
        let mut installed = self.chart.lock().await;
        if !*installed {
            self.install_chart()?;
            *installed = true;
        }
        crate::eventually(180, "the operator pod is Running and Ready", || async {
            let pods = self
                .pods(RELEASE_NAMESPACE, OPERATOR_SELECTOR)
                .map_err(|e| e.to_string())?;
            match pods.first() {
                Some(p) if pod_ready(p) => Ok(()),
                Some(p) => Err(p["status"].to_string()),
                None => Err("no pod yet".into()),
            }
        })
        .await
        .with_context(|| self.describe(RELEASE_NAMESPACE))
    }

    /// `helm install` of the chart with the images built here (never pulled).
    fn install_chart(&self) -> anyhow::Result<()> {
        let (op_repo, op_tag) = self.operator_image.rsplit_once(':').context("tag")?;
        let (sc_repo, sc_tag) = self.sidecar_image.rsplit_once(':').context("tag")?;
        let out = Command::new(crate::whole_path::helm()?)
            .args([
                "install",
                RELEASE,
                "charts/mcp-gateway",
                "-n",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "--wait=false",
                "--set",
                &format!("operator.image.repository={op_repo}"),
                "--set",
                &format!("operator.image.tag={op_tag}"),
                "--set",
                "operator.image.pullPolicy=Never",
                "--set",
                &format!("sidecar.image.repository={sc_repo}"),
                "--set",
                &format!("sidecar.image.tag={sc_tag}"),
            ])
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .current_dir(workspace_root())
            .output()?;
        ensure!(
            out.status.success(),
            "helm install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The pods of `namespace` matching `selector` (kubectl's JSON items).
    pub fn pods(&self, namespace: &str, selector: &str) -> anyhow::Result<Vec<Value>> {
        let out = self.kubectl(
            &["get", "pods", "-n", namespace, "-l", selector, "-o", "json"],
            None,
        )?;
        let v: Value = serde_json::from_str(&out)?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// What to look at when pods do not come up: their description and the namespace's events.
    pub fn describe(&self, namespace: &str) -> String {
        let (_, pods, _) = self
            .cluster
            .kubectl_run(&["describe", "pods", "-n", namespace], None);
        let (_, events, _) = self.cluster.kubectl_run(
            &["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"],
            None,
        );
        let (_, logs, _) = self.cluster.kubectl_run(
            &[
                "logs",
                "-n",
                namespace,
                "--all-containers",
                "--prefix",
                "--tail=30",
                "-l",
                "app.kubernetes.io/managed-by",
            ],
            None,
        );
        format!("{pods}\n--- events ---\n{events}\n--- logs ---\n{logs}")
    }
}

impl Node {
    /// Waits until the McpGateway `weather` of `ns` is Ready=True (which follows the real
    /// Deployment's status) with `replicas` sidecar pods Running and Ready and no others;
    /// returns the pods. The error holds what to look at.
    pub async fn wait_gateway_ready(&self, ns: &str, replicas: u32) -> anyhow::Result<Vec<Value>> {
        crate::eventually(180, "the McpGateway is Ready=True", || async {
            let out = self
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
        .with_context(|| self.describe(ns))?;
        crate::eventually(120, "every sidecar pod Ready, no old ones left", || async {
            let pods = self.pods(ns, SIDECAR_PODS).map_err(|e| e.to_string())?;
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            if pods.len() == replicas as usize && ready == pods.len() {
                Ok(pods)
            } else {
                Err(format!("{ready} of {} pods ready", pods.len()))
            }
        })
        .await
        .with_context(|| self.describe(ns))
    }
}

/// Whether a pod (kubectl JSON) is Running with every container ready.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}
