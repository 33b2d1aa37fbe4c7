"""TLS benchmark: apiward against nginx over mutual TLS, both in front of one upstream.

    .venv/bin/python bench/tls.py [--duration 5] [--rounds 2] [--connections 50]
                                  [--handshake-clients 16] [--only nginx,apiward]
    .venv/bin/python bench/tls.py --py-spy 5        # then: where apiward's time goes

Both servers present the same server certificate, issued by apiward's own CA, and want a
client certificate from that CA (nginx: ``ssl_verify_client on``; apiward:
``client_certs: required``). apiward also verifies an RS256 JWT on every call (its
``identity`` check). Both forward to bench/proxy.py's upstream nginx and share CPU 1 with
it; the load generator (this file, ``--load``) runs on CPU 0. Each round gives every server

- ``handshakes``: a new connection per request: full TLS handshake with a client
  certificate, one GET with ``Connection: close``, read until the server closes;
- ``keep-alive``: GETs over mTLS connections opened beforehand, one request in flight per
  connection (no pipelining), every connection multiplexed with epoll;

then bench/jwt_verify.py times the first and the cached RS256 verification. Rounds are
interleaved and the tables give medians. See bench/README.md for the method and columns.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
import queue
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy  # (bench/proxy.py: the upstream, processes, /proc and tables)
from proxy import LOAD_CPU, SERVER_CPU, BenchError, Env, Processes, Server

SUT_NAMES = ("nginx", "apiward")  # the default; "apiward-mtls" only through --only
MODES = ("handshakes", "keep-alive")
READY_TIMEOUT = 15.0  # seconds for a server to answer one GET over mTLS
LOAD_GRACE = 30.0  # seconds a load run may take beyond its duration (connecting, reporting)
PROBE_TIMEOUT = 2.0
TARGETS = {  # issue 4
    "keepalive_ratio": 0.50,  # apiward's keep-alive req/s over mTLS, as a share of nginx's
    "rs256_first_us": 60.0,
    "rs256_cached_us": 5.0,
}


# ---------------------------------------------------------------------------------------------
# Certificates and the token
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """Files both servers and the load generator use (written once per run into the temp dir)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    jwks: Path
    issuer: str
    audience: str
    token: str

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps({k: str(v) for k, v in asdict(self).items()}))
        return path

    @classmethod
    def load(cls, path: Path) -> Material:
        data = json.loads(path.read_text())
        paths = {"ca_cert", "server_cert", "server_key", "client_cert", "client_key", "jwks"}
        return cls(**{k: Path(v) if k in paths else v for k, v in data.items()})


def make_material(directory: Path) -> tuple[Material, dict[str, Any]]:
    """apiward's CA with a server and a client certificate; a JWKS and one RS256 token
    (bench/jwt_verify.py's keys). Returns the private keys too, for the JWT micro-benchmark."""
    import jwt_verify

    from apiward.identity.pki import CertificateAuthority

    ca = CertificateAuthority.init(directory / "ca")
    server = ca.issue("gateway", kind="server", sans=["127.0.0.1", "localhost"])
    client = ca.issue("bench-client")
    private, jwks = jwt_verify.make_setup(directory)
    token = jwt_verify.make_tokens(private["RS256"], "RS256", 1, time.time())[0]
    material = Material(
        ca_cert=ca.cert_path,
        server_cert=server.cert,
        server_key=server.key,
        client_cert=client.cert,
        client_key=client.key,
        jwks=jwks,
        issuer=jwt_verify.ISSUER,
        audience=jwt_verify.AUDIENCE,
        token=token,
    )
    return material, private


# ---------------------------------------------------------------------------------------------
# The two servers
# ---------------------------------------------------------------------------------------------


def nginx_tls_command(env: Env, port: int, m: Material) -> list[str]:
    """nginx terminating mTLS with the same certificate, CA and TLS settings as apiward
    (server/tls.py: TLS 1.2+, ECDHE with AES-GCM or ChaCha20, server preference), and
    forwarding the client certificate's facts as apiward does."""
    block = f"""\
    upstream backend {{
        server 127.0.0.1:{env.upstream_port};
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {m.server_cert};
        ssl_certificate_key {m.server_key};
        ssl_client_certificate {m.ca_cert};
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
        ssl_prefer_server_ciphers on;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Client-Cert-Subject $ssl_client_s_dn;
            proxy_set_header X-Client-Cert-Serial $ssl_client_serial;
            proxy_set_header X-Client-Cert-Fingerprint $ssl_client_fingerprint;
        }}
    }}"""
    return proxy.nginx_command(env, "nginx-tls", block)


def apiward_config(env: Env, port: int, m: Material, jwt: bool) -> str:
    identity = f"""\
    checks:
      identity:
        schemes:
          bearer:
            jwt:
              jwks_file: {m.jwks}
              algorithms: [RS256]
              issuer: "{m.issuer}"
              audience: "{m.audience}"
        rules: [{{path: "/*", require: [[bearer]]}}]
"""
    return f"""\
listen: 127.0.0.1:{port}
workers: 1
events: {{stdout: false}}
tls:
  cert: {m.server_cert}
  key: {m.server_key}
  client_ca: {m.ca_cert}
  client_certs: required
apis:
  - name: bench
    upstream: {{url: "{env.upstream_url}"}}
{identity if jwt else ""}"""


def apiward_tls_command(env: Env, port: int, m: Material) -> list[str]:
    """apiward, 1 worker: mTLS (client certificate required) and an RS256 JWT on every call."""
    return proxy.apiward_config_command(env, "apiward-tls", apiward_config(env, port, m, True))


def apiward_mtls_command(env: Env, port: int, m: Material) -> list[str]:
    """The same without the identity check: what the JWT check costs in the live server."""
    return proxy.apiward_config_command(env, "apiward-mtls", apiward_config(env, port, m, False))


COMMANDS: dict[str, Callable[[Env, int, Material], list[str]]] = {
    "nginx": nginx_tls_command,
    "apiward": apiward_tls_command,
    "apiward-mtls": apiward_mtls_command,  # only when named in --only
}


# ---------------------------------------------------------------------------------------------
# HTTP over TLS, shared by the probe and the load generator
# ---------------------------------------------------------------------------------------------


def client_context(m: Material, verify: bool) -> ssl.SSLContext:
    """The client side: presents the client certificate. The load generator does not verify
    the server's certificate (``verify=False``): that keeps the client's share of each
    handshake small, so that the server, not the client, is the limit. The probe does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        context.load_verify_locations(cafile=str(m.ca_cert))
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(m.client_cert), str(m.client_key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def http_request(token: str | None, close: bool) -> bytes:
    lines = ["GET / HTTP/1.1", "Host: 127.0.0.1", "User-Agent: apiward-bench-tls"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response_end(buffer: bytes) -> int:
    """The length of the complete response at the start of ``buffer``, or 0 if it is not
    complete yet (Content-Length or chunked framing; a head alone when there is neither)."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return 0
    head = buffer[:head_end].lower()
    at = head.find(b"\ncontent-length:")
    if at >= 0:
        line_end = head.find(b"\r", at)
        total = head_end + 4 + int(head[at + 16 : line_end if line_end > 0 else None])
        return total if len(buffer) >= total else 0
    if b"\ntransfer-encoding: chunked" in head:
        end = buffer.find(b"\r\n0\r\n\r\n", head_end)
        return end + 7 if end >= 0 else 0
    return head_end + 4


def status_line(buffer: bytes) -> str:
    return buffer.split(b"\r\n", 1)[0].decode("latin-1")[:80] or "(empty response)"


def tls_connect(port: int, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return context.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def read_response(sock: ssl.SSLSocket) -> bytes:
    buffer = b""
    while not response_end(buffer):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response ended ({len(buffer)} bytes)")
        buffer += chunk
    return buffer


def exchange_and_close(port: int, context: ssl.SSLContext, request: bytes, timeout: float) -> bytes:
    """New connection, full handshake, one request with ``Connection: close``; read until
    the server closes (so that the server, not the client, holds TIME_WAIT)."""
    with tls_connect(port, context, timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Readiness and the sanity checks: the same request is answered 200 by both servers
# ---------------------------------------------------------------------------------------------


def tls_probe(port: int, m: Material) -> tuple[str | None, str]:
    """Two GETs on one mTLS connection (keep-alive, then ``Connection: close``) verifying
    the server's certificate; (None, "TLSv1.3 cipher") when both got a 2xx and the server
    then closed, else (what went wrong, "")."""
    try:
        with tls_connect(port, client_context(m, verify=True), PROBE_TIMEOUT) as sock:
            facts = f"{sock.version()} {sock.cipher()[0]}"
            for close in (False, True):
                sock.sendall(http_request(m.token, close))
                answer = read_response(sock)
                if not answer.startswith(b"HTTP/1.1 2"):
                    return f"answered {status_line(answer)!r}", ""
            if sock.recv(1):
                return "more bytes after a Connection: close response", ""
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}", ""
    return None, facts


def refuses_without_client_cert(port: int, m: Material) -> str | None:
    """None when a client without a certificate gets no 2xx; else what it got."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(m.ca_cert))
    try:
        with tls_connect(port, context, PROBE_TIMEOUT) as sock:
            sock.sendall(http_request(m.token, close=True))
            answer = read_response(sock)
    except (OSError, ValueError):
        return None  # refused during or right after the handshake
    return None if not answer.startswith(b"HTTP/1.1 2") else status_line(answer)


def start_tls_server(procs: Processes, name: str, env: Env, m: Material) -> tuple[Server, str]:
    """Start on a free port and poll with :func:`tls_probe` until ready; one retry if it
    exits early (another process may have taken the port between choosing and binding)."""
    log = env.tmp / f"{name}.log"
    reason = ""
    for _attempt in range(2):
        port = proxy.free_port()
        proc = procs.start(COMMANDS[name](env, port, m), log, SERVER_CPU)
        deadline = time.monotonic() + READY_TIMEOUT
        reason = "no answer"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                reason = f"exited with code {proc.returncode}"
                break
            problem, facts = tls_probe(port, m)
            if problem is None:
                wrong = refuses_without_client_cert(port, m)
                if wrong:
                    raise BenchError(f"{name} answered {wrong!r} to a client without a cert")
                return Server(name, port, proc.pid, log, proc), facts
            reason = f"not ready after {READY_TIMEOUT:.0f}s (last probe: {problem})"
            time.sleep(0.05)  # poll interval, not a readiness guess
        procs.stop(proc)
        if not reason.startswith("exited"):
            break
    raise BenchError(f"{name} {reason}\n{proxy.log_tail(log)}")


# ---------------------------------------------------------------------------------------------
# The load generator (``--load MODE``): runs on CPU 0, in its own processes
# ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one load worker did during the measured window."""

    ok: int = 0
    bad: int = 0  # errors and non-2xx answers
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.bad += 1
        self.first_error = self.first_error or what


def handshake_worker(port: int, m: Material, seconds: float, start: Any) -> Tally:
    context = client_context(m, verify=False)
    request = http_request(m.token, close=True)
    tally, clock = Tally(), time.perf_counter
    start.wait()
    deadline = clock() + seconds
    while clock() < deadline:
        began = clock()
        try:
            answer = exchange_and_close(port, context, request, timeout=10.0)
        except (OSError, ValueError) as exc:
            tally.fail(f"{type(exc).__name__}: {exc}")
            continue
        tally.latencies.append(clock() - began)
        if answer.startswith(b"HTTP/1.1 2") and response_end(answer) == len(answer):
            tally.ok += 1
        else:
            tally.fail(f"answered {status_line(answer)!r} ({len(answer)} bytes)")
    return tally


def keepalive_worker(port: int, m: Material, seconds: float, start: Any, conns: int) -> Tally:
    """``conns`` mTLS connections, opened before the window; each sends its next request
    when the previous response is complete. One process, one epoll: no thread switches."""
    context = client_context(m, verify=False)
    request = http_request(m.token, close=False)
    socks = [tls_connect(port, context, timeout=10.0) for _ in range(conns)]
    poller = select.epoll()
    table: dict[int, list[Any]] = {}  # fd -> [socket, partial response, sent at]
    for sock in socks:
        sock.setblocking(False)
        table[sock.fileno()] = [sock, b"", 0.0]
        poller.register(sock.fileno(), select.EPOLLIN)
    tally, clock = Tally(), time.perf_counter
    latencies = tally.latencies
    start.wait()
    now = clock()
    deadline = now + seconds
    for entry in table.values():
        entry[0].send(request)
        entry[2] = now
    ok = 0
    while now < deadline and table:
        for fd, _event in poller.poll(max(0.0, deadline - now)):
            entry = table[fd]
            sock = entry[0]
            try:
                chunk = sock.recv(65536)
            except ssl.SSLWantReadError:
                continue  # a partial record, or a session ticket and nothing else
            except OSError as exc:
                tally.fail(f"{type(exc).__name__}: {exc}")
                chunk = b""
            if not chunk:
                tally.fail("the server closed a keep-alive connection")
                poller.unregister(fd)
                del table[fd]
                continue
            buffer = entry[1] + chunk if entry[1] else chunk
            end = response_end(buffer)
            if not end:
                entry[1] = buffer
                continue
            now = clock()
            latencies.append(now - entry[2])
            if buffer.startswith(b"HTTP/1.1 2"):
                ok += 1
            else:
                tally.fail(f"answered {status_line(buffer)!r}")
            entry[1] = buffer[end:]
            sock.send(request)
            entry[2] = now
        now = clock()
    tally.ok = ok
    for sock in socks:
        sock.close()
    return tally


def worker_main(mode: str, args: argparse.Namespace, index: int, start: Any, out: Any) -> None:
    """One load process: its tally (or why it could not start) goes onto ``out``."""
    m = Material.load(args.material)
    try:
        if mode == "handshakes":
            tally = handshake_worker(args.port, m, args.seconds, start)
        else:
            share = args.connections // args.clients + (index < args.connections % args.clients)
            tally = keepalive_worker(args.port, m, args.seconds, start, share)
    except threading.BrokenBarrierError:
        return
    except Exception as exc:  # reported by the parent as the run's error
        start.abort()
        out.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    out.put(asdict(tally))


def sample(pids: Sequence[int]) -> dict[str, Any]:
    return {
        "cpu": [proxy.tree_cpu_seconds(pid) for pid in pids],
        "server_core": proxy.core_ticks(SERVER_CPU),
        "load_core": proxy.core_ticks(LOAD_CPU),
    }


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1]) * 100


def percentile(ordered: list[float], fraction: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else None


def load_main(args: argparse.Namespace) -> int:
    """``--load MODE``: fork the workers, open the window when all are ready, sample the
    servers' CPU time and both cores around it, print one JSON line."""
    fork = multiprocessing.get_context("fork")
    start = fork.Barrier(args.clients + 1)
    out = fork.Queue()
    workers = [
        fork.Process(target=worker_main, args=(args.load, args, i, start, out), daemon=True)
        for i in range(args.clients)
    ]
    for worker in workers:
        worker.start()
    pids = [int(pid) for pid in args.watch.split(",")]
    result: dict[str, Any] = {"mode": args.load, "error": None}
    try:
        start.wait(timeout=LOAD_GRACE)
    except threading.BrokenBarrierError:
        result["error"] = "workers could not start"
    before, began = sample(pids), time.monotonic()
    tallies: list[dict[str, Any]] = []
    if result["error"] is None:
        time.sleep(args.seconds)
    after, elapsed = sample(pids), time.monotonic() - began
    with contextlib.suppress(queue.Empty):
        for _ in workers:
            tallies.append(out.get(timeout=LOAD_GRACE if result["error"] is None else 2))
    for worker in workers:
        worker.join(5)
    errors = [t["error"] for t in tallies if "error" in t]
    done = [t for t in tallies if "error" not in t]
    if errors or len(done) < len(workers):
        result["error"] = errors[0] if errors else result["error"] or "a worker did not report"
    latencies = sorted(x for t in done for x in t["latencies"])
    ok = sum(t["ok"] for t in done)
    cpu = [a - b for a, b in zip(after["cpu"], before["cpu"], strict=True)]
    result.update(
        ok=ok,
        bad=sum(t["bad"] for t in done),
        first_error=next((t["first_error"] for t in done if t["first_error"]), None),
        seconds=elapsed,
        rate=ok / elapsed if elapsed else 0.0,
        p50_ms=(percentile(latencies, 0.50) or 0) * 1000 if latencies else None,
        p99_ms=(percentile(latencies, 0.99) or 0) * 1000 if latencies else None,
        cpu_us_per_op=[c * 1e6 / ok if ok else None for c in cpu],
        server_core_busy_pct=busy_pct(before["server_core"], after["server_core"]),
        load_core_busy_pct=busy_pct(before["load_core"], after["load_core"]),
    )
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# One measured run, as the bench sees it
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    sut: str
    mode: str
    round: int
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us_per_op: float | None = None  # the server's process tree
    upstream_cpu_us_per_op: float | None = None
    server_core_busy_pct: float | None = None  # CPU 1, anyone's work
    load_core_busy_pct: float | None = None  # CPU 0: near 100 means the client may be the limit
    ok: int = 0
    bad: int = 0
    error: str | None = None


def load_argv(
    mode: str,
    server: Server,
    upstream: Server,
    material: Path,
    seconds: float,
    args: argparse.Namespace,
) -> list[str]:
    clients = args.handshake_clients if mode == "handshakes" else args.keepalive_clients
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--load",
        mode,
        "--port",
        str(server.port),
        "--material",
        str(material),
        "--seconds",
        f"{seconds:g}",
        "--clients",
        str(clients),
        "--connections",
        str(args.connections),
        "--watch",
        f"{server.pid},{upstream.pid}",
    ]


def measure(
    procs: Processes,
    mode: str,
    server: Server,
    upstream: Server,
    material: Path,
    round_no: int,
    seconds: float,
    args: argparse.Namespace,
) -> Run:
    run = Run(server.name, mode, round_no)
    argv = load_argv(mode, server, upstream, material, seconds, args)
    code, out = procs.run(argv, LOAD_CPU, seconds + 2 * LOAD_GRACE)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        run.error = f"load generator exited with {code}:\n{out[-2000:]}"
        return run
    data = json.loads(lines[-1])
    run.ok, run.bad = data["ok"], data["bad"]
    if data["error"]:
        run.error = data["error"]
        return run
    sut_cpu, upstream_cpu = data["cpu_us_per_op"]
    run.rate, run.p50_ms, run.p99_ms = data["rate"], data["p50_ms"], data["p99_ms"]
    run.cpu_us_per_op, run.upstream_cpu_us_per_op = sut_cpu, upstream_cpu
    run.server_core_busy_pct = data["server_core_busy_pct"]
    run.load_core_busy_pct = data["load_core_busy_pct"]
    run.error = data["first_error"] if data["bad"] else None
    if not server.alive():
        run.error = f"{server.name} exited during the run (code {server.proc.returncode})"
    return run


def progress(run: Run, rounds: int) -> str:
    head = f"[round {run.round}/{rounds}] {run.sut:<12} {run.mode:<11}"
    if run.rate is None:
        return f"{head} FAILED: {(run.error or '').splitlines()[0]}"
    unit = "hs/s " if run.mode == "handshakes" else "req/s"
    text = (
        f"{head} {run.rate:>9,.0f} {unit}  p50 {proxy.fmt(run.p50_ms, 2):>6} ms  "
        f"p99 {proxy.fmt(run.p99_ms, 2):>6} ms  CPU {proxy.fmt(run.cpu_us_per_op):>6} µs/op  "
        f"CPU1 {proxy.fmt(run.server_core_busy_pct, 0)}%  "
        f"CPU0 {proxy.fmt(run.load_core_busy_pct, 0)}%"
    )
    return text + (f"  ERRORS {run.bad}: {run.error}" if run.bad or run.error else "")


# ---------------------------------------------------------------------------------------------
# Medians, tables, ratios
# ---------------------------------------------------------------------------------------------

COLUMNS = (
    "rate",
    "p50_ms",
    "p99_ms",
    "cpu_us_per_op",
    "upstream_cpu_us_per_op",
    "server_core_busy_pct",
    "load_core_busy_pct",
)


def medians(runs: list[Run]) -> dict[str, float | None]:
    good = [run for run in runs if run.rate is not None]
    return {column: proxy.median_of(getattr(run, column) for run in good) for column in COLUMNS}


def headers(mode: str) -> list[str]:
    unit = "handshake" if mode == "handshakes" else "req"
    rate = "handshakes/s" if mode == "handshakes" else "req/s"
    return [
        "SUT",
        rate,
        "p50 ms",
        "p99 ms",
        f"CPU µs/{unit}",
        f"upstream µs/{unit}",
        "CPU1 busy %",
        "CPU0 busy %",
        "runs",
        "errors",
    ]


def table_rows(mode: str, runs: list[Run], names: Sequence[str]) -> list[list[str]]:
    rows = []
    for name in names:
        mine = [run for run in runs if run.sut == name and run.mode == mode]
        if not mine:
            continue
        m = medians(mine)
        bad = sum(run.bad for run in mine)
        failed = sum(1 for run in mine if run.rate is None)
        flag = f"{bad}" + (f" ({failed} failed runs)" if failed else "")
        rows.append(
            [
                name,
                proxy.fmt(m["rate"], thousands=True),
                proxy.fmt(m["p50_ms"], 2),
                proxy.fmt(m["p99_ms"], 2),
                proxy.fmt(m["cpu_us_per_op"]),
                proxy.fmt(m["upstream_cpu_us_per_op"]),
                proxy.fmt(m["server_core_busy_pct"], 0),
                proxy.fmt(m["load_core_busy_pct"], 0),
                str(len(mine)),
                flag + (" !" if bad or failed else ""),
            ]
        )
    return rows


RATIOS = (("apiward", "nginx"), ("apiward-mtls", "nginx"), ("apiward", "apiward-mtls"))


def ratio_table(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    """``"apiward/nginx keep-alive" -> {rate: 0.8, …}`` for each pair measured."""
    out = {}
    for top, bottom in RATIOS:
        for mode in MODES:
            a = medians([r for r in runs if r.sut == top and r.mode == mode])
            b = medians([r for r in runs if r.sut == bottom and r.mode == mode])
            if a["rate"] and b["rate"]:
                out[f"{top}/{bottom} {mode}"] = {
                    key: (a[key] / b[key]) if a.get(key) and b.get(key) else None
                    for key in ("rate", "p50_ms", "p99_ms", "cpu_us_per_op")
                }
    return out


def ratio_lines(table: dict[str, dict[str, float | None]]) -> list[str]:
    names = {"rate": "rate", "p50_ms": "p50", "p99_ms": "p99", "cpu_us_per_op": "CPU/op"}
    return [
        f"{pair:<36} " + "  ".join(f"{names[k]} {proxy.fmt(v, 2)}x" for k, v in row.items())
        for pair, row in table.items()
    ]


def target_rows(
    ratios: dict[str, dict[str, float | None]], jwt: dict[str, Any] | None
) -> list[list[str]]:
    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("yes" if ok else "**no**")

    keepalive = ratios.get("apiward/nginx keep-alive", {}).get("rate")
    rows = [
        [
            f"keep-alive req/s over mTLS (+ JWT) ≥ {TARGETS['keepalive_ratio']:.0%} of nginx's",
            "-" if keepalive is None else f"{keepalive:.0%}",
            verdict(None if keepalive is None else keepalive >= TARGETS["keepalive_ratio"]),
        ]
    ]
    if jwt:
        first, cached = jwt["first"]["mean_us"], jwt["cached"]["mean_us"]
        rows += [
            [
                f"first RS256 verification < {TARGETS['rs256_first_us']:g} µs",
                f"{first:.1f} µs",
                verdict(first < TARGETS["rs256_first_us"]),
            ],
            [
                f"cached verification < {TARGETS['rs256_cached_us']:g} µs",
                f"{cached:.2f} µs",
                verdict(cached < TARGETS["rs256_cached_us"]),
            ],
        ]
    return rows


def jwt_rows(jwt: dict[str, Any]) -> list[list[str]]:
    about = {
        "first": "JwtVerifier.verify, token never seen (cache miss)",
        "cached": "JwtVerifier.verify, token already verified (cache hit)",
        "pyjwt": "PyJWT jwt.decode, same key and claims (for comparison)",
    }
    return [
        [what, about[what], f"{row['mean_us']:.2f}", f"{row['p50_us']:.2f}", f"{row['p99_us']:.2f}"]
        for what, row in jwt.items()
    ]


JWT_HEADERS = ("RS256", "what", "mean µs", "p50 µs", "p99 µs")
TARGET_HEADERS = ("target (issue 4)", "result", "met?")


def machine_info(tls_facts: dict[str, str]) -> dict[str, Any]:
    info = proxy.machine_info()
    info.pop("wrk", None)
    nginx_v = subprocess.run(
        [proxy.find_tool("nginx") or "nginx", "-V"], capture_output=True, text=True, check=False
    ).stderr
    built = next((ln for ln in nginx_v.splitlines() if "built with OpenSSL" in ln), "")
    info["nginx_openssl"] = built.replace("built with ", "").strip() or "?"
    info["python_ssl"] = ssl.OPENSSL_VERSION
    info["negotiated"] = tls_facts
    return info


def markdown_block(
    args: argparse.Namespace,
    machine: dict[str, Any],
    runs: list[Run],
    names: Sequence[str],
    ratios_text: str,
    jwt: dict[str, Any] | None,
    targets: list[list[str]],
) -> str:
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    negotiated = "; ".join(f"{k}: {v}" for k, v in machine["negotiated"].items())
    parts = [
        f"### {when} — tls.py, {args.duration:g}s x {args.rounds} rounds, "
        f"{args.connections} keep-alive connections, {args.handshake_clients} handshake clients",
        "",
        f"Commit {machine['commit']}; {machine['cpu']} ({machine['cores']} cores), kernel "
        f"{machine['kernel']}, Python {machine['python']} ({machine['python_ssl']}), "
        f"{machine['nginx']} ({machine['nginx_openssl']}); load average at start "
        f"{machine['loadavg_at_start'][0]:.2f}. Negotiated: {negotiated}. Load generator on "
        "CPU 0; upstream and server on CPU 1. Medians over rounds.",
        "",
    ]
    for mode in MODES:
        rows = table_rows(mode, runs, names)
        if rows:
            parts += [f"**{mode}**", "", proxy.render(rows, headers(mode), markdown=True), ""]
    if jwt:
        parts += [proxy.render(jwt_rows(jwt), JWT_HEADERS, markdown=True), ""]
    parts += ["```", ratios_text, "```", "", proxy.render(targets, TARGET_HEADERS, markdown=True)]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# py-spy: where apiward's time goes under each load
# ---------------------------------------------------------------------------------------------


def py_spy_profile(
    procs: Processes,
    server: Server,
    upstream: Server,
    material: Path,
    tmp: Path,
    args: argparse.Namespace,
) -> dict[str, list[tuple[str, float]]]:
    """Record apiward with py-spy (``--native``, so OpenSSL and the kernel entry points
    show as C frames) during one run of each mode; see :func:`top_frames`."""
    spy = proxy.find_tool("py-spy") or str(proxy.VENV_BIN / "py-spy")
    out: dict[str, list[tuple[str, float]]] = {}
    for mode in MODES:
        raw = tmp / f"py-spy-{mode}.txt"
        argv = [
            spy,
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            f"{args.py_spy:g}",
            "--rate",
            "250",
            "--native",
            "--format",
            "raw",
            "--output",
            str(raw),
        ]
        log = tmp / "py-spy.log"
        load = threading.Thread(
            target=measure,
            args=(procs, mode, server, upstream, material, 0, args.py_spy + 3, args),
            daemon=True,
        )
        load.start()
        time.sleep(1.0)  # the load's connections are open by now: the window is steady state
        spy_proc = procs.start(argv, log, LOAD_CPU)
        try:
            spy_proc.wait(args.py_spy + 30)
        finally:
            procs.stop(spy_proc)
            load.join()
        if not raw.exists():
            raise BenchError(f"py-spy wrote nothing:\n{proxy.log_tail(log)}")
        out[mode] = top_frames(raw.read_text())
        keep = proxy.OUT_DIR / f"tls-py-spy-{mode}-{datetime.now():%Y%m%d-%H%M%S}.txt"
        proxy.OUT_DIR.mkdir(parents=True, exist_ok=True)
        keep.write_text(raw.read_text())
        print(f"[py-spy] {mode}: collapsed stacks in {keep.relative_to(proxy.REPO_DIR)}")
    return out


def top_frames(collapsed: str, count: int = 25) -> list[tuple[str, float]]:
    """The share of samples in which each function is on the stack (its own time and that of
    everything it calls), from py-spy's collapsed stacks (``a;b;c N``). Only Python
    functions, shared-library functions (OpenSSL, libc: system calls) and uvloop's TLS
    layer (``SSLProtocol``) are listed; line numbers are dropped, native frames without a
    symbol are grouped by library, and frames in almost every sample are left out."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        total += int(samples)
        for name in {frame_name(frame) for frame in stack.split(";")} - {None}:
            inclusive[name] += int(samples)
    shares = [(name, n * 100 / total) for name, n in inclusive.most_common()]
    return [(name, share) for name, share in shares if share < 90][:count]


def frame_name(frame: str) -> str | None:
    """``f (path.py:12)`` -> ``f (path.py)``; ``0x7f00 (libssl.so.3)`` -> ``[libssl.so.3]``;
    None for the event loop's own C frames (libuv, Cython glue, CPython internals)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    if ".so" in where:
        return f"[{where}]" if name.startswith("0x") else f"{name} ({where})"
    if where.endswith(".py") or name.startswith("SSLProtocol"):
        return f"{name} ({where})"
    return None


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def jwt_figures(
    private: dict[str, Any], jwks: Path, args: argparse.Namespace, pin: bool
) -> dict[str, Any]:
    """bench/jwt_verify.py's RS256 figures, in this process, on CPU 1 (idle by then)."""
    import jwt_verify

    previous = os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {SERVER_CPU})
    try:
        return jwt_verify.bench("RS256", private, jwks, args.jwt_tokens, args.jwt_rounds)
    finally:
        os.sched_setaffinity(0, previous)


def benchmark(procs: Processes, tmp: Path, names: list[str], args: argparse.Namespace) -> int:
    machine_start_load = os.getloadavg()
    per_round = len(names) * 2 * (args.duration + 1.5)
    estimate = len(names) * (args.warmup + 2) + args.rounds * per_round + 5
    print(
        f"[bench] {', '.join(names)}: {args.rounds} rounds x {len(MODES)} modes x "
        f"{args.duration:g}s; {args.connections} keep-alive connections, "
        f"{args.handshake_clients} handshake clients; about {estimate / 60:.1f} min; "
        f"load average {machine_start_load[0]:.2f}"
    )
    material, private = make_material(tmp / "material")
    material_file = material.save(tmp / "material.json")
    upstream = proxy.start_server(procs, "upstream", proxy.upstream_command, Env(tmp, 0))
    print(f"[start] upstream nginx on port {upstream.port}")
    env = Env(tmp, upstream.port)
    servers: dict[str, Server] = {}
    facts: dict[str, str] = {}
    failures: dict[str, str] = {}
    for name in names:
        try:
            servers[name], facts[name] = start_tls_server(procs, name, env, material)
        except BenchError as exc:
            failures[name] = str(exc)
            print(f"[start] {name}: FAILED — {exc}")
            continue
        rss = proxy.mib(proxy.tree_memory_kb(servers[name].pid, "VmRSS"))
        print(
            f"[start] {name}: ready on port {servers[name].port} ({facts[name]}), "
            f"refuses a client without a certificate; idle RSS {rss} MiB"
        )
    if not servers:
        raise BenchError("no server started")

    if args.warmup > 0:
        for server in servers.values():
            measure(procs, "keep-alive", server, upstream, material_file, 0, args.warmup, args)

    runs: list[Run] = []
    for round_no in range(1, args.rounds + 1):
        for mode in MODES:
            for server in servers.values():
                if not server.alive():
                    continue
                run = measure(
                    procs, mode, server, upstream, material_file, round_no, args.duration, args
                )
                runs.append(run)
                print(progress(run, args.rounds), flush=True)

    jwt = None
    if not args.skip_jwt:
        print(f"[jwt] RS256: {args.jwt_rounds} rounds x {args.jwt_tokens} tokens")
        jwt = jwt_figures(private, material.jwks, args, proxy.server_cpus_available())

    profile = None
    if args.py_spy and "apiward" in servers:
        profile = py_spy_profile(procs, servers["apiward"], upstream, material_file, tmp, args)

    machine = machine_info(facts)
    machine["loadavg_at_start"] = machine_start_load
    ordered = [n for n in names if n in servers]
    ratios = ratio_table(runs)
    ratios_text = "\n".join(ratio_lines(ratios)) or "(no ratios: needs nginx and apiward)"
    targets = target_rows(ratios, jwt)
    for mode in MODES:
        rows = table_rows(mode, runs, ordered)
        if rows:
            print(f"\n{mode}\n" + proxy.render(rows, headers(mode), markdown=False))
    if jwt:
        print("\n" + proxy.render(jwt_rows(jwt), JWT_HEADERS, markdown=False))
    print("\nRatios (medians; rate > 1 is better, the others < 1 is better):\n" + ratios_text)
    print("\n" + proxy.render(targets, TARGET_HEADERS, markdown=False))
    if profile:
        for mode, frames in profile.items():
            print(f"\napiward under {mode}: share of samples with the frame on the stack")
            for frame, share in frames:
                print(f"  {share:5.1f}%  {frame}")
    for name, why in failures.items():
        print(f"\n{name} failed: {why}")
    payload = {
        "kind": "tls",
        "args": vars(args),
        "machine": machine,
        "runs": [asdict(r) for r in runs],
        "ratios": ratios,
        "jwt_rs256": jwt,
        "py_spy": profile,
    }
    path = proxy.write_json("tls", payload)
    print(f"\nRaw results: {path.relative_to(proxy.REPO_DIR)}")
    print("\n---- markdown for bench/RESULTS.md ----")
    print(markdown_block(args, machine, runs, ordered, ratios_text, jwt, targets))
    print("---- end ----")
    return 0 if not failures and all(r.error is None for r in runs) else 1


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections")
    parser.add_argument(
        "--keepalive-clients",
        type=int,
        default=1,
        help="load processes sharing the keep-alive connections",
    )
    parser.add_argument(
        "--handshake-clients",
        type=int,
        default=16,
        help="load processes, each one connection at a time",
    )
    parser.add_argument("--warmup", type=float, default=1, help="unmeasured seconds per server")
    parser.add_argument("--only", help=f"comma-separated servers from: {', '.join(COMMANDS)}")
    parser.add_argument("--jwt-tokens", type=int, default=300, help="JWT calls per round")
    parser.add_argument("--jwt-rounds", type=int, default=3, help="JWT micro-benchmark rounds")
    parser.add_argument("--skip-jwt", action="store_true", help="no JWT micro-benchmark")
    parser.add_argument(
        "--py-spy",
        type=float,
        default=0,
        metavar="SECONDS",
        help="after the rounds, profile apiward under each load",
    )
    # the load generator's own mode, started by the benchmark on CPU 0
    parser.add_argument("--load", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--material", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--watch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be positive")
    if args.handshake_clients < 1 or not 1 <= args.keepalive_clients <= args.connections:
        parser.error("--handshake-clients ≥ 1 and 1 ≤ --keepalive-clients ≤ --connections")
    return args


def select_names(only: str | None) -> list[str]:
    return proxy.parse_only(only, COMMANDS, "server") if only else list(SUT_NAMES)


def check_prerequisites(args: argparse.Namespace) -> None:
    """Tools and libraries, each missing one with what to run."""
    proxy.ensure_tools(["nginx", "taskset"])
    if not Path(proxy.apiward_binary()).exists():
        raise BenchError(
            "the apiward command is missing; install the project: make bench "
            "(or .venv/bin/pip install -e '.[test,bench]')"
        )
    for module in ("cryptography", "jwt", "apiward"):
        try:
            __import__(module)
        except ImportError:
            raise BenchError(
                f"Python module {module!r} is missing from {sys.executable}; "
                "install with: .venv/bin/pip install -e '.[test,bench]'"
            ) from None
    if args.py_spy and not (proxy.find_tool("py-spy") or (proxy.VENV_BIN / "py-spy").exists()):
        raise BenchError("--py-spy needs py-spy: .venv/bin/pip install py-spy")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load:
        return load_main(args)

    def prepare() -> list[str]:
        names = select_names(args.only)
        check_prerequisites(args)
        return names

    return proxy.run_bench(prepare, lambda procs, tmp, names: benchmark(procs, tmp, names, args),
                           "apiward-bench-tls-")


if __name__ == "__main__":
    sys.exit(main())
