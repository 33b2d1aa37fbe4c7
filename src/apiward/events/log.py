"""The event log: one JSON line per block or would-block, written off the request path.

Events are appended to a list and handed over in batches to a writer thread, so a flood
of refused calls costs one ``write`` per batch, and a sink that blocks (a full disk, a
stdout nobody reads) never stalls the event loop: when the writer falls behind, events
are dropped and counted instead.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson

from apiward.errors import ConfigError

log = logging.getLogger("apiward.events")

FLUSH_DELAY = 0.05
MAX_PENDING = 10_000  # events waiting for the next batch
MAX_BATCHES = 64  # batches waiting for the writer thread
_STOP = b""


class EventLog:
    def __init__(self, file: Path | None, stdout: bool) -> None:
        self._sinks: list[IO[bytes]] = []
        if stdout:
            self._sinks.append(sys.stdout.buffer)
        if file is not None:
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                self._sinks.append(open(file, "ab"))  # noqa: SIM115 - lives with the log
            except OSError as error:
                raise ConfigError(f"events.file: cannot open {file} for writing: "
                                  f"{error.strerror or error}") from None
        self._pending: list[bytes] = []
        self._scheduled = False
        self.dropped = 0
        self._batches: queue.Queue[bytes] = queue.Queue(MAX_BATCHES)
        self._writer: threading.Thread | None = None
        if self._sinks:
            self._writer = threading.Thread(target=self._write_batches, name="apiward-events",
                                            daemon=True)
            self._writer.start()

    def emit(self, record: dict[str, Any]) -> None:
        """Queue one event; ``time`` is added here."""
        if self._writer is None:
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
        """Hand the pending events to the writer thread (dropped if it is far behind)."""
        self._scheduled = False
        if not self._pending:
            return
        batch = b"".join(self._pending)
        count = len(self._pending)
        self._pending.clear()
        try:
            self._batches.put_nowait(batch)
        except queue.Full:
            self.dropped += count
            if self.dropped == count or self.dropped % 10_000 < count:
                log.warning("event log sink is not keeping up: %d events dropped so far",
                            self.dropped)

    def _write_batches(self) -> None:
        while True:
            batch = self._batches.get()
            if batch is _STOP:
                return
            for sink in self._sinks:
                try:
                    sink.write(batch)
                    sink.flush()
                except (OSError, ValueError) as exc:  # a full disk must not stop the gateway
                    log.warning("event log write failed: %s", exc)

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is pending and stop the writer (waiting at most ``timeout``)."""
        self.flush()
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            self._batches.put(_STOP, timeout=timeout)
        except queue.Full:
            return  # the sink is stuck: the daemon thread dies with the process
        writer.join(timeout)
        if not writer.is_alive():
            for sink in self._sinks:
                if sink is not sys.stdout.buffer:
                    sink.close()
        self._sinks = []
