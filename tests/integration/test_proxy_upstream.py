"""The gateway when the upstream misbehaves (down, slow, cut short, not HTTP) and when it
streams a lot: 100 MiB pass through with bounded memory, also to a slow reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    PROBLEM_KEYS,
    CountingUpstream,
    RawClient,
    RawUpstream,
    gateway_config,
    rss_kib,
    start_gateway,
    unused_port,
    wait_event,
)

MiB = 1024 * 1024
BIG = 100 * MiB
RSS_GROWTH_LIMIT_KIB = 10 * 1024
SHORT = {"Host": "short.test"}  # the API whose upstream must answer within 0.5 s


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


def raw_upstream(answer: bytes) -> Iterator[RawUpstream]:
    with RawUpstream(answer) as server:
        yield server


@pytest.fixture(scope="module")
def truncated_length() -> Iterator[RawUpstream]:
    yield from raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)


@pytest.fixture(scope="module")
def truncated_chunked() -> Iterator[RawUpstream]:
    yield from raw_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n")


@pytest.fixture(scope="module")
def garbage() -> Iterator[RawUpstream]:
    yield from raw_upstream(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


@pytest.fixture(scope="module")
def silent() -> Iterator[RawUpstream]:
    yield from raw_upstream(b"")


@pytest.fixture(scope="module")
def setup(upstream: CountingUpstream, truncated_length: RawUpstream,
          truncated_chunked: RawUpstream, garbage: RawUpstream, silent: RawUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("upstream")
    events = directory / "events.jsonl"
    down = unused_port()  # bound, never listening: connections are refused
    config = gateway_config(
        {"name": "down", "match": {"path_prefix": "/down"},
         "upstream": {"url": f"http://127.0.0.1:{down.getsockname()[1]}"}},
        {"name": "short", "match": {"host": "short.test"},
         "upstream": {"url": upstream.url, "response_timeout": "0.5s"}},
        {"name": "trunc-length", "match": {"path_prefix": "/trunc-length"},
         "upstream": {"url": truncated_length.url}},
        {"name": "trunc-chunked", "match": {"path_prefix": "/trunc-chunked"},
         "upstream": {"url": truncated_chunked.url}},
        {"name": "garbage", "match": {"path_prefix": "/garbage"},
         "upstream": {"url": garbage.url}},
        {"name": "silent", "match": {"path_prefix": "/silent"},
         "upstream": {"url": silent.url}},
        {"name": "main", "upstream": {"url": upstream.url}},
        events_file=events,
    )
    try:
        with start_gateway(config, directory) as gw:
            yield gw, events
    finally:
        down.close()


@pytest.fixture(scope="module")
def gateway(setup: tuple[GatewayProcess, Path]) -> GatewayProcess:
    return setup[0]


@pytest.fixture(scope="module")
def events(setup: tuple[GatewayProcess, Path]) -> Path:
    return setup[1]


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http


def assert_upstream_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem.keys() >= PROBLEM_KEYS
    assert (problem["status"], problem["check"]) == (status, "upstream")
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


def assert_gateway_serves(client: httpx.Client) -> None:
    response = client.get("/echo/still-alive")
    assert response.status_code == 200
    assert response.json()["path"] == "/echo/still-alive"


# -- upstream down / slow / broken ------------------------------------------------------------
def test_upstream_down_is_502_quickly(client: httpx.Client, events: Path) -> None:
    for _ in range(3):  # every time, not only the first
        started = time.monotonic()
        response = client.get("/down/x")
        assert time.monotonic() - started < 2.0
        problem = assert_upstream_problem(response, 502)
    event = wait_event(events, problem["request_id"])
    assert (event["check"], event["status"]) == ("upstream", 502)


def test_upstream_down_with_a_body(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as conn:
        conn.request("POST", "/down/x", body=b"y" * 50000)
        response = conn.read_response()
        assert response.status == 502
        assert response.json()["check"] == "upstream"


def test_upstream_slow_is_504(client: httpx.Client, upstream: CountingUpstream) -> None:
    started = time.monotonic()
    response = client.get("/slow?s=3", headers=SHORT)
    elapsed = time.monotonic() - started
    assert_upstream_problem(response, 504)
    assert 0.4 <= elapsed < 2.0, elapsed
    # The timed-out upstream connection is not reused for the next call.
    ok = client.get("/echo/after-timeout", headers=SHORT)
    assert ok.status_code == 200
    assert ok.json()["path"] == "/echo/after-timeout"


def test_upstream_answer_within_timeout(client: httpx.Client) -> None:
    assert client.get("/slow?s=0.1", headers=SHORT).status_code == 200


def test_upstream_slow_head_request_is_504(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as conn:
        conn.request("HEAD", "/slow?s=3", host="short.test")
        response = conn.read_response("HEAD")
        assert response.status == 504


def test_upstream_closing_without_answer_is_502(client: httpx.Client) -> None:
    assert_upstream_problem(client.get("/silent/x"), 502)


def test_upstream_not_speaking_http_is_502(client: httpx.Client) -> None:
    assert_upstream_problem(client.get("/garbage/x"), 502)


def test_upstream_cut_short_length_framed(client: httpx.Client, gateway: GatewayProcess) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/trunc-length/x")
    assert time.monotonic() - started < 3.0
    with RawClient(gateway.port) as conn:
        conn.request("GET", "/trunc-length/x")
        response = conn.read_response()
        assert response.status == 200
        assert not response.complete
        assert len(response.body) < 100000
        assert conn.eof
    assert_gateway_serves(client)


def test_upstream_cut_short_chunked(client: httpx.Client, gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as conn:
        conn.request("GET", "/trunc-chunked/x")
        response = conn.read_response()
        assert response.status == 200
        assert response.body.startswith(b"hello")
        assert not response.complete, "a truncated answer was framed as complete"
        assert conn.eof or conn.closed()
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/trunc-chunked/x")


# -- streaming with bounded memory ------------------------------------------------------------
def test_stream_100mib_with_bounded_memory(gateway: GatewayProcess,
                                           client: httpx.Client) -> None:
    pid = gateway.proc.pid  # type: ignore[union-attr]
    # Warm up: buffers and pooled connections that any stream needs are allocated once.
    with client.stream("GET", f"/big?size={8 * MiB}") as response:
        assert sum(len(c) for c in response.iter_raw(65536)) == 8 * MiB
    baseline = rss_kib(pid)
    peak = baseline
    received = 0
    next_sample = 0
    with client.stream("GET", f"/big?size={BIG}") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(BIG)
        for chunk in response.iter_raw(65536):
            received += len(chunk)
            if received >= next_sample:
                peak = max(peak, rss_kib(pid))
                next_sample += 2 * MiB
    peak = max(peak, rss_kib(pid))
    assert received == BIG
    assert peak - baseline < RSS_GROWTH_LIMIT_KIB, (
        f"gateway RSS grew by {(peak - baseline) / 1024:.1f} MiB while streaming 100 MiB")


def test_slow_reader_keeps_memory_bounded(gateway: GatewayProcess,
                                          client: httpx.Client) -> None:
    pid = gateway.proc.pid  # type: ignore[union-attr]
    assert_gateway_serves(client)
    baseline = rss_kib(pid)
    peak = baseline
    with RawClient(gateway.port, rcvbuf=64 * 1024) as conn:
        conn.request("GET", f"/big?size={BIG}")
        head = conn.read_head()
        assert head.status == 200
        read = len(conn.buffer)
        # Read ~16 KiB every 20 ms for 2 s (~1.6 MiB): the upstream, at full speed, would
        # push all 100 MiB in that time if the gateway did not stop reading from it.
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            read += len(conn.sock.recv(16384))
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)  # the slowness under test, not a synchronisation
        assert read < BIG
        peak = max(peak, rss_kib(pid))
    assert peak - baseline < RSS_GROWTH_LIMIT_KIB, (
        f"gateway RSS grew by {(peak - baseline) / 1024:.1f} MiB for a slow reader")
    # The client went away mid-stream: the gateway drops that exchange and goes on.
    assert_gateway_serves(client)


def test_many_slow_readers_keep_memory_bounded(gateway: GatewayProcess,
                                               client: httpx.Client) -> None:
    """What one slow reader may cost, times 8: a per-connection buffer of several MiB
    (a bounded but large one) shows here where one connection alone may hide it."""
    pid = gateway.proc.pid  # type: ignore[union-attr]
    assert_gateway_serves(client)
    baseline = rss_kib(pid)
    peak = baseline
    conns = [RawClient(gateway.port, rcvbuf=64 * 1024) for _ in range(8)]
    try:
        for conn in conns:
            conn.request("GET", f"/big?size={BIG}")
        for conn in conns:
            assert conn.read_head().status == 200
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            for conn in conns:
                conn.sock.recv(16384)
            peak = max(peak, rss_kib(pid))
            time.sleep(0.02)  # the slowness under test, not a synchronisation
    finally:
        for conn in conns:
            conn.close()
    assert peak - baseline < RSS_GROWTH_LIMIT_KIB, (
        f"gateway RSS grew by {(peak - baseline) / 1024:.1f} MiB for 8 slow readers")
    assert_gateway_serves(client)


def test_slow_reader_is_not_an_upstream_timeout(gateway: GatewayProcess) -> None:
    size = 20 * MiB
    with RawClient(gateway.port, rcvbuf=64 * 1024) as conn:
        conn.request("GET", f"/big?size={size}", host="short.test")
        head = conn.read_head()
        assert head.status == 200
        # Read slowly for 1.5 s, three times the upstream's 0.5 s response timeout: the
        # upstream is not late, the gateway is holding it back for this client.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            conn.read_more()
            time.sleep(0.02)  # the slowness under test, not a synchronisation
        while len(conn.buffer) < size and conn.read_more():
            pass
        got = len(conn.buffer)
        assert got == size, f"download cut at {got} of {size} bytes"
