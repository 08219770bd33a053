//! The fixture does what the targets assume (`cargo test` in `fuzz/`, stable is fine): seed
//! tokens verify exactly when marked valid, and accepted ones pass the claims check.

use http::HeaderValue;
use mcp_gateway_fuzz::oidc::{self, Signer, VERIFIER};

#[test]
fn seed_tokens_verify_exactly_when_marked_valid() {
    assert_eq!(VERIFIER.key_count(), 4);
    for (name, header, claims, signer, valid) in oidc::seed_tokens() {
        let claims = claims.to_string();
        let token = oidc::sign(header.as_bytes(), claims.as_bytes(), &signer);
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let result = VERIFIER.verify(Some(&value));
        assert_eq!(result.is_ok(), valid, "{name}: {result:?}");
        if let Ok(principal) = result {
            oidc::assert_claims_justify(claims.as_bytes(), &principal);
            assert!(signer.usable_as().is_some(), "{name}");
        }
    }
}

#[test]
fn signers_outside_the_jwks_never_verify() {
    let claims = oidc::good_claims().to_string();
    for signer in [Signer::Rs256Small, Signer::Ps256B, Signer::Empty] {
        for header in [
            r#"{"alg":"RS256","kid":"rsa-small"}"#,
            r#"{"alg":"PS256","kid":"rsa-b"}"#,
        ] {
            let token = oidc::sign(header.as_bytes(), claims.as_bytes(), &signer);
            let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
            assert!(
                VERIFIER.verify(Some(&value)).is_err(),
                "{signer:?} {header}"
            );
        }
    }
}
