//! OpenID Connect discovery, once for both users of it: the resource server (which needs the
//! JWKS) and the facade (which also needs the authorization and token endpoints). The document
//! must name exactly the configured issuer, and its URLs must be http(s).

use url::Url;

use crate::fetch::{self, ReadError};

/// Largest discovery document or JWKS accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What the sidecar uses of a discovery document.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: Url,
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    #[serde(default)]
    pub token_endpoint: Option<Url>,
}

/// `<issuer>/.well-known/openid-configuration`; a multi-tenant template's is the
/// `organizations` one, which names the template as its issuer (as Entra's does).
pub fn url(issuer: &str) -> Result<Url, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer
            .replace(crate::config::TENANT_PLACEHOLDER, "organizations")
            .trim_end_matches('/')
    );
    Url::parse(&url).map_err(|e| format!("issuer {issuer} is not a URL: {e}"))
}

/// A GET of a public JSON document, capped at [`MAX_DOCUMENT_BYTES`]; errors name the URL.
pub async fn get(http: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let response = http
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url} failed: {}", fetch::describe(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url} answered {}", response.status()));
    }
    fetch::read_capped(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge(max) => format!("GET {url} answered more than {max} bytes"),
            e => format!("GET {url} failed: {e}"),
        })
}

/// Fetches and checks `issuer`'s discovery document. The error is for operators: it names the
/// URL and what was wrong with the answer.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    let url = url(issuer)?;
    let body = get(http, &url).await?;
    let doc: Discovery = fetch::parse_json(&body)
        .map_err(|e| format!("discovery document {url} is not valid: {e}"))?;
    if doc.issuer != issuer {
        return Err(format!(
            "discovery document {url} names issuer {:?}, not the configured {:?}",
            doc.issuer, issuer
        ));
    }
    let endpoints = [
        Some(&doc.jwks_uri),
        doc.authorization_endpoint.as_ref(),
        doc.token_endpoint.as_ref(),
    ];
    if endpoints
        .into_iter()
        .flatten()
        .any(|u| !matches!(u.scheme(), "https" | "http"))
    {
        return Err(format!(
            "discovery document {url} names an endpoint that is not http(s)"
        ));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fetch::tests::serve;
    use crate::fetch::{Redirects, client};

    #[tokio::test]
    async fn the_document_must_name_the_issuer_and_fit_the_limit() {
        let http = client(Duration::from_secs(5), Redirects::Never);
        // The server answers the same document at every path, so its base is the issuer.
        let doc = |issuer: &str| {
            serde_json::json!({"issuer": issuer, "jwks_uri": "https://idp.example/keys",
                "token_endpoint": "https://idp.example/token"})
            .to_string()
            .into_bytes()
        };
        let base = serve(200, doc("https://other.example"), true).await;
        let err = discover(&http, &base).await.unwrap_err();
        assert!(err.contains("names issuer"), "{err}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = discover(&http, &issuer).await.unwrap_err();
        assert!(err.contains("GET") && err.contains("failed"), "{err}");

        let mut big = doc("x");
        big.resize(MAX_DOCUMENT_BYTES + 1, b' ');
        let base = serve(200, big, false).await;
        let err = discover(&http, &base).await.unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }
}
