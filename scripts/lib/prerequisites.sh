# Sourced by scripts/test and scripts/demo: installs what they need, cached, so a second run
# is fast. Everything comes from the package registries this project may use.

# The control-plane binaries and helm (scripts/local-cluster build: minutes once, then cached).
ensure_control_plane() {
    scripts/local-cluster build >&2
}

# The OpenTelemetry Collector the tracing tests export to (tests/src/otel_collector.rs;
# scripts/local-cluster otelcol-build: a few minutes once, then cached). Not root-only.
ensure_otel_collector() {
    scripts/local-cluster otelcol-build >&2
}

# The node of the tier-5 tests (tests/tests/real_node.rs): kubelet & co. from the same Go
# module, Debian packages, the pause image (scripts/local-cluster node-build, cached), and
# Traefik with the Gateway API CRDs (scripts/local-cluster traefik-build, cached). Root
# only; without root those tests fail and say why.
ensure_node() {
    if [ "$(id -u)" = 0 ]; then
        scripts/local-cluster node-build >&2
        # Its ingress controller and Gateway API implementation: minutes once, then cached.
        scripts/local-cluster traefik-build >&2
    else
        echo "[prerequisites] not root, so no real node: the real-node tests (tests/tests/real_node.rs) fail and the demo takes its process-based path" >&2
    fi
}

# The Node test fixtures (tests/fixtures/node): `npm ci` again only when the lockfile changed.
ensure_fixtures() {
    local dir=tests/fixtures/node
    local stamp="$dir/node_modules/.lock-hash"
    local hash
    hash="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
        echo "$hash" > "$stamp"
    fi
}

# The Python SDK client (tests/fixtures/python): a venv with the pinned requirements.
ensure_python_client() {
    local dir=tests/fixtures/python
    local stamp="$dir/.venv/.requirements-hash"
    local hash
    hash="$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
        python3 -m venv "$dir/.venv" >&2
        "$dir/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" >&2
        echo "$hash" > "$stamp"
    fi
}
