"""Open-loop load generator for bench/floods.py: fixed-rate clients, each on its own
loopback source address, over keep-alive connections, timing every call.

    .venv/bin/python bench/floods_load.py SPEC.json      # prints one JSON line

floods.py starts it pinned to CPU 0. The spec lists the clients::

    {"duration": 15, "timeout": 5, "path": "/", "watch": [pid, ...],
     "clients": [{"name": "good-1", "group": "good", "ip": "127.0.0.3", "rate": 10,
                  "ports": [8080], "connections": 1, "max_connections": 16}, ...]}

Each client sends call i at ``start + phase + i / rate`` whether or not earlier calls
have been answered (open loop: a slow server does not slow the sender down), on an idle
keep-alive connection of its own, opening another (up to ``max_connections``) when none
is idle. A call's latency runs from the moment its sender wakes up to send it to its
complete response, so time spent waiting for a free connection or connecting counts (no
coordinated omission: a stalled server cannot hide its stall by slowing the sender). The
event loop's timers fire up to ~1 ms late (libuv counts milliseconds); that lateness is
the generator's, not the server's, so it is reported apart as ``send_lag_ms`` and not
counted in the latency. ``ports`` with several entries: the calls go round-robin over
them.
Before the window each client opens ``connections`` connections, so that connecting is
not timed in the first calls. After the window the generator waits up to ``timeout`` for
calls still in flight; those not answered by then count as ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy  # (bench/proxy.py: /proc sampling)
from tls import response_end  # (bench/tls.py: framing of one response)

USER_AGENT = "apiward-bench-floods"


def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {USER_AGENT}\r\n\r\n".encode()


class Connection(asyncio.Protocol):
    """One keep-alive connection; one call in flight at a time."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        end = response_end(self.buffer)
        if not end or self.waiter is None or self.waiter.done():
            return
        head = self.buffer[: self.buffer.find(b"\r\n\r\n")].lower()
        try:
            status = int(self.buffer[9:12])
        except ValueError:
            status = 0
        self.buffer = self.buffer[end:]
        self.waiter.set_result((status, b"\nconnection: close" in head))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed by the server before the answer"))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Tally:
    """What one group of clients got in the window."""

    calls: int = 0
    status: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    by_port: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # every answered call, seconds
    ok_latencies: list[float] = field(default_factory=list)  # the 2xx ones
    send_lag: list[float] = field(default_factory=list)  # actual minus scheduled send time
    connections_opened: int = 0
    first_error: str | None = None
    # per second of the window (by send time): [calls, 2xx, max latency ms]
    timeline: dict[int, list[float]] = field(default_factory=dict)
    start: float = 0.0

    def second(self, began: float, ok: bool, latency: float | None) -> None:
        bucket = self.timeline.setdefault(int(began - self.start), [0, 0, 0.0])
        bucket[0] += 1
        bucket[1] += ok
        if latency is not None and latency * 1000 > bucket[2]:
            bucket[2] = latency * 1000

    def outcome(self, port: int, what: str) -> None:
        self.by_port.setdefault(str(port), Counter())[what] += 1


class Client:
    def __init__(self, spec: dict[str, Any], tally: Tally, request: bytes, timeout: float):
        self.name = spec["name"]
        self.ip = spec["ip"]
        self.rate = float(spec["rate"])
        self.ports = [int(p) for p in spec["ports"]]
        self.prewarm = int(spec.get("connections", 1))
        self.max_connections = int(spec.get("max_connections", 64))
        self.tally = tally
        self.request = request
        self.timeout = timeout
        self.idle: dict[int, list[Connection]] = {port: [] for port in self.ports}
        self.open_count: dict[int, int] = dict.fromkeys(self.ports, 0)
        self.freed: dict[int, asyncio.Event] = {port: asyncio.Event() for port in self.ports}
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        self.open_count[port] += 1
        try:
            _transport, conn = await loop.create_connection(
                Connection, "127.0.0.1", port, local_addr=(self.ip, 0)
            )
        except BaseException:
            self.open_count[port] -= 1
            raise
        self.tally.connections_opened += 1
        return conn

    async def warm(self) -> None:
        for port in self.ports:
            for _ in range(self.prewarm):
                self.idle[port].append(await self.connect(port))

    async def checkout(self, port: int) -> Connection:
        while True:
            idle = self.idle[port]
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
                self.open_count[port] -= 1
            if self.open_count[port] < self.max_connections:
                return await self.connect(port)
            self.freed[port].clear()
            await self.freed[port].wait()

    def release(self, port: int, conn: Connection, reuse: bool) -> None:
        if reuse and not conn.closed:
            self.idle[port].append(conn)
        else:
            conn.close()
            self.open_count[port] -= 1
        self.freed[port].set()

    async def call(self, port: int, began: float) -> None:
        tally = self.tally
        conn: Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self.checkout(port)
                status, close = await conn.send(self.request)
        except TimeoutError:
            what = "timeout"
            tally.errors[what] += 1
            tally.outcome(port, what)
            tally.second(began, False, None)
            if conn is not None:
                self.release(port, conn, reuse=False)
            return
        except Exception as exc:  # OSError (ConnectionError …) mostly: counted, not raised
            what = type(exc).__name__
            tally.errors[what] += 1
            tally.outcome(port, what)
            tally.first_error = tally.first_error or f"{self.name}: {what}: {exc}"
            tally.second(began, False, None)
            if conn is not None:
                self.release(port, conn, reuse=False)
            return
        latency = time.perf_counter() - began
        tally.latencies.append(latency)
        key = str(status)
        tally.status[key] += 1
        tally.outcome(port, key)
        ok = 200 <= status < 300
        if ok:
            tally.ok_latencies.append(latency)
        tally.second(began, ok, latency)
        self.release(port, conn, reuse=not close)

    async def send_all(self, start: float, duration: float, phase: float) -> None:
        clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
        interval = 1.0 / self.rate
        count = int(duration * self.rate)
        for i in range(count):
            scheduled = start + phase * interval + i * interval
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            began = clock()
            self.tally.send_lag.append(began - scheduled)
            self.tally.calls += 1
            task = asyncio.create_task(self.call(self.ports[i % len(self.ports)], began))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()


def percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)

    def at(fraction: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": ordered[-1] * 1000 if ordered else None,
    }


def summary(tally: Tally, duration: float) -> dict[str, Any]:
    answered = sum(tally.status.values())
    ok = sum(n for status, n in tally.status.items() if status.startswith("2"))
    return {
        "calls": tally.calls,
        "answered": answered,
        "ok": ok,
        "ok_share": ok / tally.calls if tally.calls else None,
        "status": dict(tally.status),
        "errors": dict(tally.errors),
        "by_port": {port: dict(c) for port, c in tally.by_port.items()},
        "offered_rate": tally.calls / duration,
        "latency_ms": percentiles(tally.latencies),
        "ok_latency_ms": percentiles(tally.ok_latencies),
        "send_lag_ms": percentiles(tally.send_lag),
        "connections_opened": tally.connections_opened,
        "first_error": tally.first_error,
        "timeline": [[second, *tally.timeline[second]] for second in sorted(tally.timeline)],
    }


def sample(pids: list[int]) -> dict[str, Any]:
    return {
        "cpu": [proxy.tree_cpu_seconds(pid) for pid in pids],
        "server_core": proxy.core_ticks(proxy.SERVER_CPU),
        "load_core": proxy.core_ticks(proxy.LOAD_CPU),
        "at": time.perf_counter(),
    }


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1]) * 100


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    duration = float(spec["duration"])
    timeout = float(spec.get("timeout", 5.0))
    request = request_bytes(spec.get("path", "/"))
    tallies: dict[str, Tally] = {}
    clients = [
        Client(c, tallies.setdefault(c["group"], Tally()), request, timeout)
        for c in spec["clients"]
    ]
    result: dict[str, Any] = {"error": None}
    try:
        await asyncio.gather(*(client.warm() for client in clients))
    except OSError as exc:
        result["error"] = f"could not open the first connections: {type(exc).__name__}: {exc}"
        for client in clients:
            client.close()
        return result
    pids = [int(pid) for pid in spec.get("watch", [])]
    before = sample(pids)
    start = time.perf_counter() + 0.05
    for tally in tallies.values():
        tally.start = start
    senders = [
        client.send_all(start, duration, index / len(clients))
        for index, client in enumerate(clients)
    ]
    await asyncio.gather(*senders)
    await asyncio.sleep(max(0.0, start + duration - time.perf_counter()))
    after = sample(pids)
    pending = [task for client in clients for task in client.tasks]
    if pending:
        await asyncio.wait(pending, timeout=timeout + 1)
    for client in clients:
        client.close()
    window = after["at"] - before["at"]
    result.update(
        duration=duration,
        window=window,
        groups={name: summary(t, duration) for name, t in tallies.items()},
        cpu_seconds=[a - b for a, b in zip(after["cpu"], before["cpu"], strict=True)],
        server_core_busy_pct=busy_pct(before["server_core"], after["server_core"]),
        load_core_busy_pct=busy_pct(before["load_core"], after["load_core"]),
    )
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
