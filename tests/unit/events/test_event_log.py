"""The event log writes JSON lines in batches and never blocks on a stuck sink."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from apiward.events.log import EventLog


def test_events_are_json_lines_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    events = EventLog(path, stdout=False)
    events.emit({"request_id": "r1", "action": "block"})
    events.emit({"request_id": "r2", "action": "would_block"})
    events.close()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2"]
    assert all(isinstance(line["time"], float) for line in lines)


def test_a_stuck_sink_drops_events_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: writes stall
    try:
        events = EventLog(fifo, stdout=False)
        started = time.monotonic()
        for batch in range(200):
            for i in range(50):
                events.emit({"request_id": f"{batch}-{i}", "padding": "x" * 200})
            events.flush()
        assert time.monotonic() - started < 5  # the caller never waited on the pipe
        assert events.dropped > 0
        events.close(timeout=0.2)
    finally:
        os.close(reader)
