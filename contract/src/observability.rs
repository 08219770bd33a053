//! What the gateway tells an on-call engineer besides its request log: OpenTelemetry traces,
//! audit records, and who a client is when a proxy stands in front.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::ConfigError;

/// Traces and audit records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observability {
    /// OpenTelemetry traces over OTLP/HTTP. Absent: no traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
}

/// A span per request (the MCP method, the tool, the auth outcome) with the upstream call as
/// its child, and W3C `traceparent` sent to the Function so its own telemetry joins the trace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL, such as `http://otel-collector.monitoring:4318`;
    /// spans are posted to `<endpoint>/v1/traces` (as with `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Url,
    /// Share of new traces recorded, 0 to 1. Default 1. A trace the gateway continues
    /// (`trustIncomingTraceContext`) follows its parent's sampling decision.
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
    /// Continue a client's trace from its `traceparent`. Off by default: on a public endpoint
    /// anyone can send one, and a forged parent could force every request to be sampled or
    /// attach the gateway's spans to someone else's trace.
    #[serde(default)]
    pub trust_incoming_trace_context: bool,
    /// `service.name` of the gateway's spans. Default `mcp-gateway`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_sampling_ratio() -> f64 {
    1.0
}
fn default_service_name() -> String {
    "mcp-gateway".into()
}

/// One record per tool call and per refused request, in the log with `target` `audit`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// Default true.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Put a tool call's `arguments` (as the client sent them) in its record. Off by default:
    /// arguments may hold personal data or a user's secrets.
    #[serde(default)]
    pub include_arguments: bool,
}

fn enabled() -> bool {
    true
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            include_arguments: false,
        }
    }
}

/// The header a reverse proxy names the client in: Traefik, ingress-nginx, Envoy, Azure
/// Application Gateway and Front Door all append to it.
pub const DEFAULT_FORWARDED_HEADER: &str = "x-forwarded-for";

/// Who the client is when the gateway is behind proxies: their connections' addresses are
/// not the client's, and the address they append to the forwarded header is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAddress {
    /// Address ranges (CIDR, such as `10.244.0.0/16`, or single addresses) of the proxies in
    /// front of the gateway. Only a connection from one of them may say who the client is.
    pub trusted_proxies: Vec<String>,
    /// Default `x-forwarded-for`.
    #[serde(default = "default_forwarded_header")]
    pub header: String,
}

fn default_forwarded_header() -> String {
    DEFAULT_FORWARDED_HEADER.into()
}

impl Observability {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if let Some(tracing) = &self.tracing {
            let url = &tracing.otlp_endpoint;
            if !matches!(url.scheme(), "http" | "https")
                || url.host().is_none()
                || !url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return invalid(
                    "observability.tracing.otlpEndpoint must be an http(s) URL without credentials, query or fragment, such as http://otel-collector.monitoring:4318",
                );
            }
            if !(0.0..=1.0).contains(&tracing.sampling_ratio) {
                return invalid("observability.tracing.samplingRatio must be between 0 and 1");
            }
            // Characters, as the CRD's maxLength counts them.
            if tracing.service_name.is_empty() || tracing.service_name.chars().count() > 128 {
                return invalid("observability.tracing.serviceName must be 1-128 characters");
            }
        }
        Ok(())
    }
}

impl TracingConfig {
    /// Where spans are posted.
    pub fn traces_url(&self) -> String {
        let base = self.otlp_endpoint.as_str().trim_end_matches('/');
        format!("{base}/v1/traces")
    }
}

impl ClientAddress {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.trusted_proxies.is_empty() {
            return Err(ConfigError::Invalid(
                "clientAddress.trustedProxies needs at least one address range".into(),
            ));
        }
        if let Some(bad) = self
            .trusted_proxies
            .iter()
            .find(|c| parse_cidr(c).is_none())
        {
            return Err(ConfigError::Invalid(format!(
                "clientAddress.trustedProxies: {bad:?} is not an address range such as 10.0.0.0/8 or an address"
            )));
        }
        let header = self.header.to_ascii_lowercase();
        if http::HeaderName::from_bytes(header.as_bytes()).is_err()
            || matches!(
                header.as_str(),
                "authorization" | "host" | "cookie" | "content-type" | "content-length"
            )
        {
            return Err(ConfigError::Invalid(
                "clientAddress.header must be a header name such as x-forwarded-for".into(),
            ));
        }
        Ok(())
    }
}

/// An address range, `addr/len` or a bare address (its own range).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        // Digits only: `u8::from_str` would take `+8`.
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
            l.parse::<u8>().ok()?
        }
        Some(_) => return None,
        None => max,
    };
    (len <= max).then_some((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges_parse_strictly() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some(("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(
            parse_cidr("fd00::/64"),
            Some(("fd00::".parse().unwrap(), 64))
        );
        assert_eq!(
            parse_cidr("192.168.1.7"),
            Some(("192.168.1.7".parse().unwrap(), 32))
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "fd00::/129",
            "ten",
            "",
            "10.0.0/8",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn tracing_endpoints_are_checked_and_traces_go_to_v1_traces() {
        let mut o = Observability {
            tracing: Some(TracingConfig {
                otlp_endpoint: "http://collector.monitoring:4318/".parse().unwrap(),
                sampling_ratio: 0.25,
                trust_incoming_trace_context: false,
                service_name: "mcp-gateway".into(),
            }),
            audit: AuditConfig::default(),
        };
        o.validate().unwrap();
        let t = o.tracing.as_mut().unwrap();
        assert_eq!(t.traces_url(), "http://collector.monitoring:4318/v1/traces");
        t.otlp_endpoint = "http://user:pw@collector:4318".parse().unwrap();
        assert!(o.validate().is_err());
        let t = o.tracing.as_mut().unwrap();
        t.otlp_endpoint = "http://collector:4318".parse().unwrap();
        t.sampling_ratio = 1.5;
        assert!(o.validate().is_err());
    }

    #[test]
    fn client_address_needs_ranges_and_a_plain_header() {
        let mut c = ClientAddress {
            trusted_proxies: vec!["10.244.0.0/16".into()],
            header: DEFAULT_FORWARDED_HEADER.into(),
        };
        c.validate().unwrap();
        c.trusted_proxies.push("10.0.0.0/40".into());
        let error = c.validate().unwrap_err().to_string();
        assert!(error.contains("10.0.0.0/40"), "{error}");
        c.trusted_proxies.pop();
        c.header = "authorization".into();
        assert!(c.validate().is_err());
        c.trusted_proxies.clear();
        c.header = DEFAULT_FORWARDED_HEADER.into();
        assert!(c.validate().is_err());
    }
}
