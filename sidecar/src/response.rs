//! Every response the gateway writes itself (as opposed to the upstream's, which `proxy`
//! streams through): status, body, content type and the caching and browser-security headers
//! that go with each kind. One place, so a kind of response carries the same headers wherever
//! it is built.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, Body};

/// The consent and error pages may post only to the gateway, to https redirect URIs and to
/// loopback clients, and load nothing.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'";

/// `body` as `content_type`.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A short message for people (`text/plain; charset=utf-8`).
pub fn plain(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", message)
}

/// A JSON document.
pub fn json(status: StatusCode, document: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "application/json", document)
}

/// An answer of the authorization server (metadata, registration, token, OAuth errors):
/// never cached (it may hold tokens), and callable from browser-based clients (no cookies).
pub fn oauth_json(status: StatusCode, document: impl Into<Bytes>) -> Response<Body> {
    let mut r = json(status, document);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// A public, rarely changing document (resource metadata, the facade's JWKS): cacheable for
/// five minutes, readable from any origin.
pub fn public_json(document: impl Into<Bytes>) -> Response<Body> {
    let mut r = json(StatusCode::OK, document);
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// A page for the user's browser: not cached, not framed, posting only where sign-in goes.
pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut r = with_type(status, "text/html; charset=utf-8", page);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// A `302 Found` to `location` that leaks neither itself to caches nor the page's URL (which
/// may carry a code) to the next site. `None` if `location` cannot be a header value.
pub fn redirect(location: &str) -> Option<Response<Body>> {
    let location = HeaderValue::from_str(location).ok()?;
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(r)
}

/// No body, only `headers` (a CORS preflight answer).
pub fn headers_only(status: StatusCode, headers: HeaderMap) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_carries_its_headers() {
        let r = plain(StatusCode::NOT_FOUND, "not found");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");

        let r = oauth_json(StatusCode::CREATED, "{}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");

        let r = public_json("{}");
        assert_eq!(r.headers()["cache-control"], "max-age=300");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");

        let r = html(StatusCode::OK, "<p>hi</p>".into());
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );

        let r = redirect("https://client.example/cb?code=x").unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()["location"], "https://client.example/cb?code=x");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        assert!(redirect("https://a.example/\n").is_none());
    }
}
