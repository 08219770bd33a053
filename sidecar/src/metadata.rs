//! Protected Resource Metadata (RFC 9728): how a client learns which authorization server
//! issues tokens for this MCP endpoint.

use serde_json::{Value, json};

use crate::config::{AuthConfig, Config};

/// The metadata document, or `None` when clients do not authenticate (Anonymous).
pub fn protected_resource_metadata(config: &Config) -> Option<Value> {
    let (issuer, scopes) = match &config.auth {
        AuthConfig::Oidc(oidc) => (oidc.discovery_issuer(), &oidc.required_scopes),
        AuthConfig::AuthorizationServer(facade) => (config.issuer_url(), &facade.scopes),
        AuthConfig::Anonymous => return None,
    };
    Some(json!({
        "resource": config.resource_url(),
        "authorization_servers": [issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_exact_resource_and_issuer() {
        let config: Config = serde_yaml::from_str(
            "publicBaseUrl: https://mcp.example.com\npathPrefix: /weather\nupstream: {url: https://fn.example}\nsystemKey: {file: /k}\nauth: {mode: Oidc, issuer: 'https://idp.example/t/v2.0', audiences: [x], requiredScopes: [mcp.tools]}\n",
        )
        .unwrap();
        let doc = protected_resource_metadata(&config).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/weather/mcp");
        assert_eq!(
            doc["authorization_servers"][0],
            "https://idp.example/t/v2.0"
        );
        assert_eq!(doc["scopes_supported"][0], "mcp.tools");
        assert_eq!(doc["bearer_methods_supported"][0], "header");
    }
}
