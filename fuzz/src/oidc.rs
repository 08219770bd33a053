//! The token-validation fixture: an Entra-like policy, the sidecar's test keys (plus one RSA key
//! too small to be used), a JWKS naming them, and tokens signed with them.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use mcp_gateway_sidecar::auth::{Principal, StaticVerifier};
use mcp_gateway_sidecar::config::OidcConfig;
use serde_json::{Value, json};

pub const ISSUER: &str =
    "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
pub const AUDIENCES: [&str; 2] = ["api://weather", "https://mcp.example.com/weather/mcp/"];
pub const TENANT: &str = "72F988BF-86F1-41AF-91AB-2D7CD011DB47";
pub const REQUIRED_SCOPE: &str = "api://weather/mcp.tools";
pub const LEEWAY: u64 = 60;
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// 2100-01-01: tokens in the seed corpus stay valid.
pub const FAR_EXP: u64 = 4_102_444_800;

pub fn config() -> OidcConfig {
    OidcConfig {
        issuer: ISSUER.into(),
        audiences: AUDIENCES.iter().map(|a| a.to_string()).collect(),
        required_scopes: vec![REQUIRED_SCOPE.into()],
        allowed_tenants: vec![TENANT.into()],
        jwks_uri: None,
        leeway_seconds: LEEWAY,
    }
}

pub struct Keys {
    pub rsa_a: EncodingKey,
    pub rsa_b: EncodingKey,
    pub rsa_small: EncodingKey,
    pub ec: EncodingKey,
    pub ed: EncodingKey,
    pub rsa_a_jwk: Jwk,
    pub rsa_b_jwk: Jwk,
    pub rsa_small_jwk: Jwk,
    pub ec_jwk: Jwk,
    pub ed_jwk: Jwk,
    /// The RSA public key in PEM, the classic HMAC-secret of an algorithm-confusion attack.
    pub rsa_a_public_pem: &'static [u8],
}

/// The public half of `fixtures/rsa_1024.pem` (`openssl rsa -modulus`), written out because
/// aws-lc-rs refuses to load a key that small, so it cannot derive it.
const RSA_SMALL_N: &str = "u-qkaMY8aAxCzyTVpP94R49taa4-cSTAiITz5nu5M9TZr_hVAoHwr2zhLKDj73wY9E8B2K7Dh00hUeLxz1votKQViIO0LecqYicIbdLcGtxkfv7avlrqMPfbJZkNVok-FAhwOSqH5II1a-YcFwzRQf1eYJZvrZymI3fgJ7xH998";

pub static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    crate::crypto();
    let public = |key: &EncodingKey, alg| {
        let mut jwk = Jwk::from_encoding_key(key, alg).expect("public JWK");
        jwk.common.key_algorithm = None;
        jwk
    };
    let rsa_a =
        EncodingKey::from_rsa_pem(include_bytes!("../../sidecar/src/auth/testdata/rsa_a.pem"))
            .unwrap();
    let rsa_b =
        EncodingKey::from_rsa_pem(include_bytes!("../../sidecar/src/auth/testdata/rsa_b.pem"))
            .unwrap();
    let rsa_small = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa_1024.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(include_bytes!(
        "../../sidecar/src/auth/testdata/ec_p256.pem"
    ))
    .unwrap();
    let ed = EncodingKey::from_ed_pem(include_bytes!(
        "../../sidecar/src/auth/testdata/ed25519.pem"
    ))
    .unwrap();
    Keys {
        rsa_a_jwk: public(&rsa_a, Algorithm::RS256),
        rsa_b_jwk: public(&rsa_b, Algorithm::RS256),
        rsa_small_jwk: serde_json::from_value(json!({"kty": "RSA", "n": RSA_SMALL_N, "e": "AQAB"}))
            .unwrap(),
        ec_jwk: public(&ec, Algorithm::ES256),
        ed_jwk: public(&ed, Algorithm::EdDSA),
        rsa_a,
        rsa_b,
        rsa_small,
        ec,
        ed,
        rsa_a_public_pem: include_bytes!("../../sidecar/src/auth/testdata/rsa_a.pub.pem"),
    }
});

fn entry(jwk: &Jwk, kid: &str, extra: Value) -> Value {
    let mut value = serde_json::to_value(jwk).unwrap();
    value["kid"] = json!(kid);
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    value
}

/// The JWKS the targets verify against. Usable: `rsa` (RSA A, any RSA algorithm), `rsa-b` (RSA
/// B, RS256 only), `ec` (P-256), `ed` (Ed25519). Never usable: `rsa-small` (1024 bits),
/// `rsa-enc` (an encryption key), `hmac` (a symmetric key whose secret is "secret").
pub fn jwks() -> Value {
    let k = &*KEYS;
    json!({"keys": [
        entry(&k.rsa_a_jwk, "rsa", json!({"use": "sig"})),
        entry(&k.rsa_b_jwk, "rsa-b", json!({"alg": "RS256"})),
        entry(&k.ec_jwk, "ec", json!({})),
        entry(&k.ed_jwk, "ed", json!({})),
        entry(&k.rsa_small_jwk, "rsa-small", json!({})),
        entry(&k.rsa_a_jwk, "rsa-enc", json!({"use": "enc"})),
        {"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode("secret")},
    ]})
}

pub static VERIFIER: LazyLock<StaticVerifier> = LazyLock::new(|| {
    crate::crypto();
    StaticVerifier::new(&config(), jwks().to_string().as_bytes(), MAX_TOKEN_BYTES)
        .expect("the fixture JWKS has usable keys")
});

/// How a token is signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    Rs256A,
    Ps256A,
    Rs256B,
    Ps256B,
    Es256,
    EdDsa,
    Rs256Small,
    /// HMAC-SHA256 with this secret (alg confusion when the secret is public key material).
    Hs256(Vec<u8>),
    /// An empty signature.
    Empty,
}

impl Signer {
    /// The algorithm and `kid` under which this signer's key is usable in [`jwks`], if any.
    pub fn usable_as(&self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Signer::Rs256A => Some(("RS256", &["rsa"])),
            Signer::Ps256A => Some(("PS256", &["rsa"])),
            Signer::Rs256B => Some(("RS256", &["rsa-b"])),
            Signer::Es256 => Some(("ES256", &["ec"])),
            Signer::EdDsa => Some(("EdDSA", &["ed"])),
            Signer::Ps256B | Signer::Rs256Small | Signer::Hs256(_) | Signer::Empty => None,
        }
    }

    /// The JOSE `alg` this signer's signatures are valid under.
    pub fn alg(&self) -> &'static str {
        match self {
            Signer::Rs256A | Signer::Rs256B | Signer::Rs256Small => "RS256",
            Signer::Ps256A | Signer::Ps256B => "PS256",
            Signer::Es256 => "ES256",
            Signer::EdDsa => "EdDSA",
            Signer::Hs256(_) => "HS256",
            Signer::Empty => "none",
        }
    }

    /// A selector byte's signer (for targets that let the input choose).
    pub fn from_byte(b: u8) -> Signer {
        match b % 9 {
            0 => Signer::Rs256A,
            1 => Signer::Ps256A,
            2 => Signer::Es256,
            3 => Signer::EdDsa,
            4 => Signer::Hs256(KEYS.rsa_a_public_pem.to_vec()),
            5 => Signer::Hs256(b"secret".to_vec()),
            6 => Signer::Rs256Small,
            7 => Signer::Rs256B,
            _ => Signer::Empty,
        }
    }
}

/// `b64(header).b64(payload).signature`, with the header and payload bytes exactly as given.
pub fn sign(header: &[u8], payload: &[u8], signer: &Signer) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let k = &*KEYS;
    let (key, alg) = match signer {
        Signer::Rs256A => (&k.rsa_a, Algorithm::RS256),
        Signer::Ps256A => (&k.rsa_a, Algorithm::PS256),
        Signer::Rs256B => (&k.rsa_b, Algorithm::RS256),
        Signer::Ps256B => (&k.rsa_b, Algorithm::PS256),
        Signer::Es256 => (&k.ec, Algorithm::ES256),
        Signer::EdDsa => (&k.ed, Algorithm::EdDSA),
        Signer::Rs256Small => {
            // RustCrypto still signs with 1024 bits; aws-lc-rs does not.
            use signature::Signer as _;
            let signer = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory)(
                &Algorithm::RS256,
                &k.rsa_small,
            )
            .expect("an RSA signer");
            let sig = signer.try_sign(input.as_bytes()).expect("signs");
            return format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        }
        Signer::Hs256(secret) => {
            let key = EncodingKey::from_secret(secret);
            let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256)
                .expect("HMAC signs");
            return format!("{input}.{sig}");
        }
        Signer::Empty => return format!("{input}."),
    };
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("signs");
    format!("{input}.{sig}")
}

/// Claims that pass every check of [`config`].
pub fn good_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": "api://weather",
        "exp": FAR_EXP,
        "nbf": 1_700_000_000u64,
        "iat": 1_700_000_000u64,
        "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "oid": "00000000-0000-0000-0000-00000000a11c",
        "sub": "pairwise-sub",
        "azp": "client-1",
        "scp": "mcp.tools offline_access",
    })
}

/// `good_claims()` with members replaced (`null` removes one).
pub fn claims_with(patch: Value) -> Value {
    let mut claims = good_claims();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// The tokens of the `jwt` seed corpus: (name, header, claims, signer, whether it verifies).
pub fn seed_tokens() -> Vec<(&'static str, String, Value, Signer, bool)> {
    let h = |alg: &str, kid: Option<&str>| match kid {
        Some(kid) => format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#),
        None => format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
    };
    let good = good_claims();
    vec![
        (
            "rs256",
            h("RS256", Some("rsa")),
            good.clone(),
            Signer::Rs256A,
            true,
        ),
        (
            "ps256",
            h("PS256", Some("rsa")),
            good.clone(),
            Signer::Ps256A,
            true,
        ),
        (
            "rs256-b",
            h("RS256", Some("rsa-b")),
            good.clone(),
            Signer::Rs256B,
            true,
        ),
        (
            "es256",
            h("ES256", Some("ec")),
            good.clone(),
            Signer::Es256,
            true,
        ),
        (
            "es256-nokid",
            h("ES256", None),
            good.clone(),
            Signer::Es256,
            true,
        ),
        (
            "eddsa",
            h("EdDSA", Some("ed")),
            good.clone(),
            Signer::EdDsa,
            true,
        ),
        (
            "roles-entra-app",
            h("RS256", Some("rsa")),
            claims_with(
                json!({"scp": null, "roles": ["mcp.tools"], "oid": null, "azp": null, "appid": "app-2"}),
            ),
            Signer::Rs256A,
            true,
        ),
        (
            "ps256-b-disallowed",
            h("PS256", Some("rsa-b")),
            good.clone(),
            Signer::Ps256B,
            false,
        ),
        (
            "rs256-nokid-ambiguous",
            h("RS256", None),
            good.clone(),
            Signer::Rs256A,
            false,
        ),
        (
            "rs256-small",
            h("RS256", Some("rsa-small")),
            good.clone(),
            Signer::Rs256Small,
            false,
        ),
        (
            "hs256-confusion",
            h("HS256", Some("rsa")),
            good.clone(),
            Signer::Hs256(KEYS.rsa_a_public_pem.to_vec()),
            false,
        ),
        (
            "hs256-oct",
            h("HS256", Some("hmac")),
            good.clone(),
            Signer::Hs256(b"secret".to_vec()),
            false,
        ),
        (
            "none",
            h("none", Some("rsa")),
            good.clone(),
            Signer::Empty,
            false,
        ),
        (
            "expired",
            h("ES256", Some("ec")),
            claims_with(json!({"exp": 1_700_000_000u64})),
            Signer::Es256,
            false,
        ),
        (
            "not-yet",
            h("ES256", Some("ec")),
            claims_with(json!({"nbf": FAR_EXP - 10})),
            Signer::Es256,
            false,
        ),
        (
            "wrong-aud",
            h("ES256", Some("ec")),
            claims_with(json!({"aud": "api://other"})),
            Signer::Es256,
            false,
        ),
        (
            "wrong-iss",
            h("ES256", Some("ec")),
            claims_with(json!({"iss": "https://evil.example/v2.0"})),
            Signer::Es256,
            false,
        ),
        (
            "wrong-tenant",
            h("ES256", Some("ec")),
            claims_with(json!({"tid": "00000000-0000-0000-0000-000000000000"})),
            Signer::Es256,
            false,
        ),
        (
            "no-scope",
            h("ES256", Some("ec")),
            claims_with(json!({"scp": "offline_access"})),
            Signer::Es256,
            false,
        ),
        (
            "crit",
            r#"{"alg":"ES256","kid":"ec","crit":["exp"]}"#.into(),
            good.clone(),
            Signer::Es256,
            false,
        ),
    ]
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn strip_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

/// Panics unless the claims `payload` justify accepting the token as `principal`: written from
/// the policy's documentation (RFC 7519 + Entra conventions), not from the sidecar's code.
pub fn assert_claims_justify(payload: &[u8], principal: &Principal) {
    let claims: Value = serde_json::from_slice(payload).expect("accepted claims are JSON");
    let o = claims.as_object().expect("accepted claims are an object");
    let s = |k: &str| o.get(k).and_then(Value::as_str);
    assert_eq!(s("iss"), Some(ISSUER), "accepted with another issuer");

    let now = unix_now() as f64;
    let exp = o
        .get("exp")
        .and_then(Value::as_f64)
        .expect("accepted without a numeric exp");
    assert!(
        exp + LEEWAY as f64 + 2.0 >= now,
        "accepted an expired token"
    );
    if let Some(nbf) = o.get("nbf").filter(|v| !v.is_null()) {
        let nbf = nbf.as_f64().expect("accepted a non-numeric nbf");
        assert!(
            nbf <= now + LEEWAY as f64 + 2.0,
            "accepted a token before nbf"
        );
    }
    let expected_exp = o["exp"]
        .as_u64()
        .unwrap_or_else(|| o["exp"].as_f64().unwrap().round() as u64);
    assert_eq!(principal.expires_at, expected_exp);

    let audiences: Vec<&str> = match o.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().expect("accepted a non-string aud"))
            .collect(),
        other => panic!("accepted with aud {other:?}"),
    };
    assert!(
        audiences.iter().any(|a| AUDIENCES
            .iter()
            .any(|ours| strip_slash(a) == strip_slash(ours))),
        "accepted for another audience: {audiences:?}"
    );

    let tid = s("tid").expect("accepted without tid");
    assert!(tid.eq_ignore_ascii_case(TENANT), "accepted another tenant");
    assert_eq!(principal.tenant.as_deref(), Some(tid));

    match (s("tid"), s("oid")) {
        (Some(t), Some(oid)) if !t.is_empty() && !oid.is_empty() => {
            assert_eq!(principal.subject, format!("{t}/{oid}"));
        }
        _ => {
            let sub = s("sub")
                .filter(|x| !x.is_empty())
                .expect("accepted without a subject");
            assert_eq!(principal.subject, sub);
        }
    }

    let mut granted: Vec<&str> = Vec::new();
    for k in ["scp", "scope"] {
        match o.get(k) {
            Some(Value::String(v)) => granted.extend(v.split_whitespace()),
            Some(Value::Array(a)) => granted.extend(
                a.iter()
                    .filter_map(Value::as_str)
                    .flat_map(str::split_whitespace),
            ),
            _ => {}
        }
    }
    match o.get("roles") {
        Some(Value::String(v)) => granted.push(v),
        Some(Value::Array(a)) => granted.extend(a.iter().filter_map(Value::as_str)),
        _ => {}
    }
    assert!(
        granted.contains(&REQUIRED_SCOPE) || granted.contains(&"mcp.tools"),
        "accepted without the required scope: {granted:?}"
    );
    for (i, scope) in principal.scopes.iter().enumerate() {
        assert!(!scope.is_empty() && granted.contains(&scope.as_str()));
        assert!(!principal.scopes[..i].contains(scope), "duplicate scope");
    }
    let client = s("azp").or(s("appid")).or(s("client_id"));
    assert_eq!(principal.client_id.as_deref(), client);
}

/// The header and payload of a compact JWS, decoded (for checking an accepted token).
pub fn decoded_parts(token: &str) -> (Vec<u8>, Vec<u8>) {
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let payload = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    (header, payload)
}
