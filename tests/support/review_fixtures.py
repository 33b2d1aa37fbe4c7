"""A scriptable raw upstream for the data-plane review tests.

``ScriptedUpstream(script)`` accepts connections and runs ``script(peer)`` for each on its
own thread; ``peer`` is an ``UpstreamPeer`` that reads whole requests (head and a
Content-Length or chunked body) and writes raw bytes, so a test can play a misbehaving
upstream exactly: extra responses, interim 1xx answers, early answers, idle closes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class UpstreamPeer:
    """One accepted upstream connection, seen from the upstream's side."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index  # the how-many-th connection this is (0-based)
        self.buffer = b""
        sock.settimeout(10)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            return False
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_head(self) -> bytes | None:
        """One request head (without the blank line), or None at EOF."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def read_request(self) -> tuple[bytes, bytes] | None:
        """One whole request: (head, body), or None at EOF."""
        head = self.read_head()
        if head is None:
            return None
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    if not self._fill():
                        return None
                line, _, self.buffer = self.buffer.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(self.buffer) < size + 2:
                    if not self._fill():
                        return None
                body += self.buffer[:size]
                self.buffer = self.buffer[size + 2:]
                if size == 0:
                    break
            return head, body
        length = int(fields.get(b"content-length", b"0") or 0)
        while len(self.buffer) < length:
            if not self._fill():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_closed(self) -> None:
        """Read (and drop) until the gateway closes this connection."""
        while self._fill():
            self.buffer = b""


class ScriptedUpstream:
    """A raw TCP upstream running ``script(peer)`` per accepted connection."""

    def __init__(self, script: Callable[[UpstreamPeer], None]) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.lock = threading.Lock()
        self.accepted = 0
        self.requests: list[bytes] = []  # request heads, in the order they were read
        self.peers: list[UpstreamPeer] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def record(self, head: bytes) -> None:
        with self.lock:
            self.requests.append(head)

    def count(self, needle: bytes) -> int:
        with self.lock:
            return sum(1 for head in self.requests if needle in head)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                peer = UpstreamPeer(conn, self.accepted)
                self.accepted += 1
                self.peers.append(peer)
            threading.Thread(target=self._run, args=(peer,), daemon=True).start()

    def _run(self, peer: UpstreamPeer) -> None:
        try:
            self.script(peer)
        except OSError:
            pass
        finally:
            peer.sock.close()

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        with self.lock:
            peers = list(self.peers)
        for peer in peers:
            peer.sock.close()
