//! What is known of one request as it goes, and what is said of it once it is answered: the
//! request's log line, its span's attributes, and its audit records. Holds only what is safe
//! to say anywhere: no key, no token, no header value, no query.
//!
//! An audit record (`target` `audit`, `message` `audit`) is written for every `tools/call` (one
//! per call in a batch) and for every request the gateway refused (401, 403, 429, or a tool
//! the caller may not call); arguments only with `audit.includeArguments`, results never.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{Method, StatusCode};
use opentelemetry::KeyValue;
use serde_json::Value;

use crate::config::AuditConfig;
use crate::routes::Route;
use crate::telemetry::RequestSpan;

/// Reasons that are failures, not refusals: the upstream's or the request's. Every other
/// reason the gateway sets (an auth failure's, a policy's) is a refusal.
const FAILURE_REASONS: &[&str] = &[
    "upstream_timeout",
    "upstream_unreachable",
    "upstream_rejected_key",
    "app_service_auth",
    "no_system_key",
    "unreadable_json_rpc",
    "session_not_found",
    "client_gone",
];

/// Most audit records one request writes (a batch of calls): the rest are counted in the
/// last one, so a tiny-call batch cannot multiply the log.
const MAX_RECORDS: usize = 32;

#[derive(Clone)]
pub struct RequestLog {
    pub route: Route,
    pub method: Method,
    pub request_id: String,
    /// The connection's address.
    pub peer: Option<SocketAddr>,
    /// The client's address: the peer's, or the one a trusted proxy named.
    pub client: Option<IpAddr>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub oid: Option<String>,
    pub tenant: Option<String>,
    pub mcp_method: Option<String>,
    pub mcp_name: Option<String>,
    /// The body's `tools/call`s, when the gateway read them (tool rules, rate limits per tool,
    /// batches, or audit records with arguments).
    pub tools: Vec<ToolRecord>,
    /// Why the gateway answered itself: an auth failure's, a policy's or an upstream
    /// failure's reason.
    pub reason: Option<&'static str>,
    /// The request body was read whole (not logged: it decides `Connection: close`).
    pub body_read: bool,
    /// The gateway authenticates no one (auth mode Anonymous).
    pub anonymous: bool,
    /// The span and the audit records wait for the call's real outcome: a long call answered
    /// on the gateway's own stream (see [`RequestLog::finish`]).
    pub deferred: bool,
    pub span: Option<RequestSpan>,
}

#[derive(Clone)]
pub struct ToolRecord {
    pub name: String,
    pub arguments: Option<Value>,
}

impl RequestLog {
    pub fn new(route: Route, method: &Method) -> Self {
        Self {
            route,
            method: method.clone(),
            request_id: String::new(),
            peer: None,
            client: None,
            subject: None,
            client_id: None,
            oid: None,
            tenant: None,
            mcp_method: None,
            mcp_name: None,
            tools: Vec::new(),
            reason: None,
            body_read: false,
            anonymous: false,
            deferred: false,
            span: None,
        }
    }

    /// The log line, the span's last attributes and its end, and the audit records.
    pub fn emit(&self, status: StatusCode, elapsed: Duration, audit: &AuditConfig) {
        let trace_id = self.span.as_ref().and_then(RequestSpan::trace_id);
        tracing::info!(
            route = self.route.name(),
            http_method = self.method.as_str(),
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = self.request_id.as_str(),
            trace_id = trace_id.as_deref(),
            client = self.client.map(tracing::field::display),
            peer = self.peer.map(tracing::field::display),
            subject = self.subject.as_deref(),
            client_id = self.client_id.as_deref(),
            mcp_method = self.mcp_method.as_deref(),
            mcp_name = self.mcp_name.as_deref(),
            reason = self.reason,
            "request"
        );
        if !self.deferred {
            self.finish(status, elapsed, audit);
        }
    }

    /// The span's last attributes and its end, and the audit records: with the response, or
    /// for a deferred request when its outcome is known.
    pub fn finish(&self, status: StatusCode, elapsed: Duration, audit: &AuditConfig) {
        if let Some(span) = &self.span {
            self.finish_span(span, status);
        }
        if audit.enabled {
            let trace_id = self.span.as_ref().and_then(RequestSpan::trace_id);
            self.audit(
                status,
                elapsed,
                trace_id.as_deref(),
                audit.include_arguments,
            );
        }
    }

    fn finish_span(&self, span: &RequestSpan, status: StatusCode) {
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            KeyValue::new("mcp_gateway.route", self.route.name()),
            KeyValue::new("mcp_gateway.request_id", self.request_id.clone()),
        ];
        let text = |key: &'static str, value: &Option<String>| {
            value.as_ref().map(|v| KeyValue::new(key, v.clone()))
        };
        attributes.extend(
            self.client
                .map(|c| KeyValue::new("client.address", c.to_string())),
        );
        attributes.push(KeyValue::new(
            "http.request.method",
            self.method.to_string(),
        ));
        if !self.anonymous {
            attributes.extend(text("enduser.id", &self.subject));
        }
        attributes.extend(text("mcp_gateway.client_id", &self.client_id));
        attributes.extend(text("mcp.method.name", &self.mcp_method));
        if self.mcp_method.as_deref() == Some("tools/call") {
            attributes.extend(text("gen_ai.tool.name", &self.mcp_name));
        }
        attributes.push(KeyValue::new(
            "mcp_gateway.auth",
            match (&self.subject, self.reason) {
                (Some(_), _) if self.anonymous => "anonymous",
                (Some(_), _) => "authenticated",
                (None, Some(reason)) => reason,
                (None, None) => "none",
            },
        ));
        attributes.extend(self.reason.map(|r| KeyValue::new("mcp_gateway.reason", r)));
        span.set(attributes);
        // Server spans are errors for 5xx only; a refusal is the gateway doing its job.
        span.end(
            status
                .is_server_error()
                .then(|| self.reason.unwrap_or("server_error")),
        );
    }

    fn audit(
        &self,
        status: StatusCode,
        elapsed: Duration,
        trace_id: Option<&str>,
        arguments: bool,
    ) {
        let denied = self.reason.is_some_and(|r| !FAILURE_REASONS.contains(&r));
        let outcome = if denied {
            "denied"
        } else if status.is_server_error() || self.reason.is_some() {
            "failed"
        } else {
            "forwarded"
        };
        let peeked = (self.tools.is_empty() && self.mcp_method.as_deref() == Some("tools/call"))
            .then(|| self.mcp_name.as_deref().unwrap_or_default());
        let calls: Vec<(&str, Option<&Value>)> = if self.tools.is_empty() {
            peeked.map(|name| (name, None)).into_iter().collect()
        } else {
            self.tools
                .iter()
                .map(|t| (t.name.as_str(), t.arguments.as_ref()))
                .collect()
        };
        if calls.is_empty() && !denied {
            return;
        }
        let record = |tool: Option<&str>, args: Option<&Value>, more_calls: usize| {
            let args = args.filter(|_| arguments).map(Value::to_string);
            tracing::info!(
                target: "audit",
                event = if tool.is_some() { "tool_call" } else { "refused" },
                outcome,
                status = status.as_u16(),
                reason = self.reason,
                request_id = self.request_id.as_str(),
                trace_id,
                subject = self.subject.as_deref(),
                oid = self.oid.as_deref(),
                tenant = self.tenant.as_deref(),
                client_id = self.client_id.as_deref(),
                client = self.client.map(tracing::field::display),
                route = self.route.name(),
                http_method = self.method.as_str(),
                mcp_method = self.mcp_method.as_deref(),
                tool,
                arguments = args.as_deref(),
                more_calls = (more_calls > 0).then_some(more_calls),
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "audit"
            );
        };
        if calls.is_empty() {
            record(None, None, 0);
        }
        let more = calls.len().saturating_sub(MAX_RECORDS);
        for (i, (tool, args)) in calls.into_iter().take(MAX_RECORDS).enumerate() {
            record(
                Some(tool),
                args,
                if i + 1 == MAX_RECORDS { more } else { 0 },
            );
        }
    }
}

/// A request span's name: the HTTP method and the route (`POST /weather/mcp`), per the
/// HTTP semantic conventions; the method alone for paths that are no route.
pub fn span_name(method: &Method, route: Route, prefix: &str) -> String {
    match route {
        Route::Mcp | Route::Sse | Route::Message => {
            format!("{method} {prefix}/{}", route.name())
        }
        Route::NotFound => method.to_string(),
        other => format!("{method} {}", other.name()),
    }
}
