//! Files the sidecar follows while it runs: the system key file and the two keys files
//! (session keys, facade keys), all mounted Secrets or CSI volumes.
//!
//! Polled (every [`POLL_INTERVAL`]) rather than watched with inotify: a Secret volume replaces
//! the file by swapping a `..data` symlink and a CSI volume rewrites it in place, and a poll of
//! one small file sees both the same way, with a bound on how stale it can be and no watcher
//! state to rebuild.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use mcp_gateway_contract::keys_file::KeysFileError;

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What one read of a followed file gave.
pub type Read = Result<Vec<u8>, ErrorKind>;

/// Reads `path` every [`POLL_INTERVAL`] until the task is dropped and calls `changed` with
/// each read that differs from the one before (from `seen`, what the caller already read, if
/// anything): new content, or a different error.
pub async fn follow(path: PathBuf, seen: Option<Read>, mut changed: impl FnMut(&Read)) {
    let mut last = seen;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let read = std::fs::read(&path).map_err(|e| e.kind());
        if last.as_ref() != Some(&read) {
            changed(&read);
            last = Some(read);
        }
    }
}

/// Keys parsed from a keys file (see `contract::keys_file`), kept current while the file
/// changes: a rotation (prepend a key, later drop the old one) takes effect without a restart.
/// A file that stops parsing, or goes away, leaves the last good keys in use; that is logged
/// once per change, with the file's name and the line at fault, never a key.
pub struct KeysFile<T> {
    current: RwLock<Arc<T>>,
    /// `None` for keys that do not come from a file (one random session key).
    source: Option<Source<T>>,
}

struct Source<T> {
    path: PathBuf,
    /// What [`KeysFile::load`] read, so following starts from there.
    loaded: Vec<u8>,
    /// What the file holds, for messages: `session keys`, `facade keys`.
    what: &'static str,
    parse: fn(&str) -> Result<T, KeysFileError>,
}

/// Why a keys file cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileProblem {
    #[error("cannot read {what} file {}: {kind}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        kind: ErrorKind,
    },
    #[error("{what} file {} is not valid: {error}", path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        error: KeysFileError,
    },
}

impl<T: Send + Sync + 'static> KeysFile<T> {
    /// Reads and parses the file once; a failure here stops start-up (there are no last good
    /// keys yet). [`KeysFile::start`] follows it from then on.
    pub fn load(
        path: &Path,
        what: &'static str,
        parse: fn(&str) -> Result<T, KeysFileError>,
    ) -> Result<Arc<Self>, KeysFileProblem> {
        let read = std::fs::read(path).map_err(|e| e.kind());
        let mut source = Source {
            path: path.to_path_buf(),
            loaded: Vec::new(),
            what,
            parse,
        };
        let keys = source.parse(&read)?;
        source.loaded = read.unwrap_or_default();
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(keys)),
            source: Some(source),
        }))
    }

    /// Keys that never change.
    pub fn fixed(keys: T) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(keys)),
            source: None,
        })
    }

    /// The keys in use.
    pub fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Follows the file, calling `installed` with every new set of keys once it is in use.
    /// `None` for fixed keys.
    pub fn start(
        self: &Arc<Self>,
        installed: impl Fn(&T) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let source = self.source.as_ref()?;
        let this = Arc::downgrade(self);
        let seen = Some(Ok(source.loaded.clone()));
        Some(tokio::spawn(follow(
            source.path.clone(),
            seen,
            move |read| {
                let Some(this) = this.upgrade() else { return };
                let source = this.source.as_ref().expect("followed keys have a source");
                match source.parse(read) {
                    Ok(keys) => {
                        let keys = Arc::new(keys);
                        *this.current.write().unwrap_or_else(PoisonError::into_inner) =
                            keys.clone();
                        installed(&keys);
                        tracing::info!(
                            file = %source.path.display(),
                            "{} changed; using the new keys",
                            source.what
                        );
                    }
                    // Each call is a change, so this logs once per change of failure.
                    Err(problem) => {
                        tracing::warn!(error = %problem, "keeping the previous {}", source.what);
                    }
                }
            },
        )))
    }
}

impl<T> Source<T> {
    fn parse(&self, read: &Read) -> Result<T, KeysFileProblem> {
        let bytes = read.as_ref().map_err(|&kind| KeysFileProblem::Unreadable {
            what: self.what,
            path: self.path.clone(),
            kind,
        })?;
        let invalid = |error| KeysFileProblem::Invalid {
            what: self.what,
            path: self.path.clone(),
            error,
        };
        // Lossy: a stray byte becomes a character no key has, so the error names its line.
        let text = String::from_utf8_lossy(bytes);
        (self.parse)(&text).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionSealer;
    use crate::test_support::until;
    use mcp_gateway_contract::keys_file::{format_key, parse_keys};

    fn temp_file(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcpgw-polled-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("keys")
    }

    #[tokio::test]
    async fn a_rotated_keys_file_takes_effect_and_a_broken_one_keeps_the_last_keys() {
        let file = temp_file("rotate");
        std::fs::write(&file, format!("{}\n", format_key(&[1; 32]))).unwrap();
        let keys = KeysFile::load(&file, "session keys", parse_keys).unwrap();
        let installed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = installed.clone();
        let _task = keys.start(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(*keys.current(), vec![[1; 32]]);

        // Rotation: the new key first, the old one still listed.
        let rotated = format!("{}\n{}\n", format_key(&[2; 32]), format_key(&[1; 32]));
        std::fs::write(&file, rotated).unwrap();
        until("the rotation", || keys.current().len() == 2).await;
        assert_eq!(*keys.current(), vec![[2; 32], [1; 32]]);
        assert_eq!(installed.load(std::sync::atomic::Ordering::Relaxed), 1);

        // A broken file, then none at all: the last good keys stay.
        std::fs::write(&file, "not a key\n").unwrap();
        tokio::time::sleep(POLL_INTERVAL * 3).await;
        std::fs::remove_file(&file).unwrap();
        tokio::time::sleep(POLL_INTERVAL * 3).await;
        assert_eq!(*keys.current(), vec![[2; 32], [1; 32]]);
        assert_eq!(installed.load(std::sync::atomic::Ordering::Relaxed), 1);

        // The old key retired.
        std::fs::write(&file, format!("{}\n", format_key(&[2; 32]))).unwrap();
        until("the retirement", || keys.current().len() == 1).await;
        assert_eq!(*keys.current(), vec![[2; 32]]);
        std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    }

    #[test]
    fn load_errors_name_the_file_and_never_a_key() {
        let file = temp_file("errors");
        std::fs::write(&file, "s3cr3t-not-base64!!\n").unwrap();
        let error = KeysFile::load(&file, "facade keys", parse_keys)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with(&format!(
                "facade keys file {} is not valid: line 1",
                file.display()
            )),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
        let missing = file.with_file_name("absent");
        let error = KeysFile::load(&missing, "session keys", SessionSealer::from_keys_file_text)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with("cannot read session keys file"),
            "{error}"
        );
        std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    }

    #[test]
    fn fixed_keys_are_not_followed() {
        let keys = KeysFile::fixed(7u8);
        assert_eq!(*keys.current(), 7);
        assert!(keys.start(|_| {}).is_none());
    }
}
