//! What the controller watches, and what each change wakes up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher;
use mcp_gateway_crds::v1alpha1::{KeyVaultSync, McpGateway};

use super::Context;
use super::reconcile::{error_policy, reconcile};
use crate::MANAGER;
use crate::validate;

/// Reconciles run at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Runs the controller until a shutdown signal.
pub async fn run(mut ctx: Context) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    // Bounded concurrency: a burst of gateways queues here instead of holding a thousand
    // requests open against the API server at once (memory, and fairness to other clients).
    let controller = Controller::new(
        Api::<McpGateway>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
    // kube-runtime backs off all watches together after an error from any one of them. The
    // default (up to 30 s, reset after 120 s) turned an API server restart — every watch
    // answers 410 Gone once and relists — into minutes without reconciles (found by
    // tests/tests/operator_faults.rs). Short pauses, reset soon, keep that to seconds.
    .trigger_backoff(ResetTimerBackoff::new(
        WatchBackoff::default(),
        Duration::from_secs(30),
    ));
    let store = controller.store();
    ctx.gateways = Some(store.clone());
    let _ = ctx.metrics.gateways.set(store.clone());
    let ctx = Arc::new(ctx);
    let hosts = store.clone();
    let seen_generations = Mutex::new(HashMap::<String, i64>::new());
    controller
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(Api::<Ingress>::all(client.clone()), owned.clone())
        .owns(Api::<ServiceAccount>::all(client.clone()), owned.clone())
        // A gateway pod that starts, stops or gets an address is asked about the key at once
        // (pods are owned by ReplicaSets, not by the gateway: mapped by their labels).
        .watches(Api::<Pod>::all(client.clone()), owned, |pod| {
            let labels = pod.labels();
            let name = labels.get("app.kubernetes.io/instance")?;
            Some(ObjectRef::<McpGateway>::new(name).within(&pod.namespace()?))
        })
        // A gateway whose spec changes (or that is being deleted) may take or free paths
        // on its host: the other gateways there look again. Status writes, which do not
        // change the generation, trigger nothing, so gateways sharing a host do not wake
        // each other in a loop.
        .watches(
            Api::<McpGateway>::all(client.clone()),
            watcher::Config::default(),
            move |changed| {
                let id = format!(
                    "{}/{}",
                    changed.namespace().unwrap_or_default(),
                    changed.name_any()
                );
                let generation = changed.metadata.generation.unwrap_or_default();
                let mut seen = seen_generations.lock().unwrap_or_else(|e| e.into_inner());
                // A gateway seen for the first time is either new (the youngest: it can
                // only lose paths, which its own reconcile finds) or listed at start-up
                // (when every gateway is reconciled anyway).
                let spec_changed = if changed.metadata.deletion_timestamp.is_some() {
                    seen.remove(&id);
                    true
                } else {
                    seen.insert(id, generation)
                        .is_some_and(|before| before != generation)
                };
                drop(seen);
                if !spec_changed {
                    return Vec::new();
                }
                hosts
                    .state()
                    .into_iter()
                    .filter(|gw| {
                        gw.spec.route.host == changed.spec.route.host
                            && gw.metadata.uid != changed.metadata.uid
                    })
                    .map(|gw| ObjectRef::from_obj(gw.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // Creating or fixing a Secret re-reconciles the gateways that name it.
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default(),
            move |secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|gw| {
                        gw.namespace() == namespace
                            && (key_secret_name(gw).as_deref() == Some(name.as_str())
                                || client_secret_name(gw) == Some(name.as_str()))
                    })
                    .map(|gw| ObjectRef::from_obj(gw.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error (already handled)");
            }
        })
        .await;
}

/// The Secret a gateway mounts its key from: the user's, or the one its `ExternalSecret`
/// writes.
fn key_secret_name(gateway: &McpGateway) -> Option<String> {
    let key = &gateway.spec.system_key;
    match (&key.secret_ref, &key.key_vault) {
        (Some(r), _) => Some(r.name.clone()),
        (None, Some(kv)) if kv.sync == KeyVaultSync::ExternalSecrets => {
            Some(validate::external_secret_target(&gateway.name_any()))
        }
        _ => None,
    }
}

/// The Secret holding the facade's IdP client secret, in `AuthorizationServer` mode.
fn client_secret_name(gateway: &McpGateway) -> Option<&str> {
    let server = gateway.spec.auth.authorization_server.as_ref()?;
    Some(server.idp.client_secret_ref.name.as_str())
}

/// Pauses after watch errors: 250 ms, doubling up to 5 s.
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_backoff_doubles_to_five_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let ms: Vec<u128> = (&mut b).take(7).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
