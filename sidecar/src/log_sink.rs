//! Where log lines go: a buffer in memory that a background thread writes out in batches.
//!
//! Why not `tracing_appender::non_blocking`: it hands every line to its writer thread over a
//! channel, so each line costs an allocation, a wake-up of that thread and, while the thread
//! waits for the next line, its spinning on `sched_yield`. With a log line per request that
//! was a large share of the proxy's own CPU (issue 17's profile). Here a line costs a lock
//! and a copy: the thread is woken once per batch, lets lines gather for [`BATCH_WINDOW`],
//! then writes them with one `write`. Nothing is dropped: once [`HIGH_WATER`] bytes are
//! waiting, the thread that adds a line writes the batch out itself, which slows logging
//! callers down rather than losing request records (as the non-lossy appender did).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long lines gather after the first of a batch arrives: a line reaches the output at
/// most this much (plus a write) after it was logged.
pub const BATCH_WINDOW: Duration = Duration::from_millis(1);
/// Waiting bytes at which the caller writes the batch out itself.
pub const HIGH_WATER: usize = 1 << 20;

struct Shared {
    /// Lines logged and not yet written, and whether the sink is closing.
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while a batch is taken and written, so that batches leave in order.
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain bytes behind: still fine to write.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes out whatever is waiting.
    fn flush(&self) {
        let mut out = lock(&self.out);
        let batch = std::mem::take(&mut lock(&self.pending).lines);
        if !batch.is_empty() {
            // Nowhere to report a failed write to: the log is the report.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
        }
    }
}

/// A [`MakeWriter`] for `tracing_subscriber::fmt` that batches lines; see the module docs.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Writes out what is still waiting and stops the sink's thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// A sink writing to `out` from a thread of its own.
    pub fn new(out: impl Write + Send + 'static) -> (LogSink, FlushGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            out: Mutex::new(Box::new(out)),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(&worker))
            .expect("spawn the log writer thread");
        let guard = FlushGuard {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        (LogSink { shared }, guard)
    }
}

fn write_batches(shared: &Shared) {
    loop {
        let closing = {
            let mut pending = lock(&shared.pending);
            while pending.lines.is_empty() && !pending.closing {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            pending.closing
        };
        if !closing {
            std::thread::sleep(BATCH_WINDOW);
        }
        shared.flush();
        if closing {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        lock(&self.shared.pending).closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines logged after the thread's last batch.
        self.shared.flush();
    }
}

/// One line's writer: `fmt` formats an event whole, then writes it with one `write_all`.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (first, full) = {
            let mut pending = lock(&self.shared.pending);
            let first = pending.lines.is_empty();
            pending.lines.extend_from_slice(buf);
            (first, pending.lines.len() >= HIGH_WATER)
        };
        if full {
            self.shared.flush();
        } else if first {
            // Later lines of the batch find it waiting: no wake-up for them.
            self.shared.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read, counting the writes it was given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut c = lock(&self.0);
            c.0.extend_from_slice(buf);
            c.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            lock(&self.0).1
        }
    }

    fn line(sink: &LogSink, text: &str) {
        sink.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_arrive_whole_and_in_order_in_few_writes() {
        let out = Captured::default();
        let (sink, guard) = LogSink::new(out.clone());
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for i in 0..1000 {
            line(&sink, &format!("line {i}\n"));
        }
        drop(guard);
        assert_eq!(out.text(), expected);
        assert!(
            out.writes() < 100,
            "1000 lines took {} writes",
            out.writes()
        );
    }

    #[test]
    fn a_line_is_written_soon_without_a_flush() {
        let out = Captured::default();
        let (sink, _guard) = LogSink::new(out.clone());
        line(&sink, "one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.text(), "one\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_caller_and_nothing_is_lost() {
        let out = Captured::default();
        let (sink, guard) = LogSink::new(out.clone());
        // Many threads at once, far more than HIGH_WATER in total.
        let lines_per_thread = 2000;
        let big = "x".repeat(1000);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (sink, big) = (&sink, &big);
                s.spawn(move || {
                    for i in 0..lines_per_thread {
                        line(sink, &format!("{t} {i} {big}\n"));
                    }
                });
            }
        });
        drop(guard);
        let text = out.text();
        assert_eq!(text.lines().count(), 4 * lines_per_thread);
        for t in 0..4 {
            // Each thread's lines, whole and in its order.
            let mine: Vec<usize> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .map(|l| {
                    assert!(l.ends_with(&big), "a line was cut");
                    l.split(' ').nth(1).unwrap().parse().unwrap()
                })
                .collect();
            assert_eq!(mine, (0..lines_per_thread).collect::<Vec<_>>());
        }
    }
}
