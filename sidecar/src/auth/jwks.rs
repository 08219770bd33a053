//! The IdP's signing keys: fetching them (OIDC discovery, then the JWKS) and deciding which key
//! and which algorithms a token may use.
//!
//! Algorithms follow from the key, never from the token alone: RSA (2048 bits or more) →
//! RS256/384/512, PS256/384/512; EC P-256 → ES256; P-384 → ES384; OKP Ed25519 → EdDSA. A JWK
//! that states `alg` narrows that list to it. Symmetric (`oct`) keys, encryption keys and other
//! curves are never used.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use url::Url;

use crate::discovery::{self, Discovery};
use crate::fetch::{self, Redirects};

use super::AuthError;
use super::error::reason;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_RSA_BITS: usize = 2048;

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One usable signing key.
pub(crate) struct VerifyingKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The algorithms a token signed with this key may name.
    algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// The usable keys of one JWKS fetch.
pub(crate) struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    /// The JWKs behind `keys`, to tell whether a refresh dropped one.
    jwks: Vec<Jwk>,
}

/// The outcome of choosing a key for a token.
pub(crate) enum Selection {
    Key(Arc<VerifyingKey>),
    /// The key exists but does not allow the token's algorithm.
    DisallowedAlg,
    /// No key matches (a refetch may help).
    Unknown,
}

impl Selection {
    /// The verdict once no refetch can help any more.
    pub(crate) fn into_key(self) -> Result<Arc<VerifyingKey>, AuthError> {
        match self {
            Selection::Key(key) => Ok(key),
            Selection::DisallowedAlg => Err(AuthError::InvalidToken(reason::DISALLOWED_ALG)),
            Selection::Unknown => Err(AuthError::InvalidToken(reason::UNKNOWN_KEY)),
        }
    }
}

impl KeySet {
    /// Reads a JWKS, skipping (not failing on) keys this gateway cannot or must not use,
    /// so one exotic key does not take the others down with it.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("is not a JWKS: {e}"))?;
        let mut set = KeySet {
            keys: Vec::new(),
            jwks: Vec::new(),
        };
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if let Some(key) = usable(&jwk) {
                set.keys.push(Arc::new(key));
                set.jwks.push(jwk);
            }
        }
        if set.keys.is_empty() {
            return Err(
                "has no usable signing key (RSA of 2048 bits or more, EC P-256/P-384 or Ed25519)"
                    .into(),
            );
        }
        Ok(set)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether a key of `previous` is missing here (rotated out or revoked).
    pub(crate) fn drops_any_of(&self, previous: &KeySet) -> bool {
        previous.jwks.iter().any(|jwk| !self.jwks.contains(jwk))
    }

    /// The key for a token with this `kid` and `alg`. A token without `kid` is only matched
    /// to a key that is the set's only key of that type: guessing among several would let
    /// a token pick its key, and trying each would multiply the signature checks an
    /// attacker can cause.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection {
        let pick = |candidates: &mut dyn Iterator<Item = &Arc<VerifyingKey>>| {
            let mut seen = false;
            for key in candidates {
                seen = true;
                if key.algorithms.contains(&alg) {
                    return Selection::Key(key.clone());
                }
            }
            if seen {
                Selection::DisallowedAlg
            } else {
                Selection::Unknown
            }
        };
        match kid {
            Some(kid) => pick(&mut self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid))),
            None => {
                let mut same_type = self.keys.iter().filter(|k| k.family == alg.family());
                match (same_type.next(), same_type.next()) {
                    (Some(only), None) => pick(&mut std::iter::once(only)),
                    _ => Selection::Unknown,
                }
            }
        }
    }
}

/// The key and its algorithms, or `None` for a key this gateway does not verify with.
fn usable(jwk: &Jwk) -> Option<VerifyingKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    let (family, allowed): (_, &[Algorithm]) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if modulus_bits(&rsa.n)? >= MIN_RSA_BITS => {
            (AlgorithmFamily::Rsa, RSA_ALGORITHMS)
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => (AlgorithmFamily::Ec, &[Algorithm::ES256]),
            EllipticCurve::P384 => (AlgorithmFamily::Ec, &[Algorithm::ES384]),
            _ => return None,
        },
        // An Ed25519 public key is 32 bytes (RFC 8037 §2); jsonwebtoken's verifier panics on
        // a shorter one.
        AlgorithmParameters::OctetKeyPair(okp)
            if okp.curve == EllipticCurve::Ed25519
                && URL_SAFE_NO_PAD.decode(&okp.x).is_ok_and(|x| x.len() == 32) =>
        {
            (AlgorithmFamily::Ed, &[Algorithm::EdDSA])
        }
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => allowed.to_vec(),
        Some(stated) => {
            let stated = Algorithm::from_str(&stated.to_string()).ok()?;
            if !allowed.contains(&stated) {
                return None;
            }
            vec![stated]
        }
    };
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        family,
        algorithms,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

fn modulus_bits(n: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(n).ok()?;
    let first = bytes.iter().position(|&b| b != 0)?;
    Some((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

/// Fetches the JWKS: from `jwks_uri` when configured, else from the one the issuer's
/// discovery document names (see [`crate::discovery`]).
pub(crate) struct Fetcher {
    http: reqwest::Client,
    issuer: String,
    configured: Option<Url>,
    /// The discovery document, forgotten when fetching the JWKS it names fails.
    discovered: Mutex<Option<Arc<Discovery>>>,
}

impl Fetcher {
    pub(crate) fn new(issuer: &str, jwks_uri: Option<Url>) -> Self {
        Self {
            // Public documents without credentials: a few redirects are harmless.
            http: fetch::client(REQUEST_TIMEOUT, Redirects::UpTo(3)),
            issuer: issuer.to_string(),
            configured: jwks_uri,
            discovered: Mutex::new(None),
        }
    }

    /// One fetch of the key set. The error is for operators: it names the IdP URL and what
    /// was wrong with its answer.
    pub(crate) async fn fetch(&self) -> Result<KeySet, String> {
        let uri = match &self.configured {
            Some(uri) => uri.clone(),
            None => self.discovery().await?.jwks_uri.clone(),
        };
        let result = discovery::get(&self.http, &uri)
            .await
            .and_then(|body| KeySet::parse(&body).map_err(|e| format!("JWKS {uri} {e}")));
        if result.is_err() {
            *self
                .discovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    /// The issuer's discovery document: the cached one, else fetched (and cached).
    pub(crate) async fn discovery(&self) -> Result<Arc<Discovery>, String> {
        if let Some(doc) = self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(doc);
        }
        let doc = Arc::new(discovery::discover(&self.http, &self.issuer).await?);
        *self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(doc.clone());
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A 2048-bit modulus (from testdata/rsa_a.pem) and a P-256 point, as JWK members.
    fn rsa(kid: &str) -> serde_json::Value {
        let jwk = crate::auth::tests::Keys::get().rsa_a_jwk();
        let mut v = serde_json::to_value(jwk).unwrap();
        v["kid"] = json!(kid);
        v
    }

    fn ec(kid: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(crate::auth::tests::Keys::get().ec_jwk()).unwrap();
        v["kid"] = json!(kid);
        v
    }

    fn set(keys: Vec<serde_json::Value>) -> Result<KeySet, String> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    fn algorithms(selection: Selection) -> Option<Vec<Algorithm>> {
        match selection {
            Selection::Key(key) => Some(key.algorithms.clone()),
            _ => None,
        }
    }

    #[test]
    fn algorithms_follow_the_key_type() {
        let keys = set(vec![rsa("r"), ec("e")]).unwrap();
        assert_eq!(
            algorithms(keys.select(Some("r"), Algorithm::PS384)).unwrap(),
            RSA_ALGORITHMS
        );
        assert_eq!(
            algorithms(keys.select(Some("e"), Algorithm::ES256)).unwrap(),
            [Algorithm::ES256]
        );
        assert!(matches!(
            keys.select(Some("e"), Algorithm::ES384),
            Selection::DisallowedAlg
        ));
        assert!(matches!(
            keys.select(Some("r"), Algorithm::ES256),
            Selection::DisallowedAlg
        ));
        assert!(matches!(
            keys.select(Some("e"), Algorithm::RS256),
            Selection::DisallowedAlg
        ));
        assert!(matches!(
            keys.select(Some("x"), Algorithm::RS256),
            Selection::Unknown
        ));
    }

    #[test]
    fn a_stated_alg_narrows_the_list() {
        let mut r = rsa("r");
        r["alg"] = json!("RS256");
        let keys = set(vec![r]).unwrap();
        assert!(matches!(
            keys.select(Some("r"), Algorithm::RS256),
            Selection::Key(_)
        ));
        assert!(matches!(
            keys.select(Some("r"), Algorithm::PS256),
            Selection::DisallowedAlg
        ));
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let mut enc = rsa("enc");
        enc["use"] = json!("enc");
        let mut oaep = rsa("oaep");
        oaep["alg"] = json!("RSA-OAEP");
        let mut mismatched = ec("mismatched");
        mismatched["alg"] = json!("RS256");
        let mut sign_only = rsa("sign-only");
        sign_only["key_ops"] = json!(["sign"]);
        let mut small = rsa("small");
        small["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
        let hmac = json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"});
        let p521 = json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"});
        let garbage = json!({"kty": "RSA", "kid": "garbage"});
        // Found by fuzzing: a short Ed25519 key made jsonwebtoken panic at verification.
        let ed_short = json!({"kty": "OKP", "kid": "ed-short", "crv": "Ed25519", "x": "Wg8UPP0f5GDdfXdUI-JBpwct"});
        let ed_long = json!({"kty": "OKP", "kid": "ed-long", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 33])});
        let entra_like = {
            let mut v = rsa("entra");
            v["x5t"] = json!("abc");
            v["x5c"] = json!(["MIIC"]);
            v["issuer"] = json!("https://login.microsoftonline.com/t/v2.0");
            v["use"] = json!("sig");
            v
        };
        let keys = set(vec![
            enc, oaep, mismatched, sign_only, small, hmac, p521, garbage, ed_short, ed_long,
            entra_like,
        ])
        .unwrap();
        assert_eq!(keys.len(), 1);
        assert!(matches!(
            keys.select(Some("entra"), Algorithm::RS256),
            Selection::Key(_)
        ));
        assert!(set(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]).is_err());
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[test]
    fn a_token_without_kid_needs_a_single_key_of_its_type() {
        let keys = set(vec![rsa("r"), ec("e")]).unwrap();
        assert!(matches!(
            keys.select(None, Algorithm::RS256),
            Selection::Key(_)
        ));
        assert!(matches!(
            keys.select(None, Algorithm::ES256),
            Selection::Key(_)
        ));
        assert!(matches!(
            keys.select(None, Algorithm::EdDSA),
            Selection::Unknown
        ));
        let two = set(vec![rsa("r1"), rsa("r2")]).unwrap();
        assert!(matches!(
            two.select(None, Algorithm::RS256),
            Selection::Unknown
        ));
    }

    #[test]
    fn dropped_keys_are_noticed() {
        let both = set(vec![rsa("r"), ec("e")]).unwrap();
        let one = set(vec![rsa("r")]).unwrap();
        assert!(one.drops_any_of(&both));
        assert!(!both.drops_any_of(&one));
    }
}
