//! The whole path, shared by the end-to-end test and `scripts/demo`:
//! a real API server → `helm install` → the operator (with the chart's service-account
//! identity, which proves the chart's RBAC) → an McpGateway applied with kubectl → the
//! sidecar run locally with what the operator rendered → a real MCP client with a real token
//! calls a tool through it to the Functions host stand-in.
//!
//! A bare API server runs no pods. So the sidecar runs as a local process, and the
//! Deployment's status is written here as the Deployment controller would write it, to show
//! `Ready` following it. Only what a pod's mounts decide is changed in the rendered config:
//! the listen addresses and the two file paths.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, ensure};
use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use mcp_gateway_contract::config::Config;
use mcp_gateway_crds::v1alpha1::McpGateway;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::fixtures::{self, Idp, Standin};
use crate::operator::Operator;
use crate::sidecar::{Sidecar, public_listener};
use crate::{TempDir, eventually, workspace_root};

pub const NAMESPACE: &str = "weather";
pub const GATEWAY: &str = "weather";
pub const RELEASE: &str = "mcp-gateway";
pub const RELEASE_NAMESPACE: &str = "mcp-gateway-system";
pub const HOST: &str = "mcp.example.com";
pub const PUBLIC_URL: &str = "https://mcp.example.com/weather/mcp";
pub const SCOPE: &str = "mcp:tools";

/// Everything the whole path started; dropping it stops all of it.
pub struct WholePath {
    pub cluster: Arc<Cluster>,
    pub operator: Operator,
    pub standin: Standin,
    pub idp: Idp,
    pub sidecar: Sidecar,
    /// The `kubectl get mcpgateways` table once Ready.
    pub table: String,
    /// The MCP client's JSON output of the tool call.
    pub call: Value,
    pub key: String,
    _dir: TempDir,
}

/// The cached helm binary (`scripts/local-cluster paths`).
pub fn helm() -> anyhow::Result<PathBuf> {
    let out = Command::new(workspace_root().join("scripts/local-cluster"))
        .arg("paths")
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|l| l.strip_prefix("HELM="))
        .map(PathBuf::from)
        .context("helm is not built: run scripts/local-cluster build")
}

/// A kubeconfig for the cluster that authenticates with `token` instead of as admin.
fn kubeconfig_with_token(admin: &Path, token: &str, out: &Path) -> anyhow::Result<()> {
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(admin)?)?;
    let users = kc["users"].as_sequence_mut().context("users")?;
    for user in users {
        user["user"] = serde_yaml::to_value(json!({ "token": token }))?;
    }
    std::fs::write(out, serde_yaml::to_string(&kc)?)?;
    Ok(())
}

/// Runs the whole path on `cluster`; `say` reports progress (the demo prints it).
pub async fn run(cluster: Arc<Cluster>, say: &dyn Fn(&str)) -> anyhow::Result<WholePath> {
    let dir = TempDir::new("whole-path");
    let kubectl = |args: &[&str], stdin: Option<&str>| -> anyhow::Result<String> {
        let (ok, out, err) = cluster.kubectl_run(args, stdin);
        ensure!(ok, "kubectl {}: {err}", args.join(" "));
        Ok(out)
    };

    say("helm install the chart (CRD, operator RBAC)");
    let out = Command::new(helm()?)
        .args([
            "install",
            RELEASE,
            "charts/mcp-gateway",
            "-n",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--wait=false",
        ])
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .current_dir(workspace_root())
        .output()?;
    ensure!(
        out.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mcpgateways.mcpgateway.dev",
        ],
        None,
    )?;

    say("start the operator with the chart's ServiceAccount identity");
    let sa = kubectl(
        &[
            "get",
            "serviceaccounts",
            "-n",
            RELEASE_NAMESPACE,
            "-l",
            "app.kubernetes.io/instance=mcp-gateway",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        None,
    )?;
    ensure!(!sa.is_empty(), "the chart created no ServiceAccount");
    let token = kubectl(
        &[
            "create",
            "token",
            &sa,
            "-n",
            RELEASE_NAMESPACE,
            "--duration=1h",
        ],
        None,
    )?;
    let operator_kubeconfig = dir.path().join("operator.kubeconfig");
    kubeconfig_with_token(&cluster.kubeconfig, token.trim(), &operator_kubeconfig)?;
    let operator = Operator::start(
        &operator_kubeconfig,
        &[
            "--lease-namespace",
            RELEASE_NAMESPACE,
            "--pod-name",
            "demo-operator-0",
        ],
    )?;

    say("start the Functions host stand-in and the OpenID provider");
    let key = format!("SYSKEY-demo-{}", std::process::id());
    let key_file = dir.path().join("function-app-key");
    std::fs::write(&key_file, &key)?;
    let standin = Standin::start(&key_file)?;
    let idp = Idp::start()?;

    say("kubectl apply the McpGateway (namespace, Secret, gateway)");
    let manifest = gateway_manifest(&standin.url, &idp.issuer, &key);
    kubectl(&["apply", "-f", "-"], Some(&manifest))?;

    let client = cluster.client().await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let rendered = eventually(60, "the operator renders the ConfigMap", || async {
        configmaps
            .get_opt("weather-gateway")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await
    .with_context(|| format!("operator log:\n{}", operator.logs()))?;
    let text = rendered
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml"))
        .context("config.yaml")?;
    let mut config: Config = serde_yaml::from_str(text)?;

    say("run the sidecar with the rendered config and the Secrets' files");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let session = eventually(30, "session keys Secret", || async {
        secrets
            .get_opt("weather-gateway-session")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await?;
    let session_keys = session
        .data
        .as_ref()
        .and_then(|d| d.get("keys"))
        .context("session keys")?;
    let session_file = dir.path().join("session-keys");
    std::fs::write(&session_file, &session_keys.0)?;
    let key_secret = secrets.get("weather-fn-keys").await?;
    let mounted_key = dir.path().join("mounted-key");
    std::fs::write(
        &mounted_key,
        &key_secret.data.as_ref().context("data")?["mcp_extension"].0,
    )?;
    let (listen, local_base) = public_listener();
    config.listen = listen;
    config.system_key.file = Some(mounted_key);
    config.session.keys_file = Some(session_file);
    let sidecar = Sidecar::start(config)?;
    sidecar.wait_ready().await?;

    say("get a token from the IdP and call a tool through the gateway");
    let token = idp.token(PUBLIC_URL, SCOPE, "RS256")?;
    let local_url = format!("{local_base}/weather/mcp");
    let (ok, call, raw) = fixtures::mcp_client(&[
        "--url",
        &local_url,
        "--transport",
        "streamable",
        "--token",
        &token,
        "--list-tools",
        "--call",
        "echo",
        "--args",
        r#"{"message":"hello from the whole path"}"#,
    ])?;
    ensure!(ok, "the MCP client failed: {raw}");

    say("mark the Deployment available, as the Deployment controller would");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}});
    deployments
        .patch_status(
            "weather-gateway",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    let gateways: Api<McpGateway> = Api::namespaced(client, NAMESPACE);
    eventually(30, "Ready=True", || async {
        let gw = gateways.get(GATEWAY).await.map_err(|e| e.to_string())?;
        let ready = gw
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        match ready {
            Some(c) if c.status == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let table = kubectl(&["get", "mcpgateways", "-n", NAMESPACE], None)?;
    Ok(WholePath {
        cluster,
        operator,
        standin,
        idp,
        sidecar,
        table,
        call,
        key,
        _dir: dir,
    })
}

/// The gateway the whole path applies: `examples/oidc-entra.yaml` pointed at the local
/// stand-in and IdP (an http upstream needs `allowInsecureUpstream`; an http issuer is
/// admitted only on loopback).
pub fn gateway_manifest(upstream: &str, issuer: &str, key: &str) -> String {
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: v1
kind: Secret
metadata:
  name: weather-fn-keys
  namespace: {NAMESPACE}
data:
  mcp_extension: {key_b64}
---
apiVersion: mcpgateway.dev/v1alpha1
kind: McpGateway
metadata:
  name: {GATEWAY}
  namespace: {NAMESPACE}
spec:
  replicas: 1
  upstream:
    url: {upstream}
    allowInsecureUpstream: true
  systemKey:
    secretRef:
      name: weather-fn-keys
  auth:
    mode: Oidc
    oidc:
      issuer: {issuer}
      audiences: ["{PUBLIC_URL}"]
      requiredScopes: ["{SCOPE}"]
  route:
    host: {HOST}
    pathPrefix: /weather
"#
    )
}
