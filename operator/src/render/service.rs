//! The Service in front of the gateway's pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_gateway_crds::v1alpha1::McpGateway;

use super::{metadata, object_name, selector};

pub const SERVICE_PORT: i32 = 80;
/// The admin port (metrics, health, the key's status), for a ServiceMonitor or a scrape
/// config that discovers Services; never routed by the Ingress or the HTTPRoute.
pub const ADMIN_SERVICE_PORT: i32 = mcp_gateway_contract::paths::ADMIN_PORT as i32;

pub fn service(gateway: &McpGateway) -> Service {
    Service {
        metadata: metadata(gateway, object_name(gateway)),
        spec: Some(ServiceSpec {
            selector: Some(selector(gateway)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("http".into()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("admin".into()),
                    port: ADMIN_SERVICE_PORT,
                    target_port: Some(IntOrString::String("admin".into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("http".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};

    #[test]
    fn the_service_has_the_public_and_the_admin_port_by_the_pod_port_names() {
        let svc = service(&gateway(oidc_spec()));
        let ports = svc.spec.unwrap().ports.unwrap();
        let named: Vec<_> = ports
            .iter()
            .map(|p| {
                (
                    p.name.as_deref().unwrap(),
                    p.port,
                    p.target_port.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                ("http", 80, IntOrString::String("http".into())),
                ("admin", 9090, IntOrString::String("admin".into())),
            ]
        );
    }
}
