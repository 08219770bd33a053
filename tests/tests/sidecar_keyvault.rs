//! The real sidecar binary reading the system key from Key Vault directly (`systemKey.keyVault`)
//! with a workload identity token, against the Entra + Key Vault stand-in and the Functions
//! host stand-in: token requests, refresh, outages, denials, and key renewal under load. Every
//! log line, `/keyz` and `/metrics` answer is checked for the key, the access tokens and the
//! assertion.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_gateway_contract::config::Config;
use mcp_gateway_contract::key_status::{KeySourceKind, KeyStatus, Verdict};
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::fixtures::{self, KeyVaultStandin, Standin};
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use serde_json::{Value, json};

const ACCEPT: &str = "application/json, text/event-stream";
/// What must never appear in a log, `/keyz` or `/metrics`: the keys (`SYSKEY-…`), the access
/// tokens the stand-in issues (`KVTOKEN-…`), the assertions (`ASSERTION-…`), and the
/// description in Entra / Key Vault error bodies (`DESCRIPTION-CANARY`).
const SECRET_MARKERS: [&str; 4] = ["SYSKEY-", "KVTOKEN-", "ASSERTION-", "DESCRIPTION-CANARY"];

fn system_key(tag: &str) -> String {
    format!("SYSKEY-kv-{tag}-8c1f0a")
}

/// Replaces `path`'s content in one step (as the kubelet does), so no reader sees it empty.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

use mcp_gateway_tests::must_eventually as eventually;

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && labels.iter().all(|label| l.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Key Vault stand-in + Functions stand-in + sidecar reading the key from the vault.
struct Stack {
    _dir: TempDir,
    /// The key file of the Functions stand-in (re-read per request): renewing the Function
    /// App's key is rewriting it.
    function_key_file: PathBuf,
    token_file: PathBuf,
    vault: KeyVaultStandin,
    first_version: String,
    _functions: Standin,
    sidecar: Sidecar,
    /// Every answer a test saw, for the leak check.
    seen: Mutex<String>,
    http: reqwest::Client,
}

struct Setup {
    refresh_seconds: u32,
    token_expires_in: u32,
    /// Key Vault answers 403 from the start: the sidecar never gets a key.
    denied: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            refresh_seconds: 300,
            token_expires_in: 3600,
            denied: false,
        }
    }
}

impl Stack {
    async fn start(setup: Setup) -> Stack {
        let dir = TempDir::new("kv");
        let function_key_file = dir.path().join("function-key");
        let key = system_key("a");
        write_atomically(&function_key_file, &key);
        let token_file = dir.path().join("azure-identity-token");
        write_atomically(&token_file, "ASSERTION-one-3b7e");
        let vault = KeyVaultStandin::start(&token_file, setup.token_expires_in)
            .expect("key vault stand-in");
        let first_version = vault.set_secret(&key).await.unwrap();
        if setup.denied {
            vault.set_vault("denied").await.unwrap();
        }
        let functions = Standin::start(&function_key_file).expect("functions stand-in");
        let (listen, base) = public_listener();
        let config: Config = serde_json::from_value(json!({
            "listen": listen.to_string(),
            "publicBaseUrl": base,
            "upstream": {"url": functions.url, "responseTimeoutSeconds": 10},
            "systemKey": {"keyVault": vault.sidecar_config(&token_file, setup.refresh_seconds)},
            "auth": {"mode": "Anonymous"},
        }))
        .unwrap();
        let sidecar = Sidecar::start(config).expect("sidecar starts");
        if !setup.denied {
            sidecar.wait_ready().await.expect("sidecar ready");
        }
        Stack {
            _dir: dir,
            function_key_file,
            token_file,
            vault,
            first_version,
            _functions: functions,
            sidecar,
            seen: Mutex::default(),
            http: reqwest::Client::new(),
        }
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.sidecar.url)
    }

    fn record(&self, text: &str) {
        self.seen.lock().unwrap().push_str(text);
    }

    async fn keyz(&self) -> KeyStatus {
        let (text, status) = self.sidecar.keyz().await.expect("/keyz");
        self.record(&text);
        status
    }

    async fn metrics(&self) -> String {
        let text = self.sidecar.metrics().await.expect("/metrics");
        self.record(&text);
        text
    }

    async fn readyz(&self) -> (u16, String) {
        let r = reqwest::get(format!("{}/readyz", self.sidecar.admin_url))
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.record(&text);
        (status, text)
    }

    /// One MCP `initialize` POST through the gateway; its status.
    async fn initialize(&self) -> u16 {
        let r = self
            .http
            .post(self.mcp_url())
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .body(initialize_body())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        self.record(&body);
        status
    }

    /// The TypeScript SDK client: list tools and call `echo` through the gateway.
    fn call_echo(&self, message: &str) {
        let args = json!({ "message": message }).to_string();
        let (ok, out, raw) = fixtures::mcp_client(&[
            "--url",
            &self.mcp_url(),
            "--list-tools",
            "--call",
            "echo",
            "--args",
            &args,
        ])
        .expect("mcp-client runs");
        self.record(&raw);
        assert!(ok, "mcp-client failed: {raw}");
        assert!(out["result"].to_string().contains(message), "{out}");
    }

    /// Renews the Function App's key: the host takes the new key at once.
    fn renew_function_key(&self, key: &str) {
        write_atomically(&self.function_key_file, key);
    }

    async fn token_requests(&self) -> Vec<Value> {
        self.vault.stats().await.unwrap()["tokenRequests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the sidecar's log (written asynchronously) has a line containing `text`.
    async fn logged(&self, text: &str) {
        eventually(5, &format!("a log line with {text:?}"), || async {
            if self.sidecar.logs().contains(text) {
                Ok(())
            } else {
                Err(self.sidecar.logs())
            }
        })
        .await
    }

    /// No secret reached a log, `/keyz`, `/metrics` or a client.
    async fn assert_no_secret_leak(&self) {
        self.keyz().await;
        self.metrics().await;
        let seen = self.seen.lock().unwrap().clone();
        let logs = self.sidecar.logs();
        for marker in SECRET_MARKERS {
            assert!(
                !seen.contains(marker),
                "{marker}… reached /keyz, /metrics or a client"
            );
            assert!(
                !logs.contains(marker),
                "{marker}… reached the sidecar's logs"
            );
        }
    }
}

fn initialize_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "kv-e2e", "version": "1"}}})
    .to_string()
}

#[tokio::test]
async fn direct_mode_reads_the_key_with_a_workload_identity_token_from_the_token_file() {
    let stack = Stack::start(Setup {
        refresh_seconds: 5,
        token_expires_in: 2,
        ..Setup::default()
    })
    .await;
    stack.call_echo("hello through key vault");

    let status = stack.keyz().await;
    assert_eq!(status.source, KeySourceKind::KeyVault);
    assert!(status.loaded);
    assert_eq!(status.version.as_deref(), Some(&*stack.first_version));
    assert!(status.last_changed.is_some());
    assert_eq!(status.source_error, None);
    assert_eq!(status.upstream.verdict, Verdict::Accepted);
    assert!(status.upstream.since.is_some());
    assert_eq!(status.upstream.rejections, 0);

    // The token request: client credentials for Key Vault, with the token file as the
    // assertion.
    let requests = stack.token_requests().await;
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r["tenant"], KeyVaultStandin::TENANT_ID, "{r}");
        assert_eq!(r["grantType"], "client_credentials", "{r}");
        assert_eq!(r["clientId"], KeyVaultStandin::CLIENT_ID, "{r}");
        assert_eq!(r["scope"], "https://vault.azure.net/.default", "{r}");
        assert_eq!(
            r["clientAssertionType"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "{r}"
        );
        assert_eq!(r["assertionMatched"], true, "{r}");
        assert_eq!(r["status"], 200, "{r}");
    }

    // The kubelet rotates the projected token; the stand-in now expects the new one. Tokens
    // live 2 s, so the next periodic read (≤ 5.5 s) needs a new one, made with the new file.
    let before = requests.len();
    write_atomically(&stack.token_file, "ASSERTION-two-91d4");
    let after = eventually(20, "a token request with the rotated assertion", || async {
        let requests = stack.token_requests().await;
        match requests.get(before..) {
            Some(new) if new.iter().any(|r| r["status"] == 200) => Ok(new.to_vec()),
            _ => Err(format!("{} token requests", requests.len())),
        }
    })
    .await;
    assert!(
        after.last().unwrap()["assertionMatched"] == true,
        "{after:?}"
    );
    // Each read got a fresh token (2 s lifetime, renewed at half of it), never a stale one.
    let stats = stack.vault.stats().await.unwrap();
    assert_eq!(stats["secretReadsByStatus"].get("401"), None, "{stats}");
    stack.call_echo("still fine");
    assert_eq!(stack.keyz().await.source_error, None);
    stack.assert_no_secret_leak().await;
}

#[tokio::test]
async fn a_new_secret_version_is_picked_up_by_the_periodic_refresh() {
    let stack = Stack::start(Setup {
        refresh_seconds: 5,
        ..Setup::default()
    })
    .await;
    assert_eq!(stack.initialize().await, 200);
    let before = stack.keyz().await;
    assert_eq!(before.upstream.verdict, Verdict::Accepted);

    // Renewed at the Function App and in Key Vault, with no traffic in between: the periodic
    // read finds the new version.
    let key = system_key("b");
    stack.renew_function_key(&key);
    let version = stack.vault.set_secret(&key).await.unwrap();
    assert_ne!(version, stack.first_version);
    let after = eventually(15, "the new version in /keyz", || async {
        let status = stack.keyz().await;
        if status.version.as_deref() == Some(&*version) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    assert!(
        after.last_changed > before.last_changed,
        "{before:?} {after:?}"
    );
    // The verdict was about the old key; the new one has none until a request is answered.
    assert_eq!(after.upstream.verdict, Verdict::Unknown);
    assert_eq!(stack.initialize().await, 200);
    let accepted = stack.keyz().await;
    assert_eq!(accepted.upstream.verdict, Verdict::Accepted);
    assert_eq!(accepted.upstream.rejections, 0);

    let metrics = stack.metrics().await;
    let periodic = [r#"trigger="periodic""#, r#"outcome="ok""#];
    assert!(
        metric(&metrics, "mcp_gateway_key_source_fetches_total", &periodic) >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "mcp_gateway_key_source_fetches_total",
            &[r#"trigger="rejection""#]
        ),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "mcp_gateway_upstream_key_retries_total", &[]),
        0.0
    );
    stack.assert_no_secret_leak().await;
}

#[tokio::test]
async fn key_vault_and_entra_outages_keep_the_last_key_and_are_reported() {
    let stack = Stack::start(Setup {
        refresh_seconds: 5,
        token_expires_in: 2,
        ..Setup::default()
    })
    .await;
    let failing = |metrics: &str| metric(metrics, "mcp_gateway_key_source_failing", &[]);
    assert_eq!(failing(&stack.metrics().await), 0.0);

    let outages = [
        ("vault down (503)", "vault", "down", "answered 503"),
        ("vault drops connections", "vault", "drop", "is unreachable"),
        ("Entra down (503)", "token", "down", "token endpoint"),
    ];
    for (what, service, mode, expected) in outages {
        match service {
            "vault" => stack.vault.set_vault(mode).await.unwrap(),
            _ => stack.vault.set_token(mode).await.unwrap(),
        }
        let error = eventually(20, what, || async {
            match stack.keyz().await.source_error {
                Some(e) if e.contains(expected) => Ok(e),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        // The last good key keeps serving, and the gateway stays ready.
        assert_eq!(stack.initialize().await, 200, "{what}");
        assert_eq!(stack.readyz().await.0, 200, "{what}");
        let status = stack.keyz().await;
        assert!(status.loaded);
        assert_eq!(status.version.as_deref(), Some(&*stack.first_version));
        assert_eq!(failing(&stack.metrics().await), 1.0, "{what}: {error}");
        // Back to normal for the next outage.
        stack.vault.set_vault("up").await.unwrap();
        stack.vault.set_token("up").await.unwrap();
        eventually(20, "recovery", || async {
            match stack.keyz().await.source_error {
                None => Ok(()),
                Some(e) => Err(e),
            }
        })
        .await;
        assert_eq!(failing(&stack.metrics().await), 0.0);
    }

    let metrics = stack.metrics().await;
    assert!(
        metric(
            &metrics,
            "mcp_gateway_key_source_fetches_total",
            &[r#"outcome="unreachable""#]
        ) >= 3.0,
        "{metrics}"
    );
    // Logged once per change of state, not once per failed read.
    let logs = eventually(5, "three recoveries logged", || async {
        let logs = stack.sidecar.logs();
        match logs.matches("system key source works again").count() {
            3 => Ok(logs),
            n => Err(format!("{n} recoveries logged")),
        }
    })
    .await;
    let warnings = logs.matches("system key source failing").count();
    assert!((3..=5).contains(&warnings), "{warnings} warnings: {logs}");
    stack.assert_no_secret_leak().await;
}

#[tokio::test]
async fn a_denied_identity_is_explained_and_the_sidecar_is_not_ready_without_a_key() {
    let stack = Stack::start(Setup {
        refresh_seconds: 5,
        denied: true,
        ..Setup::default()
    })
    .await;
    let expected = format!(
        "the identity {} may not read secret {}",
        KeyVaultStandin::CLIENT_ID,
        KeyVaultStandin::SECRET_NAME
    );
    let status = eventually(15, "the denial in /keyz", || async {
        let status = stack.keyz().await;
        match &status.source_error {
            Some(e) if e.contains(&expected) => Ok(status),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let error = status.source_error.unwrap();
    assert!(error.contains("Key Vault Secrets User"), "{error}");
    assert!(error.contains("ForbiddenByRbac"), "{error}");
    assert!(!status.loaded);
    assert_eq!(status.version, None);
    assert_eq!(status.upstream.verdict, Verdict::Unknown);
    let (code, why) = stack.readyz().await;
    assert_eq!(code, 503);
    assert!(why.contains(&expected), "{why}");
    // Requests get a clear 503, never an unauthenticated upstream call.
    assert_eq!(stack.initialize().await, 503);
    stack.logged(&expected).await;

    // Entra refuses the identity's assertion: the error names the federated credential and
    // Entra's error code, not its description.
    stack.vault.set_token("denied").await.unwrap();
    stack.vault.revoke_tokens().await.unwrap();
    stack.vault.set_vault("up").await.unwrap();
    let error = eventually(15, "the token denial in /keyz", || async {
        match stack.keyz().await.source_error {
            Some(e) if e.contains("federated credential") => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(error.contains("invalid_client AADSTS700213"), "{error}");
    assert!(error.contains(KeyVaultStandin::CLIENT_ID), "{error}");
    assert_eq!(stack.readyz().await.0, 503);

    stack.vault.set_token("up").await.unwrap();
    stack
        .sidecar
        .wait_ready()
        .await
        .expect("ready once allowed");
    let status = stack.keyz().await;
    assert!(status.loaded);
    assert_eq!(status.source_error, None);
    assert_eq!(stack.initialize().await, 200);
    let metrics = stack.metrics().await;
    assert!(
        metric(
            &metrics,
            "mcp_gateway_key_source_fetches_total",
            &[r#"outcome="denied""#]
        ) >= 2.0,
        "{metrics}"
    );
    stack.assert_no_secret_leak().await;
}

/// Clients keep POSTing while the Function App's key is renewed and Key Vault gets the new
/// value a moment later: requests caught in between are retried with the key read on demand.
#[tokio::test]
async fn renewing_the_key_under_load_fails_no_request() {
    let stack = Arc::new(Stack::start(Setup::default()).await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stack, stop) = (stack.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match stack.initialize().await {
                    200 => ok += 1,
                    status => failed.push(status),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = system_key("b");
    stack.renew_function_key(&key);
    let version = stack.vault.set_secret(&key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "requests failed during the renewal: {failed:?}"
    );
    assert!(ok > 20, "too few requests to prove anything: {ok}");

    let status = stack.keyz().await;
    assert_eq!(status.version.as_deref(), Some(&*version));
    assert_eq!(status.upstream.verdict, Verdict::Accepted);
    assert_eq!(status.upstream.rejections, 0);
    let metrics = stack.metrics().await;
    assert_eq!(
        metric(&metrics, "mcp_gateway_upstream_key_rejections_total", &[]),
        0.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "mcp_gateway_upstream_key_retries_total", &[]) >= 1.0,
        "{metrics}"
    );
    // Every refused request asked for a read; they shared one (or two, if the first came
    // before Key Vault had the new value).
    let on_demand = metric(
        &metrics,
        "mcp_gateway_key_source_fetches_total",
        &[r#"trigger="rejection""#],
    );
    assert!((1.0..=2.0).contains(&on_demand), "{metrics}");
    stack.assert_no_secret_leak().await;
}

/// The Function App's key is renewed but Key Vault keeps the old one: clients get 502, the
/// verdict is Rejected, and a flood of refused requests does not hammer Key Vault.
#[tokio::test]
async fn a_key_the_function_app_no_longer_takes_is_a_502_and_a_rejected_verdict() {
    let stack = Arc::new(Stack::start(Setup::default()).await);
    assert_eq!(stack.initialize().await, 200);
    let accepted = stack.keyz().await;
    assert_eq!(accepted.upstream.verdict, Verdict::Accepted);

    stack.renew_function_key(&system_key("b"));
    let started = Instant::now();
    assert_eq!(stack.initialize().await, 502);
    // It waited for a newer key, briefly.
    assert!(started.elapsed() < Duration::from_secs(8));
    let rejected = stack.keyz().await;
    assert_eq!(rejected.upstream.verdict, Verdict::Rejected);
    assert_eq!(rejected.upstream.rejections, 1);
    assert!(rejected.upstream.since >= accepted.upstream.since);
    assert_eq!(rejected.version.as_deref(), Some(&*stack.first_version));
    let metrics = stack.metrics().await;
    assert_eq!(
        metric(&metrics, "mcp_gateway_upstream_key_rejections_total", &[]),
        1.0
    );
    assert_eq!(
        metric(&metrics, "mcp_gateway_upstream_key_rejected", &[]),
        1.0
    );
    stack
        .logged("the Function App rejects the system key")
        .await;

    // A flood of requests carrying the given-up key: each fails at once, and Key Vault sees
    // at most one read per 2 s.
    let reads_before = stack.vault.stats().await.unwrap()["secretReads"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let stack = stack.clone();
            tokio::spawn(async move { stack.initialize().await })
        })
        .collect();
    for r in flood {
        assert_eq!(r.await.unwrap(), 502);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let reads = stack.vault.stats().await.unwrap()["secretReads"]
        .as_u64()
        .unwrap()
        - reads_before;
    assert!(reads <= 2, "{reads} Key Vault reads for one flood");
    assert_eq!(stack.keyz().await.upstream.rejections, 41);

    // Key Vault gets the renewed key: the next refused request fetches it (rate-limited),
    // and requests succeed again.
    let version = stack.vault.set_secret(&system_key("b")).await.unwrap();
    eventually(15, "requests succeed with the renewed key", || async {
        match stack.initialize().await {
            200 => Ok(()),
            status => Err(status.to_string()),
        }
    })
    .await;
    let status = stack.keyz().await;
    assert_eq!(status.version.as_deref(), Some(&*version));
    assert_eq!(status.upstream.verdict, Verdict::Accepted);
    assert_eq!(
        metric(
            &stack.metrics().await,
            "mcp_gateway_upstream_key_rejected",
            &[]
        ),
        0.0
    );
    stack.assert_no_secret_leak().await;
}
