//! The Gateway API `HTTPRoute` a gateway with `route.gatewayRef` gets instead of an Ingress:
//! the same host and exact paths (minus those older gateways own), attached to the user's
//! Gateway. Its CRD may not be installed, so it is a dynamic object like the key-sync ones
//! and the controller asks the API server first.

use std::collections::BTreeSet;

use kube::api::DynamicObject;
use mcp_gateway_crds::v1alpha1::{GatewayRef, McpGateway};
use serde_json::{Value, json};

use super::ingress::public_paths;
use super::key_sync::ThirdPartyKind;
use super::service::SERVICE_PORT;
use super::{metadata, object_name};
use crate::validate::Plan;

pub const HTTP_ROUTE: ThirdPartyKind = ThirdPartyKind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "HTTPRoute",
    plural: "httproutes",
    install: "install the Gateway API CRDs (standard channel, v1.2 or later, where route timeouts are standard: kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.4.0/standard-install.yaml) and an implementation such as AKS app routing's Gateway API mode, Application Gateway for Containers, Istio or Envoy Gateway",
};

/// The `parentRefs` entry for the user's Gateway (namespace defaulted to the gateway's).
pub fn parent_ref(gateway: &McpGateway, target: &GatewayRef) -> Value {
    let mut parent = json!({
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": target.name,
        "namespace": target.namespace.clone().or_else(|| gateway.metadata.namespace.clone()),
    });
    if let Some(section) = &target.section_name {
        parent["sectionName"] = json!(section);
    }
    parent
}

/// `None` without `route.gatewayRef`, or when every public path belongs to an older gateway.
pub fn http_route(
    gateway: &McpGateway,
    plan: &Plan,
    lost_paths: &BTreeSet<String>,
) -> Option<DynamicObject> {
    let route = &gateway.spec.route;
    let target = route.gateway_ref.as_ref()?;
    let matches: Vec<Value> = public_paths(plan)
        .into_iter()
        .filter(|path| !lost_paths.contains(path))
        .map(|path| json!({"path": {"type": "Exact", "value": path}}))
        .collect();
    if matches.is_empty() {
        return None;
    }
    let mut meta = metadata(gateway, object_name(gateway));
    meta.annotations = (!route.annotations.is_empty()).then(|| route.annotations.clone());
    let mut object = DynamicObject::new(&object_name(gateway), &HTTP_ROUTE.api_resource()).data(
        json!({"spec": {
            "parentRefs": [parent_ref(gateway, target)],
            "hostnames": [route.host],
            "rules": [{
                "matches": matches,
                "backendRefs": [{"name": object_name(gateway), "port": SERVICE_PORT}],
                // MCP streams (SSE, long tool calls) outlive any request timeout: "0s" turns
                // it off where the implementation supports timeouts (an Extended feature;
                // Envoy Gateway otherwise cuts at 15 s). The gateway keeps its own upstream
                // timeouts and keep-alives.
                "timeouts": {"request": "0s"},
            }],
        }}),
    );
    object.metadata = meta;
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;

    fn routed(spec: Value) -> (McpGateway, Plan) {
        let gw = gateway(spec);
        let plan = validate(&gw).unwrap();
        (gw, plan)
    }

    #[test]
    fn a_gateway_ref_becomes_an_http_route_with_exact_paths_and_no_timeout() {
        let mut spec = oidc_spec();
        spec["route"]["gatewayRef"] =
            json!({"name": "public", "namespace": "infra", "sectionName": "https"});
        spec["route"]["annotations"] = json!({"external-dns.alpha.kubernetes.io/ttl": "60"});
        let (gw, plan) = routed(spec);
        let route = http_route(&gw, &plan, &BTreeSet::new()).unwrap();
        assert_eq!(route.metadata.name.as_deref(), Some("weather-gateway"));
        assert!(route.metadata.owner_references.is_some());
        assert_eq!(
            route.metadata.annotations.unwrap()["external-dns.alpha.kubernetes.io/ttl"],
            "60"
        );
        let spec = &route.data["spec"];
        assert_eq!(
            spec["parentRefs"][0],
            json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                   "namespace": "infra", "sectionName": "https"})
        );
        assert_eq!(spec["hostnames"], json!(["mcp.example.com"]));
        let rule = &spec["rules"][0];
        let paths: Vec<&str> = rule["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["path"]["type"], "Exact");
                m["path"]["value"].as_str().unwrap()
            })
            .collect();
        assert_eq!(paths, public_paths(&plan));
        assert_eq!(rule["backendRefs"][0]["name"], "weather-gateway");
        assert_eq!(rule["backendRefs"][0]["port"], SERVICE_PORT);
        assert_eq!(rule["timeouts"]["request"], "0s");
    }

    #[test]
    fn the_gateway_namespace_defaults_to_the_mcp_gateways_and_lost_paths_are_left_out() {
        let mut spec = oidc_spec();
        spec["route"]["gatewayRef"] = json!({"name": "public"});
        let (gw, plan) = routed(spec);
        let parent = parent_ref(&gw, gw.spec.route.gateway_ref.as_ref().unwrap());
        assert_eq!(parent["namespace"], json!(gw.metadata.namespace));
        assert!(parent.get("sectionName").is_none());
        let all: BTreeSet<String> = public_paths(&plan).into_iter().collect();
        assert!(
            http_route(&gw, &plan, &all).is_none(),
            "nothing left to route"
        );
        let mcp = format!("{}/mcp", plan.sidecar.prefix());
        let some = http_route(&gw, &plan, &BTreeSet::from([mcp.clone()])).unwrap();
        assert!(!some.data.to_string().contains(&format!("\"{mcp}\"")));
    }

    #[test]
    fn without_a_gateway_ref_there_is_no_http_route() {
        let (gw, plan) = routed(oidc_spec());
        assert!(http_route(&gw, &plan, &BTreeSet::new()).is_none());
    }
}
