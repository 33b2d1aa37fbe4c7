"""The Store interface: the one way into shared state (keys, counters, bans, aggregates).

Keys are ``str``, values ``bytes``, TTLs are seconds; an expired entry is invisible to every
call, whether or not it has been purged yet. Counters made by ``incr`` are stored as ASCII
decimal bytes (``get`` returns ``b"42"``), as Redis does, so a Redis backend keeps the same
contract. Every backend passes tests/contract/test_store_contract.py.

``open_store`` picks a backend from a URL or a path:

- ``memory://`` — a dict in this process (tests, one-process setups; not shared by
  forked workers);
- ``sqlite:///abs/path.db``, ``sqlite://rel/path.db``, or a plain path — a SQLite file
  in WAL mode, shared by every process on the machine; ``sqlite://`` alone or no argument
  means ``apiward.db`` in the current directory;
- ``redis://[user:password@]host:port/db``, ``rediss://…`` (TLS),
  ``redis+cluster://host:port`` (Redis Cluster) — Redis, shared by every gateway node;
  the query may add ``prefix=`` (default ``apiward:``), ``connect_timeout=``,
  ``timeout=``, ``max_connections=`` and, with TLS, ``ssl_ca_certs=``, ``ssl_certfile=``,
  ``ssl_keyfile=`` (see apiward.state.redis).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from apiward.errors import ApiwardError

Clock = Callable[[], float]
"""Wall time in seconds (``time.time``); tests pass a clock they can move."""

DEFAULT_PATH = "apiward.db"


class StoreError(ApiwardError):
    """The store cannot be opened or used; the message names the store and what to do."""

    exit_code = 2


@runtime_checkable
class Store(Protocol):
    """Async key-value state with expiry. Backends: memory, sqlite, redis."""

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Write ``value``; it expires after ``ttl`` seconds (None: never; replaces any
        earlier TTL)."""
        ...

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Write only when the key is absent (or expired), atomically across processes:
        True when written. (Redis ``SET NX``.)"""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the key; True when a live entry was removed."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` atomically and return the new value. A
        key that is absent or expired starts from 0 and gets ``ttl``; an existing key keeps
        its expiry. ValueError when the value is not an integer."""
        ...

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every live ``(key, value)`` whose key starts with ``prefix``, sorted by key."""
        ...

    async def close(self) -> None:
        """Release the backend; calling it twice is harmless."""
        ...


def check_entry(value: bytes, ttl: float | None) -> float | None:
    """Validate a write (shared by the backends); returns the ttl."""
    if not isinstance(value, bytes):
        raise TypeError(f"store values are bytes, got {type(value).__name__}")
    return check_ttl(ttl)


def check_ttl(ttl: float | None) -> float | None:
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be > 0 seconds or None, got {ttl!r}")
    return ttl


def parse_counter(key: str, value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"store key {key!r} does not hold an integer") from None


REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


def is_redis_url(target: str | os.PathLike[str] | None) -> bool:
    if not isinstance(target, str) or "://" not in target:
        return False
    return target.split("://", 1)[0].lower() in REDIS_SCHEMES


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # a URL urlsplit refuses (a broken [IPv6] host): hide the userinfo
        userinfo, at, host = url.partition("://")[2].rpartition("@")
        return url if not at else url.replace(userinfo + "@", "***@", 1)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def open_store(url_or_path: str | os.PathLike[str] | None = None, *,
               clock: Clock = time.time) -> Store:
    """The store named by ``url_or_path`` (see the module docstring), opened now.

    Opening a SQLite store touches the disk: call it at start-up, off the event loop, and
    in each process that uses it (after fork). Opening a Redis store does no I/O: an
    unreachable Redis is a StoreError from the first call; Redis keeps time itself, so
    ``clock`` is not used there. Raises StoreError when it cannot be opened.
    """
    if is_redis_url(url_or_path):
        from apiward.state.redis import RedisStore

        return RedisStore(os.fspath(url_or_path))  # type: ignore[arg-type]
    path = store_path(url_or_path)
    if path is None:
        from apiward.state.memory import MemoryStore

        return MemoryStore(clock=clock)
    from apiward.state.sqlite import SqliteStore

    return SqliteStore(path, clock=clock)


def store_path(url_or_path: str | os.PathLike[str] | None = None) -> Path | None:
    """The SQLite file that ``url_or_path`` names, or None for a store without one
    (``memory://``, a Redis URL). StoreError for a URL no backend serves."""
    target = os.fspath(url_or_path) if url_or_path is not None else ""
    if is_redis_url(target):
        return None
    if target.startswith("memory://"):
        if target != "memory://":
            raise StoreError(f"store {target!r}: a memory store takes no path; "
                             "write memory://")
        return None
    if target.startswith("sqlite://"):
        target = target[len("sqlite://"):]
    elif "://" in target:
        scheme = target.split("://", 1)[0]
        raise StoreError(f"store {redact_url(target)!r}: unknown scheme {scheme}://; use "
                         "memory://, sqlite:///path, redis://host:port/db or a file path")
    return Path(target or DEFAULT_PATH)
