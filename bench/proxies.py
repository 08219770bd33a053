"""The reverse proxies the sidecar is compared with, each configured the way a careful user
would put it in front of the Functions host for the same job, and each at its best:

- nginx: injects the key, drops the client's Authorization, no client auth at all (nginx has
  no JWT check outside nginx Plus): the floor of an HTTP/1.1 hop.
- HAProxy: `jwt_verify` RS256 against the PEM public key, plus `iss`, `aud`, `exp` and the
  scope checked with `jwt_payload_query` (HAProxy has no verified-token cache).
- Envoy: `jwt_authn` with the JWKS inline, `iss` and `aud` checked, its JWT cache on (it has
  no scope check in that filter).

All listen on 127.0.0.1 only, reuse upstream connections, pass SSE unbuffered, route `/mcp`
and `/sse` to the Functions paths, and write one access-log line per request to a file, as
the sidecar writes its request log. Each uses two workers/threads, like the sidecar's two
tokio workers on these 2-core machines. Used by bench/bench.py.
"""

import json
import os
import shutil
import subprocess

BINARIES = {
    "nginx": ["nginx", "/usr/sbin/nginx"],
    "haproxy": ["haproxy", "/usr/sbin/haproxy"],
    "envoy": ["envoy"],
}


def find(name, extra_paths=()):
    for candidate in list(extra_paths) + BINARIES[name]:
        path = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if path:
            return path
    return None


def version(name, binary):
    flag = {"nginx": "-v", "haproxy": "-v", "envoy": "--version"}[name]
    out = subprocess.run([binary, flag], capture_output=True, timeout=20)
    text = (out.stdout + out.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "?"


def nginx(work, binary, port, upstream_port, mcp_path, key):
    root = os.path.join(work, "nginx")
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    conf = os.path.join(root, "nginx.conf")
    common = f"""
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header x-functions-key "{key}";
            proxy_buffering off;
            proxy_read_timeout 3600s;"""
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
master_process on;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log {root}/logs/access.log combined buffer=64k flush=1s;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    upstream functions {{ server 127.0.0.1:{upstream_port}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port};
        location = /mcp {{ proxy_pass http://functions{mcp_path};{common} }}
        location = /sse {{ proxy_pass http://functions{mcp_path}/sse;{common} }}
    }}
}}
""")
    return [binary, "-p", root, "-c", conf, "-e", os.path.join(root, "logs", "error.log")]


def haproxy(work, binary, port, upstream_port, mcp_path, key, issuer, audience, scope, pem):
    conf = os.path.join(work, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
    nbthread 2
    maxconn 8000
    log stderr format raw local0
defaults
    mode http
    log global
    option httplog
    option http-keep-alive
    option http-no-delay
    timeout connect 5s
    timeout client 3600s
    timeout server 3600s
frontend mcp
    bind 127.0.0.1:{port}
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
    http-request deny deny_status 401 unless {{ var(txn.alg) -m str RS256 }}
    http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.iss') -m str {issuer} }}
    http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str {audience} }}
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
    http-request deny deny_status 403 unless {{ var(txn.bearer),jwt_payload_query('$.scope') -m sub {scope} }}
    http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.alg,"{pem}") -m int 1 }}
    http-request del-header authorization
    http-request set-header x-functions-key {key}
    http-request set-path {mcp_path} if {{ path /mcp }}
    http-request set-path {mcp_path}/sse if {{ path /sse }}
    default_backend functions
backend functions
    http-reuse always
    server functions 127.0.0.1:{upstream_port}
""")
    return [binary, "-f", conf, "-db"]


def envoy(work, binary, port, upstream_port, mcp_path, key, issuer, audience, jwks):
    conf = os.path.join(work, "envoy.json")
    routes = [
        {"match": {"path": p}, "route": {"cluster": "functions", "prefix_rewrite": to,
                                          "timeout": "0s", "idle_timeout": "3600s"}}
        for p, to in (("/mcp", mcp_path), ("/sse", mcp_path + "/sse"))
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "mcp",
        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": os.path.join(work, "envoy-access.log")}}],
        "route_config": {"virtual_hosts": [{
            "name": "functions", "domains": ["*"], "routes": routes,
            "request_headers_to_add": [{"header": {"key": "x-functions-key", "value": key},
                                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]},
        "http_filters": [
            {"name": "envoy.filters.http.jwt_authn", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"bench": {
                    "issuer": issuer, "audiences": [audience],
                    "local_jwks": {"inline_string": jwks},
                    "forward": False,
                    "jwt_cache_config": {"jwt_cache_size": 10000}}},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    config = {"static_resources": {
        "listeners": [{"name": "mcp", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                       "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                       "typed_config": hcm}]}]}],
        "clusters": [{"name": "functions", "type": "STATIC", "connect_timeout": "5s",
                      "load_assignment": {"cluster_name": "functions", "endpoints": [{"lb_endpoints": [
                          {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                       "port_value": upstream_port}}}}]}]}}]}}
    with open(conf, "w") as f:
        json.dump(config, f, indent=1)
    return [binary, "-c", conf, "--concurrency", "2", "--log-level", "warn",
            "--disable-hot-restart", "--base-id", str(port)]
