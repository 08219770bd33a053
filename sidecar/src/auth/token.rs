//! The pure half of token validation: taking the bearer token out of the header, reading its
//! JOSE header without trusting it, and checking the claims of a token whose signature
//! `jsonwebtoken` has verified. No I/O; the key comes from [`super::jwks`].

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::error::reason;
use super::{AuthError, Principal};
use crate::config::{OidcConfig, TENANT_PLACEHOLDER};

/// The bytes of a compact JWS: base64url and the dots between segments. A table, because the
/// check runs over every byte of every token (a per-byte `match` was several instructions a
/// byte in the profile).
const JWS_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
        b += 1;
    }
    table
};

/// The token of a `Bearer` `Authorization` header (scheme case-insensitive). The length is
/// checked before anything else looks at the token.
pub(crate) fn bearer(
    authorization: Option<&HeaderValue>,
    max_bytes: usize,
) -> Result<&str, AuthError> {
    let Some(value) = authorization else {
        return Err(AuthError::Missing);
    };
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(if bytes.is_empty() {
            AuthError::Missing
        } else {
            AuthError::WrongScheme
        });
    }
    let token = rest.trim_ascii();
    if token.len() > max_bytes {
        return Err(AuthError::Oversized);
    }
    // A JWS in compact form is base64url segments joined by dots; anything else (another
    // token type, a second parameter, stray bytes) is not ours to interpret.
    if token.is_empty() || !token.iter().all(|&b| JWS_BYTE[usize::from(b)]) {
        return Err(AuthError::Malformed);
    }
    std::str::from_utf8(token).map_err(|_| AuthError::Malformed)
}

/// What the token's header asks for, read before any key is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Reads the JOSE header of a compact JWS. `alg` must be an asymmetric algorithm: `none`,
/// HMAC and unknown names are refused here, before any key is looked at. `jku`, `x5u` and
/// `jwk` are ignored (keys only ever come from the configured IdP); `crit` is refused because
/// no extension is understood (RFC 7515 §4.1.11).
pub(crate) fn read_header(token: &str) -> Result<TokenHeader, AuthError> {
    #[derive(Deserialize)]
    struct Raw {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        crit: Option<IgnoredAny>,
    }

    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let raw: Raw = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    if raw.crit.is_some() {
        return Err(AuthError::Malformed);
    }
    let alg = match Algorithm::from_str(&raw.alg) {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
            return Err(AuthError::InvalidToken(reason::DISALLOWED_ALG));
        }
        Ok(alg) => alg,
    };
    if payload.is_empty() || signature.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(TokenHeader { alg, kid: raw.kid })
}

/// The claim checks, prepared once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The exact issuer, or a multi-tenant template (`…/{tenantid}/…`) split around the
    /// placeholder.
    issuer: Issuer,
    /// Configured audiences without a trailing slash.
    audiences: Vec<String>,
    required_scopes: Vec<String>,
    allowed_tenants: Vec<String>,
    leeway: u64,
}

impl Policy {
    pub(crate) fn new(config: &OidcConfig) -> Self {
        let issuer = match config.issuer.split_once(TENANT_PLACEHOLDER) {
            Some((before, after)) => Issuer::Template {
                before: before.to_string(),
                after: after.to_string(),
            },
            None => Issuer::Exact(config.issuer.clone()),
        };
        Self {
            issuer,
            audiences: config
                .audiences
                .iter()
                .map(|a| strip_slash(a).to_string())
                .collect(),
            required_scopes: config.required_scopes.clone(),
            allowed_tenants: config.allowed_tenants.clone(),
            leeway: config.leeway_seconds,
        }
    }

    /// Verifies the signature with `key` (whose algorithm list already admitted
    /// `header.alg`), then `exp`/`nbf`/`iss`, then the rest of the claims.
    pub(crate) fn verify(
        &self,
        token: &str,
        header: &TokenHeader,
        key: &DecodingKey,
    ) -> Result<Principal, AuthError> {
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        // Both checked in `check`: the audience tolerates a trailing slash, and the issuer may
        // be a template, or an Entra v1 issuer that deserves its own answer.
        validation.validate_aud = false;
        validation.iss = None;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<ObjectOnly<Claims>>(token, key, &validation)
            .map_err(rejection)?;
        self.check(data.claims.0)
    }

    /// The checks `jsonwebtoken` does not do, in an order that makes a 403 mean "a valid
    /// token for this resource, short of a scope".
    fn check(&self, claims: Claims) -> Result<Principal, AuthError> {
        let iss = claims.iss.as_deref().unwrap_or_default();
        let issuer_ok = match &self.issuer {
            Issuer::Exact(issuer) => iss == issuer,
            // The tenant in `iss` must be the token's own `tid` (checked against the allow-list
            // below): Entra signs every tenant's tokens with the same keys.
            Issuer::Template { before, after } => claims
                .tid
                .as_deref()
                .is_some_and(|tid| is_tenant_id(tid) && iss == format!("{before}{tid}{after}")),
        };
        if !issuer_ok {
            if iss.starts_with(ENTRA_V1_ISSUER) {
                return Err(AuthError::InvalidToken(reason::ENTRA_V1_TOKEN));
            }
            return Err(AuthError::InvalidToken(reason::WRONG_ISSUER));
        }
        let expires_at = claims
            .exp
            .as_ref()
            .and_then(numeric_date)
            .ok_or(AuthError::Malformed)?;
        let audience_ok = claims.aud.as_ref().is_some_and(|aud| {
            aud.values()
                .any(|a| self.audiences.iter().any(|ours| ours == strip_slash(a)))
        });
        if !audience_ok {
            return Err(AuthError::InvalidToken(reason::WRONG_AUDIENCE));
        }
        if !self.allowed_tenants.is_empty()
            && !claims.tid.as_deref().is_some_and(|tid| {
                self.allowed_tenants
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(tid))
            })
        {
            return Err(AuthError::InvalidToken(reason::WRONG_TENANT));
        }
        let subject = match (&claims.tid, &claims.oid, &claims.sub) {
            // Entra: tid+oid is the stable identity of a user or service principal; `sub` is
            // pairwise per client application.
            (Some(tid), Some(oid), _) if !tid.is_empty() && !oid.is_empty() => {
                format!("{tid}/{oid}")
            }
            (_, _, Some(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(AuthError::Malformed),
        };
        let mut scopes: Vec<String> = Vec::new();
        let granted = [claims.scp.as_ref(), claims.scope.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|s| s.values().flat_map(str::split_whitespace))
            .chain(claims.roles.iter().flat_map(|r| r.values()));
        for scope in granted {
            if !scope.is_empty() && !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_string());
            }
        }
        if !self
            .required_scopes
            .iter()
            .all(|required| self.granted(required, &scopes))
        {
            return Err(AuthError::InsufficientScope);
        }
        let roles = claims
            .roles
            .iter()
            .flat_map(|r| r.values())
            .map(str::to_string)
            .collect();
        let groups_overage = claims.hasgroups == Some(true)
            || claims
                .claim_names
                .as_ref()
                .is_some_and(|names| names.get("groups").is_some());
        Ok(Principal {
            subject,
            client_id: claims.azp.or(claims.appid).or(claims.client_id),
            tenant: claims.tid,
            oid: claims.oid,
            name: claims.name.or(claims.preferred_username),
            scopes,
            roles,
            groups: claims.groups.unwrap_or_default(),
            groups_overage,
            expires_at,
        })
    }

    /// Whether `required` is among `scopes`. Entra puts only the scope's short name in `scp`
    /// and `roles` ("mcp.tools"), while clients must request (and resource metadata must
    /// advertise) the full `<App ID URI>/<name>`; so a required `<resource>/<name>` is also
    /// met by `<name>` when `<resource>` is one of this resource's audiences (or `api://`
    /// followed by one, Entra's default App ID URI for a client-id audience).
    pub(super) fn granted(&self, required: &str, scopes: &[String]) -> bool {
        if scopes.iter().any(|s| s == required) {
            return true;
        }
        let Some((resource, name)) = required.rsplit_once('/') else {
            return false;
        };
        if name.is_empty() || !resource.contains("://") {
            return false;
        }
        let resource = strip_slash(resource);
        let ours = self
            .audiences
            .iter()
            .any(|a| a == resource || resource.strip_prefix("api://").is_some_and(|r| r == a));
        ours && scopes.iter().any(|s| s == name)
    }
}

/// `jsonwebtoken`'s verdict as a reason. Key-format errors come from the IdP's key, but the
/// token still failed verification with it.
fn rejection(error: jsonwebtoken::errors::Error) -> AuthError {
    let invalid = AuthError::InvalidToken;
    match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => invalid(reason::BAD_SIGNATURE),
        ErrorKind::ExpiredSignature => invalid(reason::EXPIRED),
        ErrorKind::ImmatureSignature => invalid(reason::NOT_YET_VALID),
        ErrorKind::InvalidIssuer => invalid(reason::WRONG_ISSUER),
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => invalid(reason::WRONG_ISSUER),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => invalid(reason::DISALLOWED_ALG),
        _ => AuthError::Malformed,
    }
}

/// What the token's `iss` must be.
#[derive(Debug, Clone)]
enum Issuer {
    Exact(String),
    /// `<before><tid><after>`.
    Template {
        before: String,
        after: String,
    },
}

/// Entra's v1 tokens (`requestedAccessTokenVersion` unset or 1) come from here, not from the
/// v2 issuer a gateway names.
const ENTRA_V1_ISSUER: &str = "https://sts.windows.net/";

/// A tenant id as Entra writes it in `tid`: a GUID (so nothing but hex digits and dashes can
/// be put into an issuer through it).
fn is_tenant_id(tid: &str) -> bool {
    tid.len() == 36
        && tid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn strip_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

/// A JWT NumericDate as whole seconds, as `jsonwebtoken` reads it.
fn numeric_date(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

/// The claims this module reads. A claim of an unexpected type makes the token malformed.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    /// Entra delegated scopes: a space-separated string (Okta: an array).
    #[serde(default)]
    scp: Option<OneOrMany>,
    /// RFC 9068 / RFC 8693: a space-separated string.
    #[serde(default)]
    scope: Option<OneOrMany>,
    /// Entra app roles (app-only tokens): an array.
    #[serde(default)]
    roles: Option<OneOrMany>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    /// Entra security groups: object IDs.
    #[serde(default)]
    groups: Option<Vec<String>>,
    /// Entra's overage marker in implicit-flow tokens.
    #[serde(default)]
    hasgroups: Option<bool>,
    /// Entra's overage marker: `{"groups": "src1"}` where the groups would be.
    #[serde(default, rename = "_claim_names")]
    claim_names: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// `T` read from a completely valid JSON object, as RFC 7519 §7.2 asks of a claims set. Read
/// directly, serde's derived `Deserialize` would take an array (fields by position) and would
/// skip unknown members unchecked: a lone surrogate escape, bytes that are not UTF-8 or a
/// number out of range in a claim this module ignores. A parser that accepts what others
/// refuse is where two readers of one token start to disagree, so the whole object is parsed
/// first (the fuzz smoke found the gap). It costs a few microseconds, once per token: accepted
/// tokens are cached.
#[derive(Debug)]
struct ObjectOnly<T>(T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        serde_json::from_value(serde_json::Value::Object(object))
            .map(ObjectOnly)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> impl Iterator<Item = &str> {
        let slice = match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many.as_slice(),
        };
        slice.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER   abc.def.ghi  ",
        ] {
            assert_eq!(
                bearer(Some(&header(value)), 100),
                Ok("abc.def.ghi"),
                "{value}"
            );
        }
    }

    #[test]
    fn bearer_refusals() {
        assert_eq!(bearer(None, 100), Err(AuthError::Missing));
        assert_eq!(bearer(Some(&header("")), 100), Err(AuthError::Missing));
        assert_eq!(
            bearer(Some(&header("Basic dXNlcjpwdw==")), 100),
            Err(AuthError::WrongScheme)
        );
        assert_eq!(
            bearer(Some(&header("Bearerabc.def.ghi")), 100),
            Err(AuthError::WrongScheme)
        );
        assert_eq!(
            bearer(Some(&header("DPoP abc.def.ghi")), 100),
            Err(AuthError::WrongScheme)
        );
        assert_eq!(
            bearer(Some(&header("Bearer")), 100),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer(Some(&header("Bearer   ")), 100),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer(Some(&header("Bearer a.b.c d")), 100),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer(Some(&header("Bearer a.b.c,x=y")), 100),
            Err(AuthError::Malformed)
        );
        let long = format!("Bearer {}", "a".repeat(101));
        assert_eq!(bearer(Some(&header(&long)), 100), Err(AuthError::Oversized));
        let exact = format!("Bearer {}", "a".repeat(100));
        assert!(bearer(Some(&header(&exact)), 100).is_ok());
    }

    fn b64(value: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn header_is_read_without_trust() {
        let token = format!(
            "{}.e30.c2ln",
            b64(json!({"alg": "RS256", "kid": "k1", "jku": "https://evil"}))
        );
        assert_eq!(
            read_header(&token),
            Ok(TokenHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            })
        );
        let disallowed = AuthError::InvalidToken(reason::DISALLOWED_ALG);
        for alg in [
            "none", "None", "HS256", "HS384", "HS512", "ES512", "RS1", "",
        ] {
            let token = format!("{}.e30.", b64(json!({"alg": alg})));
            assert_eq!(read_header(&token), Err(disallowed), "{alg}");
        }
        for token in [
            "abc".to_string(),
            "a.b".to_string(),
            "a.b.c.d.e".to_string(),
            "!!!.e30.c2ln".to_string(),
            format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.e30.c2ln", b64(json!({"kid": "k1"}))),
            format!("{}.e30.c2ln", b64(json!({"alg": "RS256", "kid": 7}))),
            format!("{}.e30.c2ln", b64(json!({"alg": "RS256", "crit": ["exp"]}))),
            format!("{}.e30.", b64(json!({"alg": "RS256"}))),
            format!("{}..c2ln", b64(json!({"alg": "RS256"}))),
        ] {
            assert_eq!(read_header(&token), Err(AuthError::Malformed), "{token}");
        }
    }

    fn policy() -> Policy {
        Policy::new(&OidcConfig {
            issuer: "https://login.microsoftonline.com/t1/v2.0".into(),
            audiences: vec![
                "api://weather".into(),
                "https://mcp.example.com/weather/mcp/".into(),
            ],
            required_scopes: vec!["api://weather/mcp.tools".into(), "openid".into()],
            allowed_tenants: vec!["72F988BF-86F1-41AF-91AB-2D7CD011DB47".into()],
            jwks_uri: None,
            leeway_seconds: 60,
        })
    }

    fn claims(patch: serde_json::Value) -> Claims {
        let mut base = json!({
            "iss": "https://login.microsoftonline.com/t1/v2.0",
            "aud": "api://weather",
            "exp": 2_000_000_000u64,
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "oid": "o1",
            "sub": "s1",
            "scp": "mcp.tools openid",
            "azp": "c1",
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn entra_principal() {
        let p = policy().check(claims(json!({}))).unwrap();
        assert_eq!(p.subject, "72f988bf-86f1-41af-91ab-2d7cd011db47/o1");
        assert_eq!(p.client_id.as_deref(), Some("c1"));
        assert_eq!(
            p.tenant.as_deref(),
            Some("72f988bf-86f1-41af-91ab-2d7cd011db47")
        );
        assert_eq!(p.scopes, ["mcp.tools", "openid"]);
        assert_eq!(p.expires_at, 2_000_000_000);
    }

    #[test]
    fn subject_falls_back_to_sub_and_client_id_to_appid() {
        let p = policy()
            .check(claims(json!({"oid": null, "azp": null, "appid": "c2"})))
            .unwrap();
        assert_eq!(p.subject, "s1");
        assert_eq!(p.client_id.as_deref(), Some("c2"));
        let p = policy()
            .check(claims(json!({"azp": null, "client_id": "c3"})))
            .unwrap();
        assert_eq!(p.client_id.as_deref(), Some("c3"));
        assert_eq!(
            policy().check(claims(json!({"oid": null, "sub": null}))),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn audience_forms() {
        let ok = |aud: serde_json::Value| policy().check(claims(json!({"aud": aud}))).is_ok();
        assert!(ok(json!("api://weather/")));
        assert!(ok(json!("https://mcp.example.com/weather/mcp")));
        assert!(ok(json!("https://mcp.example.com/weather/mcp/")));
        assert!(ok(json!(["other", "api://weather"])));
        let wrong = Err(AuthError::InvalidToken(reason::WRONG_AUDIENCE));
        assert_eq!(
            policy().check(claims(json!({"aud": "api://weatherx"}))),
            wrong
        );
        assert_eq!(
            policy().check(claims(json!({"aud": "api://weather//"}))),
            wrong
        );
        assert_eq!(policy().check(claims(json!({"aud": []}))), wrong);
        assert_eq!(policy().check(claims(json!({"aud": null}))), wrong);
    }

    #[test]
    fn scopes_come_from_scp_scope_and_roles() {
        let p = policy();
        assert!(
            p.check(claims(
                json!({"scp": null, "scope": "openid api://weather/mcp.tools"})
            ))
            .is_ok()
        );
        assert!(
            p.check(claims(json!({"scp": "openid", "roles": ["mcp.tools"]})))
                .is_ok()
        );
        assert!(
            p.check(claims(json!({"scp": ["openid", "mcp.tools"]})))
                .is_ok()
        );
        assert_eq!(
            p.check(claims(json!({"scp": "openid"}))),
            Err(AuthError::InsufficientScope)
        );
        assert_eq!(
            p.check(claims(json!({"scp": "mcp.tools", "roles": ["open id"]}))),
            Err(AuthError::InsufficientScope)
        );
        // A short name only matches a required scope of this resource.
        let foreign = Policy {
            required_scopes: vec!["api://other/mcp.tools".into()],
            ..policy()
        };
        assert_eq!(
            foreign.check(claims(json!({}))),
            Err(AuthError::InsufficientScope)
        );
    }

    #[test]
    fn tenant_allow_list() {
        let wrong = Err(AuthError::InvalidToken(reason::WRONG_TENANT));
        assert_eq!(
            policy().check(claims(
                json!({"tid": "00000000-0000-0000-0000-000000000000"})
            )),
            wrong
        );
        assert_eq!(policy().check(claims(json!({"tid": null}))), wrong);
        let open = Policy {
            allowed_tenants: vec![],
            ..policy()
        };
        assert!(
            open.check(claims(
                json!({"tid": "00000000-0000-0000-0000-000000000000"})
            ))
            .is_ok()
        );
    }

    const TENANT_A: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const TENANT_B: &str = "0b5e1c2d-3f4a-4b6c-8d7e-9f0a1b2c3d4e";

    fn multi_tenant() -> Policy {
        Policy::new(&OidcConfig {
            issuer: "https://login.microsoftonline.com/{tenantid}/v2.0".into(),
            audiences: vec!["api://weather".into()],
            required_scopes: vec![],
            allowed_tenants: vec![TENANT_A.to_uppercase()],
            jwks_uri: None,
            leeway_seconds: 60,
        })
    }

    #[test]
    fn a_multi_tenant_issuer_takes_the_tokens_own_allowed_tenant() {
        let p = multi_tenant();
        let from = |tid: &str, iss_tid: &str| {
            claims(json!({
                "tid": tid,
                "iss": format!("https://login.microsoftonline.com/{iss_tid}/v2.0"),
            }))
        };
        assert!(p.check(from(TENANT_A, TENANT_A)).is_ok());
        // Another tenant: a valid Entra token, but not admitted.
        assert_eq!(
            p.check(from(TENANT_B, TENANT_B)),
            Err(AuthError::InvalidToken(reason::WRONG_TENANT))
        );
        // The issuer's tenant must be the token's own.
        assert_eq!(
            p.check(from(TENANT_A, TENANT_B)),
            Err(AuthError::InvalidToken(reason::WRONG_ISSUER))
        );
        assert_eq!(
            p.check(from(TENANT_B, TENANT_A)),
            Err(AuthError::InvalidToken(reason::WRONG_ISSUER))
        );
        // Only a GUID fills the template; the literal placeholder does not pass either.
        for tid in [
            "organizations",
            "{tenantid}",
            "x/../72f988bf-86f1-41af-91ab-2d7cd011db47",
        ] {
            assert_eq!(
                p.check(from(tid, tid)),
                Err(AuthError::InvalidToken(reason::WRONG_ISSUER)),
                "{tid}"
            );
        }
        assert_eq!(
            p.check(claims(
                json!({"tid": null, "iss": "https://login.microsoftonline.com/{tenantid}/v2.0"})
            )),
            Err(AuthError::InvalidToken(reason::WRONG_ISSUER))
        );
    }

    #[test]
    fn an_entra_v1_token_is_told_what_to_change() {
        let v1 = claims(json!({
            "iss": format!("https://sts.windows.net/{TENANT_A}/"),
            "ver": "1.0",
        }));
        let error = policy().check(v1).unwrap_err();
        assert_eq!(error, AuthError::InvalidToken(reason::ENTRA_V1_TOKEN));
        assert!(error.description().contains("requestedAccessTokenVersion"));
        assert_eq!(error.status(), 401);
        // Any other issuer stays a plain wrong issuer.
        let other = claims(json!({"iss": "https://evil.example/v2.0"}));
        assert_eq!(
            policy().check(other),
            Err(AuthError::InvalidToken(reason::WRONG_ISSUER))
        );
    }

    #[test]
    fn claims_of_the_wrong_type_are_malformed() {
        for bad in [
            json!({"aud": 5}),
            json!({"sub": ["a"]}),
            json!({"roles": {"a": 1}}),
        ] {
            let mut base = serde_json::to_value(json!({"iss": "x", "exp": 1})).unwrap();
            for (k, v) in bad.as_object().unwrap() {
                base[k] = v.clone();
            }
            assert!(serde_json::from_value::<Claims>(base).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_are_read_only_from_a_valid_object() {
        let read = |json: &[u8]| serde_json::from_slice::<ObjectOnly<Claims>>(json).map(|c| c.0);
        let object = br#"{"iss": "https://issuer", "sub": "s1", "exp": 2000000000, "x": [1]}"#;
        let claims = read(object).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("https://issuer"));
        assert_eq!(claims.sub.as_deref(), Some("s1"));
        let unchecked: [&[u8]; 4] = [
            br#"["https://issuer", "s1", "api://weather", 2000000000]"#,
            br#"{"iss": "https://issuer", "x": "\ud800"}"#,
            b"{\"iss\": \"https://issuer\", \"x\": \"\xff\"}",
            br#"{"iss": "https://issuer", "x": 1e400}"#,
        ];
        for json in unchecked {
            // What the wrapper guards against: the derived reader alone takes each of these.
            assert!(serde_json::from_slice::<Claims>(json).is_ok());
            assert!(read(json).is_err(), "{}", String::from_utf8_lossy(json));
        }
    }
}
