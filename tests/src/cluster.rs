//! A real kube-apiserver + etcd on loopback, started with `scripts/local-cluster` (the same
//! mechanism as the quick start). Tests share one cluster while any of them holds it; the
//! last holder to drop stops it, so it is torn down even when a test panics.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{TempDir, workspace_root};

pub struct Cluster {
    pub kubeconfig: PathBuf,
    dir: TempDir,
}

fn script() -> PathBuf {
    workspace_root().join("scripts/local-cluster")
}

impl Cluster {
    /// The cluster every test in this process shares while one holds it.
    pub fn shared() -> anyhow::Result<Arc<Cluster>> {
        static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = slot.upgrade() {
            return Ok(cluster);
        }
        let cluster = Arc::new(Self::start()?);
        *slot = Arc::downgrade(&cluster);
        Ok(cluster)
    }

    /// Starts a fresh cluster of its own.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a fresh cluster with a real node (`start --node`: root only, one per machine;
    /// see `crate::node`).
    pub fn start_with_node() -> anyhow::Result<Self> {
        Self::start_with(&["--node"])
    }

    fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = TempDir::new("cluster");
        let state = dir.path().join("state");
        let out = Command::new(script())
            .arg("start")
            .args(extra)
            .arg("--dir")
            .arg(&state)
            .output()
            .context("run scripts/local-cluster start")?;
        if !out.status.success() {
            bail!(
                "scripts/local-cluster start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env: std::collections::BTreeMap<String, String> =
            std::fs::read_to_string(state.join("env"))?
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let kubeconfig = PathBuf::from(env.get("KUBECONFIG").context("KUBECONFIG in env file")?);
        Ok(Self { kubeconfig, dir })
    }

    /// Stops kube-apiserver and starts it again on the same address and etcd, as an API
    /// server restart (an upgrade, a crash) looks to its clients.
    pub fn restart_apiserver(&self) -> anyhow::Result<()> {
        let out = Command::new(script())
            .args(["restart-apiserver", "--dir"])
            .arg(self.state_dir())
            .output()
            .context("run scripts/local-cluster restart-apiserver")?;
        if !out.status.success() {
            bail!(
                "restart-apiserver failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The state dir `scripts/local-cluster` keeps this cluster in (kubeconfig, env, logs).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// `kubectl` against this cluster.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Runs kubectl with `args`; returns (success, stdout, stderr).
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut c = self.kubectl();
        c.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// Installs the McpGateway CRD from the Helm chart and waits until it is Established.
    pub fn install_crd(&self) -> anyhow::Result<()> {
        self.install_crd_file(&workspace_root().join(mcp_gateway_crds::CRD_PATHS[1]))
    }

    /// Installs a CRD from a file named `<plural>.<group>.yaml` (the CRD's own name) and
    /// waits until it is established.
    pub fn install_crd_file(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let (ok, _, err) = self.kubectl_run(
            &["apply", "--server-side", "-f", path.to_str().unwrap()],
            None,
        );
        anyhow::ensure!(ok, "applying CRD {} failed: {err}", path.display());
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("CRD file name")?;
        let (ok, _, err) = self.kubectl_run(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{name}"),
            ],
            None,
        );
        anyhow::ensure!(ok, "CRD {name} not Established: {err}");
        Ok(())
    }

    /// Installs the standard-channel Gateway API CRDs at the pinned version
    /// (`scripts/local-cluster gateway-api-crds`) and waits until the Gateway and HTTPRoute
    /// CRDs are established.
    pub fn install_gateway_api_crds(&self) -> anyhow::Result<()> {
        let out = Command::new(script()).arg("gateway-api-crds").output()?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/local-cluster gateway-api-crds: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout)?.trim().to_string();
        let (ok, _, err) = self.kubectl_run(&["apply", "--server-side", "-f", &path], None);
        anyhow::ensure!(ok, "applying the Gateway API CRDs failed: {err}");
        let (ok, _, err) = self.kubectl_run(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/gateways.gateway.networking.k8s.io",
                "crd/httproutes.gateway.networking.k8s.io",
            ],
            None,
        );
        anyhow::ensure!(ok, "the Gateway API CRDs are not Established: {err}");
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", "--dir"])
            .arg(self.state_dir())
            .output();
    }
}

/// A namespace of its own for one test, deleted when dropped (a bare API server never
/// finishes deleting namespaces, so names are unique per test).
pub struct TestNamespace {
    pub name: String,
    client: kube::Client,
}

impl TestNamespace {
    pub async fn new(client: &kube::Client, label: &str) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(Self {
            name,
            client: client.clone(),
        })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        // Best effort; a dropped runtime just means the cluster goes away with the process.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await;
            });
        }
    }
}
