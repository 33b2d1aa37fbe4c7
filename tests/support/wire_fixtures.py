"""Raw-socket helpers for the wire-level integration tests (tests/integration/test_wire_*).

A ``RawClient`` speaks bytes to the real gateway and parses its answers itself (status
line, fields, Content-Length / chunked / close-delimited body), so malformed requests can
be sent exactly as written. ``wire_gateway`` starts one upstream-fronting gateway with a
config made for these tests (events off stdout, so a flood of refusals never fills a pipe
that nobody reads).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.gateway import GatewayProcess
from support.upstream import Handler, UpstreamServer

STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9]{2}) [\x20-\x7e]*")
PROBLEM_TYPE = "application/problem+json"


class ProtocolViolation(AssertionError):
    """The gateway's answer is not well-formed HTTP/1.1."""


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def is_problem(self) -> bool:
        return (self.header("content-type") or "").startswith(PROBLEM_TYPE)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()


class RawClient:
    """One TCP connection to the gateway; every read has a timeout."""

    def __init__(self, port: int, timeout: float = 5.0, source: str | None = None) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False
        self.reset = False

    # -- sending -------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating a gateway that has already closed (returns False then)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    # -- receiving -----------------------------------------------------------------------
    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False at EOF (or reset). Raises TimeoutError past ``deadline``."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the gateway in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no data from the gateway in time") from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _line(self, deadline: float, limit: int = 1 << 20) -> bytes:
        while True:
            index = self.buffer.find(b"\r\n")
            if index >= 0:
                line, self.buffer = self.buffer[:index], self.buffer[index + 2:]
                return line
            if len(self.buffer) > limit:
                raise ProtocolViolation("a response line is too long")
            if not self._fill(deadline):
                raise EOFError(f"closed in the middle of a line: {self.buffer[:200]!r}")

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._fill(deadline):
                raise EOFError("closed in the middle of a body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, timeout: float | None = None, *, head_request: bool = False) -> Response:
        """Read one whole response; EOFError if the connection closed before its first byte
        (or in its middle), TimeoutError if nothing came, ProtocolViolation if malformed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self.buffer and not self._fill(deadline):
            raise EOFError("the gateway closed without answering")
        status_line = self._line(deadline)
        match = STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise ProtocolViolation(f"bad status line {status_line[:200]!r}")
        status = int(match.group(1))
        headers: list[tuple[str, str]] = []
        raw_head = [status_line]
        while True:
            line = self._line(deadline)
            if not line:
                break
            raw_head.append(line)
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise ProtocolViolation(f"bad response field {line[:200]!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        response = Response(status, status_line[13:].decode("latin-1"), headers, b"",
                            b"\r\n".join(raw_head))
        if 100 <= status < 200:
            return response
        lengths = response.header_all("content-length")
        chunked = (response.header("transfer-encoding") or "").lower() == "chunked"
        if lengths and chunked:
            raise ProtocolViolation("a response with both Content-Length and chunked")
        if len(set(lengths)) > 1:
            raise ProtocolViolation("a response with several Content-Length values")
        if head_request or status in (204, 304):
            return response
        if chunked:
            parts = []
            while True:
                size_line = self._line(deadline).split(b";")[0].strip()
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_line):
                    raise ProtocolViolation(f"bad chunk size {size_line!r}")
                size = int(size_line, 16)
                if size == 0:
                    while self._line(deadline):
                        pass  # trailers
                    break
                parts.append(self._exactly(size, deadline))
                if self._exactly(2, deadline) != b"\r\n":
                    raise ProtocolViolation("a chunk not followed by CRLF")
            response.body = b"".join(parts)
        elif lengths:
            if not lengths[0].isdigit():
                raise ProtocolViolation(f"bad Content-Length {lengths[0]!r}")
            response.body = self._exactly(int(lengths[0]), deadline)
        else:  # close-delimited
            while self._fill(deadline):
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def closed_within(self, timeout: float = 3.0) -> bool:
        """True when the gateway closes the connection (EOF or reset) within ``timeout``,
        with no more response bytes sent before that."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._fill(deadline):
                    return not self.buffer
            except TimeoutError:
                return False
            if self.buffer:
                raise ProtocolViolation(f"unexpected bytes before close: {self.buffer[:200]!r}")

    def silent_for(self, seconds: float) -> bool:
        """True if nothing at all (no byte, no close) arrives within ``seconds``."""
        try:
            self._fill(time.monotonic() + seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CompletingHandler(Handler):
    """Counts a request as complete only once its whole body has arrived."""

    server: WireUpstream

    def _body(self) -> bytes:
        body = super()._body()  # a chunked body cut short raises here: never counted
        length = self.headers.get("Content-Length")
        if length is None or len(body) == int(length):
            with self.server.lock:
                self.server.completed += 1
        return body


class WireUpstream(UpstreamServer):
    """The test upstream, also counting ``completed`` requests (head and whole body read).

    ``requests`` counts heads; a gateway that streams a body may forward a head and then
    abort the upstream exchange when the body turns out invalid, which the upstream sees
    as a request cut short, never as a complete one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.RequestHandlerClass = _CompletingHandler
        self.completed = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Exchanges the gateway cuts short are expected here: no traceback for those."""
        if not isinstance(sys.exc_info()[1], ConnectionError | ValueError | TimeoutError):
            super().handle_error(request, client_address)


def request(method: str = "GET", target: str = "/echo", *, host: str | None = "wire.test",
            headers: list[tuple[str, str]] | None = None, body: bytes = b"",
            version: str = "HTTP/1.1") -> bytes:
    """A well-formed request as bytes (Content-Length added for a non-empty body)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body and not any(n.lower() in ("content-length", "transfer-encoding")
                        for n, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer(port: int, data: bytes, timeout: float = 5.0) -> Response:
    """Send ``data`` on a new connection and read the first response only."""
    with RawClient(port, timeout) as client:
        client.try_send(data)
        return client.response()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[Response, bool]:
    """Send ``data`` on a new connection; the first response and whether the gateway then
    closed the connection."""
    with RawClient(port, timeout) as client:
        client.try_send(data)
        response = client.response()
        return response, client.closed_within(timeout)


def assert_problem(response: Response, status: int, check: str = "http") -> dict[str, Any]:
    """A problem+json answer with this status and check; returns the document."""
    assert response.status == status, (response.status, response.body[:300])
    assert response.is_problem, response.headers
    doc = response.json()
    assert doc["status"] == status
    assert doc["check"] == check, doc
    assert doc["request_id"] == response.header("x-request-id")
    for key in ("type", "title", "detail"):
        assert doc[key], doc
    return doc


def echo_path(port: int, target: str, **kwargs: Any) -> str:
    """The path the upstream saw for a GET of ``target`` through the gateway."""
    with RawClient(port) as client:
        client.send(request("GET", target, **kwargs))
        response = client.response()
    assert response.status == 200, (target, response.status, response.body[:300])
    return response.json()["path"]


def settled_value(read: Callable[[], int], expected: int, within: float = 0.1) -> int:
    """``read()`` once it has had ``within`` seconds to move away from ``expected``.

    The upstream counts a request in its own thread; a request the gateway wrongly
    forwarded may still be on its way when the client has its answer, so the count is
    watched for a moment and returned as soon as it differs.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if read() != expected:
            break
        time.sleep(0.005)
    return read()


def settled_count(upstream: UpstreamServer, expected: int, within: float = 0.1) -> int:
    """``upstream.requests`` (heads received), given ``within`` seconds to change."""
    return settled_value(lambda: upstream.requests, expected, within)


def base_config(upstream_url: str, /, **sections: Any) -> dict[str, Any]:
    api = {"upstream": {"url": upstream_url, "connect_timeout": "2s",
                        "response_timeout": "5s"}}
    config: dict[str, Any] = {"events": {"stdout": False}, "shutdown_timeout": "2s",
                              "apis": [api]}
    for key, value in sections.items():
        if key == "upstream":
            api["upstream"].update(value)
        elif key == "checks":
            api["checks"] = value
        else:
            config[key] = value
    return config


@contextlib.contextmanager
def wire_gateway(directory: Path, server: UpstreamServer, /,
                 **sections: Any) -> Iterator[GatewayProcess]:
    """A running gateway in front of ``server``; ``sections`` are top-level config sections
    (limits=..., paths=...), ``upstream=`` settings of the API's upstream, ``checks=``."""
    gateway = GatewayProcess(base_config(server.url, **sections), directory)
    with gateway:
        yield gateway
    assert gateway.proc is not None and gateway.proc.returncode == 0, gateway.stderr


def wait_until(predicate: Any, timeout: float = 3.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true (an event we cannot otherwise be told about)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
