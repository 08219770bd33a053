//! The Helm chart: lint-clean, its schema rejects bad values, what it renders applies to a
//! real API server (the whole-path test installs it and runs the operator with its RBAC), and
//! its Grafana dashboard queries only metrics the binaries export.

use std::collections::BTreeSet;
use std::process::Command;

use mcp_gateway_tests::cluster::Cluster;
use mcp_gateway_tests::operator::Operator;
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use mcp_gateway_tests::{TempDir, must_eventually, workspace_root};
use serde_json::Value;

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

    // Images pinned by digest (issue 20): the operator's and the gateways' (--sidecar-image).
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut pinned = helm();
    pinned.args([
        "template",
        "t",
        "charts/mcp-gateway",
        "--set",
        &format!("operator.image.digest={digest}"),
        "--set",
        &format!("sidecar.image.digest={digest}"),
    ]);
    let (ok, out) = run(pinned);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "image: \"ghcr.io/mcp-gateway/mcp-gateway-operator@{digest}\""
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("ghcr.io/mcp-gateway/mcp-gateway-sidecar@{digest}")),
        "{out}"
    );
    let mut tagged = helm();
    tagged.args(["template", "t", "charts/mcp-gateway"]);
    let (ok, out) = run(tagged);
    assert!(ok && !out.contains("@sha256:"), "{out}");
    let mut bad_digest = helm();
    bad_digest.args([
        "template",
        "t",
        "charts/mcp-gateway",
        "--set",
        "sidecar.image.digest=latest",
    ]);
    let (ok, out) = run(bad_digest);
    assert!(!ok && out.contains("digest"), "{out}");

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

const DASHBOARD: &str = "charts/mcp-gateway/dashboards/mcp-gateway.json";

/// `helm template` of the dashboard's template alone, with `args` added.
fn render_dashboard(args: &[&str]) -> (bool, String) {
    let mut c = helm();
    c.args([
        "template",
        "t",
        "charts/mcp-gateway",
        "--namespace",
        "observed",
        "--show-only",
        "templates/dashboard.yaml",
    ])
    .args(args);
    run(c)
}

/// The ConfigMap is rendered only when asked for, carries the Grafana sidecar's label (or
/// the one configured), and holds the dashboard file unchanged.
#[test]
fn the_grafana_dashboard_renders_only_when_enabled_with_the_sidecars_label() {
    // Defaults: not rendered at all (helm finds no such template in the output).
    let (ok, out) = render_dashboard(&[]);
    assert!(!ok && out.contains("could not find template"), "{out}");
    let mut all = helm();
    all.args(["template", "t", "charts/mcp-gateway"]);
    let (ok, out) = run(all);
    assert!(ok, "{out}");
    assert!(!out.contains("-dashboard"), "{out}");

    let mut lint = helm();
    lint.args([
        "lint",
        "--strict",
        "charts/mcp-gateway",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
    ]);
    let (ok, out) = run(lint);
    assert!(ok && out.contains("0 chart(s) failed"), "{out}");

    let (ok, out) = render_dashboard(&["--set", "metrics.grafanaDashboard.enabled=true"]);
    assert!(ok, "{out}");
    let config_map: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(config_map["kind"], "ConfigMap");
    assert_eq!(config_map["metadata"]["name"], "t-mcp-gateway-dashboard");
    assert_eq!(config_map["metadata"]["namespace"], "observed");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let text = config_map["data"]["mcp-gateway.json"].as_str().unwrap();
    let file = std::fs::read_to_string(workspace_root().join(DASHBOARD)).unwrap();
    assert_eq!(text, file.trim_end());
    let dashboard: Value = serde_json::from_str(text).unwrap();
    let panels = all_panels(&dashboard);
    assert!(panels.len() > 10, "{} panels", panels.len());
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().map(Vec::as_slice);
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "{} has no query",
            panel["title"]
        );
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
    }
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap();
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");

    // Another label, namespace, extra labels and a folder annotation.
    let (ok, out) = render_dashboard(&[
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "metrics.grafanaDashboard.namespace=grafana",
        "--set",
        "metrics.grafanaDashboard.label=dashboards.example/grafana",
        "--set",
        "metrics.grafanaDashboard.labelValue=mcp",
        "--set",
        "metrics.grafanaDashboard.labels.team=platform",
        "--set",
        "metrics.grafanaDashboard.annotations.grafana_folder=MCP",
    ]);
    assert!(ok, "{out}");
    let config_map: Value = serde_yaml::from_str(&out).unwrap();
    let metadata = &config_map["metadata"];
    assert_eq!(metadata["namespace"], "grafana");
    assert_eq!(metadata["labels"]["dashboards.example/grafana"], "mcp");
    assert_eq!(metadata["labels"]["team"], "platform");
    assert!(
        metadata["labels"].get("grafana_dashboard").is_none(),
        "{out}"
    );
    assert_eq!(metadata["annotations"]["grafana_folder"], "MCP");

    // The schema refuses a label key Kubernetes would refuse.
    let (ok, out) = render_dashboard(&[
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "metrics.grafanaDashboard.label=not a label",
    ]);
    assert!(!ok, "{out}");
}

/// Every panel of the dashboard, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every `mcp_gateway_*` name in the dashboard's queries: the panels' `expr` and the
/// template variables' queries.
fn queried_metrics(dashboard: &Value) -> BTreeSet<String> {
    let mut queries: Vec<&str> = all_panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        queries.extend(variable["definition"].as_str());
        queries.extend(variable["query"].as_str());
        queries.extend(variable["query"]["query"].as_str());
    }
    let identifier = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = BTreeSet::new();
    for query in queries {
        for (at, _) in query.match_indices("mcp_gateway_") {
            if query[..at].ends_with(|c: char| identifier(c) || c.is_ascii_uppercase()) {
                continue;
            }
            let name: String = query[at..].chars().take_while(|&c| identifier(c)).collect();
            names.insert(name);
        }
    }
    names
}

/// The series names a Prometheus text page lets a query use: every sample's name, and for
/// every `# TYPE` line the names its type is queried by (a counter's `_total`, a histogram's
/// `_bucket`, `_sum` and `_count`), so that a family with no sample yet (a counter family
/// before its first count) counts as exposed.
fn exposed_series(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" if !name.ends_with("_total") => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty())
        {
            names.insert(name.to_string());
        }
    }
    names
}

/// The `# TYPE` lines of a page: family name and type.
fn families(page: &str) -> BTreeSet<(String, String)> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// A sidecar in front of `fast-upstream` with a tool rule and a tool rate limit, and the
/// requests that give most of its metric families a series: forwarded calls (requests,
/// upstream latency), tool calls allowed and denied, one over the limit. Returns its
/// `/metrics` page.
async fn sidecar_page_after_traffic(dir: &TempDir) -> String {
    let key = mcp_gateway_tests::stack::system_key("dashboard");
    let key_file = dir.path().join("mcp_extension");
    std::fs::write(&key_file, &key).unwrap();
    let mut c = Command::new(mcp_gateway_tests::workspace_binary("fast-upstream"));
    c.args(["--port", "0", "--key", &key]);
    let (_upstream, ready) = mcp_gateway_tests::process::Process::spawn_ready(
        "fast-upstream",
        c,
        None,
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    let (listen, base) = public_listener();
    let config = serde_json::from_value(serde_json::json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": ready["url"]},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Anonymous"},
        "toolAccess": {"default": "Deny", "rules": [{"tools": ["get_*"]}]},
        "rateLimits": {"tools": [{"tools": ["get_*"], "requestsPerMinute": 1, "burst": 1}]},
    }))
    .unwrap();
    let sidecar = Sidecar::start(config).expect("sidecar starts");
    sidecar.wait_ready().await.unwrap();
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(format!("{}/mcp", sidecar.url))
            .header("content-type", "application/json")
            .header("accept", mcp_gateway_tests::stack::ACCEPT)
            .body(body)
            .send()
    };
    let call =
        |id, name: &str| mcp_gateway_tests::stack::tool_call(id, name, serde_json::json!({}));
    let mut statuses = Vec::new();
    for body in [
        mcp_gateway_tests::stack::initialize_body(),
        call(2, "get_weather"),
        call(3, "get_weather"),
        call(4, "delete_everything"),
    ] {
        statuses.push(post(body).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[0], 200, "{statuses:?}\n{}", sidecar.logs());
    assert!(statuses.contains(&429), "{statuses:?}");
    let page = sidecar.metrics().await.unwrap();
    for family in [
        "mcp_gateway_requests_total",
        "mcp_gateway_upstream_latency_seconds_bucket",
        "mcp_gateway_tool_calls_total",
        "mcp_gateway_rate_limited_total",
    ] {
        assert!(page.contains(&format!("{family}{{")), "{family}:\n{page}");
    }
    page
}

/// A sidecar in Oidc mode whose IdP is down, and a request without a token: its auth
/// failures and key fetches.
async fn oidc_sidecar_page(dir: &TempDir) -> String {
    let key_file = dir.path().join("oidc-key");
    std::fs::write(&key_file, mcp_gateway_tests::stack::system_key("oidc")).unwrap();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let (listen, base) = public_listener();
    let config = serde_json::from_value(serde_json::json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": down},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Oidc", "issuer": format!("{down}/idp"), "audiences": ["api"]},
    }))
    .unwrap();
    let sidecar = Sidecar::start(config).expect("sidecar starts");
    let status = reqwest::Client::new()
        .post(format!("{}/mcp", sidecar.url))
        .body(mcp_gateway_tests::stack::initialize_body())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    must_eventually(20, "a JWKS fetch counted", || async {
        let page = sidecar.metrics().await.map_err(|e| e.to_string())?;
        if page.contains("mcp_gateway_jwks_refreshes_total{")
            && page.contains("mcp_gateway_auth_failures_total{")
        {
            Ok(page)
        } else {
            Err(page)
        }
    })
    .await
}

/// The sidecar's metrics exactly as the binary registers them (its own `Metrics` type), with
/// a series in every family, so that the families the running binaries above had no series
/// for yet (prometheus-client leaves an empty family out) are there too.
fn every_sidecar_family() -> String {
    use mcp_gateway_sidecar::metrics::*;
    let m = Metrics::new();
    let outcome = Outcome { outcome: "ok" };
    m.requests
        .get_or_create(&RouteStatus {
            route: "mcp",
            status: 200,
        })
        .inc();
    m.auth_failures
        .get_or_create(&Reason { reason: "missing" })
        .inc();
    m.upstream_latency
        .get_or_create(&Route { route: "mcp" })
        .observe(0.1);
    m.key_reloads.get_or_create(&outcome).inc();
    m.jwks_refreshes.get_or_create(&outcome).inc();
    m.oauth
        .get_or_create(&OauthLabels {
            endpoint: "oauth_token",
            outcome: "ok",
        })
        .inc();
    m.key_source_fetches
        .get_or_create(&KeyFetch {
            trigger: "periodic",
            outcome: "ok",
        })
        .inc();
    m.long_calls
        .get_or_create(&Outcome { outcome: "opened" })
        .inc();
    m.tool_calls
        .get_or_create(&ToolCall {
            rule: "default".into(),
            decision: "allowed",
        })
        .inc();
    m.rate_limited
        .get_or_create(&Limit {
            limit: "caller".into(),
        })
        .inc();
    m.encode()
}

/// The operator's metrics as its binary registers them, a series in every family (but the
/// gateways by Ready status, which only a running controller reports).
fn every_operator_family() -> String {
    use mcp_gateway_operator::metrics::*;
    let m = Metrics::new();
    m.reconciles.get_or_create(&Outcome { outcome: "ok" }).inc();
    m.failures.get_or_create(&Reason { reason: "apply" }).inc();
    m.duration.observe(0.1);
    m.encode()
}

/// A dashboard that queries a metric the binaries do not export shows "No data" exactly when
/// it is needed. Every metric it names must be exported: seen in the `/metrics` of running
/// sidecars and a running operator, or, for a family those had no series for yet, in the
/// encoding of the very `Metrics` types the binaries register (checked to agree with what the
/// binaries served).
#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exposed_by_the_binaries() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join(DASHBOARD)).unwrap())
            .unwrap();
    let queried = queried_metrics(&dashboard);
    assert!(queried.len() >= 15, "{queried:?}");

    let dir = TempDir::new("dashboard");
    let sidecar_page = sidecar_page_after_traffic(&dir).await;
    let oidc_page = oidc_sidecar_page(&dir).await;

    // An operator against a real API server, with one gateway to reconcile.
    let cluster = Cluster::start().expect("local control plane");
    cluster.install_crd().unwrap();
    let (ok, _, err) = cluster.kubectl_run(&["create", "namespace", "apps"], None);
    assert!(ok, "{err}");
    let operator = Operator::start(&cluster.kubeconfig, &["--leader-election=false"])
        .expect("operator starts");
    let gateway = serde_json::json!({
        "apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpGateway",
        "metadata": {"name": "weather", "namespace": "apps"},
        "spec": {
            "upstream": {"url": "https://fn.azurewebsites.net"},
            "systemKey": {"secretRef": {"name": "k"}},
            "auth": {"mode": "Anonymous"},
            "route": {"host": "mcp.example.com"},
        }
    });
    let (ok, _, err) = cluster.kubectl_run(&["apply", "-f", "-"], Some(&gateway.to_string()));
    assert!(ok, "{err}");
    let operator_page = must_eventually(60, "the operator's reconcile metrics", || async {
        let page = operator.metrics().await.map_err(|e| e.to_string())?;
        if page.contains("mcp_gateway_operator_gateways{")
            && page.contains("mcp_gateway_operator_reconciles_total{")
        {
            Ok(page)
        } else {
            Err(page)
        }
    })
    .await;

    // The registries encoded here are the binaries': every family a binary served is in
    // them, with the same type.
    let registered = every_sidecar_family() + &every_operator_family();
    let known = families(&registered);
    let served: BTreeSet<_> = [&sidecar_page, &oidc_page, &operator_page]
        .into_iter()
        .flat_map(|page| families(page))
        .collect();
    let collector = (
        "mcp_gateway_operator_gateways".to_string(),
        "gauge".to_string(),
    );
    let unknown: Vec<_> = served
        .iter()
        .filter(|f| !known.contains(*f) && **f != collector)
        .collect();
    assert!(
        unknown.is_empty(),
        "served but not in the registries: {unknown:?}"
    );

    let mut exposed = BTreeSet::new();
    for page in [&sidecar_page, &oidc_page, &operator_page, &registered] {
        exposed.extend(exposed_series(page));
    }
    let missing: Vec<&String> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which the binaries do not export (a new metric \
         family: give it a series in every_sidecar_family or every_operator_family);\n\
         exported: {exposed:?}"
    );
    let seen_running: BTreeSet<String> = [&sidecar_page, &oidc_page, &operator_page]
        .into_iter()
        .flat_map(|page| exposed_series(page))
        .collect();
    eprintln!(
        "queried metrics seen in running binaries: {:?}; from the registries only: {:?}",
        queried.intersection(&seen_running).collect::<Vec<_>>(),
        queried.difference(&seen_running).collect::<Vec<_>>()
    );
}
