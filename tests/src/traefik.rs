//! Traefik v3 (`scripts/local-cluster traefik-build`), the real-node tier's ingress controller
//! and Gateway API implementation. It runs as a process on the host, outside the cluster, the
//! way Traefik runs with a kubeconfig: it watches the node's API server (Ingresses of class
//! [`INGRESS_CLASS`], Gateways of class [`GATEWAY_CLASS`]) and proxies to the pods' IPs on the
//! node's bridge. Clients reach it on 127.0.0.1: `https://localhost/...` on port 443 (the
//! public URL exactly as the operator reports it; TLS from the route's Secret).
//!
//! Version checks and usage reports are off: it never calls anything beyond this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::cluster::Cluster;
use crate::workspace_root;

pub const INGRESS_CLASS: &str = "traefik";
pub const GATEWAY_CLASS: &str = "traefik";
/// The host name public URLs use on this tier: /etc/hosts resolves it to 127.0.0.1, so no
/// DNS server is ever asked.
pub const PUBLIC_HOST: &str = "localhost";
/// Where `https://localhost` lands (needs root, as the node does).
pub const HTTPS_PORT: u16 = 443;

/// The cached Traefik binary (`scripts/local-cluster paths`).
fn binary() -> anyhow::Result<PathBuf> {
    let out = Command::new(workspace_root().join("scripts/local-cluster"))
        .arg("paths")
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .with_context(|| format!("{key} not built: run scripts/local-cluster traefik-build"))
    };
    get("TRAEFIK=")
}

pub struct Traefik {
    child: Child,
    api_port: u16,
    log: PathBuf,
}

impl Traefik {
    /// Installs the Gateway API CRDs, the IngressClass and the GatewayClass, then starts
    /// Traefik with `dir` for its log; returns once its providers are up.
    pub fn start(cluster: &Cluster, dir: &Path) -> anyhow::Result<Self> {
        let binary = binary()?;
        let kubectl = |args: &[&str], stdin: Option<&str>| -> anyhow::Result<String> {
            let (ok, out, err) = cluster.kubectl_run(args, stdin);
            ensure!(ok, "kubectl {}: {err}", args.join(" "));
            Ok(out)
        };
        cluster.install_gateway_api_crds()?;
        kubectl(
            &["apply", "-f", "-"],
            Some(&format!(
                r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {INGRESS_CLASS}
spec:
  controller: traefik.io/ingress-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: {GATEWAY_CLASS}
spec:
  controllerName: traefik.io/gateway-controller
"#
            )),
        )?;
        // Held until Traefik is about to bind it.
        let ping_socket = std::net::TcpListener::bind("127.0.0.1:0")?;
        let ping_port = ping_socket.local_addr()?.port();
        drop(ping_socket);
        let log = dir.join("traefik.log");
        let file = std::fs::File::create(&log)?;
        let child = Command::new(&binary)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args([
                "--global.checkNewVersion=false",
                "--global.sendAnonymousUsage=false",
                "--log.level=INFO",
                "--log.format=json",
                "--accesslog=true",
                "--accesslog.format=json",
                &format!("--entryPoints.websecure.address=127.0.0.1:{HTTPS_PORT}"),
                // As Traefik's Helm chart configures it: every router on websecure is a TLS
                // router (an Ingress's spec.tls only provides the certificate; without this
                // its routers answer plain http only, and https gets 404).
                "--entryPoints.websecure.http.tls=true",
                // Its API (routers, services) on the same loopback port as the ping, for
                // the failure messages of tests.
                &format!("--entryPoints.traefik.address=127.0.0.1:{ping_port}"),
                "--ping=true",
                "--api.insecure=true",
                "--api.dashboard=false",
                "--providers.kubernetesingress=true",
                &format!("--providers.kubernetesingress.ingressClass={INGRESS_CLASS}"),
                "--providers.kubernetesgateway=true",
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let mut traefik = Self {
            child,
            api_port: ping_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = traefik.child.try_wait() {
                bail!("traefik exited ({status}):\n{}", traefik.logs());
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", ping_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", HTTPS_PORT)).is_ok();
            if up {
                return Ok(traefik);
            }
            if Instant::now() > deadline {
                bail!("traefik did not listen within 30 s:\n{}", traefik.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A GET of its API (`/api/http/<path>`): the whole HTTP/1.0 answer, or why there is none.
    /// Blocking and plain, so it also works in failure messages, outside any runtime.
    fn api(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let get = || -> std::io::Result<String> {
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", self.api_port))?;
            tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                tcp,
                "GET /api/http/{path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
            )?;
            let mut answer = String::new();
            tcp.read_to_string(&mut answer)?;
            Ok(answer)
        };
        get().unwrap_or_else(|e| format!("(no answer: {e})"))
    }

    /// How many backends Traefik balances the Service `namespace/name` over right now (its
    /// configuration trails the EndpointSlices by a moment).
    pub fn backends(&self, namespace: &str, service: &str) -> usize {
        let answer = self.api("services");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let services: Vec<serde_json::Value> = serde_json::from_str(body).unwrap_or_default();
        let prefix = format!("{namespace}-{service}-");
        services
            .iter()
            .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
            .filter_map(|s| s["loadBalancer"]["servers"].as_array().map(Vec::len))
            .max()
            .unwrap_or(0)
    }

    /// Its log and access log (JSON lines), and the routers and services it has configured.
    pub fn logs(&self) -> String {
        let api = |path: &str| self.api(path);
        format!(
            "{}
--- routers ---
{}
--- services ---
{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            api("routers"),
            api("services")
        )
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
