//! The Service in front of the gateway's pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_gateway_crds::v1alpha1::McpGateway;

use super::{metadata, object_name, selector};

pub const SERVICE_PORT: i32 = 80;

pub fn service(gateway: &McpGateway) -> Service {
    Service {
        metadata: metadata(gateway, object_name(gateway)),
        spec: Some(ServiceSpec {
            selector: Some(selector(gateway)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                app_protocol: Some("http".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
