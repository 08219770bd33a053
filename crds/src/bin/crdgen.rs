//! Prints the McpGateway CRD, or with `--write` writes it to both places it is kept.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let yaml = mcp_gateway_crds::crd_yaml();
    if std::env::args().any(|a| a == "--write") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for path in mcp_gateway_crds::CRD_PATHS {
            std::fs::write(root.join(path), &yaml)?;
            eprintln!("wrote {path}");
        }
    } else {
        print!("{yaml}");
    }
    Ok(())
}
