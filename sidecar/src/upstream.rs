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
    let files = [
        (&config.upstream.ca_file, "upstream.caFile"),
        (&config.trusted_ca_file, "trustedCaFile"),
    ];
    for (path, setting) in files {
        if let Some(path) = path {
            // Certificates that cannot be anchors are skipped (as for the sidecar's other
            // clients, `fetch::load_trusted_roots`); a file with none usable is an error.
            let (added, _skipped) = roots.add_parsable_certificates(pem_certs(path, setting)?);
            if added == 0 {
                return Err(UpstreamTlsError(format!(
                    "{setting} {} holds no certificate usable as a CA",
                    path.display()
                )));
            }
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

/// The certificates of a PEM file; at least one.
fn pem_certs(
    path: &std::path::Path,
    setting: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, UpstreamTlsError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| UpstreamTlsError(format!("cannot read {setting} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(UpstreamTlsError(format!(
            "{setting} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
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
    /// App Service Authentication in front of the app refused the request before the
    /// Functions host saw it: a platform setting, not the key.
    AppServiceAuth,
}

impl UpstreamFailure {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoKey => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable | Self::KeyRejected | Self::AppServiceAuth => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::NoKey => "the gateway has no system key yet",
            Self::Timeout => "the MCP server did not answer in time",
            Self::Unreachable => "the MCP server could not be reached",
            Self::KeyRejected => "the MCP server rejected the gateway's system key",
            Self::AppServiceAuth => {
                "the Function App's App Service Authentication refused the gateway's request before it reached the Functions host; let unauthenticated requests through to /runtime/webhooks/mcp (the gateway authenticates clients) or turn it off"
            }
        }
    }

    /// The request log's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoKey => "no_system_key",
            Self::Timeout => "upstream_timeout",
            Self::Unreachable => "upstream_unreachable",
            Self::KeyRejected => "upstream_rejected_key",
            Self::AppServiceAuth => "app_service_auth",
        }
    }

    pub fn response(self) -> http::Response<Body> {
        plain(self.status(), self.message())
    }
}

/// What went wrong reaching the upstream, for operators: a short cause from a closed set
/// (`refused`, `dns`, `tls`, `timeout`, `reset`, `connect`, `other`) and the whole error
/// chain. Connection errors name no URL, key or header, so the chain is safe to log.
pub fn cause(error: &(dyn std::error::Error + 'static)) -> (&'static str, String) {
    let mut chain = Vec::new();
    let mut cause = "other";
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            cause = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "refused",
                std::io::ErrorKind::TimedOut => "timeout",
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "reset"
                }
                _ if cause == "other" => "connect",
                _ => cause,
            };
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            cause = "tls";
        } else if cause == "other" || cause == "connect" {
            let lower = text.to_ascii_lowercase();
            if lower.contains("dns error") || lower.contains("failed to lookup address") {
                cause = "dns";
            } else if lower.contains("certificate") || lower.contains("tls") {
                cause = "tls";
            } else if cause == "other" && lower.contains("connect") {
                cause = "connect";
            }
        }
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        next = e.source();
    }
    (cause, chain.join(": "))
}

/// Who refused a request, read from a response the Function App sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The Functions host: a missing, unknown or wrong kind of key.
    Key,
    /// App Service Authentication ("Easy Auth"), in front of the host.
    AppServiceAuth,
}

/// Tells the host's key refusals from App Service Authentication's (`None`: not a refusal).
///
/// The host answers a missing or unknown key with 401 and a bare `WWW-Authenticate: Bearer`
/// (ASP.NET Core's challenge) and a key of the wrong kind, or any key once App Service
/// Authentication has signed the caller in, with 403; both with an empty body
/// (azure-functions-host `AuthenticationLevelHandler`, the `SystemKeyAuthLevel` policy). App
/// Service Authentication redirects to `/.auth/login/…`, or answers 401/403 with a page, a
/// `realm` or MCP's `resource_metadata` challenge. `body_empty`: the response had no body.
pub fn refusal(status: StatusCode, headers: &http::HeaderMap, body_empty: bool) -> Option<Refusal> {
    if status.is_redirection() {
        let to_login = headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l.to_ascii_lowercase().contains("/.auth/login"));
        return to_login.then_some(Refusal::AppServiceAuth);
    }
    if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return None;
    }
    let platform_challenge = headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .any(|v| v.contains("realm=") || v.contains("resource_metadata="));
    Some(if platform_challenge || !body_empty {
        Refusal::AppServiceAuth
    } else {
        Refusal::Key
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{LOCATION, WWW_AUTHENTICATE};

    fn headers(pairs: &[(http::HeaderName, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn the_hosts_empty_refusals_are_the_key() {
        let bare = headers(&[(WWW_AUTHENTICATE, "Bearer")]);
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, &bare, true),
            Some(Refusal::Key)
        );
        let none = headers(&[]);
        assert_eq!(
            refusal(StatusCode::FORBIDDEN, &none, true),
            Some(Refusal::Key)
        );
        let invalid = headers(&[(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)]);
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, &invalid, true),
            Some(Refusal::Key)
        );
    }

    #[test]
    fn app_service_authentication_is_not_the_key() {
        let prm = headers(&[(
            WWW_AUTHENTICATE,
            r#"Bearer realm="app.azurewebsites.net", resource_metadata="https://app.azurewebsites.net/.well-known/oauth-protected-resource""#,
        )]);
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, &prm, true),
            Some(Refusal::AppServiceAuth)
        );
        let none = headers(&[]);
        assert_eq!(
            refusal(StatusCode::FORBIDDEN, &none, false),
            Some(Refusal::AppServiceAuth),
            "a page, not the host's empty 403"
        );
        let login = headers(&[(
            LOCATION,
            "https://app.azurewebsites.net/.auth/login/aad?post_login_redirect_uri=/",
        )]);
        assert_eq!(
            refusal(StatusCode::FOUND, &login, false),
            Some(Refusal::AppServiceAuth)
        );
        let elsewhere = headers(&[(LOCATION, "/elsewhere")]);
        assert_eq!(refusal(StatusCode::FOUND, &elsewhere, false), None);
        assert_eq!(refusal(StatusCode::OK, &none, false), None);
        assert_eq!(refusal(StatusCode::NOT_FOUND, &none, true), None);
    }
}
