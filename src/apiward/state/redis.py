"""The Redis backend: state in one Redis (or Redis Cluster), shared by every gateway node.

Every key gets a prefix (``apiward:`` unless the URL says ``?prefix=...``), so several apps
can share one Redis; ``scan`` walks only the prefix, with SCAN MATCH (never KEYS). Redis owns
expiry: TTLs go to it as PX milliseconds, rounded up, and the store takes no clock. Redis
counts a key as live during its last millisecond, so an entry may outlive its TTL by up
to a millisecond or two; that is the only difference from the contract's exact deadline.

Opening does no I/O: the connection is made at the first call, within a connect timeout,
and an unreachable Redis is a StoreError from that call naming the URL (password hidden).
A Redis that goes away makes each call a StoreError; once it is back, calls work again
(broken pooled connections are replaced when next taken). Nothing is retried, so an
``incr`` is never counted twice.

At most ``max_connections`` calls are in flight at once (so at most that many connections
to a Redis, or to each node of a cluster): a burst beyond waits its turn, at most
``timeout``, then is a StoreError rather than a flood of connections.

Connections belong to one event loop: the store keeps one client per loop and process, so
it may be filled in one loop (``asyncio.run`` at start-up) and used in the gateway's.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from apiward.state.store import REDIS_SCHEMES, StoreError, check_entry, check_ttl, redact_url

DEFAULT_PREFIX = "apiward:"
CONNECT_TIMEOUT = 2.0  # seconds to open a connection
TIMEOUT = 2.0  # seconds to wait for a reply, or for a free pooled connection
MAX_CONNECTIONS = 64  # calls in flight at once, per store and event loop (a burst waits)
SCAN_COUNT = 1000  # keys SCAN looks at per round trip
MGET_CHUNK = 1000
MAX_TTL_MS = 2**53  # ~285,000 years; Redis refuses an expiry past 2**63 ms
INT64 = 2**63

# The URL's query may set these; anything else is refused rather than ignored.
OPTIONS = {
    "prefix": str,
    "connect_timeout": float,
    "timeout": float,
    "max_connections": int,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
}

# incr with a ttl: create the key at 0 with the ttl if it is absent, then add. One script,
# so no other client sees the key between the two, and an existing key keeps its expiry.
INCR_WITH_TTL = """
redis.call('SET', KEYS[1], '0', 'PX', ARGV[2], 'NX')
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""

_forks = 0  # bumped in a forked child, whose copies of the parent's sockets are not its own


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


FAILURES = (RedisError, RedisClusterException, OSError)  # what a call to Redis may raise


def _glob_escape(pattern: bytes) -> bytes:
    """``pattern`` matched literally by Redis's glob (SCAN MATCH), byte by byte."""
    for special in (b"\\", b"*", b"?", b"[", b"]"):
        pattern = pattern.replace(special, b"\\" + special)
    return pattern


def _px(ttl: float) -> int:
    """A TTL in seconds as Redis milliseconds, rounded up: a ttl > 0 never becomes 0."""
    ms = ttl * 1000
    if not ms <= MAX_TTL_MS:
        raise ValueError(f"ttl {ttl!r} is longer than Redis can keep")
    return max(1, math.ceil(ms - 1e-6))  # the 1e-6 ms forgives float noise: 1.1 s is 1100


def parse_redis_url(url: str, shown: str) -> tuple[str, bool, dict[str, Any]]:
    """A Redis URL's base (``redis://…`` or ``rediss://…``, no query), whether it names a
    cluster (``+cluster``), and its query options typed by ``OPTIONS``; ValueError
    starting with ``shown`` (the URL as it may be printed) otherwise. Shared by the store
    and the rate limiter."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise ValueError(f"{shown}: not a Redis URL; write redis://host:port/db, rediss://… "
                         "or redis+cluster://host:port")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"{shown}: unknown option {name!r}; the URL takes "
                             f"{', '.join(OPTIONS)}")
        try:
            options[name] = kind(value)
        except ValueError:
            raise ValueError(f"{shown}: {name}={value!r} is not "
                             f"{'a number' if kind is not str else 'valid'}") from None
    return (urlunsplit(parts._replace(scheme=scheme.split("+")[0], query="")),
            scheme.endswith("+cluster"), options)


class RedisStore:
    """A ``Store`` in Redis: ``redis://[user:password@]host:port/db``, ``rediss://`` for
    TLS, ``redis+cluster://host:port`` (or ``rediss+cluster://``) for Redis Cluster."""

    def __init__(self, url: str, *, prefix: str | None = None,
                 connect_timeout: float | None = None, timeout: float | None = None,
                 max_connections: int | None = None) -> None:
        self.url = redact_url(url)
        parts = urlsplit(url)
        try:
            base, self.cluster, options = parse_redis_url(url, f"store {self.url!r}")
        except ValueError as error:
            raise StoreError(str(error)) from None
        given = {"prefix": prefix, "connect_timeout": connect_timeout, "timeout": timeout,
                 "max_connections": max_connections}
        options.update({k: v for k, v in given.items() if v is not None})
        self.prefix = options.pop("prefix", DEFAULT_PREFIX)
        self._prefix = self.prefix.encode()
        self._connect_timeout = options.pop("connect_timeout", CONNECT_TIMEOUT)
        self._timeout = options.pop("timeout", TIMEOUT)
        self._max_connections = options.pop("max_connections", MAX_CONNECTIONS)
        if not (self._connect_timeout > 0 and self._timeout > 0 and self._max_connections > 0):
            raise StoreError(f"store {self.url!r}: connect_timeout, timeout and "
                             "max_connections must be > 0")
        self._ssl = options  # what is left: the ssl_* files
        if self._ssl and not base.startswith("rediss"):
            raise StoreError(f"store {self.url!r}: {', '.join(self._ssl)} need TLS; write "
                             "rediss://")
        db = parts.path.strip("/")
        if self.cluster and db not in ("", "0"):
            raise StoreError(f"store {self.url!r}: Redis Cluster has only database 0; "
                             "drop the /db from the URL")
        if not (db.isdigit() and db.isascii()) and db:
            raise StoreError(f"store {self.url!r}: the path is the database number "
                             f"(redis://host:port/0), not {parts.path!r}")
        self._base = base
        self._password = parts.password
        try:
            self._make()  # parses host, port and db now: a bad URL fails at open
        except (ValueError, TypeError) as error:
            raise StoreError(f"store {self.url!r}: {error}") from None
        self._client: Any = None
        self._script: Any = None
        self._places = asyncio.Semaphore(self._max_connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fork = _forks
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    # -- one client per event loop and process ---------------------------------------------

    def _make(self) -> Any:
        retry = Retry(NoBackoff(), 0)  # a failed call is a StoreError, never sent twice
        common = dict(socket_connect_timeout=self._connect_timeout,
                      socket_timeout=self._timeout, retry=retry,
                      max_connections=self._max_connections, **self._ssl)
        if self.cluster:
            return RedisCluster.from_url(self._base, **common)
        return Redis.from_pool(ConnectionPool.from_url(self._base, **common))

    async def _enter(self) -> tuple[Any, asyncio.Semaphore]:
        """This loop's client, once one of the ``max_connections`` places for a call in
        flight is ours: the caller releases it."""
        if self._closed:
            raise StoreError(f"the Redis store {self.url} is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._fork != _forks:
            # Another loop (or a forked child): the old client's connections belong to
            # a loop that has ended (the collector closes them) or to the parent; make
            # our own.
            self._client = self._make()
            self._script = self._client.register_script(INCR_WITH_TTL)
            self._places = asyncio.Semaphore(self._max_connections)
            self._loop, self._fork = loop, _forks
        places = self._places
        if places.locked():  # a burst: wait for a call to finish, within the timeout
            try:
                async with asyncio.timeout(self._timeout):
                    await places.acquire()
            except TimeoutError:
                raise StoreError(f"Redis at {self.url}: all {self._max_connections} "
                                 f"connections stayed busy for {self._timeout} s; is Redis "
                                 "slow, or should the URL give more (?max_connections=)?"
                                 ) from None
        else:
            await places.acquire()  # free: returns at once
        return self._client, places

    def _key(self, key: str) -> bytes:
        return self._prefix + key.encode()

    def _failed(self, error: BaseException, key: str | None = None) -> StoreError:
        detail = (str(error) or type(error).__name__).rstrip(".")
        if self._password:
            detail = detail.replace(self._password, "***")
        if isinstance(error, AuthenticationError | NoPermissionError) or (
                isinstance(error, ResponseError) and detail.startswith(
                    ("NOAUTH", "WRONGPASS", "NOPERM"))):
            return StoreError(f"Redis at {self.url} refused us ({detail}); give the right "
                              "user and password in the store URL "
                              "(redis://user:password@host:port/db)")
        if isinstance(error, ResponseError):
            if detail.startswith("WRONGTYPE") and key is not None:
                return StoreError(f"Redis at {self.url}: {self.prefix}{key} holds a Redis "
                                  "type apiward does not write; is another program using "
                                  f"the prefix {self.prefix!r}?")
            return StoreError(f"Redis at {self.url}: {detail}")
        if "CERTIFICATE_VERIFY_FAILED" in detail:
            return StoreError(f"cannot reach Redis at {self.url} ({detail}); give the CA "
                              "that signed its certificate with ?ssl_ca_certs=/path/ca.pem")
        return StoreError(f"cannot reach Redis at {self.url} ({detail}); check that "
                          "redis-server runs there and that the store URL is right")

    # -- the Store calls ---------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        client, places = await self._enter()
        try:
            return await client.get(self._key(key))
        except FAILURES as error:
            raise self._failed(error, key) from error
        finally:
            places.release()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ttl = check_entry(value, ttl)
        px = None if ttl is None else _px(ttl)
        client, places = await self._enter()
        try:
            await client.set(self._key(key), value, px=px)
        except FAILURES as error:
            raise self._failed(error, key) from error
        finally:
            places.release()

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        ttl = check_entry(value, ttl)
        px = None if ttl is None else _px(ttl)
        client, places = await self._enter()
        try:
            return bool(await client.set(self._key(key), value, px=px, nx=True))
        except FAILURES as error:
            raise self._failed(error, key) from error
        finally:
            places.release()

    async def delete(self, key: str) -> bool:
        client, places = await self._enter()
        try:
            return await client.delete(self._key(key)) > 0
        except FAILURES as error:
            raise self._failed(error, key) from error
        finally:
            places.release()

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ttl = check_ttl(ttl)
        if not -INT64 <= amount < INT64:
            raise ValueError(f"incr amount {amount} is outside Redis's 64-bit range")
        px = None if ttl is None else _px(ttl)
        client, places = await self._enter()
        try:
            if px is None:
                return await client.incrby(self._key(key), amount)
            return await self._script(keys=[self._key(key)], args=[amount, px])
        except ResponseError as error:
            text = str(error)
            if "not an integer" in text:
                raise ValueError(f"store key {key!r} does not hold an integer") from None
            if "overflow" in text:
                raise ValueError(f"store key {key!r}: adding {amount} would overflow "
                                 "Redis's 64-bit counter") from None
            raise self._failed(error, key) from error
        except FAILURES as error:
            raise self._failed(error, key) from error
        finally:
            places.release()

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        start = len(self._prefix)
        pattern = _glob_escape(self._key(prefix)) + b"*"
        client, places = await self._enter()
        try:
            keys = sorted({key async for key in client.scan_iter(match=pattern,
                                                                 count=SCAN_COUNT)})
            values: list[bytes | None] = []
            for at in range(0, len(keys), MGET_CHUNK):
                chunk = keys[at:at + MGET_CHUNK]
                values += await (client.mget_nonatomic(chunk) if self.cluster
                                 else client.mget(chunk))
        except FAILURES as error:
            raise self._failed(error) from error
        finally:
            places.release()
        found = []
        for key, value in zip(keys, values, strict=True):
            if value is None:  # expired (or deleted) since SCAN saw it
                continue
            try:
                found.append((key[start:].decode(), value))
            except UnicodeDecodeError:  # not a key apiward wrote
                continue
        return found

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        client, self._client, self._script = self._client, None, None
        if client is None or self._fork != _forks:
            return
        try:
            if asyncio.get_running_loop() is self._loop:
                await client.aclose()
        except FAILURES:  # closing what is already broken is harmless
            pass
