//! Back from the IdP: its code is redeemed for the user's identity, and the client gets the
//! facade's own code at its redirect URI.

use super::*;

impl Facade {
    /// The IdP sends the user back here: redeem its code, then hand the client ours.
    pub(super) async fn callback(
        &self,
        query: &str,
        headers: &HeaderMap,
    ) -> (Response<Body>, &'static str) {
        let Some(p) = params(query) else {
            return (error_page("a response parameter is repeated"), "invalid");
        };
        let Some(nonce) = p.get("state") else {
            return (
                error_page("the identity provider's answer has no state"),
                "invalid",
            );
        };
        let transaction = match self.transaction(headers, nonce) {
            Ok(t) => t,
            Err(why) => return (error_page(why), "invalid"),
        };
        let state = transaction.state.as_deref();
        let mut response = match (p.get("code"), p.get("error")) {
            (Some(code), None) => {
                match self
                    .idp
                    .redeem(code, &transaction.idp_verifier, &self.url("callback"))
                    .await
                {
                    Ok(principal) => {
                        let code = Code {
                            client_id: transaction.client_id.clone(),
                            redirect_uri: transaction.redirect_uri.clone(),
                            code_challenge: transaction.code_challenge.clone(),
                            scopes: transaction.scopes.clone(),
                            subject: principal.subject,
                            jti: pkce::random_token(),
                            exp: now() + CODE_TTL,
                        };
                        let Some(sealed) = grants::seal(&self.keys().sealer, Kind::Code, &code)
                        else {
                            return (
                                self.redirect_error(
                                    &transaction.redirect_uri,
                                    state,
                                    "server_error",
                                    "the identity provider's subject is too large",
                                ),
                                "invalid",
                            );
                        };
                        let mut url = url::Url::parse(&transaction.redirect_uri)
                            .expect("checked at /authorize");
                        {
                            let mut q = url.query_pairs_mut();
                            q.append_pair("code", &sealed);
                            if let Some(state) = state {
                                q.append_pair("state", state);
                            }
                            q.append_pair("iss", &self.issuer);
                        }
                        (redirect(url.as_str()), "ok")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "sign-in at the IdP failed");
                        (
                            self.redirect_error(
                                &transaction.redirect_uri,
                                state,
                                "access_denied",
                                "signing in at the identity provider failed",
                            ),
                            "idp_refused",
                        )
                    }
                }
            }
            _ => (
                self.redirect_error(
                    &transaction.redirect_uri,
                    state,
                    "access_denied",
                    "the identity provider did not sign the user in",
                ),
                "idp_error",
            ),
        };
        // The pending sign-in is over either way.
        self.set_cookie(&mut response.0, nonce, "", 0);
        response
    }
}
