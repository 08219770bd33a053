//! One gateway in Oidc mode in front of the Functions stand-in, with the Entra-like IdP
//! issuing its tokens: the stack the per-tool, rate-limit and identity tests share. Each test
//! adds its own settings to the sidecar config.

use mcp_gateway_contract::config::Config;
use serde_json::{Value, json};

use crate::TempDir;
use crate::fixtures::{self, EntraLike, Idp, Standin};
use crate::sidecar::{Sidecar, public_listener};
use crate::stack::system_key;

pub struct EntraGateway {
    _dir: TempDir,
    pub standin: Standin,
    pub idp: Idp,
    pub sidecar: Sidecar,
    /// The system key (to check it never shows).
    pub key: String,
    /// The API app's client ID: the tokens' `aud`.
    pub api: String,
}

/// A request's answer: status, `WWW-Authenticate`, `Retry-After`, body.
pub struct Answer {
    pub status: u16,
    pub challenge: String,
    pub retry_after: Option<String>,
    pub body: String,
}

impl EntraGateway {
    /// `settings` (JSON object) are merged over the base config: listen address, public URL,
    /// the stand-in upstream, the key file, and auth `Oidc` with the IdP's issuer and the API
    /// as the audience.
    pub async fn start(idp: &EntraLike, standin_args: &[&str], settings: Value) -> Self {
        let dir = TempDir::new("entra-gateway");
        let key = system_key("entra-gateway");
        let key_file = dir.path().join("mcp_extension");
        std::fs::write(&key_file, &key).unwrap();
        let args: Vec<String> = standin_args.iter().map(|s| s.to_string()).collect();
        let standin = Standin::start_on(&key_file, 0, &args).expect("stand-in");
        let idp = Idp::start_entra_like(idp).expect("entra-like IdP");
        let api = idp.ready["apiClientId"].as_str().unwrap().to_string();
        let (listen, base) = public_listener();
        let mut config = json!({
            "listen": listen.to_string(),
            "publicBaseUrl": base,
            "upstream": {"url": standin.url},
            "systemKey": {"file": key_file},
            "auth": {"mode": "Oidc", "issuer": idp.issuer, "audiences": [api]},
        });
        for (name, value) in settings.as_object().expect("settings are an object") {
            match (config.get_mut(name), value) {
                (Some(Value::Object(base)), Value::Object(more)) => {
                    base.extend(more.clone());
                }
                _ => config[name] = value.clone(),
            }
        }
        let config: Config = serde_json::from_value(config).unwrap();
        let sidecar = Sidecar::start(config).expect("sidecar starts");
        sidecar.wait_ready().await.expect("sidecar ready");
        Self {
            _dir: dir,
            standin,
            idp,
            sidecar,
            key,
            api,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.sidecar.url)
    }

    /// An Entra-shaped v2 token with these claims (see the IdP fixture's `/_test/entra-token`).
    pub async fn token(&self, claims: Value) -> String {
        self.idp.entra_token(claims).await.unwrap()
    }

    /// `body` POSTed to the MCP endpoint as is.
    pub async fn post(&self, token: &str, body: &str) -> Answer {
        let response = reqwest::Client::new()
            .post(self.mcp_url())
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
        Answer {
            status: response.status().as_u16(),
            challenge: challenge.unwrap_or_default(),
            retry_after,
            body: response.text().await.unwrap(),
        }
    }

    /// The TypeScript SDK client calling `tool` with `token`.
    pub fn call(&self, token: &str, tool: &str, args: &str) -> (bool, Value, String) {
        fixtures::mcp_client(&[
            "--url",
            &self.mcp_url(),
            "--token",
            token,
            "--call",
            tool,
            "--args",
            args,
        ])
        .unwrap()
    }

    pub fn assert_nothing_leaked(&self) {
        let logs = self.sidecar.logs();
        assert!(!logs.contains(&self.key), "the system key reached the logs");
        assert!(!logs.contains("eyJ"), "a token reached the logs");
    }
}
