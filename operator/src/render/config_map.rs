//! The ConfigMap: the sidecar's config type, serialized, and a hash of it that rolls the pods
//! when it changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use mcp_gateway_crds::v1alpha1::McpGateway;
use sha2::{Digest, Sha256};

use super::{metadata, object_name};
use crate::validate::{CONFIG_FILE_NAME, Plan};

/// Pod-template annotation carrying the config's hash: a config change changes the pod
/// template, so the Deployment rolls. The system key is a mounted Secret the sidecar
/// reloads, so key rotation changes nothing here and rolls nothing.
pub const CONFIG_HASH_ANNOTATION: &str = "mcpgateway.dev/config-hash";

pub fn config_map(gateway: &McpGateway, plan: &Plan) -> ConfigMap {
    let yaml = serde_yaml::to_string(&plan.sidecar).expect("the sidecar config always serializes");
    ConfigMap {
        metadata: metadata(gateway, object_name(gateway)),
        data: Some(BTreeMap::from([(CONFIG_FILE_NAME.to_string(), yaml)])),
        ..Default::default()
    }
}

pub fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in config_map.data.iter().flatten() {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;
    use mcp_gateway_contract::config::Config;

    #[test]
    fn holds_exactly_the_sidecar_config() {
        let gw = gateway(oidc_spec());
        let plan = validate(&gw).unwrap();
        let cm = config_map(&gw, &plan);
        let text = &cm.data.as_ref().unwrap()["config.yaml"];
        let parsed: Config = serde_yaml::from_str(text).unwrap();
        assert_eq!(parsed, plan.sidecar);
        parsed.validate().unwrap();
    }

    #[test]
    fn the_hash_follows_the_config() {
        let gw = gateway(oidc_spec());
        let plan = validate(&gw).unwrap();
        let a = config_hash(&config_map(&gw, &plan));
        let mut spec = oidc_spec();
        spec["upstream"]["timeouts"] = serde_json::json!({"responseSeconds": 30});
        let gw2 = gateway(spec);
        let b = config_hash(&config_map(&gw2, &validate(&gw2).unwrap()));
        assert_ne!(a, b);
        assert_eq!(a, config_hash(&config_map(&gw, &plan)));
        assert_eq!(a.len(), 16);
    }
}
