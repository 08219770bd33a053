//! Clients of the facade: registration requests (RFC 7591), Client ID Metadata Documents,
//! and redirect URI rules (OAuth 2.1: HTTPS, or loopback for native apps, matched exactly
//! except for a loopback port). Pure.

use serde::Deserialize;
use url::Url;

/// A client as the facade knows it, however it was registered.
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Whether the client_id is a metadata document URL (shown on the consent page).
    pub metadata_document: bool,
}

/// Most redirect URIs a client may register.
const MAX_REDIRECT_URIS: usize = 4;
const MAX_URI_LEN: usize = 512;
const MAX_NAME_LEN: usize = 100;

/// A registration request's fields the facade reads; the rest is ignored (RFC 7591 lets
/// the server drop metadata it does not support).
#[derive(Deserialize, Debug, Default)]
pub struct Metadata {
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
}

/// Why a registration or a metadata document is refused (`invalid_redirect_uri` or
/// `invalid_client_metadata`), with a description safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: &'static str,
    pub description: String,
}

fn refuse(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal {
        error,
        description: description.into(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A redirect URI a client may register: absolute, no fragment, and HTTPS or an http
/// loopback address.
pub fn check_redirect_uri(uri: &str) -> Result<(), Refusal> {
    let bad = |why: &str| refuse("invalid_redirect_uri", format!("redirect URI {why}"));
    if uri.len() > MAX_URI_LEN {
        return Err(bad("is too long"));
    }
    let url = Url::parse(uri).map_err(|_| bad("is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    if url.username() != "" || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => Err(bad(
            "must be https, or http on a loopback address (127.0.0.1, [::1], localhost)",
        )),
    }
}

/// Checks what a client asks to register with.
pub fn check_metadata(metadata: &Metadata) -> Result<(), Refusal> {
    if metadata.redirect_uris.is_empty() {
        return Err(refuse(
            "invalid_redirect_uri",
            "redirect_uris needs at least one URI",
        ));
    }
    if metadata.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(refuse(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    for uri in &metadata.redirect_uris {
        check_redirect_uri(uri)?;
    }
    if let Some(name) = &metadata.client_name
        && (name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control))
    {
        return Err(refuse(
            "invalid_client_metadata",
            format!("client_name must be at most {MAX_NAME_LEN} printable characters"),
        ));
    }
    if let Some(grants) = &metadata.grant_types
        && grants
            .iter()
            .any(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(refuse(
            "invalid_client_metadata",
            "grant_types may only be authorization_code and refresh_token",
        ));
    }
    if let Some(types) = &metadata.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err(refuse(
            "invalid_client_metadata",
            "response_types may only be code",
        ));
    }
    Ok(())
}

/// The registered URI that `requested` names: equal, or for a loopback URI equal but for
/// the port (RFC 8252 §7.3: native apps pick a free port at run time).
pub fn match_redirect_uri<'a>(registered: &'a [String], requested: &str) -> Option<&'a String> {
    let requested_url = Url::parse(requested).ok()?;
    registered.iter().find(|r| {
        if r.as_str() == requested {
            return true;
        }
        let Ok(mut registered_url) = Url::parse(r) else {
            return false;
        };
        if requested_url.scheme() != "http" || !is_loopback(&requested_url) {
            return false;
        }
        let _ = registered_url.set_port(requested_url.port());
        registered_url == requested_url
    })
}

/// A Client ID Metadata Document's URL: https, a path, no fragment, no credentials.
pub fn check_metadata_url(client_id: &str) -> Result<Url, Refusal> {
    let bad = |why: &str| refuse("invalid_client", format!("client_id URL {why}"));
    let url = Url::parse(client_id).map_err(|_| bad("is not a URL"))?;
    if url.scheme() != "https" {
        return Err(bad("must be https"));
    }
    if url.path() == "/" || url.fragment().is_some() || url.username() != "" {
        return Err(bad("must have a path and no fragment or credentials"));
    }
    Ok(url)
}

/// Reads a fetched metadata document for `client_id`: its `client_id` must be the URL it
/// was fetched from.
pub fn client_from_document(client_id: &str, body: &[u8]) -> Result<Client, Refusal> {
    let metadata: Metadata = serde_json::from_slice(body).map_err(|_| {
        refuse(
            "invalid_client",
            "the client metadata document is not a JSON object",
        )
    })?;
    if metadata.client_id.as_deref() != Some(client_id) {
        return Err(refuse(
            "invalid_client",
            "the client metadata document's client_id is not its own URL",
        ));
    }
    check_metadata(&metadata).map_err(|r| refuse("invalid_client", r.description))?;
    Ok(Client {
        client_id: client_id.to_string(),
        name: metadata.client_name,
        redirect_uris: metadata.redirect_uris,
        metadata_document: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback() {
        assert!(check_redirect_uri("https://claude.ai/api/mcp/auth_callback").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:33418/callback").is_ok());
        assert!(check_redirect_uri("http://localhost/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]:8080/cb").is_ok());
        for bad in [
            "http://example.com/cb",
            "https://a.example/cb#frag",
            "https://user:pw@a.example/cb",
            "javascript:alert(1)",
            "cb",
        ] {
            assert_eq!(
                check_redirect_uri(bad).unwrap_err().error,
                "invalid_redirect_uri",
                "{bad}"
            );
        }
    }

    #[test]
    fn matching_is_exact_but_for_a_loopback_port() {
        let registered = vec![
            "http://127.0.0.1/callback".to_string(),
            "https://app.example/cb".to_string(),
        ];
        assert!(match_redirect_uri(&registered, "http://127.0.0.1:5555/callback").is_some());
        assert!(match_redirect_uri(&registered, "https://app.example/cb").is_some());
        assert!(match_redirect_uri(&registered, "https://app.example/cb/").is_none());
        assert!(match_redirect_uri(&registered, "https://app.example:444/cb").is_none());
        assert!(match_redirect_uri(&registered, "http://127.0.0.1:5555/other").is_none());
        assert!(match_redirect_uri(&registered, "https://app.example/cb?x=1").is_none());
    }

    #[test]
    fn metadata_documents_must_name_themselves() {
        let url = "https://client.example/mcp.json";
        let doc = br#"{"client_id": "https://client.example/mcp.json", "client_name": "C",
                      "redirect_uris": ["http://127.0.0.1/cb"]}"#;
        let client = client_from_document(url, doc).unwrap();
        assert!(client.metadata_document);
        assert_eq!(client.name.as_deref(), Some("C"));
        let other =
            br#"{"client_id": "https://evil.example/x", "redirect_uris": ["http://127.0.0.1/cb"]}"#;
        assert!(client_from_document(url, other).is_err());
        assert!(check_metadata_url("http://client.example/x").is_err());
        assert!(check_metadata_url("https://client.example/").is_err());
        assert!(check_metadata_url(url).is_ok());
    }
}
