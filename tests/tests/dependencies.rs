//! The crate layout's promise, checked on the resolved dependency graph: the internet-facing
//! sidecar and the contract it shares with the operator link no Kubernetes client code, and
//! the API types need kube's `derive` only.

use std::process::Command;

use mcp_gateway_tests::workspace_root;

/// The normal (non-dev, non-build) dependencies of `package`, one crate name per line.
fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn assert_absent(package: &str, forbidden: impl Fn(&str) -> bool) {
    let deps = dependencies(package);
    assert!(
        deps.iter().any(|d| d == package),
        "cargo tree lists {package} itself: {deps:?}"
    );
    let found: Vec<_> = deps.iter().filter(|d| forbidden(d)).collect();
    assert!(found.is_empty(), "{package} depends on {found:?}");
}

#[test]
fn the_sidecar_links_no_kubernetes_code() {
    let kubernetes =
        |d: &str| d.starts_with("kube") || d.starts_with("k8s-openapi") || d == "mcp-gateway-crds";
    assert_absent("mcp-gateway-sidecar", kubernetes);
    assert_absent("mcp-gateway-contract", kubernetes);
}

#[test]
fn the_api_types_need_no_kubernetes_client() {
    assert_absent("mcp-gateway-crds", |d| {
        d == "kube-client" || d == "kube-runtime"
    });
}
