//! Soak run (a benchmark, not a test): the real sidecar in front of the Functions host
//! stand-in with the OpenID provider, under mixed traffic at a bounded rate for a long time,
//! watching the sidecar's memory and file descriptors. `bench/soak` builds the release
//! binaries and runs this; see docs/benchmarks.md ("Soak").
//!
//! ```text
//! soak --sidecar <path to the release binary> [--duration 10m] [--rate 60] [--sample 10s]
//!      [--json <report file>]
//! ```
//!
//! Traffic, per tick of a fixed-rate clock (ticks that find the in-flight cap full are
//! skipped and counted, never queued):
//! - `call` / `call-stream`: Streamable HTTP `tools/call` (echo or add / a `slow_count` that
//!   streams 3 notifications 20 ms apart) on one of a pool of sessions, with a valid token;
//! - `init`: a new session (`initialize`), now and then;
//! - `sse-open` + `sse-message`: a legacy HTTP+SSE session: GET /sse, POST a `tools/call` to
//!   the endpoint it names, read the result event, leave;
//! - `expired`, `wrong-aud`, `garbage`: requests with tokens that must be refused (401).
//!
//! The stand-in marks its responses (`x-standin: 1`), so a 5xx is attributed to the upstream
//! or to the gateway. Every 10 s it samples the sidecar's VmRSS, fd count and threads from
//! `/proc`, and the `open_streams` gauge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::fixtures::{self, Idp, Standin};
use mcp_gateway_tests::process::ProcStats;
use mcp_gateway_tests::sidecar::{Sidecar, metric_value, public_listener};
use mcp_gateway_tests::stack::{ACCEPT, SCOPE, initialize_body, oidc_auth, system_key, tool_call};
use serde_json::{Value, json};

/// Most requests in flight at once; a tick that finds them all busy is skipped.
const MAX_IN_FLIGHT: usize = 256;
/// Sessions the `call` traffic is spread over (each bound to one token's subject).
const SESSIONS: usize = 8;
/// How long a request (or an SSE round trip) may take before it counts as `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    sidecar: std::path::PathBuf,
    duration: Duration,
    rate: u32,
    sample: Duration,
    json: Option<std::path::PathBuf>,
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = n.parse().with_context(|| format!("bad duration {s}"))?;
    Ok(Duration::from_secs(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("bad duration {s} (use 90s, 10m, 1h)"),
    }))
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        sidecar: std::path::PathBuf::new(),
        duration: Duration::from_secs(600),
        rate: 60,
        sample: Duration::from_secs(10),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--sidecar" => args.sidecar = value()?.into(),
            "--duration" => args.duration = parse_duration(&value()?)?,
            "--rate" => args.rate = value()?.parse().context("--rate N (requests/s)")?,
            "--sample" => args.sample = parse_duration(&value()?)?,
            "--json" => args.json = Some(value()?.into()),
            "-h" | "--help" => {
                println!(
                    "soak --sidecar <binary> [--duration 10m] [--rate 60] [--sample 10s] [--json <file>]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(
        args.sidecar.is_file(),
        "--sidecar <path to mcp-gateway-sidecar> is required"
    );
    anyhow::ensure!((1..=2000).contains(&args.rate), "--rate must be 1..=2000");
    Ok(args)
}

/// What one request came back as.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// An HTTP status; for a 5xx, whether the stand-in sent it (`x-standin`).
    Status { code: u16, from_upstream: bool },
    /// No response (connection error) or no answer within [`REQUEST_TIMEOUT`].
    Error(&'static str),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status {
                code,
                from_upstream: true,
            } if *code >= 500 => write!(f, "{code} (upstream)"),
            Outcome::Status { code, .. } if *code >= 500 => write!(f, "{code} (gateway)"),
            Outcome::Status { code, .. } => write!(f, "{code}"),
            Outcome::Error(what) => write!(f, "{what}"),
        }
    }
}

#[derive(Default)]
struct Tally {
    counts: BTreeMap<(&'static str, Outcome), u64>,
    latencies_ms: BTreeMap<&'static str, Vec<f32>>,
    /// Responses whose status was not the one the class expects.
    unexpected: BTreeMap<&'static str, u64>,
    skipped_ticks: u64,
}

struct Shared {
    http: reqwest::Client,
    base: String,
    valid: Vec<String>,
    expired: String,
    wrong_audience: String,
    sessions: Vec<(usize, String)>,
    tally: Mutex<Tally>,
    ids: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, class: &'static str, outcome: Outcome, expected: u16, started: Instant) {
        let mut t = self.tally.lock().unwrap();
        if !matches!(outcome, Outcome::Status { code, .. } if code == expected) {
            *t.unexpected.entry(class).or_default() += 1;
        }
        *t.counts.entry((class, outcome)).or_default() += 1;
        t.latencies_ms
            .entry(class)
            .or_default()
            .push(started.elapsed().as_secs_f32() * 1000.0);
    }

    fn mcp(&self, token: &str, session: Option<&str>, body: String) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .bearer_auth(token)
            .body(body);
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r
    }

    /// Sends, reads the whole body, and returns the outcome.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> (Outcome, String) {
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let r = request.send().await?;
            let code = r.status().as_u16();
            let from_upstream = r.headers().contains_key("x-standin");
            let body = r.text().await?;
            Ok::<_, reqwest::Error>((code, from_upstream, body))
        })
        .await;
        match sent {
            Err(_) => (Outcome::Error("timeout"), String::new()),
            Ok(Err(e)) if e.is_body() || e.is_decode() => {
                (Outcome::Error("body error"), String::new())
            }
            Ok(Err(_)) => (Outcome::Error("connection error"), String::new()),
            Ok(Ok((code, from_upstream, body))) => (
                Outcome::Status {
                    code,
                    from_upstream,
                },
                body,
            ),
        }
    }
}

/// One unit of traffic, chosen per tick from a fixed cycle of 20 (so the mix is exact).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Call,
    Init,
    Sse,
    Expired,
    WrongAudience,
    Garbage,
}

/// 20 ticks: 12 calls, 1 new session, 1 legacy SSE round trip (2 requests), 2 + 2 + 2
/// refused tokens.
const CYCLE: [Kind; 20] = {
    use Kind::*;
    [
        Call,
        Expired,
        Call,
        WrongAudience,
        Call,
        Garbage,
        Call,
        Sse,
        Call,
        Call,
        Expired,
        Call,
        WrongAudience,
        Call,
        Garbage,
        Call,
        Init,
        Call,
        Call,
        Call,
    ]
};

async fn run_one(shared: Arc<Shared>, kind: Kind, n: u64) {
    let started = Instant::now();
    match kind {
        Kind::Call => {
            let (subject, session) = &shared.sessions[(n as usize) % shared.sessions.len()];
            let token = &shared.valid[*subject];
            let id = shared.next_id();
            let (class, body) = match id % 4 {
                0 | 1 => (
                    "call",
                    tool_call(id, "echo", json!({"message": format!("soak {id}")})),
                ),
                2 => ("call", tool_call(id, "add", json!({"a": id, "b": 1}))),
                _ => (
                    "call-stream",
                    tool_call(id, "slow_count", json!({"n": 3, "delay_ms": 20})),
                ),
            };
            let (outcome, body) = shared
                .exchange(shared.mcp(token, Some(session), body))
                .await;
            let outcome = match outcome {
                // A 200 is only good if the result made it through the stream.
                Outcome::Status { code: 200, .. } if !body.contains(r#""result""#) => {
                    Outcome::Error("200 without result")
                }
                o => o,
            };
            shared.count(class, outcome, 200, started);
        }
        Kind::Init => {
            let token = &shared.valid[(n as usize) % shared.valid.len()];
            let (outcome, _) = shared
                .exchange(shared.mcp(token, None, initialize_body()))
                .await;
            shared.count("init", outcome, 200, started);
        }
        Kind::Expired | Kind::WrongAudience | Kind::Garbage => {
            let (class, token) = match kind {
                Kind::Expired => ("expired", shared.expired.as_str()),
                Kind::WrongAudience => ("wrong-aud", shared.wrong_audience.as_str()),
                _ => ("garbage", "not.a.jwt"),
            };
            let (outcome, _) = shared
                .exchange(shared.mcp(token, None, initialize_body()))
                .await;
            shared.count(class, outcome, 401, started);
        }
        Kind::Sse => sse_round_trip(&shared, n, started).await,
    }
}

/// Legacy HTTP+SSE: open the stream, post a call to the endpoint it names, read the result.
async fn sse_round_trip(shared: &Shared, n: u64, started: Instant) {
    let token = &shared.valid[(n as usize) % shared.valid.len()];
    let open = tokio::time::timeout(
        REQUEST_TIMEOUT,
        shared
            .http
            .get(format!("{}/sse", shared.base))
            .header("accept", "text/event-stream")
            .bearer_auth(token)
            .send(),
    )
    .await;
    let response = match open {
        Err(_) => return shared.count("sse-open", Outcome::Error("timeout"), 200, started),
        Ok(Err(_)) => {
            return shared.count("sse-open", Outcome::Error("connection error"), 200, started);
        }
        Ok(Ok(r)) => r,
    };
    let status = Outcome::Status {
        code: response.status().as_u16(),
        from_upstream: response.headers().contains_key("x-standin"),
    };
    if response.status() != 200 {
        return shared.count("sse-open", status, 200, started);
    }
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let id = shared.next_id();
    let mut posted = false;
    let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Err("stream error");
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
            if !posted
                && let Some(endpoint) = text
                    .split("\n\n")
                    .find(|e| e.starts_with("event: endpoint"))
                    .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            {
                posted = true;
                let post_started = Instant::now();
                let (outcome, _) = shared
                    .exchange(
                        shared
                            .http
                            .post(format!("{}{endpoint}", shared.base))
                            .header("content-type", "application/json")
                            .bearer_auth(token)
                            .body(tool_call(id, "echo", json!({"message": "over sse"}))),
                    )
                    .await;
                let accepted = matches!(outcome, Outcome::Status { code: 202, .. });
                shared.count("sse-message", outcome, 202, post_started);
                if !accepted {
                    return Err("message refused");
                }
            }
            if text.contains(&format!(r#""id":{id}"#)) {
                return Ok(());
            }
        }
        Err("stream ended")
    })
    .await;
    let outcome = match result {
        Ok(Ok(())) => status,
        Ok(Err(what)) => Outcome::Error(what),
        Err(_) => Outcome::Error("timeout"),
    };
    shared.count("sse-open", outcome, 200, started);
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    proc: ProcStats,
    open_streams: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = TempDir::new("soak");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, system_key("soak"))?;
    let standin = Standin::start(&key_file)?;
    let idp = Idp::start()?;
    let (listen, base) = public_listener();
    let config: Config = serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": standin.url},
        "systemKey": {"file": key_file},
        "auth": oidc_auth(&idp.issuer, &base),
    }))?;
    let sidecar = Sidecar::start_binary(&args.sidecar, config)?;
    sidecar.wait_ready().await?;
    let pid = sidecar.process.pid();
    let resource = format!("{base}/mcp");

    // Tokens: the expired one first (1 s lifetime; leeway 0).
    let expired = idp.token_with(&resource, SCOPE, "RS256", Some(1))?;
    let ttl = u32::try_from(args.duration.as_secs() + 3600).unwrap_or(u32::MAX);
    let valid = vec![
        idp.token_with(&resource, SCOPE, "RS256", Some(ttl))?,
        idp.token_with(&resource, SCOPE, "ES256", Some(ttl))?,
        idp.token_for(
            (fixtures::OTHER_CLIENT_ID, fixtures::OTHER_CLIENT_SECRET),
            &resource,
            SCOPE,
            "RS256",
            Some(ttl),
        )?,
    ];
    let wrong_audience = idp.token("https://other.example/mcp", SCOPE, "RS256")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()?;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let subject = i % valid.len();
        let r = http
            .post(&resource)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .bearer_auth(&valid[subject])
            .body(initialize_body())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "initialize: {}", r.status());
        let id = r.headers()["mcp-session-id"].to_str()?.to_string();
        let _ = r.bytes().await;
        sessions.push((subject, id));
    }
    // The 1-second token is accepted until its `exp` second is over (`exp` itself is still
    // valid to the JWT library): start only once the sidecar refuses it.
    let mut refused = false;
    for _ in 0..20 {
        let r = http
            .post(&resource)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .bearer_auth(&expired)
            .body(initialize_body())
            .send()
            .await?;
        if r.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(refused, "the expired token is still accepted");
    let shared = Arc::new(Shared {
        http,
        base: base.clone(),
        valid,
        expired,
        wrong_audience,
        sessions,
        tally: Mutex::new(Tally::default()),
        ids: 1000.into(),
    });

    eprintln!(
        "[soak] sidecar pid {pid}; {} at {} req/s ticks; sampling every {:?}",
        humanize(args.duration),
        args.rate,
        args.sample
    );
    let start = Instant::now();
    let mut samples = vec![Sample {
        at: Duration::ZERO,
        proc: ProcStats::of(pid),
        open_streams: sidecar.metric("mcp_gateway_open_streams").await?,
    }];
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sample =
        tokio::time::interval_at(tokio::time::Instant::now() + args.sample, args.sample);
    let mut n: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if start.elapsed() >= args.duration {
                    break;
                }
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    shared.tally.lock().unwrap().skipped_ticks += 1;
                    continue;
                };
                let kind = CYCLE[(n % CYCLE.len() as u64) as usize];
                let shared = shared.clone();
                tasks.spawn(async move {
                    run_one(shared, kind, n).await;
                    drop(permit);
                });
                n += 1;
            }
            _ = sample.tick() => {
                let s = Sample {
                    at: start.elapsed(),
                    proc: ProcStats::of(pid),
                    open_streams: sidecar.metric("mcp_gateway_open_streams").await.unwrap_or(-1.0),
                };
                if samples.len().is_multiple_of(6) {
                    eprintln!(
                        "[soak] {:>5}s rss {} KiB fds {} threads {} open_streams {}",
                        s.at.as_secs(), s.proc.rss_kb, s.proc.fds, s.proc.threads, s.open_streams
                    );
                }
                samples.push(s);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let elapsed = start.elapsed();
    while tasks.join_next().await.is_some() {}
    // The end state once the load is gone (streams the last requests opened have closed).
    let mut end = Sample {
        at: start.elapsed(),
        proc: ProcStats::of(pid),
        open_streams: sidecar.metric("mcp_gateway_open_streams").await?,
    };
    for _ in 0..50 {
        if end.open_streams == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        end.open_streams = sidecar.metric("mcp_gateway_open_streams").await?;
        end.proc = ProcStats::of(pid);
    }
    samples.push(end);

    let metrics = sidecar.metrics().await?;
    let standin_stats = standin.stats().await?;
    let logs = sidecar.logs();
    let report = report(
        &args,
        elapsed,
        n,
        &shared.tally.lock().unwrap(),
        &samples,
        &metrics,
        &standin_stats,
        &logs,
    );
    println!("{}", report.0);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.1)?)?;
    }
    Ok(())
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    elapsed: Duration,
    ticks: u64,
    tally: &Tally,
    samples: &[Sample],
    metrics: &str,
    standin_stats: &Value,
    logs: &str,
) -> (String, Value) {
    use std::fmt::Write;
    let mut out = String::new();
    let total: u64 = tally.counts.values().sum();
    let _ = writeln!(
        out,
        "soak: {} ({:.0} s), {} ticks at {} /s, {} requests ({:.1} req/s), {} ticks skipped (in-flight cap {})",
        humanize(args.duration),
        elapsed.as_secs_f64(),
        ticks,
        args.rate,
        total,
        total as f64 / elapsed.as_secs_f64(),
        tally.skipped_ticks,
        MAX_IN_FLIGHT
    );
    let _ = writeln!(out, "\nrequests by class and outcome:");
    let mut by_class = serde_json::Map::new();
    for ((class, outcome), count) in &tally.counts {
        let _ = writeln!(out, "  {class:<12} {:<16} {count}", outcome.to_string());
        by_class
            .entry(class.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap()
            .insert(outcome.to_string(), json!(count));
    }
    let _ = writeln!(
        out,
        "\nunexpected outcomes by class (status other than the class's expected one):"
    );
    if tally.unexpected.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (class, count) in &tally.unexpected {
        let _ = writeln!(out, "  {class:<12} {count}");
    }
    let gateway_5xx: u64 = tally
        .counts
        .iter()
        .filter(|((_, o), _)| matches!(o, Outcome::Status { code, from_upstream: false } if *code >= 500))
        .map(|(_, c)| c)
        .sum();
    let upstream_5xx: u64 = tally
        .counts
        .iter()
        .filter(|((_, o), _)| matches!(o, Outcome::Status { code, from_upstream: true } if *code >= 500))
        .map(|(_, c)| c)
        .sum();
    let _ = writeln!(
        out,
        "\n5xx from the gateway itself: {gateway_5xx}; 5xx passed through from the upstream: {upstream_5xx}"
    );
    let _ = writeln!(out, "\nlatency (client-side, ms) p50 / p99 / max:");
    let mut latency = serde_json::Map::new();
    for (class, values) in &tally.latencies_ms {
        let mut v = values.clone();
        v.sort_by(f32::total_cmp);
        let (p50, p99, max) = (
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v.last().copied().unwrap_or(0.0),
        );
        let _ = writeln!(out, "  {class:<12} {p50:>8.2} {p99:>8.2} {max:>8.2}");
        latency.insert(
            class.to_string(),
            json!({"p50": p50, "p99": p99, "max": max}),
        );
    }
    let first = samples.first().unwrap();
    let last = samples.last().unwrap();
    let max_rss = samples.iter().map(|s| s.proc.rss_kb).max().unwrap_or(0);
    let max_fds = samples.iter().map(|s| s.proc.fds).max().unwrap_or(0);
    let max_threads = samples.iter().map(|s| s.proc.threads).max().unwrap_or(0);
    let max_open = samples.iter().map(|s| s.open_streams).fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "\nsidecar (pid samples every {:?}, {} samples):",
        args.sample,
        samples.len()
    );
    let _ = writeln!(
        out,
        "  RSS KiB      start {:>7} end {:>7} max {:>7}",
        first.proc.rss_kb, last.proc.rss_kb, max_rss
    );
    let _ = writeln!(
        out,
        "  fds          start {:>7} end {:>7} max {:>7}",
        first.proc.fds, last.proc.fds, max_fds
    );
    let _ = writeln!(
        out,
        "  threads      start {:>7} end {:>7} max {:>7}",
        first.proc.threads, last.proc.threads, max_threads
    );
    let _ = writeln!(
        out,
        "  open_streams start {:>7} end {:>7} max {:>7}",
        first.open_streams, last.open_streams, max_open
    );
    // RSS over time, one value a minute, to see a trend rather than a point.
    let per_minute: Vec<String> = samples
        .iter()
        .filter(|s| s.at.as_secs() % 60 < args.sample.as_secs().max(1))
        .map(|s| format!("{}", s.proc.rss_kb))
        .collect();
    let _ = writeln!(out, "  RSS KiB by minute: {}", per_minute.join(" "));
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("mcp_gateway_requests_total")
                || l.starts_with("mcp_gateway_auth_failures_total")
                || l.starts_with("mcp_gateway_jwks_refreshes_total")
                || l.starts_with("mcp_gateway_upstream_key_rejections_total")
        })
        .collect();
    let _ = writeln!(out, "\nsidecar metrics at the end:");
    for l in &series {
        let _ = writeln!(out, "  {l}");
    }
    let _ = writeln!(out, "\nstand-in: {standin_stats}");
    let panics = logs.matches("panicked").count();
    let leaked = logs.contains("SYSKEY-") || logs.contains("eyJ");
    let warnings = logs
        .lines()
        .filter(|l| l.contains(r#""level":"WARN""#))
        .count();
    let errors = logs
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#))
        .count();
    let _ = writeln!(
        out,
        "sidecar log: {} lines, {warnings} WARN, {errors} ERROR, panics {panics}, key or token in logs: {leaked}",
        logs.lines().count()
    );
    let json = json!({
        "date": std::process::Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ").output().ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        "duration_s": elapsed.as_secs_f64(),
        "rate": args.rate,
        "requests": total,
        "skipped_ticks": tally.skipped_ticks,
        "by_class": by_class,
        "unexpected": tally.unexpected,
        "gateway_5xx": gateway_5xx,
        "upstream_5xx": upstream_5xx,
        "latency_ms": latency,
        "rss_kb": {"start": first.proc.rss_kb, "end": last.proc.rss_kb, "max": max_rss},
        "fds": {"start": first.proc.fds, "end": last.proc.fds, "max": max_fds},
        "threads": {"start": first.proc.threads, "end": last.proc.threads, "max": max_threads},
        "open_streams": {"start": first.open_streams, "end": last.open_streams, "max": max_open},
        "samples": samples.iter().map(|s| json!([s.at.as_secs(), s.proc.rss_kb, s.proc.fds, s.proc.threads, s.open_streams])).collect::<Vec<_>>(),
        "sidecar_open_streams_metric": metric_value(metrics, "mcp_gateway_open_streams"),
        "standin": standin_stats,
        "log": {"warn": warnings, "error": errors, "panics": panics, "leak": leaked},
    });
    (out, json)
}
