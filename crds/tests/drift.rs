//! The committed CRD files must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_rust_types() {
    let expected = mcp_gateway_crds::crd_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in mcp_gateway_crds::CRD_PATHS {
        let actual = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| {
            panic!("{path}: {e}; run `cargo run -p mcp-gateway-crds --bin crdgen -- --write`")
        });
        assert!(
            actual == expected,
            "{path} differs from the Rust types; run `cargo run -p mcp-gateway-crds --bin crdgen -- --write`"
        );
    }
}
