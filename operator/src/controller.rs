//! The controller: watches McpGateways, the objects they own and the Secrets they name, and
//! runs the reconcile pipeline: load → validate → claim routes → check key → render → apply
//! → status.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use mcp_gateway_crds::v1alpha1::{
    AuthMode, KeyVaultSync, McpGateway, McpGatewayStatus, SystemKeyStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MANAGER;
use crate::annotations;
use crate::claims::{self, Claim};
use crate::conditions::{self, KeyState, Observed, RouteState};
use crate::key_report::{self, KeyReport};
use crate::metrics::{Metrics, Outcome, Reason};
use crate::pods;
use crate::render::{self, Defaults, Objects, ThirdPartyKind};
use crate::validate::{self, KeySource, Plan};

/// Reconciles run at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// How often a settled gateway is looked at again, to catch drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(300);

/// How often a gateway with pods, or one waiting for a CRD, is looked at again.
pub const DEFAULT_KEY_STATUS_INTERVAL: Duration = Duration::from_secs(30);

/// How often a gateway that lost paths to an older one looks again. The older gateway's
/// deletion triggers nothing here (it has no finalizer, and the other gateways' watch
/// cannot tell a deletion from a status write), so this is how the newer one recovers.
const ROUTE_CONFLICT_RECHECK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret {0}: {1}")]
    ReadSecret(String, #[source] kube::Error),
    #[error("creating the session-keys Secret {0}: {1}")]
    CreateSessionSecret(String, #[source] kube::Error),
    #[error("applying {0}: {1}")]
    Apply(String, #[source] kube::Error),
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("asking the API server whether {0} is installed: {1}")]
    Discovery(String, #[source] kube::Error),
    #[error("deleting {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("the McpGateway has no namespace")]
    NoNamespace,
}

impl Error {
    /// The failure as a status message: what failed and the API server's reason.
    pub fn user_message(&self) -> String {
        match self {
            Error::Apply(what, kube::Error::Api(status))
            | Error::ReadSecret(what, kube::Error::Api(status))
            | Error::CreateSessionSecret(what, kube::Error::Api(status))
            | Error::Discovery(what, kube::Error::Api(status))
            | Error::Delete(what, kube::Error::Api(status)) => {
                format!("{} {what}: {}", self.action(), status.message)
            }
            other => other.to_string(),
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Error::ReadSecret(..) => "reading Secret",
            Error::CreateSessionSecret(..) => "creating the session-keys Secret",
            Error::Apply(..) => "applying",
            Error::Status(..) => "writing the status",
            Error::Discovery(..) => "asking whether the API has",
            Error::Delete(..) => "deleting",
            Error::NoNamespace => "reading the McpGateway",
        }
    }

    /// A closed set of labels for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadSecret(..) => "read_secret",
            Error::CreateSessionSecret(..) => "create_session_secret",
            Error::Apply(..) => "apply",
            Error::Status(..) => "status",
            Error::Discovery(..) => "discovery",
            Error::Delete(..) => "delete",
            Error::NoNamespace => "no_namespace",
        }
    }
}

pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Asks gateway pods for their key status.
    pub http: reqwest::Client,
    /// How often a running gateway's pods are asked about the key.
    pub key_status_interval: Duration,
    /// Every McpGateway the controller knows (set by [`run`]): who else claims a host.
    gateways: Option<Store<McpGateway>>,
}

impl Context {
    pub fn new(
        client: Client,
        defaults: Defaults,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            defaults,
            metrics,
            recorder,
            http: reqwest::Client::new(),
            key_status_interval: DEFAULT_KEY_STATUS_INTERVAL,
            gateways: None,
        }
    }

    /// The gateways' claims on `host`.
    fn claims_on(&self, host: &str) -> Vec<Claim> {
        let Some(store) = &self.gateways else {
            return Vec::new();
        };
        store
            .state()
            .iter()
            .filter(|gw| gw.spec.route.host == host)
            .filter_map(|gw| Claim::of(gw, &self.defaults.allowed_annotation_prefixes))
            .collect()
    }
}

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
                            && key_secret_name(gw).as_deref() == Some(name.as_str())
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

fn error_policy(gateway: Arc<McpGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&Reason {
            reason: error.metric_label(),
        })
        .inc();
    tracing::warn!(gateway = %gateway.name_any(), namespace = ?gateway.namespace(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

pub async fn reconcile(gateway: Arc<McpGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&gateway, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&Outcome { outcome })
        .inc();
    result
}

async fn reconcile_inner(gateway: &McpGateway, ctx: &Context) -> Result<Action, Error> {
    let namespace = gateway.namespace().ok_or(Error::NoNamespace)?;
    let previous: Vec<Condition> = gateway
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();

    let plan = validate::validate(gateway).and_then(|plan| {
        annotations::check(
            &gateway.spec.route.annotations,
            &ctx.defaults.allowed_annotation_prefixes,
        )?;
        Ok(plan)
    });
    let mut failure = None;
    let mut requeue = RESYNC;
    let (observed, url, key_status) = match &plan {
        Err(message) => (
            Observed {
                config: Err(message.clone()),
                key: KeyState::Unchecked,
                replicas: None,
                apply_error: None,
                report: None,
                route: RouteState::Unchecked,
            },
            None,
            None,
        ),
        Ok(plan) => {
            let route = route_state(ctx, gateway);
            let lost: BTreeSet<String> = match &route {
                RouteState::Conflict { lost, .. } => lost.keys().cloned().collect(),
                _ => BTreeSet::new(),
            };
            if !lost.is_empty() {
                requeue = ROUTE_CONFLICT_RECHECK;
            }
            let objects = render::build(gateway, plan, &lost, &ctx.defaults);
            let missing = match &objects.key_sync {
                Some((kind, _)) if !served(&ctx.client, kind).await? => Some(kind.clone()),
                _ => None,
            };
            let key = match &missing {
                Some(kind) => KeyState::SyncNotInstalled {
                    kind: kind.kind.into(),
                    install: kind.install.into(),
                },
                None => check_key(&ctx.client, &namespace, gateway, plan).await?,
            };
            let replicas =
                match apply_all(ctx, &namespace, gateway, &objects, missing.is_none()).await {
                    Ok(deployment) => {
                        let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas);
                        Some((gateway.spec.replicas, ready.unwrap_or(0)))
                    }
                    Err(error) => {
                        failure = Some(error);
                        None
                    }
                };
            let report = match pods::key_reports(&ctx.client, &ctx.http, &namespace, gateway).await
            {
                Ok(reports) => Some(key_report::aggregate(&reports)),
                Err(error) => {
                    tracing::warn!(%error, "cannot list the gateway's pods");
                    None
                }
            };
            // Pods report a key's fate only while they run; a missing CRD may be installed
            // any time. Both are looked at again soon; everything else waits for a watch.
            if missing.is_some() || report.as_ref().is_some_and(|r| r.pods > 0) {
                requeue = requeue.min(ctx.key_status_interval);
            }
            // The URL is this gateway's only while it routes its MCP endpoint.
            let mcp_path = format!("{}/mcp", plan.sidecar.prefix());
            let url = (!lost.contains(&mcp_path)).then(|| plan.url.clone());
            let key_status = key_status(&namespace, plan, report.as_ref());
            let observed = Observed {
                config: Ok(()),
                key,
                replicas,
                apply_error: failure.as_ref().map(Error::user_message),
                report,
                route,
            };
            (observed, url, Some(key_status))
        }
    };

    let generation = gateway.metadata.generation;
    let conditions = conditions::compute(&observed, generation, &previous, Time(Timestamp::now()));
    let status = McpGatewayStatus {
        observed_generation: generation,
        ready_replicas: observed.replicas.map(|(_, ready)| ready),
        url,
        conditions: conditions.clone(),
        system_key: key_status,
    };
    let api: Api<McpGateway> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": "mcpgateway.dev/v1alpha1",
        "kind": "McpGateway",
        "status": status,
    });
    api.patch_status(
        &gateway.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    publish_transitions(ctx, gateway, &previous, &conditions).await;
    // The status already tells the user; the error makes the controller retry with backoff.
    match failure {
        Some(error) => Err(error),
        None => Ok(Action::requeue(requeue)),
    }
}

/// Whether an older gateway on the same host owns some of this gateway's paths.
fn route_state(ctx: &Context, gateway: &McpGateway) -> RouteState {
    let host = gateway.spec.route.host.clone();
    let Some(mine) = Claim::of(gateway, &ctx.defaults.allowed_annotation_prefixes) else {
        return RouteState::Unchecked;
    };
    let lost = claims::contested(&mine, &ctx.claims_on(&host));
    if lost.is_empty() {
        RouteState::Clear { host }
    } else {
        RouteState::Conflict { host, lost }
    }
}

/// The status's account of the key: where it comes from (no value, no hash) and what the
/// pods last loaded.
fn key_status(namespace: &str, plan: &Plan, report: Option<&KeyReport>) -> SystemKeyStatus {
    SystemKeyStatus {
        source: Some(plan.key.describe(namespace)),
        last_changed: report.and_then(|r| r.last_changed.clone()),
        version: report.and_then(|r| r.version.clone()),
    }
}

/// Whether the API server serves a kind (its CRD is installed and established).
async fn served(client: &Client, kind: &ThirdPartyKind) -> Result<bool, Error> {
    match client.list_api_group_resources(&kind.api_version()).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(Error::Discovery(kind.kind.into(), e)),
    }
}

/// Applies every object of a gateway (the key-sync object only when its CRD is served);
/// returns the Deployment as stored.
async fn apply_all(
    ctx: &Context,
    namespace: &str,
    gateway: &McpGateway,
    objects: &Objects,
    sync_served: bool,
) -> Result<Deployment, Error> {
    ensure_key_secret(
        &ctx.client,
        namespace,
        render::session_secret_name(gateway),
        |key| render::session_secret(gateway, key),
    )
    .await?;
    if matches!(gateway.spec.auth.mode, AuthMode::AuthorizationServer) {
        ensure_key_secret(
            &ctx.client,
            namespace,
            render::facade_secret_name(gateway),
            |key| render::facade_secret(gateway, key),
        )
        .await?;
    }
    apply(&ctx.client, namespace, &objects.service_account).await?;
    if let (Some((kind, object)), true) = (&objects.key_sync, sync_served) {
        apply_dynamic(&ctx.client, namespace, kind, object).await?;
    }
    apply(&ctx.client, namespace, &objects.config_map).await?;
    apply(&ctx.client, namespace, &objects.service).await?;
    match &objects.ingress {
        Some(ingress) => {
            apply(&ctx.client, namespace, ingress).await?;
        }
        None => delete_owned::<Ingress>(&ctx.client, namespace, gateway).await?,
    }
    apply(&ctx.client, namespace, &objects.deployment).await
}

/// Looks the key up without ever reading its value into a message: only whether it exists.
/// Keys that only the pods can see (CSI volume, Key Vault read directly) are theirs to report.
async fn check_key(
    client: &Client,
    namespace: &str,
    gateway: &McpGateway,
    plan: &Plan,
) -> Result<KeyState, Error> {
    let (name, key, external) = match &plan.key {
        KeySource::Secret {
            name,
            key,
            external,
        } => (name, key, external.is_some()),
        other => {
            return Ok(KeyState::InPod {
                source: other.describe(namespace),
            });
        }
    };
    let secret_id = format!("{namespace}/{name}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| Error::ReadSecret(secret_id.clone(), e))?;
    let Some(secret) = secret else {
        return Ok(if external {
            KeyState::ExternalSecretPending {
                secret: secret_id,
                external_secret: format!("{namespace}/{}", render::object_name(gateway)),
            }
        } else {
            KeyState::SecretNotFound { secret: secret_id }
        });
    };
    let key = key.clone();
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .map(|v| v.0.len());
    Ok(match value {
        None => KeyState::KeyNotFound {
            secret: secret_id,
            key,
        },
        Some(0) => KeyState::KeyEmpty {
            secret: secret_id,
            key,
        },
        Some(_) => KeyState::Available {
            secret: secret_id,
            key,
        },
    })
}

/// Creates a Secret of generated keys once (session sealing; the facade's keys); an
/// existing one is never touched, so every replica keeps sharing the same keys and a user's
/// rotation stands.
async fn ensure_key_secret(
    client: &Client,
    namespace: &str,
    name: String,
    secret: impl FnOnce([u8; 32]) -> Secret,
) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if secrets
        .get_metadata_opt(&name)
        .await
        .map_err(|e| Error::ReadSecret(name.clone(), e))?
        .is_some()
    {
        return Ok(());
    }
    let key: [u8; 32] = rand::random();
    match secrets.create(&PostParams::default(), &secret(key)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(Error::CreateSessionSecret(name, e)),
    }
}

async fn apply_dynamic(
    client: &Client,
    namespace: &str,
    kind: &ThirdPartyKind,
    object: &DynamicObject,
) -> Result<DynamicObject, Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let name = object.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|e| Error::Apply(format!("{} {namespace}/{name}", kind.kind), e))
}

/// Deletes this gateway's object of kind `K` (named [`render::object_name`]) if it exists
/// and the gateway controls it.
async fn delete_owned<K>(
    client: &Client,
    namespace: &str,
    gateway: &McpGateway,
) -> Result<(), Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = render::object_name(gateway);
    let what = || format!("{} {namespace}/{name}", K::kind(&()));
    let existing = api
        .get_metadata_opt(&name)
        .await
        .map_err(|e| Error::Delete(what(), e))?;
    let Some(existing) = existing else {
        return Ok(());
    };
    let ours = existing
        .metadata
        .owner_references
        .unwrap_or_default()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == gateway.metadata.uid.as_ref());
    if !ours {
        return Ok(());
    }
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Delete(what(), e)),
    }
}

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|e| Error::Apply(format!("{} {namespace}/{name}", K::kind(&())), e))
}

/// One Event per condition whose status changed: Normal when it became True, Warning when
/// it became False. A steady state publishes nothing.
async fn publish_transitions(
    ctx: &Context,
    gateway: &McpGateway,
    previous: &[Condition],
    current: &[Condition],
) {
    let reference = gateway.object_ref(&());
    for c in current {
        let before = conditions::find(previous, &c.type_).map(|p| p.status.as_str());
        let healthy = conditions::is_healthy(&c.type_, &c.status);
        let first_and_quiet = before.is_none()
            && ((healthy && c.type_ != conditions::READY)
                || (c.type_ == conditions::ROUTE_CONFLICT && c.status == "Unknown"));
        if before == Some(c.status.as_str()) || first_and_quiet {
            continue;
        }
        let event = Event {
            type_: if healthy {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: c.reason.clone(),
            note: Some(format!("{}: {}", c.type_, c.message)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, "could not publish an event");
        }
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
