//! The system key from Azure Key Vault: one background task reads the secret every
//! `refreshSeconds` (±10 %), sooner after a failure ([`Backoff`]), and on demand when the
//! upstream refuses the key. Requests that were refused only wake that task, so any number of
//! them share one read (single flight), and on-demand reads are at least
//! [`ON_DEMAND_MIN_INTERVAL`] apart, so a flood of 401s cannot hammer Key Vault or Entra.
//! Talking to Entra and Key Vault is [`super::key_vault_client`]'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::key_vault_client::KeyVaultClient;
use super::{ON_DEMAND_MIN_INTERVAL, Source, SystemKey};
use crate::backoff::Backoff;
use crate::metrics::{KeyFetch, Metrics};

/// What the Key Vault source shares between the refresher and refused requests.
pub(super) struct KeyVaultSource {
    pub(super) client: KeyVaultClient,
    pub(super) refresh: Duration,
    /// Wakes the refresher for an on-demand read.
    pub(super) wake: Notify,
    /// An on-demand read is wanted unless the generation has reached this.
    pub(super) wanted: AtomicU64,
    /// On-demand asks so far; a read serves every ask made before it started.
    pub(super) asks: AtomicU64,
}

impl SystemKey {
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

    /// Reads Key Vault at once, then every `refreshSeconds` (sooner after a failure), and
    /// when a refused request asks for it (at most every [`ON_DEMAND_MIN_INTERVAL`]).
    pub(super) async fn refresh_key_vault(self: Arc<Self>) {
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
}

/// `period` ± 10 %.
fn jitter(period: Duration) -> Duration {
    period.mul_f64(rand::random_range(0.9..1.1))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::key::key_vault_client::tests::Vault;
    use crate::key::{KeySourceKind, ROTATION_GRACE};
    use crate::test_support::until;

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
