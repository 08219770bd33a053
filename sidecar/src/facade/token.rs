//! `/token`: authorization codes (with PKCE) and refresh tokens (rotating, reuse revokes the
//! sign-in) for the facade's access tokens.

use super::*;

impl Facade {
    /// `/token`: authorization_code (PKCE) and refresh_token (rotating) grants.
    pub(super) fn token(&self, body: &[u8]) -> (Response<Body>, &'static str) {
        let Some(p) = std::str::from_utf8(body).ok().and_then(params) else {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the body must be form-encoded with no repeated parameter",
                ),
                "invalid",
            );
        };
        if let Some(resource) = p.get("resource")
            && !same_resource(resource, &self.resource)
        {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    "resource is not this MCP server",
                ),
                "invalid_target",
            );
        }
        let result = match p.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(&p),
            Some("refresh_token") => self.refresh(&p),
            _ => Err((
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
        };
        match result {
            Ok(tokens) => (json_response(StatusCode::OK, &tokens), "ok"),
            Err((error, description)) => (
                oauth_error(StatusCode::BAD_REQUEST, error, description),
                "refused",
            ),
        }
    }

    fn redeem_code(
        &self,
        p: &HashMap<String, String>,
    ) -> Result<Value, (&'static str, &'static str)> {
        let invalid = |d| ("invalid_grant", d);
        let code: Code = p
            .get("code")
            .and_then(|c| grants::open(&self.keys().sealer, Kind::Code, c))
            .ok_or(invalid("the code is not valid"))?;
        if code.exp <= now() {
            return Err(invalid("the code has expired"));
        }
        if p.get("client_id").map(|c| client_key(c)) != Some(code.client_id.clone()) {
            return Err(invalid("the code was issued to another client"));
        }
        if p.get("redirect_uri")
            .is_some_and(|r| *r != code.redirect_uri)
        {
            return Err(invalid(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier = p
            .get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default();
        if !pkce::verifies(verifier, &code.code_challenge) {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        // Checked last, so a failed attempt does not burn the code for its rightful owner.
        if self.used_codes.contains_key(&code.jti) {
            return Err(invalid("the code was already used"));
        }
        self.used_codes.insert(code.jti.clone(), ());
        Ok(self.issue(Refresh {
            client_id: code.client_id,
            subject: code.subject,
            scopes: code.scopes,
            roles: code.roles,
            tenant: code.tenant,
            signed_in_at: now(),
            family: pkce::random_token(),
            jti: String::new(),
            exp: 0,
        }))
    }

    fn refresh(&self, p: &HashMap<String, String>) -> Result<Value, (&'static str, &'static str)> {
        let invalid = |d| ("invalid_grant", d);
        let refresh: Refresh = p
            .get("refresh_token")
            .and_then(|t| grants::open(&self.keys().sealer, Kind::Refresh, t))
            .ok_or(invalid("the refresh token is not valid"))?;
        if refresh.exp <= now() {
            return Err(invalid("the refresh token has expired"));
        }
        if p.get("client_id").map(|c| client_key(c)) != Some(refresh.client_id.clone()) {
            return Err(invalid("the refresh token was issued to another client"));
        }
        if self.revoked_families.contains_key(&refresh.family) {
            return Err(invalid("the refresh token was revoked"));
        }
        if self.used_refresh_tokens.contains_key(&refresh.jti) {
            // Reuse means two parties hold it: end the whole sign-in (OAuth 2.1 §4.3.1).
            self.revoked_families.insert(refresh.family.clone(), ());
            tracing::warn!("a refresh token was used twice; its sign-in is revoked");
            return Err(invalid("the refresh token was already used"));
        }
        self.used_refresh_tokens.insert(refresh.jti.clone(), ());
        Ok(self.issue(refresh))
    }

    /// An access token (a JWT for this resource) and a new refresh token, for what `grant`
    /// (the code or refresh token just redeemed) says; its `jti` and `exp` are renewed.
    fn issue(&self, grant: Refresh) -> Value {
        let issued = now();
        let signed_in_at = match grant.signed_in_at {
            0 => issued,
            at => at,
        };
        let scope = grant.scopes.join(" ");
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.resource,
            "sub": grant.subject,
            "client_id": grant.client_id,
            "scope": scope,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.access_ttl,
            "jti": pkce::random_token(),
        });
        // For per-tool rules, which read them as in an Entra token.
        if !grant.roles.is_empty() {
            claims["roles"] = json!(grant.roles);
        }
        if let Some(tenant) = &grant.tenant {
            claims["tid"] = json!(tenant);
        }
        let access = self.keys().sign(&claims);
        let refresh = grants::seal(
            &self.keys().sealer,
            Kind::Refresh,
            &Refresh {
                jti: pkce::random_token(),
                exp: signed_in_at + self.refresh_ttl,
                signed_in_at,
                ..grant
            },
        );
        // A refresh token is never larger than the code or refresh token it replaces, so it
        // always seals; were it not to, the client signs in again when the access expires.
        let mut tokens = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "scope": scope,
        });
        if let Some(refresh) = refresh {
            tokens["refresh_token"] = Value::String(refresh);
        }
        tokens
    }
}
