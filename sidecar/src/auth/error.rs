//! Why a request's credentials were refused. Every message and reason is a fixed string:
//! nothing the client sent (token, claim values) ever ends up in an error, a log line or a
//! metric label.

/// A refused credential. `reason()` labels the `auth_failures` metric; `status()` is the HTTP
/// answer; [`super::challenge`] turns it into a `WWW-Authenticate` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no access token was presented")]
    Missing,
    /// An `Authorization` header with a scheme other than `Bearer`. Treated like a missing
    /// token in the challenge (RFC 6750 §3.1: no error code for an unsupported method).
    #[error("the Authorization header does not use the Bearer scheme")]
    WrongScheme,
    /// Not a JWS compact token, or a header/claims set that cannot be read.
    #[error("the access token is malformed")]
    Malformed,
    /// Longer than `limits.maxTokenBytes`; refused without being parsed.
    #[error("the access token is too large")]
    Oversized,
    /// A well-formed token that failed validation; the reason is one of the `reason::*`
    /// constants.
    #[error("the access token is invalid ({0})")]
    InvalidToken(&'static str),
    /// A valid token without every required scope (403).
    #[error("the access token lacks a required scope")]
    InsufficientScope,
    /// No signing keys have been fetched yet (IdP unreachable since startup): a server-side
    /// problem, so 503 rather than a 401 that would send the client to re-authenticate.
    #[error("the identity provider's signing keys are not available yet")]
    JwksUnavailable,
}

/// The `InvalidToken` reasons: a closed set, used as metric labels.
pub mod reason {
    pub const BAD_SIGNATURE: &str = "bad_signature";
    pub const EXPIRED: &str = "expired";
    pub const NOT_YET_VALID: &str = "not_yet_valid";
    pub const WRONG_ISSUER: &str = "wrong_issuer";
    pub const WRONG_AUDIENCE: &str = "wrong_audience";
    pub const UNKNOWN_KEY: &str = "unknown_key";
    pub const DISALLOWED_ALG: &str = "disallowed_alg";
    pub const WRONG_TENANT: &str = "wrong_tenant";
    /// An Entra ID v1 token (issuer `https://sts.windows.net/<tid>/`) where v2 is configured.
    pub const ENTRA_V1_TOKEN: &str = "entra_v1_token";
}

impl AuthError {
    /// A short label from a closed set, for metrics and debug logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::WrongScheme => "wrong_scheme",
            AuthError::Malformed => "malformed",
            AuthError::Oversized => "oversized",
            AuthError::InvalidToken(reason) => reason,
            AuthError::InsufficientScope => "insufficient_scope",
            AuthError::JwksUnavailable => "jwks_unavailable",
        }
    }

    /// The HTTP status to answer with: 401, 403 for a missing scope, 503 while no signing
    /// keys are known.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::InsufficientScope => 403,
            AuthError::JwksUnavailable => 503,
            _ => 401,
        }
    }

    /// The OAuth error code for the challenge (RFC 6750 §3.1), if any.
    pub(crate) fn oauth_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Malformed | AuthError::Oversized | AuthError::InvalidToken(_) => {
                Some("invalid_token")
            }
            AuthError::InsufficientScope => Some("insufficient_scope"),
            AuthError::Missing | AuthError::WrongScheme | AuthError::JwksUnavailable => None,
        }
    }

    /// A fixed, human-readable `error_description` per reason.
    pub(crate) fn description(&self) -> &'static str {
        match self.reason() {
            "malformed" => "The access token is malformed",
            "oversized" => "The access token is too large",
            "bad_signature" => "The access token signature is invalid",
            "expired" => "The access token has expired",
            "not_yet_valid" => "The access token is not valid yet",
            "wrong_issuer" => "The access token was issued by an untrusted issuer",
            "wrong_audience" => "The access token is not intended for this resource",
            "unknown_key" => "The access token is signed with an unknown key",
            "disallowed_alg" => "The access token uses a disallowed signing algorithm",
            "wrong_tenant" => "The access token was issued for a tenant that is not allowed",
            "entra_v1_token" => {
                "The access token is an Entra ID v1 token (issuer sts.windows.net): set requestedAccessTokenVersion to 2 in the API app registration's manifest"
            }
            "insufficient_scope" => "The access token lacks a required scope",
            _ => "The access token is invalid",
        }
    }
}
