//! Every request the sidecar makes on its own behalf — OIDC discovery and the JWKS, the
//! facade's IdP token endpoint, Client ID Metadata Documents, Entra and Key Vault — uses a
//! client from [`client_builder`] and reads its answer with [`read_capped`] or [`read_json`]:
//! the same user agent, connect timeout, redirect rules and TLS roots (reqwest's rustls with
//! the bundled web roots, plus any extra CA a caller is configured with), and no answer read
//! without a size limit. The upstream Function App is not among them: `proxy` streams it
//! through its own hyper client.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;

pub const USER_AGENT: &str = concat!("mcp-gateway-sidecar/", env!("CARGO_PKG_VERSION"));
/// No peer of the sidecar's takes longer than this to accept a connection when it is up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a client follows redirects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// For requests that carry a credential (a client secret, an assertion, a bearer token)
    /// and for addresses checked before the request (SSRF guard): a redirect would send them
    /// somewhere unchecked.
    Never,
    /// For public documents fetched without credentials (discovery, JWKS): up to this many.
    UpTo(usize),
}

/// The CA certificates of `trustedCaFile`, which every client of this process trusts besides
/// the bundled roots. Process-wide like a system trust store: set once by `main` before any
/// client is built, so no constructor has to carry it.
static TRUSTED_ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Trusts `roots` in every client built from now on. Only the first call counts.
pub fn trust_process_wide(roots: Vec<reqwest::Certificate>) {
    let _ = TRUSTED_ROOTS.set(roots);
}

/// A client builder with the sidecar's rules; the caller may add more (`resolve`) and builds.
pub fn client_builder(
    timeout: Duration,
    redirects: Redirects,
    extra_roots: &[reqwest::Certificate],
) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .redirect(match redirects {
            Redirects::Never => reqwest::redirect::Policy::none(),
            Redirects::UpTo(n) => reqwest::redirect::Policy::limited(n),
        });
    for root in TRUSTED_ROOTS.get().into_iter().flatten().chain(extra_roots) {
        builder = builder.add_root_certificate(root.clone());
    }
    builder
}

/// A client with the sidecar's rules and the bundled roots only.
pub fn client(timeout: Duration, redirects: Redirects) -> reqwest::Client {
    client_builder(timeout, redirects, &[])
        .build()
        .expect("an HTTP client with bundled roots and no extra CA always builds")
}

/// The CA certificates of `trustedCaFile` that can be trust anchors, and how many others it
/// held. A system bundle (trust-manager's with the default CAs) can carry a certificate the
/// TLS stack cannot use as an anchor; that one is skipped, not fatal. At least one must be
/// usable.
pub fn load_trusted_roots(path: &Path) -> Result<(Vec<reqwest::Certificate>, usize), String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    const SETTING: &str = "trustedCaFile";
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {SETTING} {}: {e}", path.display()))?;
    let total = certs.len();
    let usable: Vec<reqwest::Certificate> = certs
        .into_iter()
        .filter(|der| rustls::RootCertStore::empty().add(der.clone()).is_ok())
        .filter_map(|der| reqwest::Certificate::from_der(&der).ok())
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "{SETTING} {} holds no PEM certificate usable as a CA ({total} found)",
            path.display()
        ));
    }
    let skipped = total - usable.len();
    Ok((usable, skipped))
}

/// The CA certificates of a PEM file, for [`client_builder`]. `setting` names the config
/// field, for the error.
pub fn load_roots(path: &Path, setting: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read {setting} {}: {e}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    if roots.is_empty() {
        return Err(format!(
            "{setting} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// Why an answer could not be read. Never holds any of the answer's bytes: an answer can carry
/// a token or echo the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
    #[error("the answer is not the expected JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
}

/// The body of `response`, refused once it grows past `max` bytes (before reading at all
/// when `Content-Length` already says so).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Failed(describe(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_capped`], then JSON into `T`. The error gives the position only (serde's message
/// may quote the answer).
pub async fn read_json<T: DeserializeOwned>(
    response: reqwest::Response,
    max: usize,
) -> Result<T, ReadError> {
    let body = read_capped(response, max).await?;
    parse_json(&body)
}

/// JSON into `T`, with an error that quotes nothing.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ReadError> {
    serde_json::from_slice(body).map_err(|e| ReadError::NotJson {
        line: e.line(),
        column: e.column(),
    })
}

/// A request error and its causes, without the URL (which the caller names itself).
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP server on 127.0.0.1 answering every request with `status` and `body` (with or
    /// without a `Content-Length`, to exercise both ways of hitting a limit).
    pub(crate) async fn serve(status: u16, body: Vec<u8>, content_length: bool) -> String {
        serve_routes(move |_, _| (status, body.clone()), content_length).await
    }

    /// An HTTP server on 127.0.0.1 whose answers `route(base URL, path)` decides.
    pub(crate) async fn serve_routes(
        route: impl Fn(&str, &str) -> (u16, Vec<u8>) + Send + Sync + 'static,
        content_length: bool,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let route = std::sync::Arc::new(route);
        let server_base = base.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (route, base) = (route.clone(), server_base.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                    let (status, body) = route(&base, &path);
                    let length = if content_length {
                        format!("Content-Length: {}\r\n", body.len())
                    } else {
                        String::new()
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn answers_are_capped_with_or_without_a_length() {
        let http = client(Duration::from_secs(5), Redirects::Never);
        for content_length in [true, false] {
            let base = serve(200, vec![b' '; 2048], content_length).await;
            let response = http.get(&base).send().await.unwrap();
            assert_eq!(
                read_capped(response, 1024).await,
                Err(ReadError::TooLarge(1024)),
                "content_length: {content_length}"
            );
            let response = http.get(&base).send().await.unwrap();
            assert_eq!(read_capped(response, 2048).await.unwrap().len(), 2048);
        }
    }

    #[tokio::test]
    async fn json_errors_quote_nothing() {
        let http = client(Duration::from_secs(5), Redirects::Never);
        let base = serve(200, br#"{"id_token": 12345678}"#.to_vec(), true).await;
        let response = http.get(&base).send().await.unwrap();
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Tokens {
            id_token: String,
        }
        let error = read_json::<Tokens>(response, 1024).await.unwrap_err();
        assert!(matches!(error, ReadError::NotJson { .. }), "{error}");
        assert!(!error.to_string().contains("12345678"), "{error}");
    }

    /// A system-sized bundle with one certificate that cannot be an anchor: that one is
    /// skipped, the rest trusted (found in review: one bad entry used to stop the sidecar).
    #[test]
    fn an_unusable_certificate_in_a_bundle_is_skipped_not_fatal() {
        let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
            .expect("the system CA bundle (apt-get install ca-certificates)");
        let dir = std::env::temp_dir().join(format!("mcpgw-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bundle.pem");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        std::fs::write(&file, format!("{system}{garbage}")).unwrap();
        let (usable, skipped) = load_trusted_roots(&file).unwrap();
        assert_eq!(skipped, 1);
        assert!(usable.len() > 50, "{}", usable.len());
        // Every usable one builds into a client (reqwest refuses a bad root at build time).
        client_builder(Duration::from_secs(1), Redirects::Never, &usable)
            .build()
            .unwrap();
        std::fs::write(&file, garbage).unwrap();
        let error = load_trusted_roots(&file).unwrap_err();
        assert!(error.contains("no PEM certificate usable"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
