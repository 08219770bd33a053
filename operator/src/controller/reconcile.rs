//! One reconcile: the pipeline from a gateway's spec to its status, conditions and Events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource, ResourceExt};
use mcp_gateway_crds::v1alpha1::{McpGateway, McpGatewayStatus, SystemKeyStatus};
use sha2::{Digest, Sha256};

use super::apply::{apply_all, served};
use super::{Context, Error};
use crate::MANAGER;
use crate::annotations;
use crate::claims::{self, Claim};
use crate::conditions::{self, ClientSecretState, KeyState, Observed, RouteState};
use crate::key_report::{self, KeyReport};
use crate::metrics::{Outcome, Reason};
use crate::pods;
use crate::render;
use crate::render::http_route::HTTP_ROUTE;
use crate::route_status::{self, HttpRouteState};
use crate::validate::{self, KeySource, Plan};

/// How often a settled gateway is looked at again, to catch drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a just-applied HTTPRoute's verdict is looked for.
const ROUTE_PENDING_RECHECK: Duration = Duration::from_secs(3);

/// How often a gateway that lost paths to an older one looks again. The older gateway's
/// deletion triggers nothing here (it has no finalizer, and the other gateways' watch
/// cannot tell a deletion from a status write), so this is how the newer one recovers.
const ROUTE_CONFLICT_RECHECK: Duration = Duration::from_secs(10);

pub(super) fn error_policy(gateway: Arc<McpGateway>, error: &Error, ctx: Arc<Context>) -> Action {
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
    // A gateway whose spec the operator refuses is not an "ok" reconcile, even though
    // nothing failed: alerts on broken gateways need to see it.
    let outcome = match &result {
        Ok((_, SpecVerdict::Valid)) => "ok",
        Ok((_, SpecVerdict::Refused)) => "invalid_spec",
        Err(_) => "error",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&Outcome { outcome })
        .inc();
    result.map(|(action, _)| action)
}

/// Whether the operator could render the gateway's spec at all.
enum SpecVerdict {
    Valid,
    Refused,
}

async fn reconcile_inner(
    gateway: &McpGateway,
    ctx: &Context,
) -> Result<(Action, SpecVerdict), Error> {
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
    // The trusted CA bundle is read before rendering: its digest is in the pod template.
    let (plan, trusted_ca) = match plan {
        Ok(mut plan) => {
            let problem = read_trusted_ca(&ctx.client, &namespace, gateway, &mut plan).await?;
            (Ok(plan), problem)
        }
        Err(message) => (Err(message), None),
    };
    let mut failure = None;
    // ConfigMaps are not watched (a cluster's worth of them would be cached for a few CA
    // bundles): a bundle is read again at every resync, and soon while it is missing.
    let mut requeue = if trusted_ca.is_some() {
        ctx.key_status_interval
    } else {
        RESYNC
    };
    let (observed, url, key_status) = match &plan {
        Err(message) => (
            Observed {
                config: Err(message.clone()),
                key: KeyState::Unchecked,
                replicas: None,
                apply_error: None,
                report: None,
                route: RouteState::Unchecked,
                client_secret: ClientSecretState::Unchecked,
                trusted_ca: None,
                http_route: HttpRouteState::NotUsed,
                tls: gateway
                    .spec
                    .route
                    .tls
                    .as_ref()
                    .map(|t| t.secret_name.clone()),
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
            let client_secret = check_client_secret(&ctx.client, &namespace, plan).await?;
            let parent = gateway
                .spec
                .route
                .gateway_ref
                .as_ref()
                .map(|target| render::http_route::parent_ref(gateway, target));
            let route_served = match &parent {
                Some(_) => served(&ctx.client, &HTTP_ROUTE).await?,
                None => false,
            };
            let mut http_route = match (&parent, route_served) {
                (None, _) => HttpRouteState::NotUsed,
                (Some(_), false) => HttpRouteState::CrdMissing {
                    install: HTTP_ROUTE.install.into(),
                },
                (Some(_), true) if objects.http_route.is_none() => HttpRouteState::AllPathsClaimed,
                (Some(parent), true) => route_status::pending(parent),
            };
            let applied = apply_all(
                ctx,
                &namespace,
                gateway,
                &objects,
                missing.is_none(),
                route_served,
            )
            .await;
            let replicas = match applied {
                Ok((deployment, route)) => {
                    if let (Some(route), Some(parent)) = (route, &parent) {
                        http_route = route_status::state(&route, parent);
                    }
                    let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas);
                    Some((gateway.spec.replicas, ready.unwrap_or(0)))
                }
                Err(error) => {
                    failure = Some(error);
                    None
                }
            };
            // The route's status is written by the Gateway API implementation, which the
            // operator does not watch (its CRDs may come and go): looked at again soon until
            // accepted.
            match http_route {
                HttpRouteState::NotUsed | HttpRouteState::Accepted { .. } => {}
                // Just applied: implementations answer within seconds.
                HttpRouteState::Pending { .. } => requeue = requeue.min(ROUTE_PENDING_RECHECK),
                _ => requeue = requeue.min(ctx.key_status_interval),
            }
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
                client_secret,
                trusted_ca,
                http_route,
                tls: gateway
                    .spec
                    .route
                    .tls
                    .as_ref()
                    .map(|t| t.secret_name.clone()),
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
        upstream: plan
            .as_ref()
            .ok()
            .map(|plan| plan.sidecar.upstream.url.origin().ascii_serialization()),
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
    let verdict = match plan {
        Ok(_) => SpecVerdict::Valid,
        Err(_) => SpecVerdict::Refused,
    };
    match failure {
        Some(error) => Err(error),
        None => Ok((Action::requeue(requeue), verdict)),
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
    let Some(value) = secret_value_len(client, namespace, name, key).await? else {
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

/// Whether the facade's IdP client secret is there to mount (never its value: only whether
/// the key exists and is not empty).
async fn check_client_secret(
    client: &Client,
    namespace: &str,
    plan: &Plan,
) -> Result<ClientSecretState, Error> {
    let Some(facade) = &plan.facade else {
        return Ok(ClientSecretState::NotUsed);
    };
    let secret = format!("{namespace}/{}", facade.client_secret);
    let key = facade.client_secret_key.clone();
    Ok(
        match secret_value_len(client, namespace, &facade.client_secret, &key).await? {
            None => ClientSecretState::SecretNotFound { secret },
            Some(None) => ClientSecretState::KeyNotFound { secret, key },
            Some(Some(0)) => ClientSecretState::KeyEmpty { secret, key },
            Some(Some(_)) => ClientSecretState::Available { secret, key },
        },
    )
}

/// Reads the `trustedCA` bundle into the plan's digest; returns what is wrong with it, if
/// anything (for the Ready condition). Only whether it holds a PEM certificate is checked
/// here: the sidecar parses it at start and refuses to start on a broken one. While the
/// bundle is broken the pods keep the digest they run with: a rollout to pods that cannot
/// start would gain nothing (and `maxUnavailable: 0` would hold it half done).
async fn read_trusted_ca(
    client: &Client,
    namespace: &str,
    gateway: &McpGateway,
    plan: &mut Plan,
) -> Result<Option<String>, Error> {
    let Some(ca) = plan.trusted_ca.as_mut() else {
        return Ok(None);
    };
    let name = format!("{namespace}/{}", ca.config_map);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = config_maps
        .get_opt(&ca.config_map)
        .await
        .map_err(|e| Error::ReadConfigMap(name.clone(), e))?;
    let bundle = found
        .as_ref()
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(&ca.key));
    let problem = match (&found, bundle) {
        (None, _) => format!(
            "ConfigMap {name} of trustedCA does not exist: create it (for example with trust-manager) or fix trustedCA.configMapRef.name"
        ),
        (Some(_), None) => format!(
            "ConfigMap {name} has no key {}: add the PEM bundle there or fix trustedCA.configMapRef.key",
            ca.key
        ),
        (Some(_), Some(bundle)) if !bundle.contains("-----BEGIN CERTIFICATE-----") => format!(
            "key {} of ConfigMap {name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ca.key
        ),
        (Some(_), Some(bundle)) => {
            ca.digest = Some(format!("{:x}", Sha256::digest(bundle.as_bytes())));
            return Ok(None);
        }
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = render::object_name(gateway);
    ca.digest = deployments
        .get_opt(&deployment)
        .await
        .map_err(|e| Error::ReadDeployment(format!("{namespace}/{deployment}"), e))?
        .and_then(|d| d.spec?.template.metadata?.annotations)
        .and_then(|a| a.get(render::TRUSTED_CA_DIGEST_ANNOTATION).cloned());
    Ok(Some(problem))
}

/// `None`: no such Secret; `Some(None)`: no such key; else the value's length (only).
async fn secret_value_len(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<Option<usize>>, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| Error::ReadSecret(format!("{namespace}/{name}"), e))?;
    Ok(secret.map(|s| s.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.len())))
}

/// One Event and one log line per condition whose status changed: Normal (info) when it
/// became healthy, Warning (warn) when it did not. A steady state publishes nothing, and
/// neither does a condition turning Unknown: nothing is known to be wrong yet (a new
/// gateway's pods have not reported), so there is nothing to alert on.
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
        let first_and_quiet = before.is_none() && healthy && c.type_ != conditions::READY;
        if before == Some(c.status.as_str()) || first_and_quiet || c.status == "Unknown" {
            continue;
        }
        let (name, namespace) = (gateway.name_any(), gateway.namespace().unwrap_or_default());
        if healthy {
            tracing::info!(gateway = %name, %namespace, condition = %c.type_, status = %c.status, reason = %c.reason, message = %c.message, "gateway condition changed");
        } else {
            tracing::warn!(gateway = %name, %namespace, condition = %c.type_, status = %c.status, reason = %c.reason, message = %c.message, "gateway condition changed");
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
