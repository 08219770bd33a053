//! The `WWW-Authenticate` header of a refused request (RFC 6750 §3, RFC 9728 §5.1).

use http::HeaderValue;

use super::AuthError;

/// `Bearer resource_metadata="<url>", scope="<scopes>"`, plus `error` and `error_description`
/// when a presented token was refused. `scopes` should be every scope the resource needs
/// (MCP clients request exactly these; TS SDK 1.x handles 403 step-up poorly, so they belong
/// in the first 401 too). The description is a fixed string per reason, never token content.
pub fn challenge(
    resource_metadata_url: &str,
    scopes: &[String],
    error: Option<&AuthError>,
) -> HeaderValue {
    let mut value = String::from("Bearer ");
    push_param(&mut value, "resource_metadata", resource_metadata_url);
    if !scopes.is_empty() {
        value.push_str(", ");
        push_param(&mut value, "scope", &scopes.join(" "));
    }
    if let Some(error) = error
        && let Some(code) = error.oauth_error()
    {
        value.push_str(", ");
        push_param(&mut value, "error", code);
        value.push_str(", ");
        push_param(&mut value, "error_description", error.description());
    }
    // Control characters were dropped, so this cannot fail; the fallback is still a valid
    // challenge rather than a panic.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// `name="value"` with `"` and `\` escaped (RFC 9110 quoted-string) and control characters,
/// which a header cannot carry, dropped.
fn push_param(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::error::reason;

    const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/weather/mcp";

    fn scopes() -> Vec<String> {
        vec!["api://weather/mcp.tools".into(), "offline_access".into()]
    }

    fn text(value: HeaderValue) -> String {
        value.to_str().unwrap().to_string()
    }

    #[test]
    fn no_token() {
        assert_eq!(
            text(challenge(PRM, &scopes(), None)),
            format!(
                r#"Bearer resource_metadata="{PRM}", scope="api://weather/mcp.tools offline_access""#
            )
        );
        assert_eq!(
            text(challenge(PRM, &scopes(), Some(&AuthError::Missing))),
            text(challenge(PRM, &scopes(), None))
        );
        assert_eq!(
            text(challenge(PRM, &scopes(), Some(&AuthError::WrongScheme))),
            text(challenge(PRM, &scopes(), None))
        );
    }

    #[test]
    fn scope_omitted_when_none_required() {
        assert_eq!(
            text(challenge(PRM, &[], None)),
            format!(r#"Bearer resource_metadata="{PRM}""#)
        );
    }

    #[test]
    fn rejected_token() {
        assert_eq!(
            text(challenge(
                PRM,
                &scopes(),
                Some(&AuthError::InvalidToken(reason::EXPIRED))
            )),
            format!(
                r#"Bearer resource_metadata="{PRM}", scope="api://weather/mcp.tools offline_access", error="invalid_token", error_description="The access token has expired""#
            )
        );
        assert_eq!(
            text(challenge(PRM, &[], Some(&AuthError::Malformed))),
            format!(
                r#"Bearer resource_metadata="{PRM}", error="invalid_token", error_description="The access token is malformed""#
            )
        );
        assert_eq!(
            text(challenge(PRM, &[], Some(&AuthError::Oversized))),
            format!(
                r#"Bearer resource_metadata="{PRM}", error="invalid_token", error_description="The access token is too large""#
            )
        );
    }

    #[test]
    fn insufficient_scope_lists_every_scope() {
        assert_eq!(
            text(challenge(
                PRM,
                &scopes(),
                Some(&AuthError::InsufficientScope)
            )),
            format!(
                r#"Bearer resource_metadata="{PRM}", scope="api://weather/mcp.tools offline_access", error="insufficient_scope", error_description="The access token lacks a required scope""#
            )
        );
    }

    #[test]
    fn idp_unavailable_is_not_the_tokens_fault() {
        assert_eq!(
            text(challenge(PRM, &[], Some(&AuthError::JwksUnavailable))),
            format!(r#"Bearer resource_metadata="{PRM}""#)
        );
    }

    #[test]
    fn quotes_backslashes_and_controls_are_escaped() {
        let odd = vec!["a\"b".to_string(), "c\\d\r\ne".to_string()];
        assert_eq!(
            text(challenge("https://x/\"", &odd, None)),
            r#"Bearer resource_metadata="https://x/\"", scope="a\"b c\\de""#
        );
    }

    #[test]
    fn every_description_is_a_valid_quoted_string() {
        let all = [
            AuthError::Malformed,
            AuthError::Oversized,
            AuthError::InsufficientScope,
            AuthError::InvalidToken(reason::BAD_SIGNATURE),
            AuthError::InvalidToken(reason::EXPIRED),
            AuthError::InvalidToken(reason::NOT_YET_VALID),
            AuthError::InvalidToken(reason::WRONG_ISSUER),
            AuthError::InvalidToken(reason::WRONG_AUDIENCE),
            AuthError::InvalidToken(reason::UNKNOWN_KEY),
            AuthError::InvalidToken(reason::DISALLOWED_ALG),
            AuthError::InvalidToken(reason::WRONG_TENANT),
        ];
        for error in all {
            let d = error.description();
            assert_ne!(
                d, "The access token is invalid",
                "{error:?} has no description"
            );
            assert!(
                d.chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ')
            );
        }
    }
}
