"""The gateway of one worker process: its listener, its connections, its timers.

Timeouts are deadlines stored on each connection and checked by one sweeper, so the
request path never arms or cancels a timer, nor even reads the clock: it writes the kind
of wait and a zero deadline, and the sweeper starts that clock at its next tick. So every
timeout holds to within one tick (1/8 of the shortest timeout, at most 1 s).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic
from typing import Any

from apiward.errors import ConfigError
from apiward.runtime import Runtime
from apiward.server.downstream import BODY, IDLE, Downstream
from apiward.server.tls import load_certificate

log = logging.getLogger("apiward.server")

PERIODIC_INTERVAL = 5.0  # seconds between runs of the runtime's refresh jobs
REAP_SHARE = 64  # at the connection cap, up to 1/64 of it in idle keep-alives is closed
RECORD_INTERVAL = 1.0  # seconds between folds of the recorded calls into the inventory


async def _guarded(job: Callable[[], Awaitable[None]]) -> None:
    """A refresh that fails keeps what it had: logged, never raised into the loop."""
    try:
        await job()
    except Exception:
        log.exception("a periodic refresh failed (the previous state stays)")

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def listen_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT, so several workers can share the port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(4096)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.conns: set[Downstream] = set()
        self.per_ip: dict[str, int] = {}
        self.draining = False
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self._next_periodic = 0.0
        self._next_record = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count(1)

    # -- per connection ----------------------------------------------------------------
    def next_request_id(self) -> str:
        return self._prefix + str(next(self._counter))  # unique per worker start

    @staticmethod
    def valid_request_id(value: bytes) -> bool:
        return _REQUEST_ID.fullmatch(value) is not None

    def admit(self, conn: Downstream) -> bool:
        """Count a new connection; False when over the total or per-address limit."""
        runtime = self.runtime
        if self.draining:
            return False
        if len(self.conns) >= runtime.max_connections and not self._reap_idle():
            return False
        per_ip_limit = runtime.max_connections_per_ip
        if per_ip_limit:
            count = self.per_ip.get(conn.peer_ip, 0)
            if count >= per_ip_limit:
                return False
            self.per_ip[conn.peer_ip] = count + 1
        self.conns.add(conn)
        return True

    def _reap_idle(self) -> bool:
        """At the cap, idle keep-alive connections make room for new ones: a batch of
        them is closed in one scan (so a flood of connects costs one scan per batch, not
        per accept). False when none was idle."""
        batch = max(1, self.runtime.max_connections // REAP_SHARE)
        idle = [conn for conn in self.conns if conn.deadline_kind == IDLE
                and conn.active is None and not conn.queue][:batch]
        for conn in idle:
            conn._close()
            self.forget(conn)
        return bool(idle)

    def forget(self, conn: Downstream) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        count = self.per_ip.get(conn.peer_ip)
        if count is not None:
            if count <= 1:
                del self.per_ip[conn.peer_ip]
            else:
                self.per_ip[conn.peer_ip] = count - 1
        if self._drained is not None and not self.conns:
            self._drained.set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a per-call task, holding a reference until it ends (the loop keeps only a
        weak one, so an unheld task could vanish mid-way and leave its call hanging)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle ---------------------------------------------------------------------
    async def serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        runtime = self.runtime
        self._tls = runtime.tls_context  # fixed for the listener; a reload rotates its cert
        self._server = await loop.create_server(
            lambda: Downstream(self), sock=sock, backlog=4096, ssl=self._tls,
            ssl_handshake_timeout=runtime.header_timeout if self._tls is not None else None)
        self._schedule_sweep()

    def swap(self, runtime: Runtime) -> None:
        """Atomically replace the compiled config; calls in flight finish on the old one."""
        old, self.runtime = self.runtime, runtime
        tls, before = runtime.config.tls, old.config.tls
        if self._tls is not None and tls is not None:
            try:
                load_certificate(self._tls, tls)  # new connections get the new certificate
            except ConfigError as error:  # it changed again since the runtime was built
                log.error("reload: the certificate stays: %s", "; ".join(error.problems))
        if (tls is None) != (before is None) or (
                tls is not None and before is not None
                and (tls.client_ca, tls.client_certs, tls.min_version)
                != (before.client_ca, before.client_certs, before.min_version)):
            log.warning("reload: turning TLS on or off, client_ca, client_certs and "
                        "min_version take effect only on restart")
        old.close()

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, let calls in flight finish up to ``timeout``, close the rest."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        self._drained = asyncio.Event()
        for conn in list(self.conns):
            conn.drain()
        if self.conns:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                log.warning("shutdown: %d connections still busy after %.0fs, closing them",
                            len(self.conns), timeout)
                for conn in list(self.conns):
                    conn._abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        recorder = self.runtime.recorder
        if recorder is not None:  # the calls since the last save are not lost
            try:
                await recorder.close()
            except Exception:
                log.exception("saving the inventory at shutdown failed")
        self.runtime.close()

    # -- the sweeper -------------------------------------------------------------------
    def _sweep_interval(self) -> float:
        runtime = self.runtime
        shortest = min(
            runtime.header_timeout,
            runtime.body_timeout,
            runtime.keepalive_timeout,
            runtime.send_timeout,
            *(api.response_timeout for api in runtime.apis),
        )
        return min(1.0, max(0.02, shortest / 8))

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def _sweep(self) -> None:
        now = monotonic()
        expired = []
        slow = []
        runtime = self.runtime
        min_rate = runtime.min_body_rate
        allowance = runtime.body_timeout
        for conn in self.conns:
            kind = conn.deadline_kind
            if not kind:
                continue
            if conn.deadline == 0.0:  # a wait that began since the last tick
                conn.deadline = now + conn.timeout(kind)
            elif conn.deadline <= now:
                expired.append(conn)
                continue
            if kind == BODY and min_rate:  # the body as a whole must keep a minimum rate
                call = conn.current
                if call is not None:
                    if not call.body_started:
                        call.body_started = now
                    elif now > call.body_started + allowance + call.body_received / min_rate:
                        slow.append(conn)
        for conn in expired:
            try:
                conn.on_deadline()
            except Exception:
                log.exception("timeout handling failed")
                conn._abort()
        for conn in slow:
            try:
                conn.on_slow_body()
            except Exception:
                log.exception("timeout handling failed")
                conn._abort()
        for api in runtime.apis:
            api.pool.expire(now)
        recorder = runtime.recorder
        if recorder is not None and now >= self._next_record and recorder.pending:
            self._next_record = now + RECORD_INTERVAL  # a small batch folds in small chunks
            self.spawn(_guarded(recorder.flush))
        if runtime.periodic and now >= self._next_periodic:
            self._next_periodic = now + PERIODIC_INTERVAL
            for job in runtime.periodic:  # key tables, JWKS: refreshed off the request path
                self.spawn(_guarded(job))
        self._schedule_sweep()
