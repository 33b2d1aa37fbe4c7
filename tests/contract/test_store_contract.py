"""The Store contract: one suite, run against every backend (memory, SQLite and a real
Redis). Time is a clock the test moves, never a sleep; a backend that keeps its own time
(Redis) runs the tests that move the clock on its real clock, scaled down (ServerClock)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from apiward.state.memory import MemoryStore
from apiward.state.redis import RedisStore, _px
from apiward.state.sqlite import SqliteStore
from apiward.state.store import Store, StoreError, open_store, store_path
from support.redis_server import RedisServer, free_port


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SCALE = 0.1  # on a backend with its own clock, one second of a test is 0.1 s of real time


class ServerClock:
    """Time on a Redis, which no test can move. ``advance(s)`` waits, polling the server's
    TIME, until ``s * SCALE`` seconds and 2 ms more have passed on it since the call; the
    TTLs the test writes are scaled alike (ScaledTtls). So when it returns, every entry
    written before the call whose TTL fits into ``s`` has expired by Redis's own judgement
    (Redis drops a key after its last millisecond): what the test says is gone is gone,
    without a guess. What it says is still there is, as long as this machine does not stall
    for longer than the rest of that TTL (the tests leave seconds of test time, 0.4 s)."""

    def __init__(self, url: str) -> None:  # a cluster's nodes share this machine's clock
        self._redis = redis.Redis.from_url(url.replace("redis+cluster://", "redis://", 1))

    def __call__(self) -> float:
        seconds, micros = self._redis.time()
        return seconds + micros / 1e6

    def advance(self, seconds: float) -> None:
        target = self() + seconds * SCALE + 0.002
        deadline = time.monotonic() + seconds * SCALE + 10
        while (now := self()) < target:
            assert time.monotonic() < deadline, "the Redis server's clock stopped"
            time.sleep(min(target - now, 0.01))  # between polls of the server's clock

    def close(self) -> None:
        self._redis.close()


class UnmovableClock:
    """The clock of a backend with its own time, in a test not marked movable_clock."""

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        raise AssertionError("this test moves the clock: mark it @pytest.mark.movable_clock")


class ScaledTtls:
    """``store`` with every TTL multiplied by SCALE, for the tests run on a ServerClock."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, key: str) -> bytes | None:
        return await self.store.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.store.set(key, value, _scaled(ttl))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        return await self.store.add(key, value, _scaled(ttl))

    async def delete(self, key: str) -> bool:
        return await self.store.delete(key)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return await self.store.incr(key, amount, _scaled(ttl))

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return await self.store.scan(prefix)

    async def close(self) -> None:
        await self.store.close()


def _scaled(ttl: float | None) -> float | None:
    return None if ttl is None else ttl * SCALE


@dataclass(frozen=True)
class Kind:
    url: Callable[[pytest.FixtureRequest, Path], str]  # a fresh, empty store for one test
    shared: bool = False  # several processes can use one store at once
    own_clock: bool = False  # expires entries by a clock of its own, which no test moves


BACKENDS: dict[str, Kind] = {
    "memory": Kind(lambda request, tmp: "memory://"),
    "sqlite": Kind(lambda request, tmp: f"sqlite://{tmp / 'state.db'}", shared=True),
    "redis": Kind(lambda request, tmp: request.getfixturevalue("redis_url"), shared=True,
                  own_clock=True),
    "redis-cluster": Kind(lambda request, tmp: request.getfixturevalue("redis_cluster_url"),
                          shared=True, own_clock=True),
}


@dataclass
class Backend:
    name: str
    url: str
    clock: Any  # FakeClock, or ServerClock / UnmovableClock for a backend with its own
    tmp: Path
    scaled: bool  # TTLs scaled to a ServerClock

    def open(self) -> Store:
        """Another handle on the backend's store."""
        store = open_store(self.url, clock=self.clock)
        return ScaledTtls(store) if self.scaled else store  # type: ignore[return-value]

    def __post_init__(self) -> None:
        self.store = self.open()


_runner: asyncio.Runner | None = None


@pytest.fixture(autouse=True)
def _one_loop() -> Iterator[None]:
    """The coroutines of one test run in one event loop, as in a gateway process."""
    global _runner
    with asyncio.Runner() as runner:
        _runner = runner
        try:
            yield
        finally:
            _runner = None


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    assert _runner is not None
    return _runner.run(coro)


def _open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    kind = BACKENDS[name]
    node = request.node
    if kind.own_clock and node.get_closest_marker("exact_clock"):
        pytest.skip(f"{name} expires entries by its own clock, which a test cannot stop a "
                    "moment before a deadline (the movable_clock tests cover its expiry)")
    url = kind.url(request, tmp_path)
    movable = kind.own_clock and node.get_closest_marker("movable_clock") is not None
    clock = (ServerClock(url) if movable else UnmovableClock()) if kind.own_clock \
        else FakeClock()
    backend = Backend(name, url, clock, tmp_path, scaled=movable)
    try:
        yield backend
    finally:
        run(backend.store.close())
        if isinstance(clock, ServerClock):
            clock.close()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _open_backend(request, tmp_path)


@pytest.fixture(params=sorted(name for name, kind in BACKENDS.items() if kind.shared))
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Backends that several processes can use at once."""
    yield from _open_backend(request, tmp_path)


# -- get, set, delete ------------------------------------------------------------------------

def test_store_satisfies_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, Store)


def test_values_are_bytes_kept_exactly(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        assert await store.get("missing") is None
        for value in (b"", b"\x00\xff\x00", "héllo".encode(), bytes(range(256)) * 40):
            await store.set("k", value)
            assert await store.get("k") == value
        await store.set("ключ/é 🔑", b"unicode key")
        assert await store.get("ключ/é 🔑") == b"unicode key"

    run(scenario())


def test_set_refuses_non_bytes_and_bad_ttls(backend: Backend) -> None:
    async def scenario() -> None:
        with pytest.raises(TypeError):
            await backend.store.set("k", "text")  # type: ignore[arg-type]
        for ttl in (0, -1.0):
            with pytest.raises(ValueError, match="ttl"):
                await backend.store.set("k", b"v", ttl=ttl)
            with pytest.raises(ValueError, match="ttl"):
                await backend.store.incr("n", ttl=ttl)
        assert await backend.store.get("k") is None

    run(scenario())


@pytest.mark.movable_clock
def test_delete_says_whether_a_live_entry_went(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        await store.set("k", b"v")
        assert await store.delete("k") is True
        assert await store.get("k") is None
        assert await store.delete("k") is False
        await store.set("brief", b"v", ttl=1)
        backend.clock.advance(1)
        assert await store.delete("brief") is False

    run(scenario())


# -- expiry --------------------------------------------------------------------------------

@pytest.mark.movable_clock
def test_an_entry_vanishes_when_its_ttl_is_up(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        await store.set("k", b"v", ttl=10)
        assert await store.get("k") == b"v"
        assert await store.scan("") == [("k", b"v")]
        clock.advance(10)
        assert await store.get("k") is None
        assert await store.scan("") == []

    run(scenario())


@pytest.mark.exact_clock
def test_an_entry_lives_until_exactly_its_deadline(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        await store.set("k", b"v", ttl=10)
        clock.advance(9.999)
        assert await store.get("k") == b"v"
        clock.advance(0.001)  # exactly at the deadline: gone
        assert await store.get("k") is None
        assert await store.scan("") == []

    run(scenario())


@pytest.mark.movable_clock
def test_set_replaces_the_ttl(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        await store.set("forever", b"1", ttl=1)
        await store.set("forever", b"2")  # no ttl: never expires now
        await store.set("longer", b"1", ttl=1)
        await store.set("longer", b"2", ttl=10)
        clock.advance(2)
        assert await store.get("forever") == b"2"
        assert await store.get("longer") == b"2"
        clock.advance(8)
        assert await store.get("longer") is None
        assert await store.get("forever") == b"2"

    run(scenario())


@pytest.mark.movable_clock
def test_many_expired_entries_do_not_linger(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        for i in range(600):  # more than one purge round of any backend
            await store.set(f"tmp:{i}", b"x", ttl=1)
            clock.advance(0.01)
        clock.advance(1)
        await store.set("keep", b"k")
        assert await store.scan("tmp:") == []
        assert await store.scan("") == [("keep", b"k")]

    run(scenario())


# -- add -----------------------------------------------------------------------------------

@pytest.mark.movable_clock
def test_add_writes_only_when_absent_or_expired(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        assert await store.add("k", b"first", ttl=5) is True
        assert await store.add("k", b"second") is False
        assert await store.get("k") == b"first"
        clock.advance(5)
        assert await store.add("k", b"third") is True
        clock.advance(10)
        assert await store.get("k") == b"third"  # the new entry took no ttl

    run(scenario())


def test_add_has_one_winner_among_concurrent_tasks(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        results = await asyncio.gather(*(store.add("lock", str(i).encode())
                                         for i in range(50)))
        assert results.count(True) == 1
        assert await store.get("lock") == str(results.index(True)).encode()

    run(scenario())


# -- incr ----------------------------------------------------------------------------------

def test_incr_counts_from_zero_and_reads_back_as_decimal_bytes(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        assert await store.incr("n") == 1
        assert await store.incr("n", 5) == 6
        assert await store.incr("n", -10) == -4
        assert await store.get("n") == b"-4"
        assert await store.scan("n") == [("n", b"-4")]
        await store.set("m", b"41")
        assert await store.incr("m") == 42

    run(scenario())


def test_incr_refuses_a_value_that_is_not_an_integer(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        await store.set("word", b"abc")
        with pytest.raises(ValueError, match="integer"):
            await store.incr("word")
        assert await store.get("word") == b"abc"

    run(scenario())


@pytest.mark.movable_clock
def test_incr_sets_the_ttl_only_when_it_creates_the_key(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        assert await store.incr("window", ttl=10) == 1
        clock.advance(6)
        assert await store.incr("window", ttl=10) == 2  # does not extend the window
        clock.advance(4)
        assert await store.get("window") is None
        assert await store.incr("window", 3, ttl=10) == 3  # a new window
        clock.advance(5)
        assert await store.get("window") == b"3"
        await store.set("plain", b"7")
        assert await store.incr("plain", ttl=1) == 8  # existing: stays without ttl
        clock.advance(5)
        assert await store.get("plain") == b"8"

    run(scenario())


def test_incr_is_atomic_across_concurrent_tasks(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        results = await asyncio.gather(*(store.incr("hits") for _ in range(300)))
        assert sorted(results) == list(range(1, 301))
        assert await store.get("hits") == b"300"

    run(scenario())


# -- scan ----------------------------------------------------------------------------------

@pytest.mark.movable_clock
def test_scan_finds_live_keys_by_prefix_sorted(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        for key in ("user:b", "user:a", "user", "users:x", "usex", "ban:1", "user:é", "user;"):
            await store.set(key, key.encode())
        await store.set("user:gone", b"x", ttl=5)
        assert [k for k, _ in await store.scan("user:")] == [
            "user:a", "user:b", "user:gone", "user:é"]
        clock.advance(5)
        found = await store.scan("user:")
        assert found == [("user:a", b"user:a"), ("user:b", b"user:b"),
                         ("user:é", "user:é".encode())]
        assert [k for k, _ in await store.scan("user")] == [
            "user", "user:a", "user:b", "user:é", "user;", "users:x"]
        assert await store.scan("nothing") == []
        assert len(await store.scan("")) == 8

    run(scenario())


def test_scan_takes_the_prefix_literally(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        for key in ("a_b", "axb", "a%b", "a%", "a*b", "a?", "a[1]", "A_b", "a_\U0010ffff",
                    "a\U0010ffffz"):
            await store.set(key, b"")
        assert [k for k, _ in await store.scan("a_")] == ["a_b", "a_\U0010ffff"]
        assert [k for k, _ in await store.scan("a%")] == ["a%", "a%b"]
        assert [k for k, _ in await store.scan("a*")] == ["a*b"]
        assert [k for k, _ in await store.scan("a[")] == ["a[1]"]
        assert [k for k, _ in await store.scan("a\U0010ffff")] == ["a\U0010ffffz"]

    run(scenario())


# -- closing -------------------------------------------------------------------------------

def test_close_twice_is_harmless_and_calls_after_it_fail(backend: Backend) -> None:
    async def scenario() -> None:
        store = backend.store
        await store.set("k", b"v")
        await store.close()
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.get("k")
        with pytest.raises(StoreError, match="closed"):
            await store.incr("n")
        with pytest.raises(StoreError, match="closed"):
            await store.scan("")

    run(scenario())


# -- several processes on one store ----------------------------------------------------------

WORKER = textwrap.dedent("""
    import asyncio, sys
    from apiward.state.store import open_store

    async def main():
        store = open_store(sys.argv[1])
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # start together
        for _ in range(int(sys.argv[2])):
            await store.incr("hits")
        await store.add("winner", sys.argv[3].encode())
        await store.set("wrote:" + sys.argv[3], b"done")
        await store.close()

    asyncio.run(main())
""")


def test_processes_share_one_store_and_incr_stays_atomic(shared: Backend) -> None:
    workers, each = 4, 400
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, shared.url, str(each), str(i)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for i in range(workers)]
    try:
        for proc in procs:  # every worker has the store open before any writes
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

        async def mine() -> list[int]:  # this process counts too, meanwhile
            return [await shared.store.incr("hits") for _ in range(each)]

        run(mine())
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    async def check() -> None:
        store = shared.store
        assert await store.get("hits") == str((workers + 1) * each).encode()
        assert await store.get("winner") in {str(i).encode() for i in range(workers)}
        assert [k for k, _ in await store.scan("wrote:")] == [
            f"wrote:{i}" for i in range(workers)]

    run(check())


@pytest.mark.movable_clock
def test_a_second_handle_sees_writes_deletes_and_ttls(shared: Backend) -> None:
    other = shared.open()

    async def scenario() -> None:
        await shared.store.set("k", b"v", ttl=5)
        assert await other.get("k") == b"v"
        assert await other.delete("k") is True
        assert await shared.store.get("k") is None
        await other.set("t", b"x", ttl=5)
        shared.clock.advance(5)
        assert await shared.store.get("t") is None
        await other.close()

    run(scenario())


# -- opening stores --------------------------------------------------------------------------

def test_open_store_understands_urls_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_path("memory://") is None
    assert store_path(None) == Path("apiward.db")
    assert store_path("sqlite://") == Path("apiward.db")
    assert store_path("sqlite:///var/lib/a.db") == Path("/var/lib/a.db")
    assert store_path("sqlite://rel/a.db") == Path("rel/a.db")
    assert store_path(tmp_path / "x.db") == tmp_path / "x.db"
    assert store_path("redis://localhost") is None  # no file: nothing to look for
    assert store_path("rediss+cluster://h:7000") is None
    for url, what in (("memory://x", "no path"), ("ftp://x", "unknown scheme")):
        with pytest.raises(StoreError, match=what):
            store_path(url)
    memory = open_store("memory://")
    default = open_store()
    assert isinstance(memory, MemoryStore)
    assert isinstance(default, SqliteStore)
    assert (tmp_path / "apiward.db").exists()
    run(default.close())


def test_the_sqlite_file_is_in_wal_mode_with_one_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.db"
    store = open_store(path)
    run(store.set("k", b"v", ttl=5))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")] == ["kv"]
        (key, value, expires), = conn.execute("SELECT key, value, expires_at FROM kv")
        assert (key, value) == ("k", b"v") and isinstance(expires, float)
    finally:
        conn.close()
        run(store.close())


@pytest.mark.parametrize("case", ["missing dir", "a directory", "not sqlite", "under a file"])
def test_unusable_sqlite_paths_fail_clearly(tmp_path: Path, case: str) -> None:
    (tmp_path / "junk.db").write_text("hello, I am not a database" * 100)
    (tmp_path / "file").write_text("")
    path, expected = {
        "missing dir": (tmp_path / "nope" / "a.db", f"directory {tmp_path / 'nope'} does not"),
        "a directory": (tmp_path, "is a directory"),
        "not sqlite": (tmp_path / "junk.db", "not a SQLite database"),
        "under a file": (tmp_path / "file" / "a.db", "does not exist"),
    }[case]
    with pytest.raises(StoreError, match=expected) as caught:
        open_store(path)
    assert str(path) in str(caught.value)
    assert "choose another path" in str(caught.value) or "give a file path" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_fails_clearly(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            open_store(locked / "a.db")
    finally:
        locked.chmod(0o700)


def test_permission_problems_name_the_file_and_the_fix(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As a non-root user would see them (this may run as root, who may write anywhere)."""
    import apiward.state.sqlite as sqlite_backend

    existing = tmp_path / "there.db"
    existing.write_bytes(b"")
    monkeypatch.setattr(sqlite_backend.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sqlite_backend.os, "access", lambda path, mode: False)
    with pytest.raises(StoreError, match=r"there\.db: permission denied; make the file"):
        open_store(existing)
    with pytest.raises(StoreError, match=f"directory {tmp_path} is not writable"):
        open_store(tmp_path / "new.db")


def test_a_store_opened_before_fork_refuses_the_child(tmp_path: Path) -> None:
    store = open_store(tmp_path / "f.db")
    real_pid = store._pid  # type: ignore[attr-defined]
    store._pid = real_pid + 1  # type: ignore[attr-defined]  # as a forked child sees it
    with pytest.raises(StoreError, match="after fork"):
        run(store.get("k"))
    store._pid = real_pid  # type: ignore[attr-defined]
    run(store.close())


# -- Redis only: its URLs, the prefix, and Redis going away ------------------------------------

def test_redis_urls_open_a_redis_store_that_hides_the_password() -> None:
    store = open_store("redis://:s3cret@localhost:6379/2")
    assert isinstance(store, RedisStore)
    assert store.prefix == "apiward:"
    assert "s3cret" not in repr(store) and "redis://:***@localhost:6379/2" in repr(store)
    assert open_store("rediss://u:pw@h:6380/0?prefix=app1:&timeout=0.5").prefix == "app1:"
    assert open_store("redis+cluster://h:7000").cluster is True  # type: ignore[attr-defined]
    assert store_path("redis://:s3cret@localhost:6379/2") is None
    for url, what in (
            ("redis://:s3cret@h:6379/0?colour=blue", "unknown option 'colour'"),
            ("redis://:s3cret@h:6379/zero", "database number"),
            ("redis://:s3cret@h:6379/0?timeout=soon", "timeout='soon' is not a number"),
            ("redis://:s3cret@h:6379/0?timeout=0", "must be > 0"),
            ("redis://:s3cret@h:6379/0?ssl_ca_certs=/ca.pem", "need TLS; write rediss://"),
            ("redis+cluster://:s3cret@h:7000/3", "only database 0"),
            ("redis://:s3cret@h:port/0", "Port could not be cast")):
        with pytest.raises(StoreError, match=what) as caught:
            open_store(url)
        assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_ttls_go_to_redis_as_milliseconds_rounded_up() -> None:
    assert [_px(t) for t in (1e-9, 0.0001, 0.001, 0.0011, 0.3, 1.1, 2.5, 86400)] == [
        1, 1, 1, 2, 300, 1100, 2500, 86_400_000]
    for ttl in (float("inf"), 1e300):
        with pytest.raises(ValueError, match="longer than Redis can keep"):
            _px(ttl)


def test_a_fractional_ttl_reaches_redis(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    store = open_store(redis_url)

    async def scenario() -> None:
        await store.set("k", b"v", ttl=1.5)
        await store.add("a", b"v", ttl=0.25)
        assert await store.incr("n", ttl=2.0005) == 1
        await store.set("gone", b"v", ttl=0.0001)  # 1 ms, not 0 (which Redis refuses)
        await store.close()

    try:
        run(scenario())
        assert 1400 < raw.pttl("apiward:k") <= 1500
        assert 150 < raw.pttl("apiward:a") <= 250
        assert 1900 < raw.pttl("apiward:n") <= 2001
        assert raw.pttl("apiward:gone") in (-2, 0, 1)  # -2: already expired
    finally:
        raw.close()


def test_the_prefix_isolates_stores_sharing_one_redis(redis_url: str) -> None:
    one = open_store(redis_url + "?prefix=one:")
    two = RedisStore(redis_url, prefix="two:")
    globby = RedisStore(redis_url, prefix="o*[n]?\\")  # glob characters, taken literally
    stores = (one, two, globby, open_store(redis_url))

    async def scenario() -> None:
        for i, store in enumerate(stores):
            await store.set("k", str(i).encode())
            await store.incr("n", i + 1, ttl=60)
        assert [await store.get("k") for store in stores] == [b"0", b"1", b"2", b"3"]
        for i, store in enumerate(stores):
            assert await store.scan("") == [("k", str(i).encode()), ("n", str(i + 1).encode())]
        assert await one.delete("k") is True
        assert await one.get("k") is None and await two.get("k") == b"1"
        assert await two.add("k", b"again") is False
        for store in stores:
            await store.close()

    run(scenario())
    raw = redis.Redis.from_url(redis_url)
    try:
        assert sorted(raw.scan_iter()) == [
            b"apiward:k", b"apiward:n", b"o*[n]?\\k", b"o*[n]?\\n", b"one:n", b"two:k",
            b"two:n"]
    finally:
        raw.close()


def test_scan_walks_every_key_of_a_large_prefix(redis_url: str) -> None:
    store = open_store(redis_url)
    raw = redis.Redis.from_url(redis_url)
    try:
        with raw.pipeline(transaction=False) as pipe:
            for i in range(2500):  # more than one SCAN round and one MGET chunk
                pipe.set(f"apiward:many:{i:05}", str(i))
            pipe.set("apiward:manx", "not in the prefix").set("many:0", "no apiward: prefix")
            pipe.hset("apiward:many:hash", "f", "v")  # not a string: not apiward's, skipped
            pipe.execute()
        found = run(store.scan("many:"))
        assert [k for k, _ in found] == [f"many:{i:05}" for i in range(2500)]
        assert found[1234] == ("many:01234", b"1234")
        with pytest.raises(StoreError, match=r"apiward:many:hash holds a Redis type"):
            run(store.get("many:hash"))
    finally:
        run(store.close())
        raw.close()


def test_incr_refuses_what_redis_cannot_count(redis_url: str) -> None:
    store = open_store(redis_url)

    async def scenario() -> None:
        with pytest.raises(ValueError, match="64-bit range"):
            await store.incr("n", 2**63)
        await store.set("big", str(2**63 - 1).encode())
        with pytest.raises(ValueError, match="overflow"):
            await store.incr("big", ttl=5)
        await store.set("word", b"abc")
        with pytest.raises(ValueError, match="integer"):
            await store.incr("word", ttl=5)
        assert await store.get("word") == b"abc"
        await store.close()

    run(scenario())


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_a_burst_waits_for_one_of_max_connections(request: pytest.FixtureRequest,
                                                  cluster: bool) -> None:
    url: str = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    servers: list[RedisServer] = (request.getfixturevalue("redis_cluster").nodes if cluster
                                  else [request.getfixturevalue("redis_server")])
    store = open_store(f"{url}?max_connections=3")

    async def scenario() -> None:
        counts = await asyncio.gather(*(store.incr(f"n{i % 7}", ttl=30) for i in range(700)))
        assert sorted(counts) == sorted(list(range(1, 101)) * 7)
        for server in servers:  # the store's connections (not this one, nor a cluster
            ours = [line for line in server.command("CLIENT", "LIST").decode().splitlines()
                    if " cmd=client|list " not in line and " cmd=cluster|slots " not in line]
            assert 0 < len(ours) <= 3, ours  # client's, which asks for the topology)
        await store.close()

    run(scenario())


def test_a_store_used_from_one_event_loop_then_another(redis_url: str) -> None:
    """As the identity check does: filled by asyncio.run at start-up, then used in the
    gateway's loop (each loop gets its own connections)."""
    store = open_store(redis_url)
    asyncio.run(store.set("k", b"v"))
    assert asyncio.run(store.get("k")) == b"v"
    assert asyncio.run(store.incr("n", ttl=5)) == 1
    asyncio.run(store.close())
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(store.get("k"))
    with warnings.catch_warnings():  # the connections of a loop that has ended are closed
        warnings.simplefilter("ignore", ResourceWarning)  # by the collector, which says so
        gc.collect()


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_an_unreachable_redis_is_a_store_error_naming_the_url_without_its_password(
        scheme: str) -> None:
    url = f"{scheme}://:s3cret@127.0.0.1:{free_port()}{'/0' * (scheme == 'redis')}"
    store = open_store(url)  # opening does no I/O: it cannot fail for that

    async def scenario() -> None:
        for call in (store.get("k"), store.set("k", b"v", ttl=1), store.add("k", b"v"),
                     store.delete("k"), store.incr("k"), store.incr("k", ttl=1),
                     store.scan("")):
            with pytest.raises(StoreError) as caught:
                await call
            message = str(caught.value)
            assert f"cannot reach Redis at {url.replace('s3cret', '***')} (" in message
            assert "check that redis-server runs there" in message
            assert "s3cret" not in message
        await store.close()

    started = time.monotonic()
    run(scenario())
    assert time.monotonic() - started < 2  # refused at once, no retries


def test_a_redis_that_does_not_answer_is_a_store_error_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (in the kernel), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        store = open_store(f"redis://127.0.0.1:{port}/0?timeout=0.2&connect_timeout=0.2")

        async def scenario() -> None:
            with pytest.raises(StoreError, match=r"cannot reach Redis at .*[Tt]imeout"):
                await store.get("k")
            await store.close()

        started = time.monotonic()
        run(scenario())
        assert time.monotonic() - started < 1.5


def test_a_wrong_password_is_refused_clearly(redis_server: RedisServer,
                                             tmp_path: Path) -> None:
    guarded = RedisServer(tmp_path / "guarded", extra_args=("--requirepass", "right-one"))
    guarded.start()
    try:
        good = open_store(guarded.url.replace("redis://", "redis://:right-one@"))
        bad = open_store(guarded.url.replace("redis://", "redis://:wrong-one@"))
        none = open_store(guarded.url)

        async def scenario() -> None:
            await good.set("k", b"v")
            assert await good.get("k") == b"v"
            for store in (bad, none):
                with pytest.raises(StoreError, match="refused us") as caught:
                    await store.get("k")
                assert "wrong-one" not in str(caught.value)
                assert "user and password in the store URL" in str(caught.value)
            for store in (good, bad, none):
                await store.close()

        run(scenario())
    finally:
        guarded.stop()


def test_rediss_speaks_tls_and_checks_the_servers_certificate(redis_server: RedisServer,
                                                              tmp_path: Path) -> None:
    from apiward.identity.pki import CertificateAuthority

    ca = CertificateAuthority.init(tmp_path / "ca")
    cert = ca.issue("redis", kind="server", sans=["127.0.0.1"])
    tls_port = free_port()
    server = RedisServer(tmp_path / "tls", extra_args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert.cert),
        "--tls-key-file", str(cert.key), "--tls-ca-cert-file", str(ca.directory / "ca.crt"),
        "--tls-auth-clients", "no"))
    server.start()  # its plain port answers the readiness PING
    try:
        base = f"rediss://127.0.0.1:{tls_port}/0"
        trusting = open_store(f"{base}?ssl_ca_certs={ca.directory / 'ca.crt'}")
        doubting = open_store(base)  # the system's CAs do not know ours
        plain = open_store(f"redis://127.0.0.1:{tls_port}/0?timeout=0.5")

        async def scenario() -> None:
            await trusting.set("k", b"v", ttl=5)
            assert await trusting.get("k") == b"v"
            assert await trusting.incr("n", ttl=5) == 1
            with pytest.raises(StoreError, match=r"verify failed.*with \?ssl_ca_certs="):
                await doubting.get("k")
            with pytest.raises(StoreError, match="cannot reach Redis"):
                await plain.get("k")
            for store in (trusting, doubting, plain):
                await store.close()

        run(scenario())
    finally:
        server.stop()


def test_redis_killed_mid_traffic_is_a_store_error_then_calls_recover(
        redis_server: RedisServer, redis_url: str) -> None:
    store = open_store(redis_url)
    outcomes: list[BaseException | None] = []

    async def traffic(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await store.incr("hits", ttl=60)
                outcomes.append(None)
            except Exception as error:  # what escapes is the point
                outcomes.append(error)
            await asyncio.sleep(0)

    async def until(predicate: Callable[[], bool], what: str, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"no {what} within {within} s"
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(traffic(stop)) for _ in range(4)]
        await until(lambda: outcomes.count(None) >= 100, "traffic")
        redis_server.stop()  # mid-traffic: some calls are in flight
        seen = len(outcomes)
        await until(lambda: len(outcomes) > seen + 20, "failed calls")
        for call in (store.get("k"), store.set("k", b"v"), store.add("k", b"v"),
                     store.delete("k"), store.incr("k"), store.incr("k", ttl=5),
                     store.scan("")):
            with pytest.raises(StoreError, match="cannot reach Redis"):
                await call
        redis_server.start()  # answers PING again (empty: it keeps nothing on disk)
        assert await store.incr("after", ttl=5) == 1  # the script is loaded again
        assert await store.get("after") == b"1"
        back = len(outcomes)
        await until(lambda: len(outcomes) >= back + 100, "traffic after the restart")
        stop.set()
        await asyncio.gather(*tasks)
        assert outcomes[back:] == [None] * (len(outcomes) - back)  # all work again
        await store.close()

    run(scenario())
    errors = [error for error in outcomes if error is not None]
    assert errors, "the outage was not seen"
    assert {type(error) for error in errors} == {StoreError}
    assert all("cannot reach Redis at" in str(error) for error in errors)
