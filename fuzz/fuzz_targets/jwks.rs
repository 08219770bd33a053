//! JWKS parsing and key/algorithm selection (`auth::StaticVerifier::new`, then `verify`): the
//! input is the IdP's JWKS document. When it parses, tokens signed with the fixture's real keys
//! are checked against it: one may be accepted only if the document holds its key material
//! under its `kid`, of the matching type and curve, not marked for encryption, with `verify`
//! among its `key_ops` and no other `alg` stated. A 1024-bit RSA key is never usable, and
//! neither is anything for an HMAC or `none` token, whatever secret the document offers.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_fuzz::oidc::{self, KEYS, Signer};
use mcp_gateway_sidecar::auth::StaticVerifier;
use serde_json::Value;

struct Probe {
    header: HeaderValue,
    kid: Option<&'static str>,
    alg: &'static str,
    /// The public key the token was signed with.
    key: &'static Jwk,
    /// Must never verify.
    forbidden: bool,
}

static PROBES: LazyLock<Vec<Probe>> = LazyLock::new(|| {
    let k = &*KEYS;
    let claims = oidc::good_claims().to_string();
    let probe = |signer: Signer, alg: &'static str, kid: Option<&'static str>, key, forbidden| {
        let header = match kid {
            Some(kid) => format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#),
            None => format!(r#"{{"alg":"{alg}"}}"#),
        };
        let token = oidc::sign(header.as_bytes(), claims.as_bytes(), &signer);
        Probe {
            header: HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            kid,
            alg,
            key,
            forbidden,
        }
    };
    vec![
        probe(Signer::Rs256A, "RS256", Some("rsa"), &k.rsa_a_jwk, false),
        probe(Signer::Ps256A, "PS256", Some("rsa"), &k.rsa_a_jwk, false),
        probe(Signer::Rs256A, "RS256", None, &k.rsa_a_jwk, false),
        probe(Signer::Rs256B, "RS256", Some("rsa-b"), &k.rsa_b_jwk, false),
        probe(Signer::Es256, "ES256", Some("ec"), &k.ec_jwk, false),
        probe(Signer::Es256, "ES256", None, &k.ec_jwk, false),
        probe(Signer::EdDsa, "EdDSA", Some("ed"), &k.ed_jwk, false),
        probe(Signer::EdDsa, "EdDSA", None, &k.ed_jwk, false),
        probe(
            Signer::Rs256Small,
            "RS256",
            Some("rsa-small"),
            &k.rsa_small_jwk,
            true,
        ),
        probe(Signer::Rs256Small, "RS256", None, &k.rsa_small_jwk, true),
    ]
});

fn b64(v: &Value) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.as_str()?).ok()
}

/// An integer's big-endian bytes without leading zeros.
fn int(v: &Value) -> Option<Vec<u8>> {
    let bytes = b64(v)?;
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    Some(bytes[first..].to_vec())
}

fn absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// Whether `entry` (a JWK as JSON) may verify `probe`'s token, by RFC 7517/7518.
fn admits(entry: &Value, probe: &Probe) -> bool {
    let real = serde_json::to_value(probe.key).unwrap();
    let same = |name: &str, f: fn(&Value) -> Option<Vec<u8>>| {
        entry.get(name).and_then(f).is_some() && entry.get(name).and_then(f) == f(&real[name])
    };
    let material = match probe.alg {
        "RS256" | "PS256" => entry["kty"] == "RSA" && same("n", int) && same("e", int),
        "ES256" => {
            entry["kty"] == "EC" && entry["crv"] == "P-256" && same("x", b64) && same("y", b64)
        }
        "EdDSA" => entry["kty"] == "OKP" && entry["crv"] == "Ed25519" && same("x", b64),
        _ => false,
    };
    let kid = match probe.kid {
        Some(kid) => entry["kid"] == kid,
        None => true,
    };
    let ops = absent(entry.get("key_ops"))
        || entry["key_ops"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
    let alg = absent(entry.get("alg")) || entry["alg"] == probe.alg;
    material && kid && entry["use"] != "enc" && ops && alg
}

fuzz_target!(|data: &[u8]| {
    mcp_gateway_fuzz::crypto();
    let Ok(verifier) = StaticVerifier::new(&oidc::config(), data, oidc::MAX_TOKEN_BYTES) else {
        return;
    };
    let doc: Value = serde_json::from_slice(data).expect("a parsed JWKS is JSON");
    // RFC 7517 wants an object; serde also reads a struct from an array (`[[...]]`).
    let keys = match &doc {
        Value::Object(o) => o.get("keys"),
        Value::Array(a) => a.first(),
        _ => None,
    }
    .and_then(Value::as_array)
    .expect("a parsed JWKS has a keys array");
    assert!(verifier.key_count() >= 1 && verifier.key_count() <= keys.len());

    for probe in PROBES.iter() {
        if verifier.verify(Some(&probe.header)).is_ok() {
            assert!(!probe.forbidden, "a {} key verified", probe.alg);
            assert!(
                keys.iter().any(|entry| admits(entry, probe)),
                "{} token (kid {:?}) accepted without an admitting JWK",
                probe.alg,
                probe.kid
            );
        }
    }

    // Symmetric and unsigned tokens never verify, whatever secret a JWK offers for its kid.
    let claims = oidc::good_claims().to_string();
    for entry in keys.iter().take(4) {
        let Some(kid) = entry.get("kid").and_then(Value::as_str) else {
            continue;
        };
        let header = format!(r#"{{"alg":"HS256","kid":{}}}"#, Value::from(kid));
        let mut secrets: Vec<Vec<u8>> = ["k", "n", "x"]
            .iter()
            .filter_map(|name| entry.get(*name))
            .flat_map(|v| [b64(v), v.as_str().map(|s| s.as_bytes().to_vec())])
            .flatten()
            .collect();
        secrets.push(serde_json::to_vec(entry).unwrap());
        let mut signers: Vec<Signer> = secrets.into_iter().map(Signer::Hs256).collect();
        signers.push(Signer::Empty);
        for signer in signers {
            let header = if signer == Signer::Empty {
                format!(r#"{{"alg":"none","kid":{}}}"#, Value::from(kid))
            } else {
                header.clone()
            };
            let token = oidc::sign(header.as_bytes(), claims.as_bytes(), &signer);
            let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
                continue;
            };
            assert!(
                verifier.verify(Some(&value)).is_err(),
                "{header} token verified"
            );
        }
    }
});
