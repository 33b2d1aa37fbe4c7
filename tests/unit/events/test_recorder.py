"""The inventory recorder: tuples recorded, folded, saved; a store that fails keeps counts."""

from __future__ import annotations

import asyncio
import logging

import orjson

from apiward.events.recorder import MAX_PENDING, Recorder
from apiward.inventory.persist import PREFIX
from apiward.state.store import open_store


def call(path: str, status: int = 200, template: str | None = None) -> tuple:
    return ("api", "GET", "h", path, template, status, 0.002, 0, 10, None, None, False,
            "allow", 1_750_000_000.0)


def test_recorded_calls_are_folded_and_saved() -> None:
    async def main() -> None:
        store = open_store("memory://")
        recorder = Recorder(store, {"api": {("GET", "/items/{id}")}}, save_interval=0)
        for i in range(5):
            recorder.record(call(f"/items/{i}", template="/items/{id}"))
        recorder.record(call("/users/7"))
        await recorder.flush()
        assert recorder.pending == []
        stats = {(e.method, e.template): e.calls for e in recorder.inventory.endpoints()}
        assert stats[("GET", "/items/{id}")] == 5
        saved = await store.scan(PREFIX)
        assert len(saved) == 1 and orjson.loads(saved[0][1])
        await recorder.close()
    asyncio.run(main())


def test_calls_beyond_the_bound_are_counted_not_kept() -> None:
    recorder = Recorder(open_store("memory://"), {})
    recorder.pending = [call("/x")] * MAX_PENDING
    recorder.record(call("/y"))
    assert len(recorder.pending) == MAX_PENDING and recorder.dropped == 1


def test_a_store_that_fails_is_said_once_and_the_counts_stay(caplog) -> None:
    async def main() -> None:
        recorder = Recorder(open_store("redis://127.0.0.1:1"), {}, save_interval=0)
        with caplog.at_level(logging.INFO, logger="apiward.inventory"):
            for _ in range(3):
                recorder.record(call("/x"))
                await recorder.flush()
        assert sum(e.calls for e in recorder.inventory.endpoints()) == 3
        assert [r.levelname for r in caplog.records] == ["ERROR"]
        assert "saving failed" in caplog.records[0].getMessage()
    asyncio.run(main())
