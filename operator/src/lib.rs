//! mcp-gateway-operator: reconciles McpGateway resources into a deployed auth proxy.
//!
//! The pipeline, as in `controller/`: load → validate (`validate`, `spec_checks`,
//! `annotations`) → claim the routes (`claims`) → render (`render`, pure) → apply
//! (server-side apply, owner references) → status (`conditions`).

pub mod annotations;
pub mod claims;
pub mod conditions;
pub mod controller;
pub mod health;
pub mod key_report;
pub mod metrics;
pub mod pods;
pub mod render;
pub mod route_status;
pub mod spec_checks;
pub mod validate;

/// The field manager for every object the operator writes.
pub const MANAGER: &str = "mcp-gateway-operator";
