"""One record per call for the endpoint inventory, kept off the request path.

The server appends a plain tuple per finished call (no object built, no clock beyond two
readings); the gateway's periodic job folds the batch into the worker's ``Inventory`` in
chunks (yielding to the loop between them) and saves it to the store now and then. Each
worker is one writer in the store (``inventory/persist.py``): ``apiward inventory`` merges
them all. Records past ``MAX_PENDING`` between two folds are counted, not kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from apiward.inventory.aggregates import Inventory
from apiward.inventory.persist import save, writer_id
from apiward.state.store import Store, StoreError

log = logging.getLogger("apiward.inventory")

MAX_PENDING = 200_000
CHUNK = 2_000  # records folded between two yields to the event loop


class Recorder:
    """``pending`` is appended to by the server: plain tuples of ``CallRecord``'s fields,
    in its order."""

    def __init__(self, store: Store, spec_templates: dict[str, set[tuple[str, str]]],
                 *, save_interval: float = 10.0, max_endpoints: int = 2000) -> None:
        self.store = store
        self.inventory = Inventory(spec_templates=spec_templates, max_endpoints=max_endpoints)
        self.pending: list[tuple[Any, ...]] = []
        self.dropped = 0
        self.save_interval = save_interval
        self._saved = 0.0
        self._writer: str | None = None
        self._busy = False
        self._failing = False

    def record(self, item: tuple[Any, ...]) -> None:
        pending = self.pending
        if len(pending) < MAX_PENDING:
            pending.append(item)
        else:
            self.dropped += 1

    async def flush(self, force_save: bool = False) -> None:
        """Fold what was recorded into the inventory; save it when it is time."""
        if self._busy:  # the previous flush is still folding or saving
            return
        self._busy = True
        try:
            batch, self.pending = self.pending, []
            add = self.inventory.add
            for start in range(0, len(batch), CHUNK):
                add(batch[start:start + CHUNK])  # plain tuples in CallRecord's order
                await asyncio.sleep(0)
            if self.dropped:
                log.warning("inventory: %d calls came faster than they could be recorded and "
                            "were left out", self.dropped)
                self.dropped = 0
            now = time.monotonic()
            if force_save or now - self._saved >= self.save_interval:
                self._saved = now
                if self._writer is None:
                    self._writer = writer_id()  # in the worker: its own pid
                try:
                    await save(self.store, self._writer, self.inventory)
                except StoreError as error:  # counts stay in memory; the next save retries
                    if not self._failing:
                        log.error("inventory: saving failed, the counts are kept and saved "
                                  "when the store works again: %s", error)
                    self._failing = True
                else:
                    if self._failing:
                        log.info("inventory: saved again")
                    self._failing = False
        finally:
            self._busy = False

    async def close(self) -> None:
        """The last fold and save, at shutdown; then the store is released."""
        try:
            await self.flush(force_save=True)
        finally:
            await self.store.close()
