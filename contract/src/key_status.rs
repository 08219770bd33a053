//! `GET /keyz` on the sidecar's admin listener: where the system key comes from and whether the
//! upstream takes it. The sidecar serves it and the operator reads it from every pod, so the
//! field names are stable; it never holds the key, a hash of it, or a token.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    pub source: KeySourceKind,
    /// A key has been loaded (and `/readyz` can be true).
    pub loaded: bool,
    /// When the key in use last changed (RFC 3339, UTC), `None` before the first one.
    #[serde(default)]
    pub last_changed: Option<String>,
    /// The Key Vault secret version in use (`None` for a file).
    #[serde(default)]
    pub version: Option<String>,
    pub upstream: UpstreamStatus,
    /// Why the source cannot deliver a key right now (the last good key stays in use).
    #[serde(default)]
    pub source_error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySourceKind {
    File,
    KeyVault,
}

/// The upstream's verdict on the key in use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    pub verdict: Verdict,
    /// When the verdict last changed (RFC 3339, UTC).
    #[serde(default)]
    pub since: Option<String>,
    /// Requests the upstream finally refused (401/403 with no newer key, or with the newer
    /// key too), since the sidecar started.
    #[serde(default)]
    pub rejections: u64,
}

/// `Accepted`: the last upstream answer to the current key was not 401/403. `Rejected`: the
/// upstream refused it and no newer key helped. `Unknown`: no answer since the key changed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_status_has_stable_field_names() {
        let status = KeyStatus {
            source: KeySourceKind::KeyVault,
            loaded: true,
            last_changed: Some("2026-11-28T07:00:00Z".into()),
            version: Some("abc".into()),
            upstream: UpstreamStatus {
                verdict: Verdict::Accepted,
                since: None,
                rejections: 3,
            },
            source_error: None,
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"source": "KeyVault", "loaded": true,
                "lastChanged": "2026-11-28T07:00:00Z", "version": "abc",
                "upstream": {"verdict": "Accepted", "since": null, "rejections": 3},
                "sourceError": null})
        );
        assert_eq!(serde_json::from_value::<KeyStatus>(json).unwrap(), status);
    }
}
