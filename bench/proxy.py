"""Proxy benchmark: apiward against nginx and an aiohttp proxy, all in front of one upstream.

    .venv/bin/python bench/proxy.py [--duration 10] [--rounds 3] [--connections 50]
                                    [--only direct,nginx,aiohttp,apiward,apiward-checks]
    .venv/bin/python bench/proxy.py --connections-test 10000 [--only apiward-idle,nginx]

The upstream (nginx returning a small JSON body) and every system under test (SUT) share
CPU 1; wrk runs on CPU 0. Rounds are interleaved (round 1: every SUT, round 2: every SUT …)
so that noise on the machine spreads over all SUTs. To add a SUT, write a function
``(env, port) -> argv`` and add one ``Sut(...)`` line to ``SUTS`` below.
See bench/README.md for the meaning of every column.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
VENV_BIN = Path(sys.executable).parent

LOAD_CPU = 0  # wrk (and this script, which sleeps while wrk runs)
SERVER_CPU = 1  # the upstream and every SUT: the "proxy's core"
WRK_THREADS = 1
READY_TIMEOUT = 10.0  # seconds for a SUT to answer one GET
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
WRK_GRACE = 20.0  # seconds a wrk run may take beyond --duration
UPSTREAM_BODY = '{"ok":true,"service":"bench-upstream","items":[1,2,3,4,5,6,7]}'
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEBIAN_PACKAGES = {"wrk": "wrk", "nginx": "nginx", "taskset": "util-linux"}


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


# ---------------------------------------------------------------------------------------------
# Systems under test
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    """What a SUT command builder may use: a private temp dir and the upstream's port."""

    tmp: Path
    upstream_port: int
    max_connections: int = 4096  # raised by --connections-test

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"


CommandBuilder = Callable[[Env, int], list[str]]


@dataclass(frozen=True)
class Sut:
    name: str
    about: str
    command: CommandBuilder | None  # None: wrk talks to the upstream itself
    default: bool = True  # part of the default list (else only through --only)
    path: str = "/"  # what wrk requests


def nginx_main(directory: Path, connections: int, http_block: str) -> str:
    """A complete nginx.conf for one foreground, single-process nginx living in ``directory``."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
{temp_paths}
    keepalive_requests 100000;
    keepalive_timeout 300s;
{http_block}
}}
"""


def nginx_command(env: Env, name: str, http_block: str) -> list[str]:
    directory = env.tmp / name
    directory.mkdir(exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(nginx_main(directory, env.max_connections, http_block))
    nginx = find_tool("nginx") or "nginx"
    return [nginx, "-p", f"{directory}/", "-c", str(conf), "-e", str(directory / "error.log")]


def upstream_command(env: Env, port: int) -> list[str]:
    body = UPSTREAM_BODY.replace("'", "\\'")
    block = f"""\
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{body}'; }}
    }}"""
    return nginx_command(env, "nginx-upstream", block)


def nginx_proxy_command(env: Env, port: int) -> list[str]:
    block = f"""\
    upstream backend {{
        server 127.0.0.1:{env.upstream_port};
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""
    return nginx_command(env, "nginx-proxy", block)


def aiohttp_command(env: Env, port: int) -> list[str]:
    script = BENCH_DIR / "aiohttp_proxy.py"
    return [sys.executable, str(script), "--port", str(port), "--upstream", env.upstream_url]


def apiward_binary() -> str:
    local = VENV_BIN / "apiward"
    return str(local) if local.exists() else shutil.which("apiward") or "apiward"


def apiward_command(env: Env, port: int) -> list[str]:
    listen = f"127.0.0.1:{port}"
    upstream = env.upstream_url
    return [apiward_binary(), "run", "--listen", listen, "--upstream", upstream, "--workers", "1"]


def apiward_config_command(env: Env, name: str, text: str) -> list[str]:
    path = env.tmp / f"{name}.yaml"
    path.write_text(text)
    return [apiward_binary(), "run", "--config", str(path)]


def apiward_checks_command(env: Env, port: int) -> list[str]:
    config = f"""\
listen: 127.0.0.1:{port}
events: {{stdout: false}}
apis:
  - name: bench
    upstream: {{url: "{env.upstream_url}"}}
    checks:
      methods: {{allow: [GET, POST]}}
      ipfilter: {{allow: ["127.0.0.0/8", "10.0.0.0/8"], deny: ["10.9.9.0/24"]}}
"""
    return apiward_config_command(env, "apiward-checks", config)


def sut_path(name: str) -> str:
    return next((sut.path for sut in SUTS if sut.name == name), "/")


SPEC_PATH = "/shops/42/products?limit=20&sort=price&tag=red&tag=blue"


def apiward_spec_command(env: Env, port: int) -> list[str]:
    """apiward validating every call against bench/validation_spec.yaml (route + schema)."""
    return [apiward_binary(), "run", "--listen", f"127.0.0.1:{port}", "--upstream",
            env.upstream_url, "--workers", "1", "--spec", str(BENCH_DIR / "validation_spec.yaml")]


def apiward_ratelimit_command(env: Env, port: int) -> list[str]:
    """Pass-through apiward with a per-client rate limit no client reaches (memory store):
    what one decision costs per request in the live server, RateLimit headers included."""
    config = f"""\
listen: 127.0.0.1:{port}
events: {{stdout: false}}
apis:
  - name: bench
    upstream: {{url: "{env.upstream_url}"}}
    checks:
      ratelimit: {{rules: [{{name: per-client, key: ip, limits: ["100000000/s"]}}]}}
"""
    return apiward_config_command(env, "apiward-ratelimit", config)


def apiward_inventory_command(env: Env, port: int) -> list[str]:
    """Pass-through apiward recording every call into the endpoint inventory (SQLite)."""
    config = f"""\
listen: 127.0.0.1:{port}
events: {{stdout: false}}
inventory: {{store: "{env.tmp / 'inventory.db'}"}}
apis:
  - name: bench
    upstream: {{url: "{env.upstream_url}"}}
"""
    return apiward_config_command(env, "apiward-inventory", config)


def apiward_idle_command(env: Env, port: int) -> list[str]:
    """Pass-through apiward whose limits admit --connections-test's idle connections."""
    config = f"""\
listen: 127.0.0.1:{port}
events: {{stdout: false}}
limits: {{max_connections: {env.max_connections}, keepalive_timeout: 10m}}
apis:
  - name: bench
    upstream: {{url: "{env.upstream_url}"}}
"""
    return apiward_config_command(env, "apiward-idle", config)


SUTS: tuple[Sut, ...] = (
    Sut("direct", "wrk straight to the upstream nginx (no proxy)", None),
    Sut("nginx", "nginx reverse proxy, 1 worker, keep-alive upstream pool", nginx_proxy_command),
    Sut("aiohttp", "aiohttp server + one shared ClientSession (uvloop)", aiohttp_command),
    Sut("apiward", "apiward run --listen --upstream (pass-through)", apiward_command),
    Sut("apiward-checks", "apiward with methods + ipfilter checks", apiward_checks_command),
    Sut("apiward-spec", "apiward validating a GET with path + 3 query parameters by its spec",
        apiward_spec_command, path=SPEC_PATH),
    Sut("apiward-ratelimit", "apiward pass-through with a per-client rate limit (memory)",
        apiward_ratelimit_command, default=False),
    Sut("apiward-inventory", "apiward pass-through recording every call (inventory)",
        apiward_inventory_command, default=False),
    Sut("apiward-idle", "apiward pass-through, limits for --connections-test", apiward_idle_command,
        default=False),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Tools and processes
# ---------------------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def apt_get(*args: str) -> bool:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run([*prefix, "apt-get", *args], env=env, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"[setup] apt-get {' '.join(args)} failed: {exc}")
        return False
    return done.returncode == 0


def ensure_tools(names: Sequence[str]) -> None:
    """Install missing tools from Debian's packages; raise BenchError if that fails."""
    missing = [name for name in names if not find_tool(name)]
    if not missing:
        return
    packages = sorted({DEBIAN_PACKAGES[name] for name in missing})
    print(f"[setup] {', '.join(missing)} not found: apt-get install -y {' '.join(packages)}")
    if not apt_get("install", "-y", *packages):
        print("[setup] install failed; running apt-get update and trying again")
        apt_get("update")
        apt_get("install", "-y", *packages)
    still = [name for name in names if not find_tool(name)]
    if still:
        raise BenchError(
            f"{', '.join(still)} still missing; "
            f"install with: apt-get install -y {' '.join(packages)}"
        )


def server_cpus_available() -> bool:
    return {LOAD_CPU, SERVER_CPU} <= os.sched_getaffinity(0)


class Processes:
    """Every process the benchmark starts; each runs in its own process group and
    ``close()`` terminates every group (SIGTERM, then SIGKILL)."""

    def __init__(self, pin: bool) -> None:
        self.pin = pin
        self._running: list[subprocess.Popen[bytes]] = []

    def argv(self, argv: list[str], cpu: int) -> list[str]:
        return ["taskset", "-c", str(cpu), *argv] if self.pin else argv

    def start(self, argv: list[str], log: Path, cpu: int) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                self.argv(argv, cpu),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO_DIR,
            )
        self._running.append(proc)
        return proc

    def run(self, argv: list[str], cpu: int, timeout: float) -> tuple[int, str]:
        """Run to completion; returns (exit code, stdout + stderr)."""
        proc = subprocess.Popen(
            self.argv(argv, cpu),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._running.append(proc)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            out, _ = proc.communicate()
            return -1, out.decode(errors="replace") + f"\n(killed after {timeout:.0f}s)"
        finally:
            self.stop(proc)
        return proc.returncode, out.decode(errors="replace")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
        if proc in self._running:
            self._running.remove(proc)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def close(self) -> None:
        for proc in reversed(list(self._running)):
            self.stop(proc)


def on_stop_signal(signum: int, _frame: object) -> NoReturn:
    """SIGTERM/SIGHUP behave like Ctrl-C: unwind through every ``finally`` so that every
    child process group is stopped."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Readiness
# ---------------------------------------------------------------------------------------------


def probe(port: int, timeout: float = 2.0, path: str = "/") -> str | None:
    """One GET through the port; None when it answered 2xx, else what went wrong."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return None if 200 <= response.status < 300 else f"HTTP {response.status}"


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float,
               path: str = "/") -> str | None:
    """Poll until a GET through ``port`` succeeds; None when ready, else the reason."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode}"
        last = probe(port, min(2.0, max(0.1, deadline - time.monotonic())), path) or ""
        if not last:
            return None
        time.sleep(0.05)  # poll interval, not a readiness guess
    return f"not ready after {timeout:.0f}s (last probe: {last})"


@dataclass
class Server:
    """A started process that answers HTTP on ``port``."""

    name: str
    port: int
    pid: int
    log: Path
    proc: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_server(procs: Processes, name: str, build: CommandBuilder, env: Env) -> Server:
    """Start on a fresh free port and wait until ready; one retry if it exits early
    (another process may have taken the port between choosing and binding it)."""
    log = env.tmp / f"{name}.log"
    reason = ""
    for _attempt in range(2):
        port = free_port()
        proc = procs.start(build(env, port), log, SERVER_CPU)
        reason = wait_ready(proc, port, READY_TIMEOUT, sut_path(name)) or ""
        if not reason:
            return Server(name, port, proc.pid, log, proc)
        procs.stop(proc)
        if not reason.startswith("exited"):
            break
    raise BenchError(f"{name} {reason}\n{log_tail(log)}")


# ---------------------------------------------------------------------------------------------
# /proc: CPU time and memory of a process tree
# ---------------------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; index 1 is ppid, 11 utime, 12 stime.
    The process-level file already sums all of its threads, including exited ones."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in process_tree(root):
        fields = stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def tree_memory_kb(root: int, key: str) -> int:
    """Sum of a /proc/<pid>/status field (VmRSS, VmHWM) over the tree, in KiB."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
    return total


def core_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) jiffies of one core from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            total = sum(values[:8])  # up to steal; guest time is already in user
            return total - idle, total
    return 0, 0


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: dict[str, int]
    non_2xx: int
    errors: int


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text)
        if not match:
            raise BenchError(f"unexpected wrk output (no {pattern!r}):\n{text}")
        return match

    done = find(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
    p50 = find(r"\s50%\s+([\d.]+)(us|ms|s|m|h)")
    p99 = find(r"\s99%\s+([\d.]+)(us|ms|s|m|h)")
    rps = float(find(r"Requests/sec:\s+([\d.]+)").group(1))
    socket_errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if errors:
        socket_errors = dict(zip(socket_errors, map(int, errors.groups()), strict=True))
    non_2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non_2xx = int(non_2xx_match.group(1)) if non_2xx_match else 0
    return WrkResult(
        requests=int(done.group(1)),
        seconds=to_ms(done.group(2), done.group(3)) / 1000,
        rps=rps,
        p50_ms=to_ms(*p50.groups()),
        p99_ms=to_ms(*p99.groups()),
        socket_errors=socket_errors,
        non_2xx=non_2xx,
        errors=non_2xx + sum(socket_errors.values()),
    )


def wrk(procs: Processes, port: int, seconds: float, connections: int,
        path: str = "/") -> WrkResult:
    argv = [
        find_tool("wrk") or "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]
    code, out = procs.run(argv, LOAD_CPU, seconds + WRK_GRACE)
    if code != 0:
        raise BenchError(f"wrk exited with {code}:\n{out}")
    return parse_wrk(out)


# ---------------------------------------------------------------------------------------------
# One measured run, and the results
# ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    sut: str
    round: int
    wrk: WrkResult | None
    cpu_us_per_req: float | None  # the SUT's process tree
    upstream_cpu_us_per_req: float | None  # the upstream's share of the same core
    server_core_busy_pct: float | None  # whole CPU 1, anyone's work (noise shows up here)
    peak_rss_kb: int
    error: str | None = None  # wrk failed or the SUT died
    flagged: bool = False  # error, or wrk saw socket errors / non-2xx answers


@dataclass
class SutReport:
    name: str
    about: str
    status: str = "ok"  # or "failed: why"
    port: int | None = None
    idle_rss_kb: int | None = None
    peak_rss_kb: int | None = None
    runs: list[RunResult] = field(default_factory=list)
    median: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def per_request_us(cpu_seconds: float, requests: int) -> float | None:
    return cpu_seconds * 1e6 / requests if requests else None


def measure(
    procs: Processes,
    name: str,
    server: Server,
    upstream: Server,
    round_no: int,
    args: argparse.Namespace,
) -> RunResult:
    cpu_before = tree_cpu_seconds(server.pid)
    upstream_before = tree_cpu_seconds(upstream.pid)
    core_before = core_ticks(SERVER_CPU)
    error, result = None, None
    try:
        result = wrk(procs, server.port, args.duration, args.connections, sut_path(name))
    except BenchError as exc:
        error = str(exc)
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    upstream_cpu = tree_cpu_seconds(upstream.pid) - upstream_before
    core_after = core_ticks(SERVER_CPU)
    busy = (core_after[0] - core_before[0]) / max(1, core_after[1] - core_before[1]) * 100
    if not server.alive():
        error = f"{server.name} exited during the run (code {server.proc.returncode})"
    requests = result.requests if result else 0
    return RunResult(
        sut=name,
        round=round_no,
        wrk=result,
        cpu_us_per_req=per_request_us(cpu, requests),
        upstream_cpu_us_per_req=per_request_us(upstream_cpu, requests),
        server_core_busy_pct=busy,
        peak_rss_kb=tree_memory_kb(server.pid, "VmHWM"),
        error=error,
        flagged=error is not None or (result is not None and result.errors > 0),
    )


def median_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(report: SutReport) -> None:
    runs = [run for run in report.runs if run.wrk is not None]
    report.median = {
        "rps": median_of(run.wrk.rps for run in runs if run.wrk),
        "p50_ms": median_of(run.wrk.p50_ms for run in runs if run.wrk),
        "p99_ms": median_of(run.wrk.p99_ms for run in runs if run.wrk),
        "cpu_us_per_req": median_of(run.cpu_us_per_req for run in runs),
        "upstream_cpu_us_per_req": median_of(run.upstream_cpu_us_per_req for run in runs),
        "server_core_busy_pct": median_of(run.server_core_busy_pct for run in runs),
    }
    peaks = [run.peak_rss_kb for run in report.runs if run.peak_rss_kb]
    report.peak_rss_kb = max(peaks) if peaks else report.peak_rss_kb


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

RATIOS = (
    ("apiward", "nginx"),
    ("apiward", "aiohttp"),
    ("apiward-checks", "nginx"),
    ("apiward-checks", "apiward"),
    ("apiward-spec", "apiward"),
    ("apiward-inventory", "apiward"),
    ("apiward-ratelimit", "apiward"),
)
RATIO_METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "peak_rss_kb")
TABLE_HEADERS = (
    "SUT", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "upstream µs/req", "CPU1 busy %",
    "idle RSS MiB", "peak RSS MiB", "runs", "errors",
)  # fmt: skip


def fmt(value: float | None, digits: int = 1, thousands: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if thousands else f"{value:.{digits}f}"


def mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def table_row(report: SutReport) -> list[str]:
    if not report.ok and not report.runs:
        return [report.name, "FAILED", *["-"] * (len(TABLE_HEADERS) - 2)]
    m = report.median
    errors = sum(run.wrk.errors for run in report.runs if run.wrk)
    failures = sum(1 for run in report.runs if run.error)
    flag = f"{errors}" + (f" ({failures} failed runs)" if failures else "")
    return [
        report.name,
        fmt(m["rps"], thousands=True),
        fmt(m["p50_ms"], 2),
        fmt(m["p99_ms"], 2),
        fmt(m["cpu_us_per_req"]),
        fmt(m["upstream_cpu_us_per_req"]),
        fmt(m["server_core_busy_pct"], 0),
        mib(report.idle_rss_kb),
        mib(report.peak_rss_kb),
        str(len(report.runs)),
        flag + (" !" if errors or failures else ""),
    ]


def render(rows: list[list[str]], headers: Sequence[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        return "  ".join(
            [first, *(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))]
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def ratios(reports: dict[str, SutReport]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for top, bottom in RATIOS:
        a, b = reports.get(top), reports.get(bottom)
        if not (a and b and a.runs and b.runs):
            continue
        values = {**a.median, "peak_rss_kb": a.peak_rss_kb}
        bases = {**b.median, "peak_rss_kb": b.peak_rss_kb}
        out[f"{top}/{bottom}"] = {
            key: (values[key] / bases[key]) if values.get(key) and bases.get(key) else None
            for key in RATIO_METRICS
        }
    return out


def ratio_lines(table: dict[str, dict[str, float | None]]) -> list[str]:
    names = {"rps": "req/s", "p50_ms": "p50", "p99_ms": "p99", "cpu_us_per_req": "CPU/req",
             "peak_rss_kb": "peak RSS"}  # fmt: skip
    lines = []
    for pair, values in table.items():
        parts = [f"{names[k]} {fmt(v, 2)}x" for k, v in values.items()]
        lines.append(f"{pair:<25} " + "  ".join(parts))
    return lines


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else "?"


def machine_info() -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    commit = command_output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"])
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": command_output([find_tool("nginx") or "nginx", "-v"]).split(": ")[-1],
        "wrk": command_output(["wrk", "-v"]).split(" [")[0],
        "loadavg_at_start": os.getloadavg(),
        "commit": commit + ("+dirty" if dirty not in ("", "?") else ""),
        "pinned": server_cpus_available(),
    }


def markdown_block(
    args: argparse.Namespace, machine: dict[str, Any], reports: list[SutReport], ratio_table: str
) -> str:
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    rows = [table_row(r) for r in reports]
    return "\n".join(
        [
            f"### {when} — proxy.py, {args.duration:g}s x {args.rounds} rounds, "
            f"{args.connections} connections",
            "",
            f"Commit {machine['commit']}; {machine['cpu']} ({machine['cores']} cores), "
            f"kernel {machine['kernel']}, Python {machine['python']}, {machine['nginx']}, "
            f"{machine['wrk']}; load average at start {machine['loadavg_at_start'][0]:.2f}. "
            "wrk on CPU 0; upstream and SUT on CPU 1. Medians over rounds.",
            "",
            render(rows, TABLE_HEADERS, markdown=True),
            "",
            "```",
            ratio_table,
            "```",
        ]
    )


def write_json(prefix: str, payload: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Benchmark mode
# ---------------------------------------------------------------------------------------------


def start_suts(
    procs: Processes, suts: Sequence[Sut], env: Env, upstream: Server
) -> tuple[dict[str, SutReport], dict[str, Server]]:
    reports, servers = {}, {}
    for sut in suts:
        report = reports[sut.name] = SutReport(sut.name, sut.about)
        try:
            server = (
                upstream if sut.command is None else start_server(procs, sut.name, sut.command, env)
            )
        except BenchError as exc:
            report.status = f"failed: {exc}"
            print(f"[start] {sut.name}: FAILED — {str(exc).splitlines()[0]} (details at the end)")
            continue
        report.port = server.port
        report.idle_rss_kb = tree_memory_kb(server.pid, "VmRSS")
        servers[sut.name] = server
        print(
            f"[start] {sut.name}: ready on port {server.port}, "
            f"idle RSS {mib(report.idle_rss_kb)} MiB"
        )
    return reports, servers


def warm_up(procs: Processes, servers: dict[str, Server], args: argparse.Namespace) -> None:
    if args.warmup <= 0:
        return
    for name, server in servers.items():
        try:
            wrk(procs, server.port, args.warmup, args.connections, sut_path(name))
        except BenchError as exc:
            print(f"[warmup] {name}: {exc.args[0].splitlines()[0]}")


def progress(run: RunResult, rounds: int) -> str:
    head = f"[round {run.round}/{rounds}] {run.sut:<15}"
    if run.wrk is None:
        return f"{head} FAILED: {(run.error or '').splitlines()[0]}"
    w = run.wrk
    text = (
        f"{head} {w.rps:>10,.0f} req/s  p50 {w.p50_ms:6.2f} ms  p99 {w.p99_ms:7.2f} ms  "
        f"CPU {fmt(run.cpu_us_per_req):>6} µs/req  CPU1 {fmt(run.server_core_busy_pct, 0)}%"
    )
    if w.errors:
        text += f"  ERRORS non-2xx {w.non_2xx} socket {w.socket_errors}"
    return text + (f"  ({run.error})" if run.error else "")


def run_rounds(
    procs: Processes,
    reports: dict[str, SutReport],
    servers: dict[str, Server],
    upstream: Server,
    args: argparse.Namespace,
) -> None:
    for round_no in range(1, args.rounds + 1):
        for name, server in servers.items():
            report = reports[name]
            if not report.ok:
                continue
            run = measure(procs, name, server, upstream, round_no, args)
            report.runs.append(run)
            print(progress(run, args.rounds), flush=True)
            if not server.alive():
                report.status = f"failed: exited in round {round_no}\n{log_tail(server.log)}"
                print(report.status)


def benchmark(procs: Processes, tmp: Path, suts: Sequence[Sut], args: argparse.Namespace) -> int:
    machine = machine_info()
    per_run = args.duration + 1.5
    estimate = len(suts) * (args.warmup + 1 + args.rounds * per_run)
    print(
        f"[bench] {', '.join(s.name for s in suts)}: {args.rounds} rounds x {args.duration:g}s, "
        f"{args.connections} connections; about {estimate / 60:.1f} min"
    )
    upstream = start_server(procs, "upstream", upstream_command, Env(tmp, 0))
    print(f"[start] upstream nginx on port {upstream.port}")
    env = Env(tmp, upstream.port)
    reports, servers = start_suts(procs, suts, env, upstream)
    warm_up(procs, servers, args)
    run_rounds(procs, reports, servers, upstream, args)
    for report in reports.values():
        summarise(report)

    ordered = list(reports.values())
    ratio_table = ratios(reports)
    ratio_text = (
        "\n".join(ratio_lines(ratio_table))
        or "(none: ratios need apiward or apiward-checks and nginx or aiohttp)"
    )
    print("\n" + render([table_row(r) for r in ordered], TABLE_HEADERS, markdown=False))
    print("\nRatios (median of each; req/s > 1 is better, the others < 1 is better):")
    print(ratio_text)
    for report in ordered:
        if not report.ok:
            print(f"\n{report.name} {report.status}")
    payload = {
        "kind": "proxy",
        "args": vars(args),
        "machine": machine,
        "upstream_body": UPSTREAM_BODY,
        "suts": [asdict(r) for r in ordered],
        "ratios": ratio_table,
    }
    path = write_json("proxy", payload)
    print(f"\nRaw results: {path.relative_to(REPO_DIR)}")
    print("\n---- markdown for bench/RESULTS.md ----")
    print(markdown_block(args, machine, ordered, ratio_text))
    print("---- end ----")
    return 0 if all(r.ok for r in ordered) else 1


# ---------------------------------------------------------------------------------------------
# --connections-test mode
# ---------------------------------------------------------------------------------------------

IDLE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: apiward-bench\r\n\r\n"


@dataclass
class ConnectionsResult:
    sut: str
    requested: int
    opened: int
    failed: int
    still_open: int
    rss_before_kb: int
    rss_after_kb: int
    seconds: float
    first_error: str | None

    @property
    def bytes_per_connection(self) -> float | None:
        grown = (self.rss_after_kb - self.rss_before_kb) * 1024
        return grown / self.opened if self.opened else None


def response_complete(buffer: bytes) -> bool:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buffer[:end].decode("latin-1").lower()
    if "transfer-encoding: chunked" in head:
        return buffer.endswith(b"0\r\n\r\n")
    length = re.search(r"\ncontent-length:\s*(\d+)", head)
    return len(buffer) >= end + 4 + int(length.group(1)) if length else True


async def one_exchange(sock: socket.socket, port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, IDLE_REQUEST)
    buffer = b""
    while not response_complete(buffer):
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed before the response ended")
        buffer += chunk
    if not buffer.startswith(b"HTTP/1.1 2"):
        raise ConnectionError(buffer.split(b"\r\n", 1)[0].decode("latin-1"))


def is_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # nothing to read: idle and open
    except OSError:
        return False


async def open_idle(
    port: int, count: int, timeout: float, concurrency: int = 200
) -> tuple[list[socket.socket], list[str]]:
    """Open ``count`` connections, one request each, and keep them open."""
    gate = asyncio.Semaphore(concurrency)
    held: list[socket.socket] = []
    errors: list[str] = []

    async def one() -> None:
        async with gate:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            kept = False
            try:
                await asyncio.wait_for(one_exchange(sock, port), 10)
                kept = True
            except (OSError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                if kept:
                    held.append(sock)
                else:
                    sock.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        errors.append(f"{len(pending)} connections not done within {timeout:.0f}s")
    return held, errors


def hold_and_measure(server: Server, count: int, timeout: float) -> ConnectionsResult:
    before = tree_memory_kb(server.pid, "VmRSS")
    started = time.monotonic()
    held, errors = asyncio.run(open_idle(server.port, count, timeout))
    try:
        elapsed = time.monotonic() - started
        after = tree_memory_kb(server.pid, "VmRSS")
        still_open = sum(1 for sock in held if is_open(sock))
    finally:
        for sock in held:
            sock.close()
    return ConnectionsResult(
        sut=server.name,
        requested=count,
        opened=len(held),
        failed=count - len(held),
        still_open=still_open,
        rss_before_kb=before,
        rss_after_kb=after,
        seconds=elapsed,
        first_error=errors[0] if errors else None,
    )


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"[conns] could only raise the open-file limit to {hard} (wanted {needed})")


def connections_test(
    procs: Processes, tmp: Path, suts: Sequence[Sut], args: argparse.Namespace
) -> int:
    count = args.connections_test
    raise_fd_limit(2 * count + 1024)  # before any start: the servers inherit it
    upstream = start_server(procs, "upstream", upstream_command, Env(tmp, 0))
    env = Env(tmp, upstream.port, 2 * count + 1024)
    results: list[ConnectionsResult] = []
    failures: dict[str, str] = {}
    for sut in suts:
        if sut.command is None:
            continue
        try:
            server = start_server(procs, sut.name, sut.command, env)
        except BenchError as exc:
            failures[sut.name] = str(exc)
            print(f"[conns] {sut.name}: FAILED — {exc}")
            continue
        result = hold_and_measure(server, count, args.connections_timeout)
        procs.stop(server.proc)
        results.append(result)
        print(connections_line(result))
    write_connections(results, failures, args)
    return 0 if results and not failures else 1


def connections_line(r: ConnectionsResult) -> str:
    per = r.bytes_per_connection
    text = (
        f"[conns] {r.sut:<15} opened {r.opened}/{r.requested} in {r.seconds:.1f}s, "
        f"{r.still_open} still open; RSS {mib(r.rss_before_kb)} -> {mib(r.rss_after_kb)} MiB"
        f" ({'-' if per is None else f'{per / 1024:.1f} KiB'} per connection)"
    )
    return text + (f"; first error: {r.first_error}" if r.first_error else "")


def write_connections(
    results: list[ConnectionsResult], failures: dict[str, str], args: argparse.Namespace
) -> None:
    payload = {
        "kind": "connections",
        "args": vars(args),
        "machine": machine_info(),
        "results": [{**asdict(r), "bytes_per_connection": r.bytes_per_connection} for r in results],
        "failures": failures,
    }
    path = write_json("proxy-conns", payload)
    print(f"Raw results: {path.relative_to(REPO_DIR)}")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    names = ", ".join(s.name for s in SUTS)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds per SUT")
    parser.add_argument("--only", help=f"comma-separated SUTs from: {names}")
    parser.add_argument(
        "--connections-test",
        type=int,
        default=0,
        metavar="N",
        help="instead: hold N idle keep-alive connections, report RSS (default SUT apiward-idle)",
    )
    parser.add_argument(
        "--connections-timeout", type=float, default=120, help="seconds to open them"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be positive")
    return args


def select_suts(only: str | None, connections_mode: bool) -> list[Sut]:
    by_name = {sut.name: sut for sut in SUTS}
    if not only:
        return [by_name["apiward-idle"]] if connections_mode else [s for s in SUTS if s.default]
    return [by_name[name] for name in parse_only(only, by_name, "SUT")]


def parse_only(only: str, known: Iterable[str], what: str) -> list[str]:
    """The names of a comma-separated ``--only``, each one of ``known`` (BenchError
    naming the unknown ones and what is known); shared by every bench script."""
    known = list(known)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise BenchError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return wanted


def run_bench(prepare: Callable[[], Any], run: Callable[[Processes, Path, Any], int],
              prefix: str) -> int:
    """The frame every benchmark script shares: signals, ``prepare()`` (BenchError: exit
    2), pinned processes in a temporary directory, ``run(procs, tmp, prepared)``, and every
    process stopped however it ends (BenchError: exit 1; Ctrl-C: 130)."""
    # Ctrl-C even when started in the background (where SIGINT is inherited as ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_stop_signal)
    try:
        prepared = prepare()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pin = server_cpus_available()
    if not pin:
        print(f"[bench] CPUs {LOAD_CPU} and {SERVER_CPU} not both available: not pinning")
    procs = Processes(pin)
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            try:
                return run(procs, Path(tmp), prepared)
            finally:
                procs.close()  # before the temp dir (logs, nginx prefixes) goes away
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process it started is stopped", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def prepare() -> list[Sut]:
        suts = select_suts(args.only, bool(args.connections_test))
        ensure_tools(["wrk", "nginx", "taskset"])
        return suts

    mode = connections_test if args.connections_test else benchmark
    return run_bench(prepare, lambda procs, tmp, suts: mode(procs, tmp, suts, args),
                     "apiward-bench-")


if __name__ == "__main__":
    sys.exit(main())
