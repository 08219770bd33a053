//! The PodDisruptionBudget of a gateway with more than one replica: voluntary disruptions
//! (a node drain, a cluster upgrade) take its pods one at a time, so it keeps serving. With
//! one replica (or none) there is nothing to keep: a budget would only block the drain.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_gateway_crds::v1alpha1::McpGateway;

use super::{metadata, object_name, selector};

pub fn disruption_budget(gateway: &McpGateway) -> Option<PodDisruptionBudget> {
    (gateway.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: metadata(gateway, object_name(gateway)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(gateway)),
                ..Default::default()
            }),
            // A pod that is not ready serves nothing: evicting it never costs availability.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};

    #[test]
    fn two_or_more_replicas_get_a_budget_of_one_unavailable_pod() {
        let mut spec = oidc_spec();
        spec["replicas"] = 3.into();
        let budget = disruption_budget(&gateway(spec)).unwrap();
        let spec = budget.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        let labels = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/instance"], "weather");
        assert!(budget.metadata.owner_references.is_some());
        for replicas in [0, 1] {
            let mut spec = oidc_spec();
            spec["replicas"] = replicas.into();
            assert!(disruption_budget(&gateway(spec)).is_none(), "{replicas}");
        }
    }
}
