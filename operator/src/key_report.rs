//! What the gateway pods say about the system key (each sidecar's `GET /keyz` on its admin
//! port), and the one verdict the operator draws from all of them. Pure.
//!
//! Why polling: the sidecar is the internet-facing part and holds no API credentials (its
//! service-account token is not even mounted), so it cannot write an Event or a status.
//! The operator already reaches every pod's admin port for nothing else, so it asks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// One pod's `/keyz` answer: the type the sidecar serves, from the shared contract.
pub use mcp_gateway_contract::key_status::{KeyStatus as PodKeyReport, Verdict};

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
        let changed = r
            .last_changed
            .as_deref()
            .and_then(|t| t.parse().ok())
            .map(Time);
        if changed > out.last_changed {
            out.last_changed = changed;
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
    fn reads_the_sidecar_contract() {
        let r = report(serde_json::json!({
            "source": "KeyVault", "loaded": true, "lastChanged": "2026-11-28T07:00:00Z",
            "version": "v2", "upstream": {"verdict": "Rejected", "since": "2026-11-28T07:01:00Z",
            "rejections": 3}, "sourceError": null}));
        assert!(r.loaded);
        assert_eq!(r.upstream.verdict, Verdict::Rejected);
        assert_eq!(r.version.as_deref(), Some("v2"));
    }

    #[test]
    fn newest_change_wins_and_verdicts_are_counted() {
        let a = report(
            serde_json::json!({"source": "KeyVault", "loaded": true, "lastChanged": "2026-11-28T07:00:00Z",
            "version": "old", "upstream": {"verdict": "Accepted"}}),
        );
        let b = report(
            serde_json::json!({"source": "KeyVault", "loaded": true, "lastChanged": "2026-11-28T08:00:00Z",
            "version": "new", "upstream": {"verdict": "Rejected"},
            "sourceError": "Key Vault unreachable"}),
        );
        let c = report(
            serde_json::json!({"source": "File", "loaded": false, "upstream": {"verdict": "Unknown"}}),
        );
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
