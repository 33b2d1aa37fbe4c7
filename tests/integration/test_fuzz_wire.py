"""Random and mutated request bytes against one long-running gateway.

Each example starts from one to three valid requests, mutates their bytes (insertions,
deletions, replacements, duplicated and injected header lines, random Content-Length,
Transfer-Encoding and chunk sizes), splits them into random packets, optionally half-closes,
and then reads everything the gateway answers. Whatever the input:

- every answer is a well-formed HTTP/1.1 response, and the gateway closes the connection
  (or, for a keep-alive one, lets it idle out) within its timeouts: it never hangs;
- the gateway process is still alive;
- the upstream completed no more requests than the client got upstream answers for (and
  received at most one head more: a streamed body found invalid midway is cut short).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.gateway import GatewayProcess
from support.wire_fixtures import (
    ProtocolViolation,
    RawClient,
    WireUpstream,
    settled_value,
    wire_gateway,
)

TIMEOUT = 0.3  # header, body and keep-alive timeouts of the fuzzed gateway
HANG = TIMEOUT + 2.0  # an exchange lasting longer than this is a hang
STATUS_AT_LINE_START = re.compile(rb"(?:^|\r\n)HTTP/1\.1 ([1-5][0-9]{2}) ")


@pytest.fixture(scope="module")
def upstream() -> Iterator[WireUpstream]:
    with WireUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    limits = {"header_timeout": TIMEOUT, "body_timeout": TIMEOUT,
              "keepalive_timeout": TIMEOUT, "body_size": "64KiB", "header_size": "8KiB",
              "header_count": 50}
    with wire_gateway(tmp_path_factory.mktemp("fuzz"), upstream, limits=limits,
                      upstream={"response_timeout": "2s"}) as gw:
        yield gw


# -- strategies ----------------------------------------------------------------------------
INTERESTING = (b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"\x00", b"\x7f",
               b"\x80", b"\xff", b"%", b"%2F", b"%00", b"/", b"..", b"\\", b"?", b"#", b"0",
               b"1", b"f", b"-", b"+", b"chunked", b"0\r\n\r\n", b"\r\n\r\n", b"HTTP/1.1",
               b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
NUMBERS = st.one_of(
    st.integers(0, 70_000).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"-1", b"+1", b"0x10", b"1, 1", b"1,2", b" 5", b"5 ", b"1e3",
                     b"18446744073709551616", b"99999999999999999999", b"00000000005"]),
)
TE_VALUES = st.sampled_from([b"chunked", b"Chunked", b" chunked", b"chunked ", b"gzip, chunked",
                             b"chunked, gzip", b"identity", b"xchunked", b",chunked", b"",
                             b"chunked\x00", b"chunked;q=1", b"chunked, chunked"])
CHUNK_SIZES = st.one_of(
    st.integers(0, 300).map(lambda n: b"%x" % n),
    st.sampled_from([b"", b"zz", b"-1", b"0x5", b"ffffffffffffffff", b"10000000000000000",
                     b"5 ", b"5;ext", b"5;a=\"b\"", b"00005"]),
)
PATHS = st.sampled_from(["/echo", "/echo/a", "/echo/a/../b", "/echo/%41", "/echo?x=1",
                         "/echo/a/./b?q=%2F", "/echo/", "/echo/x;y", "/echo//z"])
TOKEN = st.text(st.sampled_from("abcXYZ-_019"), min_size=1, max_size=8)


@st.composite
def valid_request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    lines = [f"{method} {draw(PATHS)} {version}".encode()]
    if version == "HTTP/1.1" or draw(st.booleans()):
        lines.append(b"Host: " + draw(st.sampled_from([b"wire.test", b"127.0.0.1:80",
                                                        b"example.com"])))
    for _ in range(draw(st.integers(0, 3))):
        lines.append(b"X-" + draw(TOKEN).encode() + b": " + draw(TOKEN).encode())
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from([b"Connection: close", b"Connection: keep-alive",
                                           b"Expect: 100-continue", b"Upgrade: h2c",
                                           b"X-Request-ID: fuzz-1"])))
    body = b""
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "length" or (framing == "chunked" and version == "HTTP/1.0"):
        body = draw(st.binary(max_size=64))
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=3))
        body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        lines.append(b"Transfer-Encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(valid_request(), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["insert", "delete", "replace", "header", "duplicate",
                                   "length", "te", "chunk"]))
        at = draw(st.integers(0, len(data)))
        if op == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(max_size=4)))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "replace":
            if at < len(data):
                data[at] = draw(st.integers(0, 255))
        elif op in ("header", "length", "te"):
            line = data.find(b"\r\n", at)
            if line < 0:
                continue
            if op == "header":
                field = draw(st.sampled_from([b"Host: other.test", b"Content-Length: 3",
                                              b"Transfer-Encoding: chunked", b"X : y",
                                              b" folded", b"Expect: 100-continue",
                                              b"Connection: close, x-a"]))
            elif op == "length":
                field = b"Content-Length: " + draw(NUMBERS)
            else:
                field = b"Transfer-Encoding: " + draw(TE_VALUES)
            data[line + 2:line + 2] = field + b"\r\n"
        elif op == "duplicate":
            start = data.rfind(b"\r\n", 0, at)
            end = data.find(b"\r\n", at)
            if 0 <= start < end:
                data[end:end] = data[start:end]
        elif op == "chunk":
            lines = [m.start() for m in re.finditer(rb"\r\n[0-9a-fA-F]+\r\n", bytes(data))]
            if lines:
                start = lines[draw(st.integers(0, len(lines) - 1))] + 2
                end = data.find(b"\r\n", start)
                data[start:end] = draw(CHUNK_SIZES)
    return bytes(data)


@st.composite
def packets(draw: st.DrawFn) -> list[bytes]:
    data = draw(st.one_of(mutated(), mutated(), mutated(), st.binary(max_size=200)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=5))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# -- reading whatever comes back -------------------------------------------------------
def read_all(client: RawClient, lenient: bool) -> tuple[list[int], list[bool]]:
    """Statuses and is-problem flags of every final response until the connection ends.

    ``lenient``: a HEAD may be among the requests, so bodies cannot be delimited; then the
    status lines are only counted in the raw stream.
    """
    deadline = time.monotonic() + HANG
    if lenient:
        while client._fill(deadline):
            pass
        raw = client.buffer
        statuses, problems = [], []
        for match in STATUS_AT_LINE_START.finditer(raw):
            status = int(match.group(1))
            if status >= 200:
                head_end = raw.find(b"\r\n\r\n", match.end())
                head = raw[match.end():head_end if head_end >= 0 else len(raw)]
                statuses.append(status)
                problems.append(b"application/problem+json" in head)
        return statuses, problems
    statuses, problems = [], []
    while True:
        try:
            response = client.response(timeout=max(0.0, deadline - time.monotonic()))
        except EOFError:
            assert not client.buffer or client.reset, f"truncated answer {client.buffer[:200]!r}"
            return statuses, problems
        if response.status >= 200:
            statuses.append(response.status)
            problems.append(response.is_problem)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(segments=packets(), half_close=st.booleans())
def test_gateway_survives_mutated_requests(gateway: GatewayProcess, upstream: WireUpstream,
                                           segments: list[bytes], half_close: bool) -> None:
    data = b"".join(segments)
    heads_before, completed_before = upstream.requests, upstream.completed
    start = time.monotonic()
    with RawClient(gateway.port, timeout=HANG) as client:
        for segment in segments:
            if not client.try_send(segment):
                break
        if half_close:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_WR)
        try:
            statuses, problems = read_all(client, lenient=b"HEAD" in data)
        except TimeoutError:
            pytest.fail(f"the gateway neither answered nor closed within {HANG}s: {data!r}")
        except ProtocolViolation as exc:
            pytest.fail(f"malformed answer ({exc}) to {data!r}")
    elapsed = time.monotonic() - start
    assert elapsed < HANG, (elapsed, data)
    assert gateway.proc is not None and gateway.proc.poll() is None, gateway.stderr
    answered = sum(1 for problem in problems if not problem)
    completed = settled_value(lambda: upstream.completed, completed_before + answered, 0.05)
    assert completed - completed_before <= answered, (
        f"the upstream completed {completed - completed_before} requests, the client got "
        f"{answered} upstream answers ({statuses}) for {data!r}")
    heads = upstream.requests - heads_before
    assert heads <= answered + 1, f"{heads} heads upstream, {statuses} answered, for {data!r}"


def test_gateway_still_serves_after_the_fuzzing(gateway: GatewayProcess,
                                                upstream: WireUpstream) -> None:
    """Runs after the fuzz test (file order): the gateway is alive and serves normally."""
    with RawClient(gateway.port) as client:
        client.send(b"GET /echo/after HTTP/1.1\r\nHost: wire.test\r\n\r\n")
        response = client.response()
    assert response.status == 200
    assert response.json()["path"] == "/echo/after"
    assert gateway.proc is not None and gateway.proc.poll() is None
