//! Status conditions, computed from what the reconcile observed. Pure: the previous
//! conditions come in so a condition keeps its `lastTransitionTime` while its status holds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::key_report::KeyReport;
use crate::route_status::HttpRouteState;

pub const READY: &str = "Ready";
pub const CONFIG_VALID: &str = "ConfigValid";
pub const KEY_AVAILABLE: &str = "KeyAvailable";
pub const KEY_ACCEPTED: &str = "KeyAccepted";
/// True while an older gateway on the same host owns some of this gateway's paths. (A
/// problem condition, like Gateway API's `Conflicted`: True is the bad state.)
pub const ROUTE_CONFLICT: &str = "RouteConflict";
/// The IdP client secret the authorization-server facade mounts.
pub const CLIENT_SECRET_AVAILABLE: &str = "ClientSecretAvailable";
/// Whether the Gateway API implementation accepted the gateway's HTTPRoute (only with
/// `route.gatewayRef`).
pub const ROUTE_ACCEPTED: &str = "RouteAccepted";
/// Whether the public endpoint has TLS configured (a warning only: TLS may be terminated in
/// front of the ingress).
pub const TLS_CONFIGURED: &str = "TlsConfigured";

/// Whether a condition in this status is the healthy state: False for [`ROUTE_CONFLICT`],
/// True for every other type.
pub fn is_healthy(type_: &str, status: &str) -> bool {
    if type_ == ROUTE_CONFLICT {
        status == "False"
    } else {
        status == "True"
    }
}

/// What the reconcile found out about the facade's IdP client-secret Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientSecretState {
    /// Not `AuthorizationServer` mode.
    NotUsed,
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

/// Whether the gateway's public paths are its own.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteState {
    /// Not checked, because the spec is invalid.
    Unchecked,
    /// No older gateway on `host` claims any of its paths.
    Clear { host: String },
    /// Paths (with their owner, `namespace/name`) an older gateway on `host` owns.
    Conflict {
        host: String,
        lost: BTreeMap<String, String>,
    },
}

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
    /// The `ExternalSecret` has not written its Secret yet.
    ExternalSecretPending {
        secret: String,
        external_secret: String,
    },
    /// The gateway needs a kind whose CRD is not installed.
    SyncNotInstalled {
        kind: String,
        install: String,
    },
    /// Only the gateway pods can see the key (a CSI volume, or Key Vault read directly):
    /// the pods' reports decide.
    InPod {
        source: String,
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
    /// What the gateway pods reported about the key (`None`: not asked).
    pub report: Option<KeyReport>,
    pub route: RouteState,
    pub client_secret: ClientSecretState,
    /// What is wrong with the `trustedCA` bundle, if anything.
    pub trusted_ca: Option<String>,
    /// The HTTPRoute, with `route.gatewayRef`.
    pub http_route: HttpRouteState,
    /// The TLS Secret named by `route.tls`, if any.
    pub tls: Option<String>,
}

/// A condition's status: `True`, `False`, or `Unknown` while nothing can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    True,
    False,
    Unknown,
}

impl From<bool> for Status {
    fn from(ok: bool) -> Self {
        if ok { Status::True } else { Status::False }
    }
}

fn condition(
    type_: &str,
    status: impl Into<Status>,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: format!("{:?}", status.into()),
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
    let (key_status, key_reason, key_message) = key_available(&observed.key, &observed.report);
    let key = condition(
        KEY_AVAILABLE,
        key_status,
        key_reason,
        key_message,
        generation,
        &now,
    );
    let (accepted_status, accepted_reason, accepted_message) = key_accepted(&observed.report);
    let accepted = condition(
        KEY_ACCEPTED,
        accepted_status,
        accepted_reason,
        accepted_message,
        generation,
        &now,
    );
    let route = route_conflict(&observed.route, generation, &now);
    let client_secret = client_secret_available(&observed.client_secret, generation, &now);
    let tls = match observed.http_route {
        // TLS is the Gateway listener's, which the operator does not see.
        HttpRouteState::NotUsed => Some(tls_configured(&observed.tls, generation, &now)),
        _ => None,
    };
    let route_accepted = route_accepted(&observed.http_route, generation, &now);
    // `Unknown` does not hold a gateway back: pods that read the key themselves are not
    // ready without one, so the replica count already says it.
    let key_ok = key_status != Status::False;
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
        (Ok(()), _, _) if route.status == "True" => (
            false,
            "RouteConflict",
            "another gateway owns some of this gateway's paths; see RouteConflict".to_string(),
        ),
        (Ok(()), _, _) if client_secret.status == "False" => (
            false,
            "ClientSecretUnavailable",
            "the IdP client secret is not available; see ClientSecretAvailable".to_string(),
        ),
        (Ok(()), _, _) if route_accepted.as_ref().is_some_and(|c| c.status != "True") => (
            false,
            "RouteNotAccepted",
            "the Gateway has not accepted the gateway's HTTPRoute; see RouteAccepted".to_string(),
        ),
        (Ok(()), _, _) if observed.trusted_ca.is_some() => (
            false,
            "TrustedCAUnavailable",
            observed.trusted_ca.clone().unwrap_or_default(),
        ),
        (Ok(()), false, _) => (
            false,
            "KeyUnavailable",
            "the system key is not available; see KeyAvailable".to_string(),
        ),
        (Ok(()), true, _) if accepted_status == Status::False => (
            false,
            "UpstreamRejectedKey",
            "the Function App rejects the system key; see KeyAccepted".to_string(),
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
    [ready, config, key, accepted, route, client_secret]
        .into_iter()
        .chain(tls)
        .chain(route_accepted)
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

fn key_available(key: &KeyState, report: &Option<KeyReport>) -> (Status, &'static str, String) {
    match key {
        KeyState::Unchecked => (
            Status::False,
            "NotChecked",
            "the spec is invalid, so the key was not looked up".to_string(),
        ),
        KeyState::Available { secret, key } => (
            Status::True,
            "SecretFound",
            format!("Secret {secret} has key {key}"),
        ),
        KeyState::SecretNotFound { secret } => (
            Status::False,
            "SecretNotFound",
            format!(
                "Secret {secret} does not exist: create it (or let the CSI driver / External Secrets sync it) or fix systemKey.secretRef.name"
            ),
        ),
        KeyState::KeyNotFound { secret, key } => (
            Status::False,
            "KeyNotFound",
            format!("Secret {secret} has no key {key}: add it or fix systemKey.secretRef.key"),
        ),
        KeyState::KeyEmpty { secret, key } => (
            Status::False,
            "KeyEmpty",
            format!(
                "key {key} of Secret {secret} is empty: put the mcp_extension system key in it"
            ),
        ),
        KeyState::ExternalSecretPending {
            secret,
            external_secret,
        } => (
            Status::False,
            "ExternalSecretPending",
            format!(
                "External Secrets has not written Secret {secret} yet: see the status of ExternalSecret {external_secret} and its store"
            ),
        ),
        KeyState::SyncNotInstalled { kind, install } => (
            Status::False,
            "CrdNotInstalled",
            format!("the cluster has no {kind} API: {install}"),
        ),
        KeyState::InPod { source } => match report {
            Some(r) if r.loaded > 0 && r.source_errors > 0 => (
                Status::True,
                "LastKeyKept",
                format!(
                    "{}/{} gateway pods keep their last key from {source}, which is failing: {}",
                    r.loaded,
                    r.pods,
                    r.source_error.as_deref().unwrap_or_default()
                ),
            ),
            Some(r) if r.loaded > 0 => (
                Status::True,
                "LoadedByGateway",
                format!(
                    "{}/{} gateway pods have the key from {source}",
                    r.loaded, r.pods
                ),
            ),
            Some(r) if r.pods > 0 => (
                Status::False,
                "SourceFailed",
                format!(
                    "no gateway pod could load the key from {source}: {}",
                    r.source_error.as_deref().unwrap_or("no error reported yet")
                ),
            ),
            _ => (
                Status::Unknown,
                "WaitingForGateway",
                format!("the gateway pods read the key from {source}; none has reported yet"),
            ),
        },
    }
}

fn key_accepted(report: &Option<KeyReport>) -> (Status, &'static str, String) {
    match report {
        Some(r) if r.rejected > 0 => (
            Status::False,
            "UpstreamRejectedKey",
            format!(
                "the Function App rejected the system key at {}/{} gateway pods, also after re-reading it: put the app's current mcp_extension system key in the source",
                r.rejected, r.pods
            ),
        ),
        Some(r) if r.accepted > 0 => (
            Status::True,
            "UpstreamAcceptedKey",
            format!(
                "the Function App accepted the system key at {}/{} gateway pods",
                r.accepted, r.pods
            ),
        ),
        Some(r) if r.pods > 0 => (
            Status::Unknown,
            "NoUpstreamRequestYet",
            "no request has reached the Function App yet".to_string(),
        ),
        _ => (
            Status::Unknown,
            "NotReported",
            "no gateway pod has reported yet".to_string(),
        ),
    }
}

fn client_secret_available(
    state: &ClientSecretState,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let (status, reason, message) = match state {
        ClientSecretState::NotUsed => (
            Status::True,
            "NotUsed",
            "only auth.mode AuthorizationServer signs in at an IdP with a client secret"
                .to_string(),
        ),
        ClientSecretState::Unchecked => (
            Status::Unknown,
            "NotChecked",
            "the spec is invalid, so the client secret was not looked up".to_string(),
        ),
        ClientSecretState::Available { secret, key } => (
            Status::True,
            "SecretFound",
            format!("Secret {secret} has key {key}"),
        ),
        ClientSecretState::SecretNotFound { secret } => (
            Status::False,
            "SecretNotFound",
            format!(
                "Secret {secret} does not exist: create it with the IdP application's client secret, or fix auth.authorizationServer.idp.clientSecretRef.name; the gateway pods cannot start without it"
            ),
        ),
        ClientSecretState::KeyNotFound { secret, key } => (
            Status::False,
            "KeyNotFound",
            format!(
                "Secret {secret} has no key {key}: add it or fix auth.authorizationServer.idp.clientSecretRef.key"
            ),
        ),
        ClientSecretState::KeyEmpty { secret, key } => (
            Status::False,
            "KeyEmpty",
            format!("key {key} of Secret {secret} is empty: put the IdP client secret in it"),
        ),
    };
    condition(
        CLIENT_SECRET_AVAILABLE,
        status,
        reason,
        message,
        generation,
        now,
    )
}

fn tls_configured(tls: &Option<String>, generation: Option<i64>, now: &Time) -> Condition {
    let (status, reason, message) = match tls {
        Some(secret) => (
            Status::True,
            "TlsSecretNamed",
            format!("the Ingress serves TLS with Secret {secret}"),
        ),
        None => (
            Status::False,
            "NoTls",
            "route.tls is not set: MCP clients require https outside localhost; set route.tls.secretName, unless TLS ends in front of the ingress".to_string(),
        ),
    };
    condition(TLS_CONFIGURED, status, reason, message, generation, now)
}

fn route_conflict(route: &RouteState, generation: Option<i64>, now: &Time) -> Condition {
    let (status, reason, message) = match route {
        RouteState::Unchecked => (
            Status::Unknown,
            "NotChecked",
            "the spec is invalid, so its routes were not checked".to_string(),
        ),
        RouteState::Clear { host } => (
            Status::False,
            "NoConflict",
            format!("no older gateway routes any of this gateway's paths on {host}"),
        ),
        RouteState::Conflict { host, lost } => {
            let mut by_owner: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (path, owner) in lost {
                by_owner.entry(owner).or_default().push(path);
            }
            let owners: Vec<String> = by_owner
                .iter()
                .map(|(owner, paths)| format!("{} to McpGateway {owner}", paths.join(", ")))
                .collect();
            (
                Status::True,
                "PathsClaimed",
                format!(
                    "on host {host}, an older gateway already routes {}; this gateway gets no Ingress rule for them. Choose another route.host or route.pathPrefix",
                    owners.join("; ")
                ),
            )
        }
    };
    condition(ROUTE_CONFLICT, status, reason, message, generation, now)
}

fn route_accepted(
    route: &HttpRouteState,
    generation: Option<i64>,
    now: &Time,
) -> Option<Condition> {
    let (status, reason, message) = match route {
        HttpRouteState::NotUsed => return None,
        HttpRouteState::CrdMissing { install } => (
            Status::False,
            "CrdNotInstalled",
            format!("the cluster has no HTTPRoute API: {install}"),
        ),
        HttpRouteState::AllPathsClaimed => (
            Status::False,
            "AllPathsClaimed",
            "older gateways on this host own every path of this gateway, so it has no HTTPRoute; see RouteConflict".to_string(),
        ),
        HttpRouteState::Pending { gateway } => (
            Status::Unknown,
            "Pending",
            format!(
                "no Gateway API implementation has accepted the HTTPRoute for Gateway {gateway} yet: check that the Gateway exists and that its GatewayClass has a running controller"
            ),
        ),
        HttpRouteState::Accepted { gateway } => (
            Status::True,
            "Accepted",
            format!("Gateway {gateway} accepted the HTTPRoute"),
        ),
        HttpRouteState::Refused {
            gateway,
            reason,
            message,
        } => (
            Status::False,
            reason.as_str(),
            format!("Gateway {gateway} refused the HTTPRoute: {message}"),
        ),
    };
    Some(condition(
        ROUTE_ACCEPTED,
        status,
        reason,
        message,
        generation,
        now,
    ))
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
            report: None,
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
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
            report: None,
            route: RouteState::Unchecked,
            client_secret: ClientSecretState::Unchecked,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: None,
        };
        let c = compute(&invalid, None, &[], at(1));
        assert_eq!(find(&c, ROUTE_CONFLICT).unwrap().status, "Unknown");
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
            report: None,
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
        };
        let c = compute(&failed, None, &[], at(1));
        let ready = find(&c, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ApplyFailed")
        );
        assert!(ready.message.contains("range is full"));
    }

    fn report(pods: usize, loaded: usize, accepted: usize, rejected: usize) -> Option<KeyReport> {
        Some(KeyReport {
            pods,
            loaded,
            accepted,
            rejected,
            ..Default::default()
        })
    }

    #[test]
    fn a_missing_trusted_ca_bundle_holds_ready_back_with_its_reason() {
        let ok = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((1, 1)),
            apply_error: None,
            report: None,
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
        };
        assert_eq!(
            find(&compute(&ok, None, &[], at(1)), READY).unwrap().status,
            "True"
        );
        let missing = Observed {
            trusted_ca: Some("ConfigMap apps/corp-ca of trustedCA does not exist".into()),
            ..ok
        };
        let ready = find(&compute(&missing, None, &[], at(1)), READY)
            .unwrap()
            .clone();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "TrustedCAUnavailable")
        );
        assert!(ready.message.contains("apps/corp-ca"), "{}", ready.message);
    }

    #[test]
    fn a_rejected_key_is_key_accepted_false_and_not_ready() {
        let ok = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((2, 2)),
            apply_error: None,
            report: report(2, 2, 1, 1),
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
        };
        let c = compute(&ok, None, &[], at(1));
        let accepted = find(&c, KEY_ACCEPTED).unwrap();
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("False", "UpstreamRejectedKey")
        );
        assert!(accepted.message.contains("1/2"));
        assert_eq!(find(&c, READY).unwrap().reason, "UpstreamRejectedKey");

        let accepted_everywhere = Observed {
            report: report(2, 2, 2, 0),
            ..ok.clone()
        };
        let c = compute(&accepted_everywhere, None, &[], at(1));
        assert_eq!(find(&c, KEY_ACCEPTED).unwrap().status, "True");
        assert_eq!(find(&c, READY).unwrap().status, "True");

        for (r, reason) in [
            (None, "NotReported"),
            (report(1, 1, 0, 0), "NoUpstreamRequestYet"),
        ] {
            let c = compute(
                &Observed {
                    report: r,
                    ..ok.clone()
                },
                None,
                &[],
                at(1),
            );
            let accepted = find(&c, KEY_ACCEPTED).unwrap();
            assert_eq!(
                (accepted.status.as_str(), accepted.reason.as_str()),
                ("Unknown", reason)
            );
            assert_eq!(find(&c, READY).unwrap().status, "True");
        }
    }

    #[test]
    fn pods_decide_key_available_when_they_read_the_key_themselves() {
        let base = Observed {
            config: Ok(()),
            key: KeyState::InPod {
                source: "Key Vault kv1".into(),
            },
            replicas: Some((1, 0)),
            apply_error: None,
            report: None,
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
        };
        let status = |o: &Observed| {
            let c = compute(o, None, &[], at(1));
            let k = find(&c, KEY_AVAILABLE).unwrap().clone();
            (
                k.status,
                k.reason,
                k.message,
                find(&c, READY).unwrap().reason.clone(),
            )
        };
        let (s, reason, _, ready) = status(&base);
        assert_eq!(
            (s.as_str(), reason.as_str()),
            ("Unknown", "WaitingForGateway")
        );
        assert_eq!(ready, "ReplicasNotReady", "Unknown does not block Ready");

        let failing = Observed {
            report: Some(KeyReport {
                pods: 1,
                source_error: Some("Key Vault answered 403".into()),
                source_errors: 1,
                ..Default::default()
            }),
            ..base.clone()
        };
        let (s, reason, message, ready) = status(&failing);
        assert_eq!((s.as_str(), reason.as_str()), ("False", "SourceFailed"));
        assert!(message.contains("403"));
        assert_eq!(ready, "KeyUnavailable");

        let kept = Observed {
            report: Some(KeyReport {
                pods: 1,
                loaded: 1,
                source_error: Some("Key Vault unreachable".into()),
                source_errors: 1,
                ..Default::default()
            }),
            ..base.clone()
        };
        let (s, reason, message, _) = status(&kept);
        assert_eq!((s.as_str(), reason.as_str()), ("True", "LastKeyKept"));
        assert!(message.contains("unreachable"));

        let missing_crd = Observed {
            key: KeyState::SyncNotInstalled {
                kind: "SecretProviderClass".into(),
                install: "install the Secrets Store CSI driver".into(),
            },
            ..base
        };
        let (s, reason, message, _) = status(&missing_crd);
        assert_eq!((s.as_str(), reason.as_str()), ("False", "CrdNotInstalled"));
        assert!(message.contains("install the Secrets Store CSI driver"));
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let ok = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((1, 1)),
            apply_error: None,
            report: None,
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
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
    fn a_route_conflict_names_the_owner_and_holds_ready_false() {
        let conflicted = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((2, 2)),
            apply_error: None,
            report: None,
            route: RouteState::Conflict {
                host: "mcp.example.com".into(),
                lost: BTreeMap::from([
                    ("/w/mcp".to_string(), "team-a/weather".to_string()),
                    ("/w/sse".to_string(), "team-a/weather".to_string()),
                ]),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
        };
        let c = compute(&conflicted, None, &[], at(1));
        let route = find(&c, ROUTE_CONFLICT).unwrap();
        assert_eq!(
            (route.status.as_str(), route.reason.as_str()),
            ("True", "PathsClaimed")
        );
        assert!(
            route
                .message
                .contains("/w/mcp, /w/sse to McpGateway team-a/weather"),
            "{}",
            route.message
        );
        assert!(!is_healthy(ROUTE_CONFLICT, &route.status));
        let ready = find(&c, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "RouteConflict")
        );

        let clear = Observed {
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::NotUsed,
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: Some("mcp-tls".into()),
            ..conflicted
        };
        let c = compute(&clear, None, &[], at(2));
        assert_eq!(find(&c, ROUTE_CONFLICT).unwrap().status, "False");
        assert!(is_healthy(ROUTE_CONFLICT, "False"));
        assert_eq!(find(&c, READY).unwrap().status, "True");
    }

    #[test]
    fn a_missing_client_secret_holds_ready_and_no_tls_only_warns() {
        let base = Observed {
            config: Ok(()),
            key: available(),
            replicas: Some((2, 2)),
            apply_error: None,
            report: None,
            route: RouteState::Clear {
                host: "mcp.example.com".into(),
            },
            client_secret: ClientSecretState::SecretNotFound {
                secret: "apps/entra-app".into(),
            },
            trusted_ca: None,
            http_route: HttpRouteState::NotUsed,
            tls: None,
        };
        let c = compute(&base, None, &[], at(1));
        let cs = find(&c, CLIENT_SECRET_AVAILABLE).unwrap();
        assert_eq!(
            (cs.status.as_str(), cs.reason.as_str()),
            ("False", "SecretNotFound")
        );
        assert!(cs.message.contains("apps/entra-app"), "{}", cs.message);
        assert_eq!(find(&c, READY).unwrap().reason, "ClientSecretUnavailable");
        let tls = find(&c, TLS_CONFIGURED).unwrap();
        assert_eq!(
            (tls.status.as_str(), tls.reason.as_str()),
            ("False", "NoTls")
        );

        let found = Observed {
            client_secret: ClientSecretState::Available {
                secret: "apps/entra-app".into(),
                key: "client-secret".into(),
            },
            ..base
        };
        let c = compute(&found, None, &[], at(2));
        assert_eq!(
            find(&c, READY).unwrap().status,
            "True",
            "no TLS does not hold Ready"
        );
        assert_eq!(find(&c, CLIENT_SECRET_AVAILABLE).unwrap().status, "True");
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
                report: None,
                route: RouteState::Clear {
                    host: "mcp.example.com".into(),
                },
                client_secret: ClientSecretState::NotUsed,
                trusted_ca: None,
                http_route: HttpRouteState::NotUsed,
                tls: Some("mcp-tls".into()),
            },
            None,
            &[],
            at(1),
        );
        assert!(c.iter().all(|c| c.message.len() < 300));
    }
}
