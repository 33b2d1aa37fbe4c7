"""A real ``redis-server`` for tests: a free port on 127.0.0.1, no persistence, a temp dir.

``start()`` waits until the server answers PING (polled, never a fixed sleep); ``stop()``
sends SIGTERM and waits; ``start()`` again brings it back on the same port, for tests of an
outage. The fixtures that hand one out are in tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

INSTALL_HINT = "install it with `apt-get install -y redis-server` (`make test` does)"
READY_TIMEOUT = 10.0  # seconds for a started server to answer PING
STOP_TIMEOUT = 10.0  # seconds for SIGTERM to end it before SIGKILL


class RedisServerError(RuntimeError):
    """The server could not be started; the message has the end of its log."""


def executable() -> str | None:
    """The ``redis-server`` on PATH, or None when it is not installed."""
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(sock: socket.socket, *args: str) -> bytes:
    """Send one command in RESP and read its reply: a line, or the data of a bulk string
    (enough for PING, FLUSHALL and the CLUSTER commands used here)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    sock.sendall(b"".join(parts))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        reply += chunk
    if reply.startswith(b"$") and not reply.startswith(b"$-1"):
        size = int(reply[1:reply.index(b"\r\n")])
        data = reply[reply.index(b"\r\n") + 2:]
        while len(data) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            data += chunk
        return data[:size]
    return reply


class RedisServer:
    """One ``redis-server`` process, restartable on the port it first got."""

    def __init__(self, directory: Path, *, binary: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        found = binary or executable()
        if found is None:
            raise RedisServerError(f"redis-server is not installed; {INSTALL_HINT}")
        self.binary = found
        self.directory = directory
        self.extra_args = extra_args
        self.port = 0  # picked at the first start
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __repr__(self) -> str:
        return f"RedisServer({self.url}, {'running' if self.running else 'stopped'})"

    def start(self) -> None:
        """Start the server (on its old port when restarted) and wait until it answers."""
        if self.running:
            return
        first = self.port == 0
        for _ in range(5 if first else 1):  # a fresh port may be taken before we bind it
            if first:
                self.port = free_port()
            try:
                self._launch()
                return
            except RedisServerError:
                if not first or "Address already in use" not in self._log_tail():
                    raise
        raise RedisServerError(f"no free port for redis-server; {self._log_tail()}")

    def _launch(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        log.write_bytes(b"")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--logfile", str(log), "--daemonize", "no", *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                self.process = None
                raise RedisServerError(f"redis-server on port {self.port} exited at start: "
                                       f"{self._log_tail()}")
            try:
                if self.ping():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RedisServerError(f"redis-server on port {self.port} did not answer PING "
                                       f"within {READY_TIMEOUT} s: {self._log_tail()}")
            time.sleep(0.01)  # between polls

    def command(self, *args: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            return command(sock, *args)

    def ping(self) -> bool:
        """Whether the server answers (PONG, or NOAUTH from one that wants a password)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            return command(sock, "PING").startswith((b"+PONG", b"-NOAUTH"))

    def flushall(self) -> None:
        reply = self.command("FLUSHALL")
        if reply != b"+OK\r\n":
            raise RedisServerError(f"FLUSHALL answered {reply!r}")

    def stop(self) -> None:
        """SIGTERM, then wait for the process to end (SIGKILL if it will not)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


class RedisClusterServers:
    """A Redis Cluster of ``size`` primaries (no replicas) on 127.0.0.1, each a
    RedisServer with the slots split evenly; ``start()`` waits until every node says
    cluster_state:ok (polled). ``url`` is ``redis+cluster://`` on the first node."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.bus_ports = [free_port() for _ in range(size)]  # not port + 10000: may be > 65535
        self.nodes = [RedisServer(directory / f"node{i}", extra_args=(
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus), "--cluster-node-timeout", "5000"))
            for i, bus in enumerate(self.bus_ports)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        slots = 16384
        for i, node in enumerate(self.nodes):
            first, last = i * slots // len(self.nodes), (i + 1) * slots // len(self.nodes) - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", str(node.port), str(bus))
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(b"cluster_state:ok" in node.command("CLUSTER", "INFO")
                      for node in self.nodes):
            if time.monotonic() > deadline:
                self.stop()
                raise RedisServerError(f"the Redis Cluster did not form within "
                                       f"{READY_TIMEOUT} s: {self.nodes[0]._log_tail()}")
            time.sleep(0.02)  # between polls

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def required() -> bool:
    """Whether a missing redis-server must fail the run rather than skip (under CI)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
