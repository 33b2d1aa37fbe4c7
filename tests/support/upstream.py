"""A real upstream HTTP/1.1 server for integration tests (stdlib, threaded).

Paths: ``/echo...`` answers with a JSON picture of the request; ``/slow?s=N`` sleeps;
``/big?size=N`` streams N bytes; ``/chunked`` answers chunked; ``/close`` answers
close-delimited; ``/status/N`` answers status N. ``requests`` counts requests received.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Head and body go out in two writes: without this, Nagle holds the body back
        # until the gateway's delayed ACK (40 ms per forwarded call).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        with self.server.lock:
            self.server.requests += 1
            self.server.seen.append((self.command, self.path, list(self.headers.items())))
        body = self._body()
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path.startswith("/slow"):
            time.sleep(float(query.get("s", ["1"])[0]))
        if url.path == "/big":
            size = int(query["size"][0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                block = b"x" * 65536
                while size > 0:
                    self.wfile.write(block[: min(size, 65536)])
                    size -= 65536
            return
        if url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "keep-alive, X-Hop")
            self.send_header("X-Hop", "must-not-pass")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
            self.close_connection = True
            return
        if url.path.startswith("/status/"):
            status = int(url.path.rsplit("/", 1)[1])
            self.send_response(status)
            if status not in (204, 304):
                self.send_header("Content-Length", "2")
            self.end_headers()
            if status not in (204, 304) and self.command != "HEAD":
                self.wfile.write(b"ok")
            return
        payload = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests = 0
        self.seen: list[tuple[str, str, list[tuple[str, str]]]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> UpstreamServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
