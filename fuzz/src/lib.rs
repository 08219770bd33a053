//! What the fuzz targets share: the OIDC fixture (test keys, JWKS, policy, tokens), a reference
//! SSE client, and query checks written independently of the sidecar's own.

pub mod oidc;
pub mod query;
pub mod sse_client;

/// Makes the sidecar's JWT crypto provider (aws-lc-rs) the process default. This crate enables
/// two providers (see Cargo.toml), so jsonwebtoken cannot pick one by itself: every target
/// that reaches JWT code calls this first (after the first call it is a no-op).
pub fn crypto() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Splits `data` at each `sep`, into exactly `n` fields (missing ones empty, the last one
/// taking the rest). The targets read several strings out of one input this way, so seeds
/// stay readable files.
pub fn fields(data: &[u8], sep: u8, n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 1..n {
        match rest.iter().position(|&b| b == sep) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => {
                out.push(rest);
                rest = &[];
            }
        }
    }
    out.push(rest);
    out
}
