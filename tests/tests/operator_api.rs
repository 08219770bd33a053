//! The operator binary against a real kube-apiserver + etcd: it renders a gateway's objects
//! with owner references, reports conditions, recovers when a missing Secret appears, rolls
//! pods on config changes but not on key rotation, and keeps two gateways on one host apart.
//! A bare API server runs no controllers: where a test needs a Deployment's status it writes
//! it itself, as the Deployment controller would, and says so.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mcp_gateway_contract::config::Config;
use mcp_gateway_crds::v1alpha1::McpGateway;
use mcp_gateway_tests::cluster::{Cluster, TestNamespace};
use mcp_gateway_tests::operator::{Operator, SIDECAR_IMAGE};
use serde_json::json;

const KEY: &str = "SYSKEY-operator-test-9f8e7d";

fn gateway(name: &str, prefix: &str, secret: &str) -> McpGateway {
    serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "upstream": {"url": "https://weather-fn.azurewebsites.net"},
            "systemKey": {"secretRef": {"name": secret}},
            "auth": {"mode": "Oidc", "oidc": {"issuer": "https://login.microsoftonline.com/t/v2.0", "audiences": ["api://weather"]}},
            "route": {"host": "mcp.example.com", "pathPrefix": prefix, "tls": {"secretName": "mcp-tls"}},
        }
    }))
    .unwrap()
}

fn key_secret(name: &str, key: &str) -> Secret {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "stringData": {"mcp_extension": key}}),
    )
    .unwrap()
}

use mcp_gateway_tests::must_eventually as eventually;

fn condition(gw: &McpGateway, type_: &str) -> Option<(String, String, String)> {
    gw.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn operator_renders_gateways_and_reports_status() {
    // A cluster of its own: it reads this operator's metrics and logs, which another test's
    // operator (watching a shared cluster) could preempt by writing the statuses first.
    let cluster = Cluster::start().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "operator").await.unwrap();
    let operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator starts");
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);

    // 1. The Secret does not exist yet: KeyAvailable=False, Ready=False, objects rendered.
    gateways
        .create(
            &PostParams::default(),
            &gateway("weather", "/weather", "fn-keys"),
        )
        .await
        .unwrap();
    let gw = eventually(30, "KeyAvailable=False", || async {
        let gw = gateways.get("weather").await.map_err(|e| e.to_string())?;
        match condition(&gw, "KeyAvailable") {
            Some((s, r, _)) if s == "False" && r == "SecretNotFound" => Ok(gw),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, _, message) = condition(&gw, "KeyAvailable").unwrap();
    assert!(
        message.contains(&format!("{}/fn-keys", ns.name)),
        "{message}"
    );
    assert_eq!(condition(&gw, "Ready").unwrap().1, "KeyUnavailable");
    assert_eq!(condition(&gw, "ConfigValid").unwrap().0, "True");
    let status = gw.status.clone().unwrap();
    assert_eq!(
        status.url.as_deref(),
        Some("https://mcp.example.com/weather/mcp")
    );
    assert_eq!(status.observed_generation, gw.metadata.generation);

    // No churn while the Secret is missing: the gateway is not rewritten over and over.
    // (Every test here runs its own operator against the shared cluster; one that reconciles
    // from a cache a moment behind may rewrite the status once. So: settle, then watch.)
    let gw = eventually(30, "a settled status", || async {
        let before = gateways.get("weather").await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = gateways.get("weather").await.map_err(|e| e.to_string())?;
        match before.metadata.resource_version == after.metadata.resource_version {
            true => Ok(after),
            false => Err("still changing".to_string()),
        }
    })
    .await;
    let rv = gw.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = gateways.get("weather").await.unwrap();
    assert_eq!(
        later.metadata.resource_version, rv,
        "status churn: {:#?} became {:#?}",
        gw.status, later.status
    );

    // 2. Every object exists, is owned by the gateway (so the garbage collector deletes it
    //    with the gateway) and says what the pure build says.
    let uid = gw.metadata.uid.clone().unwrap();
    let name = "weather-gateway";
    let owned = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let owner = &meta.owner_references.as_ref().expect("owner references")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("McpGateway", uid.as_str(), Some(true))
        );
    };
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
        .get(name)
        .await
        .unwrap();
    owned(&cm.metadata);
    let rendered: Config = serde_yaml::from_str(&cm.data.as_ref().unwrap()["config.yaml"]).unwrap();
    rendered.validate().unwrap();
    assert_eq!(
        rendered.resource_url(),
        "https://mcp.example.com/weather/mcp"
    );
    let svc = Api::<Service>::namespaced(client.clone(), &ns.name)
        .get(name)
        .await
        .unwrap();
    owned(&svc.metadata);
    // The public port the Ingress routes to, and the admin port for Service-based scrapes.
    let ports: Vec<(String, i32, String)> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let target = match &p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                    s.clone()
                }
                other => format!("{other:?}"),
            };
            (p.name.clone().unwrap_or_default(), p.port, target)
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_string(), 80, "http".to_string()),
            ("admin".to_string(), 9090, "admin".to_string())
        ]
    );
    let ing = Api::<Ingress>::namespaced(client.clone(), &ns.name)
        .get(name)
        .await
        .unwrap();
    owned(&ing.metadata);
    let deployment = deployments.get(name).await.unwrap();
    owned(&deployment.metadata);
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some(SIDECAR_IMAGE));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let session = secrets
        .get("weather-gateway-session")
        .await
        .expect("session keys Secret created");
    owned(&session.metadata);

    // 3. Creating the Secret recovers the gateway without touching it.
    secrets
        .create(&PostParams::default(), &key_secret("fn-keys", KEY))
        .await
        .unwrap();
    eventually(30, "KeyAvailable=True", || async {
        let gw = gateways.get("weather").await.map_err(|e| e.to_string())?;
        match condition(&gw, "KeyAvailable") {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let gw = gateways.get("weather").await.unwrap();
    assert_eq!(
        gw.metadata.generation,
        Some(1),
        "the gateway spec was not touched"
    );
    assert_eq!(condition(&gw, "Ready").unwrap().1, "ReplicasNotReady");

    // 4. A bare API server has no Deployment controller: write the status it would write.
    let status = json!({"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2, "observedGeneration": 1}});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    eventually(30, "Ready=True", || async {
        let gw = gateways.get("weather").await.map_err(|e| e.to_string())?;
        match (
            condition(&gw, "Ready"),
            gw.status.as_ref().and_then(|s| s.ready_replicas),
        ) {
            (Some((s, _, _)), Some(2)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (ok, table, _) = cluster.kubectl_run(&["get", "mcpgateways", "-n", &ns.name], None);
    assert!(ok);
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.contains("True")
            && row.contains("https://mcp.example.com/weather/mcp")
            && row.contains("https://weather-fn.azurewebsites.net"),
        "{table}"
    );

    // Events tell the story (Warning while the key was missing, Normal once Ready).
    let events = Api::<Event>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    let reasons: Vec<_> = events
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(
        reasons.contains(&"SecretNotFound".to_string()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"Available".to_string()), "{reasons:?}");

    // 5. Key rotation changes only the Secret: the pod template (and so the pods) stay.
    let template =
        |d: &Deployment| serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap();
    let before = template(&deployments.get(name).await.unwrap());
    secrets
        .patch(
            "fn-keys",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"mcp_extension": "SYSKEY-rotated"}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        template(&deployments.get(name).await.unwrap()),
        before,
        "key rotation must not roll pods"
    );

    // 6. A config change rolls the pods (new config hash in the template).
    gateways
        .patch(
            "weather",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"upstream": {"timeouts": {"responseSeconds": 30}}}})),
        )
        .await
        .unwrap();
    eventually(30, "config hash changes", || async {
        let now = template(&deployments.get(name).await.map_err(|e| e.to_string())?);
        if now["metadata"]["annotations"]["mcpgateway.dev/config-hash"]
            != before["metadata"]["annotations"]["mcpgateway.dev/config-hash"]
        {
            Ok(())
        } else {
            Err("unchanged".into())
        }
    })
    .await;
    eventually(30, "observedGeneration follows", || async {
        let gw = gateways.get("weather").await.map_err(|e| e.to_string())?;
        let observed = gw.status.as_ref().and_then(|s| s.observed_generation);
        if observed == Some(2) {
            Ok(())
        } else {
            Err(format!("{observed:?}"))
        }
    })
    .await;

    // 7. Two gateways on one host with different prefixes never claim each other's paths.
    secrets
        .create(&PostParams::default(), &key_secret("news-keys", KEY))
        .await
        .unwrap();
    gateways
        .create(
            &PostParams::default(),
            &gateway("news", "/news", "news-keys"),
        )
        .await
        .unwrap();
    let ingresses = Api::<Ingress>::namespaced(client.clone(), &ns.name);
    let news = eventually(30, "news ingress", || async {
        ingresses
            .get("news-gateway")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let paths = |i: &Ingress| -> Vec<String> {
        let rule = &i.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("mcp.example.com"));
        rule.http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| p.path.clone().unwrap())
            .collect()
    };
    let weather_paths = paths(&ingresses.get(name).await.unwrap());
    let news_paths = paths(&news);
    assert!(
        weather_paths.contains(&"/.well-known/oauth-protected-resource/weather/mcp".to_string())
    );
    assert!(news_paths.contains(&"/.well-known/oauth-protected-resource/news/mcp".to_string()));
    assert!(
        weather_paths.iter().all(|p| !news_paths.contains(p)),
        "{weather_paths:?} vs {news_paths:?}"
    );

    // 8. A spec admission cannot refuse, because the rule is the cluster admin's: an
    //    annotation outside the operator's allow-list. ConfigValid=False names it, and
    //    nothing is rendered for the gateway.
    let mut hooked = gateway("hooked", "/hooked", "fn-keys");
    hooked.spec.route.annotations.insert(
        "nginx.ingress.kubernetes.io/auth-url".into(),
        "https://attacker.example/".into(),
    );
    gateways
        .create(&PostParams::default(), &hooked)
        .await
        .unwrap();
    eventually(30, "ConfigValid=False", || async {
        let gw = gateways.get("hooked").await.map_err(|e| e.to_string())?;
        match condition(&gw, "ConfigValid") {
            Some((s, r, m))
                if s == "False"
                    && r == "InvalidSpec"
                    && m.contains("nginx.ingress.kubernetes.io/auth-url is not allowed")
                    && m.contains("operator.allowedAnnotationPrefixes")
                    && !m.contains("attacker") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        ingresses.get_opt("hooked-gateway").await.unwrap().is_none(),
        "a refused gateway renders no Ingress"
    );

    // Nothing the operator wrote or logged contains the key.
    let all = serde_json::to_string(&gateways.list(&ListParams::default()).await.unwrap()).unwrap()
        + &serde_json::to_string(&events).unwrap()
        + &operator.logs();
    assert!(
        !all.contains("SYSKEY"),
        "the system key leaked into status, events or logs"
    );
    let metrics = operator.metrics().await.unwrap();
    assert!(
        metrics.contains("mcp_gateway_operator_reconciles_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    // The refused gateway is not counted as ok, and the log says why, once, at warn.
    assert!(
        metrics.contains("mcp_gateway_operator_reconciles_total{outcome=\"invalid_spec\"}"),
        "{metrics}"
    );
    let logs = operator.logs();
    let refusal = logs
        .lines()
        .find(|l| {
            l.contains("gateway condition changed")
                && l.contains("\"gateway\":\"hooked\"")
                && l.contains("\"condition\":\"ConfigValid\"")
        })
        .unwrap_or_else(|| panic!("no log line for the refused gateway:\n{logs}"));
    assert!(
        refusal.contains("\"level\":\"WARN\"") && refusal.contains("auth-url"),
        "{refusal}"
    );

    // Every gateway of this cluster is counted once by its Ready status, the refused one
    // among the not-ready; a deleted one leaves the count.
    let by_ready = |metrics: &str| -> Vec<(String, f64)> {
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix("mcp_gateway_operator_gateways{ready=\""))
            .filter_map(|l| {
                let (ready, value) = l.split_once("\"} ")?;
                Some((ready.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    };
    let all: Api<McpGateway> = Api::all(client.clone());
    let count = all.list(&ListParams::default()).await.unwrap().items.len() as f64;
    assert!(count >= 2.0);
    eventually(30, "the gateways counted by Ready", || async {
        let metrics = operator.metrics().await.map_err(|e| e.to_string())?;
        let counts = by_ready(&metrics);
        let total: f64 = counts.iter().map(|(_, n)| n).sum();
        let not_ready = counts
            .iter()
            .find(|(r, _)| r == "False")
            .map_or(0.0, |c| c.1);
        (total == count && not_ready >= 1.0 && counts.len() == 4)
            .then_some(())
            .ok_or(format!("{counts:?} of {count}"))
    })
    .await;
    gateways
        .delete("hooked", &Default::default())
        .await
        .unwrap();
    eventually(30, "the deleted gateway uncounted", || async {
        let metrics = operator.metrics().await.map_err(|e| e.to_string())?;
        let total: f64 = by_ready(&metrics).iter().map(|(_, n)| n).sum();
        (total == count - 1.0)
            .then_some(())
            .ok_or(format!("{total} of {}", count - 1.0))
    })
    .await;
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_the_other_takes_over() {
    // A cluster of its own: no other test's operator may reconcile here.
    let cluster = Cluster::start().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "leader").await.unwrap();
    let args = |id: &'static str| -> Vec<String> {
        [
            "--leader-election=true",
            "--lease-namespace",
            &ns.name,
            "--pod-name",
            id,
        ]
        .map(String::from)
        .to_vec()
    };
    let start = |id: &'static str| {
        let a = args(id);
        Operator::start(
            &cluster.kubeconfig,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let mut first = start("replica-a");
    let mut second = start("replica-b");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns.name);
    let holder = || async {
        let lease = leases
            .get_opt("mcp-gateway-operator")
            .await
            .map_err(|e| e.to_string())?;
        lease
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "no holder".to_string())
    };
    let leader = eventually(30, "a leader is elected", holder).await;
    let (leader_op, standby_op, standby_id) = if leader == "replica-a" {
        (&mut first, &second, "replica-b")
    } else {
        (&mut second, &first, "replica-a")
    };

    // Only the leader reconciles.
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    secrets
        .create(&PostParams::default(), &key_secret("fn-keys", KEY))
        .await
        .unwrap();
    gateways
        .create(&PostParams::default(), &gateway("elected", "/", "fn-keys"))
        .await
        .unwrap();
    eventually(30, "the leader reconciles", || async {
        let gw = gateways.get("elected").await.map_err(|e| e.to_string())?;
        gw.status
            .and_then(|s| s.observed_generation)
            .ok_or("no status".to_string())
    })
    .await;
    assert!(leader_op.logs().contains("became the leader"));
    assert!(
        !standby_op.logs().contains("became the leader"),
        "the standby must not reconcile"
    );

    // The leader dies without releasing the lease; the standby takes over once it expires.
    leader_op.process.kill();
    eventually(60, "the standby takes over", || async {
        match holder().await {
            Ok(h) if h == standby_id => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    gateways
        .patch(
            "elected",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually(30, "the new leader reconciles", || async {
        let gw = gateways.get("elected").await.map_err(|e| e.to_string())?;
        match gw.status.and_then(|s| s.observed_generation) {
            Some(2) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(standby_op.logs().contains("became the leader"));
}

#[tokio::test]
async fn authorization_server_gateways_get_facade_keys_mounts_and_routes() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "facade").await.unwrap();
    let operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator starts");
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    secrets
        .create(&PostParams::default(), &key_secret("fn-keys", KEY))
        .await
        .unwrap();
    let gw: McpGateway = serde_json::from_value(json!({
        "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": "entra"},
        "spec": {
            "upstream": {"url": "https://weather-fn.azurewebsites.net"},
            "systemKey": {"secretRef": {"name": "fn-keys"}},
            "auth": {"mode": "AuthorizationServer", "authorizationServer": {
                "idp": {"issuer": "https://login.microsoftonline.com/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/v2.0",
                        "clientId": "gateway-app", "clientSecretRef": {"name": "entra-app"}},
                "scopes": ["mcp.tools"]}},
            "route": {"host": "mcp.example.com", "pathPrefix": "/entra"},
        }
    }))
    .unwrap();
    // The IdP client secret, recognizable: the operator only mounts it, never reads it.
    const CLIENT_SECRET: &str = "IDPSECRET-operator-audit-8d7c";
    let app: Secret = serde_json::from_value(
        json!({"metadata": {"name": "entra-app"}, "stringData": {"client-secret": CLIENT_SECRET}}),
    )
    .unwrap();
    // The gateway comes first: the missing client secret is named in a condition (not only
    // a pod stuck on a volume), and creating it recovers the gateway untouched.
    gateways.create(&PostParams::default(), &gw).await.unwrap();
    let waiting = eventually(30, "ClientSecretAvailable=False", || async {
        let gw = gateways.get("entra").await.map_err(|e| e.to_string())?;
        match condition(&gw, "ClientSecretAvailable") {
            Some((s, r, _)) if s == "False" && r == "SecretNotFound" => Ok(gw),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, _, message) = condition(&waiting, "ClientSecretAvailable").unwrap();
    assert!(
        message.contains(&format!("{}/entra-app", ns.name)),
        "{message}"
    );
    assert_eq!(
        condition(&waiting, "Ready").unwrap().1,
        "ClientSecretUnavailable"
    );
    // No route.tls: a warning, not a failure.
    let (tls, tls_reason, _) = condition(&waiting, "TlsConfigured").unwrap();
    assert_eq!((tls.as_str(), tls_reason.as_str()), ("False", "NoTls"));
    secrets.create(&PostParams::default(), &app).await.unwrap();
    eventually(30, "ClientSecretAvailable=True", || async {
        let gw = gateways.get("entra").await.map_err(|e| e.to_string())?;
        match condition(&gw, "ClientSecretAvailable") {
            Some((s, r, _)) if s == "True" && r == "SecretFound" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The facade's keys: generated once, in the format the sidecar reads, never rewritten.
    let facade_secret = eventually(30, "facade keys Secret", || async {
        secrets
            .get_opt("entra-gateway-facade")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await;
    let keys = String::from_utf8(facade_secret.data.unwrap()["keys"].0.clone()).unwrap();
    assert!(mcp_gateway_sidecar::facade::keys::FacadeKeys::from_file_text(&keys).is_ok());
    assert_eq!(
        facade_secret.metadata.owner_references.unwrap()[0].name,
        "entra"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    // The keys Secret is created before the Deployment is applied: wait for both.
    let pod = eventually(30, "the entra Deployment", || async {
        deployments
            .get("entra-gateway")
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .spec
    .unwrap()
    .template
    .spec
    .unwrap();
    let volumes = pod.volumes.unwrap();
    let secret_of = |name: &str| {
        volumes
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
    };
    assert_eq!(secret_of("idp-client-secret").as_deref(), Some("entra-app"));
    assert_eq!(
        secret_of("facade-keys").as_deref(),
        Some("entra-gateway-facade")
    );

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);
    let paths: Vec<String> = ingresses
        .get("entra-gateway")
        .await
        .unwrap()
        .spec
        .unwrap()
        .rules
        .unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths
        .iter()
        .filter_map(|p| p.path.clone())
        .collect();
    for expected in [
        "/.well-known/oauth-authorization-server/entra",
        "/entra/oauth/authorize",
        "/entra/oauth/callback",
        "/entra/oauth/token",
        "/entra/oauth/register",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:?}"
        );
    }
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let config: Config =
        serde_yaml::from_str(&cm.get("entra-gateway").await.unwrap().data.unwrap()["config.yaml"])
            .unwrap();
    assert_eq!(config.issuer_url(), "https://mcp.example.com/entra");
    assert!(matches!(
        config.auth,
        mcp_gateway_contract::config::AuthConfig::AuthorizationServer(_)
    ));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let seen = [
        serde_json::to_string(&gateways.get("entra").await.unwrap()).unwrap(),
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap(),
        serde_json::to_string(&cm.get("entra-gateway").await.unwrap()).unwrap(),
        operator.logs(),
    ];
    for text in seen {
        assert!(!text.contains(CLIENT_SECRET) && !text.contains(KEY) && !text.contains(&keys));
    }

    // Leaving AuthorizationServer mode: the facade's keys are deleted (nothing would use
    // them, and a later return to the mode starts with fresh ones), the session keys and
    // the user's IdP secret stay.
    gateways
        .patch(
            "entra",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"auth": {"mode": "Oidc", "authorizationServer": null,
                "oidc": {"issuer": "https://login.microsoftonline.com/t/v2.0", "audiences": ["api://entra"]}}}})),
        )
        .await
        .unwrap();
    eventually(30, "the facade keys deleted", || async {
        match secrets.get_opt("entra-gateway-facade").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.is_some()))),
        }
    })
    .await;
    assert!(
        secrets
            .get_opt("entra-gateway-session")
            .await
            .unwrap()
            .is_some()
    );
    assert!(secrets.get_opt("entra-app").await.unwrap().is_some());
    let ingress = Api::<Ingress>::namespaced(client.clone(), &ns.name)
        .get("entra-gateway")
        .await
        .unwrap();
    let rule = &ingress.spec.unwrap().rules.unwrap()[0];
    assert!(
        rule.http.as_ref().unwrap().paths.iter().all(|p| !p
            .path
            .as_deref()
            .unwrap_or_default()
            .contains("/oauth/")),
        "the facade's routes are gone"
    );
}

/// Two tenants, one host: the older gateway keeps a contested path, the newer one says so
/// (RouteConflict, Ready=False, a Warning Event) and renders no Ingress rule for it, and
/// each recovers by itself when the other lets go.
#[tokio::test]
async fn the_older_gateway_keeps_a_contested_route_across_namespaces() {
    const HOST: &str = "shared.conflict.example";
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let team_a = TestNamespace::new(&client, "team-a").await.unwrap();
    let team_b = TestNamespace::new(&client, "team-b").await.unwrap();
    let operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator starts");
    let on_host = |name: &str, prefix: &str| {
        let mut gw = gateway(name, prefix, "fn-keys");
        gw.spec.route.host = HOST.into();
        gw
    };
    let (a, b) = (team_a.name.clone(), team_b.name.clone());
    let gateways_a: Api<McpGateway> = Api::namespaced(client.clone(), &a);
    let gateways_b: Api<McpGateway> = Api::namespaced(client.clone(), &b);
    let ingresses_a: Api<Ingress> = Api::namespaced(client.clone(), &a);
    let ingresses_b: Api<Ingress> = Api::namespaced(client.clone(), &b);
    for ns in [&a, &b] {
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &key_secret("fn-keys", KEY))
            .await
            .unwrap();
    }
    let paths = |ing: &Ingress| -> Vec<String> {
        ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| p.path.clone().unwrap())
            .collect()
    };
    let route_conflict = |api: Api<McpGateway>, name: &'static str, want: &'static str| async move {
        eventually(30, &format!("{name}: RouteConflict={want}"), || async {
            let gw = api.get(name).await.map_err(|e| e.to_string())?;
            match condition(&gw, "RouteConflict") {
                Some((s, _, _)) if s == want => Ok(gw),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    };

    // The first claim.
    gateways_a
        .create(&PostParams::default(), &on_host("weather", "/weather"))
        .await
        .unwrap();
    route_conflict(gateways_a.clone(), "weather", "False").await;
    // creationTimestamp has whole seconds: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Another tenant claims the same paths.
    gateways_b
        .create(&PostParams::default(), &on_host("thief", "/weather"))
        .await
        .unwrap();
    let thief = route_conflict(gateways_b.clone(), "thief", "True").await;
    let (_, reason, message) = condition(&thief, "RouteConflict").unwrap();
    assert_eq!(reason, "PathsClaimed");
    assert!(
        message.contains(&format!("McpGateway {a}/weather")),
        "{message}"
    );
    assert!(
        message.contains("/weather/mcp") && message.contains(HOST),
        "{message}"
    );
    let (ready, ready_reason, _) = condition(&thief, "Ready").unwrap();
    assert_eq!(
        (ready.as_str(), ready_reason.as_str()),
        ("False", "RouteConflict")
    );
    assert_eq!(thief.status.as_ref().unwrap().url, None, "not its URL");
    assert!(
        ingresses_b
            .get_opt("thief-gateway")
            .await
            .unwrap()
            .is_none(),
        "every path is contested: no Ingress"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &b);
    eventually(30, "a Warning Event PathsClaimed", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("PathsClaimed")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("thief")
            })
            .ok_or_else(|| "no event yet".to_string())
    })
    .await;
    // The older one is untouched.
    let weather = gateways_a.get("weather").await.unwrap();
    assert_eq!(condition(&weather, "RouteConflict").unwrap().0, "False");
    assert!(
        paths(&ingresses_a.get("weather-gateway").await.unwrap()).contains(&"/weather/mcp".into())
    );

    // A newer gateway at another prefix, then the older one moves onto it: the older claim
    // wins there too, and the path it left goes to the one that wanted it.
    gateways_b
        .create(&PostParams::default(), &on_host("late", "/late"))
        .await
        .unwrap();
    route_conflict(gateways_b.clone(), "late", "False").await;
    gateways_a
        .patch(
            "weather",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"route": {"pathPrefix": "/late"}}})),
        )
        .await
        .unwrap();
    let late = route_conflict(gateways_b.clone(), "late", "True").await;
    assert!(
        condition(&late, "RouteConflict")
            .unwrap()
            .2
            .contains(&format!("{a}/weather"))
    );
    let thief = route_conflict(gateways_b.clone(), "thief", "False").await;
    assert_ne!(condition(&thief, "Ready").unwrap().1, "RouteConflict");
    assert_eq!(
        thief.status.as_ref().unwrap().url.as_deref(),
        Some("https://shared.conflict.example/weather/mcp")
    );
    let thief_ingress = eventually(30, "thief's Ingress", || async {
        ingresses_b
            .get("thief-gateway")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(paths(&thief_ingress).contains(&"/weather/mcp".into()));

    // The older gateway goes away: the newer one recovers without being touched.
    gateways_a
        .delete("weather", &Default::default())
        .await
        .unwrap();
    route_conflict(gateways_b.clone(), "late", "False").await;
    let late_ingress = eventually(30, "late's Ingress", || async {
        ingresses_b
            .get("late-gateway")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    assert!(paths(&late_ingress).contains(&"/late/mcp".into()));
    assert!(!operator.logs().contains("SYSKEY"));
}

/// An operator that looks at pending gateways again every second, and the key Secret
/// `fn-keys` its gateways name.
async fn quick_operator(cluster: &Cluster, client: &kube::Client, ns: &str) -> Operator {
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &key_secret("fn-keys", KEY))
        .await
        .unwrap();
    Operator::start(
        &cluster.kubeconfig,
        &[
            "--leader-election=false",
            "--key-status-interval-seconds",
            "1",
        ],
    )
    .expect("operator starts")
}

/// `trustedCA`: a missing bundle holds Ready back with its name; once it is there the pods
/// mount it as `trustedCaFile` and carry its digest, so a new bundle rolls them.
#[tokio::test]
async fn a_trusted_ca_bundle_is_mounted_and_a_new_one_rolls_the_pods() {
    let cluster = Cluster::shared().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "trust").await.unwrap();
    let _operator = quick_operator(&cluster, &client, &ns.name).await;
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let mut gw = gateway("private", "/private", "fn-keys");
    gw.spec.trusted_ca = Some(
        serde_json::from_value(json!({"configMapRef": {"name": "corp-ca", "key": "bundle.pem"}}))
            .unwrap(),
    );
    // Scheduling and metadata overrides (issue 20) ride along: the API server takes them.
    gw.spec.pod = Some(
        serde_json::from_value(json!({
            "nodeSelector": {"agentpool": "mcp"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mcp", "effect": "NoSchedule"}],
            "priorityClassName": "mcp-high",
            "imagePullSecrets": [{"name": "acr-pull"}],
            "labels": {"team": "payments"},
            "annotations": {"example.com/owner": "payments"},
        }))
        .unwrap(),
    );
    gateways.create(&PostParams::default(), &gw).await.unwrap();
    let waiting = eventually(30, "Ready=False TrustedCAUnavailable", || async {
        let gw = gateways.get("private").await.map_err(|e| e.to_string())?;
        match condition(&gw, "Ready") {
            Some((s, r, m)) if s == "False" && r == "TrustedCAUnavailable" => Ok(m),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        waiting.contains(&format!("{}/corp-ca", ns.name)),
        "{waiting}"
    );

    let bundle = |pem: &str| -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": "corp-ca"}, "data": {"bundle.pem": pem}}),
        )
        .unwrap()
    };
    let first = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    config_maps
        .create(&PostParams::default(), &bundle(first))
        .await
        .unwrap();
    let digest_of = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("mcpgateway.dev/trusted-ca-sha256")
            .cloned()
    };
    let before = eventually(30, "the Deployment carries the bundle's digest", || async {
        let d = deployments
            .get("private-gateway")
            .await
            .map_err(|e| e.to_string())?;
        digest_of(&d)
            .map(|digest| (d, digest))
            .ok_or("no digest yet".to_string())
    })
    .await;
    let template = &before.0.spec.as_ref().unwrap().template;
    let meta = template.metadata.as_ref().unwrap();
    assert_eq!(meta.labels.as_ref().unwrap()["team"], "payments");
    assert_eq!(
        meta.annotations.as_ref().unwrap()["example.com/owner"],
        "payments"
    );
    let scheduled = template.spec.as_ref().unwrap();
    assert_eq!(
        scheduled.node_selector.as_ref().unwrap()["agentpool"],
        "mcp"
    );
    assert_eq!(scheduled.priority_class_name.as_deref(), Some("mcp-high"));
    assert_eq!(
        scheduled.image_pull_secrets.as_ref().unwrap()[0].name,
        "acr-pull"
    );
    assert_eq!(
        scheduled.tolerations.as_ref().unwrap()[0].effect.as_deref(),
        Some("NoSchedule")
    );
    let pod = before.0.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "trusted-ca")
        .unwrap();
    assert_eq!(volume.config_map.unwrap().name, "corp-ca");
    let config_map = config_maps.get("private-gateway").await.unwrap();
    let config: Config = serde_yaml::from_str(&config_map.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(
        config.trusted_ca_file.as_deref(),
        Some(std::path::Path::new("/etc/mcp-gateway-trust/ca.crt"))
    );

    // A new bundle: picked up at the next reconcile (here forced by a label change; else the
    // resync), with a new digest in the pod template.
    config_maps
        .replace(
            "corp-ca",
            &PostParams::default(),
            &bundle(&format!("{first}{first}")),
        )
        .await
        .unwrap();
    gateways
        .patch(
            "private",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "1"}}})),
        )
        .await
        .unwrap();
    let rolled = eventually(30, "a new digest rolls the pod template", || async {
        let d = deployments
            .get("private-gateway")
            .await
            .map_err(|e| e.to_string())?;
        match digest_of(&d) {
            Some(digest) if digest != before.1 => Ok(digest),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A broken bundle (no certificate) holds Ready back but rolls nothing: the pods keep the
    // digest they run with (found in review: the annotation used to vanish, rolling to pods
    // that could not start).
    config_maps
        .replace(
            "corp-ca",
            &PostParams::default(),
            &bundle("not a certificate\n"),
        )
        .await
        .unwrap();
    gateways
        .patch(
            "private",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "2"}}})),
        )
        .await
        .unwrap();
    let message = eventually(30, "Ready=False for the broken bundle", || async {
        let gw = gateways.get("private").await.map_err(|e| e.to_string())?;
        match condition(&gw, "Ready") {
            Some((s, r, m)) if s == "False" && r == "TrustedCAUnavailable" => Ok(m),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(message.contains("no PEM certificate"), "{message}");
    let d = deployments.get("private-gateway").await.unwrap();
    assert_eq!(
        digest_of(&d),
        Some(rolled),
        "a broken bundle rolled the pods"
    );

    // Two replicas have a disruption budget of one pod, owned by the gateway; at one replica
    // it goes (it would only block a drain).
    let budgets: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), &ns.name);
    let budget = budgets.get("private-gateway").await.unwrap();
    assert_eq!(budget.metadata.owner_references.unwrap()[0].name, "private");
    assert_eq!(
        budget.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    gateways
        .patch(
            "private",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually(30, "the budget goes at one replica", || async {
        match budgets
            .get_opt("private-gateway")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;
}

/// `route.gatewayRef`: an HTTPRoute instead of an Ingress, only once the Gateway API CRDs
/// are served (before that a condition says what to install), valid against the real CRDs'
/// schema and CEL, and the implementation's verdict in `RouteAccepted` and `Ready`. A bare
/// API server runs no Gateway API implementation: the route's status is written here as one
/// would write it (the real one, Traefik, is on the real-node tier).
#[tokio::test]
async fn a_gateway_ref_becomes_an_http_route_whose_verdict_is_route_accepted() {
    // Its own cluster: the Gateway API CRDs are installed halfway through.
    let cluster = Cluster::start().expect("local control plane");
    cluster.install_crd().unwrap();
    let client = cluster.client().await.unwrap();
    let ns = TestNamespace::new(&client, "gwapi").await.unwrap();
    let _operator = quick_operator(&cluster, &client, &ns.name).await;
    let gateways: Api<McpGateway> = Api::namespaced(client.clone(), &ns.name);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let mut gw = gateway("routed", "/routed", "fn-keys");
    gw.spec.route.tls = None;
    gw.spec.route.gateway_ref = Some(
        serde_json::from_value(
            json!({"name": "public", "namespace": "infra", "sectionName": "https"}),
        )
        .unwrap(),
    );
    gateways.create(&PostParams::default(), &gw).await.unwrap();
    let condition_is = |status: &'static str, reason: &'static str| {
        let gateways = gateways.clone();
        async move {
            let gw = gateways.get("routed").await.map_err(|e| e.to_string())?;
            match condition(&gw, "RouteAccepted") {
                Some((s, r, m)) if s == status && r == reason => Ok((gw, m)),
                other => Err(format!("{other:?}")),
            }
        }
    };
    let (missing, message) = eventually(30, "RouteAccepted=False CrdNotInstalled", || {
        condition_is("False", "CrdNotInstalled")
    })
    .await;
    assert!(message.contains("Gateway API CRDs"), "{message}");
    assert_eq!(condition(&missing, "Ready").unwrap().1, "RouteNotAccepted");
    assert!(
        condition(&missing, "TlsConfigured").is_none(),
        "TLS is the listener's"
    );
    assert!(
        ingresses.get_opt("routed-gateway").await.unwrap().is_none(),
        "no Ingress"
    );

    cluster.install_gateway_api_crds().unwrap();
    let routes: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    // Accepted by the real CRD's schema and CEL (it was applied), owned by the gateway.
    let route = eventually(60, "the HTTPRoute", || async {
        routes
            .get_opt("routed-gateway")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not yet".to_string())
    })
    .await;
    assert_eq!(
        route.metadata.owner_references.as_ref().unwrap()[0].name,
        "routed"
    );
    let spec = &route.data["spec"];
    assert_eq!(spec["parentRefs"][0]["name"], "public");
    assert_eq!(spec["parentRefs"][0]["namespace"], "infra");
    assert_eq!(spec["parentRefs"][0]["sectionName"], "https");
    assert_eq!(spec["hostnames"][0], "mcp.example.com");
    assert_eq!(spec["rules"][0]["timeouts"]["request"], "0s");
    let paths: Vec<String> = spec["rules"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"]["value"].as_str().unwrap().to_string())
        .collect();
    assert!(paths.contains(&"/routed/mcp".to_string()), "{paths:?}");
    let (_, message) = eventually(30, "RouteAccepted=Unknown Pending", || {
        condition_is("Unknown", "Pending")
    })
    .await;
    assert!(message.contains("infra/public"), "{message}");

    // The implementation refuses: the listener does not allow this namespace.
    let generation = route.metadata.generation.unwrap();
    let parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra", "sectionName": "https"});
    let verdict = |status: &str, reason: &str| {
        json!({"status": {"parents": [{
        "parentRef": parent, "controllerName": "example.com/gateway-controller",
        "conditions": [
            {"type": "Accepted", "status": status, "reason": reason, "message": "route check",
             "observedGeneration": generation, "lastTransitionTime": "2026-12-01T00:00:00Z"},
            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
             "observedGeneration": generation, "lastTransitionTime": "2026-12-01T00:00:00Z"},
        ]}]}})
    };
    routes
        .patch_status(
            "routed-gateway",
            &PatchParams::default(),
            &Patch::Merge(verdict("False", "NotAllowedByListeners")),
        )
        .await
        .unwrap();
    let (refused, message) = eventually(30, "RouteAccepted=False NotAllowedByListeners", || {
        condition_is("False", "NotAllowedByListeners")
    })
    .await;
    assert!(message.contains("allowedRoutes.namespaces"), "{message}");
    assert_eq!(condition(&refused, "Ready").unwrap().1, "RouteNotAccepted");

    // Accepted, and the Deployment available (as its controller would write it): Ready.
    routes
        .patch_status(
            "routed-gateway",
            &PatchParams::default(),
            &Patch::Merge(verdict("True", "Accepted")),
        )
        .await
        .unwrap();
    deployments
        .patch_status(
            "routed-gateway",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}})),
        )
        .await
        .unwrap();
    eventually(30, "Ready=True with the route accepted", || async {
        let (gw, _) = condition_is("True", "Accepted").await?;
        match condition(&gw, "Ready") {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A younger gateway on the same host and prefix, also through the Gateway: the older
    // keeps the paths, the younger's route gets none of them (so none at all).
    let mut late = gateway("late", "/routed", "fn-keys");
    late.spec.route.tls = None;
    late.spec.route.gateway_ref = gw.spec.route.gateway_ref.clone();
    gateways
        .create(&PostParams::default(), &late)
        .await
        .unwrap();
    eventually(30, "the younger gateway's paths are claimed", || async {
        let late = gateways.get("late").await.map_err(|e| e.to_string())?;
        match condition(&late, "RouteConflict") {
            Some((s, r, _)) if s == "True" && r == "PathsClaimed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        routes.get_opt("late-gateway").await.unwrap().is_none(),
        "a route for paths another gateway owns"
    );
    let kept = routes.get("routed-gateway").await.unwrap();
    assert!(kept.data.to_string().contains("/routed/mcp"));
    gateways.delete("late", &Default::default()).await.unwrap();

    // Back to an Ingress: the HTTPRoute goes, the Ingress comes.
    gateways
        .patch(
            "routed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"route": {"gatewayRef": null}}})),
        )
        .await
        .unwrap();
    eventually(30, "the Ingress replaces the HTTPRoute", || async {
        let route = routes
            .get_opt("routed-gateway")
            .await
            .map_err(|e| e.to_string())?;
        let ingress = ingresses
            .get_opt("routed-gateway")
            .await
            .map_err(|e| e.to_string())?;
        match (route, ingress) {
            (None, Some(_)) => Ok(()),
            other => Err(format!(
                "route, ingress: {:?}",
                (other.0.is_some(), other.1.is_some())
            )),
        }
    })
    .await;
}
