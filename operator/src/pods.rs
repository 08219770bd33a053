//! Asks each of a gateway's pods how its system key is doing (`GET /keyz` on the admin
//! port). I/O only; [`crate::key_report`] draws the conclusions.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use mcp_gateway_crds::v1alpha1::McpGateway;

use crate::key_report::PodKeyReport;
use crate::render::selector;
use crate::validate::ADMIN_PORT;

/// A pod that does not answer within this is left out of the verdict.
const POD_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports from the gateway's running pods that answered. A pod that does not answer is
/// left out (its readiness probe already tells that story).
pub async fn key_reports(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
    gateway: &McpGateway,
) -> Result<Vec<PodKeyReport>, kube::Error> {
    let selector = selector(gateway)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = pods.list(&ListParams::default().labels(&selector)).await?;
    let asks = pods
        .items
        .iter()
        .filter_map(admin_url)
        .map(|(pod, url)| async move {
            match ask(http, &url).await {
                Ok(report) => Some(report),
                Err(error) => {
                    tracing::debug!(%pod, %error, "gateway pod did not report its key status");
                    None
                }
            }
        });
    Ok(join_all(asks).await.into_iter().flatten().collect())
}

/// `http://<pod IP>:<admin port>/keyz` for a running pod; the port is read from the pod's
/// `admin` container port, so a changed port in a newer template is followed.
fn admin_url(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip: std::net::IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("admin"))
        .map(|p| p.container_port)
        .unwrap_or(ADMIN_PORT.into());
    let host = match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    Some((pod.name_any(), format!("http://{host}:{port}/keyz")))
}

async fn ask(http: &reqwest::Client, url: &str) -> Result<PodKeyReport, reqwest::Error> {
    http.get(url)
        .timeout(POD_TIMEOUT)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}
