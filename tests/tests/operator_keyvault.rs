//! Key Vault-backed system keys, on a real kube-apiserver + etcd: the operator renders a
//! `SecretProviderClass` (Secrets Store CSI driver) or an `ExternalSecret` (External Secrets
//! Operator) only when the API serves that kind, says what to install when it does not, and
//! picks the CRD up once installed. The CRDs here are minimal test copies with the real
//! groups, versions and kinds (tests/fixtures/crds). This file owns its cluster: it installs
//! CRDs, which are cluster-wide.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use mcp_gateway_contract::config::Config;
use mcp_gateway_crds::v1alpha1::McpGateway;
use mcp_gateway_tests::cluster::{Cluster, TestNamespace};
use mcp_gateway_tests::operator::Operator;
use mcp_gateway_tests::workspace_root;
use serde_json::{Value, json};

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const TENANT_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn gateway(name: &str, key_vault: Value) -> McpGateway {
    serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": name},
        "spec": {
            "upstream": {"url": "https://weather-fn.azurewebsites.net"},
            "systemKey": {"keyVault": key_vault},
            "auth": {"mode": "Anonymous"},
            "route": {"host": "mcp.example.com", "pathPrefix": format!("/{name}")},
        }
    }))
    .unwrap()
}

use mcp_gateway_tests::must_eventually as eventually;

/// Waits for a condition's status and reason; returns its message.
async fn wait_condition(
    api: &Api<McpGateway>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    eventually(
        30,
        &format!("{name}: {type_}={status} {reason}"),
        || async {
            let gw = api.get(name).await.map_err(|e| e.to_string())?;
            let c = gw
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned());
            match c {
                Some(c) if c.status == status && c.reason == reason => Ok(c.message),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

fn dynamic(
    client: &kube::Client,
    ns: &str,
    group: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

#[tokio::test]
async fn key_vault_sync_objects_follow_their_crds() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "keyvault").await.unwrap();
    let operator = Operator::start(
        &cluster.kubeconfig,
        &["--leader-election=false", "--key-status-interval-seconds=1"],
    )
    .expect("operator starts");
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);

    let csi = gateway(
        "csi",
        json!({"vaultName": "fn-vault", "clientId": CLIENT_ID, "tenantId": TENANT_ID}),
    );
    let eso = gateway(
        "eso",
        json!({"sync": "ExternalSecrets", "refreshSeconds": 120,
               "secretStoreRef": {"name": "fn-vault", "kind": "ClusterSecretStore"}}),
    );
    for gw in [&csi, &eso] {
        gateways.create(&PostParams::default(), gw).await.unwrap();
    }

    // 1. Neither CRD is installed: the condition says what to install; the rest is rendered.
    let message =
        wait_condition(&gateways, "csi", "KeyAvailable", "False", "CrdNotInstalled").await;
    assert!(
        message.contains("SecretProviderClass") && message.contains("Secrets Store CSI driver"),
        "{message}"
    );
    let message =
        wait_condition(&gateways, "eso", "KeyAvailable", "False", "CrdNotInstalled").await;
    assert!(
        message.contains("ExternalSecret") && message.contains("External Secrets Operator"),
        "{message}"
    );
    assert_eq!(
        wait_condition(&gateways, "csi", "Ready", "False", "KeyUnavailable").await,
        "the system key is not available; see KeyAvailable"
    );

    // The CSI gateway's pod reads the key through the CSI volume with its own identity.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pod = deployments
        .get("csi-gateway")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    let labels = pod.metadata.unwrap().labels.unwrap();
    assert_eq!(labels["azure.workload.identity/use"], "true");
    let pod = pod.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("csi-gateway"));
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "system-key")
        .unwrap();
    let csi_volume = volume.csi.unwrap();
    assert_eq!(csi_volume.driver, "secrets-store.csi.k8s.io");
    assert_eq!(
        csi_volume.volume_attributes.unwrap()["secretProviderClass"],
        "csi-gateway"
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    let sa = accounts.get("csi-gateway").await.unwrap();
    assert_eq!(
        sa.metadata.annotations.as_ref().unwrap()["azure.workload.identity/client-id"],
        CLIENT_ID
    );
    assert_eq!(
        sa.metadata.annotations.as_ref().unwrap()["azure.workload.identity/tenant-id"],
        TENANT_ID
    );
    assert_eq!(sa.automount_service_account_token, Some(false));
    assert_eq!(sa.metadata.owner_references.unwrap()[0].name, "csi");
    // The ExternalSecrets gateway's pod mounts a Secret and needs no identity of its own.
    let eso_pod = deployments
        .get("eso-gateway")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    assert!(
        !eso_pod
            .metadata
            .unwrap()
            .labels
            .unwrap()
            .contains_key("azure.workload.identity/use")
    );
    let eso_volume = eso_pod
        .spec
        .unwrap()
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "system-key")
        .unwrap();
    assert_eq!(
        eso_volume.secret.unwrap().secret_name.as_deref(),
        Some("eso-gateway-key")
    );

    // The status says where the key comes from, never the key.
    let status = gateways.get("csi").await.unwrap().status.unwrap();
    let source = status.system_key.unwrap().source.unwrap();
    assert!(
        source.contains("fn-vault") && source.contains("host--systemKey--mcp-095extension"),
        "{source}"
    );

    // 2. Install the CRDs: the operator notices without any change to the gateways.
    let crds = workspace_root().join("tests/fixtures/crds");
    cluster
        .install_crd_file(&crds.join("secretproviderclasses.secrets-store.csi.x-k8s.io.yaml"))
        .unwrap();
    cluster
        .install_crd_file(&crds.join("externalsecrets.external-secrets.io.yaml"))
        .unwrap();

    let spcs = dynamic(
        &client,
        &ns.name,
        "secrets-store.csi.x-k8s.io",
        "SecretProviderClass",
        "secretproviderclasses",
    );
    let spc = eventually(30, "SecretProviderClass rendered", || async {
        spcs.get_opt("csi-gateway")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await;
    assert_eq!(
        spc.metadata.owner_references.as_ref().unwrap()[0].name,
        "csi"
    );
    let spec = &spc.data["spec"];
    assert_eq!(spec["provider"], "azure");
    let p = &spec["parameters"];
    assert_eq!(
        (p["clientID"].as_str(), p["tenantId"].as_str()),
        (Some(CLIENT_ID), Some(TENANT_ID))
    );
    assert_eq!(p["keyvaultName"], "fn-vault");
    assert_eq!(p["usePodIdentity"], "false");
    let objects = p["objects"].as_str().unwrap();
    assert!(
        objects.contains("objectName: host--systemKey--mcp-095extension"),
        "{objects}"
    );
    assert!(
        objects.contains("objectAlias: key") && objects.contains("objectType: secret"),
        "{objects}"
    );
    // Only the CSI volume can see the key: the pods' reports decide, and there are none yet.
    wait_condition(
        &gateways,
        "csi",
        "KeyAvailable",
        "Unknown",
        "WaitingForGateway",
    )
    .await;

    let externals = dynamic(
        &client,
        &ns.name,
        "external-secrets.io",
        "ExternalSecret",
        "externalsecrets",
    );
    let es = eventually(30, "ExternalSecret rendered", || async {
        externals
            .get_opt("eso-gateway")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await;
    let spec = &es.data["spec"];
    assert_eq!(
        spec["secretStoreRef"],
        json!({"name": "fn-vault", "kind": "ClusterSecretStore"})
    );
    assert_eq!(spec["refreshInterval"], "120s");
    assert_eq!(spec["target"]["name"], "eso-gateway-key");
    assert_eq!(
        spec["data"][0]["remoteRef"]["key"],
        "host--systemKey--mcp-095extension"
    );
    let message = wait_condition(
        &gateways,
        "eso",
        "KeyAvailable",
        "False",
        "ExternalSecretPending",
    )
    .await;
    assert!(message.contains("eso-gateway-key"), "{message}");

    // 3. External Secrets writes the Secret (here: the test, as the ESO controller would):
    // the Secret watch brings the gateway to KeyAvailable=True.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let written: Secret = serde_json::from_value(json!({"metadata": {"name": "eso-gateway-key"},
        "stringData": {"key": "SYSKEY-eso-written-4c3b"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &written)
        .await
        .unwrap();
    wait_condition(&gateways, "eso", "KeyAvailable", "True", "SecretFound").await;

    // The rendered sidecar configs read the mounted file.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    for name in ["csi-gateway", "eso-gateway"] {
        let cm = config_maps.get(name).await.unwrap();
        let config: Config = serde_yaml::from_str(&cm.data.unwrap()["config.yaml"]).unwrap();
        assert_eq!(
            config.system_key.file.as_deref().and_then(|p| p.to_str()),
            Some("/var/run/secrets/mcp-gateway/system-key/key"),
            "{name}"
        );
        assert!(config.system_key.key_vault.is_none());
    }

    // 4. Switching ExternalSecrets -> CsiDriver: the SecretProviderClass appears and the
    //    ExternalSecret, which would go on syncing the key into the cluster, is deleted.
    gateways
        .patch(
            "eso",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"systemKey": {"keyVault": {
                "sync": "CsiDriver", "secretStoreRef": null, "vaultName": "fn-vault",
                "clientId": CLIENT_ID, "tenantId": TENANT_ID}}}})),
        )
        .await
        .unwrap();
    eventually(30, "the eso gateway's SecretProviderClass", || async {
        spcs.get_opt("eso-gateway")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await;
    eventually(30, "the ExternalSecret deleted", || async {
        match externals.get_opt("eso-gateway").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|o| o.is_some()))),
        }
    })
    .await;
    // A same-named object the gateway does not control is left alone (checked by a fresh
    // operator, which has not yet seen that the csi gateway has no ExternalSecret).
    let foreign: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "csi-gateway"},
        "spec": {"secretStoreRef": {"name": "mine", "kind": "SecretStore"}, "target": {"name": "mine"}, "data": []},
    }))
    .unwrap();
    externals
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let leftover_logs = operator.logs();
    drop(operator);
    let operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator restarts");
    gateways
        .patch(
            "csi",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    wait_generation_observed(&gateways, "csi").await;
    assert!(
        externals.get_opt("csi-gateway").await.unwrap().is_some(),
        "not ours: kept"
    );
    assert!(!(leftover_logs + &operator.logs()).contains("SYSKEY-eso-written-4c3b"));
}

/// Waits until the operator has reconciled the gateway's newest generation.
async fn wait_generation_observed(gateways: &Api<McpGateway>, name: &str) {
    eventually(30, &format!("{name}: generation observed"), || async {
        let gw = gateways.get(name).await.map_err(|e| e.to_string())?;
        let observed = gw.status.as_ref().and_then(|s| s.observed_generation);
        if observed == gw.metadata.generation {
            Ok(())
        } else {
            Err(format!("{observed:?} vs {:?}", gw.metadata.generation))
        }
    })
    .await;
}

#[tokio::test]
async fn direct_mode_renders_the_vault_into_the_sidecar_config() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "direct").await.unwrap();
    let _operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator starts");
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let gw = gateway(
        "direct",
        json!({"vaultUrl": "https://fn-vault.vault.azure.net", "sync": "Direct",
               "clientId": CLIENT_ID, "tenantId": TENANT_ID, "refreshSeconds": 60}),
    );
    gateways.create(&PostParams::default(), &gw).await.unwrap();
    let message = wait_condition(
        &gateways,
        "direct",
        "KeyAvailable",
        "Unknown",
        "WaitingForGateway",
    )
    .await;
    assert!(message.contains("fn-vault"), "{message}");

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let cm = config_maps.get("direct-gateway").await.unwrap();
    let config: Config = serde_yaml::from_str(&cm.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(config.system_key.file, None);
    let kv = config.system_key.key_vault.unwrap();
    assert_eq!(kv.vault_url.as_str(), "https://fn-vault.vault.azure.net/");
    assert_eq!(kv.secret_name, "host--systemKey--mcp-095extension");
    assert_eq!(kv.refresh_seconds, 60);
    assert_eq!(kv.client_id.as_deref(), Some(CLIENT_ID));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pod = deployments
        .get("direct-gateway")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    assert_eq!(
        pod.metadata.unwrap().labels.unwrap()["azure.workload.identity/use"],
        "true"
    );
    assert!(
        pod.spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .all(|v| v.name != "system-key")
    );
}

/// The Function App's verdict on the key travels sidecar `/keyz` → operator → `KeyAccepted`.
/// A bare API server runs no pods, so the test runs the real sidecar as a local process with
/// the rendered config, and registers a Pod object for it (IP 127.0.0.1, the sidecar's admin
/// port), as the kubelet would report a running pod.
#[tokio::test]
async fn the_function_apps_verdict_on_the_key_becomes_key_accepted() {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{ListParams, Patch, PatchParams};
    use mcp_gateway_tests::fixtures::Standin;
    use mcp_gateway_tests::sidecar::{Sidecar, public_listener};

    const K1: &str = "SYSKEY-verdict-first-1a2b";
    const K2: &str = "SYSKEY-verdict-renewed-3c4d";
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "verdict").await.unwrap();
    let operator = Operator::start(
        &cluster.kubeconfig,
        &["--leader-election=false", "--key-status-interval-seconds=1"],
    )
    .expect("operator starts");
    let dir = mcp_gateway_tests::TempDir::new("verdict");
    let function_key = dir.path().join("function-app-key");
    std::fs::write(&function_key, K1).unwrap();
    let standin = Standin::start(&function_key).expect("stand-in");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "fn-keys"}, "stringData": {"mcp_extension": K1}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let gw: McpGateway = serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": "verdict"},
        "spec": {
            "replicas": 1,
            "upstream": {"url": standin.url, "allowInsecureUpstream": true},
            "systemKey": {"secretRef": {"name": "fn-keys"}},
            "auth": {"mode": "Anonymous"},
            "route": {"host": "mcp.example.com"},
        }
    }))
    .unwrap();
    gateways.create(&PostParams::default(), &gw).await.unwrap();
    // Before any pod reports: Unknown.
    wait_condition(
        &gateways,
        "verdict",
        "KeyAccepted",
        "Unknown",
        "NotReported",
    )
    .await;

    // The sidecar, as the pod would run it: the rendered config, the mounted key.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let cm = config_maps.get("verdict-gateway").await.unwrap();
    let mut config: Config = serde_yaml::from_str(&cm.data.unwrap()["config.yaml"]).unwrap();
    let mounted = dir.path().join("mounted-key");
    std::fs::write(&mounted, K1).unwrap();
    let (listen, _) = public_listener();
    config.listen = listen;
    config.system_key.file = Some(mounted.clone());
    config.session.keys_file = None;
    let sidecar = Sidecar::start(config).expect("sidecar");
    sidecar.wait_ready().await.unwrap();
    let admin_port: i32 = sidecar
        .admin_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "verdict-gateway-0", "labels": {
            "app.kubernetes.io/name": "mcp-gateway-sidecar", "app.kubernetes.io/instance": "verdict",
            "app.kubernetes.io/managed-by": "mcp-gateway-operator"}},
        "spec": {"containers": [{"name": "sidecar", "image": "registry.example/sidecar:test",
            "ports": [{"name": "admin", "containerPort": admin_port}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "verdict-gateway-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}]}})),
    )
    .await
    .unwrap();

    let call = || async {
        reqwest::Client::new()
            .post(format!("{}/mcp", sidecar.url))
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "verdict-test", "version": "0"}}}),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    // 1. A request the Function App accepts: KeyAccepted=True, and the status says when the
    // pod loaded its key.
    assert_eq!(call().await, 200);
    let message = wait_condition(
        &gateways,
        "verdict",
        "KeyAccepted",
        "True",
        "UpstreamAcceptedKey",
    )
    .await;
    assert!(message.contains("1/1"), "{message}");
    let status = gateways.get("verdict").await.unwrap().status.unwrap();
    let key_status = status.system_key.unwrap();
    assert!(key_status.last_changed.is_some());
    assert!(key_status.source.unwrap().contains("fn-keys"));

    // 2. The key is renewed at the Function App but not in the Secret: requests fail, and the
    // operator says why.
    std::fs::write(&function_key, K2).unwrap();
    assert_eq!(call().await, 502);
    wait_condition(
        &gateways,
        "verdict",
        "KeyAccepted",
        "False",
        "UpstreamRejectedKey",
    )
    .await;
    wait_condition(
        &gateways,
        "verdict",
        "Ready",
        "False",
        "UpstreamRejectedKey",
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let warned = eventually(30, "a Warning Event UpstreamRejectedKey", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("UpstreamRejectedKey"))
            .ok_or("not yet".to_string())
    })
    .await;
    assert_eq!(warned.type_.as_deref(), Some("Warning"));
    // Start-up is quiet: "no pod has reported yet" is Unknown, not worth a Warning.
    let all = events.list(&ListParams::default()).await.unwrap();
    assert!(
        all.items
            .iter()
            .all(|e| e.reason.as_deref() != Some("NotReported")),
        "{:?}",
        all.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );

    // 3. The new key reaches the mounted file: accepted again.
    std::fs::write(&mounted, K2).unwrap();
    eventually(30, "requests work with the renewed key", || async {
        match call().await {
            200 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    wait_condition(
        &gateways,
        "verdict",
        "KeyAccepted",
        "True",
        "UpstreamAcceptedKey",
    )
    .await;

    // No key anywhere the operator writes or logs.
    let gw = serde_json::to_string(&gateways.get("verdict").await.unwrap()).unwrap();
    let all_events =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap();
    for text in [gw, all_events, operator.logs(), sidecar.logs()] {
        assert!(!text.contains(K1) && !text.contains(K2));
    }
}
