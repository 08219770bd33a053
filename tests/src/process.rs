//! Child processes that announce readiness with one JSON line on stdout and die with the
//! test: killed on drop, and (for the Node fixtures) exiting when their stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

pub struct Process {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Process {
    /// Starts `command`, waits (up to `timeout`) for its first stdout line that parses as
    /// JSON and returns it. Stderr goes to `stderr_to` if given, else is inherited.
    pub fn spawn_ready(
        name: &str,
        mut command: Command,
        stderr_to: Option<std::fs::File>,
        timeout: Duration,
    ) -> anyhow::Result<(Self, Value)> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        match stderr_to {
            Some(file) => command.stderr(file),
            None => command.stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().with_context(|| format!("start {name}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        Self::await_ready(child, stdin, &rx, timeout, || {
            format!("{name} did not become ready")
        })
    }

    /// Starts a process that logs a JSON line containing `marker` on stderr when ready
    /// (the sidecar): returns that line. The whole stderr is also copied to `log_path`.
    pub fn spawn_logging(
        name: &str,
        mut command: Command,
        log_path: &std::path::Path,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Self, Value)> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("start {name}"))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("piped stderr");
        let mut log = std::fs::File::create(log_path)?;
        let marker = marker.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains(&marker)
                    && let (Some(t), Ok(v)) = (tx.as_ref(), serde_json::from_str::<Value>(&line))
                {
                    let _ = t.send(v);
                    tx = None;
                }
            }
        });
        Self::await_ready(child, stdin, &rx, timeout, || {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            format!("{name} did not start; log:\n{log}")
        })
    }

    /// Waits for the ready line from `rx`; on timeout the child is killed (by drop) and the
    /// error says why, with its exit status.
    fn await_ready(
        child: Child,
        stdin: Option<ChildStdin>,
        rx: &std::sync::mpsc::Receiver<Value>,
        timeout: Duration,
        failure: impl FnOnce() -> String,
    ) -> anyhow::Result<(Self, Value)> {
        let mut process = Self {
            child,
            _stdin: stdin,
        };
        match rx.recv_timeout(timeout) {
            Ok(v) => Ok((process, v)),
            Err(_) => {
                let status = process.child.try_wait().ok().flatten();
                bail!(
                    "{} (within {timeout:?}; exit status: {status:?})",
                    failure()
                )
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory, open file descriptors and threads, from `/proc`.
    pub fn stats(&self) -> ProcStats {
        ProcStats::of(self.pid())
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc/<pid>` shows of a process's resources (Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStats {
    /// `VmRSS`, KiB.
    pub rss_kb: u64,
    /// Entries in `/proc/<pid>/fd`: sockets, files, epoll, pipes.
    pub fds: usize,
    /// `Threads`.
    pub threads: u64,
}

impl ProcStats {
    /// Zeros for a process that is gone.
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        Self {
            rss_kb: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
        }
    }
}
