"""Flood benchmark: apiward beside nginx as rate-limiting proxies, in front of one upstream.

    .venv/bin/python bench/floods.py [--scenarios fairness,slow,accuracy,cost]
                                     [--duration 15] [--rounds 3] [--only nginx,apiward]

Both proxies limit each client address to ``--limit``/s with a burst of ``--burst``
(nginx: ``limit_req_zone $binary_remote_addr`` + ``limit_req … nodelay`` + ``limit_conn``;
apiward: the ``ratelimit`` check keyed on ``ip``) in front of bench/proxy.py's upstream
nginx. Clients are told apart by their source address: each binds its sockets to its own
loopback address (127.0.0.2, 127.0.0.3, …). The scenarios:

- ``fairness``: 20 well-behaved clients under their limit, alone (baseline) and beside one
  abusive client at 20x its limit: their success share and their p99 latency;
- ``slow``: slowloris (slowhttptest -H) and slow body (-B) with 2,000+ connections while
  the well-behaved clients call: their success share, and the attack's connections held;
- ``accuracy``: 60 s at 3x a limit through 2 apiward gateways of 2 workers sharing one
  Redis: admitted calls against limit x duration + burst (nginx: one node, a reference);
- ``cost``: the ratelimit check's ``run`` timed on a built Request, memory and Redis stores.

The servers (upstream, proxies, Redis) run on CPU 1; the load generator
(bench/floods_load.py) and slowhttptest on CPU 0. Runs are interleaved and the tables
give medians. See bench/README.md for the method and the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import inspect
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy  # (bench/proxy.py: upstream, processes, pinning, /proc, tables)
from proxy import LOAD_CPU, SERVER_CPU, BenchError, Env, Processes, Server

BENCH_DIR = proxy.BENCH_DIR
SCENARIOS = ("fairness", "slow", "accuracy", "cost")
SUT_NAMES = ("nginx", "apiward")
ACCURACY_SUTS = ("apiward-redis", "apiward-memory", "nginx", "nginx-2nodes")
LOAD_GRACE = 60.0  # seconds a load run may take beyond its window (connecting, draining)
REDIS_READY = 10.0
ABUSER_IP = "127.0.0.2"
GOOD_FIRST = 3  # well-behaved client i binds 127.0.0.(3 + i)
PROBE_IPS = ("127.0.0.200", "127.0.0.201")  # the per-address sanity check
ACCURACY_IP_BASE = "127.0.1."  # a fresh key for every accuracy run
SLOW_ATTACKER_IP = "127.0.0.1"  # slowhttptest cannot bind: it comes from 127.0.0.1
TARGETS = {  # the words
    "good_ok_under_attack": 0.999,
    "good_p99_ratio": 2.0,
    "good_ok_under_slow": 0.99,
    "accuracy_pct": 5.0,
}
proxy.DEBIAN_PACKAGES.update({"slowhttptest": "slowhttptest", "redis-server": "redis-server"})


# ---------------------------------------------------------------------------------------------
# The proxies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The per-client limit both proxies enforce: ``rate`` calls per second with a burst of
    ``burst``; apiward keeps its counters in ``store``."""

    rate: int
    burst: int
    store: str = "memory://"
    workers: int = 1
    conn_per_ip: int = 100  # nginx's limit_conn (apiward: max_connections_per_ip 0)


def nginx_limit_command(env: Env, port: int, policy: Policy, name: str = "nginx") -> list[str]:
    """nginx as a rate-limiting reverse proxy: per-address ``limit_req`` (nodelay burst, 429)
    and ``limit_conn``, nginx's default timeouts (proxy.py's http block sets a 300 s
    keep-alive; the server block puts back the default 75 s). Refusals are logged at
    ``info``, below the error log's level, as apiward's events are off."""
    block = f"""\
    limit_req_zone $binary_remote_addr zone=perclient:10m rate={policy.rate}r/s;
    limit_conn_zone $binary_remote_addr zone=peraddr:10m;
    upstream backend {{
        server 127.0.0.1:{env.upstream_port};
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_timeout 75s;
        limit_req zone=perclient burst={policy.burst} nodelay;
        limit_req_status 429;
        limit_req_log_level info;
        limit_conn peraddr {policy.conn_per_ip};
        limit_conn_status 429;
        limit_conn_log_level info;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""
    return proxy.nginx_command(env, name, block)


def apiward_limit_config(env: Env, port: int, policy: Policy) -> str:
    return f"""\
listen: 127.0.0.1:{port}
workers: {policy.workers}
limits: {{max_connections: 10000, max_connections_per_ip: 0, header_timeout: 10s, \
body_timeout: 30s, min_body_rate: 1KiB}}
events: {{stdout: false}}
apis:
  - name: default
    upstream: {{url: "{env.upstream_url}"}}
    checks:
      ratelimit:
        store: {policy.store}
        on_store_failure: fail_open
        headers: true
        ban: null
        rules:
          - name: per-client
            key: ip
            limits: [{{rate: "{policy.rate}/s", burst: {policy.burst}}}]
"""


def apiward_limit_command(env: Env, port: int, policy: Policy, name: str = "apiward") -> list[str]:
    return proxy.apiward_config_command(env, name, apiward_limit_config(env, port, policy))


BUILDERS: dict[str, Callable[..., list[str]]] = {
    "nginx": nginx_limit_command,
    "apiward": apiward_limit_command,
}


def start_proxy(procs: Processes, kind: str, name: str, env: Env, policy: Policy) -> Server:
    def build(env: Env, port: int) -> list[str]:
        return BUILDERS[kind](env, port, policy, name)

    server = proxy.start_server(procs, name, build, env)
    rss = proxy.mib(proxy.tree_memory_kb(server.pid, "VmRSS"))
    print(f"[start] {name}: ready on port {server.port}, idle RSS {rss} MiB", flush=True)
    return server


PROBLEM_WORDS = ("error", "traceback", "exception", "warning", "critical", "alert", "emerg")
# expected here: the hard open-file limit is 20,000, below apiward's 2 x 10,000 + 256
EXPECTED_WARNINGS = ("open-file limit",)


def log_problems(path: Path, limit: int = 20) -> list[str]:
    """The lines of a server's log that look like trouble (the first ``limit``)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = [line for line in lines if any(w in line.lower() for w in PROBLEM_WORDS)
             and not any(known in line for known in EXPECTED_WARNINGS)]
    return found[:limit] + ([f"… {len(found) - limit} more"] if len(found) > limit else [])


def retire(procs: Processes, servers: dict[str, Server], failures: dict[str, str]
           ) -> dict[str, list[str]]:
    """Stop each server; note the ones that died, and what their logs complained of."""
    problems = {}
    for name, server in servers.items():
        if not server.alive():
            failures.setdefault(name, f"exited (code {server.proc.returncode})\n"
                                      f"{proxy.log_tail(server.log)}")
        procs.stop(server.proc)
        found = log_problems(server.log)
        if found:
            problems[name] = found
            print(f"[log] {server.name}: {len(found)} line(s) of trouble, first: {found[0]}",
                  flush=True)
    return problems


def get_from(port: int, ip: str, conn: http.client.HTTPConnection | None = None
             ) -> tuple[http.client.HTTPConnection, int, list[tuple[str, str]]]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5,
                                              source_address=(ip, 0))
    conn.request("GET", "/", headers={"User-Agent": "apiward-bench-floods"})
    response = conn.getresponse()
    response.read()
    return conn, response.status, response.getheaders()


def check_per_address(server: Server, policy: Policy) -> dict[str, Any]:
    """Sanity: ``burst + 10`` quick calls from one address get 429s after the burst, and a
    call from another address still gets a 2xx. Returns the first 429's headers."""
    statuses: dict[int, int] = {}
    first_429: list[tuple[str, str]] = []
    conn = None
    try:
        for _ in range(policy.burst + 10):
            conn, status, headers = get_from(server.port, PROBE_IPS[0], conn)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 429 and not first_429:
                first_429 = headers
        _, other, _ = get_from(server.port, PROBE_IPS[1])
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{server.name}: the per-address check failed: {exc}") from exc
    finally:
        if conn is not None:
            conn.close()
    if not statuses.get(429):
        raise BenchError(f"{server.name}: {policy.burst + 10} quick calls from one address got "
                         f"no 429 ({statuses}): is the rate limit on?")
    if not 200 <= other < 300:
        raise BenchError(f"{server.name}: a call from a second address got {other} after the "
                         "first was limited: the limit is not per address")
    return {"statuses": statuses, "other_address": other, "first_429_headers": first_429}


# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(procs: Processes, tmp: Path) -> Server:
    """Our own redis-server on a free port: no persistence, on the servers' core."""
    log = tmp / "redis.log"
    for _attempt in range(2):
        port = proxy.free_port()
        argv = [proxy.find_tool("redis-server") or "redis-server", "--port", str(port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(tmp), "--daemonize", "no"]
        proc = procs.start(argv, log, SERVER_CPU)
        deadline = time.monotonic() + REDIS_READY
        while time.monotonic() < deadline and proc.poll() is None:
            if redis_ping(port):
                print(f"[start] redis-server on port {port}", flush=True)
                return Server("redis", port, proc.pid, log, proc)
            time.sleep(0.05)  # poll interval, not a readiness guess
        procs.stop(proc)
    raise BenchError(f"redis-server did not answer PING\n{proxy.log_tail(log)}")


# ---------------------------------------------------------------------------------------------
# The load generator (bench/floods_load.py, on CPU 0)
# ---------------------------------------------------------------------------------------------


def client(name: str, group: str, ip: str, rate: float, ports: Sequence[int],
           connections: int = 1, max_connections: int = 64) -> dict[str, Any]:
    return {"name": name, "group": group, "ip": ip, "rate": rate, "ports": list(ports),
            "connections": connections, "max_connections": max_connections}


def good_clients(args: argparse.Namespace, port: int) -> list[dict[str, Any]]:
    return [
        client(f"good-{i + 1}", "good", f"127.0.0.{GOOD_FIRST + i}", args.good_rate, [port],
               connections=1, max_connections=16)
        for i in range(args.good_clients)
    ]


_spec_counter = iter(range(1_000_000))


def run_load(procs: Processes, tmp: Path, clients: list[dict[str, Any]], duration: float,
             watch: Sequence[int], timeout: float = 5.0) -> dict[str, Any]:
    """One window of open-loop load; the generator's JSON (groups, CPU of ``watch``)."""
    spec = {"duration": duration, "timeout": timeout, "path": "/", "watch": list(watch),
            "clients": clients}
    path = tmp / f"load-{next(_spec_counter)}.json"
    path.write_text(json.dumps(spec))
    argv = [sys.executable, str(BENCH_DIR / "floods_load.py"), str(path)]
    code, out = procs.run(argv, LOAD_CPU, duration + LOAD_GRACE)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        raise BenchError(f"load generator exited with {code}:\n{out[-2000:]}")
    result = json.loads(lines[-1])
    if result.get("error"):
        raise BenchError(result["error"])
    return result


def per_call_us(cpu_seconds: float, result: dict[str, Any]) -> float | None:
    answered = sum(g["answered"] for g in result["groups"].values())
    return cpu_seconds * 1e6 / answered if answered else None


# ---------------------------------------------------------------------------------------------
# Scenario 1: one abusive client beside 20 well-behaved ones
# ---------------------------------------------------------------------------------------------


@dataclass
class FairRun:
    sut: str
    mode: str  # "baseline" (well-behaved only) or "attack" (+ the abusive client)
    round: int
    good_calls: int = 0
    good_ok: int = 0
    good_ok_share: float | None = None
    good_p50_ms: float | None = None
    good_p99_ms: float | None = None
    good_max_ms: float | None = None
    good_status: dict[str, int] = field(default_factory=dict)
    good_errors: dict[str, int] = field(default_factory=dict)
    abuser_calls: int = 0
    abuser_admitted_per_s: float | None = None
    abuser_refused_per_s: float | None = None
    abuser_p50_ms: float | None = None  # mostly 429s: what a refusal costs the client
    abuser_status: dict[str, int] = field(default_factory=dict)
    abuser_errors: dict[str, int] = field(default_factory=dict)
    sut_cpu_pct: float | None = None  # of one core, the SUT's process tree
    sut_cpu_us_per_call: float | None = None
    server_core_busy_pct: float | None = None
    load_core_busy_pct: float | None = None
    send_lag_p99_ms: float | None = None
    abuser_connections: int = 0  # opened by the abuser: many means the SUT closed them
    sut_rss_kb: int = 0  # after the run
    error: str | None = None


def fair_run(procs: Processes, tmp: Path, server: Server, upstream: Server, mode: str,
             round_no: int, args: argparse.Namespace, duration: float) -> FairRun:
    clients = good_clients(args, server.port)
    if mode == "attack":
        clients.append(client("abuser", "abuser", ABUSER_IP, args.limit * args.abuse_factor,
                              [server.port], connections=4, max_connections=64))
    run = FairRun(server.name, mode, round_no)
    try:
        result = run_load(procs, tmp, clients, duration, [server.pid, upstream.pid])
    except BenchError as exc:
        run.error = str(exc)
        return run
    good = result["groups"]["good"]
    run.good_calls, run.good_ok, run.good_ok_share = good["calls"], good["ok"], good["ok_share"]
    run.good_p50_ms = good["latency_ms"]["p50"]
    run.good_p99_ms = good["latency_ms"]["p99"]
    run.good_max_ms = good["latency_ms"]["max"]
    run.good_status, run.good_errors = good["status"], good["errors"]
    run.send_lag_p99_ms = good["send_lag_ms"]["p99"]
    abuser = result["groups"].get("abuser")
    if abuser:
        run.abuser_calls = abuser["calls"]
        admitted = sum(n for s, n in abuser["status"].items() if s.startswith("2"))
        run.abuser_admitted_per_s = admitted / duration
        run.abuser_refused_per_s = abuser["status"].get("429", 0) / duration
        run.abuser_p50_ms = abuser["latency_ms"]["p50"]
        run.abuser_status, run.abuser_errors = abuser["status"], abuser["errors"]
        run.abuser_connections = abuser["connections_opened"]
    run.sut_rss_kb = proxy.tree_memory_kb(server.pid, "VmRSS")
    sut_cpu = result["cpu_seconds"][0]
    run.sut_cpu_pct = sut_cpu / result["window"] * 100
    run.sut_cpu_us_per_call = per_call_us(sut_cpu, result)
    run.server_core_busy_pct = result["server_core_busy_pct"]
    run.load_core_busy_pct = result["load_core_busy_pct"]
    if not server.alive():
        run.error = f"{server.name} exited during the run (code {server.proc.returncode})"
    return run


def fair_progress(run: FairRun, rounds: int) -> str:
    head = f"[fairness {run.round}/{rounds}] {run.sut:<8} {run.mode:<8}"
    if run.error:
        return f"{head} FAILED: {run.error.splitlines()[0]}"
    text = (f"{head} good {pct(run.good_ok_share, 3)} ok  p50 {fmt(run.good_p50_ms, 2)} ms  "
            f"p99 {fmt(run.good_p99_ms, 2)} ms  SUT CPU {fmt(run.sut_cpu_pct, 0)}%")
    if run.mode == "attack":
        text += (f"  abuser {fmt(run.abuser_admitted_per_s)}/s admitted, "
                 f"{fmt(run.abuser_refused_per_s, 0)}/s refused")
    bad = {**run.good_errors, **{s: n for s, n in run.good_status.items() if s[0] != "2"}}
    return text + (f"  GOOD FAILURES {bad}" if bad else "")


def scenario_fairness(procs: Processes, tmp: Path, env: Env, upstream: Server, names: list[str],
                      args: argparse.Namespace) -> dict[str, Any]:
    policy = Policy(args.limit, args.burst)
    servers: dict[str, Server] = {}
    checks: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in names:
        try:
            servers[name] = start_proxy(procs, name, name, env, policy)
            checks[name] = check_per_address(servers[name], policy)
            fields = {k.lower(): v for k, v in checks[name]["first_429_headers"]}
            shown = "; ".join(f"{k}: {fields[k]}" for k in ("retry-after", "ratelimit-policy",
                                                              "ratelimit") if k in fields)
            print(f"[fairness] {name}: per-address limit on {checks[name]['statuses']}, "
                  f"429 with {shown or 'no Retry-After / RateLimit fields'}", flush=True)
        except BenchError as exc:
            failures[name] = str(exc)
            print(f"[fairness] {name}: FAILED — {str(exc).splitlines()[0]}", flush=True)
    for server in servers.values():  # unmeasured: connections, caches, the JIT-less warm-up
        if args.warmup > 0:
            fair_run(procs, tmp, server, upstream, "attack", 0, args, args.warmup)
    runs: list[FairRun] = []
    for round_no in range(1, args.rounds + 1):
        for mode in ("baseline", "attack"):
            order = list(servers.values())
            if round_no % 2 == 0:
                order.reverse()
            for server in order:
                if not server.alive():
                    continue
                run = fair_run(procs, tmp, server, upstream, mode, round_no, args, args.duration)
                runs.append(run)
                print(fair_progress(run, args.rounds), flush=True)
    logs = retire(procs, servers, failures)
    return {"policy": asdict(policy), "runs": [asdict(r) for r in runs], "checks": checks,
            "failures": failures, "log_problems": logs}


FAIR_COLUMNS = ("good_ok_share", "good_p50_ms", "good_p99_ms", "good_max_ms",
                "abuser_admitted_per_s", "abuser_refused_per_s", "abuser_p50_ms", "sut_cpu_pct",
                "sut_cpu_us_per_call", "server_core_busy_pct", "load_core_busy_pct",
                "send_lag_p99_ms")


def fair_medians(runs: list[dict[str, Any]], sut: str, mode: str) -> dict[str, Any] | None:
    mine = [r for r in runs if r["sut"] == sut and r["mode"] == mode and not r["error"]]
    if not mine:
        return None
    out: dict[str, Any] = {c: proxy.median_of(r[c] for r in mine) for c in FAIR_COLUMNS}
    out["runs"] = len(mine)
    out["sut_rss_kb"] = max(r["sut_rss_kb"] for r in mine)
    out["abuser_connections"] = max(r["abuser_connections"] for r in mine)
    out["good_calls"] = sum(r["good_calls"] for r in mine)
    out["good_failed"] = sum(r["good_calls"] - r["good_ok"] for r in mine)
    return out


FAIR_HEADERS = ("SUT", "mode", "good ok %", "good failed", "good p50 ms", "good p99 ms",
                "good max ms", "abuser 2xx/s", "abuser 429/s", "abuser p50 ms", "abuser conns",
                "SUT CPU %", "SUT µs/call", "SUT RSS MiB", "CPU1 busy %", "CPU0 busy %", "runs")


def fair_rows(data: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    rows = []
    for name in names:
        for mode in ("baseline", "attack"):
            m = fair_medians(data["runs"], name, mode)
            if m is None:
                continue
            attack = mode == "attack"
            rows.append([
                name, mode, pct(m["good_ok_share"], 3),
                f"{m['good_failed']}/{m['good_calls']}",
                fmt(m["good_p50_ms"], 2), fmt(m["good_p99_ms"], 2), fmt(m["good_max_ms"], 1),
                fmt(m["abuser_admitted_per_s"]) if attack else "-",
                fmt(m["abuser_refused_per_s"], 0) if attack else "-",
                fmt(m["abuser_p50_ms"], 2) if attack else "-",
                str(m["abuser_connections"]) if attack else "-",
                fmt(m["sut_cpu_pct"], 1), fmt(m["sut_cpu_us_per_call"], 1),
                proxy.mib(m["sut_rss_kb"]),
                fmt(m["server_core_busy_pct"], 0), fmt(m["load_core_busy_pct"], 0),
                str(m["runs"]),
            ])
    return rows


def fair_ratios(data: dict[str, Any], names: Sequence[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    medians = {(n, mode): fair_medians(data["runs"], n, mode)
               for n in names for mode in ("baseline", "attack")}
    for name in names:
        base, attack = medians[(name, "baseline")], medians[(name, "attack")]
        if base and attack:
            out[f"{name} good p99 attack/baseline"] = ratio(attack["good_p99_ms"],
                                                            base["good_p99_ms"])
    for mode in ("baseline", "attack"):
        a, n = medians.get(("apiward", mode)), medians.get(("nginx", mode))
        if a and n:
            out[f"apiward/nginx good p99 ({mode})"] = ratio(a["good_p99_ms"], n["good_p99_ms"])
            out[f"apiward/nginx SUT µs/call ({mode})"] = ratio(a["sut_cpu_us_per_call"],
                                                               n["sut_cpu_us_per_call"])
    return out


# ---------------------------------------------------------------------------------------------
# Scenario 2: slowloris and slow body with slowhttptest
# ---------------------------------------------------------------------------------------------

SLOW_MODES = {"slowloris": "-H", "slow-body": "-B"}


def established_from(port: int, ip: str = SLOW_ATTACKER_IP) -> int:
    """Established TCP connections to local ``port`` from ``ip`` (the server's side of
    each), from /proc/net/tcp: the attack's connections the SUT holds (or has queued)."""
    local = f":{port:04X}"
    remote = "".join(f"{int(part):02X}" for part in reversed(ip.split("."))) + ":"
    seen = set()  # /proc/net/tcp is read in pages: an entry can show twice under churn
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split(None, 4)
            if fields[3] == "01" and fields[1].endswith(local) and fields[2].startswith(remote):
                seen.add(fields[2])
    return len(seen)


class ConnectionWatch:
    """Samples :func:`established_from` every ``every`` seconds in a thread."""

    def __init__(self, port: int, every: float = 1.0) -> None:
        self.port = port
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.began = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.began, established_from(self.port)))
            self._stop.wait(self.every)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def latest(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def between(self, start: float, end: float) -> list[int]:
        return [n for t, n in self.samples if start <= t <= end]


@dataclass
class SlowRun:
    sut: str
    attack: str
    round: int
    attack_connections: int = 0  # -c
    held_at_start: int = 0  # attack connections established when the window opened
    held_peak: int = 0
    held_at_end: int = 0
    closed_by_sut: int | None = None  # slowhttptest's "closed" count when the window ended
    ramp_seconds: float | None = None
    good_calls: int = 0
    good_ok: int = 0
    good_ok_share: float | None = None
    good_p50_ms: float | None = None
    good_p99_ms: float | None = None
    good_status: dict[str, int] = field(default_factory=dict)
    good_errors: dict[str, int] = field(default_factory=dict)
    sut_rss_peak_kb: int = 0
    sut_cpu_pct: float | None = None
    load_core_busy_pct: float | None = None
    send_lag_p99_ms: float | None = None
    good_timeline: list[list[float]] = field(default_factory=list)  # s, calls, 2xx, max ms
    slowhttptest_csv: list[list[int]] = field(default_factory=list)  # s, closed, pending,
    samples: list[tuple[float, int]] = field(default_factory=list)  # connected, available
    error: str | None = None


def slowhttptest_argv(mode: str, port: int, args: argparse.Namespace, length: float,
                      prefix: Path) -> list[str]:
    argv = [proxy.find_tool("slowhttptest") or "slowhttptest", SLOW_MODES[mode],
            "-c", str(args.slow_connections), "-r", str(args.slow_rate),
            "-i", f"{args.slow_interval:g}", "-x", "24", "-l", str(int(length)),
            "-p", "3", "-u", f"http://127.0.0.1:{port}/", "-g", "-o", str(prefix)]
    if mode == "slow-body":
        argv += ["-s", "65536", "-t", "POST"]
    return argv


def read_slowhttptest_csv(path: Path) -> list[list[int]]:
    """slowhttptest's per-second statistics (``-g -o``): seconds since it started, and its
    connections closed, pending, connected, and its "service available" column."""
    rows = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines()[1:]:
            cells = line.strip().split(",")
            if len(cells) >= 4 and all(c.strip().isdigit() for c in cells):
                rows.append([int(c) for c in cells])
    return rows


def slow_run(procs: Processes, tmp: Path, server: Server, mode: str, round_no: int,
             args: argparse.Namespace) -> SlowRun:
    run = SlowRun(server.name, mode, round_no, attack_connections=args.slow_connections)
    ramp_limit = args.slow_connections / args.slow_rate + 10
    length = ramp_limit + args.slow_duration + 20
    prefix = tmp / f"slow-{server.name}-{mode}-{round_no}"
    log = tmp / f"slowhttptest-{server.name}-{mode}-{round_no}.log"
    with ConnectionWatch(server.port) as watch:
        # niced: slowhttptest spins on its 2,000 sockets (~90% of CPU 0), and the load
        # generator beside it should not be the one that waits
        argv = ["nice", "-n", "10", *slowhttptest_argv(mode, server.port, args, length, prefix)]
        attacker = procs.start(argv, log, LOAD_CPU)
        try:
            began = time.monotonic()
            wanted = int(args.slow_connections * 0.95)
            while time.monotonic() - began < ramp_limit and attacker.poll() is None:
                if established_from(server.port) >= wanted:
                    break
                time.sleep(0.2)  # poll interval while the attack ramps up
            run.ramp_seconds = time.monotonic() - began
            window_start = time.monotonic() - watch.began
            run.held_at_start = established_from(server.port)
            try:
                result = run_load(procs, tmp, good_clients(args, server.port),
                                  args.slow_duration, [server.pid])
            except BenchError as exc:
                run.error = str(exc)
                result = None
            window_end = time.monotonic() - watch.began
            run.held_at_end = established_from(server.port)
            during = watch.between(window_start, window_end)
            run.held_peak = max([run.held_at_start, run.held_at_end, *during])
            if attacker.poll() not in (None, 0):  # 0: every one of its connections closed
                run.error = run.error or f"slowhttptest exited with {attacker.returncode}"
        finally:
            procs.stop(attacker)
        deadline = time.monotonic() + 10  # the attack's connections go before the next run
        while established_from(server.port) and time.monotonic() < deadline:
            time.sleep(0.2)
    run.samples = watch.samples
    run.slowhttptest_csv = read_slowhttptest_csv(prefix.with_suffix(".csv"))
    window_end_s = run.ramp_seconds + args.slow_duration if run.ramp_seconds else 0
    closed = [row[1] for row in run.slowhttptest_csv if row[0] <= window_end_s]
    run.closed_by_sut = max(closed) if closed else None
    if not run.slowhttptest_csv:
        run.error = run.error or f"slowhttptest wrote no statistics\n{proxy.log_tail(log)}"
    run.sut_rss_peak_kb = proxy.tree_memory_kb(server.pid, "VmHWM")
    if result is not None:
        good = result["groups"]["good"]
        run.good_calls, run.good_ok = good["calls"], good["ok"]
        run.good_ok_share = good["ok_share"]
        run.good_p50_ms, run.good_p99_ms = good["latency_ms"]["p50"], good["latency_ms"]["p99"]
        run.good_status, run.good_errors = good["status"], good["errors"]
        run.sut_cpu_pct = result["cpu_seconds"][0] / result["window"] * 100
        run.load_core_busy_pct = result["load_core_busy_pct"]
        run.send_lag_p99_ms = good["send_lag_ms"]["p99"]
        run.good_timeline = good["timeline"]
    if not server.alive():
        run.error = f"{server.name} exited during the attack (code {server.proc.returncode})"
    return run


def slow_progress(run: SlowRun, rounds: int) -> str:
    head = f"[slow {run.round}/{rounds}] {run.sut:<8} {run.attack:<9}"
    text = (f"{head} held {run.held_at_start}/{run.attack_connections} at start "
            f"(ramp {fmt(run.ramp_seconds)} s), peak {run.held_peak}, {run.held_at_end} at end, "
            f"{run.closed_by_sut if run.closed_by_sut is not None else '?'} closed by the SUT; "
            f"good {pct(run.good_ok_share, 2)} ok  p99 {fmt(run.good_p99_ms, 2)} ms")
    bad = {**run.good_errors, **{s: n for s, n in run.good_status.items() if s[0] != "2"}}
    text += f"  GOOD FAILURES {bad}" if bad else ""
    if run.good_timeline:  # the worst second, in seconds since the attack began
        second, _calls, _ok, worst = max(run.good_timeline, key=lambda row: row[3])
        text += f"; worst second {second + (run.ramp_seconds or 0):.0f} s in: max {worst:.0f} ms"
    return text + (f"  ERROR: {run.error.splitlines()[0]}" if run.error else "")


def scenario_slow(procs: Processes, tmp: Path, env: Env, upstream: Server, names: list[str],
                  args: argparse.Namespace) -> dict[str, Any]:
    # The per-client limit is raised out of the attack's way: from one address, 2,000
    # requests would otherwise be refused by the rate limit after their head, and the
    # slow-body attack would measure the rate limit instead of the slow-client defences.
    policy = Policy(args.slow_limit, args.slow_limit)
    servers: dict[str, Server] = {}
    failures: dict[str, str] = {}
    for name in names:
        try:
            servers[name] = start_proxy(procs, name, f"{name}-slow", env, policy)
        except BenchError as exc:
            failures[name] = str(exc)
            print(f"[slow] {name}: FAILED — {str(exc).splitlines()[0]}", flush=True)
    runs: list[SlowRun] = []
    for round_no in range(1, args.slow_rounds + 1):
        for mode in SLOW_MODES:
            for server in servers.values():
                if not server.alive():
                    continue
                run = slow_run(procs, tmp, server, mode, round_no, args)
                run.sut = server.name.removesuffix("-slow")
                runs.append(run)
                print(slow_progress(run, args.slow_rounds), flush=True)
    logs = retire(procs, servers, failures)
    return {"policy": asdict(policy), "runs": [asdict(r) for r in runs], "failures": failures,
            "log_problems": logs}


SLOW_HEADERS = ("SUT", "attack", "connections", "held at start", "held peak", "held at end",
                "closed by SUT", "good ok %", "good failed", "good p50 ms", "good p99 ms",
                "SUT CPU %", "peak RSS MiB", "runs")


def slow_rows(data: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    rows = []
    for name in names:
        for mode in SLOW_MODES:
            mine = [r for r in data["runs"] if r["sut"] == name and r["attack"] == mode]
            if not mine:
                continue

            def med(key: str, runs: list[dict[str, Any]] = mine) -> float | None:
                return proxy.median_of(r[key] for r in runs)

            failed = sum(r["good_calls"] - r["good_ok"] for r in mine)
            calls = sum(r["good_calls"] for r in mine)
            errors = sum(1 for r in mine if r["error"])
            rows.append([
                name, mode, str(mine[0]["attack_connections"]), fmt(med("held_at_start"), 0),
                fmt(med("held_peak"), 0), fmt(med("held_at_end"), 0),
                fmt(med("closed_by_sut"), 0), pct(med("good_ok_share"), 2), f"{failed}/{calls}",
                fmt(med("good_p50_ms"), 2), fmt(med("good_p99_ms"), 2), fmt(med("sut_cpu_pct"), 1),
                proxy.mib(max(r["sut_rss_peak_kb"] for r in mine)),
                str(len(mine)) + (f" ({errors} with errors) !" if errors else ""),
            ])
    return rows


# ---------------------------------------------------------------------------------------------
# Scenario 3: accuracy of a limit shared by several gateways
# ---------------------------------------------------------------------------------------------


@dataclass
class AccuracyRun:
    sut: str
    about: str
    round: int
    limit: int
    burst: int
    duration: float
    offered: int = 0
    admitted: int = 0
    refused: int = 0
    other: dict[str, int] = field(default_factory=dict)
    by_port: dict[str, dict[str, int]] = field(default_factory=dict)
    expected: float = 0.0
    error_pct: float | None = None
    p99_ms: float | None = None
    cpu_seconds: list[float] = field(default_factory=list)
    log_problems: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


def accuracy_servers(procs: Processes, tmp: Path, env: Env, sut: str, policy: Policy,
                     redis: Callable[[], Server]) -> tuple[list[Server], str]:
    """The processes one accuracy run goes through, and what they are."""
    if sut == "apiward-redis":
        store = f"redis://127.0.0.1:{redis().port}/0"
        shared = Policy(policy.rate, policy.burst, store, workers=2)
        servers = [start_proxy(procs, "apiward", f"apiward-redis-{i}", env, shared)
                   for i in (1, 2)]
        return servers, "2 apiward gateways x 2 workers, one Redis"
    if sut == "apiward-memory":
        node = Policy(policy.rate, policy.burst, "memory://", workers=2)
        return ([start_proxy(procs, "apiward", "apiward-memory", env, node)],
                "1 apiward gateway x 2 workers, memory:// (node-wide table)")
    if sut == "nginx":
        return ([start_proxy(procs, "nginx", "nginx-1node", env, policy)],
                "1 nginx node (reference: nginx shares no limit across nodes)")
    if sut == "nginx-2nodes":
        return ([start_proxy(procs, "nginx", f"nginx-node{i}", env, policy) for i in (1, 2)],
                "2 nginx nodes, each with its own limit (nothing shared)")
    raise BenchError(f"unknown accuracy SUT {sut!r}; known: {', '.join(ACCURACY_SUTS)}")


def accuracy_run(procs: Processes, tmp: Path, env: Env, upstream: Server, sut: str,
                 round_no: int, args: argparse.Namespace, redis: Callable[[], Server],
                 ) -> AccuracyRun:
    policy = Policy(args.accuracy_limit, args.accuracy_burst)
    run = AccuracyRun(sut, "", round_no, policy.rate, policy.burst, args.accuracy_duration)
    servers: list[Server] = []
    try:
        servers, run.about = accuracy_servers(procs, tmp, env, sut, policy, redis)
        ip = f"{ACCURACY_IP_BASE}{next(_accuracy_ips)}"  # a key no one has used
        ports = [s.port for s in servers]
        load = [client("over-limit", "client", ip, policy.rate * args.accuracy_factor, ports,
                       connections=4, max_connections=64)]
        result = run_load(procs, tmp, load, args.accuracy_duration,
                          [s.pid for s in servers] + [upstream.pid])
        group = result["groups"]["client"]
        run.offered = group["calls"]
        run.admitted = sum(n for s, n in group["status"].items() if s.startswith("2"))
        run.refused = group["status"].get("429", 0)
        run.other = {k: v for k, v in {**group["status"], **group["errors"]}.items()
                     if not k.startswith("2") and k != "429"}
        run.by_port = group["by_port"]
        run.p99_ms = group["latency_ms"]["p99"]
        run.cpu_seconds = result["cpu_seconds"]
        run.expected = policy.rate * args.accuracy_duration + policy.burst  # one shared limit
        run.error_pct = (run.admitted - run.expected) / run.expected * 100
        dead = [s.name for s in servers if not s.alive()]
        if dead:
            run.error = f"{', '.join(dead)} exited during the run"
    except BenchError as exc:
        run.error = str(exc)
    finally:
        failures: dict[str, str] = {}
        run.log_problems = retire(procs, {s.name: s for s in servers}, failures)
        if failures and not run.error:
            run.error = "; ".join(f"{name} {why}" for name, why in failures.items())
    return run


_accuracy_ips = iter(range(1, 250))


def accuracy_progress(run: AccuracyRun) -> str:
    head = f"[accuracy {run.round}] {run.sut:<14}"
    if run.error and not run.offered:
        return f"{head} FAILED: {run.error.splitlines()[0]}"
    ports = "; ".join(f"port {p}: {c.get('200', 0)} x 200, {c.get('429', 0)} x 429"
                      for p, c in run.by_port.items())
    return (f"{head} {run.admitted} admitted of {run.offered} (expected {run.expected:.0f}: "
            f"{fmt(run.error_pct, 2)}%), {run.refused} refused, other {run.other or 0} [{ports}]"
            + (f"  ERROR: {run.error.splitlines()[0]}" if run.error else ""))


def scenario_accuracy(procs: Processes, tmp: Path, env: Env, upstream: Server,
                      args: argparse.Namespace, redis: Callable[[], Server]) -> dict[str, Any]:
    runs = []
    for round_no in range(1, args.accuracy_rounds + 1):
        for sut in args.accuracy_suts:
            run = accuracy_run(procs, tmp, env, upstream, sut, round_no, args, redis)
            runs.append(run)
            print(accuracy_progress(run), flush=True)
    return {"runs": [asdict(r) for r in runs]}


ACCURACY_HEADERS = ("SUT", "what", "limit", "offered", "admitted", "expected", "error %",
                    "refused 429", "other", "admitted per port", "runs")


def accuracy_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for sut in dict.fromkeys(r["sut"] for r in data["runs"]):
        mine = [r for r in data["runs"] if r["sut"] == sut and r["offered"]]
        if not mine:
            rows.append([sut, "FAILED", *["-"] * (len(ACCURACY_HEADERS) - 2)])
            continue
        m = median_run(mine)
        per_port = " / ".join(str(c.get("200", 0)) for c in m["by_port"].values())
        other = sum(sum(r["other"].values()) for r in mine)
        rows.append([
            sut, m["about"], f"{m['limit']}/s burst {m['burst']} x {m['duration']:g} s",
            str(m["offered"]), str(m["admitted"]), f"{m['expected']:.0f}",
            f"{m['error_pct']:+.2f}", str(m["refused"]), str(other), per_port, str(len(mine)),
        ])
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median error (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["error_pct"])
    return ordered[(len(ordered) - 1) // 2]


# ---------------------------------------------------------------------------------------------
# Scenario 4: what one rate-limit decision costs
# ---------------------------------------------------------------------------------------------


COST_CASES = (("allowed", "1000000/s", 1_000_000), ("refused", "1/min", 1))


def decision_cost(args: argparse.Namespace, redis: Callable[[], Server] | None
                  ) -> dict[str, Any]:
    """The ratelimit check's ``run`` on built Requests, per store, allowed and refused."""
    try:
        from apiward.pipeline.checks import ratelimit  # noqa: F401 (importable at all?)
    except ImportError as exc:
        raise BenchError(f"apiward's ratelimit check is not importable: {exc}") from exc
    stores = {"memory": "memory://"}
    if redis is not None:
        stores["redis"] = f"redis://127.0.0.1:{redis().port}/0"
    out: dict[str, Any] = {}
    for store_name, url in stores.items():
        count = args.cost_calls if store_name == "memory" else args.cost_calls_redis
        for case, rate, burst in COST_CASES:
            out[f"{store_name} {case}"] = run_loop(time_decisions(url, case, rate, burst, count))
        if store_name == "redis":
            out["redis round-trip"] = run_loop(time_round_trip(url, count))
    return out


async def time_round_trip(url: str, count: int) -> dict[str, Any]:
    """The floor under a Redis decision: redis-py's asyncio client (as apiward's store
    uses) sending PING and awaiting PONG, timed as the decisions are."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    clock = time.perf_counter
    times: list[float] = []
    try:
        for phase in ("warm-up", "timed"):
            times.clear()
            for _ in range(count // 10 if phase == "warm-up" else count):
                began = clock()
                await client.ping()
                times.append(clock() - began)
    finally:
        await client.aclose()
    ordered = sorted(times)
    return {"store": url, "calls": count, "allowed": None, "refused": None,
            "median_us": statistics.median(ordered) * 1e6,
            "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
            "mean_us": statistics.fmean(ordered) * 1e6, "timer_us": 0.0}


def run_loop(coroutine: Any) -> Any:
    """On uvloop, as the gateway runs, where available."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def time_decisions(url: str, case: str, rate: str, burst: int, count: int
                         ) -> dict[str, Any]:
    """``count`` decisions, each timed alone: ``run(request, context)`` and, when the check
    leaves its verdict pending on the context (a store over the network), awaiting it — as
    the server does before forwarding. The Context (one per call, with its clock reading)
    is made before the timer starts. "allowed": 1,000 client addresses under a limit they
    never reach; "refused": one address over a limit of 1/min."""
    from apiward.pipeline.check import Deps
    from apiward.pipeline.checks import ratelimit
    from apiward.pipeline.context import Context
    from apiward.pipeline.request import Request
    from apiward.wire.headers import Headers

    config = ratelimit.Config(store=url, on_store_failure="fail_open", headers=True,
                              rules=[{"name": "per-client", "key": "ip",
                                      "limits": [{"rate": rate, "burst": burst}]}])
    deps = Deps()
    check = ratelimit.build(config, "block", deps)
    run = check.run
    ips = ([f"10.{i // 250}.{i % 250}.1" for i in range(1000)] if case == "allowed"
           else ["10.200.0.1"])
    requests = [Request("GET", "/", "", Headers([]), ip, "rid") for ip in ips]
    clock, wall = time.perf_counter, time.time
    times: list[float] = []
    verdicts: dict[bool, int] = {}
    try:
        for phase in ("warm-up", "timed"):
            calls = count // 10 if phase == "warm-up" else count
            times.clear()
            verdicts.clear()
            for i in range(calls):
                context = Context(None, wall())
                began = clock()
                verdict = run(requests[i % len(requests)], context)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                pending = getattr(context, "pending", None)
                if pending is not None:
                    verdict = await pending
                times.append(clock() - began)
                allowed = bool(getattr(verdict, "allowed", False))
                verdicts[allowed] = verdicts.get(allowed, 0) + 1
    finally:
        for closer in deps.closers:
            with contextlib.suppress(Exception):
                await closer()
    ordered = sorted(times)
    overhead = min(-(clock() - clock()) for _ in range(1000))  # a later reading minus one
    return {
        "store": url, "calls": count, "allowed": verdicts.get(True, 0),
        "refused": verdicts.get(False, 0),
        "median_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6,
        "timer_us": overhead * 1e6,
    }


def scenario_cost(args: argparse.Namespace, redis: Callable[[], Server] | None,
                  pin: bool) -> dict[str, Any]:
    """In this process on CPU 0 (Redis, when used, runs on CPU 1)."""
    previous = os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {LOAD_CPU})
    try:
        return decision_cost(args, redis)
    finally:
        os.sched_setaffinity(0, previous)


COST_HEADERS = ("store", "decision", "median µs", "p99 µs", "mean µs", "calls",
                "allowed / refused")


def cost_rows(data: dict[str, Any]) -> list[list[str]]:
    return [
        [name.split()[0], name.split()[1], f"{row['median_us']:.2f}", f"{row['p99_us']:.2f}",
         f"{row['mean_us']:.2f}", f"{row['calls']:,}",
         "-" if row["allowed"] is None else f"{row['allowed']} / {row['refused']}"]
        for name, row in data.items()
    ]


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return proxy.fmt(value, digits)


def pct(share: float | None, digits: int = 1) -> str:
    return "-" if share is None else f"{share * 100:.{digits}f}"


def ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def target_rows(results: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    rows = []
    fair = results.get("fairness")
    if fair:
        ratios = fair_ratios(fair, names)
        for name in names:
            m = fair_medians(fair["runs"], name, "attack")
            if m:
                share = m["good_ok_share"]
                rows.append([f"{name}: well-behaved calls that succeed under attack ≥ 99.9%",
                             pct(share, 3) + " %",
                             verdict(share >= TARGETS["good_ok_under_attack"])])
            r = ratios.get(f"{name} good p99 attack/baseline")
            if r is not None:
                rows.append([f"{name}: well-behaved p99 under attack ≤ 2x without",
                             f"{r:.2f}x", verdict(r <= TARGETS["good_p99_ratio"])])
    slow = results.get("slow")
    if slow:
        for name in names:
            for mode in SLOW_MODES:
                mine = [r for r in slow["runs"] if r["sut"] == name and r["attack"] == mode]
                shares = [r["good_ok_share"] for r in mine if r["good_ok_share"] is not None]
                if shares:
                    worst = min(shares)
                    rows.append([f"{name}: well-behaved success during {mode} ≥ 99% (worst run)",
                                 pct(worst, 2) + " %",
                                 verdict(worst >= TARGETS["good_ok_under_slow"])])
    accuracy = results.get("accuracy")
    if accuracy:
        for r in accuracy["runs"]:
            if r["sut"].startswith("apiward") and r["offered"]:
                rows.append([f"{r['sut']}: admitted within ±5% of limit x duration + burst "
                             f"(round {r['round']})", f"{r['error_pct']:+.2f} %",
                             verdict(abs(r["error_pct"]) <= TARGETS["accuracy_pct"])])
    return rows


TARGET_HEADERS = ("target", "result", "met?")


def render_all(results: dict[str, Any], names: Sequence[str], markdown: bool) -> str:
    parts = []
    fair = results.get("fairness")
    if fair:
        parts += [
            "**fairness** — 20 well-behaved clients at "
            f"{results['args']['good_rate']:g}/s each; the abusive client at "
            f"{results['args']['abuse_factor']:g}x its {fair['policy']['rate']}/s limit "
            f"(burst {fair['policy']['burst']})", "",
            proxy.render(fair_rows(fair, names), FAIR_HEADERS, markdown), "",
        ]
        lines = [f"{k:<40} {fmt(v, 2)}x" for k, v in fair_ratios(fair, names).items()]
        parts += ["```", *lines, "```", ""] if markdown else [*lines, ""]
    slow = results.get("slow")
    if slow:
        parts += ["**slow clients** — slowhttptest from 127.0.0.1 while the well-behaved "
                  "clients call", "", proxy.render(slow_rows(slow, names), SLOW_HEADERS,
                                                   markdown), ""]
    accuracy = results.get("accuracy")
    if accuracy:
        parts += ["**accuracy** — one client at "
                  f"{results['args']['accuracy_factor']:g}x the limit, calls round-robin over "
                  "the nodes", "", proxy.render(accuracy_rows(accuracy), ACCURACY_HEADERS,
                                                markdown), ""]
    cost = results.get("cost")
    if cost:
        timer = min(row["timer_us"] for row in cost.values() if row["timer_us"])
        parts += ["**decision cost** — the ratelimit check's run(request, context), each call "
                  f"timed alone (the timer itself: {timer:.2f} µs)", "",
                  proxy.render(cost_rows(cost), COST_HEADERS, markdown), ""]
    targets = target_rows(results, names)
    if targets:
        parts += [proxy.render(targets, TARGET_HEADERS, markdown), ""]
    return "\n".join(parts)


def markdown_block(args: argparse.Namespace, machine: dict[str, Any], body: str) -> str:
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        f"### {when} — floods.py, {', '.join(args.scenarios)}; fairness {args.duration:g}s x "
        f"{args.rounds} rounds, slow {args.slow_duration:g}s x {args.slow_rounds}, accuracy "
        f"{args.accuracy_duration:g}s x {args.accuracy_rounds}",
        "",
        f"Commit {machine['commit']}; {machine['cpu']} ({machine['cores']} cores), kernel "
        f"{machine['kernel']}, Python {machine['python']}, {machine['nginx']}, "
        f"{machine.get('slowhttptest', '?')}, {machine.get('redis', '?')}; load average at "
        f"start {machine['loadavg_at_start'][0]:.2f}. Load generator and slowhttptest on "
        "CPU 0; upstream, proxies and Redis on CPU 1. Medians over rounds.",
        "",
        body.rstrip(),
    ])


def machine_info() -> dict[str, Any]:
    info = proxy.machine_info()
    slow = proxy.command_output([proxy.find_tool("slowhttptest") or "slowhttptest", "-h"])
    info["slowhttptest"] = slow.split(" - ")[-1].replace("version ", "slowhttptest ") \
        if slow != "?" else "?"
    redis = proxy.command_output([proxy.find_tool("redis-server") or "redis-server", "-v"])
    info["redis"] = " ".join(redis.split()[:3]) if redis != "?" else "?"
    return info


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def benchmark(procs: Processes, tmp: Path, names: list[str], args: argparse.Namespace) -> int:
    machine = machine_info()
    print(f"[bench] scenarios {', '.join(args.scenarios)}; proxies {', '.join(names)}; "
          f"load average {machine['loadavg_at_start'][0]:.2f}", flush=True)
    upstream_env = Env(tmp, 0, args.worker_connections)
    upstream = proxy.start_server(procs, "upstream", proxy.upstream_command, upstream_env)
    print(f"[start] upstream nginx on port {upstream.port}", flush=True)
    env = Env(tmp, upstream.port, args.worker_connections)
    redis_server: list[Server] = []

    def redis() -> Server:
        if not redis_server:
            redis_server.append(start_redis(procs, tmp))
        return redis_server[0]

    results: dict[str, Any] = {"kind": "floods", "args": vars(args), "machine": machine}
    failed = False
    if "fairness" in args.scenarios:
        results["fairness"] = scenario_fairness(procs, tmp, env, upstream, names, args)
        failed |= bool(results["fairness"]["failures"])
    if "slow" in args.scenarios:
        results["slow"] = scenario_slow(procs, tmp, env, upstream, names, args)
        failed |= bool(results["slow"]["failures"])
    if "accuracy" in args.scenarios:
        results["accuracy"] = scenario_accuracy(procs, tmp, env, upstream, args, redis)
        failed |= any(r["error"] for r in results["accuracy"]["runs"])
    if "cost" in args.scenarios:
        print("[cost] timing the ratelimit check's run", flush=True)
        try:
            results["cost"] = scenario_cost(args, None if args.cost_no_redis else redis,
                                            proxy.server_cpus_available())
        except BenchError as exc:
            results["cost_error"] = str(exc)
            print(f"[cost] FAILED — {exc}", flush=True)
            failed = True

    print("\n" + render_all(results, names, markdown=False))
    for scenario in ("fairness", "slow"):
        for name, why in results.get(scenario, {}).get("failures", {}).items():
            print(f"\n{scenario}: {name} failed: {why}")
    path = proxy.write_json("floods", results)
    print(f"\nRaw results: {path.relative_to(proxy.REPO_DIR)}")
    print("\n---- markdown for bench/RESULTS.md ----")
    print(markdown_block(args, machine, render_all(results, names, markdown=True)))
    print("---- end ----")
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    p.add_argument("--only", help=f"proxies for fairness and slow, from: {', '.join(SUT_NAMES)}")
    p.add_argument("--limit", type=int, default=50, help="per-client calls per second")
    p.add_argument("--burst", type=int, default=50, help="per-client burst")
    p.add_argument("--good-clients", type=int, default=20, help="well-behaved clients")
    p.add_argument("--good-rate", type=float, default=10, help="each well-behaved client, /s")
    p.add_argument("--abuse-factor", type=float, default=20, help="the abuser, x the limit")
    p.add_argument("--duration", type=float, default=15, help="seconds per fairness window")
    p.add_argument("--rounds", type=int, default=3, help="fairness rounds")
    p.add_argument("--warmup", type=float, default=2, help="unmeasured seconds per proxy")
    p.add_argument("--slow-connections", type=int, default=2500, help="slowhttptest -c")
    p.add_argument("--slow-rate", type=int, default=500, help="slowhttptest -r (per second)")
    p.add_argument("--slow-interval", type=float, default=5, help="slowhttptest -i (seconds)")
    p.add_argument("--slow-duration", type=float, default=40,
                   help="seconds of well-behaved calls once the attack's connections are open")
    p.add_argument("--slow-rounds", type=int, default=1, help="rounds of each slow attack")
    p.add_argument("--slow-limit", type=int, default=100_000,
                   help="per-client limit during the slow attacks (out of the attack's way)")
    p.add_argument("--accuracy-limit", type=int, default=100, help="calls per second")
    p.add_argument("--accuracy-burst", type=int, default=100)
    p.add_argument("--accuracy-factor", type=float, default=3, help="offered, x the limit")
    p.add_argument("--accuracy-duration", type=float, default=60, help="seconds")
    p.add_argument("--accuracy-rounds", type=int, default=1)
    p.add_argument("--accuracy-suts", default="apiward-redis,nginx",
                   help=f"comma-separated, from: {', '.join(ACCURACY_SUTS)}")
    p.add_argument("--cost-calls", type=int, default=200_000, help="memory-store decisions")
    p.add_argument("--cost-calls-redis", type=int, default=20_000, help="Redis decisions")
    p.add_argument("--cost-no-redis", action="store_true", help="time the memory store only")
    p.add_argument("--worker-connections", type=int, default=10_000,
                   help="nginx's worker_connections (the upstream's and the proxy's)")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.accuracy_suts = [s.strip() for s in args.accuracy_suts.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    unknown += [s for s in args.accuracy_suts if s not in ACCURACY_SUTS]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}")
    if min(args.duration, args.slow_duration, args.accuracy_duration) <= 0:
        p.error("durations must be positive")
    if min(args.rounds, args.slow_rounds, args.accuracy_rounds, args.good_clients) < 1:
        p.error("rounds and --good-clients must be at least 1")
    if args.good_clients > 190:
        p.error("--good-clients: at most 190 (127.0.0.3 … 127.0.0.192)")
    return args


def select_names(only: str | None) -> list[str]:
    return proxy.parse_only(only, SUT_NAMES, "proxy") if only else list(SUT_NAMES)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def prepare() -> list[str]:
        names = select_names(args.only)
        tools = ["nginx", "taskset"]
        if "slow" in args.scenarios:
            tools.append("slowhttptest")
        if "accuracy" in args.scenarios or ("cost" in args.scenarios and not args.cost_no_redis):
            tools.append("redis-server")
        proxy.ensure_tools(tools)
        if not Path(proxy.apiward_binary()).exists():
            raise BenchError("the apiward command is missing; install the project: "
                             ".venv/bin/pip install -e '.[test,bench]'")
        # before any start: every server inherits it (slowhttptest's and the proxies'
        # sockets, apiward's upstream connections, nginx's worker_connections)
        proxy.raise_fd_limit(max(4 * args.slow_connections, args.worker_connections) + 1024)
        return names

    return proxy.run_bench(prepare, lambda procs, tmp, names: benchmark(procs, tmp, names, args),
                           "apiward-bench-floods-")


if __name__ == "__main__":
    sys.exit(main())
