//! The Ingress: one host, exact paths for this gateway's routes only, so several gateways
//! can share a host under different prefixes. The root metadata path belongs to the gateway
//! at prefix `/` alone; prefixed gateways are found through the path-inserted metadata URL
//! their 401 names. Paths an older gateway on the host owns are left out
//! ([`crate::claims`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use mcp_gateway_contract::config::Transport;
use mcp_gateway_crds::v1alpha1::McpGateway;

use super::service::SERVICE_PORT;
use super::{metadata, object_name};
use crate::validate::Plan;

/// Annotations that keep common ingress controllers from buffering event streams or
/// cutting long-lived ones. The user's `route.annotations` override them.
pub fn streaming_annotations() -> BTreeMap<String, String> {
    [
        ("nginx.ingress.kubernetes.io/proxy-buffering", "off"),
        ("nginx.ingress.kubernetes.io/proxy-request-buffering", "off"),
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
        ("haproxy.org/timeout-server", "3600s"),
        ("haproxy.org/timeout-tunnel", "3600s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The public paths of a gateway, given its normalized prefix.
pub fn public_paths(plan: &Plan) -> Vec<String> {
    let prefix = plan.sidecar.prefix();
    let mut paths = Vec::new();
    if plan.sidecar.serves(Transport::StreamableHttp) {
        paths.push(format!("{prefix}/mcp"));
    }
    if plan.sidecar.serves(Transport::Sse) {
        paths.push(format!("{prefix}/sse"));
        paths.push(format!("{prefix}/message"));
    }
    paths.push(format!("/.well-known/oauth-protected-resource{prefix}/mcp"));
    if prefix.is_empty() {
        paths.push("/.well-known/oauth-protected-resource".into());
    }
    if plan.facade.is_some() {
        // The authorization server: its metadata where clients look for an issuer with this
        // path, and its endpoints.
        paths.push(format!("/.well-known/oauth-authorization-server{prefix}"));
        paths.push(format!("/.well-known/openid-configuration{prefix}"));
        if !prefix.is_empty() {
            paths.push(format!("{prefix}/.well-known/openid-configuration"));
        }
        for endpoint in [
            "authorize",
            "consent",
            "callback",
            "token",
            "register",
            "jwks",
        ] {
            paths.push(format!("{prefix}/oauth/{endpoint}"));
        }
    }
    paths
}

/// `None` when no path is left to route: an Ingress needs at least one.
pub fn ingress(
    gateway: &McpGateway,
    plan: &Plan,
    lost_paths: &BTreeSet<String>,
) -> Option<Ingress> {
    let route = &gateway.spec.route;
    let mut meta = metadata(gateway, object_name(gateway));
    let mut annotations = streaming_annotations();
    annotations.extend(route.annotations.clone());
    meta.annotations = Some(annotations);
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: object_name(gateway),
            port: Some(ServiceBackendPort {
                number: Some(SERVICE_PORT),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let paths: Vec<HTTPIngressPath> = public_paths(plan)
        .into_iter()
        .filter(|path| !lost_paths.contains(path))
        .map(|path| HTTPIngressPath {
            path: Some(path),
            path_type: "Exact".into(),
            backend: backend.clone(),
        })
        .collect();
    if paths.is_empty() {
        return None;
    }
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: route.ingress_class_name.clone(),
            tls: route.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: Some(vec![route.host.clone()]),
                    secret_name: Some(tls.secret_name.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(route.host.clone()),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};
    use crate::validate::validate;

    fn paths_of(ingress: &Ingress) -> Vec<String> {
        let rule = &ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.host.as_deref(),
            Some("mcp.example.com"),
            "host matching on every path"
        );
        rule.http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| p.path.clone().unwrap())
            .collect()
    }

    #[test]
    fn prefixed_gateways_claim_only_their_own_paths() {
        let gw = gateway(oidc_spec());
        let ing = ingress(&gw, &validate(&gw).unwrap(), &BTreeSet::new()).unwrap();
        assert_eq!(
            paths_of(&ing),
            [
                "/weather/mcp",
                "/weather/sse",
                "/weather/message",
                "/.well-known/oauth-protected-resource/weather/mcp"
            ]
        );
        let mut other = oidc_spec();
        other["route"]["pathPrefix"] = "/news".into();
        let gw2 = gateway(other);
        let theirs = paths_of(&ingress(&gw2, &validate(&gw2).unwrap(), &BTreeSet::new()).unwrap());
        assert!(
            paths_of(&ing).iter().all(|p| !theirs.contains(p)),
            "two gateways on one host never collide"
        );
    }

    #[test]
    fn paths_owned_by_older_gateways_get_no_rule() {
        let gw = gateway(oidc_spec());
        let plan = validate(&gw).unwrap();
        let lost = BTreeSet::from(["/weather/mcp".to_string()]);
        let paths = paths_of(&ingress(&gw, &plan, &lost).unwrap());
        assert!(!paths.contains(&"/weather/mcp".to_string()), "{paths:?}");
        assert!(paths.contains(&"/weather/sse".to_string()), "{paths:?}");
        let all: BTreeSet<String> = public_paths(&plan).into_iter().collect();
        assert_eq!(ingress(&gw, &plan, &all), None, "nothing left: no Ingress");
    }

    #[test]
    fn the_root_gateway_also_serves_root_metadata_and_honours_transports() {
        let mut spec = oidc_spec();
        spec["route"]["pathPrefix"] = "/".into();
        spec["upstream"]["transports"] = serde_json::json!(["StreamableHttp"]);
        let gw = gateway(spec);
        let ing = ingress(&gw, &validate(&gw).unwrap(), &BTreeSet::new()).unwrap();
        assert_eq!(
            paths_of(&ing),
            [
                "/mcp",
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
    }

    #[test]
    fn tls_class_and_annotations() {
        let mut spec = oidc_spec();
        spec["route"]["ingressClassName"] = "nginx".into();
        spec["route"]["tls"] = serde_json::json!({"secretName": "mcp-tls"});
        spec["route"]["annotations"] = serde_json::json!({
            "cert-manager.io/cluster-issuer": "letsencrypt",
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "7200"});
        let gw = gateway(spec);
        let ing = ingress(&gw, &validate(&gw).unwrap(), &BTreeSet::new()).unwrap();
        let spec = ing.spec.as_ref().unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = &spec.tls.as_ref().unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("mcp-tls"));
        assert_eq!(tls.hosts.as_ref().unwrap(), &["mcp.example.com"]);
        let a = ing.metadata.annotations.as_ref().unwrap();
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-buffering"], "off");
        assert_eq!(
            a["nginx.ingress.kubernetes.io/proxy-read-timeout"], "7200",
            "the user's value wins"
        );
        assert_eq!(a["cert-manager.io/cluster-issuer"], "letsencrypt");
        assert!(
            ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
                .http
                .as_ref()
                .unwrap()
                .paths
                .iter()
                .all(|p| p.path_type == "Exact")
        );
    }

    #[test]
    fn the_facade_adds_its_metadata_and_endpoints() {
        let gw = crate::validate::tests::gateway(crate::validate::tests::facade_spec());
        let plan = crate::validate::validate(&gw).unwrap();
        let paths = public_paths(&plan);
        for p in [
            "/.well-known/oauth-authorization-server/weather",
            "/.well-known/openid-configuration/weather",
            "/weather/.well-known/openid-configuration",
            "/weather/oauth/authorize",
            "/weather/oauth/callback",
            "/weather/oauth/token",
            "/weather/oauth/register",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} in {paths:?}");
            // Each path the sidecar serves is one the router recognises.
            assert!(
                mcp_gateway_sidecar::facade::Endpoint::route(&plan.sidecar, p).is_some(),
                "{p}"
            );
        }
    }
}
