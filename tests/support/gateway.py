"""Start the real gateway (``python -m apiward run``) on an ephemeral port and stop it."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

READY = re.compile(r"apiward listening on (https?)://([^\s]+):(\d+)")


class GatewayProcess:
    """``with GatewayProcess(config, tmp_path) as gw:`` then ``gw.url``, ``gw.port``."""

    def __init__(self, config: dict[str, Any], directory: Path, timeout: float = 15.0) -> None:
        config = {"listen": "127.0.0.1:0", **config}
        self.path = directory / "apiward.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.timeout = timeout
        self.port = 0
        self.scheme = "http"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = directory / "gateway.stderr"
        self.stdout_lines: list[str] = []

    def start(self) -> GatewayProcess:
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apiward", "run", "--config", str(self.path)],
            stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True,
        )
        self.port = self._await_ready()
        return self

    def _await_ready(self) -> int:
        assert self.proc and self.proc.stdout
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.timeout
        buffer = b""
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            match = READY.search(buffer.decode(errors="replace"))
            if match:
                self.scheme = match.group(1)
                return int(match.group(3))
        self.stop()
        raise RuntimeError(f"gateway did not start: {self.stderr}")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc
        self.proc.send_signal(sig)

    def read_stdout(self, timeout: float = 5.0) -> str:
        """Whatever the gateway printed to stdout within ``timeout`` (events are JSON lines)."""
        assert self.proc and self.proc.stdout
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and selector.select(deadline - time.monotonic()):
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\n"):
                break
        return data.decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
