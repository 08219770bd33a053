//! The McpGateway CRD on a real kube-apiserver + etcd: it installs, every example applies,
//! `kubectl get`/`explain` read well, and admission rejects each invalid spec with the
//! message that says what to write instead, storing nothing.

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use mcp_gateway_crds::v1alpha1::McpGateway;
use mcp_gateway_operator::{annotations, validate};
use mcp_gateway_tests::cluster::{Cluster, TestNamespace};
use mcp_gateway_tests::workspace_root;
use serde_json::{Value, json};

/// A key-shaped value a user might paste into the upstream URL.
const URL_KEY: &str = "SYSKEY-in-the-url-a1b2c3";

fn valid_spec() -> Value {
    json!({
        "upstream": {"url": "https://fn.azurewebsites.net"},
        "systemKey": {"secretRef": {"name": "fn-keys"}},
        "auth": {"mode": "Oidc", "oidc": {"issuer": "https://login.microsoftonline.com/t/v2.0", "audiences": ["api://x"]}},
        "route": {"host": "mcp.example.com"}
    })
}

fn gateways(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<McpGateway>(&()))
}

async fn create(
    api: &Api<DynamicObject>,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1",
        "kind": "McpGateway",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await
}

/// Sets `value` at the JSON pointer `path` (creating objects on the way); `Value::Null`
/// removes the field.
fn with(mut spec: Value, path: &str, value: Value) -> Value {
    let (parent, last) = path.rsplit_once('/').unwrap();
    let mut target = &mut spec;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        target = target
            .as_object_mut()
            .unwrap()
            .entry(part)
            .or_insert(json!({}));
    }
    if value.is_null() {
        target.as_object_mut().unwrap().remove(last);
    } else {
        target[last] = value;
    }
    spec
}

#[tokio::test]
async fn crd_is_established_and_examples_apply() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().expect("CRD installs");
    // The Gateway API examples hold Gateways too: validated by the real CRDs.
    cluster
        .install_gateway_api_crds()
        .expect("Gateway API CRDs install");
    let client = cluster.client().await.unwrap();

    let examples = std::fs::read_dir(workspace_root().join("examples")).unwrap();
    let mut applied = 0;
    for entry in examples {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let (ok, out, err) = cluster.kubectl_run(&["apply", "-f", path.to_str().unwrap()], None);
        assert!(ok, "{} does not apply: {err}", path.display());
        assert!(out.contains("mcpgateway.mcpgateway.dev/"), "{out}");
        // Applying an example after the docs' steps must never overwrite a user's key.
        assert!(
            !out.contains("secret/"),
            "{} holds a Secret: {out}",
            path.display()
        );
        applied += 1;
    }
    assert!(
        applied >= 2,
        "expected the examples to include at least two McpGateways"
    );

    // The API server defaulted what the user left out.
    let weather = gateways(&client, "weather").get("weather").await.unwrap();
    assert_eq!(weather.data["spec"]["replicas"], 2);
    assert_eq!(
        weather.data["spec"]["upstream"]["path"],
        "/runtime/webhooks/mcp"
    );
    assert_eq!(
        weather.data["spec"]["upstream"]["transports"],
        json!(["StreamableHttp", "Sse"])
    );
    assert_eq!(
        weather.data["spec"]["systemKey"]["header"],
        "x-functions-key"
    );

    let (ok, table, err) = cluster.kubectl_run(&["get", "mcpgateways", "-A"], None);
    assert!(ok, "{err}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "HOST",
            "UPSTREAM",
            "AUTH",
            "READY",
            "URL",
            "AGE"
        ]
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("weather"))
        .expect("weather row");
    for cell in ["mcp.example.com", "Oidc"] {
        assert!(row.contains(cell), "row {row:?} lacks {cell}");
    }
    // UPSTREAM shows the operator's validated origin (status.upstream), never the spec's URL:
    // with no operator running here, it is empty.
    assert!(!row.contains("azurewebsites"), "row {row:?}");

    // Short name and category work too.
    let (ok, by_short, _) =
        cluster.kubectl_run(&["get", "mcpgw", "-n", "mcp-dev", "-o", "name"], None);
    assert!(
        ok && by_short.trim() == "mcpgateway.mcpgateway.dev/dev",
        "{by_short}"
    );
    let (ok, by_category, _) = cluster.kubectl_run(&["get", "mcp", "-A", "-o", "name"], None);
    assert!(ok && by_category.lines().count() >= 2, "{by_category}");

    let (ok, explain, err) = cluster.kubectl_run(&["explain", "mcpgateway.spec.auth"], None);
    assert!(ok, "{err}");
    assert!(
        explain.contains("mode") && explain.contains("Anonymous"),
        "{explain}"
    );
    assert!(
        explain.contains("How MCP clients authenticate"),
        "{explain}"
    );
}

#[tokio::test]
async fn admission_rejects_invalid_gateways_with_a_message_and_stores_nothing() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().expect("CRD installs");
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "invalid").await.unwrap();
    let api = gateways(&client, &ns.name);

    // The baseline is valid (so each rejection below is caused by its one change).
    create(&api, "baseline", valid_spec())
        .await
        .expect("the baseline spec is valid");

    let base = valid_spec;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "both-key-sources",
            with(
                base(),
                "/systemKey/keyVault",
                json!({"vaultName": "kv1", "clientId": "00000000-0000-0000-0000-000000000001", "tenantId": "00000000-0000-0000-0000-000000000002"}),
            ),
            "systemKey needs exactly one of secretRef",
        ),
        (
            "no-key-source",
            with(base(), "/systemKey/secretRef", Value::Null),
            "systemKey needs exactly one of secretRef",
        ),
        (
            "http-upstream",
            with(
                base(),
                "/upstream/url",
                json!("http://fn.azurewebsites.net"),
            ),
            "upstream.url must be an https URL",
        ),
        (
            "upstream-not-a-url",
            with(base(), "/upstream/url", json!("fn.azurewebsites.net")),
            "upstream.url must be an https URL",
        ),
        (
            "host-with-scheme",
            with(base(), "/route/host", json!("https://mcp.example.com")),
            "route.host must be a lowercase DNS name",
        ),
        (
            "host-uppercase",
            with(base(), "/route/host", json!("MCP.example.com")),
            "route.host must be a lowercase DNS name",
        ),
        (
            "no-auth-mode",
            with(base(), "/auth/mode", Value::Null),
            "spec.auth.mode: Required value",
        ),
        (
            "unknown-auth-mode",
            with(base(), "/auth/mode", json!("Basic")),
            "Unsupported value: \"Basic\"",
        ),
        (
            "oidc-without-settings",
            with(base(), "/auth/oidc", Value::Null),
            "auth.mode Oidc needs auth.oidc",
        ),
        (
            "oidc-no-audience",
            with(base(), "/auth/oidc/audiences", json!([])),
            "auth.oidc.audiences needs at least one",
        ),
        (
            "oidc-plain-http-issuer",
            with(base(), "/auth/oidc/issuer", json!("http://idp.example.com")),
            "auth.oidc.issuer must be the https issuer URL",
        ),
        (
            "oidc-settings-on-anonymous",
            with(base(), "/auth/mode", json!("Anonymous")),
            "auth.oidc is only used with auth.mode Oidc",
        ),
        (
            "authorization-server-without-settings",
            with(
                with(base(), "/auth/oidc", Value::Null),
                "/auth/mode",
                json!("AuthorizationServer"),
            ),
            "auth.mode AuthorizationServer needs auth.authorizationServer",
        ),
        (
            "authorization-server-settings-with-oidc",
            with(
                base(),
                "/auth/authorizationServer",
                json!({"idp": {"issuer": "https://login.microsoftonline.com/t/v2.0", "clientId": "c", "clientSecretRef": {"name": "s"}}}),
            ),
            "auth.authorizationServer is only used with auth.mode AuthorizationServer",
        ),
        (
            "authorization-server-http-idp",
            with(
                with(
                    with(base(), "/auth/oidc", Value::Null),
                    "/auth/mode",
                    json!("AuthorizationServer"),
                ),
                "/auth/authorizationServer",
                json!({"idp": {"issuer": "http://idp.example/t", "clientId": "c", "clientSecretRef": {"name": "s"}}}),
            ),
            "idp.issuer must be an https URL",
        ),
        (
            "authorization-server-multi-tenant-without-allowed-tenants",
            with(
                with(
                    with(base(), "/auth/oidc", Value::Null),
                    "/auth/mode",
                    json!("AuthorizationServer"),
                ),
                "/auth/authorizationServer",
                json!({"idp": {"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0", "clientId": "c", "clientSecretRef": {"name": "s"}}}),
            ),
            "auth.authorizationServer.allowedTenants must list the tenants",
        ),
        (
            "prefix-relative",
            with(base(), "/route/pathPrefix", json!("weather")),
            "route.pathPrefix must start with '/'",
        ),
        (
            "prefix-dotdot",
            with(base(), "/route/pathPrefix", json!("/a/../b")),
            "route.pathPrefix must start with '/'",
        ),
        (
            "too-many-replicas",
            with(base(), "/replicas", json!(1000)),
            "replicas must be between 0 and 100",
        ),
        (
            "gateway-ref-with-ingress-tls",
            with(
                with(base(), "/route/gatewayRef/name", json!("public")),
                "/route/tls/secretName",
                json!("mcp-tls"),
            ),
            "route.gatewayRef attaches an HTTPRoute to a Gateway, whose listener holds the TLS certificate",
        ),
        (
            "gateway-ref-with-ingress-class",
            with(
                with(base(), "/route/gatewayRef/name", json!("public")),
                "/route/ingressClassName",
                json!("nginx"),
            ),
            "remove route.tls and route.ingressClassName",
        ),
        (
            "gateway-ref-bad-namespace",
            with(
                with(base(), "/route/gatewayRef/name", json!("public")),
                "/route/gatewayRef/namespace",
                json!("Infra"),
            ),
            "route.gatewayRef.namespace must be a namespace name",
        ),
        (
            "trusted-ca-bad-name",
            with(base(), "/trustedCA/configMapRef/name", json!("Corp CA")),
            "trustedCA.configMapRef.name must be a ConfigMap name",
        ),
        (
            "trusted-ca-bad-key",
            with(
                with(base(), "/trustedCA/configMapRef/name", json!("corp-ca")),
                "/trustedCA/configMapRef/key",
                json!("a/b"),
            ),
            "trustedCA.configMapRef.key must be a ConfigMap data key",
        ),
        (
            "keep-alive-too-short",
            with(base(), "/route/keepAliveSeconds", json!(2)),
            "route.keepAliveSeconds must be between 5 and 300",
        ),
        (
            "time-to-first-byte-zero",
            with(base(), "/upstream/timeouts", json!({"responseSeconds": 0})),
            "timeouts.responseSeconds must be between 1 and 600",
        ),
        (
            "negative-replicas",
            with(base(), "/replicas", json!(-1)),
            "replicas must be between 0 and 100",
        ),
        (
            "vault-name-and-url",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultName": "kv1", "vaultUrl": "https://kv1.vault.azure.net", "clientId": "00000000-0000-0000-0000-000000000001", "tenantId": "00000000-0000-0000-0000-000000000002"}),
            ),
            "exactly one of vaultName or vaultUrl",
        ),
        (
            "vault-client-id-not-guid",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultName": "kv1", "clientId": "my-app", "tenantId": "00000000-0000-0000-0000-000000000002"}),
            ),
            "clientId must be a GUID",
        ),
        (
            "key-vault-without-identity",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultName": "kv1", "sync": "Direct"}),
            ),
            "needs clientId and tenantId",
        ),
        (
            "external-secrets-without-store",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"sync": "ExternalSecrets"}),
            ),
            "needs secretStoreRef",
        ),
        (
            "external-secrets-with-vault",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"sync": "ExternalSecrets", "vaultName": "kv1", "secretStoreRef": {"name": "kv"}}),
            ),
            "the SecretStore names the vault and the identity",
        ),
        (
            "store-ref-without-external-secrets",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultName": "kv1", "clientId": "00000000-0000-0000-0000-000000000001", "tenantId": "00000000-0000-0000-0000-000000000002", "secretStoreRef": {"name": "kv"}}),
            ),
            "secretStoreRef is only used with sync ExternalSecrets",
        ),
        (
            "vault-url-with-path",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultUrl": "https://kv1.vault.azure.net/secrets/x", "clientId": "00000000-0000-0000-0000-000000000001", "tenantId": "00000000-0000-0000-0000-000000000002"}),
            ),
            "vaultUrl must be a vault's https URL with no path",
        ),
        (
            "refresh-too-often",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultName": "kv1", "clientId": "00000000-0000-0000-0000-000000000001", "tenantId": "00000000-0000-0000-0000-000000000002", "refreshSeconds": 5}),
            ),
            "refreshSeconds must be between 30 and 86400",
        ),
        (
            "key-header-authorization",
            with(base(), "/systemKey/header", json!("Authorization")),
            "systemKey.header must be a plain header name",
        ),
        (
            "no-transports",
            with(base(), "/upstream/transports", json!([])),
            "upstream.transports needs at least one",
        ),
        (
            "unknown-transport",
            with(base(), "/upstream/transports", json!(["WebSocket"])),
            "Unsupported value: \"WebSocket\"",
        ),
        (
            "no-route",
            with(base(), "/route", Value::Null),
            "spec.route: Required value",
        ),
        (
            "origin-with-path",
            with(
                base(),
                "/route/allowedOrigins",
                json!(["https://inspector.example.com/app"]),
            ),
            "route.allowedOrigins entries must be origins",
        ),
        (
            "multi-tenant-without-allowed-tenants",
            with(
                base(),
                "/auth/oidc/issuer",
                json!("https://login.microsoftonline.com/{tenantid}/v2.0"),
            ),
            "auth.oidc.allowedTenants must list the tenants to admit",
        ),
        (
            "tenant-not-guid",
            with(base(), "/auth/oidc/allowedTenants", json!(["contoso.com"])),
            "allowedTenants must be Entra tenant IDs",
        ),
        // What a gateway's author could abuse, or get wrong in a way that leaks.
        (
            "upstream-url-with-the-key",
            with(
                base(),
                "/upstream/url",
                json!(format!(
                    "https://app.azurewebsites.net/runtime/webhooks/mcp?code={URL_KEY}"
                )),
            ),
            "upstream.url must have no query or fragment: the key belongs in systemKey",
        ),
        (
            "upstream-url-key-without-path",
            with(
                base(),
                "/upstream/url",
                json!(format!("https://app.azurewebsites.net?code={URL_KEY}")),
            ),
            "upstream.url must have no query or fragment",
        ),
        (
            "upstream-url-with-credentials",
            with(
                base(),
                "/upstream/url",
                json!(format!("https://user:{URL_KEY}@app.azurewebsites.net")),
            ),
            "upstream.url must not contain credentials",
        ),
        (
            "upstream-url-with-fragment",
            with(
                base(),
                "/upstream/url",
                json!("https://app.azurewebsites.net/#x"),
            ),
            "upstream.url must have no query or fragment",
        ),
        (
            "upstream-url-with-path",
            with(
                base(),
                "/upstream/url",
                json!("https://app.azurewebsites.net/runtime/webhooks/mcp"),
            ),
            "the MCP path is upstream.path",
        ),
        (
            "configuration-snippet",
            with(
                base(),
                "/route/annotations",
                json!({"nginx.ingress.kubernetes.io/configuration-snippet": "proxy_pass http://evil;"}),
            ),
            "route.annotations must not contain configuration snippets",
        ),
        (
            "server-snippet",
            with(
                base(),
                "/route/annotations",
                json!({"nginx.ingress.kubernetes.io/server-snippet": "x"}),
            ),
            "route.annotations must not contain configuration snippets",
        ),
        (
            "auth-snippet",
            with(
                base(),
                "/route/annotations",
                json!({"nginx.ingress.kubernetes.io/auth-snippet": "x"}),
            ),
            "route.annotations must not contain configuration snippets",
        ),
        (
            "haproxy-snippet",
            with(
                base(),
                "/route/annotations",
                json!({"haproxy.org/backend-config-snippet": "x"}),
            ),
            "route.annotations must not contain configuration snippets",
        ),
        (
            "traefik-snippets",
            with(
                base(),
                "/route/annotations",
                json!({"example.com/server-Snippets": "x"}),
            ),
            "route.annotations must not contain configuration snippets",
        ),
        (
            "prefix-claims-metadata-of-another",
            with(
                base(),
                "/route/pathPrefix",
                json!("/.well-known/oauth-protected-resource/victim"),
            ),
            "route.pathPrefix must not contain a .well-known or oauth segment",
        ),
        (
            "prefix-well-known",
            with(base(), "/route/pathPrefix", json!("/.well-known")),
            "route.pathPrefix must not contain a .well-known or oauth segment",
        ),
        (
            "prefix-inside-a-facade",
            with(base(), "/route/pathPrefix", json!("/victim/oauth")),
            "route.pathPrefix must not contain a .well-known or oauth segment",
        ),
        (
            "prefix-dot-segment",
            with(base(), "/route/pathPrefix", json!("/a/./b")),
            "without '..', '//' or '.' segments",
        ),
        (
            "upstream-path-dot-segment",
            with(base(), "/upstream/path", json!("/runtime/./webhooks/mcp")),
            "upstream.path must be an absolute path",
        ),
        (
            "upstream-path-double-slash",
            with(base(), "/upstream/path", json!("/runtime//webhooks/mcp")),
            "upstream.path must be an absolute path",
        ),
        (
            "upstream-path-encoded-dots",
            with(base(), "/upstream/path", json!("/runtime/%2e%2e/admin")),
            "upstream.path must be an absolute path",
        ),
        (
            "upstream-path-trailing-slash",
            with(base(), "/upstream/path", json!("/runtime/webhooks/mcp/")),
            "upstream.path must be an absolute path",
        ),
        (
            "host-ip-address",
            with(base(), "/route/host", json!("10.1.2.3")),
            "route.host must be a DNS name, not an IP address",
        ),
        (
            "host-label-too-long",
            with(
                base(),
                "/route/host",
                json!(format!("{}.example.com", "a".repeat(64))),
            ),
            "labels of at most 63 characters",
        ),
        (
            "tls-secret-not-a-name",
            with(base(), "/route/tls", json!({"secretName": "a..b"})),
            "route.tls.secretName must be a Secret name",
        ),
        (
            "ingress-class-not-a-name",
            with(base(), "/route/ingressClassName", json!("Nginx Public")),
            "route.ingressClassName must be an IngressClass name",
        ),
        (
            "required-scope-with-space",
            with(base(), "/auth/oidc/requiredScopes", json!(["mcp tools"])),
            "auth.oidc.requiredScopes must be scope names",
        ),
        (
            "required-scope-with-control-character",
            with(base(), "/auth/oidc/requiredScopes", json!(["mcp\u{7}"])),
            "auth.oidc.requiredScopes must be scope names",
        ),
        (
            "issuer-with-fragment",
            with(
                base(),
                "/auth/oidc/issuer",
                json!("https://login.microsoftonline.com/t/v2.0#x"),
            ),
            "auth.oidc.issuer must have no query or fragment",
        ),
        (
            "jwks-uri-with-fragment",
            with(
                base(),
                "/auth/oidc/jwksUri",
                json!("https://login.microsoftonline.com/t/keys#x"),
            ),
            "auth.oidc.jwksUri must have no fragment",
        ),
        (
            "idp-scope-with-space",
            with(
                with(
                    with(base(), "/auth/oidc", Value::Null),
                    "/auth/mode",
                    json!("AuthorizationServer"),
                ),
                "/auth/authorizationServer",
                json!({"idp": {"issuer": "https://login.microsoftonline.com/t/v2.0", "clientId": "c", "clientSecretRef": {"name": "s"}, "scopes": ["openid profile"]}}),
            ),
            "auth.authorizationServer.idp.scopes must be scope names",
        ),
        (
            "csi-vault-url-in-an-unknown-cloud",
            with(
                with(base(), "/systemKey/secretRef", Value::Null),
                "/systemKey/keyVault",
                json!({"vaultUrl": "https://kv1.vault.example.com", "clientId": "00000000-0000-0000-0000-000000000001", "tenantId": "00000000-0000-0000-0000-000000000002"}),
            ),
            "for another host use sync Direct",
        ),
        (
            "tool-rule-without-tools",
            with(base(), "/toolAccess", json!({"rules": [{"tools": []}]})),
            "toolAccess.rules[].tools needs at least one tool name or pattern",
        ),
        (
            "tool-pattern-with-space",
            with(
                base(),
                "/toolAccess",
                json!({"rules": [{"tools": ["get weather"]}]}),
            ),
            "toolAccess.rules[].tools needs at least one tool name or pattern",
        ),
        (
            "tool-group-by-name",
            with(
                base(),
                "/toolAccess",
                json!({"rules": [{"tools": ["add"], "groups": ["admins"]}]}),
            ),
            "toolAccess.rules[].groups must be Entra group object IDs",
        ),
        (
            "tool-decision-unknown",
            with(base(), "/toolAccess", json!({"default": "Maybe"})),
            "Unsupported value",
        ),
        (
            "anonymous-tool-rule-with-a-role",
            with(
                with(
                    with(base(), "/auth/oidc", Value::Null),
                    "/auth/mode",
                    json!("Anonymous"),
                ),
                "/toolAccess",
                json!({"rules": [{"tools": ["add"], "roles": ["Calculator.User"]}]}),
            ),
            "auth.mode Anonymous has no caller to check",
        ),
        (
            "caller-identity-in-the-key-header",
            with(
                base(),
                "/callerIdentity",
                json!({"header": "X-Functions-Key"}),
            ),
            "callerIdentity.header must be a header name of its own",
        ),
        (
            "rate-of-zero",
            with(
                base(),
                "/rateLimits",
                json!({"perCaller": {"requestsPerMinute": 0}}),
            ),
            "rateLimits requestsPerMinute must be between 1 and 1000000",
        ),
        (
            "rate-limit-without-tools",
            with(
                base(),
                "/rateLimits",
                json!({"tools": [{"tools": [], "requestsPerMinute": 10}]}),
            ),
            "rateLimits.tools[].tools needs at least one tool name or pattern",
        ),
        (
            "pod-label-takes-the-selector",
            with(
                base(),
                "/pod",
                json!({"labels": {"app.kubernetes.io/instance": "other"}}),
            ),
            "pod.labels cannot set app.kubernetes.io/name",
        ),
        (
            "pod-annotation-of-the-operator",
            with(
                base(),
                "/pod",
                json!({"annotations": {"mcpgateway.dev/config-hash": "x"}}),
            ),
            "pod.annotations cannot use keys under mcpgateway.dev/",
        ),
        (
            "otlp-endpoint-with-credentials",
            with(
                base(),
                "/observability",
                json!({"tracing": {"otlpEndpoint": "http://user:pw@collector:4318"}}),
            ),
            "observability.tracing.otlpEndpoint must be an http(s) URL",
        ),
        (
            "sampling-ratio-above-one",
            with(
                base(),
                "/observability",
                json!({"tracing": {"otlpEndpoint": "http://collector:4318", "samplingRatio": "1.5"}}),
            ),
            "observability.tracing.samplingRatio must be a decimal from 0 to 1",
        ),
        (
            "trusted-proxy-not-a-range",
            with(
                base(),
                "/clientAddress",
                json!({"trustedProxies": ["10.0.0.0/33"]}),
            ),
            "clientAddress.trustedProxies needs at least one address range",
        ),
    ];
    assert!(cases.len() >= 10);
    for (name, spec, expected) in cases {
        let err = create(&api, name, spec).await.expect_err(name);
        let kube::Error::Api(status) = err else {
            panic!("{name}: unexpected error {err}")
        };
        assert_eq!(status.code, 422, "{name}: {}", status.message);
        assert!(
            status.message.contains(expected),
            "{name}: expected {expected:?} in {:?}",
            status.message
        );
        assert!(
            !status.message.contains(URL_KEY),
            "{name}: the rejection repeats the secret: {}",
            status.message
        );
    }
    // Names whose objects (`<name>-gateway`, a Service) would be invalid.
    for name in ["a".repeat(56), "1weather".to_string()] {
        let err = create(&api, &name, valid_spec()).await.expect_err(&name);
        assert!(
            err.to_string()
                .contains("metadata.name must be at most 55 lowercase letters"),
            "{name}: {err}"
        );
    }
    create(&api, &"a".repeat(55), valid_spec())
        .await
        .expect("a 55-character name fits");
    api.delete(&"a".repeat(55), &Default::default())
        .await
        .unwrap();
    let stored = api.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = stored
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["baseline"], "rejected gateways must not be stored");

    // kubectl shows the same message to a user.
    let manifest = json!({"apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": "by-kubectl", "namespace": ns.name},
        "spec": with(valid_spec(), "/route/pathPrefix", json!("no-slash"))});
    let (ok, _, err) = cluster.kubectl_run(&["apply", "-f", "-"], Some(&manifest.to_string()));
    assert!(!ok);
    assert!(
        err.contains("route.pathPrefix must start with '/'"),
        "{err}"
    );
}

/// Single-field variants of a spec: values near every rule's edge, on both sides.
fn variants() -> Vec<(&'static str, Value)> {
    let long_label = "a".repeat(63);
    let mut v: Vec<(&'static str, Value)> = Vec::new();
    for url in [
        "https://a.azurewebsites.net",
        "https://a.azurewebsites.net/",
        "https://a.azurewebsites.net:8443",
        "https://a.azurewebsites.net/x",
        "https://a.azurewebsites.net/?",
        "https://a.azurewebsites.net?code=k",
        "https://u:p@a.azurewebsites.net",
        "https://@a.azurewebsites.net",
        "https://a.azurewebsites.net#",
        "https://10.0.0.1",
        "https://[::1]:8443",
        "https://a_b.example",
        "https://a..b",
        "https://-a.example",
        "https://a.example.",
        "https://a.b/%2e",
        "https://xn--bcher-kva.example",
        "https://a`b.example",
        "http://a.example",
        "ftp://a.example",
        "https://",
        "https:a.example",
    ] {
        v.push(("/upstream/url", json!(url)));
    }
    for path in [
        "/runtime/webhooks/mcp",
        "/",
        "/a/",
        "//a",
        "/a/./b",
        "/a/../b",
        "/.",
        "/..",
        "/...",
        "/.x",
        "/a/%2e%2e",
        "/a;b=c",
        "/a:b@c",
        "/a!$&'()*+,=",
        "/a b",
        "/a~b",
        "/a\\b",
        "/a?b",
        "a/b",
    ] {
        v.push(("/upstream/path", json!(path)));
    }
    for host in [
        "mcp.example.com",
        "a",
        "10.0.0.1",
        "a.123",
        "123.a",
        "a-.b",
        "-a.b",
        "a..b",
        "xn--x.y",
        "a_b.example",
        "mcp.example.com.",
        &format!("{long_label}.com"),
        &format!("a{long_label}.com"),
        &format!("{long_label}.{long_label}.{long_label}.{}", "a".repeat(61)),
        &format!("{long_label}.{long_label}.{long_label}.{}", "a".repeat(62)),
    ] {
        v.push(("/route/host", json!(host)));
    }
    for prefix in [
        "/",
        "/w",
        "/w/",
        "/w/.",
        "/./w",
        "/.w",
        "/w.",
        "/...",
        "/.well-known",
        "/w/.well-known/x",
        "/w/.well-knownx",
        "/oauth",
        "/w/oauth",
        "/w/oauthx",
        "/w~",
        "/w//x",
        "/%2e",
    ] {
        v.push(("/route/pathPrefix", json!(prefix)));
    }
    for annotations in [
        json!({"cert-manager.io/cluster-issuer": "letsencrypt"}),
        json!({"nginx.ingress.kubernetes.io/proxy-read-timeout": "7200"}),
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "x"}),
        json!({"a/SNIPPET": "x"}),
    ] {
        v.push(("/route/annotations", annotations));
    }
    for scopes in [
        json!(["mcp.tools"]),
        json!(["api://a/mcp.tools"]),
        json!(["a b"]),
        json!(["a\"b"]),
        json!(["a\\b"]),
        json!(["é"]),
        json!([""]),
        json!(["a\u{7f}"]),
    ] {
        v.push(("/auth/oidc/requiredScopes", scopes.clone()));
        v.push(("/auth/authorizationServer/scopes", scopes.clone()));
        v.push(("/auth/authorizationServer/idp/scopes", scopes));
    }
    for issuer in [
        "https://login.microsoftonline.com/t/v2.0",
        "https://i.example/t?x=1",
        "https://i.example/t#f",
        "http://localhost:1/t",
        "http://127.0.0.1/t",
        "http://[::1]/t",
        "https://",
    ] {
        v.push(("/auth/oidc/issuer", json!(issuer)));
        v.push(("/auth/authorizationServer/idp/issuer", json!(issuer)));
    }
    for jwks in [
        "https://i.example/k",
        "https://i.example/k#f",
        "https://i.example/k?x=1",
    ] {
        v.push(("/auth/oidc/jwksUri", json!(jwks)));
    }
    for header in ["x-functions-key", "X-Key", "a b", "te", "Cookie", "x_key"] {
        v.push(("/systemKey/header", json!(header)));
    }
    for vault_url in [
        "https://kv1.vault.azure.net",
        "https://kv1.vault.azure.net/",
        "https://kv1.vault.azure.cn",
        "https://KV1.vault.azure.net",
        "https://kv1.vault.example.com",
        "https://kv1.vault.azure.net/secrets",
        "https://kv1.vault.azure.net.evil.example",
    ] {
        v.push(("/systemKey/keyVault/vaultUrl", json!(vault_url)));
    }
    for origin in [
        "*",
        "http://localhost:6274",
        "https://a.example/",
        "https://a.example:1",
    ] {
        v.push(("/route/allowedOrigins", json!([origin])));
    }
    for (issuer, tenants) in [
        (
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            json!(["72f988bf-86f1-41af-91ab-2d7cd011db47"]),
        ),
        (
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            json!([]),
        ),
        (
            "https://login.microsoftonline.com/{tenantid}/{tenantid}/v2.0",
            json!(["72f988bf-86f1-41af-91ab-2d7cd011db47"]),
        ),
    ] {
        v.push(("/auth/oidc", json!({"issuer": issuer, "audiences": ["00000000-0000-0000-0000-0000000000aa"], "allowedTenants": tenants})));
    }
    for tenants in [json!([]), json!(["72f988bf-86f1-41af-91ab-2d7cd011db47"])] {
        v.push((
            "/auth/authorizationServer",
            json!({"idp": {"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0", "clientId": "c", "clientSecretRef": {"name": "s"}}, "allowedTenants": tenants}),
        ));
    }
    for seconds in [0, 4, 5, 300, 301] {
        v.push(("/route/keepAliveSeconds", json!(seconds)));
    }
    for access in [
        json!({"default": "Deny", "rules": [{"tools": ["echo", "get_*"]}]}),
        json!({"rules": [{"tools": ["sleep"], "scopes": ["api://x/mcp.admin"]}]}),
        json!({"rules": [{"tools": ["add"], "roles": ["Calculator.User"], "groups": ["6f1e0c2a-8b7d-4e3f-a1b2-c3d4e5f60718"], "tenants": ["72f988bf-86f1-41af-91ab-2d7cd011db47"]}]}),
        json!({"rules": [{"tools": [""]}]}),
        json!({"rules": [{"tools": ["x".repeat(129)]}]}),
    ] {
        v.push(("/toolAccess", access));
    }
    for limits in [
        json!({"perCaller": {"requestsPerMinute": 600}}),
        json!({"perCaller": {"requestsPerMinute": 1000000}}),
        json!({"perCaller": {"requestsPerMinute": 60, "burst": 0}}),
        json!({"perCaller": {"requestsPerMinute": 60, "burst": 100001}}),
        json!({"tools": [{"tools": ["search_*"], "requestsPerMinute": 6, "burst": 2}]}),
    ] {
        v.push(("/rateLimits", limits));
    }
    for identity in [
        json!({}),
        json!({"header": "x-caller", "ttlSeconds": 60}),
        json!({"header": "Authorization"}),
        json!({"header": "x-functions-key"}),
        json!({"header": "bad header"}),
        json!({"ttlSeconds": 5}),
    ] {
        v.push(("/callerIdentity", identity));
    }
    for observability in [
        json!({}),
        json!({"audit": {"enabled": false}}),
        json!({"audit": {"includeArguments": true}}),
        json!({"tracing": {"otlpEndpoint": "http://otel-collector.monitoring:4318"}}),
        json!({"tracing": {"otlpEndpoint": "https://collector.example.com/otlp/", "samplingRatio": "0.05", "trustIncomingTraceContext": true, "serviceName": "weather-gateway"}}),
        json!({"tracing": {"otlpEndpoint": "ftp://collector:4318"}}),
        json!({"tracing": {"otlpEndpoint": "http://collector:4318?x=1"}}),
        json!({"tracing": {"otlpEndpoint": "http://collector:4318", "samplingRatio": "0"}}),
        json!({"tracing": {"otlpEndpoint": "http://collector:4318", "samplingRatio": "1.000"}}),
        json!({"tracing": {"otlpEndpoint": "http://collector:4318", "samplingRatio": ".5"}}),
        json!({"tracing": {"otlpEndpoint": "http://collector:4318", "serviceName": ""}}),
    ] {
        v.push(("/observability", observability));
    }
    for image in [
        json!("registry.example.com/mcp-gateway-sidecar:0.1.0"),
        json!(format!(
            "registry.example.com/mcp-gateway-sidecar@sha256:{}",
            "ab".repeat(32)
        )),
        json!("has a space"),
    ] {
        v.push(("/image", image));
    }
    for pod in [
        json!({}),
        json!({"nodeSelector": {"agentpool": "mcp"}, "priorityClassName": "mcp-high"}),
        json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}),
        json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}}]}}}),
        json!({"imagePullSecrets": [{"name": "acr-pull"}]}),
        json!({"labels": {"team": "payments", "example.com/tier": "gold"}, "annotations": {"example.com/owner": "payments"}}),
        json!({"labels": {"app.kubernetes.io/managed-by": "me"}}),
        json!({"annotations": {"mcpgateway.dev/anything": "x"}}),
        json!({"priorityClassName": "Upper"}),
    ] {
        v.push(("/pod", pod));
    }
    for client_address in [
        json!({"trustedProxies": ["10.244.0.0/16"]}),
        json!({"trustedProxies": ["10.0.0.1", "fd00::/8"], "header": "X-Real-IP"}),
        json!({"trustedProxies": []}),
        json!({"trustedProxies": ["10.0.0.0/8"], "header": "Authorization"}),
        json!({"trustedProxies": ["10.0.0.0/8"], "header": "bad header"}),
        json!({"trustedProxies": ["any"]}),
    ] {
        v.push(("/clientAddress", client_address));
    }
    for timeouts in [
        json!({"responseSeconds": 1}),
        json!({"responseSeconds": 600, "connectSeconds": 60, "streamIdleSeconds": 10}),
        json!({"responseSeconds": 0}),
    ] {
        v.push(("/upstream/timeouts", timeouts));
    }
    v
}

/// The CRD's CEL rules must be at least as strict as the operator: a spec admission lets
/// through but the operator refuses is a user told "applied" who then finds
/// `ConfigValid=False`. Every example, with every single-field variant, goes through a
/// server-side dry run; each one admitted must pass the operator's own checks (on the
/// object as the API server defaulted it).
#[tokio::test]
async fn every_spec_admission_accepts_the_operator_accepts() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().expect("CRD installs");
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "admitted").await.unwrap();
    let api = gateways(&client, &ns.name);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };

    let mut specs = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            if doc["kind"] == "McpGateway" {
                specs.push(doc["spec"].clone());
            }
        }
    }
    assert!(specs.len() >= 5, "examples: {}", specs.len());
    let allowed = annotations::default_allowed_prefixes();
    let (mut admitted, mut rejected, mut disagreements) = (0, 0, Vec::new());
    for (i, spec) in specs.iter().enumerate() {
        for (field, value) in variants() {
            let variant = with(spec.clone(), field, value.clone());
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
                "metadata": {"name": format!("v{i}")}, "spec": variant,
            }))
            .unwrap();
            match api.create(&dry_run, &obj).await {
                Ok(stored) => {
                    admitted += 1;
                    let mut stored = serde_json::to_value(stored).unwrap();
                    stored["metadata"]["namespace"] = json!(ns.name);
                    let gateway: McpGateway = serde_json::from_value(stored).unwrap();
                    let verdict = validate::validate(&gateway).and_then(|_| {
                        annotations::check(&gateway.spec.route.annotations, &allowed)
                    });
                    if let Err(message) = verdict {
                        disagreements.push(format!("example {i}, {field} = {value}: {message}"));
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 422 => rejected += 1,
                Err(e) => panic!("{field} = {value}: {e}"),
            }
        }
    }
    // The one rule CEL cannot state: an `xn--` label must be valid punycode (CEL has no
    // IDNA). The operator refuses such a host with ConfigValid=False; kept here so that a
    // new gap, or this one closing, fails the test.
    let known_gap = |d: &String| d.contains("/route/host = \"xn--x.y\"");
    assert_eq!(
        disagreements.iter().filter(|d| known_gap(d)).count(),
        specs.len(),
        "{disagreements:#?}"
    );
    disagreements.retain(|d| !known_gap(d));
    assert!(
        disagreements.is_empty(),
        "admitted by the CRD, refused by the operator:\n{}",
        disagreements.join("\n")
    );
    // Both sides of the edges were exercised.
    assert!(
        admitted > 100 && rejected > 100,
        "admitted {admitted}, rejected {rejected}"
    );
    let stored = api.list(&ListParams::default()).await.unwrap();
    assert!(stored.items.is_empty(), "a dry run stores nothing");
}
