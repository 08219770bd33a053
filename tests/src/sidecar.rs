//! The real `mcp-gateway-sidecar` binary, built once per test run and started per test.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use mcp_gateway_sidecar::config::Config;
use mcp_gateway_sidecar::key::KeyStatus;

use crate::TempDir;
use crate::process::Process;

/// The mcp-gateway-sidecar binary, built once per test process.
pub fn binary() -> PathBuf {
    crate::workspace_binary("mcp-gateway-sidecar")
}

/// A free loopback address and the base URL for it: clients must reach the gateway at
/// exactly its configured public URL (the SDKs check the metadata's `resource`), so the port
/// is chosen before the config is written.
pub fn public_listener() -> (std::net::SocketAddr, String) {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = socket.local_addr().expect("local addr");
    (addr, format!("http://{addr}"))
}

/// A running sidecar. Its JSON logs are kept in `log_path` for assertions.
pub struct Sidecar {
    pub url: String,
    pub admin_url: String,
    pub log_path: PathBuf,
    pub process: Process,
    _dir: TempDir,
}

impl Sidecar {
    /// Starts the binary with `config`; the admin listener is moved to 127.0.0.1:0. Build
    /// the config with [`public_listener`] so its public URL is the one it listens on.
    pub fn start(mut config: Config) -> anyhow::Result<Self> {
        config.admin_listen = "127.0.0.1:0".parse()?;
        let dir = TempDir::new("sidecar");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
        let log_path = dir.path().join("sidecar.log");
        let mut c = Command::new(binary());
        c.arg("--config")
            .arg(&config_path)
            .env("MCP_GATEWAY_LOG", "info");
        let (process, started) = Process::spawn_logging(
            "sidecar",
            c,
            &log_path,
            "mcp-gateway-sidecar started",
            Duration::from_secs(20),
        )?;
        let listen = started["listen"].as_str().context("listen")?;
        let admin = started["admin"].as_str().context("admin")?;
        Ok(Self {
            url: format!("http://{listen}"),
            admin_url: format!("http://{admin}"),
            log_path,
            process,
            _dir: dir,
        })
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.admin_url)).await
                && r.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "sidecar never became ready; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /keyz`: the raw JSON and its parse.
    pub async fn keyz(&self) -> anyhow::Result<(String, KeyStatus)> {
        let text = reqwest::get(format!("{}/keyz", self.admin_url))
            .await?
            .text()
            .await?;
        let status = serde_json::from_str(&text).with_context(|| format!("/keyz: {text}"))?;
        Ok((text, status))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.admin_url))
            .await?
            .text()
            .await?)
    }
}
