"""The event log: one JSON line per block or would-block, written off the request path.

Events are appended to a list and flushed in one write a moment later, so a flood of
refused calls costs one ``write`` per batch, not one per call.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson

log = logging.getLogger("apiward.events")

FLUSH_DELAY = 0.05
MAX_PENDING = 10_000


class EventLog:
    def __init__(self, file: Path | None, stdout: bool) -> None:
        self._sinks: list[IO[bytes]] = []
        if stdout:
            self._sinks.append(sys.stdout.buffer)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            self._sinks.append(open(file, "ab"))  # noqa: SIM115 - lives as long as the log
        self._pending: list[bytes] = []
        self._scheduled = False
        self.dropped = 0

    def emit(self, record: dict[str, Any]) -> None:
        """Queue one event; ``time`` is added here."""
        if not self._sinks:
            return
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        record["time"] = time.time()
        self._pending.append(orjson.dumps(record) + b"\n")
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        for sink in self._sinks:
            try:
                sink.write(data)
                sink.flush()
            except OSError as exc:  # a full disk must not stop the gateway
                log.warning("event log write failed: %s", exc)

    def close(self) -> None:
        self.flush()
        for sink in self._sinks:
            if sink is not sys.stdout.buffer:
                sink.close()
        self._sinks.clear()
