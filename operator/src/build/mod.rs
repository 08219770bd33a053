//! Build: the objects an McpGateway becomes, as pure functions of the gateway, its checked
//! [`Plan`] and the operator's [`Defaults`]. No client, no I/O: everything the operator
//! renders is unit tested here, and the API-server tests prove the wiring.

mod config_map;
mod deployment;
mod ingress;
pub mod key_sync;
mod service;
pub mod service_account;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::DynamicObject;
use mcp_gateway_crds::v1alpha1::McpGateway;

pub use config_map::{CONFIG_HASH_ANNOTATION, config_hash};
pub use key_sync::ThirdPartyKind;

use crate::validate::Plan;

/// Settings of the operator itself (flags), not of one gateway.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// The sidecar image used unless a gateway sets `spec.image`.
    pub sidecar_image: String,
}

/// Everything one gateway becomes.
#[derive(Clone, Debug)]
pub struct Objects {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub ingress: Ingress,
    pub service_account: ServiceAccount,
    /// The object that syncs the key out of Key Vault, if the gateway needs one.
    pub key_sync: Option<(ThirdPartyKind, DynamicObject)>,
}

pub fn build(gateway: &McpGateway, plan: &Plan, defaults: &Defaults) -> Objects {
    let config_map = config_map::config_map(gateway, plan);
    let hash = config_hash(&config_map);
    Objects {
        deployment: deployment::deployment(gateway, plan, defaults, &hash),
        service: service::service(gateway),
        ingress: ingress::ingress(gateway, plan),
        service_account: service_account::service_account(gateway, plan),
        key_sync: key_sync::key_sync(gateway, plan),
        config_map,
    }
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
            &Defaults {
                sidecar_image: "registry.example/sidecar:1".into(),
            },
        )
    }

    #[test]
    fn every_object_is_owned_by_the_gateway_and_labelled() {
        let o = objects();
        let metas = [
            &o.config_map.metadata,
            &o.deployment.metadata,
            &o.service.metadata,
            &o.ingress.metadata,
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
