//! `mcp-gateway-sidecar --config <file>`: the MCP auth proxy.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mcp_gateway_sidecar::auth::Authenticator;
use mcp_gateway_sidecar::caller_identity::CallerKeys;
use mcp_gateway_sidecar::config::{AuthConfig, Config, OidcConfig};
use mcp_gateway_sidecar::facade::Facade;
use mcp_gateway_sidecar::facade::keys::FacadeKeys;
use mcp_gateway_sidecar::fetch;
use mcp_gateway_sidecar::key::SystemKey;
use mcp_gateway_sidecar::log_format::JsonLines;
use mcp_gateway_sidecar::log_sink::LogSink;
use mcp_gateway_sidecar::metrics::Metrics;
use mcp_gateway_sidecar::polled_file::KeysFile;
use mcp_gateway_sidecar::proxy::Gateway;
use mcp_gateway_sidecar::server;
use mcp_gateway_sidecar::session::SessionSealer;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "MCP auth proxy that keeps the Azure Functions system key server-side"
)]
struct Args {
    /// The sidecar config (YAML or JSON), as rendered by the operator.
    #[arg(long, env = "MCP_GATEWAY_CONFIG")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Log lines are written in batches by a background thread, so a request never waits on
    // stderr; not lossy (see `log_sink`).
    let (log_writer, log_guard) = LogSink::new(std::io::stderr());
    tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_writer(log_writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCP_GATEWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One JSON line, like every other, with the whole cause chain; flushed before exit.
            tracing::error!(error = %describe(&error), "the sidecar cannot run");
            drop(log_guard);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: an error that quotes its source is not
/// followed by the source again.
fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    if let Some(path) = &config.trusted_ca_file {
        let (roots, skipped) = fetch::load_trusted_roots(path).map_err(anyhow::Error::msg)?;
        if skipped > 0 {
            tracing::warn!(
                file = %path.display(),
                trusted = roots.len(),
                skipped,
                "trustedCaFile holds certificates that cannot be trust anchors; they are ignored"
            );
        }
        fetch::trust_process_wide(roots);
    }
    let metrics = Arc::new(Metrics::new());

    let key = SystemKey::from_config(&config.system_key, metrics.clone(), |name| {
        std::env::var(name).ok()
    })
    .map_err(anyhow::Error::msg)
    .context("cannot use the system key source")?;
    key.start();

    // Both keys files are followed: a rotation (prepend a key, later drop the old one) takes
    // effect without a restart.
    let sessions = match &config.session.keys_file {
        Some(path) => {
            let keys = KeysFile::load(path, "session keys", SessionSealer::from_keys_file_text)?;
            keys.start(|_| {});
            keys
        }
        None => KeysFile::fixed(SessionSealer::random()),
    };

    let mut facade = None;
    let auth = match &config.auth {
        AuthConfig::Oidc(oidc) => {
            let auth = Arc::new(Authenticator::new(
                oidc.clone(),
                config.limits.max_token_bytes,
                metrics.clone(),
            ));
            auth.start();
            Some(auth)
        }
        AuthConfig::AuthorizationServer(settings) => {
            let keys = KeysFile::load(
                &settings.keys_file,
                "facade keys",
                FacadeKeys::from_file_text,
            )?;
            let built = Facade::new(&config, settings, keys.clone(), metrics.clone())
                .map_err(anyhow::Error::msg)?;
            built.start();
            // The resource-server side accepts exactly the facade's own access tokens, signed
            // with any key the facade keys file lists.
            let auth = Arc::new(
                Authenticator::with_keys(
                    OidcConfig {
                        issuer: built.issuer().to_string(),
                        audiences: vec![config.resource_url()],
                        required_scopes: settings.scopes.clone(),
                        allowed_tenants: Vec::new(),
                        jwks_uri: None,
                        leeway_seconds: 60,
                    },
                    keys.current().jwks(),
                    config.limits.max_token_bytes,
                    metrics.clone(),
                )
                .map_err(anyhow::Error::msg)?,
            );
            let verifier = auth.clone();
            keys.start(move |keys| {
                if let Err(error) = verifier.replace_keys(keys.jwks()) {
                    tracing::error!(%error, "the new facade keys cannot verify access tokens");
                }
            });
            facade = Some(Arc::new(built));
            Some(auth)
        }
        AuthConfig::Anonymous => {
            tracing::warn!("auth mode Anonymous: clients are not authenticated");
            None
        }
    };

    let public = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    tracing::info!(
        listen = %public.local_addr()?,
        admin = %admin.local_addr()?,
        resource = %config.resource_url(),
        "mcp-gateway-sidecar started"
    );
    // Caller-identity keys come from the session keys file, through a purpose of their own.
    let caller_keys = match (&config.caller_identity, &config.session.keys_file) {
        (None, _) => None,
        (Some(_), Some(path)) => {
            let keys = KeysFile::load(path, "session keys", CallerKeys::from_file_text)?;
            keys.start(|_| {});
            Some(keys)
        }
        (Some(_), None) => Some(KeysFile::fixed(CallerKeys::random())),
    };
    let gateway = Arc::new(Gateway::new(
        config,
        key,
        auth,
        facade,
        sessions,
        metrics,
        caller_keys,
    )?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let public_task = tokio::spawn(server::serve_gateway(
        public,
        gateway.clone(),
        stopped(stop_rx.clone()),
    ));
    let admin_task = tokio::spawn(server::serve_admin(
        admin,
        gateway.clone(),
        stopped(stop_rx),
    ));

    shutdown_signal().await;
    tracing::info!("shutting down; draining open requests and streams");
    let _ = stop_tx.send(true);
    let _ = public_task.await;
    let _ = admin_task.await;
    // The last export blocks until it is posted, by a task on this runtime: not on a worker.
    let _ = tokio::task::spawn_blocking(move || gateway.shutdown()).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
