//! mcp-gateway-sidecar: an MCP auth proxy that keeps the Azure Functions system key
//! server-side. `proxy` holds the request path; the other modules are its parts.

pub mod auth;
pub mod backoff;
pub mod body;
pub mod code_param;
pub mod cors;
pub mod discovery;
pub mod facade;
pub mod fetch;
pub mod forward;
pub mod key;
pub mod long_call;
pub mod mcp_peek;
pub mod metadata;
pub mod metrics;
pub mod polled_file;
pub mod proxy;
pub mod request_id;
pub mod response;
pub mod routes;
pub mod seal;
pub mod server;
pub mod session;
pub mod sse;
#[cfg(test)]
mod test_support;
pub mod upstream;

/// The config is part of the contract with the operator, which renders it.
pub use mcp_gateway_contract::config;
