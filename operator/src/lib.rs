//! mcp-gateway-operator: reconciles McpGateway resources into a deployed auth proxy.
//!
//! The pipeline, as in `reconcile.rs`: load → validate (`validate`) → build (`build`, pure)
//! → apply (server-side apply, owner references) → status (`conditions`).

pub mod build;
pub mod conditions;
pub mod controller;
pub mod health;
pub mod key_report;
pub mod metrics;
pub mod pods;
pub mod validate;

/// The field manager for every object the operator writes.
pub const MANAGER: &str = "mcp-gateway-operator";
