//! The Node test fixtures in `tests/fixtures/node` (see its README): the Functions host
//! stand-in, the Entra + Key Vault stand-in, the OIDC provider (also in its `--entra-like`
//! mode), the TypeScript SDK clients (bearer/client_credentials, and the authorization-code flow
//! through a headless browser), and the Python SDK clients in `tests/fixtures/python`. `npm ci`
//! there first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::Process;
use crate::workspace_root;

pub fn node_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/node")
}

fn node_command(script: &str) -> Command {
    let dir = node_dir();
    assert!(
        dir.join("node_modules").is_dir(),
        "tests/fixtures/node/node_modules is missing: run `npm ci` there (.ci/run does)"
    );
    let mut c = Command::new("node");
    c.current_dir(&dir).arg(script);
    c
}

/// The Azure Functions MCP host stand-in in front of a real SDK MCP server.
pub struct Standin {
    pub url: String,
    _process: Process,
}

impl Standin {
    pub fn start(key_file: &Path) -> anyhow::Result<Self> {
        Self::start_on(key_file, 0, &[])
    }

    /// Starts the stand-in on `port` (0: a free one) with extra arguments (e.g.
    /// `--json-response`, see functions-standin.mjs).
    pub fn start_on(key_file: &Path, port: u16, args: &[String]) -> anyhow::Result<Self> {
        let mut c = node_command("functions-standin.mjs");
        c.arg("--key-file")
            .arg(key_file)
            .args(["--port", &port.to_string()])
            .args(args);
        let (process, ready) =
            Process::spawn_ready("functions stand-in", c, None, Duration::from_secs(20))?;
        Ok(Self {
            url: ready["url"].as_str().context("stand-in url")?.to_string(),
            _process: process,
        })
    }

    pub fn port(&self) -> u16 {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.port())
            .expect("the stand-in URL has a port")
    }

    /// What the stand-in saw on `/runtime/webhooks/*` (no key values).
    pub async fn requests(&self) -> anyhow::Result<Vec<Value>> {
        let v: Value = reqwest::get(format!("{}/_standin/requests", self.url))
            .await?
            .json()
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub async fn stats(&self) -> anyhow::Result<Value> {
        Ok(reqwest::get(format!("{}/_standin/stats", self.url))
            .await?
            .json()
            .await?)
    }

    /// Kills the stand-in, as an upstream that goes away would: its streams end.
    pub fn stop(&mut self) {
        self._process.kill();
    }
}

/// The Entra token endpoint + Key Vault stand-in (`keyvault-standin.mjs`): workload
/// identity tokens for the assertion in `assertion_file`, and one secret.
pub struct KeyVaultStandin {
    pub url: String,
    pub client_id: String,
    pub tenant_id: String,
    pub secret_name: String,
    _process: Process,
}

impl KeyVaultStandin {
    pub const CLIENT_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    pub const SECRET_NAME: &str = "host--systemKey--mcp-095extension";

    /// Starts the stand-in; tokens it issues live `expires_in` seconds. It has no secret
    /// until [`KeyVaultStandin::set_secret`].
    pub fn start(assertion_file: &Path, expires_in: u32) -> anyhow::Result<Self> {
        let mut c = node_command("keyvault-standin.mjs");
        c.arg("--assertion-file")
            .arg(assertion_file)
            .args(["--client-id", Self::CLIENT_ID, "--tenant", Self::TENANT_ID])
            .args(["--secret-name", Self::SECRET_NAME])
            .args(["--expires-in", &expires_in.to_string(), "--port", "0"]);
        let (process, ready) =
            Process::spawn_ready("keyvault stand-in", c, None, Duration::from_secs(20))?;
        Ok(Self {
            url: ready["url"].as_str().context("stand-in url")?.to_string(),
            client_id: Self::CLIENT_ID.into(),
            tenant_id: Self::TENANT_ID.into(),
            secret_name: Self::SECRET_NAME.into(),
            _process: process,
        })
    }

    /// The sidecar's `systemKey.keyVault` for this stand-in (http on loopback, the stand-in
    /// as the Entra authority too).
    pub fn sidecar_config(&self, token_file: &Path, refresh_seconds: u32) -> Value {
        serde_json::json!({
            "vaultUrl": self.url,
            "secretName": self.secret_name,
            "refreshSeconds": refresh_seconds,
            "clientId": self.client_id,
            "tenantId": self.tenant_id,
            "authorityHost": format!("{}/", self.url),
            "tokenFile": token_file,
        })
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
        Ok(r.json().await?)
    }

    /// Stores a new version of the secret; returns the version id.
    pub async fn set_secret(&self, value: &str) -> anyhow::Result<String> {
        let v = self
            .post("/_test/secret", serde_json::json!({ "value": value }))
            .await?;
        Ok(v["version"].as_str().context("version")?.to_string())
    }

    /// Key Vault behaviour: `up`, `down` (503), `drop` (connections closed), `denied` (403).
    pub async fn set_vault(&self, mode: &str) -> anyhow::Result<()> {
        self.post("/_test/mode", serde_json::json!({ "vault": mode }))
            .await
            .map(drop)
    }

    /// Token endpoint behaviour: `up`, `down` (503), `denied` (400 invalid_client).
    pub async fn set_token(&self, mode: &str) -> anyhow::Result<()> {
        self.post("/_test/mode", serde_json::json!({ "token": mode }))
            .await
            .map(drop)
    }

    /// Forgets every token issued so far: Key Vault answers 401 to them.
    pub async fn revoke_tokens(&self) -> anyhow::Result<()> {
        self.post("/_test/revoke", serde_json::json!({}))
            .await
            .map(drop)
    }

    /// Token requests seen (with whether the assertion matched the file), read counters.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        Ok(reqwest::get(format!("{}/_test/stats", self.url))
            .await?
            .json()
            .await?)
    }
}

/// Node 22 when `npm ci` installed it (oidc-provider's supported runtime), else `node`.
fn node22_command(script: &str) -> Command {
    let dir = node_dir();
    let node22 = dir.join("bin/node22");
    let node = if node22.exists() {
        node22
    } else {
        PathBuf::from("node")
    };
    let mut c = Command::new(node);
    c.current_dir(&dir).arg(script);
    c
}

/// A real OpenID provider (`oidc-provider`) minting audience-bound JWT access tokens, or (from
/// [`Idp::start_entra_like`]) one that behaves like Microsoft Entra ID's v2 endpoints.
pub struct Idp {
    pub issuer: String,
    /// `http://127.0.0.1:<port>`: the test-only routes (`/_test/...`) live here.
    pub url: String,
    /// The whole ready line (`--entra-like` adds tenantId, discoveryUrl, authorizationEndpoint,
    /// tokenEndpoint, gatewayClientId, subject, oid).
    pub ready: Value,
    /// The private CA of an https provider ([`Idp::start_https`]): its token requests trust it.
    ca_file: Option<std::path::PathBuf>,
    _process: Process,
}

pub const CLIENT_ID: &str = "mcp-test";
pub const CLIENT_SECRET: &str = "test-secret";
/// A second confidential client: tokens for another subject.
pub const OTHER_CLIENT_ID: &str = "mcp-other";
pub const OTHER_CLIENT_SECRET: &str = "other-secret";

/// `--entra-like`: the tenant GUID (the `tid` claim; the issuer is
/// `http://127.0.0.1:<port>/<tid>/v2.0`).
pub const ENTRA_TENANT_ID: &str = "5e7a1c3b-0d2f-4e8a-9b6c-7f1e2d3c4b5a";
/// `--entra-like`: the pre-registered confidential client for the gateway (a "web" app
/// registration): `client_secret_post`, authorization_code + refresh_token, scope
/// `openid profile offline_access`, redirect URIs = [`EntraLike::redirect_uris`], matched
/// exactly (port included). Present only when redirect URIs are given and `clients` is not.
pub const ENTRA_GATEWAY_CLIENT_ID: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
pub const ENTRA_GATEWAY_CLIENT_SECRET: &str = "gateway-test-secret";
/// VS Code's client ID, a public client (code + PKCE, loopback redirect) that Entra admins
/// pre-authorize on the API; registered in the `--entra-like` fixture by default.
pub const VSCODE_CLIENT_ID: &str = "aebc6443-996d-45c2-90f0-388ff96faa56";

/// Options for [`Idp::start_entra_like`].
#[derive(Debug, Default, Clone)]
pub struct EntraLike {
    /// Redirect URIs of the gateway client ([`ENTRA_GATEWAY_CLIENT_ID`]), e.g.
    /// `http://127.0.0.1:<gateway port>/weather/oauth/callback`. Clients can also be added
    /// after start with [`Idp::add_clients`] (when the gateway's port is known only later).
    pub redirect_uris: Vec<String>,
    /// Replaces the default clients (a JSON array of oidc-provider client metadata).
    pub clients: Option<Value>,
    /// Another tenant GUID (lower case) than [`ENTRA_TENANT_ID`].
    pub tenant_id: Option<String>,
    /// The user logins are made as (default `test-user`); see also [`Idp::set_subject`].
    pub subject: Option<String>,
    /// Replaces the scopes the IdP knows (default `openid profile email offline_access
    /// api://<API>/mcp.tools`), space-separated.
    pub scopes: Option<String>,
    /// Listen on this address of this machine's own over https, with `dir/leaf.pem` signed by
    /// the private CA `dir/ca.pem` ([`crate::tls::make_certificates_for`]).
    pub https: Option<(String, std::path::PathBuf)>,
}

impl Idp {
    /// Starts the provider with two confidential clients ([`CLIENT_ID`], [`OTHER_CLIENT_ID`]).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(0)
    }

    /// [`Idp::start`] on a given port (0: a free one): the issuer, which includes the port,
    /// can be configured before the provider runs.
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::spawn(Self::command(port))
    }

    fn command(port: u16) -> Command {
        let client = |id: &str, secret: &str| {
            serde_json::json!({
                "client_id": id, "client_secret": secret,
                "grant_types": ["client_credentials"], "response_types": [], "redirect_uris": [],
            })
        };
        let clients = serde_json::json!([
            client(CLIENT_ID, CLIENT_SECRET),
            client(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET)
        ]);
        let mut c = node22_command("oidc-provider.mjs");
        c.args([
            "--port",
            &port.to_string(),
            "--clients",
            &clients.to_string(),
        ]);
        c
    }

    /// [`Idp::start`] on `host` (an address of this machine's own) over https, with a leaf
    /// certificate `dir/leaf.pem` signed by the private CA `dir/ca.pem`
    /// ([`crate::tls::make_certificates_for`]): an issuer only a gateway told to trust that CA
    /// can reach.
    pub fn start_https(host: &str, dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut c = Self::command(0);
        c.args(["--host", host])
            .arg("--tls-cert")
            .arg(dir.join("leaf.pem"))
            .arg("--tls-key")
            .arg(dir.join("leaf.key"));
        let mut idp = Self::spawn(c)?;
        idp.ca_file = Some(dir.join("ca.pem"));
        Ok(idp)
    }

    /// Starts the provider in `--entra-like` mode (see oidc-provider.mjs and the README): no
    /// DCR, no `code_challenge_methods_supported` (PKCE still required), `resource` rejected
    /// with AADSTS9010010, ID tokens with `tid`/`oid` and a pairwise `sub`, no `iss` in
    /// authorization responses, discovery at `<issuer>/.well-known/openid-configuration` only.
    pub fn start_entra_like(options: &EntraLike) -> anyhow::Result<Self> {
        let mut c = node22_command("oidc-provider.mjs");
        c.args(["--port", "0", "--entra-like"]);
        for uri in &options.redirect_uris {
            c.args(["--redirect-uri", uri]);
        }
        if let Some(clients) = &options.clients {
            c.args(["--clients", &clients.to_string()]);
        }
        if let Some(tenant) = &options.tenant_id {
            c.args(["--tenant-id", tenant]);
        }
        if let Some(subject) = &options.subject {
            c.args(["--subject", subject]);
        }
        if let Some(scopes) = &options.scopes {
            c.args(["--scopes", scopes]);
        }
        if let Some((host, dir)) = &options.https {
            c.args(["--host", host])
                .arg("--tls-cert")
                .arg(dir.join("leaf.pem"))
                .arg("--tls-key")
                .arg(dir.join("leaf.key"));
        }
        let mut idp = Self::spawn(c)?;
        idp.ca_file = options.https.as_ref().map(|(_, dir)| dir.join("ca.pem"));
        Ok(idp)
    }

    fn spawn(command: Command) -> anyhow::Result<Self> {
        let (process, ready) =
            Process::spawn_ready("oidc-provider", command, None, Duration::from_secs(30))?;
        Ok(Self {
            issuer: ready["issuer"].as_str().context("issuer")?.to_string(),
            url: ready["url"].as_str().context("url")?.to_string(),
            ready,
            ca_file: None,
            _process: process,
        })
    }

    /// `--entra-like`: an access token shaped as Entra ID issues it (see `POST
    /// /_test/entra-token` in oidc-provider.mjs: `version` "2.0" or "1.0", `tid`, `aud`,
    /// `scp`, `roles`, `appOnly`, `sub`, `client`), signed with the published RS256 key.
    pub async fn entra_token(&self, want: Value) -> anyhow::Result<String> {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/_test/entra-token", self.url))
            .json(&want)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["access_token"]
            .as_str()
            .context("access_token")?
            .to_string())
    }

    /// Kills the provider, as an IdP outage would.
    pub fn stop(&mut self) {
        self._process.kill();
    }

    /// Rotates the signing key of `alg` (RS256 or ES256): the next key is published and signs
    /// new tokens; with `retire` the previous one is withdrawn from the JWKS. Returns
    /// `{"active": {alg: kid}, "published": [kid]}`.
    pub async fn rotate(&self, alg: &str, retire: bool) -> anyhow::Result<Value> {
        let res = reqwest::Client::new()
            .post(format!("{}/_test/rotate", self.url))
            .query(&[("alg", alg), ("retire", if retire { "1" } else { "0" })])
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "rotate: {}", res.status());
        Ok(res.json().await?)
    }

    /// Later logins are made as `subject`. Returns `{"subject", "oid", "tid"}` (`oid`/`tid`
    /// with `--entra-like` only).
    pub async fn set_subject(&self, subject: &str) -> anyhow::Result<Value> {
        let res = reqwest::Client::new()
            .post(format!("{}/_test/subject", self.url))
            .query(&[("sub", subject)])
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "set subject: {}", res.status());
        Ok(res.json().await?)
    }

    /// Like [`Idp::set_subject`], and assigns that user these app roles (Entra-like: in its
    /// ID tokens' `roles`).
    pub async fn set_subject_with_roles(
        &self,
        subject: &str,
        roles: &[&str],
    ) -> anyhow::Result<Value> {
        let res = reqwest::Client::new()
            .post(format!("{}/_test/subject", self.url))
            .query(&[("sub", subject), ("roles", &roles.join(","))])
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "set subject: {}", res.status());
        Ok(res.json().await?)
    }

    /// Registers more clients (oidc-provider client metadata: one object or an array), e.g. the
    /// gateway's confidential client once its callback URL is known.
    pub async fn add_clients(&self, clients: &Value) -> anyhow::Result<()> {
        let res = reqwest::Client::new()
            .post(format!("{}/_test/clients", self.url))
            .json(clients)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "add clients: {}", res.status());
        Ok(())
    }

    /// A client_credentials access token for `resource` with `scope`, signed with `alg`.
    pub fn token(&self, resource: &str, scope: &str, alg: &str) -> anyhow::Result<String> {
        self.token_with(resource, scope, alg, None)
    }

    pub fn token_with(
        &self,
        resource: &str,
        scope: &str,
        alg: &str,
        ttl: Option<u32>,
    ) -> anyhow::Result<String> {
        self.token_for((CLIENT_ID, CLIENT_SECRET), resource, scope, alg, ttl)
    }

    /// A token for another client (and so another subject).
    pub fn token_for(
        &self,
        (client_id, secret): (&str, &str),
        resource: &str,
        scope: &str,
        alg: &str,
        ttl: Option<u32>,
    ) -> anyhow::Result<String> {
        let mut c = node_command("mint-token.mjs");
        c.args(["--issuer", &self.issuer, "--client-id", client_id])
            .args(["--client-secret", secret, "--resource", resource])
            .args(["--scope", scope, "--alg", alg]);
        if let Some(ttl) = ttl {
            c.args(["--ttl", &ttl.to_string()]);
        }
        if let Some(ca) = &self.ca_file {
            c.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let out = c.output().context("run mint-token.mjs")?;
        if !out.status.success() {
            bail!(
                "mint-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }
}

/// Runs the TypeScript SDK client (`mcp-client.mjs`) with `args`; returns whether it exited
/// 0, its JSON line, and all its output.
pub fn mcp_client(args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let mut c = node_command("mcp-client.mjs");
    c.args(args);
    run_client(c)
}

/// [`mcp_client`] trusting the CA certificates in `ca_file` besides Node's own (an https
/// endpoint behind a private CA: the real-node tier's Traefik, its IdP).
pub fn mcp_client_trusting(
    ca_file: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<(bool, Value, String)> {
    let mut c = node_command("mcp-client.mjs");
    c.env("NODE_EXTRA_CA_CERTS", ca_file).args(args);
    run_client(c)
}

/// Runs the TypeScript SDK's OAuth authorization-code client (`mcp-oauth-client.mjs`: DCR or
/// `--cimd-url`, a headless browser through the consent page and the IdP, PKCE, tools/call,
/// a refresh) with `args`; returns the same as [`mcp_client`]. Pass `--url <mcp url>`.
pub fn mcp_oauth_client(args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let mut c = node_command("mcp-oauth-client.mjs");
    c.args(args);
    run_client(c)
}

/// [`mcp_oauth_client`] (and its headless browser) trusting the CA certificates in `ca_file`
/// besides Node's own.
pub fn mcp_oauth_client_trusting(
    ca_file: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<(bool, Value, String)> {
    let mut c = node_command("mcp-oauth-client.mjs");
    c.env("NODE_EXTRA_CA_CERTS", ca_file).args(args);
    run_client(c)
}

/// Runs the Python SDK client (`tests/fixtures/python/mcp_client.py`, in the venv that
/// `scripts/test` makes) with `args`; returns the same as [`mcp_client`].
pub fn python_client(args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let mut c = python_command("mcp_client.py");
    c.args(args);
    run_client(c)
}

/// Runs the Python SDK's OAuth authorization-code client (`mcp_oauth_client.py`), the
/// counterpart of [`mcp_oauth_client`]; returns the same as [`mcp_client`].
pub fn python_oauth_client(args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let mut c = python_command("mcp_oauth_client.py");
    c.args(args);
    run_client(c)
}

/// Runs docs/caller-identity.md's Python sample (`tests/fixtures/python/verify_caller.py`)
/// on an assertion in a file.
pub fn python_verify_caller(args: &[&str]) -> anyhow::Result<(bool, Value, String)> {
    let mut c = python_command("verify_caller.py");
    c.args(args);
    run_client(c)
}

fn python_command(script: &str) -> Command {
    let dir = workspace_root().join("tests/fixtures/python");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "tests/fixtures/python/.venv is missing: run scripts/test (it makes the venv)"
    );
    let mut c = Command::new(python);
    c.arg(dir.join(script));
    c
}

/// A client fixture prints one JSON line last on stdout.
fn run_client(mut command: Command) -> anyhow::Result<(bool, Value, String)> {
    let out = command.output().context("run an MCP client fixture")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("{}");
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("client output: {stdout}"))?;
    let raw = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), v, raw))
}
