"""Processes: one worker serving in-process, or a supervisor with N forked workers.

Workers each bind their own SO_REUSEPORT socket on the same port, so the kernel spreads
connections. The supervisor restarts a worker that dies, forwards SIGHUP (after checking
the new config itself) and SIGTERM (graceful: finish calls in flight, then exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from apiward.config.loader import load_config
from apiward.config.models import Config, parse_hostport
from apiward.errors import ConfigError
from apiward.runtime import Runtime
from apiward.server.gateway import Gateway, listen_socket

log = logging.getLogger("apiward")

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


def install_event_loop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        log.warning("uvloop is not available: running on asyncio's default loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def reload_runtime(gateway: Gateway, source: Path | None) -> None:
    """SIGHUP: build a runtime from the file again; a bad file keeps the old one."""
    if source is None:
        log.info("reload: no config file (started from flags); nothing to reload")
        return
    loop = asyncio.get_running_loop()
    try:
        config = await loop.run_in_executor(None, load_config, source)
        runtime = Runtime(config, source)
    except ConfigError as error:
        log.error("reload refused, the running config stays: %s",
                  "; ".join(error.problems))
        return
    except Exception as error:  # a reload must never take the worker down
        log.error("reload refused, the running config stays: %s", error)
        return
    if runtime.listen != gateway.runtime.listen:
        log.warning("reload: 'listen' changed; it takes effect only on restart")
    gateway.swap(runtime)
    log.info("reload: new config from %s is live", source)


async def serve(config: Config, source: Path | None, sock: socket.socket,
                ready: Callable[[], None]) -> None:
    """Run one worker until SIGTERM/SIGINT, then drain within ``shutdown_timeout``."""
    loop = asyncio.get_running_loop()
    gateway = Gateway(Runtime(config, source))
    await gateway.serve(sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: gateway.spawn(reload_runtime(gateway, source)))
    ready()
    await stop.wait()
    log.info("shutting down: finishing calls in flight (up to %.0fs)",
             gateway.runtime.config.shutdown_timeout)
    await gateway.shutdown(gateway.runtime.config.shutdown_timeout)


def announce(host: str, port: int, workers: int, tls: bool = False) -> None:
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    print(f"apiward listening on {scheme}://{shown}:{port} (workers: {workers})", flush=True)


def run_single(config: Config, source: Path | None) -> int:
    host, port = parse_hostport(config.listen)
    sock = listen_socket(host, port)
    bound = sock.getsockname()[1]
    install_event_loop()
    tls = config.tls is not None
    asyncio.run(serve(config, source, sock, lambda: announce(host, bound, 1, tls)))
    return 0


def raise_file_limit(config: Config) -> None:
    """Each connection costs two descriptors (client + upstream): ask for enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * config.limits.max_connections + 256
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open-file limit %d is below the %d that limits.max_connections=%d needs; "
                    "raise it (ulimit -n) or lower max_connections", target, wanted,
                    config.limits.max_connections)


def run(config: Config, source: Path | None) -> int:
    """Serve until told to stop; returns the process exit code."""
    raise_file_limit(config)
    if config.workers == 1:
        return run_single(config, source)
    return Supervisor(config, source).run()


class Supervisor:
    def __init__(self, config: Config, source: Path | None) -> None:
        self.config = config
        self.source = source
        self.host, self.port = parse_hostport(config.listen)
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False

    def run(self) -> int:
        # Reserve the port (and resolve port 0) without listening; workers join it.
        reservation = listen_socket(self.host, self.port, listen=False)
        self.port = reservation.getsockname()[1]
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        from apiward.ratelimit.local import node_table

        # Before the fork, even if no API limits calls yet (a reload may add a limit):
        # every worker shares the node's limits. Its pages cost memory only once used.
        node_table()
        read_end, write_end = os.pipe()
        for _ in range(self.config.workers):
            self._spawn(write_end)
        self._wait_ready(read_end, self.config.workers)
        announce(self.host, self.port, self.config.workers, self.config.tls is not None)
        try:
            return self._loop(write_end)
        finally:
            reservation.close()

    def _wait_ready(self, read_end: int, count: int) -> None:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < count and time.monotonic() < deadline:
            seen += len(os.read(read_end, count - seen))

    def _spawn(self, ready_fd: int) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = time.monotonic()
            return
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            sock = listen_socket(self.host, self.port)
            install_event_loop()
            asyncio.run(serve(self.config, self.source, sock,
                              lambda: os.write(ready_fd, b"r")))
            code = 0
        except ConfigError as error:  # e.g. a JWKS URL down since the parent's check
            log.error("worker %d cannot start: %s", os.getpid(), "; ".join(error.problems))
            code = error.exit_code
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            sys.stdout.flush()
            os._exit(code)

    def _loop(self, ready_fd: int) -> int:
        while True:
            info = signal.sigtimedwait(SIGNALS, 1.0)
            if info is None:
                continue
            if info.si_signo == signal.SIGCHLD:
                self._reap(ready_fd)
                if self.stopping and not self.children:
                    return 0
            elif info.si_signo == signal.SIGHUP:
                self._reload()
            else:
                return self._stop()

    def _reap(self, ready_fd: int) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            log.error("worker %d exited (%s); starting a new one", pid,
                      os.waitstatus_to_exitcode(status))
            if time.monotonic() - started < 1.0:
                time.sleep(1.0)  # a worker dying at start: don't spin
            self._spawn(ready_fd)

    def _reload(self) -> None:
        if self.source is None:
            log.info("reload: no config file (started from flags); nothing to reload")
            return
        try:
            load_config(self.source)
        except ConfigError as error:
            log.error("reload refused, the running config stays: %s",
                      "; ".join(error.problems))
            return
        for pid in self.children:
            os.kill(pid, signal.SIGHUP)

    def _stop(self) -> int:
        self.stopping = True
        for pid in self.children:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout + 5
        while self.children and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid:
                self.children.pop(pid, None)
            else:
                signal.sigtimedwait({signal.SIGCHLD}, 0.2)
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)
        return 0
