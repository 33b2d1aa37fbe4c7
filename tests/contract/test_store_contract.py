"""The Store contract: one suite, run against every backend (memory and SQLite; Redis joins
by adding one entry to BACKENDS). Time is a clock the test moves, never a sleep."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apiward.state.memory import MemoryStore
from apiward.state.sqlite import SqliteStore
from apiward.state.store import Store, StoreError, open_store, store_path


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# name -> (opens a store on (tmp_path, clock), shared between processes?)
BACKENDS: dict[str, tuple[Callable[[Path, FakeClock], Store], bool]] = {
    "memory": (lambda tmp, clock: open_store("memory://", clock=clock), False),
    "sqlite": (lambda tmp, clock: open_store(f"sqlite://{tmp / 'state.db'}", clock=clock),
               True),
}


@dataclass
class Backend:
    name: str
    store: Store
    clock: FakeClock
    tmp: Path


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    clock = FakeClock()
    store = BACKENDS[request.param][0](tmp_path, clock)
    yield Backend(request.param, store, clock, tmp_path)
    run(store.close())


@pytest.fixture(params=sorted(name for name, (_, shared) in BACKENDS.items() if shared))
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Backends that several processes can use at once."""
    clock = FakeClock()
    store = BACKENDS[request.param][0](tmp_path, clock)
    yield Backend(request.param, store, clock, tmp_path)
    run(store.close())


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

def test_an_entry_vanishes_when_its_ttl_is_up(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        await store.set("k", b"v", ttl=10)
        clock.advance(9.999)
        assert await store.get("k") == b"v"
        clock.advance(0.001)  # exactly at the deadline: gone
        assert await store.get("k") is None
        assert await store.scan("") == []

    run(scenario())


def test_set_replaces_the_ttl(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        await store.set("forever", b"1", ttl=5)
        await store.set("forever", b"2")  # no ttl: never expires now
        await store.set("longer", b"1", ttl=5)
        await store.set("longer", b"2", ttl=50)
        clock.advance(10)
        assert await store.get("forever") == b"2"
        assert await store.get("longer") == b"2"
        clock.advance(40)
        assert await store.get("longer") is None
        assert await store.get("forever") == b"2"

    run(scenario())


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

def test_add_writes_only_when_absent_or_expired(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        assert await store.add("k", b"first", ttl=5) is True
        assert await store.add("k", b"second") is False
        assert await store.get("k") == b"first"
        clock.advance(5)
        assert await store.add("k", b"third") is True
        clock.advance(1000)
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


def test_incr_sets_the_ttl_only_when_it_creates_the_key(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        assert await store.incr("window", ttl=10) == 1
        clock.advance(6)
        assert await store.incr("window", ttl=10) == 2  # does not extend the window
        clock.advance(4)
        assert await store.get("window") is None
        assert await store.incr("window", 3, ttl=10) == 3  # a new window
        clock.advance(9)
        assert await store.get("window") == b"3"
        await store.set("plain", b"7")
        assert await store.incr("plain", ttl=1) == 8  # existing: stays without ttl
        clock.advance(100)
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

def test_scan_finds_live_keys_by_prefix_sorted(backend: Backend) -> None:
    async def scenario() -> None:
        store, clock = backend.store, backend.clock
        for key in ("user:b", "user:a", "user", "users:x", "usex", "ban:1", "user:é", "user;"):
            await store.set(key, key.encode())
        await store.set("user:gone", b"x", ttl=1)
        assert [k for k, _ in await store.scan("user:")] == [
            "user:a", "user:b", "user:gone", "user:é"]
        clock.advance(1)
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


def _url(backend: Backend) -> str:
    return f"sqlite://{backend.tmp / 'state.db'}"


def test_processes_share_one_store_and_incr_stays_atomic(shared: Backend) -> None:
    workers, each = 4, 400
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, _url(shared), str(each), str(i)],
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

    async def check() -> None:
        store = shared.store
        assert await store.get("hits") == str((workers + 1) * each).encode()
        assert await store.get("winner") in {str(i).encode() for i in range(workers)}
        assert [k for k, _ in await store.scan("wrote:")] == [
            f"wrote:{i}" for i in range(workers)]

    run(check())


def test_a_second_handle_sees_writes_deletes_and_ttls(shared: Backend) -> None:
    other = BACKENDS[shared.name][0](shared.tmp, shared.clock)

    async def scenario() -> None:
        await shared.store.set("k", b"v", ttl=30)
        assert await other.get("k") == b"v"
        assert await other.delete("k") is True
        assert await shared.store.get("k") is None
        await other.set("t", b"x", ttl=30)
        shared.clock.advance(30)
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
    for url, what in (("memory://x", "no path"), ("redis://localhost", "Redis"),
                      ("ftp://x", "unknown scheme")):
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
