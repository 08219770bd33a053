#!/usr/bin/env python3
"""The sidecar benchmark: the same load direct to a minimal fast upstream and through the
sidecar (OIDC JWT auth on), interleaved in one run. Started by bench/run (which builds the
release binaries first). Everything listens on and targets 127.0.0.1 only; every load run is
bounded in requests and time.

Reports: saturation throughput ratio through/direct; added p50/p99 latency at a fixed rate;
SSE time-to-first-event delta; sidecar RSS idle and with N open SSE streams; sidecar CPU
seconds per 10k requests.
"""

import argparse
import datetime
import json
import os
import platform
import re
import secrets
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sse  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_DIR = os.path.join(ROOT, "tests", "fixtures", "node")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
RELEASE = os.path.join(TARGET, "release")
MCP_PATH = "/runtime/webhooks/mcp"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
TICK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "ratio": 0.7,
    "added_p99_ms": 0.5,
    "idle_rss_mb": 15.0,
    "streams_rss_mb": 64.0,
}


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------

class Procs:
    def __init__(self, work):
        self.work = work
        self.started = []

    def spawn_ready(self, name, cmd, cwd=None, timeout=30.0, env=None):
        """Starts a fixture that prints one JSON ready line on stdout; stdin stays piped so
        it exits when we do."""
        err = open(os.path.join(self.work, f"{name}.log"), "wb")
        p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=err, env=env)
        self.started.append(p)
        deadline = time.time() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.time()
            if left <= 0 or p.poll() is not None:
                raise RuntimeError(f"{name} did not become ready; see {err.name}")
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                c = os.read(p.stdout.fileno(), 4096)
                if not c:
                    raise RuntimeError(f"{name} exited; see {err.name}")
                line += c
        return p, json.loads(line.split(b"\n")[0])

    def spawn(self, name, cmd, env=None):
        err = open(os.path.join(self.work, f"{name}.log"), "wb")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        self.started.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.started):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.started):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_ticks(pid):
    """utime+stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return None


def rss_mb(pid):
    return proc_status(pid, "VmRSS") / 1024.0


def busy_ticks():
    """All CPUs' busy time (user+nice+system+irq+softirq+steal), in ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def http(method, url, headers=None, body=None, timeout=5):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- statistics ------------------------------------------------------------------------

def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def med(xs):
    return statistics.median(xs)


# ---- load generators -------------------------------------------------------------------

WRK_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
done = function(summary, latency, requests)
  io.write(string.format('JSON {"requests":%%d,"duration_us":%%d,"status_errors":%%d,' ..
    '"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,"timeout_errors":%%d,' ..
    '"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
""" % BODY.decode()


class Bench:
    def __init__(self, args, work):
        self.a = args
        self.work = work
        self.procs = Procs(work)
        self.raw = {"saturation": [], "latency": [], "cpu": [], "sse": {}, "rss": {}}
        self.loadgen_prefix = ["taskset", "-c", "0"] if args.pin else []
        self.server_prefix = ["taskset", "-c", "1"] if args.pin else []

    # -- setup ---------------------------------------------------------------------------

    def start(self):
        a = self.a
        node22 = os.path.join(NODE_DIR, "bin", "node22")
        node = node22 if os.path.exists(node22) else "node"
        log("starting the oidc-provider fixture")
        self.idp, ready = self.procs.spawn_ready(
            "oidc-provider", [node, "oidc-provider.mjs", "--port", "0",
                              "--access-token-ttl", "86400"], cwd=NODE_DIR)
        self.issuer = ready["issuer"]

        self.key = "bench-" + secrets.token_hex(16)
        log("starting fast-upstream")
        self.upstream, ready = self.procs.spawn_ready(
            "fast-upstream", self.server_prefix + [
                os.path.join(RELEASE, "fast-upstream"), "--port", "0", "--key", self.key,
                "--threads", str(a.upstream_threads)])
        self.up_port = ready["port"]

        self.sc_port, admin_port = free_port(), free_port()
        self.sc_url = f"http://127.0.0.1:{self.sc_port}"
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        resource = f"{self.sc_url}/mcp"
        log("minting one RS256 token (24 h TTL)")
        out = subprocess.run(
            ["node", "mint-token.mjs", "--issuer", self.issuer, "--client-id", "mcp-test",
             "--client-secret", "test-secret", "--resource", resource, "--scope", "mcp:tools",
             "--alg", "RS256", "--ttl", "86400"],
            cwd=NODE_DIR, capture_output=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"mint-token failed: {out.stderr.decode()}")
        self.token = out.stdout.decode().strip()

        key_file = os.path.join(self.work, "system-key")
        with open(key_file, "w") as f:
            f.write(self.key)
        config = {
            "listen": f"127.0.0.1:{self.sc_port}",
            "adminListen": f"127.0.0.1:{admin_port}",
            "publicBaseUrl": self.sc_url,
            "pathPrefix": "/",
            "upstream": {"url": f"http://127.0.0.1:{self.up_port}", "path": MCP_PATH,
                         "transports": ["StreamableHttp", "Sse"]},
            "systemKey": {"file": key_file, "header": "x-functions-key"},
            "auth": {"mode": "Oidc", "issuer": self.issuer, "audiences": [resource],
                     "requiredScopes": ["mcp:tools"]},
        }
        self.config_path = os.path.join(self.work, "sidecar.yaml")
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)  # JSON is YAML
        log(f"starting the sidecar (release, MCP_GATEWAY_LOG={a.log_level})")
        env = dict(os.environ, MCP_GATEWAY_LOG=a.log_level)
        for kv in a.sidecar_env:  # experiments without code changes, e.g.
            k, _, v = kv.partition("=")  # TOKIO_WORKER_THREADS=1, LD_PRELOAD=...jemalloc
            env[k] = v
        self.sidecar = self.procs.spawn(
            "sidecar", self.server_prefix + [os.path.join(RELEASE, "mcp-gateway-sidecar"),
                                             "--config", self.config_path], env=env)
        deadline = time.time() + 30
        while True:
            try:
                if http("GET", f"{self.admin_url}/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or self.sidecar.poll() is not None:
                raise RuntimeError("sidecar never became ready; see sidecar.log")
            time.sleep(0.05)
        time.sleep(1.0)
        self.raw["rss"]["idle_after_start_mb"] = rss_mb(self.sidecar.pid)
        self.raw["rss"]["upstream_idle_mb"] = rss_mb(self.upstream.pid)

        self.direct_url = f"http://127.0.0.1:{self.up_port}{MCP_PATH}"
        self.through_url = f"{self.sc_url}/mcp"
        self.direct_hdr = ("x-functions-key", self.key)
        self.through_hdr = ("Authorization", f"Bearer {self.token}")
        # Sanity: both answer 200 with the JSON-RPC result; no token → 401.
        hdr = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
        for name, url, h in [("direct", self.direct_url, self.direct_hdr),
                             ("through", self.through_url, self.through_hdr)]:
            st, body = http("POST", url, dict(hdr, **{h[0]: h[1]}), BODY)
            if st != 200 or b'"result"' not in body:
                raise RuntimeError(f"{name} sanity request got {st}: {body[:200]!r}")
        st, _ = http("POST", self.through_url, hdr, BODY)
        if st != 401:
            raise RuntimeError(f"through without a token got {st}, expected 401")
        log("ready: direct and through answer 200; no token answers 401")

    # -- measurements --------------------------------------------------------------------

    def _measured(self, cmd, timeout):
        """Runs a load generator; returns (stdout, its CPU secs, sidecar ticks, upstream
        ticks, all-CPU busy ticks, wall secs)."""
        sc0, up0, b0 = proc_ticks(self.sidecar.pid), proc_ticks(self.upstream.pid), busy_ticks()
        t0 = time.perf_counter()
        p = subprocess.Popen(self.loadgen_prefix + cmd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        wall = time.perf_counter() - t0
        ru = p.returncode  # noqa: F841 (communicate already reaped it)
        sc1, up1, b1 = proc_ticks(self.sidecar.pid), proc_ticks(self.upstream.pid), busy_ticks()
        return out.decode(errors="replace"), sc1 - sc0, up1 - up0, b1 - b0, wall

    def _wrk(self, url, header):
        lua = os.path.join(self.work, "post.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA)
        a = self.a
        cmd = ["wrk", f"-t{a.wrk_threads}", f"-c{a.conns}", f"-d{a.duration}s",
               "--timeout", "5s", "-s", lua, "-H", f"{header[0]}: {header[1]}", url]
        out, sc, up, busy, wall = self._measured(cmd, a.duration + 30)
        m = re.search(r"^JSON (\{.*\})$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk output not understood:\n{out}")
        r = json.loads(m.group(1))
        errors = sum(r[k] for k in r if k.endswith("_errors"))
        if errors:
            raise RuntimeError(f"wrk saw {errors} errors/non-2xx against {url}:\n{out}")
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r.update(sidecar_ticks=sc, upstream_ticks=up, busy_ticks=busy, wall=wall)
        return r

    def saturation(self):
        a = self.a
        log(f"saturation: wrk -t{a.wrk_threads} -c{a.conns} -d{a.duration}s, "
            f"{a.rounds} rounds, direct/through alternating")
        for i in range(a.rounds):
            order = ["direct", "through"] if i % 2 == 0 else ["through", "direct"]
            row = {"round": i + 1, "loadavg": open("/proc/loadavg").read().split()[0]}
            for kind in order:
                url, hdr = ((self.direct_url, self.direct_hdr) if kind == "direct"
                            else (self.through_url, self.through_hdr))
                row[kind] = self._wrk(url, hdr)
            row["ratio"] = row["through"]["rps"] / row["direct"]["rps"]
            log(f"  round {i + 1}: direct {row['direct']['rps']:.0f} rps, "
                f"through {row['through']['rps']:.0f} rps, ratio {row['ratio']:.3f}")
            self.raw["saturation"].append(row)

    def _oha(self, url, header):
        a = self.a
        body = os.path.join(self.work, "body.json")
        with open(body, "wb") as f:
            f.write(BODY)
        cmd = ["oha", "--no-tui", "--output-format", "json", "-n", str(a.rate * a.rate_duration),
               "-q", str(a.rate), "-c", str(a.rate_conns), "--latency-correction",
               "-m", "POST", "-D", body, "-T", "application/json",
               "-H", "Accept: application/json, text/event-stream",
               "-H", f"{header[0]}: {header[1]}", url]
        out, sc, up, busy, wall = self._measured(cmd, a.rate_duration + 30)
        j = json.loads(out[out.index("{"):])
        codes = j.get("statusCodeDistribution", {})
        bad = {k: v for k, v in codes.items() if not k.startswith("2")}
        if bad or j.get("errorDistribution"):
            raise RuntimeError(f"oha saw errors against {url}: {bad} {j.get('errorDistribution')}")
        pcts = j["latencyPercentiles"]
        n = sum(codes.values())
        return {"requests": n, "rps": j["summary"]["requestsPerSec"],
                "p50_ms": pcts["p50"] * 1000, "p99_ms": pcts["p99"] * 1000,
                "p999_ms": pcts.get("p99.9", pcts["p99"]) * 1000,
                "mean_ms": j["summary"]["average"] * 1000,
                "sidecar_ticks": sc, "upstream_ticks": up, "busy_ticks": busy, "wall": wall}

    def latency(self):
        a = self.a
        if not shutil.which("oha"):
            log("latency: oha not found; skipped (wrk cannot hold a fixed rate)")
            self.raw["latency_skipped"] = "oha not installed"
            return
        log(f"latency: oha -q {a.rate} -c {a.rate_conns} -n {a.rate * a.rate_duration} "
            f"--latency-correction, {a.rounds} rounds alternating")
        for i in range(a.rounds):
            order = ["direct", "through"] if i % 2 == 0 else ["through", "direct"]
            row = {"round": i + 1}
            for kind in order:
                url, hdr = ((self.direct_url, self.direct_hdr) if kind == "direct"
                            else (self.through_url, self.through_hdr))
                row[kind] = self._oha(url, hdr)
            for q in ("p50_ms", "p99_ms"):
                row["added_" + q] = row["through"][q] - row["direct"][q]
            log(f"  round {i + 1}: p50 {row['direct']['p50_ms']:.3f} → "
                f"{row['through']['p50_ms']:.3f} ms, p99 {row['direct']['p99_ms']:.3f} → "
                f"{row['through']['p99_ms']:.3f} ms")
            self.raw["latency"].append(row)

    def cpu(self):
        """Sidecar CPU for a fixed number of requests (h2load, HTTP/1.1, keep-alive)."""
        a = self.a
        body = os.path.join(self.work, "body.json")
        with open(body, "wb") as f:
            f.write(BODY)
        log(f"cpu: h2load --h1 -n {a.cpu_requests} -c {a.conns}, direct then through, "
            f"{a.cpu_rounds} rounds")
        for i in range(a.cpu_rounds):
            row = {"round": i + 1}
            for kind in (["direct", "through"] if i % 2 == 0 else ["through", "direct"]):
                url, hdr = ((self.direct_url, self.direct_hdr) if kind == "direct"
                            else (self.through_url, self.through_hdr))
                cmd = ["h2load", "--h1", "-n", str(a.cpu_requests), "-c", str(a.conns),
                       "-d", body, "-H", "content-type: application/json",
                       "-H", "accept: application/json, text/event-stream",
                       "-H", f"{hdr[0]}: {hdr[1]}", url]
                out, sc, up, busy, wall = self._measured(cmd, 120)
                m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded",
                              out)
                codes = re.search(r"status codes: (\d+) 2xx", out)
                if not m or not codes or int(codes.group(1)) != a.cpu_requests:
                    raise RuntimeError(f"h2load run not clean against {url}:\n{out}")
                row[kind] = {"requests": int(codes.group(1)), "sidecar_ticks": sc,
                             "upstream_ticks": up, "busy_ticks": busy, "wall": wall}
            self.raw["cpu"].append(row)
            t = row["through"]
            log(f"  round {i + 1}: sidecar {t['sidecar_ticks'] / TICK:.2f} s CPU for "
                f"{t['requests']} requests")

    def sse_ttfe(self):
        a = self.a
        log(f"sse: time to first event, {a.sse_n} sequential GETs each, alternating")
        targets = {
            "direct": (self.up_port, MCP_PATH + "/sse", {self.direct_hdr[0]: self.direct_hdr[1]}),
            "through": (self.sc_port, "/sse", {self.through_hdr[0]: self.through_hdr[1]}),
        }
        times, samples = sse.ttfe(targets, a.sse_n)
        through_event = samples["through"]
        ok = b"data: /message?" in through_event and self.key.encode() not in through_event
        if not ok:
            raise RuntimeError(f"through SSE endpoint event not rewritten: {through_event!r}")
        res = {}
        for k, v in times.items():
            res[k] = {"p50_ms": med(v) * 1000, "p99_ms": pct(v, 99) * 1000,
                      "min_ms": min(v) * 1000}
        res["added_p50_ms"] = res["through"]["p50_ms"] - res["direct"]["p50_ms"]
        res["added_p99_ms"] = res["through"]["p99_ms"] - res["direct"]["p99_ms"]
        self.raw["sse"] = res
        log(f"  p50 {res['direct']['p50_ms']:.3f} → {res['through']['p50_ms']:.3f} ms")

    def streams_rss(self):
        a = self.a
        pid, up = self.sidecar.pid, self.upstream.pid
        self.raw["rss"]["idle_before_streams_mb"] = rss_mb(pid)
        log(f"rss: holding {a.streams} SSE streams through the sidecar")

        def while_open(n):
            st, metrics = http("GET", f"{self.admin_url}/metrics")
            gauge = None
            for line in metrics.decode().splitlines():
                if re.match(r"^\S*open_streams\S*\s", line):
                    gauge = float(line.split()[-1])
            return {"sidecar_rss_mb": rss_mb(pid), "sidecar_hwm_mb": proc_status(pid, "VmHWM") / 1024,
                    "upstream_rss_mb": rss_mb(up), "open_streams_gauge": gauge,
                    "sidecar_fds": len(os.listdir(f"/proc/{pid}/fd"))}

        res = sse.hold(self.sc_port, "/sse", {self.through_hdr[0]: self.through_hdr[1]},
                       a.streams, while_open)
        if res["opened"] != a.streams:
            raise RuntimeError(f"only {res['opened']} of {a.streams} streams opened: {res}")
        time.sleep(2.0)
        res["sidecar_rss_after_close_mb"] = rss_mb(pid)
        self.raw["rss"]["streams"] = res
        w = res["while_open"]
        log(f"  {res['opened']} open: sidecar RSS {w['sidecar_rss_mb']:.1f} MB "
            f"(gauge {w['open_streams_gauge']})")

    # -- report --------------------------------------------------------------------------

    def summary(self):
        r = self.raw
        s = {}
        sat = r["saturation"]
        if not sat:  # phase skipped (--only): fill with NaN so the report still renders
            nan = float("nan")
            for k in ("ratio_median", "ratio_min", "ratio_max", "direct_rps_median",
                      "through_rps_median", "sat_cpu_per_10k", "sat_upstream_cpu_per_10k",
                      "sat_busy_cores"):
                s[k] = nan
            sat = None
        ratios = [x["ratio"] for x in sat] if sat else [float("nan")]
        if sat:
            s["ratio_median"] = med(ratios)
            s["ratio_min"], s["ratio_max"] = min(ratios), max(ratios)
            s["direct_rps_median"] = med([x["direct"]["rps"] for x in sat])
            s["through_rps_median"] = med([x["through"]["rps"] for x in sat])
            s["sat_cpu_per_10k"] = med([x["through"]["sidecar_ticks"] / TICK /
                                        x["through"]["requests"] * 1e4 for x in sat])
            s["sat_upstream_cpu_per_10k"] = med([x["direct"]["upstream_ticks"] / TICK /
                                                 x["direct"]["requests"] * 1e4 for x in sat])
            s["sat_busy_cores"] = med([x[k]["busy_ticks"] / TICK / x[k]["wall"]
                                       for x in sat for k in ("direct", "through")])
        if r["latency"]:
            lat = r["latency"]
            for q in ("p50_ms", "p99_ms"):
                s["direct_" + q] = med([x["direct"][q] for x in lat])
                s["through_" + q] = med([x["through"][q] for x in lat])
                s["added_" + q] = med([x["added_" + q] for x in lat])
                s["added_%s_min" % q] = min(x["added_" + q] for x in lat)
                s["added_%s_max" % q] = max(x["added_" + q] for x in lat)
            s["rate_cpu_per_10k"] = med([x["through"]["sidecar_ticks"] / TICK /
                                         x["through"]["requests"] * 1e4 for x in lat])
            s["rate_achieved_through"] = med([x["through"]["rps"] for x in lat])
        if r["cpu"]:
            s["cpu_per_10k"] = med([x["through"]["sidecar_ticks"] / TICK /
                                    x["through"]["requests"] * 1e4 for x in r["cpu"]])
            s["cpu_upstream_per_10k"] = med([x["direct"]["upstream_ticks"] / TICK /
                                             x["direct"]["requests"] * 1e4 for x in r["cpu"]])
        return s

    def report(self, s, command, started):
        r, a = self.raw, self.a
        ok = lambda cond: "met" if cond else "**MISSED**"  # noqa: E731
        L = []
        L.append(f"# Sidecar benchmark, {started}\n")
        L.append(f"Command: `{command}`\n")
        L.append(f"Machine: {machine()}\n")
        L.append(f"Settings: {json.dumps(vars(a))}\n")
        L.append("## Summary\n")
        L.append("| measure | direct | through | result | target | |")
        L.append("|---|---|---|---|---|---|")
        L.append(f"| saturation throughput (rps, median of {len(r['saturation'])}) | "
                 f"{s['direct_rps_median']:.0f} | {s['through_rps_median']:.0f} | ratio "
                 f"{s['ratio_median']:.3f} (range {s['ratio_min']:.3f}–{s['ratio_max']:.3f}) | "
                 f"≥ {TARGETS['ratio']} | {ok(s['ratio_median'] >= TARGETS['ratio'])} |")
        if r["latency"]:
            L.append(f"| p50 at {a.rate} rps (ms) | {s['direct_p50_ms']:.3f} | "
                     f"{s['through_p50_ms']:.3f} | +{s['added_p50_ms']:.3f} ms | | |")
            L.append(f"| p99 at {a.rate} rps (ms) | {s['direct_p99_ms']:.3f} | "
                     f"{s['through_p99_ms']:.3f} | +{s['added_p99_ms']:.3f} ms (range "
                     f"{s['added_p99_ms_min']:+.3f}…{s['added_p99_ms_max']:+.3f}) | "
                     f"≤ +{TARGETS['added_p99_ms']} ms | "
                     f"{ok(s['added_p99_ms'] <= TARGETS['added_p99_ms'])} |")
        else:
            L.append(f"| latency at {a.rate} rps | – | – | not measured: {r.get('latency_skipped')} | "
                     f"≤ +{TARGETS['added_p99_ms']} ms p99 | not measured |")
        e = r["sse"]
        if e:
          L.append(f"| SSE time to first event p50 (ms, n={a.sse_n}) | {e['direct']['p50_ms']:.3f} | "
                 f"{e['through']['p50_ms']:.3f} | +{e['added_p50_ms']:.3f} ms | | |")
          L.append(f"| SSE time to first event p99 (ms) | {e['direct']['p99_ms']:.3f} | "
                 f"{e['through']['p99_ms']:.3f} | +{e['added_p99_ms']:.3f} ms | | |")
        rss = r["rss"]
        L.append(f"| sidecar RSS idle after start (MB) | | {rss['idle_after_start_mb']:.1f} | | "
                 f"≤ {TARGETS['idle_rss_mb']:.0f} MB | "
                 f"{ok(rss['idle_after_start_mb'] <= TARGETS['idle_rss_mb'])} |")
        if "streams" in rss:
            w = rss["streams"]["while_open"]
            L.append(f"| sidecar RSS with {a.streams} open SSE streams (MB) | | "
                     f"{w['sidecar_rss_mb']:.1f} | gauge {w['open_streams_gauge']:.0f}, "
                     f"{w['sidecar_fds']} fds | ≤ {TARGETS['streams_rss_mb']:.0f} MB | "
                     f"{ok(w['sidecar_rss_mb'] <= TARGETS['streams_rss_mb'])} |")
            L.append(f"| sidecar RSS idle after load, streams closed (MB) | | "
                     f"{rss['streams']['sidecar_rss_after_close_mb']:.1f} | | | |")
        if "cpu_per_10k" in s:
            L.append(f"| CPU s per 10k requests, h2load -n {a.cpu_requests} -c {a.conns} | "
                     f"{s['cpu_upstream_per_10k']:.3f} (upstream) | {s['cpu_per_10k']:.3f} "
                     f"(sidecar) | | | |")
        L.append(f"| CPU s per 10k requests at saturation (wrk) | "
                 f"{s['sat_upstream_cpu_per_10k']:.3f} (upstream) | {s['sat_cpu_per_10k']:.3f} "
                 f"(sidecar) | | | |")
        if "rate_cpu_per_10k" in s:
            L.append(f"| CPU s per 10k requests at {a.rate} rps | | "
                     f"{s['rate_cpu_per_10k']:.3f} (sidecar) | | | |")
        L.append("")
        L.append(f"Median CPU cores busy machine-wide during the saturation runs: "
                 f"{s['sat_busy_cores']:.2f} of {os.cpu_count()}.\n")
        L.append("## Rounds\n")
        L.append("| round | loadavg | direct rps | through rps | ratio | direct p99 (wrk, ms) | "
                 "through p99 (wrk, ms) | busy cores d/t |")
        L.append("|---|---|---|---|---|---|---|---|")
        for x in r["saturation"]:
            d, t = x["direct"], x["through"]
            L.append(f"| {x['round']} | {x['loadavg']} | {d['rps']:.0f} | {t['rps']:.0f} | "
                     f"{x['ratio']:.3f} | {d['p99_us'] / 1000:.2f} | {t['p99_us'] / 1000:.2f} | "
                     f"{d['busy_ticks'] / TICK / d['wall']:.2f}/"
                     f"{t['busy_ticks'] / TICK / t['wall']:.2f} |")
        if r["latency"]:
            L.append("")
            L.append("| round | direct p50 | through p50 | direct p99 | through p99 | "
                     "added p99 | direct p99.9 | through p99.9 | achieved rps d/t |")
            L.append("|---|---|---|---|---|---|---|---|---|")
            for x in r["latency"]:
                d, t = x["direct"], x["through"]
                L.append(f"| {x['round']} | {d['p50_ms']:.3f} | {t['p50_ms']:.3f} | "
                         f"{d['p99_ms']:.3f} | {t['p99_ms']:.3f} | {x['added_p99_ms']:+.3f} | "
                         f"{d['p999_ms']:.3f} | {t['p999_ms']:.3f} | "
                         f"{d['rps']:.0f}/{t['rps']:.0f} |")
        if r["cpu"]:
            L.append("")
            L.append("| round | sidecar CPU s (through) | upstream CPU s (through) | "
                     "upstream CPU s (direct) | requests | wall s d/t |")
            L.append("|---|---|---|---|---|---|")
            for x in r["cpu"]:
                d, t = x["direct"], x["through"]
                L.append(f"| {x['round']} | {t['sidecar_ticks'] / TICK:.2f} | "
                         f"{t['upstream_ticks'] / TICK:.2f} | {d['upstream_ticks'] / TICK:.2f} | "
                         f"{t['requests']} | {d['wall']:.2f}/{t['wall']:.2f} |")
        L.append("")
        L.append("## Raw\n")
        L.append("```json")
        L.append(json.dumps({"summary": s, "raw": r}, indent=1, default=str))
        L.append("```")
        return "\n".join(L) + "\n"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    tools = []
    for t, flag in (("wrk", "-v"), ("oha", "--version"), ("h2load", "--version")):
        if shutil.which(t):
            try:
                o = subprocess.run([t, flag], capture_output=True, timeout=5)
                first = (o.stdout or o.stderr).decode().splitlines()[0]
                tools.append(first.strip())
            except Exception:
                pass
    return (f"nproc {os.cpu_count()}, {model}, Linux {platform.release()}; "
            f"{'; '.join(tools)}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each: direct + through)")
    p.add_argument("--conns", type=int, default=32, help="connections at saturation")
    p.add_argument("--duration", type=int, default=5, help="seconds per saturation run")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--rate", type=int, default=1000, help="fixed request rate for latency")
    p.add_argument("--rate-conns", type=int, default=16)
    p.add_argument("--rate-duration", type=int, default=10)
    p.add_argument("--cpu-requests", type=int, default=50000)
    p.add_argument("--cpu-rounds", type=int, default=2)
    p.add_argument("--sse-n", type=int, default=50)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--upstream-threads", type=int, default=2)
    p.add_argument("--log-level", default="info", help="the sidecar's MCP_GATEWAY_LOG")
    p.add_argument("--sidecar-env", action="append", default=[], metavar="K=V",
                   help="extra environment for the sidecar (repeatable), e.g. "
                        "TOKIO_WORKER_THREADS=1")
    p.add_argument("--pin", action="store_true",
                   help="load generator on CPU 0, sidecar and upstream on CPU 1")
    p.add_argument("--only", default="saturation,latency,cpu,sse,streams",
                   help="comma-separated subset of phases")
    p.add_argument("--out", help="markdown results file (default bench/results/<time>.md)")
    a = p.parse_args()
    for n in (a.rounds, a.duration, a.rate_duration, a.sse_n, a.streams, a.cpu_requests):
        assert 0 < n <= 200000, "every load is bounded"
    assert a.duration <= 60 and a.rate_duration <= 60 and a.streams <= 5000

    started = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    command = os.environ.get("BENCH_COMMAND", "bench/run " + " ".join(sys.argv[1:])).strip()
    work = tempfile.mkdtemp(prefix="mcp-bench-")
    b = Bench(a, work)
    phases = a.only.split(",")
    try:
        b.start()
        if "sse" in phases:
            b.sse_ttfe()
        if "saturation" in phases:
            b.saturation()
        if "latency" in phases:
            b.latency()
        if "cpu" in phases:
            b.cpu()
        if "streams" in phases:
            b.streams_rss()
        b.raw["rss"]["idle_at_end_mb"] = rss_mb(b.sidecar.pid)
        b.raw["rss"]["hwm_mb"] = proc_status(b.sidecar.pid, "VmHWM") / 1024
        b.raw["sidecar_log_bytes"] = os.path.getsize(os.path.join(work, "sidecar.log"))
        if b.sidecar.poll() is not None:
            raise RuntimeError("the sidecar exited during the run")
    finally:
        b.procs.stop_all()
    s = b.summary()
    text = b.report(s, command, started)
    out = a.out or os.path.join(ROOT, "bench", "results", f"{started}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(text.split("## Raw")[0])
    print(f"written: {os.path.relpath(out, ROOT)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
