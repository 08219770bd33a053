//! Render: the objects an McpGateway becomes, as pure functions of the gateway, its checked
//! [`Plan`], the paths it lost to older gateways and the operator's [`Defaults`]. No client, no I/O: everything the operator
//! renders is unit tested here, and the API-server tests prove the wiring.

mod config_map;
mod deployment;
mod disruption_budget;
pub mod http_route;
mod ingress;
pub mod key_sync;
mod service;
pub mod service_account;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::DynamicObject;
use mcp_gateway_crds::v1alpha1::{AuthMode, McpGateway};

pub use config_map::{CONFIG_HASH_ANNOTATION, config_hash};
pub use deployment::TRUSTED_CA_DIGEST_ANNOTATION;
pub use ingress::{public_paths, streaming_annotations};
pub use key_sync::{EXTERNAL_SECRET, SECRET_PROVIDER_CLASS, ThirdPartyKind};

use crate::validate::Plan;

/// Settings of the operator itself (flags), not of one gateway.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// The sidecar image used unless a gateway sets `spec.image`.
    pub sidecar_image: String,
    /// Prefixes of the `route.annotations` keys a cluster admin trusts
    /// ([`crate::annotations`]).
    pub allowed_annotation_prefixes: Vec<String>,
}

impl Defaults {
    /// The given sidecar image and the safe defaults for everything else.
    pub fn new(sidecar_image: impl Into<String>) -> Self {
        Self {
            sidecar_image: sidecar_image.into(),
            allowed_annotation_prefixes: crate::annotations::default_allowed_prefixes(),
        }
    }
}

/// Everything one gateway becomes.
#[derive(Clone, Debug)]
pub struct Objects {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    /// `None` with `route.gatewayRef`, or when every public path belongs to an older gateway
    /// on the same host.
    pub ingress: Option<Ingress>,
    /// With `route.gatewayRef`: the Gateway API route (whose CRD may not be installed).
    pub http_route: Option<DynamicObject>,
    pub service_account: ServiceAccount,
    /// With more than one replica.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// The object that syncs the key out of Key Vault, if the gateway needs one.
    pub key_sync: Option<(ThirdPartyKind, DynamicObject)>,
}

/// `lost_paths`: the public paths older gateways on the same host own
/// ([`crate::claims::contested`]); they get no Ingress rule.
pub fn build(
    gateway: &McpGateway,
    plan: &Plan,
    lost_paths: &BTreeSet<String>,
    defaults: &Defaults,
) -> Objects {
    let config_map = config_map::config_map(gateway, plan);
    let hash = config_hash(&config_map);
    Objects {
        deployment: deployment::deployment(gateway, plan, defaults, &hash),
        service: service::service(gateway),
        ingress: match gateway.spec.route.gateway_ref {
            None => ingress::ingress(gateway, plan, lost_paths),
            Some(_) => None,
        },
        http_route: http_route::http_route(gateway, plan, lost_paths),
        service_account: service_account::service_account(gateway, plan),
        disruption_budget: disruption_budget::disruption_budget(gateway),
        key_sync: key_sync::key_sync(gateway, plan),
        config_map,
    }
}

/// An object an earlier pass may have made for the gateway that this pass does not: the
/// ExternalSecret after switching to the CSI driver, the facade's keys after leaving
/// `AuthorizationServer` mode, the Ingress once older gateways own all its paths. The
/// operator deletes each (if the gateway controls it), as Stackable's
/// `ClusterResources::delete_orphaned_resources` does.
#[derive(Clone, Debug, PartialEq)]
pub enum Leftover {
    Ingress(String),
    DisruptionBudget(String),
    Secret(String),
    ThirdParty(ThirdPartyKind, String),
}

/// What this pass does not produce, of what a gateway can own.
pub fn leftovers(gateway: &McpGateway, objects: &Objects) -> Vec<Leftover> {
    let mut leftovers = Vec::new();
    if objects.ingress.is_none() {
        leftovers.push(Leftover::Ingress(object_name(gateway)));
    }
    if gateway.spec.auth.mode != AuthMode::AuthorizationServer {
        leftovers.push(Leftover::Secret(facade_secret_name(gateway)));
    }
    if objects.disruption_budget.is_none() {
        leftovers.push(Leftover::DisruptionBudget(object_name(gateway)));
    }
    if objects.http_route.is_none() {
        leftovers.push(Leftover::ThirdParty(
            http_route::HTTP_ROUTE,
            object_name(gateway),
        ));
    }
    for kind in [SECRET_PROVIDER_CLASS, EXTERNAL_SECRET] {
        if objects.key_sync.as_ref().map(|(k, _)| k) != Some(&kind) {
            leftovers.push(Leftover::ThirdParty(kind, object_name(gateway)));
        }
    }
    leftovers
}

/// The name of every object made for a gateway.
pub fn object_name(gateway: &McpGateway) -> String {
    format!(
        "{}-gateway",
        gateway.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The Secret holding the keys that seal session ids (created once by the operator).
pub fn session_secret_name(gateway: &McpGateway) -> String {
    format!(
        "{}-gateway-session",
        gateway.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The Secret holding the authorization-server facade's keys (created once by the operator).
pub fn facade_secret_name(gateway: &McpGateway) -> String {
    format!(
        "{}-gateway-facade",
        gateway.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Labels on every object: the [`selector`] plus component and manager.
pub fn labels(gateway: &McpGateway) -> BTreeMap<String, String> {
    let mut labels = selector(gateway);
    labels.insert("app.kubernetes.io/component".into(), "gateway".into());
    labels.insert("app.kubernetes.io/managed-by".into(), crate::MANAGER.into());
    labels
}

/// The labels that select one gateway's pods.
pub fn selector(gateway: &McpGateway) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".into(),
            "mcp-gateway-sidecar".into(),
        ),
        (
            "app.kubernetes.io/instance".into(),
            gateway.metadata.name.clone().unwrap_or_default(),
        ),
    ])
}

/// Metadata for an owned object: name, namespace, labels and the controller reference that
/// lets the garbage collector delete it with the gateway.
pub fn metadata(gateway: &McpGateway, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: gateway.metadata.namespace.clone(),
        labels: Some(labels(gateway)),
        owner_references: Some(vec![owner_reference(gateway)]),
        ..Default::default()
    }
}

pub fn owner_reference(gateway: &McpGateway) -> OwnerReference {
    gateway
        .controller_owner_ref(&())
        .expect("a stored McpGateway has a name and uid")
}

/// A new session-keys Secret holding one random 32-byte key (base64, one per line: the
/// format the sidecar reads). Created only when absent; never overwritten.
pub fn session_secret(gateway: &McpGateway, key: [u8; 32]) -> Secret {
    key_secret(
        gateway,
        session_secret_name(gateway),
        crate::validate::SESSION_FILE_NAME,
        key,
    )
}

/// A new facade-keys Secret, in the same format (prepend a line to rotate).
pub fn facade_secret(gateway: &McpGateway, key: [u8; 32]) -> Secret {
    key_secret(
        gateway,
        facade_secret_name(gateway),
        crate::validate::FACADE_FILE_NAME,
        key,
    )
}

fn key_secret(gateway: &McpGateway, name: String, file: &str, key: [u8; 32]) -> Secret {
    let line = mcp_gateway_contract::keys_file::format_key(&key);
    Secret {
        metadata: metadata(gateway, name),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(file.to_string(), format!("{line}\n"))])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;

    pub fn objects() -> Objects {
        let gw = gateway(oidc_spec());
        let plan = validate(&gw).unwrap();
        build(
            &gw,
            &plan,
            &BTreeSet::new(),
            &Defaults::new("registry.example/sidecar:1"),
        )
    }

    #[test]
    fn every_object_is_owned_by_the_gateway_and_labelled() {
        let o = objects();
        let metas = [
            &o.config_map.metadata,
            &o.deployment.metadata,
            &o.service.metadata,
            &o.ingress.as_ref().unwrap().metadata,
            &o.service_account.metadata,
        ];
        for meta in metas {
            assert_eq!(meta.name.as_deref(), Some("weather-gateway"));
            assert_eq!(meta.namespace.as_deref(), Some("apps"));
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(owner.kind, "McpGateway");
            assert_eq!(owner.name, "weather");
            assert_eq!(owner.uid, "0000-uid");
            assert_eq!(owner.controller, Some(true));
            assert_eq!(
                meta.labels.as_ref().unwrap()["app.kubernetes.io/instance"],
                "weather"
            );
        }
    }

    #[test]
    fn leftovers_are_what_this_pass_does_not_make() {
        let gw = gateway(oidc_spec());
        let o = objects();
        assert_eq!(
            leftovers(&gw, &o),
            [
                Leftover::Secret("weather-gateway-facade".into()),
                Leftover::ThirdParty(http_route::HTTP_ROUTE, "weather-gateway".into()),
                Leftover::ThirdParty(SECRET_PROVIDER_CLASS, "weather-gateway".into()),
                Leftover::ThirdParty(EXTERNAL_SECRET, "weather-gateway".into()),
            ]
        );
        // Attached to a Gateway: the Ingress goes, the HTTPRoute stays.
        let mut spec = oidc_spec();
        spec["route"]["gatewayRef"] = serde_json::json!({"name": "public"});
        let routed = gateway(spec);
        let plan = validate(&routed).unwrap();
        let o = build(&routed, &plan, &Default::default(), &Defaults::new("i"));
        assert!(o.ingress.is_none() && o.http_route.is_some());
        let left = leftovers(&routed, &o);
        assert!(left.contains(&Leftover::Ingress("weather-gateway".into())));
        assert!(
            !left
                .iter()
                .any(|l| matches!(l, Leftover::ThirdParty(k, _) if k.kind == "HTTPRoute"))
        );
        // A facade gateway syncing its key with the CSI driver, whose paths are all taken.
        let mut spec = crate::validate::tests::facade_spec();
        spec["systemKey"] = serde_json::json!({"keyVault": {"vaultName": "kv1",
            "clientId": "00000000-0000-0000-0000-000000000001",
            "tenantId": "00000000-0000-0000-0000-000000000002"}});
        let gw = gateway(spec);
        let plan = validate(&gw).unwrap();
        let all = public_paths(&plan).into_iter().collect();
        let o = build(&gw, &plan, &all, &Defaults::new("i"));
        assert_eq!(
            leftovers(&gw, &o),
            [
                Leftover::Ingress("weather-gateway".into()),
                Leftover::ThirdParty(http_route::HTTP_ROUTE, "weather-gateway".into()),
                Leftover::ThirdParty(EXTERNAL_SECRET, "weather-gateway".into()),
            ]
        );
    }

    #[test]
    fn session_secret_holds_one_base64_key_the_sidecar_can_read() {
        let gw = gateway(oidc_spec());
        let secret = session_secret(&gw, [7; 32]);
        let text = &secret.string_data.as_ref().unwrap()["keys"];
        assert_eq!(
            mcp_gateway_contract::keys_file::parse_keys(text).unwrap(),
            vec![[7; 32]]
        );
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("weather-gateway-session")
        );
    }
}
