//! Writing what the render step produced: server-side apply with the operator's field
//! manager, the generated key Secrets created once, and what a gateway no longer needs
//! deleted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use mcp_gateway_crds::v1alpha1::{AuthMode, McpGateway};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error};
use crate::MANAGER;
use crate::render::http_route::HTTP_ROUTE;
use crate::render::{self, Leftover, Objects, ThirdPartyKind};

/// Whether the API server serves a kind (its CRD is installed and established).
pub(super) async fn served(client: &Client, kind: &ThirdPartyKind) -> Result<bool, Error> {
    match client.list_api_group_resources(&kind.api_version()).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(Error::Discovery(kind.kind.into(), e)),
    }
}

/// Applies every object of a gateway (the key-sync object and the HTTPRoute only when their
/// CRDs are served); returns the Deployment and the HTTPRoute as stored.
pub(super) async fn apply_all(
    ctx: &Context,
    namespace: &str,
    gateway: &McpGateway,
    objects: &Objects,
    sync_served: bool,
    route_served: bool,
) -> Result<(Deployment, Option<DynamicObject>), Error> {
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
    if let Some(ingress) = &objects.ingress {
        apply(&ctx.client, namespace, ingress).await?;
    }
    let route = match (&objects.http_route, route_served) {
        (Some(route), true) => {
            Some(apply_dynamic(&ctx.client, namespace, &HTTP_ROUTE, route).await?)
        }
        _ => None,
    };
    if let Some(budget) = &objects.disruption_budget {
        apply(&ctx.client, namespace, budget).await?;
    }
    let deployment = apply(&ctx.client, namespace, &objects.deployment).await?;
    // After the Deployment, so no new pod still refers to what goes.
    let uid = gateway.metadata.uid.clone().unwrap_or_default();
    let leftovers: Vec<(String, Leftover)> = render::leftovers(gateway, objects)
        .into_iter()
        .map(|l| (format!("{uid} {l:?}"), l))
        .collect();
    let known_gone: Vec<String> = {
        let mut gone = ctx.gone.lock().unwrap_or_else(|e| e.into_inner());
        // What this pass produced is no longer gone.
        gone.retain(|k| !k.starts_with(&uid) || leftovers.iter().any(|(key, _)| key == k));
        leftovers
            .iter()
            .filter(|(key, _)| gone.contains(key))
            .map(|(key, _)| key.clone())
            .collect()
    };
    for (key, leftover) in leftovers {
        if known_gone.contains(&key) {
            continue;
        }
        let client = ctx.client.clone();
        match leftover {
            Leftover::Ingress(name) => {
                delete_owned(
                    Api::<Ingress>::namespaced(client, namespace),
                    &name,
                    gateway,
                )
                .await?
            }
            Leftover::DisruptionBudget(name) => {
                delete_owned(
                    Api::<PodDisruptionBudget>::namespaced(client, namespace),
                    &name,
                    gateway,
                )
                .await?
            }
            Leftover::Secret(name) => {
                delete_owned(Api::<Secret>::namespaced(client, namespace), &name, gateway).await?
            }
            Leftover::ThirdParty(kind, name) => {
                let api =
                    Api::<DynamicObject>::namespaced_with(client, namespace, &kind.api_resource());
                delete_owned(api, &name, gateway).await?
            }
        }
        ctx.gone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }
    Ok((deployment, route))
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

/// Deletes `name` if it exists and this gateway controls it (a same-named object of a
/// user's is left alone). A kind whose CRD is not installed has nothing to delete.
async fn delete_owned<K>(api: Api<K>, name: &str, gateway: &McpGateway) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let what = || format!("{}/{name}", api.resource_url());
    let existing = match api.get_metadata_opt(name).await {
        Ok(existing) => existing,
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => return Err(Error::Delete(what(), e)),
    };
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
    tracing::info!(object = %what(), "deleting what the gateway no longer needs");
    match api.delete(name, &Default::default()).await {
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
