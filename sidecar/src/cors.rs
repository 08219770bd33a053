//! Browser access: which origins may call the gateway, and the CORS headers they get.
//! Non-browser MCP clients send no `Origin` and are unaffected.

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::Config;

/// Request headers MCP clients send (reference: mcp.md, CORS).
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID";
const EXPOSE_HEADERS: &str = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The origin policy, built once from config.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    own: String,
    allowed: Vec<String>,
    any: bool,
}

impl OriginPolicy {
    pub fn new(config: &Config) -> Self {
        let own = config.public_base_url.origin().ascii_serialization();
        let any = config.allowed_origins.iter().any(|o| o == "*");
        let allowed = config
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        Self { own, allowed, any }
    }

    /// Whether a request with these headers may proceed: no `Origin`, or an allowed one.
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            None => true,
            Some(Ok(origin)) => self.permits_origin(origin),
            Some(Err(_)) => false,
        }
    }

    fn permits_origin(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.any || origin == self.own || self.allowed.contains(&origin)
    }

    /// CORS headers for a response to a request from an allowed origin.
    /// `origin` is the request's `Origin` header, if any.
    pub fn response_headers(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        let Some(origin) = origin else {
            return;
        };
        if !origin.to_str().is_ok_and(|o| self.permits_origin(o)) {
            return;
        }
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }

    /// Headers answering a preflight from an allowed origin (`None`: not allowed).
    pub fn preflight(&self, request: &HeaderMap) -> Option<HeaderMap> {
        let origin = request.get(header::ORIGIN)?;
        if !origin.to_str().is_ok_and(|o| self.permits_origin(o)) {
            return None;
        }
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        // Allow whatever the browser asks for among MCP's headers plus the `Mcp-Param-*`
        // family, which cannot be listed in advance.
        let asked = request
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let params: Vec<&str> = asked
            .split(',')
            .map(str::trim)
            .filter(|n| n.to_ascii_lowercase().starts_with("mcp-param-"))
            .collect();
        let allow = if params.is_empty() {
            ALLOW_HEADERS.to_string()
        } else {
            format!("{ALLOW_HEADERS}, {}", params.join(", "))
        };
        if let Ok(v) = HeaderValue::from_str(&allow) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> OriginPolicy {
        let mut c: Config = serde_yaml::from_str(
            "publicBaseUrl: https://mcp.example.com\nupstream: {url: https://fn.example}\nsystemKey: {file: /k}\nauth: {mode: Anonymous}\n",
        )
        .unwrap();
        c.allowed_origins = allowed.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&c)
    }

    fn with_origin(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h
    }

    #[test]
    fn origins() {
        let p = policy(&["http://localhost:6274"]);
        assert!(p.permits(&HeaderMap::new()));
        assert!(p.permits(&with_origin("https://mcp.example.com")));
        assert!(p.permits(&with_origin("http://localhost:6274")));
        assert!(!p.permits(&with_origin("https://evil.example")));
        assert!(!p.permits(&with_origin("null")));
        assert!(policy(&["*"]).permits(&with_origin("https://evil.example")));
    }

    #[test]
    fn preflight_allows_mcp_headers_for_allowed_origins_only() {
        let p = policy(&["http://localhost:6274"]);
        let mut req = with_origin("http://localhost:6274");
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, mcp-param-city".parse().unwrap(),
        );
        let h = p.preflight(&req).unwrap();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:6274"
        );
        let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        assert!(allowed.contains("Mcp-Session-Id") && allowed.contains("mcp-param-city"));
        assert!(p.preflight(&with_origin("https://evil.example")).is_none());

        let mut resp = HeaderMap::new();
        p.response_headers(req.get(header::ORIGIN), &mut resp);
        assert!(
            resp[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("WWW-Authenticate")
        );
    }
}
