"""A small RESP2 client for the rate limiter's hot path: one pipelined connection.

``RedisLimiter`` makes one decision per API call with one EVALSHA. Through redis-py's
asyncio client that cost ~120-145 µs, ~75-85 µs of it redis-py's own Python (a connection
taken from a pool and given back, the command encoded argument by argument, the reply read
through a StreamReader and parsed, a timeout per call); the same EVALSHA over a bare
asyncio socket costs 45-54 µs, Redis's ~24 µs of script time included. This module is that
bare socket, made safe to share:

- ``RespClient``: one connection (TCP or TLS) per event loop and process (the limiter makes
  one client per loop and fork), opened at the first call within ``connect_timeout`` (AUTH
  and SELECT from the URL included) and again at the first call after it was lost.
- Pipelining: every call is written in order on the one connection and its reply goes to
  the future that waits longest (Redis answers in order). The first call of a loop
  iteration is written at once, the next ones ``WRITE_BATCH`` at a time, the rest at the
  iteration's end (``loop.call_soon``): few sends, and Redis starts on the first while
  Python makes the next.
- A call is bytes already encoded: ``command`` for anything, ``Script.head`` and ``bulk``
  for the limiter's EVALSHA, whose constant parts (the prefix with the SHA, the rates'
  arguments) are encoded once. A NOSCRIPT reply (a Redis restarted or flushed) sends
  SCRIPT LOAD and the same call again, once: a call that met NOSCRIPT never ran.
- Failures are the connection's, never one call's guess: no reply within ``timeout`` to
  the oldest call (TimeoutError), the connection lost (ConnectionError), bytes that are not
  RESP (ProtocolError, a ConnectionError) fail every call waiting on it, and it is closed.
  Nothing sent is sent again (a decision must never count twice). An error reply
  (``ReplyError``) fails its own call only.

Measured (uvloop; ``RedisLimiter.admit`` of one rate at Redis's clock; redis-server 7.0 on
the other core of a 2-core VM that others were loading too, so ranges over interleaved
runs): the median of 2000 sequential admits was 150-190 µs through redis-py, 90-115 µs
through this client (a bare Protocol sending the same bytes: 65-85 µs); 50 concurrent
tasks made 11-17k decisions/s through redis-py (60-90 µs each), 95-110k/s (9-10 µs each)
through this client (30-50k/s while the box was busy). Without the network (a transport
that answers at once) a decision's Python is ~10 µs sequential, 7-9 µs concurrent, loop
wake-ups included.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

MAX_REPLY = 1 << 24  # bytes of one unfinished reply: more is not the Redis we speak to
# Calls written together at most. The first call of a loop iteration is written at once
# (a lone call waits for nothing: writing it at the iteration's end cost a sequential
# decision ~5-10 µs), the next ones WRITE_BATCH together, what is left at the iteration's
# end. Measured, 50 concurrent decisions: ~50k/s all written at the iteration's end (Redis
# idles while Python runs, then the other way round), ~75k/s each written at once (a send
# per call), ~100k/s by 6 to 16 together.
WRITE_BATCH = 8


class ReplyError(Exception):
    """An error reply from Redis (``-ERR …``, ``-NOSCRIPT …``); its text is ``str(error)``."""


class ProtocolError(ConnectionError):
    """The peer sent bytes that are not a RESP2 reply (or a reply nobody asked for)."""


# -- encoding


def bulk(data: bytes) -> bytes:
    """One argument of a command, framed: ``$<len>\\r\\n<data>\\r\\n``."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def command(*args: bytes | str | int | float) -> bytes:
    """A whole command in RESP: an array of bulk strings (text as UTF-8, surrogates kept;
    numbers as ``repr``)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8", "surrogatepass")
        elif not isinstance(arg, bytes):
            arg = repr(arg).encode()
        parts.append(bulk(arg))
    return b"".join(parts)


class Script:
    """A Lua script called by EVALSHA: ``head(keys, args)`` is the start of a call with
    that many keys and arguments (``*N``, EVALSHA, the SHA, the key count), encoded once;
    the caller adds ``bulk`` of each key and argument. ``load`` is its SCRIPT LOAD."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.load = command(b"SCRIPT", b"LOAD", source)
        self._heads: dict[tuple[int, int], bytes] = {}

    def head(self, keys: int, args: int) -> bytes:
        found = self._heads.get((keys, args))
        if found is None:
            found = self._heads[keys, args] = (
                b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + keys + args)
                + bulk(self.sha.encode()) + bulk(b"%d" % keys))
        return found


# -- decoding

_CR = b"\r\n"


def _read(buf: bytes, pos: int) -> tuple[Any, int]:
    """The reply that starts at ``pos`` and where it ends, or ``(None, -1)`` when ``buf``
    holds only its beginning. Errors are ``ReplyError`` values (raised by the caller, or
    kept inside an array)."""
    end = buf.find(_CR, pos)
    if end < 0:
        return None, -1
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1:end])
        if size < 0:
            if size != -1:
                raise ProtocolError(f"a bulk string of length {size}")
            return None, end + 2
        start = end + 2
        stop = start + size
        if len(buf) < stop + 2:
            return None, -1
        if buf[stop:stop + 2] != _CR:
            raise ProtocolError("a bulk string longer than it said")
        return buf[start:stop], stop + 2
    if kind == 58:  # : integer
        return int(buf[pos + 1:end]), end + 2
    if kind == 43:  # + simple string
        return buf[pos + 1:end], end + 2
    if kind == 45:  # - error
        return ReplyError(buf[pos + 1:end].decode("utf-8", "replace")), end + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1:end])
        if count < 0:
            if count != -1:
                raise ProtocolError(f"an array of length {count}")
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(count):
            item, pos = _read(buf, pos)
            if pos < 0:
                return None, -1
            items.append(item)
        return items, pos
    raise ProtocolError(f"a reply starting with {buf[pos:pos + 1]!r}")


class Parser:
    """Incremental RESP2 replies: ``feed`` the bytes as they come (a reply cut anywhere,
    many replies in one read) and get the replies completed so far, in order: bytes
    (simple and bulk strings), int, list, None (nil), ``ReplyError``."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf + data if self._buf else data
        replies = []
        pos, size = 0, len(buf)
        try:
            while pos < size:
                value, end = _read(buf, pos)
                if end < 0:
                    break
                replies.append(value)
                pos = end
        except (ValueError, IndexError, RecursionError) as error:
            raise ProtocolError(f"not a RESP2 reply ({error})") from None
        self._buf = buf[pos:] if pos < size else b""
        if len(self._buf) > MAX_REPLY:
            raise ProtocolError(f"a reply longer than {MAX_REPLY} bytes")
        return replies


# -- the connection


class _Connection(asyncio.Protocol):
    """One connection: calls written in order, replies matched to them in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, where: str) -> None:
        self._loop = loop
        self._timeout = timeout
        self._where = where
        self._transport: Any = None
        # (future or None, payload, SCRIPT LOAD to send on NOSCRIPT or None, deadline)
        self._pending: deque[tuple[Any, bytes, bytes | None, float]] = deque()
        self._out: list[bytes] = []
        self._flushing = False  # a _flush is scheduled
        self._parser = Parser()
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Redis at {self._where} closed the connection"
                                   + (f" ({exc})" if exc else "")))

    def data_received(self, data: bytes) -> None:
        if self.closed:  # failed already: what comes after is nobody's
            return
        try:
            replies = self._parser.feed(data)
        except ProtocolError as error:
            self._fail(ProtocolError(f"Redis at {self._where}: {error}"))
            return
        pending = self._pending
        for value in replies:
            if not pending:
                self._fail(ProtocolError(f"Redis at {self._where} sent a reply nobody "
                                         "asked for"))
                return
            future, payload, load, _ = pending.popleft()
            if future is None or future.done():  # SCRIPT LOAD's, or its caller gave up
                continue
            if type(value) is ReplyError:
                if load is not None and str(value).startswith("NOSCRIPT"):
                    self._queue(None, load, None)  # then the same call, which never ran
                    self._queue(future, payload, None)
                else:
                    future.set_exception(value)
            else:
                future.set_result(value)

    def send(self, payload: bytes, load: bytes | None = None) -> asyncio.Future[Any]:
        """The reply to ``payload`` (one whole command), to come. ``load``: a script's
        SCRIPT LOAD, sent (with ``payload`` again) if Redis answers NOSCRIPT."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(ConnectionError(f"the connection to Redis at "
                                                 f"{self._where} is closed"))
        else:
            self._queue(future, payload, load)
        return future

    def _queue(self, future: Any, payload: bytes, load: bytes | None) -> None:
        loop = self._loop
        deadline = loop.time() + self._timeout
        self._pending.append((future, payload, load, deadline))
        if not self._flushing:  # the first call since the last flush: written at once
            self._transport.write(payload)
            self._flushing = True
            loop.call_soon(self._flush)
        else:
            out = self._out
            out.append(payload)
            if len(out) >= WRITE_BATCH:
                self._transport.write(b"".join(out))
                out.clear()
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def _flush(self) -> None:
        """At the end of a loop iteration: write what its calls left; the next call is
        the first of its iteration."""
        self._flushing = False
        out = self._out
        if out and not self.closed:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _expire(self) -> None:
        """The timer of the oldest call: it failed the connection if that call is overdue,
        else it moves to the deadline of the oldest call now."""
        self._timer = None
        if self.closed or not self._pending:
            return
        deadline = self._pending[0][3]
        if self._loop.time() + 0.001 >= deadline:  # (uvloop's clock counts milliseconds)
            self._fail(TimeoutError(f"no reply from Redis at {self._where} within "
                                    f"{self._timeout * 1000:g} ms"))
        else:
            self._timer = self._loop.call_at(deadline, self._expire)

    def _fail(self, error: Exception) -> None:
        """Closed: every call waiting gets ``error`` (a copy each); nothing is sent again."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out.clear()
        if self._transport is not None:
            self._transport.abort()
        pending, self._pending = self._pending, deque()
        for future, _, _, _ in pending:
            if future is not None and not future.done():
                future.set_exception(type(error)(*error.args))

    def close(self) -> None:
        self._fail(ConnectionError(f"the connection to Redis at {self._where} was closed"))


class RespClient:
    """Calls to one Redis server over one pipelined connection, for one event loop.

    ``call(payload, load)`` returns an awaitable of the reply (``ReplyError`` raised for an
    error reply). ``ssl``: a function giving the TLS context (called at the first connect;
    its errors, like the connection's, are OSErrors). ``timeout``: how long a call may wait
    for its reply; ``connect_timeout``: for the connection, TLS, AUTH and SELECT."""

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None,
                 ssl: Callable[[], ssl.SSLContext] | None = None,
                 timeout: float, connect_timeout: float) -> None:
        self.host, self.port = host, port
        self._where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # What a new connection says first, each with what to say instead if Redis finds
        # the wrong number of arguments: AUTH with a user name (``default`` unless told,
        # which a Redis without a password accepts as redis-py's HELLO AUTH is accepted),
        # or with the password alone for a Redis older than 6.
        hello: list[tuple[bytes, bytes | None]] = []
        if password is not None or username is not None:
            hello.append((command(b"AUTH", username or "default", password or ""),
                          None if username else command(b"AUTH", password or "")))
        if db:
            hello.append((command(b"SELECT", db), None))
        self._hello = hello
        self._ssl = ssl
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._loop = asyncio.get_running_loop()
        self._conn: _Connection | None = None
        self._opening: asyncio.Task[_Connection] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"RespClient({self._where})"

    def call(self, payload: bytes, load: bytes | None = None) -> Awaitable[Any]:
        """The reply to ``payload``, one whole command (``load``: see ``Script``)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn.send(payload, load)
        return self._call_opening(payload, load)

    async def pipeline(self, payloads: list[bytes]) -> list[Any]:
        """The replies to several commands written together, in order; an error reply, or
        the connection's failure once they were sent, is a ``ReplyError`` (or OSError)
        among them. A connection that cannot be opened is raised."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        return await asyncio.gather(*[conn.send(payload) for payload in payloads],
                                    return_exceptions=True)

    async def _call_opening(self, payload: bytes, load: bytes | None) -> Any:
        conn = await self._connection()
        return await conn.send(payload, load)

    async def _connection(self) -> _Connection:
        if self._closed:
            raise ConnectionError(f"the client of Redis at {self._where} is closed")
        opening = self._opening
        if opening is None:  # one connect for every call that finds none
            opening = self._opening = self._loop.create_task(self._open())
        return await asyncio.shield(opening)  # a caller cancelled cancels no one else's

    async def _open(self) -> _Connection:
        loop = self._loop
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                context = self._ssl() if self._ssl is not None else None
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self._timeout, self._where), self.host,
                    self.port, ssl=context, server_hostname=self.host if context else None)
                for payload, instead in self._hello:
                    try:
                        await conn.send(payload)
                    except ReplyError as error:
                        if instead is None or "wrong number of arguments" not in str(error):
                            raise
                        await conn.send(instead)
            if self._closed:
                raise ConnectionError(f"the client of Redis at {self._where} is closed")
        except BaseException as error:
            if conn is not None:
                conn.close()
            if isinstance(error, TimeoutError) and not error.args:
                raise TimeoutError(f"no connection to Redis at {self._where} within "
                                   f"{self._connect_timeout * 1000:g} ms") from None
            raise
        finally:
            self._opening = None
        self._conn = conn
        return conn

    async def aclose(self) -> None:
        """Close the connection: calls still waiting fail with ConnectionError."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
