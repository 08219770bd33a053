//! The Helm chart: lint-clean, its schema rejects bad values, and what it renders applies to
//! a real API server (the whole-path test installs it and runs the operator with its RBAC).

use std::process::Command;

use mcp_gateway_tests::cluster::Cluster;
use mcp_gateway_tests::workspace_root;

fn helm() -> Command {
    let out = Command::new(workspace_root().join("scripts/local-cluster"))
        .arg("paths")
        .output()
        .unwrap();
    let paths = String::from_utf8(out.stdout).unwrap();
    let helm = paths
        .lines()
        .find_map(|l| l.strip_prefix("HELM="))
        .expect("helm built by scripts/local-cluster build");
    let mut c = Command::new(helm);
    c.current_dir(workspace_root());
    c
}

fn run(mut c: Command) -> (bool, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn chart_lints_clean_and_its_schema_rejects_bad_values() {
    let mut lint = helm();
    lint.args(["lint", "--strict", "charts/mcp-gateway"]);
    let (ok, out) = run(lint);
    assert!(ok, "{out}");
    assert!(out.contains("0 chart(s) failed"), "{out}");

    let mut bad = helm();
    bad.args([
        "template",
        "t",
        "charts/mcp-gateway",
        "--set",
        "operator.image.pullPolicy=Sometimes",
    ]);
    let (ok, out) = run(bad);
    assert!(!ok, "an invalid pullPolicy must be rejected");
    assert!(out.contains("pullPolicy"), "{out}");

    // The annotation allow-list reaches the operator's flags; a snippet cannot be allowed.
    let template = |value: &str| {
        let mut c = helm();
        c.args(["template", "t", "charts/mcp-gateway", "--set-json", value]);
        run(c)
    };
    let (ok, out) =
        template(r#"operator.allowedAnnotationPrefixes=["cert-manager.io/","example.com/"]"#);
    assert!(ok, "{out}");
    assert!(
        out.contains("- --allowed-annotation-prefixes=cert-manager.io/,example.com/"),
        "{out}"
    );
    let (ok, out) = template("operator.allowedAnnotationPrefixes=[]");
    assert!(!ok, "an empty allow-list is refused: {out}");
    let (ok, out) = template(
        r#"operator.allowedAnnotationPrefixes=["nginx.ingress.kubernetes.io/server-snippet"]"#,
    );
    assert!(!ok, "a snippet must not be allowed: {out}");
}

/// The gateways' PodMonitor selects exactly the pods the operator renders, on the port their
/// metrics are served on.
#[test]
fn the_pod_monitor_selects_the_gateway_pods_the_operator_renders() {
    let mut c = helm();
    c.args([
        "template",
        "t",
        "charts/mcp-gateway",
        "--set",
        "metrics.podMonitor.enabled=true",
        "--show-only",
        "templates/podmonitor.yaml",
    ]);
    let (ok, out) = run(c);
    assert!(ok, "{out}");
    let monitor: serde_json::Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);
    let gateway: mcp_gateway_crds::v1alpha1::McpGateway =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
            "metadata": {"name": "weather", "namespace": "apps", "uid": "u"},
            "spec": {
                "upstream": {"url": "https://fn.azurewebsites.net"},
                "systemKey": {"secretRef": {"name": "k"}},
                "auth": {"mode": "Anonymous"},
                "route": {"host": "mcp.example.com"},
            }
        }))
        .unwrap();
    let plan = mcp_gateway_operator::validate::validate(&gateway).unwrap();
    let objects = mcp_gateway_operator::render::build(
        &gateway,
        &plan,
        &Default::default(),
        &mcp_gateway_operator::render::Defaults::new("img"),
    );
    let template = objects.deployment.spec.unwrap().template;
    let labels = template.metadata.unwrap().labels.unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(labels.get(key).map(String::as_str), value.as_str(), "{key}");
    }
    let ports: Vec<String> = template.spec.unwrap().containers[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone())
        .collect();
    let port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
        .as_str()
        .unwrap();
    assert!(ports.iter().any(|p| p == port), "{port} not in {ports:?}");
}

/// The chart's default allow-list is the operator's own, so installing with defaults and
/// running the binary bare behave alike.
#[test]
fn the_charts_default_annotation_prefixes_are_the_operators() {
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_root().join("charts/mcp-gateway/values.yaml")).unwrap(),
    )
    .unwrap();
    let chart: Vec<String> =
        serde_yaml::from_value(values["operator"]["allowedAnnotationPrefixes"].clone()).unwrap();
    assert_eq!(
        chart,
        mcp_gateway_operator::annotations::default_allowed_prefixes()
    );
}

#[tokio::test]
async fn rendered_chart_applies_to_a_real_api_server() {
    let cluster = Cluster::start().expect("local control plane");
    let (ok, _, err) = cluster.kubectl_run(&["create", "namespace", "mcp-gateway-system"], None);
    assert!(ok, "{err}");
    for extra in [
        &[][..],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=false",
            "--set",
            "operator.replicas=2",
        ][..],
    ] {
        let mut template = helm();
        template
            .args([
                "template",
                "mcp-gateway",
                "charts/mcp-gateway",
                "--namespace",
                "mcp-gateway-system",
                "--include-crds",
                // What `helm install` learns from a 1.30+ API server's discovery.
                "--api-versions",
                "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
            ])
            .args(extra);
        let (ok, manifest) = run(template);
        assert!(ok, "{manifest}");
        for kind in [
            "CustomResourceDefinition",
            "ClusterRole",
            "Deployment",
            "ServiceAccount",
            "Service",
            "Role",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(
                manifest.contains(&format!("kind: {kind}")),
                "missing {kind}"
            );
        }
        let (ok, out, err) =
            cluster.kubectl_run(&["apply", "--server-side", "-f", "-"], Some(&manifest));
        assert!(ok, "{err}");
        assert!(out.contains("deployment.apps/mcp-gateway"), "{out}");
    }
    // The admission policy refuses annotations outside the allow-list at once, with the
    // list in its message, and admits the allowed ones (the CRD is installed with the chart).
    let gateway = |name: &str, annotation: &str| {
        serde_json::json!({"apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
            "metadata": {"name": name, "namespace": "mcp-gateway-system"},
            "spec": {"upstream": {"url": "https://fn.azurewebsites.net"},
                "systemKey": {"secretRef": {"name": "k"}}, "auth": {"mode": "Anonymous"},
                "route": {"host": "mcp.example.com", "annotations": {annotation: "x"}}}})
        .to_string()
    };
    let refused = mcp_gateway_tests::must_eventually(30, "the policy in force", || async {
        let (ok, _, err) = cluster.kubectl_run(
            &["apply", "-f", "-"],
            Some(&gateway("hooked", "nginx.ingress.kubernetes.io/auth-url")),
        );
        if ok {
            cluster.kubectl_run(
                &["delete", "mcpgateway", "-n", "mcp-gateway-system", "hooked"],
                None,
            );
            Err("admitted".to_string())
        } else {
            Ok(err)
        }
    })
    .await;
    assert!(
        refused.contains("route.annotations nginx.ingress.kubernetes.io/auth-url not allowed")
            && refused.contains("cert-manager.io/"),
        "{refused}"
    );
    let (ok, _, err) = cluster.kubectl_run(
        &["apply", "-f", "-"],
        Some(&gateway("certified", "cert-manager.io/cluster-issuer")),
    );
    assert!(ok, "{err}");

    // The operator Deployment runs under restricted pod security.
    let (ok, out, err) = cluster.kubectl_run(
        &[
            "get",
            "deployment",
            "-n",
            "mcp-gateway-system",
            "-o",
            "jsonpath={.items[0].spec.template.spec.containers[0].securityContext}",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("\"readOnlyRootFilesystem\":true")
            && out.contains("\"allowPrivilegeEscalation\":false"),
        "{out}"
    );
}
