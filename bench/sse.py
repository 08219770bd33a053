"""SSE helpers for bench/bench.py (stdlib only; loopback only).

- ttfe(): time from TCP connect to the first complete `event:` block of a legacy SSE GET,
  one connection at a time, alternating direct and through.
- hold(): opens N SSE streams concurrently, waits until each has seen its first event, calls
  a callback while all are open (to read RSS), then closes them all.
"""

import asyncio
import socket
import time

LOOPBACK = "127.0.0.1"


def _request(path, headers):
    lines = [f"GET {path} HTTP/1.1", f"Host: {LOOPBACK}", "Accept: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _first_event(buf):
    """Index just past the first complete `event:` block in a raw response, or -1."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return -1
    i = buf.find(b"event:", head_end)
    if i < 0:
        return -1
    j = buf.find(b"\n\n", i)
    return -1 if j < 0 else j + 2


def ttfe_once(port, path, headers, timeout=5.0):
    """Seconds from connect() to the end of the first event, and the raw bytes read."""
    req = _request(path, headers)
    t0 = time.perf_counter()
    s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req)
        buf = b""
        deadline = t0 + timeout
        while _first_event(buf) < 0:
            if time.perf_counter() > deadline:
                raise TimeoutError("no SSE event in time")
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before the first event: {buf[:200]!r}")
            buf += chunk
        return time.perf_counter() - t0, buf
    finally:
        s.close()


def ttfe(targets, n):
    """targets: {"direct": (port, path, headers), "through": (...)}; returns {name: [secs]}.
    Alternates which target goes first on each iteration; n is bounded by the caller."""
    out = {name: [] for name in targets}
    names = list(targets)
    samples = {}
    for name in names:  # one warm-up each, not recorded
        ttfe_once(*targets[name])
    for i in range(n):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            secs, raw = ttfe_once(*targets[name])
            out[name].append(secs)
            samples[name] = raw
    return out, samples


async def _open_stream(port, path, headers, opened, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), timeout)
    writer.write(_request(path, headers))
    await writer.drain()
    buf = b""
    while _first_event(buf) < 0:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            raise ConnectionError("closed before the first event")
        buf += chunk
    opened.append(writer)
    return writer


async def _hold(port, path, headers, n, concurrency, timeout, while_open):
    opened = []
    sem = asyncio.Semaphore(concurrency)
    errors = []

    async def one():
        async with sem:
            try:
                await _open_stream(port, path, headers, opened, timeout)
            except Exception as e:  # counted, reported
                errors.append(repr(e))

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout * 4)
    open_secs = time.perf_counter() - t0
    await asyncio.sleep(1.0)  # let the sidecar settle (buffers, pool) before reading RSS
    result = while_open(len(opened))
    for w in opened:
        w.close()
    for w in opened:
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except Exception:
            pass
    return {"opened": len(opened), "errors": errors[:5], "error_count": len(errors),
            "open_seconds": open_secs, "while_open": result}


def hold(port, path, headers, n, while_open, concurrency=100, timeout=15.0):
    return asyncio.run(_hold(port, path, headers, n, concurrency, timeout, while_open))
