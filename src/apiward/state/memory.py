"""The memory backend: a dict in this process, with lazy expiry and a heap to purge.

Nothing here awaits, so every call (``incr`` included) is atomic for the event loop. The
state belongs to one process: forked workers each get their own copy.
"""

from __future__ import annotations

import time
from heapq import heapify, heappop, heappush

from apiward.state.store import Clock, StoreError, check_entry, check_ttl, parse_counter

# An entry: (value, expires_at or None). Counters keep an int until someone reads them as
# bytes, so a rate limiter's incr costs no parsing or formatting.
Entry = tuple[bytes | int, float | None]


class MemoryStore:
    """A ``Store`` in a dict: for tests and single-process gateways."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._data: dict[str, Entry] = {}
        self._expiries: list[tuple[float, str]] = []  # heap; stale items skipped when popped
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _live(self, key: str, now: float) -> Entry | None:
        if self._closed:
            raise StoreError("the memory store is closed")
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _put(self, key: str, value: bytes | int, ttl: float | None, now: float) -> None:
        if self._closed:
            raise StoreError("the memory store is closed")
        if ttl is None:
            self._data[key] = (value, None)
            return
        expires = now + ttl
        self._data[key] = (value, expires)
        heap = self._expiries
        heappush(heap, (expires, key))
        while heap[0][0] <= now:  # purge what has expired, so counters do not pile up
            stamp, old = heappop(heap)
            entry = self._data.get(old)
            if entry is not None and entry[1] == stamp:
                del self._data[old]
        if len(heap) > 2 * len(self._data) + 64:  # keys rewritten with new TTLs: compact
            self._expiries = [(e[1], k) for k, e in self._data.items() if e[1] is not None]
            heapify(self._expiries)

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key, self._clock())
        if entry is None:
            return None
        value = entry[0]
        return value if isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._put(key, value, check_entry(value, ttl), self._clock())

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        ttl = check_entry(value, ttl)
        now = self._clock()
        if self._live(key, now) is not None:
            return False
        self._put(key, value, ttl, now)
        return True

    async def delete(self, key: str) -> bool:
        return self._live(key, self._clock()) is not None and self._data.pop(key) is not None

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            self._put(key, amount, check_ttl(ttl), now)
            return amount
        value, expires = entry
        count = (value if isinstance(value, int) else parse_counter(key, value)) + amount
        self._data[key] = (count, expires)
        return count

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        if self._closed:
            raise StoreError("the memory store is closed")
        now = self._clock()
        found = []
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            value, expires = self._data[key]
            if expires is None or expires > now:
                found.append((key, value if isinstance(value, bytes) else str(value).encode()))
        return found

    async def close(self) -> None:
        self._closed = True
        self._data.clear()
        self._expiries.clear()
