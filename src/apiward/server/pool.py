"""A keep-alive connection pool per upstream: max idle, max total, idle expiry."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from typing import TYPE_CHECKING

from apiward.wire.headers import HOP_BY_HOP, FieldTable

if TYPE_CHECKING:
    from apiward.server.upstream import UpstreamConnection

log = logging.getLogger("apiward.upstream")


class UpstreamUnavailable(Exception):
    """No connection could be had: ``status`` is 502 (refused, unreachable) or 504."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class UpstreamPool:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int,
        max_total: int,
        idle_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.max_total = max_total
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.idle: list[UpstreamConnection] = []
        self.total = 0
        self.closed = False
        self.clock = 0.0  # the sweeper's last reading: idle ages need no precision
        self.response_fields = FieldTable(HOP_BY_HOP)  # the runtime shares its own
        # Calls waiting at max_total: each gets a released connection, or None when a slot
        # frees (then it connects).
        self._waiters: collections.deque[asyncio.Future[UpstreamConnection | None]] = (
            collections.deque()
        )

    def take_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection, most recently used first, or None; None too while
        earlier calls wait for one (first come, first served)."""
        if self._waiters:
            return None
        idle = self.idle  # _pop_idle(), inlined: this runs once per call
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            self._forget(conn)
        return None

    def _pop_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            self._forget(conn)
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection (waiting for a free slot when at ``max_total``)."""
        from apiward.server.upstream import UpstreamConnection

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        queued_behind = bool(self._waiters)  # then wait in line before taking anything
        while self.total >= self.max_total:
            if not queued_behind:
                conn = self._pop_idle()
                if conn is not None:
                    return conn
            queued_behind = False
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
                if handed is not None:  # a released connection, passed on in turn
                    return handed
            except TimeoutError:
                raise UpstreamUnavailable(
                    504, "upstream_pool_exhausted", "no upstream connection became free in time"
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.total += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port),
                max(0.001, deadline - loop.time()),
            )
        except TimeoutError:
            self._release_slot()
            raise UpstreamUnavailable(
                504, "upstream_connect_timeout", "the upstream did not accept a connection in time"
            ) from None
        except OSError as exc:
            self._release_slot()
            log.warning("upstream %s:%s unreachable: %s", self.host, self.port, exc.strerror or exc)
            raise UpstreamUnavailable(
                502, "upstream_unreachable", "the upstream refused or could not be reached"
            ) from None
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Back to the idle list when reusable, else closed."""
        if self.closed or not conn.usable:
            conn.close()
            return
        while self._waiters:  # the longest-waiting call gets it, not a newcomer
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.clock
        self.idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """A connection ended (closed by either side): free its slot."""
        if conn in self.idle:
            self.idle.remove(conn)
        self._forget(conn)

    def expire(self, now: float) -> None:
        """Close idle connections older than ``idle_timeout`` (called by the sweeper)."""
        self.clock = now
        limit = now - self.idle_timeout
        while self.idle and self.idle[0].idle_since < limit:
            self.idle.pop(0).close()

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()

    def _forget(self, conn: UpstreamConnection) -> None:
        if conn.counted:
            conn.counted = False
            self._release_slot()

    def _release_slot(self) -> None:
        self.total -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def tune_socket(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
