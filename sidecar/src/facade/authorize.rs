//! `/authorize` and the consent page: the client and its redirect URI are checked first (a
//! mistake there is shown, never redirected to), then the request (mistakes redirected to the
//! client); the pending sign-in travels in a cookie until the user approves and is sent on to
//! the IdP.

use super::*;

impl Facade {
    /// `/authorize`: checks the client and its redirect URI (errors shown, not redirected),
    /// then the request (errors redirected), then asks the user.
    pub(super) async fn authorize(&self, query: &str) -> (Response<Body>, &'static str) {
        let Some(p) = params(query) else {
            return (error_page("a request parameter is repeated"), "invalid");
        };
        let Some(client_id) = p.get("client_id") else {
            return (error_page("the request names no client_id"), "invalid");
        };
        let client = match self.client(client_id).await {
            Ok(c) => c,
            Err(why) => return (error_page(&why), "invalid_client"),
        };
        let redirect_uri = match (p.get("redirect_uri"), client.redirect_uris.as_slice()) {
            (Some(r), registered) if client::match_redirect_uri(registered, r).is_some() => {
                r.clone()
            }
            (Some(_), _) => {
                return (
                    error_page("the redirect_uri is not one this client registered"),
                    "invalid_redirect_uri",
                );
            }
            (None, [only]) => only.clone(),
            (None, _) => return (error_page("the request names no redirect_uri"), "invalid"),
        };
        let state = p.get("state").map(String::as_str);
        if state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return (error_page("the state parameter is too long"), "invalid");
        }
        let fail = |error: &str, description: &str| {
            (
                self.redirect_error(&redirect_uri, state, error, description),
                "invalid",
            )
        };
        if p.get("response_type").map(String::as_str) != Some("code") {
            return fail("unsupported_response_type", "response_type must be code");
        }
        let challenge = match (
            p.get("code_challenge"),
            p.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) if pkce::is_valid_challenge(c) => c.clone(),
            _ => {
                return fail(
                    "invalid_request",
                    "PKCE is required: code_challenge with code_challenge_method S256",
                );
            }
        };
        if let Some(resource) = p.get("resource")
            && !same_resource(resource, &self.resource)
        {
            return fail("invalid_target", "resource is not this MCP server");
        }
        let nonce = pkce::random_token();
        let transaction = Transaction {
            client_id: client_key(&client.client_id),
            redirect_uri: redirect_uri.clone(),
            state: state.map(str::to_string),
            code_challenge: challenge,
            scopes: self.scopes.clone(),
            nonce: nonce.clone(),
            idp_verifier: pkce::random_token(),
            exp: now() + TRANSACTION_TTL,
        };
        let Some(sealed) = grants::seal(&self.keys().sealer, Kind::Transaction, &transaction)
        else {
            return (
                error_page("the authorization request is too large"),
                "invalid",
            );
        };
        let page = pages::consent(&pages::Consent {
            client_name: client.name.as_deref(),
            client_id: &client.client_id,
            metadata_document: client.metadata_document,
            redirect_uri: &redirect_uri,
            resource: &self.resource,
            scopes: &self.scopes,
            action: &self.url("consent"),
            nonce: &nonce,
        });
        let mut response = response::html(StatusCode::OK, page);
        self.set_cookie(&mut response, &nonce, &sealed, TRANSACTION_TTL);
        (response, "consent_asked")
    }

    pub(super) fn set_cookie(
        &self,
        response: &mut Response<Body>,
        nonce: &str,
        value: &str,
        max_age: u64,
    ) {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE_PREFIX}{nonce}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_path
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// The pending sign-in whose nonce this is, from the browser's cookie.
    pub(super) fn transaction(
        &self,
        headers: &HeaderMap,
        nonce: &str,
    ) -> Result<Transaction, &'static str> {
        let sealed = cookie(headers, &format!("{COOKIE_PREFIX}{nonce}"))
            .ok_or("this sign-in was started in another browser, or it expired: start again from your MCP client")?;
        let transaction: Transaction = grants::open(&self.keys().sealer, Kind::Transaction, sealed)
            .ok_or("this sign-in is not valid: start again from your MCP client")?;
        if transaction.nonce != nonce || transaction.exp <= now() {
            return Err("this sign-in expired: start again from your MCP client");
        }
        Ok(transaction)
    }

    /// The user's answer on the consent page.
    pub(super) async fn consent(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Response<Body>, &'static str) {
        let Some(p) = std::str::from_utf8(body).ok().and_then(params) else {
            return (error_page("the form is not valid"), "invalid");
        };
        let Some(nonce) = p.get("nonce") else {
            return (error_page("the form is not valid"), "invalid");
        };
        let transaction = match self.transaction(headers, nonce) {
            Ok(t) => t,
            Err(why) => return (error_page(why), "invalid"),
        };
        if p.get("decision").map(String::as_str) != Some("approve") {
            return (
                self.redirect_error(
                    &transaction.redirect_uri,
                    transaction.state.as_deref(),
                    "access_denied",
                    "the user denied access",
                ),
                "denied",
            );
        }
        match self
            .idp
            .authorization_url(
                &self.url("callback"),
                nonce,
                &pkce::challenge(&transaction.idp_verifier),
            )
            .await
        {
            Ok(url) => (redirect(url.as_str()), "approved"),
            Err(error) => {
                tracing::warn!(%error, "cannot send the user to the IdP");
                (
                    self.redirect_error(
                        &transaction.redirect_uri,
                        transaction.state.as_deref(),
                        "temporarily_unavailable",
                        "the identity provider cannot be reached",
                    ),
                    "idp_unavailable",
                )
            }
        }
    }
}
