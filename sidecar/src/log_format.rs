//! What a log line looks like: one JSON object per event, `timestamp` (RFC 3339, UTC,
//! microseconds), `level`, the event's fields (`message` among them) at the top level, and
//! `target`; the shape `tracing_subscriber`'s `json().flatten_event(true)` writes.
//!
//! Why not that formatter: it serializes through an adaptor that turns each JSON token into a
//! separate UTF-8-checked `write_str`, about a hundred per request line, which made the
//! request log a fifth of the instructions the sidecar spends per proxied request (callgrind,
//! issue 17). Here the line is serialized into a thread's own buffer and handed over once.

use std::cell::RefCell;
use std::fmt;

use serde::ser::{SerializeMap, Serializer as _};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The sidecar's [`FormatEvent`]: see the module docs.
pub struct JsonLines;

thread_local! {
    static LINE: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        LINE.with_borrow_mut(|(line, timestamp)| {
            line.clear();
            timestamp.clear();
            SystemTime.format_time(&mut Writer::new(timestamp))?;
            serialize(line, timestamp, event).map_err(|_| fmt::Error)?;
            line.push(b'\n');
            // serde_json writes UTF-8 only: the check cannot fail, and is one pass.
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
        })
    }
}

fn serialize(line: &mut Vec<u8>, timestamp: &str, event: &Event<'_>) -> serde_json::Result<()> {
    let meta = event.metadata();
    let mut serializer = serde_json::Serializer::new(line);
    let mut map = (&mut serializer).serialize_map(None)?;
    map.serialize_entry("timestamp", timestamp)?;
    map.serialize_entry("level", meta.level().as_str())?;
    let mut fields = tracing_serde::SerdeMapVisitor::new(map);
    event.record(&mut fields);
    let mut map = fields.take_serializer()?;
    map.serialize_entry("target", meta.target())?;
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(log: impl FnOnce()) -> Vec<Value> {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    #[test]
    fn a_line_has_the_fields_at_the_top_level_with_time_level_and_target() {
        let client: std::net::SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let got = lines(|| {
            tracing::info!(
                route = "mcp",
                status = 200u16,
                latency_ms = 1.5,
                client = tracing::field::display(client),
                subject = Some("a \"quoted\"\nsubject"),
                missing = None::<&str>,
                "request"
            );
            tracing::warn!(cause = "refused", "upstream request failed");
        });
        assert_eq!(got.len(), 2);
        let line = &got[0];
        assert_eq!(line["message"], "request");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["route"], "mcp");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["client"], "127.0.0.1:4321");
        assert_eq!(line["subject"], "a \"quoted\"\nsubject");
        assert!(line.get("missing").is_none(), "{line}");
        assert_eq!(line["target"], module_path!());
        let ts = line["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
        assert_eq!(got[1]["level"], "WARN");
        assert_eq!(got[1]["cause"], "refused");
    }
}
