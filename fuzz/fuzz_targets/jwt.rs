//! Bearer-token validation (`auth::StaticVerifier`: the `Authenticator`'s checks without
//! fetching or caching) against the fixture JWKS. The first byte picks the mode:
//!
//! - 0: the rest is the `Authorization` header value. Anything accepted must be one of the
//!   seed tokens this fixture signed as valid (no signature can be forged), with the
//!   principal its claims give.
//! - 1: the rest is a claims set, signed here with the Ed25519 key (`kid: ed`): whatever is
//!   accepted must satisfy the policy (issuer, audience, exp/nbf, tenant, scope, subject).
//! - 2: the rest is `<signer byte><JOSE header>\0<claims>`: a header of the input's choosing,
//!   signed by a signer of its choosing (a real key, HMAC with the RSA public key or the
//!   JWKS's `oct` secret, a 1024-bit RSA key, or no signature; RSA signatures, which are slow,
//!   only when the header names their `alg`). Accepted only if the signer's key is usable
//!   under the header's `alg` and `kid`, and the claims satisfy the policy.
//!
//! Every refusal must be a 401/403 with a reason from the closed set.

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::fields;
use mcp_gateway_fuzz::oidc::{self, Signer, VERIFIER};
use mcp_gateway_sidecar::auth::{AuthError, Principal};

/// Signing input of each valid seed token → its claims.
static VALID: LazyLock<HashMap<String, Vec<u8>>> = LazyLock::new(|| {
    oidc::seed_tokens()
        .into_iter()
        .filter(|(_, _, _, _, valid)| *valid)
        .map(|(_, header, claims, signer, _)| {
            let token = oidc::sign(header.as_bytes(), claims.to_string().as_bytes(), &signer);
            let input = token.rsplit_once('.').unwrap().0.to_string();
            (input, claims.to_string().into_bytes())
        })
        .collect()
});

const REASONS: [&str; 14] = [
    "missing",
    "wrong_scheme",
    "malformed",
    "oversized",
    "insufficient_scope",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "unknown_key",
    "disallowed_alg",
    "wrong_tenant",
    // A token from Entra's v1 endpoint (`https://sts.windows.net/<tid>/`) where v2 is
    // configured: refused with its own hint (issue 15); the oracle had not learnt it.
    "entra_v1_token",
];

fn check_refusal(error: &AuthError) {
    assert!(REASONS.contains(&error.reason()), "{error:?}");
    assert!(matches!(error.status(), 401 | 403), "{error:?}");
}

fn verify(header: &HeaderValue) -> Result<Principal, AuthError> {
    let result = VERIFIER.verify(Some(header));
    if let Err(error) = &result {
        check_refusal(error);
    }
    result
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("a signed token is a header value")
}

fuzz_target!(|data: &[u8]| {
    mcp_gateway_fuzz::crypto();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(header) = HeaderValue::from_bytes(rest) else {
                return;
            };
            if let Ok(principal) = verify(&header) {
                // Scheme, then the token (the only other bytes a valid header can hold).
                let text = header.to_str().expect("an accepted header is ASCII");
                let token = text.split_once(' ').expect("scheme and token").1.trim();
                let (input, _) = token.rsplit_once('.').unwrap();
                let claims = VALID.get(input).unwrap_or_else(|| {
                    panic!("accepted a token this fixture never signed: {token}")
                });
                oidc::assert_claims_justify(claims, &principal);
            }
        }
        1 => {
            let token = oidc::sign(br#"{"alg":"EdDSA","kid":"ed"}"#, rest, &Signer::EdDsa);
            if let Ok(principal) = verify(&bearer(&token)) {
                oidc::assert_claims_justify(rest, &principal);
            }
        }
        _ => {
            let Some((&selector, rest)) = rest.split_first() else {
                return;
            };
            let parts = fields(rest, 0, 2);
            let (header, claims) = (parts[0], parts[1]);
            let signer = Signer::from_byte(selector);
            // An RSA signature costs milliseconds here and cannot verify under another `alg`
            // than its own, so it is only computed when the header names that `alg`.
            let named = serde_json::from_slice::<serde_json::Value>(header)
                .ok()
                .and_then(|h| h.get("alg")?.as_str().map(|a| a == signer.alg()));
            let slow = matches!(signer.alg(), "RS256" | "PS256");
            let token = if slow && named != Some(true) {
                oidc::sign(
                    header,
                    claims,
                    &Signer::Hs256(b"not an RSA signature".to_vec()),
                )
            } else {
                oidc::sign(header, claims, &signer)
            };
            if let Ok(principal) = verify(&bearer(&token)) {
                let Some((alg, kids)) = signer.usable_as() else {
                    panic!("accepted a token signed by {signer:?}");
                };
                let header: serde_json::Value =
                    serde_json::from_slice(header).expect("accepted header is JSON");
                assert_eq!(
                    header["alg"].as_str(),
                    Some(alg),
                    "{signer:?} under {header}"
                );
                match header.get("kid").and_then(|k| k.as_str()) {
                    Some(kid) => assert!(kids.contains(&kid), "{signer:?} under kid {kid}"),
                    // Without kid, only a key that is its type's only one may be picked.
                    None => assert!(
                        matches!(signer, Signer::Es256 | Signer::EdDsa),
                        "{signer:?} picked without kid among several keys"
                    ),
                }
                oidc::assert_claims_justify(claims, &principal);
            }
        }
    }
});
