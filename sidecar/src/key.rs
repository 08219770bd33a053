//! The Functions system key, read from a file and reloaded when the file changes.
//!
//! The file is polled (every 250 ms) rather than watched with inotify: a Secret volume
//! replaces the file by swapping a `..data` symlink and a CSI volume rewrites it in place,
//! and a poll of one small file sees both the same way, with a bound on how stale the key
//! can be and no watcher state to rebuild. A missing, empty or unusable file never replaces
//! a good key: the gateway keeps the last good one and counts the failure.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;

use crate::metrics::{Metrics, Outcome};

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The current system key, shared by every request.
pub struct SystemKey {
    path: PathBuf,
    current: RwLock<Option<HeaderValue>>,
    metrics: Arc<Metrics>,
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

impl SystemKey {
    /// Reads the file once; a failure leaves the key unloaded (and `/readyz` false) until a
    /// later poll succeeds.
    pub fn new(path: PathBuf, metrics: Arc<Metrics>) -> Arc<Self> {
        let key = Arc::new(Self {
            path,
            current: RwLock::new(None),
            metrics,
        });
        key.reload();
        key
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key to send, if one has ever loaded.
    pub fn get(&self) -> Option<HeaderValue> {
        self.current.read().expect("key lock poisoned").clone()
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().expect("key lock poisoned").is_some()
    }

    /// Re-reads the file. Returns whether the key changed.
    pub fn reload(&self) -> bool {
        let parsed = std::fs::read(&self.path)
            .map_err(|e| KeyFileError::Unreadable(e.kind()))
            .and_then(|bytes| parse_key(&bytes));
        match parsed {
            Ok(new) => {
                let mut current = self.current.write().expect("key lock poisoned");
                if current.as_ref() == Some(&new) {
                    return false;
                }
                let first = current.is_none();
                *current = Some(new);
                drop(current);
                self.metrics
                    .key_reloads
                    .get_or_create(&Outcome { outcome: "ok" })
                    .inc();
                if first {
                    tracing::info!(file = %self.path.display(), "system key loaded");
                } else {
                    tracing::info!(file = %self.path.display(), "system key changed; using the new key");
                }
                true
            }
            Err(error) => {
                self.metrics
                    .key_reloads
                    .get_or_create(&Outcome { outcome: "error" })
                    .inc();
                tracing::warn!(file = %self.path.display(), %error, kept_previous = self.is_loaded(), "system key file unusable");
                false
            }
        }
    }

    /// Polls the file until the task is dropped. Failures are logged once per change of
    /// state, not on every poll.
    pub async fn watch(self: Arc<Self>) {
        let mut last_seen: Option<Result<Vec<u8>, std::io::ErrorKind>> = None;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let seen = std::fs::read(&self.path).map_err(|e| e.kind());
            if last_seen.as_ref() != Some(&seen) {
                last_seen = Some(seen);
                self.reload();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn keeps_the_last_good_key() {
        let dir = std::env::temp_dir().join(format!("mcpgw-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "first\n").unwrap();
        let key = SystemKey::new(file.clone(), Arc::new(Metrics::new()));
        assert_eq!(key.get().unwrap(), "first");
        std::fs::write(&file, "").unwrap();
        assert!(!key.reload());
        assert_eq!(key.get().unwrap(), "first");
        std::fs::remove_file(&file).unwrap();
        assert!(!key.reload());
        assert_eq!(key.get().unwrap(), "first");
        std::fs::write(&file, "second").unwrap();
        assert!(key.reload());
        assert_eq!(key.get().unwrap(), "second");
        // Debug output of the key never shows it.
        assert!(!format!("{:?}", key.get().unwrap()).contains("second"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_leaves_the_key_unloaded() {
        let key = SystemKey::new("/nonexistent/mcpgw/key".into(), Arc::new(Metrics::new()));
        assert!(!key.is_loaded());
    }
}
