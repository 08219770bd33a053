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
                            roles: carried_roles(principal.roles),
                            tenant: principal.tenant,
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

/// At most this many app roles, each at most this long and all together at most this many
/// bytes, are carried from the ID token into the facade's code and tokens: the code travels
/// in a URL and must seal within its limit. Beyond that a role is dropped: less access,
/// never a failed sign-in.
const MAX_ROLES: usize = 32;
const MAX_ROLE_LEN: usize = 128;
const MAX_ROLES_BYTES: usize = 1024;

fn carried_roles(roles: Vec<String>) -> Vec<String> {
    let mut budget = MAX_ROLES_BYTES;
    roles
        .into_iter()
        .filter(|r| r.len() <= MAX_ROLE_LEN && !r.chars().any(char::is_control))
        .filter(|r| {
            let fits = r.len() <= budget;
            if fits {
                budget -= r.len();
            }
            fits
        })
        .take(MAX_ROLES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_carried_within_what_a_code_can_hold() {
        let many: Vec<String> = (0..40).map(|i| format!("{i:0>120}")).collect();
        let carried = carried_roles(many);
        assert_eq!(carried.len(), MAX_ROLES_BYTES / 120);
        assert!(carried_roles(vec!["x".repeat(129), "a\u{7}".into(), "ok".into()]) == ["ok"]);
        // The largest carried set still seals into a code.
        let code = Code {
            client_id: "c".repeat(64),
            redirect_uri: format!("http://127.0.0.1:65535/{}", "p".repeat(200)),
            code_challenge: "x".repeat(43),
            scopes: vec!["mcp.tools".into()],
            subject: format!("{}/{}", "t".repeat(36), "o".repeat(36)),
            roles: carried_roles((0..40).map(|i| format!("{i:0>30}")).collect()),
            tenant: Some("t".repeat(36)),
            jti: "j".repeat(43),
            exp: u64::MAX,
        };
        let sealer = crate::seal::Sealer::new(&[[1; 32]]);
        assert!(grants::seal(&sealer, Kind::Code, &code).is_some());
    }
}
