//! Tier 5's public gateways (shared by `tests/tests/real_node.rs` and `scripts/demo` on a
//! node): an McpGateway published the way users publish one — Oidc with an issuer behind a
//! private CA (`trustedCA`), the Functions stand-in and the IdP on the node's bridge IP (where
//! pods reach the host), an Ingress of Traefik's class or an HTTPRoute to a Gateway, TLS for
//! `localhost` from a CA only the clients trust — and a real MCP client calling it at its
//! public URL.

use anyhow::Context;
use base64::Engine;
use serde_json::Value;

use crate::TempDir;
use crate::fixtures::{self, Standin};
use crate::node::Node;
use crate::tls;
use crate::traefik::{INGRESS_CLASS, PUBLIC_HOST};

/// The system-key Secret `weather-fn-keys` of `namespace`, holding `key`.
pub fn secret_manifest(namespace: &str, key: &str) -> String {
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: weather-fn-keys
  namespace: {namespace}
data:
  mcp_extension: {key_b64}
"#
    )
}

/// A gateway the way users publish one: Oidc with an issuer behind a private CA
/// (`trustedCA`), an Ingress of Traefik's class with TLS from a Secret, on `localhost` (so
/// its public URL is exactly what clients on this machine use). Each test has its own path
/// prefix on that host.
pub struct PublicGateway {
    pub namespace: String,
    pub url: String,
    pub standin: Standin,
    pub idp: fixtures::Idp,
    pub key: String,
    /// The ingress's and the IdP's CAs, for clients.
    pub client_ca: std::path::PathBuf,
    _dir: TempDir,
}

/// How a [`PublicGateway`] is published.
pub enum Publish {
    /// An Ingress of Traefik's class, TLS from the route's Secret.
    Ingress,
    /// An HTTPRoute attached to the Gateway `namespace/name` (TLS is its listener's).
    Gateway { namespace: String, name: String },
}

/// The certificate for `localhost` every ingress and Gateway listener of this process
/// serves (one CA, so a client trusts all of them), made once.
pub fn ingress_certificate() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = TempDir::new("real-node-ingress");
        tls::make_certificates_for(dir.path(), &format!("DNS:{PUBLIC_HOST}"));
        dir
    })
    .path()
}

/// A `kubernetes.io/tls` Secret `name` in `namespace` with [`ingress_certificate`].
pub fn ingress_tls_secret(namespace: &str, name: &str) -> String {
    let b64 = |file: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(ingress_certificate().join(file)).unwrap())
    };
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
"#,
        crt = b64("leaf.pem"),
        key = b64("leaf.key"),
    )
}

impl PublicGateway {
    pub async fn deploy(
        node: &Node,
        namespace: &str,
        replicas: u32,
    ) -> anyhow::Result<PublicGateway> {
        Self::deploy_with(node, namespace, replicas, Publish::Ingress).await
    }

    pub async fn deploy_with(
        node: &Node,
        namespace: &str,
        replicas: u32,
        publish: Publish,
    ) -> anyhow::Result<PublicGateway> {
        node.ensure_operator().await?;
        node.traefik()?;
        let dir = TempDir::new("real-node-public");
        let key = format!("SYSKEY-{namespace}-{}", std::process::id());
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, &key)?;
        let standin = Standin::start_on(&key_file, 0, &["--host".into(), node.ip.clone()])
            .context("functions stand-in on the bridge IP")?;
        // Two private CAs: the IdP's (which the pods trust through trustedCA) and the
        // ingress certificate's (which only the clients trust).
        let idp_dir = dir.path().join("idp");
        std::fs::create_dir_all(&idp_dir)?;
        tls::make_certificates_for(&idp_dir, &format!("IP:{}", node.ip));
        let ingress_dir = ingress_certificate();
        let idp =
            fixtures::Idp::start_https(&node.ip, &idp_dir).context("https IdP on the bridge")?;
        let client_ca = dir.path().join("client-ca.pem");
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
        std::fs::write(
            &client_ca,
            read(idp_dir.join("ca.pem")) + &read(ingress_dir.join("ca.pem")),
        )
        .unwrap();
        let url = format!("https://{PUBLIC_HOST}/{namespace}/mcp");
        let publish_as = match &publish {
            Publish::Ingress => {
                format!("ingressClassName: {INGRESS_CLASS}\n    tls:\n      secretName: public-tls")
            }
            Publish::Gateway { namespace, name } => {
                format!("gatewayRef:\n      name: {name}\n      namespace: {namespace}")
            }
        };
        let indent = |pem: String| pem.replace('\n', "\n    ");
        let manifest = format!(
            r#"apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
{secret}---
{tls_secret}---
apiVersion: v1
kind: ConfigMap
metadata:
  name: idp-ca
  namespace: {namespace}
data:
  ca.crt: |
    {ca}
---
apiVersion: mcpgateway.dev/v1alpha1
kind: McpGateway
metadata:
  name: weather
  namespace: {namespace}
spec:
  replicas: {replicas}
  upstream:
    url: {upstream}
    allowInsecureUpstream: true
  systemKey:
    secretRef:
      name: weather-fn-keys
  auth:
    mode: Oidc
    oidc:
      issuer: {issuer}
      audiences: ["{url}"]
      requiredScopes: ["mcp:tools"]
  trustedCA:
    configMapRef:
      name: idp-ca
  resources:
    requests: {{cpu: 10m, memory: 32Mi}}
    limits: {{memory: 128Mi}}
  route:
    host: {PUBLIC_HOST}
    pathPrefix: /{namespace}
    keepAliveSeconds: 5
    {publish_as}
"#,
            secret = secret_manifest(namespace, &key),
            tls_secret = ingress_tls_secret(namespace, "public-tls"),
            ca = indent(read(idp_dir.join("ca.pem"))),
            upstream = standin.url,
            issuer = idp.issuer,
        );
        node.kubectl(&["apply", "-f", "-"], Some(&manifest))
            .context("kubectl apply the public gateway")?;
        let gw = PublicGateway {
            namespace: namespace.into(),
            url,
            standin,
            idp,
            key,
            client_ca,
            _dir: dir,
        };
        node.wait_gateway_ready(namespace, replicas).await?;
        Ok(gw)
    }

    /// The TypeScript SDK client through Traefik at the public URL: the SDK's own OAuth
    /// discovery (401 → resource metadata → the IdP's metadata → client_credentials with the
    /// resource indicator), then the echo tool.
    pub fn call(&self, message: &str) -> Result<Value, String> {
        let args = format!(r#"{{"message":"{message}"}}"#);
        let (ok, out, raw) = fixtures::mcp_client_trusting(
            &self.client_ca,
            &[
                "--url",
                &self.url,
                "--transport",
                "streamable",
                "--oauth-client-credentials",
                "--client-id",
                fixtures::CLIENT_ID,
                "--client-secret",
                fixtures::CLIENT_SECRET,
                "--scope",
                "mcp:tools",
                "--expected-issuer",
                &self.idp.issuer,
                "--call",
                "echo",
                "--args",
                &args,
            ],
        )
        .map_err(|e| e.to_string())?;
        if ok && out["result"].to_string().contains(message) {
            Ok(out)
        } else {
            Err(format!("MCP client via {}: {raw}", self.url))
        }
    }
}

/// An https client trusting the gateway's client CA (the ingress's and its IdP's).
pub fn https_client(gw: &PublicGateway) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    for cert in
        reqwest::Certificate::from_pem_bundle(&std::fs::read(&gw.client_ca).unwrap()).unwrap()
    {
        builder = builder.add_root_certificate(cert);
    }
    builder.build().unwrap()
}
