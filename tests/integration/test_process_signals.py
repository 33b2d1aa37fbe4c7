"""The gateway as a process: SIGHUP reloads (and refuses a broken config), SIGTERM drains
calls in flight and exits 0, ``workers: 2`` serves from both workers and replaces one
that dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    CountingUpstream,
    RawClient,
    api,
    children_of,
    established_sockets,
    gateway_config,
    start_gateway,
    wait_until,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


def methods_config(upstream: CountingUpstream, allow: list[str], **extra: Any) -> dict:
    return {"listen": "127.0.0.1:0",
            **gateway_config(api(upstream.url, checks={"methods": {"allow": allow}}), **extra)}


def rewrite(gateway: GatewayProcess, config: dict[str, Any]) -> None:
    # Keep the port the gateway got: a reload that changes 'listen' is only warned about.
    gateway.path.write_text(yaml.safe_dump({**config, "listen": f"127.0.0.1:{gateway.port}"}))


def status_of(gateway: GatewayProcess, method: str) -> int:
    """One call on a new connection (so, with several workers, any worker may answer)."""
    return httpx.request(method, gateway.url + "/echo/r", timeout=10,
                         headers={"Connection": "close"}).status_code


def exit_code(gateway: GatewayProcess, timeout: float = 15.0) -> int:
    assert gateway.proc is not None
    return gateway.proc.wait(timeout)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# -- SIGHUP ----------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_config(upstream: CountingUpstream, tmp_path: Path,
                               workers: int) -> None:
    config = methods_config(upstream, ["GET", "POST"], workers=workers)
    with start_gateway(config, tmp_path) as gw:
        assert status_of(gw, "PUT") == 405
        rewrite(gw, methods_config(upstream, ["GET", "PUT"], workers=workers))
        gw.signal(signal.SIGHUP)
        # Every worker must have switched: ask on 20 fresh connections in a row.
        wait_until(lambda: all(status_of(gw, "PUT") == 200 for _ in range(20)),
                   message="the new methods allow-list to be live")
        assert status_of(gw, "POST") == 405
        assert status_of(gw, "GET") == 200
        wait_until(lambda: "reload" in gw.stderr and "live" in gw.stderr,
                   message="a log line about the reload")
        assert gw.proc is not None and gw.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("broken", [
    "apis: [{upstream: {url: 'ftp://nope'}}]\n",
    "limits: {body_size: lots}\napis: []\n",
    "apis: [\n  {unclosed\n",
])
def test_sighup_with_broken_config_keeps_the_old_one(upstream: CountingUpstream,
                                                     tmp_path: Path, workers: int,
                                                     broken: str) -> None:
    with start_gateway(methods_config(upstream, ["GET"], workers=workers), tmp_path) as gw:
        assert status_of(gw, "POST") == 405
        gw.path.write_text(broken)
        gw.signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in gw.stderr, message="'reload refused' on stderr")
        assert "Traceback" not in gw.stderr
        assert gw.proc is not None and gw.proc.poll() is None
        for _ in range(10):
            assert status_of(gw, "GET") == 200
            assert status_of(gw, "POST") == 405
        # A good config afterwards is taken again.
        rewrite(gw, methods_config(upstream, ["GET", "POST"], workers=workers))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: all(status_of(gw, "POST") == 200 for _ in range(10)),
                   message="the fixed config to be live")


def test_sighup_keeps_calls_in_flight(upstream: CountingUpstream, tmp_path: Path) -> None:
    with start_gateway(methods_config(upstream, ["GET"]), tmp_path) as gw:
        result: dict[str, httpx.Response] = {}
        call = threading.Thread(target=lambda: result.update(
            r=httpx.get(gw.url + "/slow?s=1", timeout=10)))
        before = upstream.requests
        call.start()
        wait_until(lambda: upstream.requests > before, message="the slow call upstream")
        rewrite(gw, methods_config(upstream, ["GET", "DELETE"]))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: status_of(gw, "DELETE") == 200, message="the reload")
        call.join(10)
        assert result["r"].status_code == 200


# -- SIGTERM ---------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_calls_in_flight_and_exits_0(upstream: CountingUpstream,
                                                      tmp_path: Path, workers: int) -> None:
    gw = GatewayProcess(methods_config(upstream, ["GET"], workers=workers), tmp_path).start()
    try:
        idle = RawClient(gw.port)  # an idle keep-alive connection: closed at once
        idle.request("GET", "/echo/idle")
        assert idle.read_response().status == 200
        result: dict[str, Any] = {}

        def slow_call() -> None:
            try:
                result["r"] = httpx.get(gw.url + "/slow?s=2", timeout=15)
            except Exception as exc:  # reported by the assertion below
                result["error"] = exc

        before = upstream.requests
        call = threading.Thread(target=slow_call)
        call.start()
        wait_until(lambda: upstream.requests > before, message="the slow call upstream")
        gw.signal(signal.SIGTERM)
        # New connections are refused while the slow call is still being served.
        wait_until(lambda: refused(gw.port), timeout=5, message="connections refused")
        assert call.is_alive(), "the slow call ended before new connections were refused"
        assert idle.closed(timeout=5), "an idle keep-alive connection was not closed"
        call.join(15)
        assert "error" not in result, result.get("error")
        response = result["r"]
        assert response.status_code == 200
        assert response.json()["path"] == "/slow?s=2"
        assert exit_code(gw) == 0
        assert "Traceback" not in gw.stderr
        assert refused(gw.port)
        idle.close()
    finally:
        gw.stop()


def test_sigterm_when_idle_exits_0_quickly(upstream: CountingUpstream, tmp_path: Path) -> None:
    gw = GatewayProcess(methods_config(upstream, ["GET"]), tmp_path).start()
    try:
        assert status_of(gw, "GET") == 200
        gw.signal(signal.SIGTERM)
        assert exit_code(gw, timeout=5) == 0
    finally:
        gw.stop()


def test_shutdown_timeout_bounds_the_drain(upstream: CountingUpstream, tmp_path: Path) -> None:
    config = methods_config(upstream, ["GET"], shutdown_timeout="0.5s")
    gw = GatewayProcess(config, tmp_path).start()
    try:
        slow = RawClient(gw.port, timeout=15)
        before = upstream.requests
        slow.request("GET", "/slow?s=10")
        wait_until(lambda: upstream.requests > before, message="the slow call upstream")
        gw.signal(signal.SIGTERM)
        assert exit_code(gw, timeout=5) == 0  # well before the upstream answers
        assert slow.closed(timeout=5)
        slow.close()
    finally:
        gw.stop()


# -- several workers -------------------------------------------------------------------------
def workers_of(gateway: GatewayProcess, count: int = 2) -> set[int]:
    assert gateway.proc is not None
    return wait_until(lambda: (c := children_of(gateway.proc.pid)) and len(c) == count and c,
                      message=f"{count} worker processes")


def assert_each_worker_serves(gateway: GatewayProcess, workers: set[int]) -> None:
    """Open connections (answered, kept alive) until each worker holds at least one."""
    conns: list[RawClient] = []
    try:
        def spread() -> bool:
            for _ in range(8):
                conn = RawClient(gateway.port)
                conns.append(conn)
                conn.request("GET", "/echo/w")
                assert conn.read_response().status == 200
            return all(established_sockets(pid, gateway.port) for pid in workers)
        wait_until(spread, timeout=10, interval=0,
                   message="every worker to hold a client connection")
    finally:
        for conn in conns:
            conn.close()


@pytest.fixture
def two_workers(upstream: CountingUpstream, tmp_path: Path) -> Iterator[GatewayProcess]:
    with start_gateway(methods_config(upstream, ["GET"], workers=2), tmp_path) as gw:
        yield gw


def test_two_workers_both_serve(two_workers: GatewayProcess) -> None:
    assert_each_worker_serves(two_workers, workers_of(two_workers))


def test_dead_worker_is_replaced(two_workers: GatewayProcess) -> None:
    gw = two_workers
    workers = workers_of(gw)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(
        lambda: (c := children_of(gw.proc.pid)) and len(c) == 2 and victim not in c and c,
        timeout=15, message="a replacement worker")
    assert len(replaced & workers) == 1
    for _ in range(20):
        assert status_of(gw, "GET") == 200
    assert_each_worker_serves(gw, replaced)


def test_sigterm_to_supervisor_stops_workers_and_exits_0(two_workers: GatewayProcess) -> None:
    gw = two_workers
    workers = workers_of(gw)
    assert status_of(gw, "GET") == 200
    gw.signal(signal.SIGTERM)
    assert exit_code(gw) == 0
    assert not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in workers)
    assert refused(gw.port)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2:].split()[0]


def test_workers_flag_overrides_config(upstream: CountingUpstream, tmp_path: Path) -> None:
    path = tmp_path / "apiward.yaml"
    path.write_text(yaml.safe_dump(methods_config(upstream, ["GET"])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "apiward", "run", "--config", str(path),
         "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "apiward listening on" in line and "workers: 2" in line
        wait_until(lambda: len(children_of(proc.pid)) == 2, message="2 workers")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
