//! The third-party object that syncs the key out of Key Vault, when the gateway asks for
//! one: a Secrets Store CSI driver `SecretProviderClass` or an External Secrets Operator
//! `ExternalSecret`. Their CRDs may not be installed, so they are built as dynamic objects
//! and the controller checks the API first.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use mcp_gateway_crds::v1alpha1::McpGateway;
use serde_json::json;

use super::{metadata, object_name};
use crate::validate::{
    CSI_OBJECT_ALIAS, CsiPlan, EXTERNAL_SECRET_KEY, ExternalSecretPlan, KeySource, Plan,
};

/// A kind the operator renders but does not own the CRD of.
#[derive(Clone, Debug, PartialEq)]
pub struct ThirdPartyKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// What to install when the kind is missing (shown in the `KeyAvailable` condition).
    pub install: &'static str,
}

impl ThirdPartyKind {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }

    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

pub const SECRET_PROVIDER_CLASS: ThirdPartyKind = ThirdPartyKind {
    group: "secrets-store.csi.x-k8s.io",
    version: "v1",
    kind: "SecretProviderClass",
    plural: "secretproviderclasses",
    install: "install the Secrets Store CSI driver and its Azure provider (AKS: az aks enable-addons --addons azure-keyvault-secrets-provider)",
};

pub const EXTERNAL_SECRET: ThirdPartyKind = ThirdPartyKind {
    group: "external-secrets.io",
    version: "v1",
    kind: "ExternalSecret",
    plural: "externalsecrets",
    install: "install External Secrets Operator v0.17 or later (helm install external-secrets external-secrets/external-secrets)",
};

/// The CSI driver's name, and the volume attribute naming the `SecretProviderClass`.
pub const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
pub const CSI_CLASS_ATTRIBUTE: &str = "secretProviderClass";

/// The sync object a gateway needs, with its kind; `None` when the key is a user's Secret
/// or read directly.
pub fn key_sync(gateway: &McpGateway, plan: &Plan) -> Option<(ThirdPartyKind, DynamicObject)> {
    match &plan.key {
        KeySource::CsiDriver(csi) => {
            Some((SECRET_PROVIDER_CLASS, secret_provider_class(gateway, csi)))
        }
        KeySource::Secret {
            name,
            external: Some(es),
            ..
        } => Some((EXTERNAL_SECRET, external_secret(gateway, name, es))),
        _ => None,
    }
}

fn object(gateway: &McpGateway, kind: &ThirdPartyKind, spec: serde_json::Value) -> DynamicObject {
    let mut object = DynamicObject::new(&object_name(gateway), &kind.api_resource())
        .data(json!({ "spec": spec }));
    object.metadata = metadata(gateway, object_name(gateway));
    object
}

/// Azure provider, workload identity: the CSI driver requests a token for the pod's service
/// account and exchanges it as `clientID`. One object: the key, written as file `key`.
fn secret_provider_class(gateway: &McpGateway, csi: &CsiPlan) -> DynamicObject {
    let objects = format!(
        "array:\n  - |\n    objectName: {}\n    objectAlias: {CSI_OBJECT_ALIAS}\n    objectType: secret\n",
        csi.secret_name
    );
    let mut parameters = BTreeMap::from([
        ("usePodIdentity", "false".to_string()),
        ("clientID", csi.client_id.clone()),
        ("keyvaultName", csi.vault_name.clone()),
        ("tenantId", csi.tenant_id.clone()),
        ("objects", objects),
    ]);
    if let Some(cloud) = csi.cloud_name {
        parameters.insert("cloudName", cloud.into());
    }
    object(
        gateway,
        &SECRET_PROVIDER_CLASS,
        json!({ "provider": "azure", "parameters": parameters }),
    )
}

/// Writes the one Key Vault secret into a Secret the operator mounts; the Secret is owned
/// by the `ExternalSecret` (deleted with it).
fn external_secret(gateway: &McpGateway, target: &str, es: &ExternalSecretPlan) -> DynamicObject {
    object(
        gateway,
        &EXTERNAL_SECRET,
        json!({
            "refreshInterval": format!("{}s", es.refresh_seconds),
            "secretStoreRef": {"name": es.store.name, "kind": format!("{:?}", es.store.kind)},
            "target": {"name": target, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [{"secretKey": EXTERNAL_SECRET_KEY, "remoteRef": {"key": es.remote_key}}],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;

    fn render(key_vault: serde_json::Value) -> Option<(ThirdPartyKind, DynamicObject)> {
        let mut spec = oidc_spec();
        spec["systemKey"] = json!({ "keyVault": key_vault });
        let gw = gateway(spec);
        key_sync(&gw, &validate(&gw).unwrap())
    }

    #[test]
    fn secret_provider_class_names_the_one_secret_and_the_identity() {
        let (kind, spc) = render(json!({"vaultName": "kv1",
            "clientId": "00000000-0000-0000-0000-00000000000c",
            "tenantId": "00000000-0000-0000-0000-00000000000d"}))
        .unwrap();
        assert_eq!(kind, SECRET_PROVIDER_CLASS);
        assert_eq!(spc.metadata.name.as_deref(), Some("weather-gateway"));
        assert_eq!(
            spc.metadata.owner_references.as_ref().unwrap()[0].name,
            "weather"
        );
        let types = spc.types.as_ref().unwrap();
        assert_eq!(types.api_version, "secrets-store.csi.x-k8s.io/v1");
        assert_eq!(types.kind, "SecretProviderClass");
        let spec = &spc.data["spec"];
        assert_eq!(spec["provider"], "azure");
        let p = &spec["parameters"];
        assert_eq!(p["clientID"], "00000000-0000-0000-0000-00000000000c");
        assert_eq!(p["tenantId"], "00000000-0000-0000-0000-00000000000d");
        assert_eq!(p["keyvaultName"], "kv1");
        assert_eq!(p["usePodIdentity"], "false");
        assert!(p.get("cloudName").is_none());
        // The objects parameter is YAML the provider parses: check it as YAML.
        let objects: serde_yaml::Value = serde_yaml::from_str(
            p["objects"]
                .as_str()
                .unwrap()
                .strip_prefix("array:")
                .unwrap(),
        )
        .unwrap();
        let first: serde_yaml::Value = serde_yaml::from_str(objects[0].as_str().unwrap()).unwrap();
        assert_eq!(first["objectName"], "host--systemKey--mcp-095extension");
        assert_eq!(first["objectAlias"], "key");
        assert_eq!(first["objectType"], "secret");
    }

    #[test]
    fn external_secret_reads_the_secret_through_the_store() {
        let (kind, es) = render(json!({"sync": "ExternalSecrets", "refreshSeconds": 600,
            "secretStoreRef": {"name": "vault"}}))
        .unwrap();
        assert_eq!(kind, EXTERNAL_SECRET);
        let spec = &es.data["spec"];
        assert_eq!(spec["refreshInterval"], "600s");
        assert_eq!(
            spec["secretStoreRef"],
            json!({"name": "vault", "kind": "SecretStore"})
        );
        assert_eq!(spec["target"]["name"], "weather-gateway-key");
        assert_eq!(
            spec["data"],
            json!([{"secretKey": "key", "remoteRef": {"key": "host--systemKey--mcp-095extension"}}])
        );
    }

    #[test]
    fn none_for_a_users_secret_or_direct() {
        let gw = gateway(oidc_spec());
        assert!(key_sync(&gw, &validate(&gw).unwrap()).is_none());
        assert!(
            render(json!({"vaultName": "kv1", "sync": "Direct",
                "clientId": "00000000-0000-0000-0000-00000000000c",
                "tenantId": "00000000-0000-0000-0000-00000000000d"}))
            .is_none()
        );
    }
}
