//! The gateway's own ServiceAccount. Its token is never mounted into the sidecar (which does
//! not call the API server); it exists so Azure workload identity can be federated with
//! exactly this gateway, and so no gateway runs as the namespace's `default` account.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use mcp_gateway_crds::v1alpha1::McpGateway;

use super::{metadata, object_name};
use crate::validate::Plan;

/// Annotation the Azure workload identity webhook reads the identity's client ID from.
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// Annotation naming the identity's tenant (defaults to the cluster's tenant when absent).
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";
/// Pod label that opts a pod into the webhook (token volume and `AZURE_*` variables).
pub const USE_LABEL: &str = "azure.workload.identity/use";

pub fn service_account(gateway: &McpGateway, plan: &Plan) -> ServiceAccount {
    let mut meta = metadata(gateway, object_name(gateway));
    if let Some(client_id) = plan.key.workload_identity() {
        let mut annotations = BTreeMap::from([(CLIENT_ID_ANNOTATION.into(), client_id.into())]);
        if let Some(tenant) = plan.key.tenant_id() {
            annotations.insert(TENANT_ID_ANNOTATION.into(), tenant.into());
        }
        meta.annotations = Some(annotations);
    }
    ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;

    #[test]
    fn annotated_only_when_the_pod_reads_key_vault() {
        let gw = gateway(oidc_spec());
        let sa = service_account(&gw, &validate(&gw).unwrap());
        assert_eq!(sa.metadata.name.as_deref(), Some("weather-gateway"));
        assert_eq!(sa.automount_service_account_token, Some(false));
        assert_eq!(sa.metadata.annotations, None);

        let mut spec = oidc_spec();
        spec["systemKey"] = serde_json::json!({"keyVault": {"vaultName": "kv1", "sync": "Direct",
            "clientId": "00000000-0000-0000-0000-00000000000c",
            "tenantId": "00000000-0000-0000-0000-00000000000d"}});
        let gw = gateway(spec);
        let sa = service_account(&gw, &validate(&gw).unwrap());
        let annotations = sa.metadata.annotations.unwrap();
        assert_eq!(
            annotations[CLIENT_ID_ANNOTATION],
            "00000000-0000-0000-0000-00000000000c"
        );
        assert_eq!(
            annotations[TENANT_ID_ANNOTATION],
            "00000000-0000-0000-0000-00000000000d"
        );
    }
}
