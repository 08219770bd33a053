//! The collector harness against the real OpenTelemetry Collector, without the sidecar: one
//! OTLP/HTTP JSON export of a parent and a child span comes back out of the file exporter
//! with its ids, link, names, kinds, status, resource and attributes.

use std::time::Duration;

use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::otel_collector::OtelCollector;
use serde_json::json;

const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const PARENT_ID: &str = "eee19b7ec3c1b173";
const CHILD_ID: &str = "eee19b7ec3c1b174";

#[tokio::test]
async fn collector_receives_otlp_http_json_and_the_harness_reads_it_back() {
    let dir = TempDir::new("otelcol");
    let collector = OtelCollector::start(dir.path()).expect("start the collector");
    assert!(collector.spans().expect("spans").is_empty());

    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "harness-selftest"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "selftest-scope", "version": "1.0"},
                "spans": [
                    {
                        "traceId": TRACE_ID,
                        "spanId": PARENT_ID,
                        "name": "POST /mcp",
                        "kind": 2,
                        "startTimeUnixNano": "1700000000000000000",
                        "endTimeUnixNano": "1700000000500000000",
                        "attributes": [
                            {"key": "http.request.method", "value": {"stringValue": "POST"}},
                            {"key": "http.response.status_code", "value": {"intValue": "200"}}
                        ],
                        "status": {"code": 1}
                    },
                    {
                        "traceId": TRACE_ID,
                        "spanId": CHILD_ID,
                        "parentSpanId": PARENT_ID,
                        "name": "upstream call",
                        "kind": 3,
                        "startTimeUnixNano": "1700000000100000000",
                        "endTimeUnixNano": "1700000000400000000",
                        "attributes": [
                            {"key": "retried", "value": {"boolValue": false}},
                            {"key": "ratio", "value": {"doubleValue": 0.25}},
                            {"key": "tags", "value": {"arrayValue": {"values": [
                                {"stringValue": "a"}, {"intValue": "7"}
                            ]}}}
                        ],
                        "status": {"code": 2, "message": "boom"}
                    }
                ]
            }]
        }]
    });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", collector.endpoint()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post to the collector");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "collector answered {status}: {text}");

    let spans = collector
        .wait_for_spans(|s| s.len() >= 2, Duration::from_secs(20))
        .await
        .expect("both spans written");
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let parent = spans
        .iter()
        .find(|s| s.span_id == PARENT_ID)
        .expect("parent");
    let child = spans.iter().find(|s| s.span_id == CHILD_ID).expect("child");

    assert_eq!(parent.trace_id, TRACE_ID);
    assert_eq!(child.trace_id, TRACE_ID);
    assert_eq!(parent.parent_span_id, "", "a root span has no parent");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(parent.name, "POST /mcp");
    assert_eq!(child.name, "upstream call");
    assert_eq!((parent.kind, child.kind), (2, 3));
    assert_eq!((parent.status_code, child.status_code), (1, 2));
    for span in [parent, child] {
        assert_eq!(span.service_name, "harness-selftest");
        assert_eq!(span.scope_name, "selftest-scope");
    }

    assert_eq!(parent.attr_str("http.request.method"), Some("POST"));
    assert_eq!(
        parent.attributes.get("http.response.status_code"),
        Some(&json!(200)),
        "intValue is a JSON string in OTLP; the harness gives a number"
    );
    assert_eq!(child.attributes.get("retried"), Some(&json!(false)));
    assert_eq!(child.attributes.get("ratio"), Some(&json!(0.25)));
    assert_eq!(child.attributes.get("tags"), Some(&json!(["a", 7])));
    assert_eq!(child.raw["status"]["message"], "boom");
    assert_eq!(child.raw["startTimeUnixNano"], "1700000000100000000");

    // What the file exporter writes is the OTLP JSON encoding: ids as lowercase hex.
    let line = std::fs::read_to_string(dir.path().join("spans.jsonl")).expect("spans file");
    assert!(
        line.contains(&format!(r#""traceId":"{TRACE_ID}""#)),
        "{line}"
    );
    assert!(
        line.contains(&format!(r#""parentSpanId":"{PARENT_ID}""#)),
        "{line}"
    );
    assert!(collector.log().contains("Everything is ready"));
}
