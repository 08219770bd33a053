//! The real `mcp-gateway-operator` binary, run as a local process against a test cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::TempDir;
use crate::process::Process;

/// The mcp-gateway-operator binary, built once per test process.
pub fn binary() -> PathBuf {
    // Benchmarks point this at a release build.
    match std::env::var_os("MCPGW_OPERATOR_BIN") {
        Some(path) => PathBuf::from(path),
        None => crate::workspace_binary("mcp-gateway-operator"),
    }
}

pub const SIDECAR_IMAGE: &str = "registry.example/mcp-gateway-sidecar:test";

pub struct Operator {
    pub metrics_url: String,
    pub log_path: PathBuf,
    pub process: Process,
    _dir: TempDir,
}

impl Operator {
    /// Starts the operator with `kubeconfig`; `extra` adds flags (e.g. leader election).
    pub fn start(kubeconfig: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = TempDir::new("operator");
        let log_path = dir.path().join("operator.log");
        let mut c = Command::new(binary());
        c.env("KUBECONFIG", kubeconfig)
            .env("MCP_GATEWAY_LOG", "info,kube=warn")
            .args([
                "--sidecar-image",
                SIDECAR_IMAGE,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra);
        let (process, started) = Process::spawn_logging(
            "operator",
            c,
            &log_path,
            "mcp-gateway-operator started",
            Duration::from_secs(30),
        )?;
        let metrics = started["metrics"].as_str().context("metrics addr")?;
        Ok(Self {
            metrics_url: format!("http://{metrics}"),
            log_path,
            process,
            _dir: dir,
        })
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.metrics_url))
            .await?
            .text()
            .await?)
    }
}
