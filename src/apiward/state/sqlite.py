"""The SQLite backend: one file, one table, shared by every process on the machine.

Each store owns one connection, used by one worker thread, so the event loop never waits
on the disk and calls from one process run in order. Several processes (gateway workers,
the ``apiward keys`` CLI) share the file safely: WAL mode lets readers run beside the one
writer, a busy timeout makes a writer wait for another's lock rather than fail, and every
read-modify-write (``incr``, ``add``) is one locked transaction.

A connection must not cross ``fork``: a store opened before fork refuses to be used in the
child (open it in each worker).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from apiward.state.store import Clock, StoreError, check_entry, check_ttl, parse_counter

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 10.0  # seconds a writer waits for another process's lock
PURGE_EVERY = 512  # writes between purges of expired rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL;
"""


class SqliteStore:
    """A ``Store`` in a SQLite file (WAL mode), safe for several processes."""

    def __init__(self, path: str | os.PathLike[str], clock: Clock = time.time,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._pid = os.getpid()
        self._writes = 0
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, thread_name_prefix="apiward-sqlite")
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- opening, with errors that say which file and what to do -----------------------

    def _open(self) -> None:
        path = self.path
        where = path.resolve().parent
        if path.is_dir():
            raise StoreError(f"state store {path} is a directory; give a file path "
                             f"(e.g. {path / 'apiward.db'})")
        if not where.is_dir():
            raise StoreError(f"cannot create state store {path}: directory {where} does "
                             "not exist; create it or choose another path")
        if os.geteuid() != 0:  # root may write anything; let SQLite find out
            if path.exists() and not os.access(path, os.R_OK | os.W_OK):
                raise StoreError(f"cannot write state store {path}: permission denied; "
                                 "make the file writable for this user or choose another "
                                 "path")
            if not os.access(where, os.W_OK | os.X_OK):
                raise StoreError(f"cannot write state store {path}: directory {where} is "
                                 "not writable (SQLite keeps its -wal and -shm files "
                                 "beside the database); fix its permissions or choose "
                                 "another path")
        try:
            conn = sqlite3.connect(path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open state store {path}: {error}; check the path "
                             "and its permissions") from error
        try:
            self._init_schema(conn)
        except sqlite3.DatabaseError as error:
            conn.close()
            text = str(error)
            if "not a database" in text:
                raise StoreError(f"{path} is not an apiward state store (not a SQLite "
                                 "database); choose another path") from error
            if "readonly" in text or "unable to open" in text:
                raise StoreError(f"cannot write state store {path}: {text}; make the file "
                                 "and its directory writable for this user or choose "
                                 "another path") from error
            raise StoreError(f"cannot open state store {path}: {text}") from error
        self._conn = conn

    @staticmethod
    def _init_schema(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.DatabaseError("cannot use WAL mode on this file system")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe in WAL
        conn.execute("BEGIN IMMEDIATE")  # also proves we can write, before any real call
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"written by a newer apiward (schema {version} > {SCHEMA_VERSION})")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- one thread does the disk work --------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            raise StoreError(f"state store {self.path} is closed")
        if os.getpid() != self._pid:
            raise StoreError(f"state store {self.path} was opened in another process; "
                             "open it after fork, in each process that uses it")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as error:
            raise StoreError(f"state store {self.path}: {error}") from error

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        """One autocommitted write statement, with an occasional purge."""
        conn = self._conn
        assert conn is not None
        cursor = conn.execute(sql, args)
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            conn.execute("DELETE FROM kv WHERE expires_at <= ?", (self._clock(),))
        return cursor

    # -- the Store calls -----------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._get, key)

    def _get(self, key: str) -> bytes | None:
        assert self._conn is not None
        row = self._conn.execute("SELECT value, expires_at FROM kv WHERE key = ?",
                                 (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return None
        return row[0]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ttl = check_entry(value, ttl)
        await self._run(self._set, key, value, ttl)

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        expires = None if ttl is None else self._clock() + ttl
        self._write("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                    (key, value, expires))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        ttl = check_entry(value, ttl)
        return await self._run(self._add, key, value, ttl)

    def _add(self, key: str, value: bytes, ttl: float | None) -> bool:
        now = self._clock()
        expires = None if ttl is None else now + ttl
        cursor = self._write(
            "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO "
            "UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
            "WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?",
            (key, value, expires, now))
        return cursor.rowcount == 1

    async def delete(self, key: str) -> bool:
        return await self._run(self._delete, key)

    def _delete(self, key: str) -> bool:
        rows = self._write("DELETE FROM kv WHERE key = ? RETURNING expires_at",
                           (key,)).fetchall()
        return bool(rows) and (rows[0][0] is None or rows[0][0] > self._clock())

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return await self._run(self._incr, key, amount, check_ttl(ttl))

    def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: no other process between
        try:
            now = self._clock()
            row = conn.execute("SELECT value, expires_at FROM kv WHERE key = ?",
                               (key,)).fetchone()
            if row is None or (row[1] is not None and row[1] <= now):
                count, expires = amount, (None if ttl is None else now + ttl)
            else:
                count, expires = parse_counter(key, row[0]) + amount, row[1]
            self._write("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                        (key, str(count).encode(), expires))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    async def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        return await self._run(self._scan, prefix)

    def _scan(self, prefix: str) -> list[tuple[str, bytes]]:
        assert self._conn is not None
        now = self._clock()
        live = "(expires_at IS NULL OR expires_at > ?)"
        if not prefix:
            sql, args = f"SELECT key, value FROM kv WHERE {live}", (now,)
        elif prefix[-1] != "\U0010ffff":
            # keys compare as UTF-8 bytes, i.e. by code point: [prefix, next) is the range
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            sql = f"SELECT key, value FROM kv WHERE key >= ? AND key < ? AND {live}"
            args = (prefix, upper, now)
        else:
            sql = f"SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? AND {live}"
            args = (len(prefix), prefix, now)
        return [(key, value) for key, value in
                self._conn.execute(sql + " ORDER BY key", args).fetchall()]

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if os.getpid() == self._pid and self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._conn.close)
        executor.shutdown(wait=False)
        self._conn = None
