//! The controller: watches McpGateways, the objects they own and the Secrets they name
//! (`watches`), and runs the reconcile pipeline (`reconcile`): load → validate → claim
//! routes → check key → render → apply (`apply`) → status.

mod apply;
mod reconcile;
mod watches;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use mcp_gateway_crds::v1alpha1::McpGateway;

use crate::MANAGER;
use crate::claims::Claim;
use crate::metrics::Metrics;
use crate::render::Defaults;

pub use reconcile::reconcile;
pub use watches::run;

/// How often a gateway with pods, or one waiting for a CRD, is looked at again.
pub const DEFAULT_KEY_STATUS_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret {0}: {1}")]
    ReadSecret(String, #[source] kube::Error),
    #[error("reading ConfigMap {0}: {1}")]
    ReadConfigMap(String, #[source] kube::Error),
    #[error("reading Deployment {0}: {1}")]
    ReadDeployment(String, #[source] kube::Error),
    #[error("creating the session-keys Secret {0}: {1}")]
    CreateSessionSecret(String, #[source] kube::Error),
    #[error("applying {0}: {1}")]
    Apply(String, #[source] kube::Error),
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("asking the API server whether {0} is installed: {1}")]
    Discovery(String, #[source] kube::Error),
    #[error("deleting {0}: {1}")]
    Delete(String, #[source] kube::Error),
    #[error("the McpGateway has no namespace")]
    NoNamespace,
}

impl Error {
    /// The failure as a status message: what failed and the API server's reason.
    pub fn user_message(&self) -> String {
        match self {
            Error::Apply(what, kube::Error::Api(status))
            | Error::ReadSecret(what, kube::Error::Api(status))
            | Error::ReadConfigMap(what, kube::Error::Api(status))
            | Error::ReadDeployment(what, kube::Error::Api(status))
            | Error::CreateSessionSecret(what, kube::Error::Api(status))
            | Error::Discovery(what, kube::Error::Api(status))
            | Error::Delete(what, kube::Error::Api(status)) => {
                format!("{} {what}: {}", self.action(), status.message)
            }
            other => other.to_string(),
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Error::ReadSecret(..) => "reading Secret",
            Error::ReadConfigMap(..) => "reading ConfigMap",
            Error::ReadDeployment(..) => "reading Deployment",
            Error::CreateSessionSecret(..) => "creating the session-keys Secret",
            Error::Apply(..) => "applying",
            Error::Status(..) => "writing the status",
            Error::Discovery(..) => "asking whether the API has",
            Error::Delete(..) => "deleting",
            Error::NoNamespace => "reading the McpGateway",
        }
    }

    /// A closed set of labels for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadSecret(..) => "read_secret",
            Error::ReadConfigMap(..) => "read_config_map",
            Error::ReadDeployment(..) => "read_deployment",
            Error::CreateSessionSecret(..) => "create_session_secret",
            Error::Apply(..) => "apply",
            Error::Status(..) => "status",
            Error::Discovery(..) => "discovery",
            Error::Delete(..) => "delete",
            Error::NoNamespace => "no_namespace",
        }
    }
}

pub struct Context {
    pub client: Client,
    pub defaults: Defaults,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Asks gateway pods for their key status.
    pub http: reqwest::Client,
    /// How often a running gateway's pods are asked about the key.
    pub key_status_interval: Duration,
    /// Every McpGateway the controller knows (set by [`run`]): who else claims a host.
    gateways: Option<Store<McpGateway>>,
    /// Leftovers (`<gateway uid> <leftover>`) known to be gone, so a settled gateway costs
    /// no API call for them. Only the operator creates these objects, so one that is gone
    /// stays gone until a pass produces it again (which forgets the entry).
    gone: Mutex<HashSet<String>>,
}

impl Context {
    pub fn new(
        client: Client,
        defaults: Defaults,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            defaults,
            metrics,
            recorder,
            http: reqwest::Client::new(),
            key_status_interval: DEFAULT_KEY_STATUS_INTERVAL,
            gateways: None,
            gone: Mutex::default(),
        }
    }

    /// The gateways' claims on `host`.
    fn claims_on(&self, host: &str) -> Vec<Claim> {
        let Some(store) = &self.gateways else {
            return Vec::new();
        };
        store
            .state()
            .iter()
            .filter(|gw| gw.spec.route.host == host)
            .filter_map(|gw| Claim::of(gw, &self.defaults.allowed_annotation_prefixes))
            .collect()
    }
}
