//! The system key from a file (a mounted Secret or CSI volume), followed with
//! [`crate::polled_file`].

use std::path::PathBuf;
use std::sync::Arc;

use super::value::{KeyFileError, parse_key};
use super::{Source, SystemKey};
use crate::metrics::Metrics;
use crate::polled_file;

impl SystemKey {
    /// A key read from `path`. Reads the file once; a failure leaves the key unloaded (and
    /// `/readyz` false) until a later poll succeeds. [`SystemKey::start`] starts polling.
    pub fn from_file(path: PathBuf, metrics: Arc<Metrics>) -> Arc<Self> {
        let key = Arc::new(Self::with_source(Source::File(path), metrics));
        key.reload_file();
        key
    }

    /// Re-reads the key file. Returns whether the key changed.
    pub(super) fn reload_file(&self) -> bool {
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

    /// Follows the file until the task is dropped, re-reading it when it changes.
    pub(super) async fn watch_file(self: Arc<Self>) {
        let Source::File(path) = &self.source else {
            return;
        };
        polled_file::follow(path.clone(), None, |_| {
            self.reload_file();
        })
        .await;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::key::{KeySourceKind, ROTATION_GRACE};

    pub(in crate::key) fn temp_file(tag: &str) -> PathBuf {
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
}
