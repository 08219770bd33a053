//! The checks on a spec that the CRD's CEL rules also make at admission, made again before
//! anything is rendered: an McpGateway stored before a rule existed (CEL ratcheting keeps
//! it), or written by a client that skipped validation, must not reach a ConfigMap. Every
//! rule here has its twin in `crds/src/v1alpha1.rs` with the same message; the table test in
//! `tests/tests/crd_api.rs` proves that whatever admission lets through passes here too.
//!
//! Messages never repeat the offending value: an upstream URL may carry the system key.

use mcp_gateway_crds::v1alpha1::McpGatewaySpec;

/// Objects are named `<gateway>-gateway`; a Service name is a DNS label of at most 63.
pub const MAX_NAME_LEN: usize = 55;

pub fn check(name: &str, spec: &McpGatewaySpec) -> Result<(), String> {
    gateway_name(name)?;
    upstream_url(&spec.upstream.url)?;
    upstream_path(&spec.upstream.path)?;
    route_host(&spec.route.host)?;
    path_prefix(&spec.route.path_prefix)?;
    if let Some(oidc) = &spec.auth.oidc {
        issuer("auth.oidc.issuer", &oidc.issuer)?;
        if oidc.jwks_uri.as_deref().is_some_and(|u| u.contains('#')) {
            return Err("auth.oidc.jwksUri must have no fragment".into());
        }
        scopes("auth.oidc.requiredScopes", &oidc.required_scopes)?;
    }
    if let Some(server) = &spec.auth.authorization_server {
        issuer("auth.authorizationServer.idp.issuer", &server.idp.issuer)?;
        scopes("auth.authorizationServer.idp.scopes", &server.idp.scopes)?;
        scopes("auth.authorizationServer.scopes", &server.scopes)?;
    }
    Ok(())
}

fn gateway_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "metadata.name is {} characters; use at most {MAX_NAME_LEN} so the objects named after it are valid",
            name.len()
        ));
    }
    if !is_dns_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("metadata.name must be lowercase letters, digits and '-', starting with a letter: the gateway's Service is named <name>-gateway".into());
    }
    Ok(())
}

/// The Function App's base URL: scheme, host, port. Anything else is either a mistake
/// (the MCP path) or a secret (`?code=<key>`, `user:password@`) that would be copied into
/// the ConfigMap and the printer column.
fn upstream_url(raw: &str) -> Result<(), String> {
    if raw.contains('?') || raw.contains('#') {
        return Err("upstream.url must have no query or fragment: the key belongs in systemKey, never in the URL (no ?code=); write the app's base URL such as https://my-app.azurewebsites.net".into());
    }
    if raw.contains('@') {
        return Err("upstream.url must not contain credentials (user:password@): the key belongs in systemKey; write the app's base URL such as https://my-app.azurewebsites.net".into());
    }
    let url: url::Url = raw
        .parse()
        .map_err(|_| "upstream.url is not a valid URL".to_string())?;
    if url.path() != "/" {
        return Err("upstream.url must be the app's base URL with no path, such as https://my-app.azurewebsites.net; the MCP path is upstream.path".into());
    }
    Ok(())
}

/// The upstream path is appended to the base URL as written, so it must need no escaping
/// and no normalization: a `.` segment or `%2e` would reach another endpoint of the host.
fn upstream_path(path: &str) -> Result<(), String> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let ok = path.starts_with('/')
        && !path.contains("..")
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b))
        });
    if !ok {
        return Err("upstream.path must be an absolute path such as /runtime/webhooks/mcp: letters, digits and -._~!$&'()*+,;=:@ in segments, no '%', '?', '#' or '..', no empty or '.' segments, no trailing '/'".into());
    }
    Ok(())
}

fn route_host(host: &str) -> Result<(), String> {
    if host.len() > 253 || !host.split('.').all(is_dns_label) {
        return Err("route.host must be a lowercase DNS name such as mcp.example.com (no scheme, port or path; labels of at most 63 characters)".into());
    }
    let last = host.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("route.host must be a DNS name, not an IP address: MCP clients and certificates need a name such as mcp.example.com".into());
    }
    Ok(())
}

fn path_prefix(prefix: &str) -> Result<(), String> {
    let reserved = prefix
        .split('/')
        .any(|segment| segment == ".well-known" || segment == "oauth");
    if reserved {
        return Err("route.pathPrefix must not contain a .well-known or oauth segment: the gateway serves its OAuth metadata and sign-in endpoints there; choose a prefix such as /weather".into());
    }
    Ok(())
}

fn issuer(field: &str, issuer: &str) -> Result<(), String> {
    if issuer.contains('?') || issuer.contains('#') {
        return Err(format!(
            "{field} must have no query or fragment (OpenID Connect issuers have none)"
        ));
    }
    Ok(())
}

/// RFC 6749's scope-token: printable ASCII but space, `"` and `\`.
fn scopes(field: &str, scopes: &[String]) -> Result<(), String> {
    let token = |s: &String| {
        !s.is_empty()
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    };
    if !scopes.iter().all(token) {
        return Err(format!(
            "{field} must be scope names such as mcp.tools: printable ASCII without spaces, quotes or backslashes"
        ));
    }
    Ok(())
}

/// A DNS-1123 label: 1-63 lowercase letters, digits and `-`, alphanumeric at both ends.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_the_upstream_url_are_refused_without_being_repeated() {
        for url in [
            "https://app.azurewebsites.net/runtime/webhooks/mcp?code=SYSKEY-abc",
            "https://app.azurewebsites.net?code=SYSKEY-abc",
            "https://app.azurewebsites.net/#SYSKEY-abc",
            "https://user:SYSKEY-abc@app.azurewebsites.net",
        ] {
            let err = upstream_url(url).unwrap_err();
            assert!(err.contains("systemKey"), "{err}");
            assert!(
                !err.contains("SYSKEY"),
                "the message repeats the value: {err}"
            );
        }
        let err = upstream_url("https://app.azurewebsites.net/runtime/webhooks/mcp").unwrap_err();
        assert!(err.contains("upstream.path"), "{err}");
        assert!(upstream_url("https://app.azurewebsites.net").is_ok());
        assert!(upstream_url("https://app.azurewebsites.net/").is_ok());
        assert!(upstream_url("http://127.0.0.1:7071").is_ok());
    }

    #[test]
    fn upstream_paths_need_no_normalization() {
        assert!(upstream_path("/runtime/webhooks/mcp").is_ok());
        assert!(upstream_path("/api/a.b~c").is_ok());
        for bad in [
            "runtime",
            "/",
            "/a/",
            "//a",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/.",
            "/a/%2e%2e",
            "/a?b",
            "/a#b",
            "/a b",
        ] {
            assert!(upstream_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_dns_names() {
        assert!(route_host("mcp.example.com").is_ok());
        assert!(route_host(&format!("{}.example.com", "a".repeat(63))).is_ok());
        for bad in [
            "10.0.0.1",
            "mcp.123",
            &format!("{}.example.com", "a".repeat(64)),
            "-a.example.com",
            "a..b",
            "MCP.example.com",
        ] {
            assert!(route_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_prefixes_names_issuers_and_scopes() {
        for bad in [
            "/.well-known",
            "/.well-known/oauth-protected-resource/v",
            "/v/oauth",
            "/oauth/x",
        ] {
            assert!(path_prefix(bad).is_err(), "{bad}");
        }
        assert!(path_prefix("/oauthx/well-known").is_ok());
        assert!(gateway_name(&"a".repeat(55)).is_ok());
        for bad in ["a".repeat(56), "1weather".into(), "a.b".into(), "a-".into()] {
            assert!(gateway_name(&bad).is_err(), "{bad}");
        }
        assert!(issuer("f", "https://login.microsoftonline.com/t/v2.0").is_ok());
        assert!(issuer("f", "https://idp/t?x=1").is_err());
        assert!(scopes("f", &["api://app/mcp.tools".into(), "openid".into()]).is_ok());
        for bad in ["a b", "a\tb", "a\"b", "", "é"] {
            assert!(scopes("f", &[bad.to_string()]).is_err(), "{bad:?}");
        }
    }
}
