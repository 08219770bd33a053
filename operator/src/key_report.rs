//! What the gateway pods say about the system key (each sidecar's `GET /keyz` on its admin
//! port), and the one verdict the operator draws from all of them. Pure.
//!
//! Why polling: the sidecar is the internet-facing part and holds no API credentials (its
//! service-account token is not even mounted), so it cannot write an Event or a status.
//! The operator already reaches every pod's admin port for nothing else, so it asks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;

/// One pod's `/keyz` answer. Fields the operator does not use are ignored, so the sidecar
/// can add more.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodKeyReport {
    /// The key has been loaded (from any source) at least once.
    pub loaded: bool,
    /// When the pod last loaded a new key value.
    #[serde(default)]
    pub last_changed: Option<Time>,
    /// The Key Vault secret version in use (`Direct` only).
    #[serde(default)]
    pub version: Option<String>,
    pub upstream: UpstreamReport,
    /// Why the key source is failing right now (the last good key is still used).
    #[serde(default)]
    pub source_error: Option<String>,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamReport {
    pub verdict: Verdict,
    #[serde(default)]
    pub since: Option<Time>,
}

/// The Function App's answer to the key, as of the last request that carried it.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected,
    /// No request has reached the upstream yet.
    Unknown,
}

/// All pods together.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct KeyReport {
    /// Pods that answered.
    pub pods: usize,
    /// Pods that have a key.
    pub loaded: usize,
    /// The newest key change over all pods.
    pub last_changed: Option<Time>,
    /// The version the most recently changed pod uses.
    pub version: Option<String>,
    /// Pods whose last upstream answer rejected the key, and pods whose last accepted it.
    pub rejected: usize,
    pub accepted: usize,
    /// One pod's source error (they usually agree), and how many pods report one.
    pub source_error: Option<String>,
    pub source_errors: usize,
}

/// Longest source error carried into a condition message.
const MAX_ERROR_LEN: usize = 300;

pub fn aggregate(reports: &[PodKeyReport]) -> KeyReport {
    let mut out = KeyReport {
        pods: reports.len(),
        ..Default::default()
    };
    for r in reports {
        out.loaded += usize::from(r.loaded);
        match r.upstream.verdict {
            Verdict::Accepted => out.accepted += 1,
            Verdict::Rejected => out.rejected += 1,
            Verdict::Unknown => {}
        }
        if r.last_changed > out.last_changed {
            out.last_changed = r.last_changed.clone();
            out.version = r.version.clone();
        }
        if let Some(error) = &r.source_error {
            out.source_errors += 1;
            out.source_error
                .get_or_insert_with(|| error.chars().take(MAX_ERROR_LEN).collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: serde_json::Value) -> PodKeyReport {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_the_sidecar_contract_and_ignores_extra_fields() {
        let r = report(serde_json::json!({
            "source": "KeyVault", "loaded": true, "lastChanged": "2026-11-28T07:00:00Z",
            "version": "v2", "upstream": {"verdict": "Rejected", "since": "2026-11-28T07:01:00Z",
            "rejections": 3}, "sourceError": null, "somethingNew": 1}));
        assert!(r.loaded);
        assert_eq!(r.upstream.verdict, Verdict::Rejected);
        assert_eq!(r.version.as_deref(), Some("v2"));
    }

    #[test]
    fn newest_change_wins_and_verdicts_are_counted() {
        let a = report(
            serde_json::json!({"loaded": true, "lastChanged": "2026-11-28T07:00:00Z",
            "version": "old", "upstream": {"verdict": "Accepted"}}),
        );
        let b = report(
            serde_json::json!({"loaded": true, "lastChanged": "2026-11-28T08:00:00Z",
            "version": "new", "upstream": {"verdict": "Rejected"},
            "sourceError": "Key Vault unreachable"}),
        );
        let c = report(serde_json::json!({"loaded": false, "upstream": {"verdict": "Unknown"}}));
        let k = aggregate(&[a, b, c]);
        assert_eq!((k.pods, k.loaded, k.accepted, k.rejected), (3, 2, 1, 1));
        assert_eq!(k.version.as_deref(), Some("new"));
        assert_eq!(
            k.last_changed.unwrap().0.to_string(),
            "2026-11-28T08:00:00Z"
        );
        assert_eq!(k.source_error.as_deref(), Some("Key Vault unreachable"));
        assert_eq!(k.source_errors, 1);
        assert_eq!(aggregate(&[]), KeyReport::default());
    }
}
