//! mcp-gateway-sidecar: an MCP auth proxy that keeps the Azure Functions system key
//! server-side. `proxy` holds the request path; the other modules are its parts.

pub mod auth;
pub mod backoff;
pub mod body;
pub mod caller_identity;
pub mod client_address;
pub mod code_param;
pub mod cors;
pub mod discovery;
pub mod dotnet_case;
pub mod facade;
pub mod fetch;
pub mod forward;
pub mod jws;
pub mod key;
pub mod log_format;
pub mod log_sink;
pub mod long_call;
pub mod mcp_peek;
pub mod metadata;
pub mod metrics;
pub mod polled_file;
pub mod proxy;
pub mod rate_limit;
pub mod request_id;
pub mod request_log;
pub mod response;
pub mod routes;
pub mod seal;
pub mod server;
pub mod session;
pub mod sse;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod tool_access;
pub mod tool_requests;
pub mod tools_list;
pub mod upstream;

/// The config is part of the contract with the operator, which renders it.
pub use mcp_gateway_contract::config;
