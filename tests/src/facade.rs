//! An authorization-server facade gateway for tests: the files it reads, its config, and
//! an Entra-like IdP (oidc-provider `--entra-like`) with the gateway's client registered.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use mcp_gateway_contract::config::Config;
use serde_json::json;

use crate::TempDir;
use crate::fixtures::node_dir;
use crate::process::Process;

pub const GATEWAY_CLIENT: &str = "mcp-gateway-app";
pub const GATEWAY_SECRET: &str = "IDPSECRET-facade-test-51c0";
pub const SYSTEM_KEY: &str = "SYSKEY-facade-test-7e21";
pub const REDIRECT: &str = "http://127.0.0.1/callback";
pub const SCOPE: &str = "mcp.tools";

/// oidc-provider in its Entra-like mode, with the gateway's confidential client registered
/// for `callback`.
pub struct EntraLike {
    pub issuer: String,
    /// The whole ready line (tenantId, organizationsIssuer, …).
    pub ready: serde_json::Value,
    _process: Process,
}

impl EntraLike {
    pub fn start(callbacks: &[String]) -> anyhow::Result<Self> {
        let dir = node_dir();
        let node22 = dir.join("bin/node22");
        let clients = json!([{
            "client_id": GATEWAY_CLIENT, "client_secret": GATEWAY_SECRET,
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "redirect_uris": callbacks, "token_endpoint_auth_method": "client_secret_post",
            "scope": "openid profile offline_access",
        }]);
        let node = if node22.exists() {
            node22
        } else {
            PathBuf::from("node")
        };
        let mut c = Command::new(node);
        c.current_dir(&dir).arg("oidc-provider.mjs").args([
            "--port",
            "0",
            "--entra-like",
            "--scopes",
            "openid profile offline_access",
            "--subject",
            "alice",
            "--clients",
            &clients.to_string(),
        ]);
        let (process, ready) =
            Process::spawn_ready("oidc-provider", c, None, Duration::from_secs(30))?;
        Ok(Self {
            issuer: ready["issuer"].as_str().context("issuer")?.to_string(),
            ready,
            _process: process,
        })
    }

    /// Later sign-ins are made as `subject`, with these app roles in its ID tokens.
    pub async fn sign_in_as(&self, subject: &str, roles: &[&str]) -> anyhow::Result<()> {
        let origin = url::Url::parse(&self.issuer)?
            .origin()
            .ascii_serialization();
        let res = reqwest::Client::new()
            .post(format!("{origin}/_test/subject"))
            .query(&[("sub", subject), ("roles", &roles.join(","))])
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "set subject: {}", res.status());
        Ok(())
    }
}

/// Files a facade gateway reads.
pub struct Files {
    pub dir: TempDir,
}

impl Default for Files {
    fn default() -> Self {
        Self::new()
    }
}

impl Files {
    pub fn new() -> Self {
        let dir = TempDir::new("facade");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("system-key", SYSTEM_KEY);
        write("client-secret", GATEWAY_SECRET);
        let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        write("facade-keys", &format!("{}\n", key(7)));
        write("session-keys", &format!("{}\n", key(9)));
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn facade_config(
    listen: std::net::SocketAddr,
    public: &str,
    prefix: &str,
    idp: &str,
    upstream: &str,
    files: &Files,
) -> Config {
    serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": public,
        "pathPrefix": prefix,
        "upstream": {"url": upstream},
        "systemKey": {"file": files.path("system-key")},
        "session": {"keysFile": files.path("session-keys")},
        "auth": {
            "mode": "AuthorizationServer",
            "idp": {"issuer": idp, "clientId": GATEWAY_CLIENT,
                    "clientSecretFile": files.path("client-secret"), "preset": "Entra"},
            "keysFile": files.path("facade-keys"),
            "scopes": [SCOPE],
        },
    }))
    .unwrap()
}
