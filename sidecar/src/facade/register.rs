//! Dynamic Client Registration (RFC 7591), and which client a `client_id` names: a sealed
//! registration, or a Client ID Metadata Document URL.

use super::*;

impl Facade {
    /// Dynamic Client Registration (RFC 7591): the answer's `client_id` is the registration.
    pub(super) fn register(&self, body: &[u8]) -> (Response<Body>, &'static str) {
        let Ok(metadata) = serde_json::from_slice::<client::Metadata>(body) else {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    "the registration request is not a JSON object",
                ),
                "invalid",
            );
        };
        if let Err(refusal) = client::check_metadata(&metadata) {
            return (
                oauth_error(StatusCode::BAD_REQUEST, refusal.error, &refusal.description),
                "invalid",
            );
        }
        let registration = Registration {
            redirect_uris: metadata.redirect_uris,
            client_name: metadata.client_name,
            issued_at: now(),
        };
        let Some(client_id) = grants::seal(&self.keys().sealer, Kind::Client, &registration) else {
            return (
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    "the registration is too large",
                ),
                "invalid",
            );
        };
        let answer = json!({
            "client_id": client_id,
            "client_id_issued_at": registration.issued_at,
            "redirect_uris": registration.redirect_uris,
            "client_name": registration.client_name,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        (json_response(StatusCode::CREATED, &answer), "ok")
    }

    /// The client behind a `client_id`: a sealed registration, or a metadata document URL.
    pub(super) async fn client(&self, client_id: &str) -> Result<Client, String> {
        if client_id.starts_with("https://") {
            return match &self.documents {
                Some(fetcher) => fetcher.client(client_id).await.map_err(|r| r.description),
                None => Err("client metadata documents are not accepted by this gateway".into()),
            };
        }
        let registration: Registration = grants::open(&self.keys().sealer, Kind::Client, client_id)
            .ok_or("the client_id was not issued by this gateway")?;
        Ok(Client {
            client_id: client_id.to_string(),
            name: registration.client_name,
            redirect_uris: registration.redirect_uris,
            metadata_document: false,
        })
    }
}
