//! The harness for end-to-end tests: real processes (the sidecar binary, the Node fixtures,
//! a local kube-apiserver + etcd), each killed when its handle drops, even on panic.

pub mod browser;
pub mod cluster;
pub mod entra_gateway;
pub mod facade;
pub mod fixtures;
pub mod node;
pub mod operator;
pub mod otel_collector;
pub mod process;
pub mod public_gateway;
pub mod round_robin;
pub mod sidecar;
pub mod stack;
pub mod tls;
pub mod traefik;
pub mod whole_path;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The path of a workspace binary, after building every workspace binary once per process.
/// Building `--workspace --bins` (not `-p <crate>`) resolves features exactly as
/// `cargo test --workspace` does, so the two never invalidate each other's artifacts.
pub fn workspace_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .args(["build", "-q", "--workspace", "--bins"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the workspace binaries failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join(name)
}

/// Polls `check` until it returns `Ok`, or fails after `secs` with the last state it
/// reported.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(state) if std::time::Instant::now() > deadline => {
                anyhow::bail!("{what}: gave up; last state: {state}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// [`eventually`], failing the test when it gives up.
pub async fn must_eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    eventually(secs, what, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh private directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mcpgw-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
