//! OpenTelemetry traces: a server span per request, a client span per upstream attempt as its
//! child, and the child's W3C `traceparent` on the upstream request, so the Function's own
//! telemetry (Application Insights reads `traceparent`) joins the gateway's trace.
//!
//! The SDK batches spans on a thread of its own and exports them over OTLP/HTTP (protobuf)
//! through [`OtlpClient`], which runs each post on the sidecar's runtime with the sidecar's
//! HTTP client rules (trust roots, timeouts). Nothing here runs when tracing is off: the
//! gateway then holds no [`Tracing`], and requests no span.
//!
//! Spans carry what the request log carries (method, route, status, MCP method, tool, the
//! subject, the auth outcome) and never a header's value, a query, a token or the key.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};

use crate::config::TracingConfig;
use crate::fetch::{self, Redirects};

/// How long one export may take; the SDK drops the batch after it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (it is a few bytes of protobuf).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The W3C trace-context headers (and baggage, which rides with them), removed from what
/// goes upstream before the gateway's own are set: a client's never pass.
const TRACE_HEADERS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    trust_incoming: bool,
}

impl Tracing {
    /// Starts the exporter. Call on the runtime the exports should run on.
    pub fn start(config: &TracingConfig) -> Result<Self, String> {
        let client = OtlpClient {
            http: fetch::client(EXPORT_TIMEOUT, Redirects::Never),
            runtime: tokio::runtime::Handle::current(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(config.traces_url())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("mcp-gateway-sidecar");
        Ok(Self {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            trust_incoming: config.trust_incoming_trace_context,
        })
    }

    /// Exports what is buffered and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!(%error, "could not export the last spans");
        }
    }

    /// The span of a request that has just arrived.
    pub fn request_span(&self, name: String, headers: &HeaderMap) -> RequestSpan {
        let parent = if self.trust_incoming {
            self.propagator.extract(&HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        RequestSpan {
            cx: parent.with_span(span),
            tracer: self.tracer.clone(),
            propagator: self.propagator.clone(),
        }
    }
}

/// A request's span: attributes are added as the request goes, and it ends with the response.
#[derive(Clone)]
pub struct RequestSpan {
    cx: Context,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl RequestSpan {
    pub fn set(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.cx.span().set_attributes(attributes);
    }

    /// The trace's id (32 hex digits), for the log line; `None` when not sampled.
    pub fn trace_id(&self) -> Option<String> {
        let sc = self.cx.span().span_context().clone();
        sc.is_sampled().then(|| sc.trace_id().to_string())
    }

    pub fn end(&self, error: Option<&'static str>) {
        let span = self.cx.span();
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", error));
            span.set_status(Status::error(error));
        }
        span.end();
    }

    /// A child span for one upstream attempt; its `traceparent` goes into `headers`, which
    /// lose any the client sent.
    pub fn upstream_attempt(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
    ) -> UpstreamSpan {
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            // Scheme, authority and path: the query is not the gateway's to show.
            KeyValue::new(
                "url.full",
                format!(
                    "{}://{}{}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.authority().map_or("", |a| a.as_str()),
                    uri.path()
                ),
            ),
        ];
        if let Some(host) = uri.host() {
            attributes.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(port) = uri.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = self
            .tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.cx);
        let cx = self.cx.with_span(span);
        for name in TRACE_HEADERS {
            headers.remove(name);
        }
        self.propagator
            .inject_context(&cx, &mut HeaderInjector(headers));
        // The propagator writes `tracestate` even when it has nothing to say.
        if headers.get("tracestate").is_some_and(|v| v.is_empty()) {
            headers.remove("tracestate");
        }
        UpstreamSpan { cx }
    }
}

/// One upstream attempt's span, ended with its outcome.
pub struct UpstreamSpan {
    cx: Context,
}

impl UpstreamSpan {
    pub fn answered(self, status: u16) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(status.to_string()));
        }
        span.end();
    }

    pub fn failed(self, cause: &'static str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("error.type", cause));
        span.set_status(Status::error(cause));
        span.end();
    }
}

/// The exporter's HTTP client. The SDK exports from a thread of its own with a minimal
/// executor, where an async client has no reactor; each post is therefore spawned on the
/// sidecar's runtime and awaited from there.
#[derive(Debug)]
struct OtlpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let (parts, body) = request.into_parts();
        let task = self.runtime.spawn(async move {
            let mut response = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut answer = Response::builder().status(response.status());
            let mut read = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if read.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    break;
                }
                read.extend_from_slice(&chunk);
            }
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(read))?)
        });
        task.await?
    }
}
