//! mcp-gateway-contract: everything the operator renders and the sidecar reads, in one place,
//! so the two binaries cannot drift apart. Depends on neither the CRD types nor kube: the
//! operator maps its API types onto these, and the sidecar never links Kubernetes code.

pub mod config;
pub mod key_status;
pub mod keys_file;
pub mod observability;
pub mod paths;
