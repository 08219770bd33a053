//! The real `mcp-gateway-sidecar` binary, built once per test run and started per test.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use mcp_gateway_contract::config::Config;
use mcp_gateway_contract::key_status::KeyStatus;

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
    pub fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_binary(&binary(), config)
    }

    /// [`Sidecar::start`] with another build of the binary (the soak run uses the release one).
    pub fn start_binary(binary: &std::path::Path, mut config: Config) -> anyhow::Result<Self> {
        config.admin_listen = "127.0.0.1:0".parse()?;
        let dir = TempDir::new("sidecar");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
        let log_path = dir.path().join("sidecar.log");
        let mut c = Command::new(binary);
        c.arg("--config")
            .arg(&config_path)
            .env("MCP_GATEWAY_LOG", "info")
            // Spans are exported every 100 ms instead of the SDK's 5 s, so trace tests wait less.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
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

    /// The value of one series in `/metrics`, e.g. `mcp_gateway_open_streams` or
    /// `mcp_gateway_key_reloads_total{outcome="error"}`; 0 when absent (a counter family
    /// shows a label set only once it was counted).
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        Ok(metric_value(&self.metrics().await?, series).unwrap_or(0.0))
    }

    /// `/readyz`: its status and body.
    pub async fn readyz(&self) -> anyhow::Result<(u16, String)> {
        let r = reqwest::get(format!("{}/readyz", self.admin_url)).await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

/// The value of `series` (name plus labels, exactly as exposed) in a Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Runs the binary with a config file holding `config_text` and waits (up to 20 s) for it to
/// exit: for configs it must refuse. Returns its exit code (`None` if it was still running and
/// had to be killed, or died from a signal) and its stderr.
pub fn run_to_exit(config_text: &str) -> anyhow::Result<(Option<i32>, String)> {
    let dir = TempDir::new("sidecar-exit");
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config_text)?;
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&config_path)
        .env("MCP_GATEWAY_LOG", "info")
        // As deployed: no backtraces asked for (a panic still says "panicked at").
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((code, std::fs::read_to_string(&err_path)?))
}
