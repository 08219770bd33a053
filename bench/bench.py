#!/usr/bin/env python3
"""The proxy benchmark: the same load, interleaved in one run, sent direct to a minimal fast
upstream and through each proxy in front of it: the sidecar (JWT auth on), nginx (key
injection, no client auth), HAProxy (`jwt_verify`) and Envoy (`jwt_authn`); see
bench/proxies.py for how each is configured. Started by bench/run (which builds the release
binaries first). Everything listens on and targets 127.0.0.1 only; every load run is bounded
in requests or time.

Reports per target: saturation throughput as a ratio to direct, proxy CPU per request (fixed
request count), added p50/p99 at a fixed rate, CPU per request when every token is new (a
cache miss), SSE time to first event, RSS idle and per open SSE stream, and whether the key
reached the client in the SSE endpoint event. Absolute numbers on shared machines drift;
ratios taken in one run do not, which is why every phase interleaves the targets.
"""

import argparse
import datetime
import http.server as http_server
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
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies  # noqa: E402
import sse  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
RELEASE = os.path.join(TARGET_DIR, "release")
MCP_PATH = "/runtime/webhooks/mcp"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
TICK = os.sysconf("SC_CLK_TCK")
SCOPE = "mcp:tools"

# The issue's targets for the sidecar, each relative to a peer measured in the same run.
GOALS = {
    "ratio_vs_nginx": 0.9,      # sidecar's through/direct ratio ≥ 0.9 × nginx's
    "cpu_vs_nginx": 1.3,        # sidecar's CPU per request ≤ 1.3 × nginx's
    "miss_vs_haproxy": 1.0,     # sidecar's cache-miss CPU per request ≤ HAProxy's
    "kb_per_stream": 20.0,      # RSS per open SSE stream
    "added_p99_vs_nginx_ms": 0.1,  # added p99 at 1k rps ≤ nginx's + 0.1 ms
}


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------

class Procs:
    def __init__(self, work):
        self.work = work
        self.started = []

    def spawn_ready(self, name, cmd, cwd=None, timeout=30.0, env=None):
        """Starts a program that prints one JSON ready line on stdout; stdin stays piped so
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


def family(pid):
    """The process and its children (nginx's workers), by scanning /proc."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


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
    return 0


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


def wait_listening(port, proc, name, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited during start; see its log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} never listened on {port}")


# ---- statistics ------------------------------------------------------------------------

def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def orders(names, rounds):
    """Round i runs the targets rotated by i, reversed on odd rounds: every target goes
    first, last and between the others, so drift does not favour one."""
    for i in range(rounds):
        k = i % len(names)
        order = names[k:] + names[:k]
        yield i, (order if i % 2 == 0 else order[::-1])


# ---- load generators -------------------------------------------------------------------

WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format('JSON {"requests":%d,"duration_us":%d,"status_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeout_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

WRK_POST = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
""" % BODY.decode() + WRK_DONE

# Each request a token not used before in this run (lines first..first+count-1 of the file);
# the thread stops after `count` responses.
WRK_MISS = """
local tokens = {}
for line in io.lines("%(file)s") do tokens[#tokens + 1] = line end
local first, count, sent, answered = %(first)d, %(count)d, 0, 0
request = function()
  local token = tokens[first + (sent %% (count + %(slack)d))]
  sent = sent + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["Authorization"] = "Bearer " .. token,
  }, '%(body)s')
end
response = function(status, headers, body)
  answered = answered + 1
  if answered >= count then wrk.thread:stop() end
end
"""


class Target:
    """One way to reach the upstream: direct, or through a proxy."""

    def __init__(self, name, port, mcp_path, sse_path, header, proc, verifies):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}{mcp_path}"
        self.sse_path = sse_path
        self.header = header
        self.proc = proc
        self.verifies = verifies  # checks JWTs (takes part in the cache-miss phase)
        self._pids = None

    def pids(self):
        if self._pids is None:
            self._pids = family(self.proc.pid)
        return self._pids

    def ticks(self):
        return sum(proc_ticks(p) for p in self.pids())

    def rss_mb(self):
        return sum(proc_status(p, "VmRSS") for p in self.pids()) / 1024.0


class Bench:
    def __init__(self, args, work):
        self.a = args
        self.work = work
        self.procs = Procs(work)
        self.targets = {}
        self.raw = {"saturation": [], "latency": [], "cpu": [], "miss": [], "sse": {},
                    "rss": {}, "versions": {}}
        self.loadgen_prefix = ["taskset", "-c", "0"] if args.pin else []
        self.server_prefix = ["taskset", "-c", "1"] if args.pin else []

    # -- setup ---------------------------------------------------------------------------

    def start(self):
        a = self.a
        self.key = "bench-" + secrets.token_hex(16)
        log("starting fast-upstream")
        self.upstream, ready = self.procs.spawn_ready(
            "fast-upstream", self.server_prefix + [
                os.path.join(RELEASE, "fast-upstream"), "--port", "0", "--key", self.key,
                "--threads", str(a.upstream_threads)])
        self.up_port = ready["port"]
        self.targets["direct"] = Target("direct", self.up_port, MCP_PATH, MCP_PATH + "/sse",
                                        ("x-functions-key", self.key), self.upstream, False)

        # The issuer: its JWKS on loopback, and the tokens (one per cache-miss request).
        mint = os.path.join(self.work, "mint")
        self.audience = "http://127.0.0.1/mcp"  # one audience for every proxy
        misses = a.miss_requests * a.miss_rounds + a.miss_conns + 1
        log(f"minting {misses} RS256 tokens")
        issuer_port = free_port()
        self.issuer = f"http://127.0.0.1:{issuer_port}"
        out = subprocess.run(
            ["node", os.path.join(ROOT, "bench", "mint.mjs"), "--out", mint, "--issuer",
             self.issuer, "--audience", self.audience, "--scope", SCOPE, "--count", str(misses)],
            capture_output=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"mint.mjs failed: {out.stderr.decode()}")
        self.tokens_file = os.path.join(mint, "tokens.txt")
        with open(self.tokens_file) as f:
            self.token = f.readline().strip()  # the hit-path token: line 1, never a miss token
        self.miss_first = 2  # Lua arrays count from 1; line 1 is the shared token
        jwks_path = os.path.join(mint, "jwks.json")
        self._serve_jwks(jwks_path, issuer_port)
        with open(jwks_path) as f:
            self.jwks = f.read()
        self.pem = os.path.join(mint, "public.pem")

        self._start_sidecar("sidecar", os.path.join(RELEASE, "mcp-gateway-sidecar"))
        if a.baseline_sidecar:
            self._start_sidecar("baseline", a.baseline_sidecar)
        for name in a.proxies:
            self._start_proxy(name)

        # Sanity: each answers 200 with the JSON-RPC result; no token → 401 where checked.
        hdr = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
        for t in self.targets.values():
            st, body = http("POST", t.url, dict(hdr, **{t.header[0]: t.header[1]}), BODY)
            if st != 200 or b'"result"' not in body:
                raise RuntimeError(f"{t.name} sanity request got {st}: {body[:200]!r}")
            if t.verifies:
                st, _ = http("POST", t.url, hdr, BODY)
                if st != 401:
                    raise RuntimeError(f"{t.name} without a token got {st}, expected 401")
                st, _ = http("POST", t.url, dict(hdr, Authorization="Bearer " + self.token[:-4] + "AAAA"), BODY)
                if st != 401:
                    raise RuntimeError(f"{t.name} with a forged signature got {st}, expected 401")
        time.sleep(1.0)
        for t in self.targets.values():
            self.raw["rss"].setdefault(t.name, {})["idle_after_start_mb"] = t.rss_mb()
        log("ready: " + ", ".join(self.targets) + " answer 200; the JWT checkers refuse no token "
            "and a forged one")

    def _serve_jwks(self, path, port):
        with open(path, "rb") as f:
            data = f.read()

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = http_server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def _start_sidecar(self, name, binary):
        a = self.a
        port, admin_port = free_port(), free_port()
        key_file = os.path.join(self.work, "system-key")
        with open(key_file, "w") as f:
            f.write(self.key)
        config = {
            "listen": f"127.0.0.1:{port}",
            "adminListen": f"127.0.0.1:{admin_port}",
            "publicBaseUrl": "http://127.0.0.1",
            "pathPrefix": "/",
            "upstream": {"url": f"http://127.0.0.1:{self.up_port}", "path": MCP_PATH,
                         "transports": ["StreamableHttp", "Sse"]},
            "systemKey": {"file": key_file, "header": "x-functions-key"},
            "auth": {"mode": "Oidc", "issuer": self.issuer,
                     "jwksUri": f"{self.issuer}/jwks", "audiences": [self.audience],
                     "requiredScopes": [SCOPE]},
        }
        path = os.path.join(self.work, f"{name}.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=2)  # JSON is YAML
        log(f"starting {name} ({binary}, MCP_GATEWAY_LOG={a.log_level})")
        env = dict(os.environ, MCP_GATEWAY_LOG=a.log_level)
        # experiments without code changes, e.g. TOKIO_WORKER_THREADS=1, MCP_GATEWAY_LOG=warn
        for kv in a.sidecar_env + (a.baseline_env if name == "baseline" else []):
            k, _, v = kv.partition("=")
            env[k] = v
        proc = self.procs.spawn(name, self.server_prefix + [binary, "--config", path], env=env)
        deadline = time.time() + 30
        while True:
            try:
                if http("GET", f"http://127.0.0.1:{admin_port}/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} never became ready; see {name}.log")
            time.sleep(0.05)
        self.targets[name] = Target(name, port, "/mcp", "/sse",
                                    ("Authorization", f"Bearer {self.token}"), proc, True)

    def _start_proxy(self, name):
        binary = proxies.find(name, [self.a.envoy] if name == "envoy" and self.a.envoy else [])
        if not binary:
            raise RuntimeError(f"{name} not found (see docs/benchmarks.md for how to install it)")
        self.raw["versions"][name] = proxies.version(name, binary)
        port = free_port()
        if name == "nginx":
            cmd = proxies.nginx(self.work, binary, port, self.up_port, MCP_PATH, self.key)
        elif name == "haproxy":
            cmd = proxies.haproxy(self.work, binary, port, self.up_port, MCP_PATH, self.key,
                                  self.issuer, self.audience, SCOPE, self.pem)
        else:
            cmd = proxies.envoy(self.work, binary, port, self.up_port, MCP_PATH, self.key,
                                self.issuer, self.audience, self.jwks)
        log(f"starting {name} ({self.raw['versions'][name]})")
        proc = self.procs.spawn(name, self.server_prefix + cmd)
        wait_listening(port, proc, name)
        time.sleep(0.5)  # nginx's workers, Envoy's listeners on every worker
        header = ("Authorization", f"Bearer {self.token}")
        self.targets[name] = Target(name, port, "/mcp", "/sse", header, proc, name != "nginx")

    # -- measurements --------------------------------------------------------------------

    def _measured(self, target, cmd, timeout):
        """Runs a load generator against `target`; returns (stdout, the target's CPU ticks,
        the upstream's CPU ticks, all-CPU busy ticks, wall secs)."""
        t0_ticks, up0, b0 = target.ticks(), proc_ticks(self.upstream.pid), busy_ticks()
        t0 = time.perf_counter()
        p = subprocess.Popen(self.loadgen_prefix + cmd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        wall = time.perf_counter() - t0
        t1_ticks, up1, b1 = target.ticks(), proc_ticks(self.upstream.pid), busy_ticks()
        return out.decode(errors="replace"), t1_ticks - t0_ticks, up1 - up0, b1 - b0, wall

    def _wrk(self, target, script, duration, conns, extra=()):
        lua = os.path.join(self.work, f"wrk-{target.name}.lua")
        with open(lua, "w") as f:
            f.write(script)
        a = self.a
        cmd = ["wrk", f"-t{a.wrk_threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
               "-s", lua, *extra, target.url]
        out, ticks, up, busy, wall = self._measured(target, cmd, duration + 60)
        m = re.search(r"^JSON (\{.*\})$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk output not understood:\n{out}")
        r = json.loads(m.group(1))
        errors = sum(r[k] for k in r if k.endswith("_errors"))
        if errors:
            raise RuntimeError(f"wrk saw {errors} errors/non-2xx against {target.name}:\n{out}")
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r.update(ticks=ticks, upstream_ticks=up, busy_ticks=busy, wall=wall)
        return r

    def saturation(self):
        a = self.a
        names = list(self.targets)
        log(f"saturation: wrk -t{a.wrk_threads} -c{a.conns} -d{a.duration}s, {a.rounds} rounds")
        for i, order in orders(names, a.rounds):
            row = {"round": i + 1, "loadavg": open("/proc/loadavg").read().split()[0]}
            for name in order:
                t = self.targets[name]
                row[name] = self._wrk(t, WRK_POST, a.duration, a.conns,
                                      ["-H", f"{t.header[0]}: {t.header[1]}"])
            for name in names:
                row[name]["ratio"] = row[name]["rps"] / row["direct"]["rps"]
            log(f"  round {i + 1}: " + ", ".join(
                f"{n} {row[n]['rps']:.0f} rps ({row[n]['ratio']:.3f})" for n in names))
            self.raw["saturation"].append(row)

    def miss(self):
        """CPU per request when every request carries a token the proxy has not seen."""
        a = self.a
        names = [n for n, t in self.targets.items() if t.verifies]
        log(f"miss: {a.miss_requests} requests with new tokens each, -c{a.miss_conns}, "
            f"{a.miss_rounds} rounds")
        for i, order in orders(names, a.miss_rounds):
            row = {"round": i + 1}
            first = self.miss_first + i * a.miss_requests  # each round its own tokens
            for name in order:
                script = WRK_MISS % {"file": self.tokens_file, "first": first,
                                     "count": a.miss_requests, "slack": a.miss_conns,
                                     "body": BODY.decode()} + WRK_DONE
                r = self._wrk(self.targets[name], script, 60, a.miss_conns)
                r["cpu_us_per_request"] = r["ticks"] / TICK / r["requests"] * 1e6
                row[name] = r
            log(f"  round {i + 1}: " + ", ".join(
                f"{n} {row[n]['cpu_us_per_request']:.0f} µs" for n in names))
            self.raw["miss"].append(row)

    def _oha(self, target):
        a = self.a
        body = os.path.join(self.work, "body.json")
        with open(body, "wb") as f:
            f.write(BODY)
        cmd = ["oha", "--no-tui", "--output-format", "json", "-n", str(a.rate * a.rate_duration),
               "-q", str(a.rate), "-c", str(a.rate_conns), "--latency-correction",
               "-m", "POST", "-D", body, "-T", "application/json",
               "-H", "Accept: application/json, text/event-stream",
               "-H", f"{target.header[0]}: {target.header[1]}", target.url]
        out, ticks, up, busy, wall = self._measured(target, cmd, a.rate_duration + 30)
        j = json.loads(out[out.index("{"):])
        codes = j.get("statusCodeDistribution", {})
        bad = {k: v for k, v in codes.items() if not k.startswith("2")}
        if bad or j.get("errorDistribution"):
            raise RuntimeError(f"oha saw errors against {target.name}: {bad} "
                               f"{j.get('errorDistribution')}")
        pcts = j["latencyPercentiles"]
        return {"requests": sum(codes.values()), "rps": j["summary"]["requestsPerSec"],
                "p50_ms": pcts["p50"] * 1000, "p99_ms": pcts["p99"] * 1000,
                "ticks": ticks, "wall": wall}

    def latency(self):
        a = self.a
        if not shutil.which("oha"):
            log("latency: oha not found; skipped (wrk cannot hold a fixed rate)")
            self.raw["latency_skipped"] = "oha not installed"
            return
        names = list(self.targets)
        log(f"latency: oha -q {a.rate} -c {a.rate_conns} -n {a.rate * a.rate_duration} "
            f"--latency-correction, {a.rounds} rounds")
        for i, order in orders(names, a.rounds):
            row = {"round": i + 1}
            for name in order:
                row[name] = self._oha(self.targets[name])
            for name in names:
                for q in ("p50_ms", "p99_ms"):
                    row[name]["added_" + q] = row[name][q] - row["direct"][q]
            log(f"  round {i + 1}: p99 " + ", ".join(
                f"{n} {row[n]['p99_ms']:.3f} ms" for n in names))
            self.raw["latency"].append(row)

    def cpu(self):
        """Each target's CPU for a fixed number of requests (h2load, HTTP/1.1, keep-alive)."""
        a = self.a
        body = os.path.join(self.work, "body.json")
        with open(body, "wb") as f:
            f.write(BODY)
        names = list(self.targets)
        log(f"cpu: h2load --h1 -n {a.cpu_requests} -c {a.conns}, {a.cpu_rounds} rounds")
        for i, order in orders(names, a.cpu_rounds):
            row = {"round": i + 1}
            for name in order:
                t = self.targets[name]
                cmd = ["h2load", "--h1", "-n", str(a.cpu_requests), "-c", str(a.conns),
                       "-d", body, "-H", "content-type: application/json",
                       "-H", "accept: application/json, text/event-stream",
                       "-H", f"{t.header[0]}: {t.header[1]}", t.url]
                out, ticks, up, busy, wall = self._measured(t, cmd, 180)
                codes = re.search(r"status codes: (\d+) 2xx", out)
                if not codes or int(codes.group(1)) != a.cpu_requests:
                    raise RuntimeError(f"h2load run not clean against {name}:\n{out}")
                row[name] = {"requests": a.cpu_requests, "ticks": ticks, "upstream_ticks": up,
                             "wall": wall,
                             "cpu_us_per_request": ticks / TICK / a.cpu_requests * 1e6,
                             "upstream_us_per_request": up / TICK / a.cpu_requests * 1e6}
            log(f"  round {i + 1}: " + ", ".join(
                f"{n} {row[n]['cpu_us_per_request']:.1f} µs" for n in names))
            self.raw["cpu"].append(row)

    def sse_ttfe(self):
        a = self.a
        log(f"sse: time to first event, {a.sse_n} sequential GETs each, alternating")
        targets = {n: (t.port, t.sse_path, {t.header[0]: t.header[1]})
                   for n, t in self.targets.items()}
        times, samples = sse.ttfe(targets, a.sse_n)
        res = {}
        for name, v in times.items():
            res[name] = {"p50_ms": med(v) * 1000, "p99_ms": pct(v, 99) * 1000,
                         "key_reached_client": self.key.encode() in samples[name]}
        for name in res:
            res[name]["added_p50_ms"] = res[name]["p50_ms"] - res["direct"]["p50_ms"]
        for name in ("sidecar", "baseline"):
            if name in res and res[name]["key_reached_client"]:
                raise RuntimeError(f"the key reached the client through {name}'s SSE stream")
        self.raw["sse"] = res

    def streams_rss(self):
        a = self.a
        for name, t in self.targets.items():
            before = t.rss_mb()
            log(f"rss: holding {a.streams} SSE streams through {name}")

            def while_open(n, t=t):
                return {"rss_mb": t.rss_mb(), "fds": sum(len(os.listdir(f"/proc/{p}/fd"))
                                                          for p in t.pids())}

            res = sse.hold(t.port, t.sse_path, {t.header[0]: t.header[1]}, a.streams, while_open)
            if res["opened"] != a.streams:
                raise RuntimeError(f"only {res['opened']} of {a.streams} streams opened "
                                   f"through {name}: {res}")
            time.sleep(2.0)
            res["before_mb"] = before
            res["after_close_mb"] = t.rss_mb()
            res["kb_per_stream"] = (res["while_open"]["rss_mb"] - before) * 1024 / a.streams
            self.raw["rss"].setdefault(name, {})["streams"] = res
            log(f"  {name}: {res['kb_per_stream']:.1f} KB per stream")

    # -- report --------------------------------------------------------------------------

    def summary(self):
        r = self.raw
        s = {}
        for name in self.targets:
            x = {}
            if r["saturation"]:
                x["ratio"] = med([row[name]["ratio"] for row in r["saturation"]])
                x["rps"] = med([row[name]["rps"] for row in r["saturation"]])
                x["sat_cpu_us"] = med([row[name]["ticks"] / TICK / row[name]["requests"] * 1e6
                                       for row in r["saturation"]])
            if r["cpu"]:
                x["cpu_us"] = med([row[name]["cpu_us_per_request"] for row in r["cpu"]])
                x["upstream_us"] = med([row[name]["upstream_us_per_request"] for row in r["cpu"]])
            if r["latency"]:
                for q in ("p50_ms", "p99_ms"):
                    x[q] = med([row[name][q] for row in r["latency"]])
                    x["added_" + q] = med([row[name]["added_" + q] for row in r["latency"]])
            if r["miss"] and name in r["miss"][0]:
                x["miss_us"] = med([row[name]["cpu_us_per_request"] for row in r["miss"]])
            if name in r["sse"]:
                x["sse_added_p50_ms"] = r["sse"][name]["added_p50_ms"]
                x["key_reached_client"] = r["sse"][name]["key_reached_client"]
            rss = r["rss"].get(name, {})
            x["idle_mb"] = rss.get("idle_after_start_mb")
            if "streams" in rss:
                x["kb_per_stream"] = rss["streams"]["kb_per_stream"]
            s[name] = x
        return s

    def goals(self, s):
        """The issue's targets for the sidecar, against peers of the same run."""
        out = []
        sc, ng, hp = s.get("sidecar", {}), s.get("nginx", {}), s.get("haproxy", {})

        def row(what, value, goal, met):
            out.append((what, value, goal, "met" if met else "**missed**"))

        if "ratio" in sc and "ratio" in ng:
            row("throughput ratio vs nginx's", f"{sc['ratio'] / ng['ratio']:.2f}×",
                f"≥ {GOALS['ratio_vs_nginx']}×", sc["ratio"] / ng["ratio"] >= GOALS["ratio_vs_nginx"])
        if "cpu_us" in sc and "cpu_us" in ng:
            row("CPU per request vs nginx's", f"{sc['cpu_us'] / ng['cpu_us']:.2f}×",
                f"≤ {GOALS['cpu_vs_nginx']}×", sc["cpu_us"] / ng["cpu_us"] <= GOALS["cpu_vs_nginx"])
        if "miss_us" in sc and "miss_us" in hp:
            row("cache-miss CPU per request vs HAProxy's", f"{sc['miss_us'] / hp['miss_us']:.2f}×",
                f"≤ {GOALS['miss_vs_haproxy']}×", sc["miss_us"] <= hp["miss_us"] * GOALS["miss_vs_haproxy"])
        if "kb_per_stream" in sc:
            row("RSS per open SSE stream", f"{sc['kb_per_stream']:.1f} KB",
                f"≤ {GOALS['kb_per_stream']:.0f} KB", sc["kb_per_stream"] <= GOALS["kb_per_stream"])
        if "added_p99_ms" in sc and "added_p99_ms" in ng:
            d = sc["added_p99_ms"] - ng["added_p99_ms"]
            row("added p99 at the fixed rate vs nginx's", f"{d:+.3f} ms",
                f"≤ +{GOALS['added_p99_vs_nginx_ms']} ms", d <= GOALS["added_p99_vs_nginx_ms"])
        return out

    def report(self, s, command, started):
        r, a = self.raw, self.a
        f = lambda v, fmt: "–" if v is None else format(v, fmt)  # noqa: E731
        L = [f"# Proxy benchmark, {started}\n", f"Command: `{command}`\n",
             f"Machine: {machine()}\n",
             "Proxies: " + "; ".join(f"{k}: {v}" for k, v in r["versions"].items()) + "\n",
             f"Settings: {json.dumps(vars(a))}\n", "## Summary\n",
             "| target | throughput / direct | CPU µs per request (fixed count) | CPU µs per "
             "request, new token each | added p50 / p99 at "
             f"{a.rate} rps (ms) | SSE first event, added p50 (ms) | RSS idle (MB) | KB per "
             "open SSE stream | key reached the client |",
             "|---|---|---|---|---|---|---|---|---|"]
        for name, x in s.items():
            cpu = f(x.get("cpu_us"), ".1f")
            if name == "direct" and "upstream_us" in x:
                cpu = f"{x['upstream_us']:.1f} (the upstream's own)"
            lat = ("–" if "added_p99_ms" not in x else
                   f"{x['added_p50_ms']:+.3f} / {x['added_p99_ms']:+.3f}")
            L.append(f"| {name} | {f(x.get('ratio'), '.3f')} | {cpu} | {f(x.get('miss_us'), '.0f')} "
                     f"| {lat} | {f(x.get('sse_added_p50_ms'), '+.3f')} | {f(x.get('idle_mb'), '.1f')} "
                     f"| {f(x.get('kb_per_stream'), '.1f')} | "
                     f"{'–' if 'key_reached_client' not in x else ('yes' if x['key_reached_client'] else 'no')} |")
        if r.get("latency_skipped"):
            L.append(f"\nLatency at a fixed rate: not measured ({r['latency_skipped']}).")
        goals = self.goals(s)
        if goals:
            L += ["\n## The sidecar's targets (issue 17), in this run\n",
                  "| target | measured | goal | |", "|---|---|---|---|"]
            L += [f"| {w} | {v} | {g} | {m} |" for w, v, g, m in goals]
        L += ["", "## Rounds\n", "```json", json.dumps(
            {k: r[k] for k in ("saturation", "cpu", "miss", "latency")}, indent=1, default=str),
              "```", "", "## Raw\n", "```json",
              json.dumps({"summary": s, "sse": r["sse"], "rss": r["rss"]}, indent=1, default=str),
              "```"]
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
                tools.append((o.stdout or o.stderr).decode().splitlines()[0].strip())
            except Exception:
                pass
    return f"nproc {os.cpu_count()}, {model}, Linux {platform.release()}; {'; '.join(tools)}"


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per phase")
    p.add_argument("--conns", type=int, default=32, help="connections at saturation")
    p.add_argument("--duration", type=int, default=5, help="seconds per saturation run")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--rate", type=int, default=1000, help="fixed request rate for latency")
    p.add_argument("--rate-conns", type=int, default=16)
    p.add_argument("--rate-duration", type=int, default=10)
    p.add_argument("--cpu-requests", type=int, default=50000)
    p.add_argument("--cpu-rounds", type=int, default=2)
    p.add_argument("--miss-requests", type=int, default=4000,
                   help="requests per cache-miss run, each with a new token")
    p.add_argument("--miss-rounds", type=int, default=2)
    p.add_argument("--miss-conns", type=int, default=16)
    p.add_argument("--sse-n", type=int, default=50)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--upstream-threads", type=int, default=2)
    p.add_argument("--proxies", default="nginx,haproxy,envoy",
                   help="peers to run beside the sidecar (comma-separated; '' for none)")
    p.add_argument("--envoy", help="the envoy binary (default: envoy on PATH)")
    p.add_argument("--baseline-sidecar", metavar="BINARY",
                   help="another sidecar build, run beside this one as 'baseline' (A/B)")
    p.add_argument("--log-level", default="info", help="the sidecar's MCP_GATEWAY_LOG")
    p.add_argument("--baseline-env", action="append", default=[], metavar="K=V",
                   help="extra environment for the baseline sidecar only (repeatable): with "
                        "--baseline-sidecar set to the same binary, an A/B of a setting")
    p.add_argument("--sidecar-env", action="append", default=[], metavar="K=V",
                   help="extra environment for the sidecar (repeatable)")
    p.add_argument("--pin", action="store_true",
                   help="load generator on CPU 0, the servers on CPU 1")
    p.add_argument("--only", default="sse,saturation,latency,cpu,miss,streams",
                   help="comma-separated subset of phases")
    p.add_argument("--out", help="markdown results file (default bench/results/<time>.md)")
    a = p.parse_args()
    a.proxies = [x for x in a.proxies.split(",") if x]
    for x in a.proxies:
        assert x in proxies.BINARIES, f"unknown proxy {x}"
    for n in (a.rounds, a.duration, a.rate_duration, a.sse_n, a.streams, a.cpu_requests,
              a.miss_requests, a.miss_rounds):
        assert 0 < n <= 200000, "every load is bounded"
    assert a.duration <= 60 and a.rate_duration <= 60 and a.streams <= 5000

    started = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    command = os.environ.get("BENCH_COMMAND", "bench/run " + " ".join(sys.argv[1:])).strip()
    work = tempfile.mkdtemp(prefix="mcp-bench-")
    b = Bench(a, work)
    phases = a.only.split(",")
    try:
        b.start()
        for phase, run in (("sse", b.sse_ttfe), ("saturation", b.saturation),
                           ("latency", b.latency), ("cpu", b.cpu), ("miss", b.miss),
                           ("streams", b.streams_rss)):
            if phase in phases:
                run()
        for t in b.targets.values():
            if t.proc.poll() is not None:
                raise RuntimeError(f"{t.name} exited during the run")
    finally:
        b.procs.stop_all()
    s = b.summary()
    text = b.report(s, command, started)
    out = a.out or os.path.join(ROOT, "bench", "results", f"{started}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(text.split("## Rounds")[0])
    print(f"written: {os.path.relpath(out, ROOT)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
