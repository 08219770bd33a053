//! mcp-gateway-sidecar: an MCP auth proxy that keeps the Azure Functions system key server-side.

pub mod auth;
pub mod config;
pub mod metrics;
pub mod session;
pub mod sse;
