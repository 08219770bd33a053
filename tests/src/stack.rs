//! The sidecar end-to-end stack: the Functions host stand-in + (optionally) the OpenID
//! provider + the real sidecar binary, wired as in a cluster, with a record of every response
//! byte tests saw so a key leak anywhere is found. Used by `sidecar_e2e` and `sidecar_faults`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_gateway_contract::config::Config;
use serde_json::{Value, json};

use crate::TempDir;
use crate::fixtures::{self, Idp, Standin};
use crate::sidecar::{Sidecar, public_listener};

pub const SCOPE: &str = "mcp:tools";
pub const ACCEPT: &str = "application/json, text/event-stream";

/// A recognizable key, so a leak anywhere is found by a plain search.
pub fn system_key(tag: &str) -> String {
    format!("SYSKEY-{tag}-5f2b9c1e7d")
}

/// Writes `key` the way the kubelet updates a Secret volume: a new timestamped directory,
/// a `..data` symlink swapped atomically to it, and the key file a symlink through `..data`.
pub fn write_secret_volume(dir: &std::path::Path, key: &str) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let version = dir.join(format!(
        "..v{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("mcp_extension"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("mcp_extension");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/mcp_extension", &link).unwrap();
    }
}

pub fn initialize_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}})
    .to_string()
}

/// Reads an SSE response until its first complete event; returns the stream (still open)
/// and the event's text.
pub async fn first_event(
    response: reqwest::Response,
) -> (
    impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>,
    String,
) {
    use futures::StreamExt;
    let mut stream = Box::pin(response.bytes_stream());
    let mut raw = Vec::new();
    while !String::from_utf8_lossy(&raw).contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an SSE event within 5 s")
            .expect("the stream is open")
            .expect("a chunk");
        raw.extend_from_slice(&chunk);
    }
    (stream, String::from_utf8_lossy(&raw).into_owned())
}

/// How to build a [`Stack`].
#[derive(Debug, Default, Clone)]
pub struct StackOptions {
    /// Start the OpenID provider and configure `auth.mode: Oidc` against it (else Anonymous).
    pub oidc: bool,
    /// The stand-in reads its own copy of the key (`Stack::standin_key_file`) instead of the
    /// sidecar's Secret volume, so a test can break the sidecar's file alone.
    pub separate_key_files: bool,
    /// Extra stand-in arguments, e.g. `--json-response`.
    pub standin_args: Vec<String>,
    /// The system key, instead of [`system_key`]`("a")`: e.g. one shaped like a real key.
    pub key: Option<String>,
}

/// Stand-in + IdP + sidecar, wired as in a cluster: the stand-in and the sidecar read the
/// same key file (unless [`StackOptions::separate_key_files`]), as the Function App and the
/// Key Vault-synced Secret agree on one key.
pub struct Stack {
    pub dir: TempDir,
    pub key: Mutex<String>,
    pub standin: Standin,
    pub idp: Option<Idp>,
    pub sidecar: Sidecar,
    /// The file the sidecar reads the key from (a symlink into the Secret volume).
    pub key_file: PathBuf,
    /// The file the stand-in reads the key from.
    pub standin_key_file: PathBuf,
    options: StackOptions,
    /// Every response body and header block seen by tests, for the leak check.
    pub seen: Arc<Mutex<Vec<u8>>>,
}

impl Stack {
    pub async fn start(oidc: bool, tweak: impl FnOnce(&mut Config)) -> Stack {
        Self::start_with(
            StackOptions {
                oidc,
                ..Default::default()
            },
            tweak,
        )
        .await
    }

    pub async fn start_with(options: StackOptions, tweak: impl FnOnce(&mut Config)) -> Stack {
        let dir = TempDir::new("e2e");
        let volume = dir.path().join("secret");
        std::fs::create_dir_all(&volume).unwrap();
        let key = options.key.clone().unwrap_or_else(|| system_key("a"));
        write_secret_volume(&volume, &key);
        let key_file = volume.join("mcp_extension");
        let standin_key_file = if options.separate_key_files {
            let file = dir.path().join("standin-key");
            std::fs::write(&file, &key).unwrap();
            file
        } else {
            key_file.clone()
        };
        let standin =
            Standin::start_on(&standin_key_file, 0, &options.standin_args).expect("stand-in");
        let idp = options.oidc.then(|| Idp::start().expect("oidc-provider"));
        let (listen, base) = public_listener();
        let auth = match &idp {
            Some(idp) => oidc_auth(&idp.issuer, &base),
            None => json!({"mode": "Anonymous"}),
        };
        let mut config: Config = serde_json::from_value(json!({
            "listen": listen.to_string(),
            "publicBaseUrl": base,
            "upstream": {"url": standin.url, "responseTimeoutSeconds": 5},
            "systemKey": {"file": key_file},
            "auth": auth,
            "allowedOrigins": ["http://localhost:6274"],
        }))
        .unwrap();
        tweak(&mut config);
        let sidecar = Sidecar::start(config).expect("sidecar starts");
        sidecar.wait_ready().await.expect("sidecar ready");
        Stack {
            dir,
            key: Mutex::new(key),
            standin,
            idp,
            sidecar,
            key_file,
            standin_key_file,
            options,
            seen: Default::default(),
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.sidecar.url)
    }

    pub fn idp(&self) -> &Idp {
        self.idp.as_ref().expect("started with oidc")
    }

    pub fn token(&self) -> String {
        self.idp()
            .token(&self.mcp_url(), SCOPE, "RS256")
            .expect("token")
    }

    /// Starts a new stand-in on the port of the old one (stop that first), with the same key
    /// file and arguments: the Function App coming back at the same address.
    pub fn restart_standin(&mut self) -> anyhow::Result<()> {
        let port = self.standin.port();
        self.standin = Standin::start_on(&self.standin_key_file, port, &self.options.standin_args)?;
        Ok(())
    }

    pub fn record(&self, bytes: &[u8]) {
        self.seen.lock().unwrap().extend_from_slice(bytes);
    }

    /// Sends a request and records the raw response (status line, headers, body).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        self.record(format!("{status} {headers:?}\n{body}\n").as_bytes());
        (status, headers, body)
    }

    /// A Streamable HTTP POST of `body` to the gateway's MCP endpoint, with a bearer token
    /// and a session id when given.
    pub fn post(
        &self,
        http: &reqwest::Client,
        token: Option<&str>,
        session: Option<&str>,
        body: String,
    ) -> reqwest::RequestBuilder {
        let mut r = http
            .post(self.mcp_url())
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .body(body);
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        if let Some(session) = session {
            r = r.header("mcp-session-id", session);
        }
        r
    }

    /// `initialize` + `notifications/initialized` through the gateway; returns the (sealed)
    /// session id.
    pub async fn open_session(&self, http: &reqwest::Client, token: Option<&str>) -> String {
        let (status, headers, body) = self
            .send(self.post(http, token, None, initialize_body()))
            .await;
        assert_eq!(status, 200, "initialize: {body}");
        let session = headers["mcp-session-id"].to_str().unwrap().to_string();
        let initialized =
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        let (status, _, _) = self
            .send(self.post(http, token, Some(&session), initialized))
            .await;
        assert_eq!(status, 202);
        session
    }

    pub fn client(&self, args: &[&str]) -> Value {
        let (ok, value, raw) = fixtures::mcp_client(args).expect("mcp-client runs");
        self.record(raw.as_bytes());
        assert!(ok, "mcp-client failed: {raw}");
        value
    }

    /// The key never reached a client or a log line.
    pub fn assert_no_key_leak(&self) {
        let key = self.key.lock().unwrap().clone();
        let seen = String::from_utf8_lossy(&self.seen.lock().unwrap()).to_string();
        assert!(!seen.contains(&key), "the system key reached a client");
        assert!(!seen.contains("SYSKEY-"), "a system key reached a client");
        let logs = self.sidecar.logs();
        assert!(
            !logs.contains(&key),
            "the system key reached the sidecar's logs"
        );
        assert!(
            !logs.contains("SYSKEY-"),
            "a system key reached the sidecar's logs"
        );
        assert!(!logs.contains("eyJ"), "a token reached the sidecar's logs");
    }
}

/// The `auth` section for tokens from `issuer` for the gateway at `base` (`.../mcp`),
/// requiring [`SCOPE`], with no leeway.
pub fn oidc_auth(issuer: &str, base: &str) -> Value {
    json!({"mode": "Oidc", "issuer": issuer, "audiences": [format!("{base}/mcp")],
           "requiredScopes": [SCOPE], "leewaySeconds": 0})
}

/// A JSON-RPC `tools/call` request.
pub fn tool_call(id: u64, name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
    .to_string()
}
