"""Helpers for the integration tests of the real gateway process.

- ``CountingUpstream``: the test upstream, also counting the TCP connections it accepted.
- ``RawUpstream``: a one-trick raw TCP upstream (truncated answers, garbage, ...).
- ``RawClient``: a raw socket client that reads HTTP/1.x responses byte-exactly.
- ``gateway_config`` / ``start_gateway``: a config dict (events never on stdout, so the
  gateway can't block on a pipe nobody reads) and a started ``GatewayProcess``.
- ``wait_until``: poll an observable condition with a deadline (no sleeps as sync).
- ``rss_kib``, ``children_of``, ``established_sockets``: facts from /proc.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from support.gateway import GatewayProcess
from support.upstream import UpstreamServer

T = TypeVar("T")

REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
PROBLEM_KEYS = {"type", "title", "status", "detail", "check", "request_id"}
EVENT_KEYS = {"time", "request_id", "client_ip", "method", "path", "check", "action",
              "status", "reason"}


# -- polling ----------------------------------------------------------------------------
def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Call ``condition`` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# -- upstreams --------------------------------------------------------------------------
class CountingUpstream(UpstreamServer):
    """``UpstreamServer`` that also counts the connections it accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.lock:
            self.connections += 1
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about peers that went away (the gateway aborting an exchange)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.seen]


class RawUpstream:
    """Accepts connections; for each, reads one request head and writes ``answer`` bytes,
    then closes (``close=True``) or keeps the socket open until the test ends."""

    def __init__(self, answer: bytes, close: bool = True) -> None:
        self.answer = answer
        self.close = close
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = 0
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            data = b""
            conn.settimeout(5)
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.answer)
            except OSError:
                pass
            if self.close:
                conn.close()
            else:
                self.open.append(conn)

    def __enter__(self) -> RawUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


def unused_port() -> socket.socket:
    """A socket bound to a port, never listening: connecting to it is refused, and
    nobody else can take the port while the socket lives."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# -- the gateway --------------------------------------------------------------------------
def api(upstream_url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "default", "upstream": {"url": upstream_url}, **extra}


def gateway_config(*apis: dict[str, Any], events_file: Path | None = None,
                   **extra: Any) -> dict[str, Any]:
    events: dict[str, Any] = {"stdout": False}
    if events_file is not None:
        events["file"] = str(events_file)
    return {"events": events, "apis": list(apis), **extra}


@contextmanager
def start_gateway(config: dict[str, Any], directory: Path) -> Iterator[GatewayProcess]:
    directory.mkdir(parents=True, exist_ok=True)
    gateway = GatewayProcess(config, directory)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


# -- event log ----------------------------------------------------------------------------
def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def wait_event(path: Path, request_id: str, timeout: float = 10.0,
               **match: Any) -> dict[str, Any]:
    """The first event of ``request_id`` (and matching ``match``), polling the file."""
    def find() -> dict[str, Any] | None:
        for event in read_events(path):
            if event.get("request_id") == request_id and all(
                    event.get(k) == v for k, v in match.items()):
                return event
        return None
    return wait_until(find, timeout, message=f"event {request_id} {match} in {path}")


# -- raw client ---------------------------------------------------------------------------
@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = True  # False: the connection ended before the framing said it would

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One TCP connection to the gateway, read byte-exactly."""

    def __init__(self, port: int, timeout: float = 5.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"", version: str = "1.1", host: str = "gw.test") -> None:
        lines = [f"{method} {path} HTTP/{version}"]
        if host:
            lines.append(f"Host: {host}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body and not any(k.lower() in ("content-length", "transfer-encoding")
                            for k in (headers or {})):
            lines.append(f"Content-Length: {len(body)}")
        self.send("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_more(self) -> bool:
        """One ``recv`` into ``buffer``; False at the end of the stream."""
        return self._fill()

    def _take(self, n: int) -> bytes:
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_head(self) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response head: "
                                      f"{self.buffer!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        return RawResponse(version, int(status), reason[0] if reason else "", headers)

    def read_response(self, method: str = "GET") -> RawResponse:
        """One final response (interim 1xx answers are skipped), body by its framing."""
        response = self.read_head()
        while 100 <= response.status < 200:
            response = self.read_head()
        if method == "HEAD" or response.status in (204, 304):
            return response
        encoding = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if encoding == "chunked":
            body = b""
            while True:
                line = self._line()
                if line is None:
                    response.complete = False
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while True:  # trailer fields, then the empty line
                        line = self._line()
                        if line is None:
                            response.complete = False
                        if not line:
                            break
                    break
                while len(self.buffer) < size + 2 and self._fill():
                    pass
                if len(self.buffer) < size + 2:
                    body += self._take(size)
                    response.complete = False
                    break
                body += self._take(size)
                self._take(2)
            response.body = body
        elif length is not None:
            size = int(length)
            while len(self.buffer) < size and self._fill():
                pass
            response.complete = len(self.buffer) >= size
            response.body = self._take(size)
        else:
            while self._fill():
                pass
            response.body = self._take(len(self.buffer))
        return response

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the peer closes the connection (with nothing more sent) in time."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        if chunk:
            self.buffer += chunk
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def echo_headers(response: Any) -> list[tuple[str, str]]:
    """The headers the upstream received, from an /echo answer (httpx or raw)."""
    return [(k, v) for k, v in response.json()["headers"]]


def echo_header_values(response: Any, name: str) -> list[str]:
    return [v for k, v in echo_headers(response) if k.lower() == name.lower()]


# -- /proc --------------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def children_of(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc/*/stat, so no kernel option needed)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.add(int(entry.name))
    return children


def established_sockets(pid: int, local_port: int) -> int:
    """How many ESTABLISHED TCP sockets on ``local_port`` the process ``pid`` holds."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if port == local_port and cols[3] == "01" and cols[9] in inodes:
                count += 1
    return count
