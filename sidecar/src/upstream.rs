//! The upstream side: the HTTP client that reaches the Function App, and the ways a request
//! to it can fail before there is a response to relay.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::config::Config;
use crate::response::plain;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The upstream HTTP client: HTTP/1.1 and HTTP/2 over rustls (ALPN), `TCP_NODELAY`. Trusts
/// the public web roots plus `upstream.caFile`, if set.
pub fn upstream_client(config: &Config) -> Result<UpstreamClient, UpstreamTlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(
        config.upstream.connect_timeout_seconds.into(),
    )));
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &config.upstream.ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                UpstreamTlsError(format!(
                    "cannot read upstream.caFile {}: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(UpstreamTlsError(format!(
                "upstream.caFile {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                UpstreamTlsError(format!("upstream.caFile {}: {e}", path.display()))
            })?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| UpstreamTlsError(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

/// The upstream's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UpstreamTlsError(String);

/// Why a request got no upstream response to relay. The messages are the gateway's own and
/// name no secret: they are shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The system key has not been loaded yet.
    NoKey,
    /// No response headers within `upstream.responseTimeoutSeconds`.
    Timeout,
    /// No connection, or it failed before a response.
    Unreachable,
    /// The Function App refused the key, also after a retry with a renewed one.
    KeyRejected,
}

impl UpstreamFailure {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoKey => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable | Self::KeyRejected => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::NoKey => "the gateway has no system key yet",
            Self::Timeout => "the MCP server did not answer in time",
            Self::Unreachable => "the MCP server could not be reached",
            Self::KeyRejected => "the MCP server rejected the gateway's system key",
        }
    }

    pub fn response(self) -> http::Response<Body> {
        plain(self.status(), self.message())
    }
}
