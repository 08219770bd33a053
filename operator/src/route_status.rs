//! What the Gateway API implementation says of a gateway's `HTTPRoute`: its
//! `status.parents` entry for the user's Gateway, turned into the McpGateway's
//! `RouteAccepted` condition. Pure: the controller passes the route as stored.

use kube::api::DynamicObject;
use serde_json::Value;

/// The state of the gateway's HTTPRoute, for the `RouteAccepted` condition.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpRouteState {
    /// The gateway uses an Ingress.
    NotUsed,
    /// The Gateway API CRDs are not served: nothing was applied.
    CrdMissing { install: String },
    /// Older gateways on the host own every path: there is no route to accept.
    AllPathsClaimed,
    /// Applied; no controller has written status for this parent yet.
    Pending { gateway: String },
    /// Accepted by the Gateway, with every backend resolved.
    Accepted { gateway: String },
    /// Refused by the Gateway (`Accepted=False`) or with unresolved references
    /// (`ResolvedRefs=False`): the implementation's reason and message.
    Refused {
        gateway: String,
        reason: String,
        message: String,
    },
}

/// `namespace/name` of the parent, for messages.
fn gateway_name(parent: &Value) -> String {
    format!(
        "{}/{}",
        parent["namespace"].as_str().unwrap_or_default(),
        parent["name"].as_str().unwrap_or_default()
    )
}

/// Before the route is applied (or when it could not be): nothing is known yet.
pub fn pending(parent: &Value) -> HttpRouteState {
    HttpRouteState::Pending {
        gateway: gateway_name(parent),
    }
}

/// The state of `route` (the HTTPRoute as stored) for the parent `parent` (its `parentRefs`
/// entry: `name`, `namespace`, optional `sectionName`).
pub fn state(route: &DynamicObject, parent: &Value) -> HttpRouteState {
    let gateway = gateway_name(parent);
    // A parentRef without a namespace means the route's own.
    let own_namespace = route.metadata.namespace.as_deref().unwrap_or_default();
    let entry = route.data["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            let r = &p["parentRef"];
            r["name"] == parent["name"]
                && r["namespace"].as_str().unwrap_or(own_namespace) == parent["namespace"]
                && r["sectionName"] == parent["sectionName"]
        });
    let Some(entry) = entry else {
        return HttpRouteState::Pending { gateway };
    };
    let generation = route.metadata.generation;
    let condition = |type_: &str| {
        entry["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            // A condition about an older spec says nothing yet about this one.
            .filter(|c| match (generation, c["observedGeneration"].as_i64()) {
                (Some(current), Some(observed)) => observed >= current,
                _ => true,
            })
    };
    let refused = |c: &Value| HttpRouteState::Refused {
        gateway: gateway.clone(),
        reason: c["reason"].as_str().unwrap_or("Refused").to_string(),
        message: advice(c, &gateway),
    };
    match (condition("Accepted"), condition("ResolvedRefs")) {
        (Some(a), _) if a["status"] == "False" => refused(a),
        (_, Some(r)) if r["status"] == "False" => refused(r),
        (Some(a), _) if a["status"] == "True" => HttpRouteState::Accepted { gateway },
        _ => HttpRouteState::Pending { gateway },
    }
}

/// The implementation's message, with what to change for the refusals users meet most.
fn advice(condition: &Value, gateway: &str) -> String {
    let message = condition["message"].as_str().unwrap_or_default();
    let hint = match condition["reason"].as_str().unwrap_or_default() {
        "NotAllowedByListeners" => format!(
            "Gateway {gateway} does not allow routes from this namespace: add it to the listener's allowedRoutes.namespaces (from: All, or a Selector matching it)"
        ),
        "NoMatchingListenerHostname" => format!(
            "no listener of Gateway {gateway} accepts route.host: set the listener's hostname to it (or a wildcard covering it), or change route.host"
        ),
        "NoMatchingParent" => {
            format!("Gateway {gateway} has no such listener: fix route.gatewayRef.sectionName")
        }
        "BackendNotFound" => {
            "the route's backend is the gateway's own Service: it may still be starting".into()
        }
        _ => String::new(),
    };
    match (message.is_empty(), hint.is_empty()) {
        (_, true) => message.to_string(),
        (true, false) => hint,
        (false, false) => format!("{message}; {hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent() -> Value {
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra"})
    }

    /// A route as the API server returns it (deserialized like the controller's), whose
    /// status has an entry for another Gateway and one for ours with `conditions`.
    fn route(conditions: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "weather-gateway", "namespace": "apps", "generation": 2},
            "spec": {},
            "status": {"parents": [
                {"parentRef": {"name": "other", "namespace": "infra"}, "controllerName": "x",
                 "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}]},
                {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra"},
                 "controllerName": "traefik.io/gateway-controller", "conditions": conditions},
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn accepted_with_resolved_refs_is_accepted() {
        let r = route(json!([
            {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 2},
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 2},
        ]));
        assert_eq!(
            state(&r, &parent()),
            HttpRouteState::Accepted {
                gateway: "infra/public".into()
            }
        );
    }

    #[test]
    fn a_listener_that_refuses_the_namespace_says_what_to_change() {
        let r = route(json!([
            {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners",
             "message": "no listener allows it", "observedGeneration": 2},
        ]));
        match state(&r, &parent()) {
            HttpRouteState::Refused {
                reason, message, ..
            } => {
                assert_eq!(reason, "NotAllowedByListeners");
                assert!(message.contains("no listener allows it"), "{message}");
                assert!(message.contains("allowedRoutes.namespaces"), "{message}");
                assert!(message.contains("infra/public"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unresolved_refs_refuse_and_stale_or_missing_status_is_pending() {
        let r = route(json!([
            {"type": "Accepted", "status": "True", "observedGeneration": 2},
            {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "observedGeneration": 2},
        ]));
        assert!(
            matches!(state(&r, &parent()), HttpRouteState::Refused { reason, .. } if reason == "BackendNotFound")
        );
        // An Accepted for generation 1 says nothing about generation 2 (found in review: the
        // generation is in the object's metadata, not its data).
        let stale = route(json!([{"type": "Accepted", "status": "True", "observedGeneration": 1}]));
        assert!(matches!(
            state(&stale, &parent()),
            HttpRouteState::Pending { .. }
        ));
        let none: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "apps", "generation": 1}}))
        .unwrap();
        assert!(matches!(
            state(&none, &parent()),
            HttpRouteState::Pending { .. }
        ));
        let mut section = parent();
        section["sectionName"] = json!("https");
        assert!(
            matches!(state(&r, &section), HttpRouteState::Pending { .. }),
            "another listener's status is not this one's"
        );
    }

    #[test]
    fn a_status_entry_without_a_namespace_is_the_routes_own() {
        let mut r = route(json!([{"type": "Accepted", "status": "True", "observedGeneration": 2}]));
        r.data["status"]["parents"][1]["parentRef"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        // Our Gateway is in infra, the route in apps: that entry is another Gateway's.
        assert!(matches!(
            state(&r, &parent()),
            HttpRouteState::Pending { .. }
        ));
        let mut local = parent();
        local["namespace"] = json!("apps");
        assert!(matches!(state(&r, &local), HttpRouteState::Accepted { .. }));
    }
}
