//! The operator under faults, on a real kube-apiserver + etcd of its own (it restarts the API
//! server, so it shares its cluster with no other test file): it survives an API server
//! restart and keeps reconciling, and an operator killed in the middle of reconciling many
//! gateways converges after a restart with exactly one of every object and the generated
//! keys untouched.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mcp_gateway_crds::v1alpha1::McpGateway;
use mcp_gateway_tests::cluster::{Cluster, TestNamespace};
use mcp_gateway_tests::operator::Operator;
use serde_json::json;

fn gateway(name: &str) -> McpGateway {
    serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": name},
        "spec": {
            "upstream": {"url": "https://weather-fn.azurewebsites.net"},
            "systemKey": {"secretRef": {"name": "fn-keys"}},
            "auth": {"mode": "Anonymous"},
            "route": {"host": "mcp.example.com", "pathPrefix": format!("/{name}")},
        }
    }))
    .unwrap()
}

use mcp_gateway_tests::must_eventually as eventually;

/// Names of the objects of one kind in a namespace.
async fn names<K>(client: &kube::Client, ns: &str) -> Vec<String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_operator_survives_faults_and_converges_without_duplicates() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "faults").await.unwrap();
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);

    // 1. Killed mid-reconcile: 40 gateways, the operator is SIGKILLed while it works.
    const N: usize = 40;
    let mut operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator starts");
    for i in 0..N {
        gateways
            .create(&PostParams::default(), &gateway(&format!("gw{i:02}")))
            .await
            .unwrap();
    }
    // Wait until it has started on them, but not finished: some status written.
    eventually(30, "the operator is reconciling", || async {
        let list = gateways
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let done = list.items.iter().filter(|g| g.status.is_some()).count();
        if done >= 1 {
            Ok(done)
        } else {
            Err("none yet".into())
        }
    })
    .await;
    operator.process.kill();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let session_keys_before: BTreeMap<String, Vec<u8>> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| Some((s.metadata.name?, s.data?.get("keys")?.0.clone())))
        .collect();

    let mut operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator restarts");
    eventually(
        120,
        "every gateway reconciled after the restart",
        || async {
            let list = gateways
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let done = list
                .items
                .iter()
                .filter(|g| {
                    g.status.as_ref().is_some_and(|s| {
                        s.observed_generation == g.metadata.generation && s.url.is_some()
                    })
                })
                .count();
            if done == N {
                Ok(())
            } else {
                Err(format!("{done}/{N}"))
            }
        },
    )
    .await;
    // Exactly one of everything per gateway.
    let expected: Vec<String> = (0..N).map(|i| format!("gw{i:02}-gateway")).collect();
    assert_eq!(names::<Deployment>(&client, &ns.name).await, expected);
    assert_eq!(names::<Service>(&client, &ns.name).await, expected);
    assert_eq!(names::<Ingress>(&client, &ns.name).await, expected);
    assert_eq!(names::<ServiceAccount>(&client, &ns.name).await, expected);
    let config_maps: Vec<String> = names::<ConfigMap>(&client, &ns.name)
        .await
        .into_iter()
        .filter(|n| n.ends_with("-gateway"))
        .collect();
    assert_eq!(config_maps, expected);
    let sessions: Vec<String> = names::<Secret>(&client, &ns.name)
        .await
        .into_iter()
        .filter(|n| n.ends_with("-gateway-session"))
        .collect();
    assert_eq!(sessions.len(), N);
    // Session keys made before the kill were kept, not regenerated.
    let after: BTreeMap<String, Vec<u8>> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| Some((s.metadata.name?, s.data?.get("keys")?.0.clone())))
        .collect();
    for (name, key) in &session_keys_before {
        assert_eq!(after.get(name), Some(key), "{name} was regenerated");
    }

    // 2. The API server restarts under the running operator: it reconnects its watches
    // and keeps reconciling changes made after the restart.
    cluster.restart_apiserver().expect("API server restarts");
    let client = cluster.client().await.unwrap();
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    gateways
        .patch(
            "gw07",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let reconciled = mcp_gateway_tests::eventually(90, "a change after the restart", || async {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
        let d = deployments
            .get("gw07-gateway")
            .await
            .map_err(|e| e.to_string())?;
        match d.spec.and_then(|s| s.replicas) {
            Some(3) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    if let Err(e) = reconciled {
        let logs = operator.logs();
        let tail: Vec<&str> = logs.lines().rev().take(30).collect();
        panic!(
            "{e}\noperator log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(operator.process.is_running(), "the operator kept running");
}
