//! The Functions system key: where it comes from, the current value every request uses, and
//! what the upstream thinks of it (`/keyz`).
//!
//! - `file`: a mounted file (Secret or CSI volume), followed by polling;
//! - `key_vault`: Azure Key Vault read directly (refresh, on demand, single flight), with
//!   `key_vault_client` talking to Entra and Key Vault;
//! - `value`: what a key must look like to be sent in a header.
//!
//! Either way a missing or unusable key never replaces a good one: the gateway keeps the last
//! good key, counts the failure, reports it in `/keyz` and logs it once per change of state.
//! The key is a sensitive [`HeaderValue`]: its `Debug` shows no value, and it is never logged.

mod file;
mod key_vault;
pub mod key_vault_client;
pub mod value;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use tokio::sync::watch;

use crate::config::SystemKeyConfig;
use crate::metrics::{Metrics, Outcome};
use key_vault::KeyVaultSource;
use key_vault_client::{KeyVaultClient, KeyVaultSettings};
pub use value::{KeyFileError, parse_key};

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

/// `GET /keyz`'s report, shared with the operator that reads it.
pub use mcp_gateway_contract::key_status::{KeySourceKind, KeyStatus, UpstreamStatus, Verdict};

enum Source {
    File(PathBuf),
    KeyVault(Box<KeyVaultSource>),
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

/// `2026-11-28T07:00:00Z` (UTC, whole seconds).
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::file::tests::temp_file;

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

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_849_200);
        assert_eq!(rfc3339(t), "2026-11-28T07:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(rfc3339(leap), "2000-02-29T23:59:59Z");
    }
}
