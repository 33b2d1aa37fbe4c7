"""Limits and timeouts on the real gateway, with raw sockets.

One gateway with small limits and 0.5 s timeouts for the size and time limits, one with
low connection limits (clients bind 127.0.0.x source addresses to be distinct peers).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gateway import GatewayProcess
from support.wire_fixtures import (
    RawClient,
    WireUpstream,
    answer,
    assert_problem,
    base_config,
    exchange,
    request,
    settled_count,
    settled_value,
    wait_until,
    wire_gateway,
)

HEADER_SIZE = 2048
HEADER_COUNT = 20
TARGET_LENGTH = 512
BODY_SIZE = 1000
TIMEOUT = 0.5
# The sweeper checks deadlines every TIMEOUT/8 and starts a wait's clock at its next tick:
# a timeout fires between TIMEOUT and TIMEOUT + 2 ticks, and never much later.
EARLIEST, LATEST = TIMEOUT * 0.9, TIMEOUT + 1.5

HOST = b"Host: wire.test\r\n"
HOST_FIELD = len(b"Host") + len(b"wire.test") + 4  # name: value CRLF


@pytest.fixture(scope="module")
def upstream() -> Iterator[WireUpstream]:
    with WireUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    limits = {
        "header_size": HEADER_SIZE, "header_count": HEADER_COUNT,
        "target_length": TARGET_LENGTH, "body_size": BODY_SIZE,
        "header_timeout": TIMEOUT, "body_timeout": TIMEOUT, "keepalive_timeout": TIMEOUT,
        "min_body_rate": 0,  # the pause timeouts alone; the minimum rate has its own tests
    }
    with wire_gateway(tmp_path_factory.mktemp("limits"), upstream, limits=limits) as gw:
        yield gw


MIN_RATE = 400  # bytes per second


@pytest.fixture(scope="module")
def rated(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[GatewayProcess]:
    limits = {"body_timeout": TIMEOUT, "min_body_rate": MIN_RATE, "body_size": 1 << 20}
    with wire_gateway(tmp_path_factory.mktemp("rated"), upstream, limits=limits) as gw:
        yield gw


def nothing_forwarded(upstream: WireUpstream, before: int) -> bool:
    return settled_count(upstream, before, within=0.05) == before


def head_with_fields(size: int) -> bytes:
    """A GET whose header section (Host included) is exactly ``size`` bytes."""
    filler = size - HOST_FIELD - len(b"X-Fill") - 4
    assert filler >= 0
    return b"GET /echo/h HTTP/1.1\r\n" + HOST + b"X-Fill: " + b"f" * filler + b"\r\n\r\n"


# -- header section, header count, target ------------------------------------------------
def test_header_section_at_the_limit_is_served(gateway: GatewayProcess) -> None:
    response = answer(gateway.port, head_with_fields(HEADER_SIZE))
    assert response.status == 200


@pytest.mark.parametrize("size", [HEADER_SIZE + 1, HEADER_SIZE * 2, 100 * 1024],
                         ids=["one_over", "double", "100KiB"])
def test_header_section_too_large_is_431(gateway: GatewayProcess, upstream: WireUpstream,
                                         size: int) -> None:
    before = upstream.requests
    response, closed = exchange(gateway.port, head_with_fields(size))
    assert_problem(response, 431, "limits")
    assert closed
    assert nothing_forwarded(upstream, before)


def test_header_section_too_large_in_many_fields_is_431(gateway: GatewayProcess,
                                                        upstream: WireUpstream) -> None:
    fields = b"".join(b"X-F%d: %b\r\n" % (i, b"v" * 200) for i in range(12))
    before = upstream.requests
    response, closed = exchange(gateway.port, b"GET /echo/h HTTP/1.1\r\n" + HOST + fields
                                + b"\r\n")
    assert_problem(response, 431, "limits")
    assert closed
    assert nothing_forwarded(upstream, before)


def test_header_section_growing_slowly_is_431(gateway: GatewayProcess,
                                              upstream: WireUpstream) -> None:
    """A head that keeps growing in small packets is refused once past the limit, without
    waiting for its end."""
    before = upstream.requests
    with RawClient(gateway.port) as client:
        client.send(b"GET /echo/h HTTP/1.1\r\n" + HOST + b"X-Grow: ")
        for _ in range(HEADER_SIZE * 4 // 256):
            if not client.try_send(b"g" * 256):
                break
        response = client.response()
        assert_problem(response, 431, "limits")
        assert client.closed_within()
    assert nothing_forwarded(upstream, before)


def test_header_count_at_the_limit_is_served(gateway: GatewayProcess) -> None:
    fields = [(f"X-N{i}", "v") for i in range(HEADER_COUNT - 1)]  # + Host
    response = answer(gateway.port, request("GET", "/echo/n", headers=fields))
    assert response.status == 200


def test_too_many_headers_is_431(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    fields = [(f"X-N{i}", "v") for i in range(HEADER_COUNT)]  # + Host: one too many
    before = upstream.requests
    response, closed = exchange(gateway.port, request("GET", "/echo/n", headers=fields))
    assert_problem(response, 431, "limits")
    assert closed
    assert nothing_forwarded(upstream, before)


def test_many_tiny_headers_are_431(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    fields = b"".join(b"a: \r\n" for _ in range(HEADER_SIZE // 6))
    before = upstream.requests
    response, closed = exchange(gateway.port, b"GET /echo/n HTTP/1.1\r\n" + HOST + fields
                                + b"\r\n")
    assert_problem(response, 431, "limits")
    assert closed
    assert nothing_forwarded(upstream, before)


def test_target_at_the_limit_is_served(gateway: GatewayProcess) -> None:
    target = "/echo/" + "t" * (TARGET_LENGTH - len("/echo/"))
    response = answer(gateway.port, request("GET", target))
    assert response.status == 200
    assert response.json()["path"] == target


@pytest.mark.parametrize("length", [TARGET_LENGTH + 1, 64 * 1024], ids=["one_over", "64KiB"])
def test_target_too_long_is_414(gateway: GatewayProcess, upstream: WireUpstream,
                                length: int) -> None:
    target = "/echo/" + "t" * (length - len("/echo/"))
    before = upstream.requests
    response, closed = exchange(gateway.port, request("GET", target))
    assert_problem(response, 414, "limits")
    assert closed
    assert nothing_forwarded(upstream, before)


def test_long_query_counts_towards_the_target(gateway: GatewayProcess,
                                              upstream: WireUpstream) -> None:
    before = upstream.requests
    response, closed = exchange(gateway.port,
                                request("GET", "/echo?q=" + "q" * TARGET_LENGTH))
    assert_problem(response, 414, "limits")
    assert closed
    assert nothing_forwarded(upstream, before)


# -- body size ---------------------------------------------------------------------------
def test_body_at_the_limit_is_served(gateway: GatewayProcess) -> None:
    body = b"b" * BODY_SIZE
    response = answer(gateway.port, request("POST", "/echo/body", body=body))
    assert response.status == 200
    assert response.json()["body"] == body.decode()


def test_content_length_over_the_limit_is_413_before_the_body(
        gateway: GatewayProcess, upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST
                    + b"Content-Length: %d\r\n\r\n" % (BODY_SIZE + 1))
        response = client.response(timeout=TIMEOUT * 0.8)  # well before the body timeout
        assert_problem(response, 413, "limits")
        assert response.closes
        assert client.closed_within()
    assert nothing_forwarded(upstream, before)


def test_expect_continue_over_the_limit_gets_413_not_100(gateway: GatewayProcess,
                                                         upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\n"
                    + b"Content-Length: %d\r\n\r\n" % (10 * BODY_SIZE))
        response = client.response(timeout=TIMEOUT * 0.8)
        assert_problem(response, 413, "limits")
        assert client.closed_within()
    assert nothing_forwarded(upstream, before)


def test_huge_content_length_is_413_not_400(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST
                    + b"Content-Length: 999999999999999999\r\n\r\n")
        assert_problem(client.response(timeout=TIMEOUT * 0.8), 413, "limits")


@pytest.mark.parametrize("chunks", [
    [b"b" * 600, b"b" * 401],
    [b"b" * (BODY_SIZE + 1)],
    [b"b" * 100] * 11,
], ids=["two_chunks", "one_chunk", "eleven_chunks"])
def test_chunked_body_over_the_limit_is_413(gateway: GatewayProcess, upstream: WireUpstream,
                                            chunks: list[bytes]) -> None:
    body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    before = upstream.completed
    response, closed = exchange(gateway.port, b"POST /echo/chunked HTTP/1.1\r\n" + HOST
                                + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert_problem(response, 413, "limits")
    assert closed
    assert settled_value(lambda: upstream.completed, before) == before, \
        "the upstream received a whole over-limit body"


def test_chunk_declared_larger_than_the_limit_is_413(gateway: GatewayProcess,
                                                     upstream: WireUpstream) -> None:
    """A chunk size far beyond the limit (still a valid 64-bit size): 413 as soon as more
    than the limit has arrived, whatever the declared size."""
    before = upstream.completed
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/chunked HTTP/1.1\r\n" + HOST
                    + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n")
        client.try_send(b"b" * (BODY_SIZE + 1))
        assert_problem(client.response(timeout=TIMEOUT * 0.8), 413, "limits")
        assert client.closed_within()
    assert settled_value(lambda: upstream.completed, before) == before


def test_chunked_body_at_the_limit_is_served(gateway: GatewayProcess) -> None:
    body = b"3e8\r\n" + b"b" * BODY_SIZE + b"\r\n0\r\n\r\n"
    response = answer(gateway.port, b"POST /echo/chunked HTTP/1.1\r\n" + HOST
                           + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert response.status == 200
    assert len(response.json()["body"]) == BODY_SIZE


# -- chunk extensions (limits.chunk_line_size, chunk_extensions_size: the defaults) --------
CHUNK_LINE, CHUNK_EXTENSIONS = 4096, 16384
CHUNKED = b"POST /echo/ext HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes, line: int = 0) -> bytes:
    """A chunk whose size line is ``line`` bytes long (CRLF included), padded with an
    extension; 0: no extension."""
    size = b"%x" % len(data)
    if line:
        size += b";e=" + b"x" * (line - len(size) - 5)
        assert len(size) + 2 == line
    return size + b"\r\n" + data + b"\r\n"


def test_chunk_extensions_within_the_limits_are_served_and_never_forwarded(
        gateway: GatewayProcess) -> None:
    body = (chunk(b"ab", CHUNK_LINE) + chunk(b"cd", 3000) + chunk(b"ef", 3000)
            + chunk(b"gh", 3000) + b"0;last=1\r\n\r\n")
    response = answer(gateway.port, CHUNKED + body)
    assert response.status == 200, response.body[:300]
    seen = response.json()
    assert seen["body"] == "abcdefgh"  # re-framed: no extension reaches the upstream


@pytest.mark.parametrize(("body", "reason"), [
    (chunk(b"ab", CHUNK_LINE + 1) + b"0\r\n\r\n", "chunk_extension_too_large"),
    (chunk(b"ab") + b"0;e=" + b"x" * CHUNK_LINE + b"\r\n\r\n", "chunk_extension_too_large"),
    (b"0" * CHUNK_LINE + b"2\r\nab\r\n0\r\n\r\n", "chunk_size_too_long"),
    (chunk(b"ab", 3500) * 5 + b"0\r\n\r\n", "chunk_extension_too_large"),  # 17 KiB in all
], ids=["one_line", "last_chunk", "zero_padded_size", "per_body"])
def test_chunk_extensions_beyond_the_limits_are_refused(
        gateway: GatewayProcess, upstream: WireUpstream, body: bytes, reason: str) -> None:
    before, completed = upstream.requests, upstream.completed
    response, closed = exchange(gateway.port, CHUNKED + body)
    doc = assert_problem(response, 400, "http")
    assert doc["type"].endswith(":" + reason), doc
    assert closed
    assert nothing_forwarded(upstream, before)
    assert upstream.completed == completed


def test_chunk_extensions_are_counted_across_reads(gateway: GatewayProcess,
                                                   upstream: WireUpstream) -> None:
    """Chunks sent one by one, each within the line limit: the body's fifth crosses the
    total, and that is the answer, before the body ends."""
    completed = upstream.completed
    with RawClient(gateway.port) as client:
        client.send(CHUNKED)
        for _ in range(4):
            client.send(chunk(b"ab", 3500))
            assert client.silent_for(0.05)
        client.send(chunk(b"ab", 3500))
        doc = assert_problem(client.response(timeout=TIMEOUT * 0.8), 400, "http")
        assert doc["type"].endswith(":chunk_extension_too_large")
        assert client.closed_within()
    assert settled_value(lambda: upstream.completed, completed) == completed


def test_an_endless_chunk_extension_is_cut_at_the_limit(gateway: GatewayProcess,
                                                        upstream: WireUpstream) -> None:
    """``5;`` and then 1 MiB of extension without a CRLF: refused once the line passes the
    limit, while the client is still sending, not once it has sent it all."""
    before, completed = upstream.requests, upstream.completed
    sent = 0
    with RawClient(gateway.port) as client:
        client.send(CHUNKED + b"5;e=")
        response = None
        while sent < 1 << 20:
            if not client.try_send(b"x" * 1024):
                break
            sent += 1024
            if not client.silent_for(0.002):
                response = client.response()
                break
        assert response is not None, "no answer while 1 MiB of extension was sent"
        doc = assert_problem(response, 400, "http")
        assert doc["type"].endswith(":chunk_extension_too_large")
    assert CHUNK_LINE <= sent <= 64 * 1024, sent
    assert nothing_forwarded(upstream, before)
    assert upstream.completed == completed


def test_an_endless_chunk_size_is_cut_at_the_limit(gateway: GatewayProcess,
                                                   upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(gateway.port) as client:
        client.send(CHUNKED + b"0" * 1000)
        for _ in range(CHUNK_LINE // 1000):
            assert client.silent_for(0.02)
            client.send(b"0" * 1000)
        doc = assert_problem(client.response(timeout=TIMEOUT * 0.8), 400, "http")
        assert doc["type"].endswith(":chunk_size_too_long")
    assert nothing_forwarded(upstream, before)


def test_a_growing_trailer_section_is_431(gateway: GatewayProcess,
                                          upstream: WireUpstream) -> None:
    """Trailers are never passed on, but httptools holds a field until it ends: the
    section is bounded like a header section."""
    before = upstream.requests
    with RawClient(gateway.port) as client:
        client.send(CHUNKED + chunk(b"ab") + b"0\r\nX-Trailer: ")
        client.send(b"t" * (HEADER_SIZE + 1))
        doc = assert_problem(client.response(timeout=TIMEOUT * 0.8), 431, "limits")
        assert doc["type"].endswith(":trailer_section_too_large")
    assert nothing_forwarded(upstream, before)


def test_pipelined_chunked_requests_with_extensions_are_served(
        gateway: GatewayProcess) -> None:
    """In one read: where the second body begins is found among look-alikes (the first
    body's lines)."""
    first = CHUNKED + chunk(b"ab", 100) + b"0;e=1\r\n\r\n"
    second = CHUNKED + chunk(b"cd", 200) + chunk(b"ef") + b"0\r\n\r\n"
    with RawClient(gateway.port) as client:
        client.send(first + request("GET", "/echo/ext") + second + second)
        bodies = [client.response().json()["body"] for _ in range(4)]
    assert bodies == ["ab", "", "cdef", "cdef"]


# -- timeouts ----------------------------------------------------------------------------
def test_partial_head_times_out_with_408(gateway: GatewayProcess,
                                         upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(gateway.port) as client:
        start = time.monotonic()
        client.send(b"GET /echo/slow HTTP/1.1\r\n" + HOST)
        response = client.response(timeout=LATEST + 1)
        elapsed = time.monotonic() - start
        assert_problem(response, 408)
        assert client.closed_within()
    assert EARLIEST <= elapsed <= LATEST, elapsed
    assert nothing_forwarded(upstream, before)


def test_dribbled_head_times_out_with_408(gateway: GatewayProcess) -> None:
    """Slowloris: a byte every TIMEOUT/5 keeps no head alive past the header timeout."""
    with RawClient(gateway.port) as client:
        start = time.monotonic()
        client.send(b"GET /echo/slow HTTP/1.1\r\n" + HOST)
        while time.monotonic() - start < LATEST + 1:
            if not client.try_send(b"X-Drip: d\r\n") or not client.silent_for(TIMEOUT / 5):
                break
        elapsed = time.monotonic() - start
        assert_problem(client.response(timeout=1), 408)
        assert client.closed_within()
    assert elapsed <= LATEST, elapsed


def test_silent_connection_is_closed_after_the_header_timeout(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        start = time.monotonic()
        assert client.closed_within(LATEST + 1)
        elapsed = time.monotonic() - start
    assert EARLIEST <= elapsed <= LATEST, elapsed


def test_idle_keepalive_connection_is_closed(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(request("GET", "/echo/idle"))
        assert client.response().status == 200
        start = time.monotonic()
        assert client.closed_within(LATEST + 1)
        elapsed = time.monotonic() - start
    assert EARLIEST <= elapsed <= LATEST, elapsed


def test_keepalive_connection_is_reused_before_the_timeout(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        for i in range(3):
            client.send(request("GET", f"/echo/reuse{i}"))
            assert client.response().json()["path"] == f"/echo/reuse{i}"


def test_partial_head_after_a_keepalive_request_times_out_with_408(
        gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(request("GET", "/echo/first"))
        assert client.response().status == 200
        client.send(b"GET /echo/second HTTP/1.1\r\n")
        assert_problem(client.response(timeout=LATEST + 1), 408)
        assert client.closed_within()


def test_slow_body_times_out_with_408(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    before = upstream.completed
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\n12345")
        start = time.monotonic()
        response = client.response(timeout=LATEST + 1)
        elapsed = time.monotonic() - start
        assert response.status == 408 and response.is_problem
        assert client.closed_within()
    assert EARLIEST <= elapsed <= LATEST, elapsed
    assert settled_value(lambda: upstream.completed, before) == before


def test_slow_body_is_refused_as_a_client_fault(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\n12345")
        assert_problem(client.response(timeout=LATEST + 1), 408, "http")


def test_slow_chunked_body_times_out_with_408(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST
                    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        response = client.response(timeout=LATEST + 1)
        assert response.status == 408 and response.is_problem
        assert client.closed_within()


@pytest.mark.parametrize("partial", [
    b"Content-Length: 10\r\n\r\n12345",
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
], ids=["length", "chunked"])
def test_eof_in_the_middle_of_a_body_ends_the_exchange(
        gateway: GatewayProcess, upstream: WireUpstream, partial: bytes) -> None:
    """A client that half-closes mid-body can never finish its request: the gateway drops
    it (a 400 or a plain close) at once, instead of holding both connections for the body
    timeout, which would let a client that has freed its socket pin gateway resources."""
    completed = upstream.completed
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/eof HTTP/1.1\r\n" + HOST + partial)
        client.sock.shutdown(socket.SHUT_WR)
        try:
            response = client.response(timeout=TIMEOUT * 0.6)
        except EOFError:
            pass
        else:
            assert_problem(response, 400)
            assert client.closed_within(TIMEOUT * 0.6)
    assert settled_value(lambda: upstream.completed, completed) == completed


def test_body_arriving_steadily_is_not_timed_out(gateway: GatewayProcess) -> None:
    """The body timeout bounds each pause, not the whole body."""
    with RawClient(gateway.port) as client:
        client.send(b"POST /echo/body HTTP/1.1\r\n" + HOST + b"Content-Length: 8\r\n\r\n")
        for _ in range(8):  # 8 x TIMEOUT/3 > TIMEOUT in total
            assert client.silent_for(TIMEOUT / 3)
            client.send(b"b")
        response = client.response()
    assert response.status == 200
    assert response.json()["body"] == "bbbbbbbb"


def test_slow_body_below_the_minimum_rate_is_cut(rated: GatewayProcess,
                                                 upstream: WireUpstream) -> None:
    """R.U.D.Y.: a byte well within each pause timeout, but far below the minimum rate,
    is cut at body_timeout + received / min_body_rate, and the upstream sees nothing."""
    before = upstream.completed
    with RawClient(rated.port) as client:
        client.send(b"POST /echo/slow HTTP/1.1\r\n" + HOST + b"Content-Length: 100000\r\n\r\n")
        started = time.monotonic()
        answer = None
        for _ in range(40):  # 40 x TIMEOUT/5 = 4 s if never cut
            if not client.try_send(b"r") or not client.silent_for(TIMEOUT / 5):
                answer = client.response(timeout=TIMEOUT)
                break
        elapsed = time.monotonic() - started
    assert answer is not None, "a body at 5 B/s was never cut"
    assert_problem(answer, 408)
    assert EARLIEST < elapsed < LATEST + 40 / MIN_RATE
    assert nothing_forwarded(upstream, before)


def test_body_above_the_minimum_rate_is_served(rated: GatewayProcess) -> None:
    with RawClient(rated.port) as client:
        size = 8 * 200
        client.send(b"POST /echo/fast HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n"
                    % size)
        for _ in range(8):  # 200 bytes every TIMEOUT/4: 1600 B/s in all, over 1 s
            assert client.silent_for(TIMEOUT / 4)
            client.send(b"f" * 200)
        response = client.response()
    assert response.status == 200
    assert len(response.json()["body"]) == size


# -- connection limits --------------------------------------------------------------------
PER_IP, TOTAL = 2, 4


@pytest.fixture(scope="module")
def limited(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    try:  # distinct client addresses: Linux routes all of 127.0.0.0/8 to loopback
        socket.create_server(("127.0.0.2", 0)).close()
    except OSError:
        pytest.skip("127.0.0.2 is not a local address here")
    limits = {"max_connections": TOTAL, "max_connections_per_ip": PER_IP}
    with wire_gateway(tmp_path_factory.mktemp("connections"), upstream, limits=limits) as gw:
        yield gw


@contextlib.contextmanager
def held(port: int, source: str, count: int, busy: bool = False) -> Iterator[list[RawClient]]:
    """``count`` connections from ``source``, each proven admitted by a served request;
    ``busy``: each then has a head begun (not idle: never reaped to make room)."""
    clients = [RawClient(port, source=source) for _ in range(count)]
    try:
        for client in clients:
            client.send(request("GET", "/echo/held"))
            assert client.response().status == 200
            if busy:
                client.send(b"GET /echo/busy HTTP/1.1\r\n")
        yield clients
    finally:
        for client in clients:
            client.close()


def refused_connection(port: int, source: str) -> None:
    """The connection is answered 503 (problem+json) and closed, or closed at once."""
    with RawClient(port, source=source) as client:
        client.try_send(request("GET", "/echo/extra"))
        try:
            response = client.response(timeout=3)
        except EOFError:
            return
        assert_problem(response, 503, "connections")
        assert client.closed_within()


def admitted(port: int, source: str) -> bool:
    with RawClient(port, source=source) as client:
        client.try_send(request("GET", "/echo/again"))
        try:
            return client.response(timeout=3).status == 200
        except EOFError:
            return False


def test_connections_per_ip_over_the_limit_are_refused(limited: GatewayProcess,
                                                       upstream: WireUpstream) -> None:
    with held(limited.port, "127.0.0.2", PER_IP):
        before = upstream.requests
        refused_connection(limited.port, "127.0.0.2")
        assert nothing_forwarded(upstream, before)
        assert admitted(limited.port, "127.0.0.3"), "another address must still get in"
    assert wait_until(lambda: admitted(limited.port, "127.0.0.2")), "slots must free on close"


def test_connections_over_the_total_are_refused(limited: GatewayProcess,
                                                upstream: WireUpstream) -> None:
    with held(limited.port, "127.0.0.4", PER_IP, busy=True), \
            held(limited.port, "127.0.0.5", PER_IP, busy=True):
        before = upstream.requests
        refused_connection(limited.port, "127.0.0.6")
        assert nothing_forwarded(upstream, before)
    assert wait_until(lambda: admitted(limited.port, "127.0.0.6")), "slots must free on close"


def test_idle_keep_alive_connections_make_room_at_the_total(limited: GatewayProcess) -> None:
    """At the cap, an idle keep-alive connection is closed so a new client gets in."""
    with held(limited.port, "127.0.0.4", PER_IP) as idle, \
            held(limited.port, "127.0.0.5", PER_IP, busy=True):
        assert admitted(limited.port, "127.0.0.6")
        assert any(client.closed_within(3) for client in idle)


@pytest.mark.parametrize("body", [b"", b"b" * (BODY_SIZE + 1)], ids=["head_only", "with_body"])
def test_nothing_after_a_413_is_forwarded(gateway: GatewayProcess, upstream: WireUpstream,
                                          body: bytes) -> None:
    """A 413 by Content-Length closes the connection: the bytes that follow (its body, or
    what would be the next request) are never parsed as a request."""
    hidden = b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    data = (b"POST /echo/body HTTP/1.1\r\n" + HOST
            + b"Content-Length: %d\r\n\r\n" % (BODY_SIZE + 1) + body + hidden)
    before = len(upstream.seen)
    response, closed = exchange(gateway.port, data)
    assert_problem(response, 413, "limits")
    assert closed
    settled_count(upstream, upstream.requests, within=0.05)
    assert [t for _, t, _ in upstream.seen[before:]] == []


def test_refusal_flood_with_a_stalled_event_sink_does_not_stall_the_gateway(
        upstream: WireUpstream, tmp_path: Path) -> None:
    """Events go to stdout, a pipe nobody reads (as with a stalled log shipper): refusals
    keep being answered; events may be dropped, the data plane must not wait for them."""
    config = base_config(upstream.url, events={"stdout": True})
    with GatewayProcess(config, tmp_path) as gw:
        try:
            for _ in range(1500):  # ~100 KiB of events: more than a pipe buffer holds
                with RawClient(gw.port, timeout=2) as client:
                    client.send(b"GET /echo/a;b HTTP/1.1\r\n" + HOST + b"\r\n")
                    assert_problem(client.response(), 400)
        finally:
            while gw.read_stdout(timeout=0.2):  # unblock it, so that it can stop quickly
                pass
