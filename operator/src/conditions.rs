//! Status conditions, computed from what the reconcile observed. Pure: the previous
//! conditions come in so a condition keeps its `lastTransitionTime` while its status holds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const CONFIG_VALID: &str = "ConfigValid";
pub const KEY_AVAILABLE: &str = "KeyAvailable";

/// What the reconcile found out about the system key's Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyState {
    /// Not checked, because the spec is invalid.
    Unchecked,
    Available {
        secret: String,
        key: String,
    },
    SecretNotFound {
        secret: String,
    },
    KeyNotFound {
        secret: String,
        key: String,
    },
    KeyEmpty {
        secret: String,
        key: String,
    },
}

/// What the reconcile observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// `Err(message)` when the spec cannot be rendered.
    pub config: Result<(), String>,
    pub key: KeyState,
    /// Desired and ready replicas of the Deployment, once it exists.
    pub replicas: Option<(i32, i32)>,
    /// Why the rendered objects could not be applied, if they could not.
    pub apply_error: Option<String>,
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

pub fn compute(
    observed: &Observed,
    generation: Option<i64>,
    previous: &[Condition],
    now: Time,
) -> Vec<Condition> {
    let config = match &observed.config {
        Ok(()) => condition(
            CONFIG_VALID,
            true,
            "Valid",
            "the spec is valid".into(),
            generation,
            &now,
        ),
        Err(message) => condition(
            CONFIG_VALID,
            false,
            "InvalidSpec",
            message.clone(),
            generation,
            &now,
        ),
    };
    let (key_ok, key_reason, key_message) = match &observed.key {
        KeyState::Unchecked => (
            false,
            "NotChecked",
            "the spec is invalid, so the key was not looked up".to_string(),
        ),
        KeyState::Available { secret, key } => (
            true,
            "SecretFound",
            format!("Secret {secret} has key {key}"),
        ),
        KeyState::SecretNotFound { secret } => (
            false,
            "SecretNotFound",
            format!(
                "Secret {secret} does not exist: create it (or let the CSI driver / External Secrets sync it) or fix systemKey.secretRef.name"
            ),
        ),
        KeyState::KeyNotFound { secret, key } => (
            false,
            "KeyNotFound",
            format!("Secret {secret} has no key {key}: add it or fix systemKey.secretRef.key"),
        ),
        KeyState::KeyEmpty { secret, key } => (
            false,
            "KeyEmpty",
            format!(
                "key {key} of Secret {secret} is empty: put the mcp_extension system key in it"
            ),
        ),
    };
    let key = condition(
        KEY_AVAILABLE,
        key_ok,
        key_reason,
        key_message,
        generation,
        &now,
    );
    let ready = match (&observed.config, key_ok, observed.replicas) {
        (Ok(()), _, _) if observed.apply_error.is_some() => (
            false,
            "ApplyFailed",
            observed.apply_error.clone().unwrap_or_default(),
        ),
        (Err(_), _, _) => (
            false,
            "InvalidSpec",
            "the spec is invalid; see ConfigValid".to_string(),
        ),
        (Ok(()), false, _) => (
            false,
            "KeyUnavailable",
            "the system key is not available; see KeyAvailable".to_string(),
        ),
        (Ok(()), true, None) => (
            false,
            "Deploying",
            "the gateway Deployment has no status yet".to_string(),
        ),
        (Ok(()), true, Some((0, _))) => (false, "ScaledToZero", "spec.replicas is 0".to_string()),
        (Ok(()), true, Some((desired, ready))) if ready >= desired => (
            true,
            "Available",
            format!("{ready}/{desired} gateway replicas ready"),
        ),
        (Ok(()), true, Some((desired, ready))) => (
            false,
            "ReplicasNotReady",
            format!("{ready}/{desired} gateway replicas ready"),
        ),
    };
    let ready = condition(READY, ready.0, ready.1, ready.2, generation, &now);
    [ready, config, key]
        .into_iter()
        .map(|mut c| {
            if let Some(old) = previous
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect()
}

/// The condition of `type_` in a list.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn available() -> KeyState {
        KeyState::Available {
            secret: "apps/fn-keys".into(),
            key: "mcp_extension".into(),
        }
    }

    #[test]
    fn ready_needs_valid_config_a_key_and_ready_replicas() {
        let ok = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((2, 2)),
            apply_error: None,
        };
        let c = compute(&ok, Some(4), &[], at(100));
        assert_eq!(find(&c, READY).unwrap().status, "True");
        assert_eq!(find(&c, READY).unwrap().observed_generation, Some(4));

        let partial = Observed {
            replicas: Some((2, 1)),
            ..ok.clone()
        };
        assert_eq!(
            find(&compute(&partial, None, &[], at(1)), READY)
                .unwrap()
                .reason,
            "ReplicasNotReady"
        );

        let missing = Observed {
            key: KeyState::SecretNotFound {
                secret: "apps/fn-keys".into(),
            },
            ..ok.clone()
        };
        let c = compute(&missing, None, &[], at(1));
        assert_eq!(find(&c, KEY_AVAILABLE).unwrap().reason, "SecretNotFound");
        assert!(
            find(&c, KEY_AVAILABLE)
                .unwrap()
                .message
                .contains("apps/fn-keys")
        );
        assert_eq!(find(&c, READY).unwrap().reason, "KeyUnavailable");

        let invalid = Observed {
            config: Err("route.host ...".into()),
            key: KeyState::Unchecked,
            replicas: None,
            apply_error: None,
        };
        let c = compute(&invalid, None, &[], at(1));
        assert_eq!(find(&c, CONFIG_VALID).unwrap().status, "False");
        assert_eq!(find(&c, CONFIG_VALID).unwrap().message, "route.host ...");
        assert_eq!(find(&c, READY).unwrap().reason, "InvalidSpec");
    }

    #[test]
    fn an_apply_failure_is_reported_in_ready() {
        let failed = Observed {
            config: Ok(()),
            key: available(),
            replicas: None,
            apply_error: Some("applying Service apps/weather-gateway: range is full".into()),
        };
        let c = compute(&failed, None, &[], at(1));
        let ready = find(&c, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ApplyFailed")
        );
        assert!(ready.message.contains("range is full"));
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let ok = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((1, 1)),
            apply_error: None,
        };
        let first = compute(&ok, None, &[], at(100));
        let again = compute(&ok, None, &first, at(200));
        assert_eq!(find(&again, READY).unwrap().last_transition_time, at(100));
        let down = Observed {
            replicas: Some((1, 0)),
            ..ok
        };
        let later = compute(&down, None, &again, at(300));
        assert_eq!(find(&later, READY).unwrap().last_transition_time, at(300));
        assert_eq!(
            find(&later, CONFIG_VALID).unwrap().last_transition_time,
            at(100)
        );
    }

    #[test]
    fn no_condition_carries_a_key_value() {
        // Messages name the Secret and key name, never data.
        let c = compute(
            &Observed {
                config: Ok(()),
                key: KeyState::KeyEmpty {
                    secret: "a/b".into(),
                    key: "k".into(),
                },
                replicas: None,
                apply_error: None,
            },
            None,
            &[],
            at(1),
        );
        assert!(c.iter().all(|c| c.message.len() < 300));
    }
}
