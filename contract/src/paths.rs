//! Where the operator mounts things in the sidecar container, and the ports it listens on.
//! The operator writes these paths into the config and the Deployment; the sidecar's config
//! defaults use the same ports.

pub const KEY_DIR: &str = "/var/run/secrets/mcp-gateway/system-key";
pub const KEY_FILE_NAME: &str = "key";
pub const SESSION_DIR: &str = "/var/run/secrets/mcp-gateway/session";
pub const SESSION_FILE_NAME: &str = "keys";
pub const IDP_DIR: &str = "/var/run/secrets/mcp-gateway/idp";
pub const IDP_SECRET_FILE_NAME: &str = "client-secret";
pub const FACADE_DIR: &str = "/var/run/secrets/mcp-gateway/facade";
pub const FACADE_FILE_NAME: &str = "keys";
pub const CONFIG_DIR: &str = "/etc/mcp-gateway";
/// The `trustedCA` ConfigMap's key, mounted as one file (`trustedCaFile`).
pub const TRUSTED_CA_DIR: &str = "/etc/mcp-gateway-trust";
pub const TRUSTED_CA_FILE_NAME: &str = "ca.crt";
pub const CONFIG_FILE_NAME: &str = "config.yaml";
/// Where MCP clients connect (`listen`).
pub const PUBLIC_PORT: u16 = 8080;
/// Health, metrics and `/keyz` (`adminListen`).
pub const ADMIN_PORT: u16 = 9090;
