//! The Functions system key: where it comes from (a mounted file, or Azure Key Vault read
//! directly), the current value every request uses, and what the upstream thinks of it.
//!
//! **File.** The file is polled (every 250 ms) rather than watched with inotify: a Secret
//! volume replaces the file by swapping a `..data` symlink and a CSI volume rewrites it in
//! place, and a poll of one small file sees both the same way, with a bound on how stale the
//! key can be and no watcher state to rebuild.
//!
//! **Key Vault.** One background task reads the secret every `refreshSeconds` (±10 %), and on
//! demand when the upstream refuses the key: requests that were refused only wake that task,
//! so any number of them share one read (single flight), and on-demand reads are at least
//! [`ON_DEMAND_MIN_INTERVAL`] apart, so a flood of 401s cannot hammer Key Vault or Entra.
//!
//! Either way a missing or unusable key never replaces a good one: the gateway keeps the last
//! good key, counts the failure, reports it in `/keyz` and logs it once per change of state.
//! The key is a sensitive [`HeaderValue`]: its `Debug` shows no value, and it is never logged.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tokio::sync::{Notify, watch};

use crate::backoff::Backoff;
use crate::config::SystemKeyConfig;
use crate::keyvault::{KeyVaultClient, KeyVaultSettings};
use crate::metrics::{KeyFetch, Metrics, Outcome};

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// On-demand Key Vault reads (after the upstream refused the key) are at least this far apart.
pub const ON_DEMAND_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// How long a request whose key the upstream refused waits for its source to deliver a newer
/// one before it fails with 502. A Function App's key is renewed a moment before the copy in
/// Key Vault (or the mounted Secret) follows, so a short wait turns that moment into slower
/// requests rather than failed ones. Long enough for one on-demand read after one that came
/// too early ([`ON_DEMAND_MIN_INTERVAL`]); once a key has been given up on, later requests
/// carrying it fail at once instead of waiting again.
pub const ROTATION_GRACE: Duration = Duration::from_secs(3);

/// The key to send and its generation (1 for the first key loaded, +1 on every change).
#[derive(Clone, Debug)]
pub struct Key {
    pub value: HeaderValue,
    pub generation: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyFileError {
    #[error("cannot read the system key file: {0}")]
    Unreadable(std::io::ErrorKind),
    #[error("the system key file is empty")]
    Empty,
    #[error("the system key file holds characters that cannot be sent in a header")]
    NotAHeaderValue,
}

/// Parses a key file's bytes: surrounding whitespace (a trailing newline from `echo`) is
/// not part of the key.
pub fn parse_key(bytes: &[u8]) -> Result<HeaderValue, KeyFileError> {
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err(KeyFileError::Empty);
    }
    let mut value = HeaderValue::from_bytes(text).map_err(|_| KeyFileError::NotAHeaderValue)?;
    if text.iter().any(|b| !b.is_ascii_graphic()) {
        return Err(KeyFileError::NotAHeaderValue);
    }
    value.set_sensitive(true);
    Ok(value)
}

/// `GET /keyz`'s report, shared with the operator that reads it.
pub use mcp_gateway_contract::key_status::{KeySourceKind, KeyStatus, UpstreamStatus, Verdict};

enum Source {
    File(PathBuf),
    KeyVault(Box<KeyVaultSource>),
}

struct KeyVaultSource {
    client: KeyVaultClient,
    refresh: Duration,
    /// Wakes the refresher for an on-demand read.
    wake: Notify,
    /// An on-demand read is wanted unless the generation has reached this.
    wanted: AtomicU64,
    /// On-demand asks so far; a read serves every ask made before it started.
    asks: AtomicU64,
}

#[derive(Default)]
struct State {
    key: Option<Key>,
    version: Option<String>,
    updated: Option<u64>,
    changed_at: Option<SystemTime>,
    error: Option<String>,
}

struct VerdictState {
    verdict: Verdict,
    since: Option<SystemTime>,
    rejections: u64,
    /// The key generation the verdict is about.
    generation: u64,
}

/// The current system key, shared by every request.
pub struct SystemKey {
    source: Source,
    /// Lock order: `verdict` before `state`.
    state: RwLock<State>,
    verdict: Mutex<VerdictState>,
    /// `generation + 1` of the key last recorded as accepted (0: none), so the request path
    /// records a verdict without a lock when nothing changes.
    accepted: AtomicU64,
    /// The current generation (0: no key yet).
    changes: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl SystemKey {
    fn with_source(source: Source, metrics: Arc<Metrics>) -> Self {
        Self {
            source,
            state: RwLock::new(State::default()),
            verdict: Mutex::new(VerdictState {
                verdict: Verdict::Unknown,
                since: None,
                rejections: 0,
                generation: 0,
            }),
            accepted: AtomicU64::new(0),
            changes: watch::Sender::new(0),
            metrics,
        }
    }

    /// A key read from `path`. Reads the file once; a failure leaves the key unloaded (and
    /// `/readyz` false) until a later poll succeeds. [`SystemKey::start`] starts polling.
    pub fn from_file(path: PathBuf, metrics: Arc<Metrics>) -> Arc<Self> {
        let key = Arc::new(Self::with_source(Source::File(path), metrics));
        key.reload_file();
        key
    }

    /// A key read from Key Vault by [`SystemKey::start`]'s task; unloaded until then.
    pub fn from_key_vault(client: KeyVaultClient, metrics: Arc<Metrics>) -> Arc<Self> {
        let refresh = client.settings().refresh;
        Arc::new(Self::with_source(
            Source::KeyVault(Box::new(KeyVaultSource {
                client,
                refresh,
                wake: Notify::new(),
                wanted: AtomicU64::new(0),
                asks: AtomicU64::new(0),
            })),
            metrics,
        ))
    }

    /// The key source `config` names; Key Vault identity defaults come from `env`.
    pub fn from_config(
        config: &SystemKeyConfig,
        metrics: Arc<Metrics>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<Self>, String> {
        match (&config.file, &config.key_vault) {
            (Some(path), None) => Ok(Self::from_file(path.clone(), metrics)),
            (None, Some(kv)) => {
                let settings = KeyVaultSettings::resolve(kv, env)?;
                tracing::info!(
                    vault = %settings.vault_origin(),
                    secret = %settings.secret_name,
                    client_id = %settings.client_id,
                    tenant_id = %settings.tenant_id,
                    refresh_seconds = settings.refresh.as_secs(),
                    "reading the system key from Key Vault"
                );
                Ok(Self::from_key_vault(KeyVaultClient::new(settings), metrics))
            }
            _ => Err("systemKey needs exactly one of file or keyVault".into()),
        }
    }

    /// Starts following the source: polling the file, or reading Key Vault now and then.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let key = self.clone();
        match &self.source {
            Source::File(_) => tokio::spawn(key.watch_file()),
            Source::KeyVault(_) => tokio::spawn(key.refresh_key_vault()),
        }
    }

    pub fn kind(&self) -> KeySourceKind {
        match self.source {
            Source::File(_) => KeySourceKind::File,
            Source::KeyVault(_) => KeySourceKind::KeyVault,
        }
    }

    /// The key to send, if one has ever loaded.
    pub fn current(&self) -> Option<Key> {
        self.read_state().key.clone()
    }

    /// The key value to send, if one has ever loaded.
    pub fn get(&self) -> Option<HeaderValue> {
        self.read_state().key.as_ref().map(|k| k.value.clone())
    }

    pub fn is_loaded(&self) -> bool {
        self.read_state().key.is_some()
    }

    /// Why the source cannot deliver a key right now, if it cannot.
    pub fn source_error(&self) -> Option<String> {
        self.read_state().error.clone()
    }

    fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_verdict(&self) -> std::sync::MutexGuard<'_, VerdictState> {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `value` in use if it differs from the current key. Returns whether it did.
    fn adopt(&self, value: HeaderValue, version: Option<String>, updated: Option<u64>) -> bool {
        let mut verdict = self.lock_verdict();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let same = state.key.as_ref().is_some_and(|k| k.value == value);
        if same {
            state.version = version.or(state.version.take());
            state.updated = updated.or(state.updated);
            return false;
        }
        let first = state.key.is_none();
        let generation = self.generation() + 1;
        state.key = Some(Key { value, generation });
        state.version = version;
        state.updated = updated;
        state.changed_at = Some(SystemTime::now());
        let (version, updated) = (state.version.clone(), state.updated);
        self.changes.send_replace(generation);
        drop(state);
        // A verdict is about one key: the new one has none yet.
        if verdict.verdict != Verdict::Unknown {
            verdict.verdict = Verdict::Unknown;
            verdict.since = Some(SystemTime::now());
        }
        verdict.generation = generation;
        self.accepted.store(0, Ordering::Relaxed);
        self.metrics.upstream_key_rejected.set(0);
        drop(verdict);
        self.metrics
            .key_reloads
            .get_or_create(&Outcome { outcome: "ok" })
            .inc();
        let source = self.describe();
        if first {
            tracing::info!(%source, version = version.as_deref(), updated, "system key loaded");
        } else {
            tracing::info!(
                %source,
                version = version.as_deref(),
                updated,
                "system key changed; using the new key"
            );
        }
        true
    }

    /// Records that the source works (again).
    fn source_ok(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.error.take().is_some() {
            drop(state);
            self.metrics.key_source_failing.set(0);
            tracing::info!(source = %self.describe(), "system key source works again");
        }
    }

    /// Records a source failure; logs it when it differs from the last one.
    fn source_failed(&self, error: String) {
        self.metrics
            .key_reloads
            .get_or_create(&Outcome { outcome: "error" })
            .inc();
        self.metrics.key_source_failing.set(1);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.error.as_ref() == Some(&error) {
            return;
        }
        let kept_previous = state.key.is_some();
        state.error = Some(error.clone());
        drop(state);
        tracing::warn!(source = %self.describe(), %error, kept_previous, "system key source failing");
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::File(path) => format!("file {}", path.display()),
            Source::KeyVault(kv) => {
                let s = kv.client.settings();
                format!("Key Vault {} secret {}", s.vault_origin(), s.secret_name)
            }
        }
    }

    /// Re-reads the key file. Returns whether the key changed.
    fn reload_file(&self) -> bool {
        let Source::File(path) = &self.source else {
            return false;
        };
        let parsed = std::fs::read(path)
            .map_err(|e| KeyFileError::Unreadable(e.kind()))
            .and_then(|bytes| parse_key(&bytes));
        match parsed {
            Ok(value) => {
                let changed = self.adopt(value, None, None);
                self.source_ok();
                changed
            }
            Err(error) => {
                self.source_failed(format!("{error} ({})", path.display()));
                false
            }
        }
    }

    /// Polls the file until the task is dropped, re-reading it when it changes.
    async fn watch_file(self: Arc<Self>) {
        let Source::File(path) = &self.source else {
            return;
        };
        let mut last_seen: Option<Result<Vec<u8>, std::io::ErrorKind>> = None;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let seen = std::fs::read(path).map_err(|e| e.kind());
            if last_seen.as_ref() != Some(&seen) {
                last_seen = Some(seen);
                self.reload_file();
            }
        }
    }

    /// Reads Key Vault at once, then every `refreshSeconds` (sooner after a failure), and
    /// when a refused request asks for it (at most every [`ON_DEMAND_MIN_INTERVAL`]).
    async fn refresh_key_vault(self: Arc<Self>) {
        let Source::KeyVault(kv) = &self.source else {
            return;
        };
        let mut next = tokio::time::Instant::now();
        // After a failed read the next comes sooner than `refreshSeconds` (never later).
        let mut retries = Backoff::fetch_retries().start();
        let mut last_read: Option<tokio::time::Instant> = None;
        let mut served = 0;
        loop {
            let on_demand = tokio::select! {
                () = tokio::time::sleep_until(next) => false,
                () = kv.wake.notified() => true,
            };
            let renewed = || {
                self.generation() >= kv.wanted.load(Ordering::Relaxed)
                    || kv.asks.load(Ordering::Relaxed) == served
            };
            if on_demand {
                if renewed() {
                    continue;
                }
                if let Some(earliest) = last_read.map(|t| t + ON_DEMAND_MIN_INTERVAL)
                    && tokio::time::Instant::now() < earliest
                {
                    tokio::time::sleep_until(earliest.min(next)).await;
                    if renewed() && tokio::time::Instant::now() < next {
                        continue;
                    }
                }
            }
            last_read = Some(tokio::time::Instant::now());
            served = kv.asks.load(Ordering::Relaxed);
            let ok = self
                .read_key_vault(kv, if on_demand { "rejection" } else { "periodic" })
                .await;
            let wait = if ok {
                retries.reset();
                jitter(kv.refresh)
            } else {
                retries.next_delay().min(kv.refresh)
            };
            next = tokio::time::Instant::now() + wait;
        }
    }

    async fn read_key_vault(&self, kv: &KeyVaultSource, trigger: &'static str) -> bool {
        let result = kv.client.fetch().await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics
            .key_source_fetches
            .get_or_create(&KeyFetch { trigger, outcome })
            .inc();
        match result {
            Ok(secret) => {
                self.adopt(secret.value, secret.version, secret.updated);
                self.source_ok();
                true
            }
            Err(error) => {
                self.source_failed(error.to_string());
                false
            }
        }
    }

    /// The upstream refused key `generation`: asks the source for a newer key and waits up to
    /// [`ROTATION_GRACE`] for one (not at all if this key was already given up on). Returns
    /// whether a newer key is in use.
    pub async fn renewed_after_rejection(&self, generation: u64) -> bool {
        let renewed = |g: &u64| *g != generation;
        if renewed(&self.changes.borrow()) {
            return true;
        }
        match &self.source {
            Source::File(_) => {
                self.reload_file();
            }
            Source::KeyVault(kv) => {
                kv.wanted.fetch_max(generation + 1, Ordering::Relaxed);
                kv.asks.fetch_add(1, Ordering::Relaxed);
                kv.wake.notify_one();
            }
        }
        if renewed(&self.changes.borrow()) {
            return true;
        }
        {
            let verdict = self.lock_verdict();
            if verdict.verdict == Verdict::Rejected && verdict.generation == generation {
                return false;
            }
        }
        let mut changes = self.changes.subscribe();
        matches!(
            tokio::time::timeout(ROTATION_GRACE, changes.wait_for(renewed)).await,
            Ok(Ok(_))
        )
    }

    /// The upstream answered a request carrying key `generation` with something other than
    /// 401/403.
    pub fn upstream_accepted(&self, generation: u64) {
        if self.accepted.load(Ordering::Relaxed) == generation + 1 {
            return;
        }
        let mut verdict = self.lock_verdict();
        if generation != self.generation() {
            return; // an older key: says nothing about the current one
        }
        if verdict.verdict != Verdict::Accepted {
            if verdict.verdict == Verdict::Rejected {
                tracing::info!("the Function App accepts the system key again");
            }
            verdict.verdict = Verdict::Accepted;
            verdict.since = Some(SystemTime::now());
            verdict.generation = generation;
            self.metrics.upstream_key_rejected.set(0);
        }
        self.accepted.store(generation + 1, Ordering::Relaxed);
    }

    /// The upstream refused key `generation` (with `status`) and no newer key helped.
    pub fn upstream_rejected(&self, generation: u64, status: u16) {
        self.metrics.upstream_key_rejections.inc();
        let mut verdict = self.lock_verdict();
        verdict.rejections += 1;
        if generation != self.generation() {
            return;
        }
        self.accepted.store(0, Ordering::Relaxed);
        if verdict.verdict != Verdict::Rejected {
            verdict.verdict = Verdict::Rejected;
            verdict.since = Some(SystemTime::now());
            verdict.generation = generation;
            self.metrics.upstream_key_rejected.set(1);
            drop(verdict);
            tracing::error!(
                source = %self.describe(),
                status,
                "the Function App rejects the system key and the source has no newer one: renew \
                 the key where the gateway reads it"
            );
        }
    }

    /// What `/keyz` shows.
    pub fn status(&self) -> KeyStatus {
        let verdict = self.lock_verdict();
        let upstream = UpstreamStatus {
            verdict: verdict.verdict,
            since: verdict.since.map(rfc3339),
            rejections: verdict.rejections,
        };
        drop(verdict);
        let state = self.read_state();
        KeyStatus {
            source: self.kind(),
            loaded: state.key.is_some(),
            last_changed: state.changed_at.map(rfc3339),
            version: state.version.clone(),
            upstream,
            source_error: state.error.clone(),
        }
    }
}

/// `period` ± 10 %.
fn jitter(period: Duration) -> Duration {
    period.mul_f64(rand::random_range(0.9..1.1))
}

/// `2026-11-28T07:00:00Z` (UTC, whole seconds).
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm), for dates from 1970 on.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::keyvault::tests::Vault;

    #[test]
    fn parses_keys() {
        assert_eq!(parse_key(b"abc==\n").unwrap(), "abc==");
        assert_eq!(parse_key(b"  \n"), Err(KeyFileError::Empty));
        assert_eq!(parse_key(b""), Err(KeyFileError::Empty));
        assert_eq!(parse_key(b"a b"), Err(KeyFileError::NotAHeaderValue));
        assert_eq!(parse_key(b"a\nb"), Err(KeyFileError::NotAHeaderValue));
        assert_eq!(parse_key(&[0xff, 0xfe]), Err(KeyFileError::NotAHeaderValue));
        assert!(parse_key(b"k").unwrap().is_sensitive());
    }

    fn temp_file(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcpgw-key-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("key")
    }

    #[test]
    fn keeps_the_last_good_key() {
        let file = temp_file("last-good");
        std::fs::write(&file, "first\n").unwrap();
        let key = SystemKey::from_file(file.clone(), Arc::new(Metrics::new()));
        assert_eq!(key.get().unwrap(), "first");
        assert_eq!(key.current().unwrap().generation, 1);
        assert_eq!(key.source_error(), None);
        std::fs::write(&file, "").unwrap();
        assert!(!key.reload_file());
        assert_eq!(key.get().unwrap(), "first");
        assert!(key.source_error().unwrap().contains("empty"));
        std::fs::remove_file(&file).unwrap();
        assert!(!key.reload_file());
        assert_eq!(key.get().unwrap(), "first");
        std::fs::write(&file, "second").unwrap();
        assert!(key.reload_file());
        assert_eq!(key.get().unwrap(), "second");
        assert_eq!(key.current().unwrap().generation, 2);
        assert_eq!(key.source_error(), None);
        // Debug output of the key never shows it.
        assert!(!format!("{:?}", key.current().unwrap()).contains("second"));
        let status = serde_json::to_string(&key.status()).unwrap();
        assert!(!status.contains("second"), "{status}");
        std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_missing_file_leaves_the_key_unloaded() {
        let key = SystemKey::from_file("/nonexistent/mcpgw/key".into(), Arc::new(Metrics::new()));
        assert!(!key.is_loaded());
        let status = key.status();
        assert!(!status.loaded);
        assert_eq!(status.source, KeySourceKind::File);
        assert!(
            status
                .source_error
                .unwrap()
                .contains("/nonexistent/mcpgw/key")
        );
    }

    #[test]
    fn the_verdict_follows_the_upstream_and_resets_with_a_new_key() {
        let file = temp_file("verdict");
        std::fs::write(&file, "first").unwrap();
        let metrics = Arc::new(Metrics::new());
        let key = SystemKey::from_file(file.clone(), metrics.clone());
        assert_eq!(key.status().upstream.verdict, Verdict::Unknown);
        key.upstream_accepted(1);
        let accepted = key.status().upstream;
        assert_eq!(accepted.verdict, Verdict::Accepted);
        assert!(accepted.since.is_some());
        key.upstream_rejected(1, 401);
        let rejected = key.status().upstream;
        assert_eq!(rejected.verdict, Verdict::Rejected);
        assert_eq!(rejected.rejections, 1);
        assert!(
            metrics
                .encode()
                .contains("mcp_gateway_upstream_key_rejected 1")
        );
        key.upstream_accepted(1);
        assert_eq!(key.status().upstream.verdict, Verdict::Accepted);
        assert!(
            metrics
                .encode()
                .contains("mcp_gateway_upstream_key_rejected 0")
        );

        std::fs::write(&file, "second").unwrap();
        assert!(key.reload_file());
        assert_eq!(key.status().upstream.verdict, Verdict::Unknown);
        // An answer to a request that carried the old key says nothing about the new one.
        key.upstream_accepted(1);
        key.upstream_rejected(1, 401);
        let status = key.status().upstream;
        assert_eq!(status.verdict, Verdict::Unknown);
        assert_eq!(status.rejections, 2);
        key.upstream_accepted(2);
        assert_eq!(key.status().upstream.verdict, Verdict::Accepted);
        std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_refused_file_key_waits_briefly_for_the_renewed_one() {
        let file = temp_file("renewed");
        std::fs::write(&file, "first").unwrap();
        let key = SystemKey::from_file(file.clone(), Arc::new(Metrics::new()));
        let _watch = key.start();
        // Renewed while a refused request waits.
        let writer = {
            let file = file.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::write(&file, "second").unwrap();
            })
        };
        assert!(key.renewed_after_rejection(1).await);
        writer.await.unwrap();
        assert_eq!(key.get().unwrap(), "second");
        // Nothing newer: gives up after the grace period, then at once for that key.
        let started = Instant::now();
        assert!(!key.renewed_after_rejection(2).await);
        assert!(started.elapsed() >= ROTATION_GRACE);
        key.upstream_rejected(2, 401);
        let started = Instant::now();
        assert!(!key.renewed_after_rejection(2).await);
        assert!(started.elapsed() < Duration::from_millis(100));
        std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_849_200);
        assert_eq!(rfc3339(t), "2026-11-28T07:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(rfc3339(leap), "2000-02-29T23:59:59Z");
    }

    fn fetches(metrics: &Metrics, trigger: &str) -> u64 {
        let text = metrics.encode();
        text.lines()
            .filter(|l| {
                l.starts_with("mcp_gateway_key_source_fetches_total")
                    && l.contains(&format!("trigger=\"{trigger}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn key_vault_reads_are_single_flight_and_rate_limited() {
        let vault = Vault::start("SYSKEY-kv-a").await;
        let metrics = Arc::new(Metrics::new());
        let key = SystemKey::from_key_vault(KeyVaultClient::new(vault.settings()), metrics.clone());
        assert!(!key.is_loaded());
        let _task = key.start();
        until("the first read", || key.is_loaded()).await;
        assert_eq!(key.get().unwrap(), "SYSKEY-kv-a");
        let status = key.status();
        assert_eq!(status.source, KeySourceKind::KeyVault);
        assert_eq!(status.version.as_deref(), Some(&*format!("v{:031}", 1)));
        assert!(status.last_changed.is_some());

        // Fifty refused requests at once while Key Vault still has the same key: they share
        // one read, which is at least ON_DEMAND_MIN_INTERVAL after the first.
        vault.set(|s| s.delay = Duration::from_millis(100));
        let started = Instant::now();
        let waits: Vec<_> = (0..50)
            .map(|_| {
                let key = key.clone();
                tokio::spawn(async move { key.renewed_after_rejection(1).await })
            })
            .collect();
        for w in waits {
            assert!(!w.await.unwrap());
        }
        assert!(started.elapsed() >= ROTATION_GRACE);
        let on_demand = fetches(&metrics, "rejection");
        assert_eq!(on_demand, 1, "{}", metrics.encode());
        assert_eq!(vault.get(|s| s.secret_reads), 2);

        // A renewed secret: the next refused request gets it on demand and retries.
        vault.set(|s| {
            s.value = "SYSKEY-kv-b".into();
            s.version = 2;
        });
        let waits: Vec<_> = (0..20)
            .map(|_| {
                let key = key.clone();
                tokio::spawn(async move { key.renewed_after_rejection(1).await })
            })
            .collect();
        for w in waits {
            assert!(w.await.unwrap());
        }
        assert_eq!(key.get().unwrap(), "SYSKEY-kv-b");
        assert_eq!(fetches(&metrics, "rejection"), 2);
        assert_eq!(
            key.status().version.as_deref(),
            Some(&*format!("v{:031}", 2))
        );
    }

    #[tokio::test]
    async fn key_vault_failures_keep_the_last_key_and_are_reported() {
        let vault = Vault::start("SYSKEY-kv-a").await;
        let metrics = Arc::new(Metrics::new());
        let mut settings = vault.settings();
        settings.refresh = Duration::from_secs(1);
        let key = SystemKey::from_key_vault(KeyVaultClient::new(settings), metrics.clone());
        let _task = key.start();
        until("the first read", || key.is_loaded()).await;
        vault.set(|s| s.vault_status = Some(503));
        until("the failure", || key.source_error().is_some()).await;
        assert!(key.source_error().unwrap().contains("503"));
        assert_eq!(key.get().unwrap(), "SYSKEY-kv-a");
        assert!(
            metrics
                .encode()
                .contains("mcp_gateway_key_source_failing 1")
        );
        vault.set(|s| s.vault_status = Some(403));
        until("the denial", || {
            key.source_error()
                .is_some_and(|e| e.contains("may not read secret"))
        })
        .await;
        vault.set(|s| s.vault_status = None);
        until("the recovery", || key.source_error().is_none()).await;
        assert!(
            metrics
                .encode()
                .contains("mcp_gateway_key_source_failing 0")
        );
        let text = metrics.encode();
        assert!(text.contains(r#"outcome="unreachable""#), "{text}");
        assert!(text.contains(r#"outcome="denied""#), "{text}");
    }
}
