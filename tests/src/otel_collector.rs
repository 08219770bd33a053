//! A real OpenTelemetry Collector (`scripts/local-cluster otelcol-build`:
//! tools/control-plane/otelcol, the core OTLP receiver and the contrib file exporter) for the
//! tests that prove traces: it receives OTLP/HTTP (and gRPC) on 127.0.0.1 and writes what it
//! got as OTLP JSON lines to `dir/spans.jsonl`, which [`OtelCollector::spans`] reads back as a
//! flat list of [`Span`]s.
//!
//! The collector's own telemetry is off (no metrics listener, no trace or log export): it
//! never listens on or calls anything beyond the two loopback ports of its receiver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::Process;
use crate::workspace_root;

/// The file the file exporter writes, in the collector's directory.
pub const SPANS_FILE: &str = "spans.jsonl";
/// The collector's stderr (its JSON log lines), in the collector's directory.
pub const LOG_FILE: &str = "otelcol.log";
/// The log line the collector writes once every receiver and exporter has started.
const READY_MARKER: &str = "Everything is ready";

/// The cached collector binary (`scripts/local-cluster paths`).
fn binary() -> anyhow::Result<PathBuf> {
    let out = Command::new(workspace_root().join("scripts/local-cluster"))
        .arg("paths")
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|l| l.strip_prefix("OTELCOL="))
        .map(PathBuf::from)
        .context("OTELCOL not built: run scripts/local-cluster otelcol-build")
}

/// A free port on 127.0.0.1 (bound, then released for the collector to take).
fn free_port() -> anyhow::Result<u16> {
    let socket = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(socket.local_addr()?.port())
}

/// One span as the collector received it, flattened out of its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 lowercase hex digits (the OTLP JSON encoding of the 16-byte id).
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The OTLP `SpanKind` number: 0 unspecified, 1 internal, 2 server, 3 client,
    /// 4 producer, 5 consumer.
    pub kind: i64,
    /// The resource attribute `service.name`, or empty.
    pub service_name: String,
    /// The instrumentation scope's name, or empty.
    pub scope_name: String,
    /// The span's attributes with each OTLP `AnyValue` as a plain JSON value: a string,
    /// an integer (OTLP JSON writes `intValue` as a string), a bool, a float, an array,
    /// an object (`kvlistValue`), base64 text (`bytesValue`), or null (no value).
    pub attributes: BTreeMap<String, Value>,
    /// The OTLP `StatusCode` number: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
    /// The span's JSON as the file exporter wrote it.
    pub raw: Value,
}

impl Span {
    /// The attribute `key` as a string, if it is one.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

/// An OTLP `AnyValue` as a plain JSON value.
fn any_value(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return Value::Null;
    };
    if let Some(s) = obj.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = obj.get("intValue") {
        // A string in OTLP JSON (int64 as protobuf JSON writes it); a number is accepted too.
        return match i {
            Value::String(s) => s.parse::<i64>().map_or_else(|_| i.clone(), Value::from),
            other => other.clone(),
        };
    }
    if let Some(b) = obj.get("boolValue") {
        return b.clone();
    }
    if let Some(d) = obj.get("doubleValue") {
        return d.clone();
    }
    if let Some(bytes) = obj.get("bytesValue") {
        return bytes.clone();
    }
    if let Some(arr) = obj.get("arrayValue") {
        let values = arr["values"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        return Value::Array(values.iter().map(any_value).collect());
    }
    if let Some(kv) = obj.get("kvlistValue") {
        return Value::Object(attributes(&kv["values"]).into_iter().collect());
    }
    Value::Null
}

/// An OTLP `KeyValue` list as a map of plain JSON values.
fn attributes(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_string(), any_value(&kv["value"]))))
        .collect()
}

/// An OTLP JSON enum: a number, or (as some encoders write it) its name.
fn enum_number(v: &Value, names: &[&str]) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => names.iter().position(|n| n == s).map_or(0, |i| i as i64),
        _ => 0,
    }
}

const KIND_NAMES: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_NAMES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// The spans of one OTLP JSON `ExportTraceServiceRequest` (one line of the file exporter).
pub fn parse_line(line: &str) -> anyhow::Result<Vec<Span>> {
    let doc: Value = serde_json::from_str(line).context("an OTLP JSON line")?;
    let mut spans = Vec::new();
    for rs in doc["resourceSpans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let resource = attributes(&rs["resource"]["attributes"]);
        let service_name = resource
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for ss in rs["scopeSpans"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let scope_name = ss["scope"]["name"].as_str().unwrap_or_default();
            for span in ss["spans"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_string();
                spans.push(Span {
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_span_id: text("parentSpanId"),
                    name: text("name"),
                    kind: enum_number(&span["kind"], KIND_NAMES),
                    service_name: service_name.clone(),
                    scope_name: scope_name.to_string(),
                    attributes: attributes(&span["attributes"]),
                    status_code: enum_number(&span["status"]["code"], STATUS_NAMES),
                    raw: span.clone(),
                });
            }
        }
    }
    Ok(spans)
}

/// A running collector; killed when dropped.
pub struct OtelCollector {
    process: Process,
    http_port: u16,
    grpc_port: u16,
    dir: PathBuf,
}

impl OtelCollector {
    /// Writes its config into `dir` and starts it there (its log in `dir/otelcol.log`, the
    /// spans in `dir/spans.jsonl`); returns once both receiver ports accept connections.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = binary()?;
        // A port taken by someone else between our probe and the collector's bind makes it
        // exit at once: try again with new ports.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once(&binary, dir) {
                Ok(collector) => return Ok(collector),
                Err(e) => {
                    let log = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
                    if !log.contains("address already in use") {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("three tries"))
    }

    fn start_once(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let http_port = free_port()?;
        let grpc_port = free_port()?;
        let spans = dir.join(SPANS_FILE);
        let config = dir.join("otelcol.yaml");
        // JSON strings are valid YAML scalars, whatever the path holds.
        let spans_yaml = serde_json::to_string(&spans.display().to_string())?;
        std::fs::write(
            &config,
            format!(
                r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http_port}
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  file:
    path: {spans_yaml}
    format: json
    flush_interval: 100ms
service:
  telemetry:
    # No listener, reader or exporter of the collector's own: it calls nothing.
    metrics:
      level: none
    logs:
      level: info
      encoding: json
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
            ),
        )?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config=file:{}", config.display()))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_TRACES_EXPORTER")
            .env_remove("OTEL_METRICS_EXPORTER")
            .env_remove("OTEL_LOGS_EXPORTER");
        let (process, _ready) = Process::spawn_logging(
            "otelcol",
            command,
            &dir.join(LOG_FILE),
            READY_MARKER,
            Duration::from_secs(30),
        )?;
        let collector = Self {
            process,
            http_port,
            grpc_port,
            dir: dir.to_path_buf(),
        };
        // The ready line comes after the receivers' servers started; check the ports anyway.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = [http_port, grpc_port]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                return Ok(collector);
            }
            if Instant::now() > deadline {
                bail!(
                    "otelcol logged ready but its ports {http_port}, {grpc_port} do not accept connections:\n{}",
                    collector.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The OTLP/HTTP base URL (`http://127.0.0.1:<port>`); clients post to `/v1/traces`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The OTLP/gRPC endpoint (`http://127.0.0.1:<port>`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Every span written so far (a line the exporter is still writing is left for later).
    pub fn spans(&self) -> anyhow::Result<Vec<Span>> {
        let text = match std::fs::read_to_string(self.dir.join(SPANS_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context("read the collector's spans file"),
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let mut spans = Vec::new();
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            spans.extend(parse_line(line).with_context(|| format!("line: {line}"))?);
        }
        Ok(spans)
    }

    /// Polls [`Self::spans`] until `pred` holds for them, and returns them; fails after
    /// `timeout` with the spans it had and the collector's log.
    pub async fn wait_for_spans(
        &self,
        pred: impl Fn(&[Span]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Span>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans()?;
            if pred(&spans) {
                return Ok(spans);
            }
            if Instant::now() > deadline {
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "the collector's spans did not match within {timeout:?}; it has {} span(s): {names:?}\nlog:\n{}",
                    spans.len(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its stderr so far (JSON log lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(LOG_FILE)).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
