//! The McpGateway CRD on a real kube-apiserver + etcd: it installs, every example applies,
//! `kubectl get`/`explain` read well, and admission rejects each invalid spec with the
//! message that says what to write instead, storing nothing.

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use mcp_gateway_crds::v1alpha1::McpGateway;
use mcp_gateway_tests::cluster::{Cluster, TestNamespace};
use mcp_gateway_tests::workspace_root;
use serde_json::{Value, json};

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
    for cell in [
        "mcp.example.com",
        "https://weather-fn.azurewebsites.net",
        "Oidc",
    ] {
        assert!(row.contains(cell), "row {row:?} lacks {cell}");
    }

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
            "tenant-not-guid",
            with(base(), "/auth/oidc/allowedTenants", json!(["contoso.com"])),
            "allowedTenants must be Entra tenant IDs",
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
    }
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
