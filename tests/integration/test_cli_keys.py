"""``apiward keys`` as a user runs it (the real ``apiward`` script, in subprocesses), with a
gateway-side KeyTable in this process reading the same SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from apiward.identity.apikeys import KeyTable
from apiward.state.store import open_store

BIN = Path(sys.executable).parent / "apiward"
# Rich sizes its output from COLUMNS: leave it unset, as under CI or a pipe.
BASE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("COLUMNS", "LINES", "APIWARD_STORE")}
KEY_RE = re.compile(r"aw_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}")


def apiward(*args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env={**BASE_ENV, **(env or {})})


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, one line on stderr that says what is wrong, no traceback."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def gateway_check(store_path: Path, key: str) -> tuple[bool, str | None, str | None]:
    async def check() -> tuple[bool, str | None, str | None]:
        store = open_store(store_path)
        try:
            result = (await KeyTable.load(store)).verify(key, time.time())
        finally:
            await store.close()
        return result.ok, result.reason, result.key.name if result.key else None

    return asyncio.run(check())


def test_create_list_revoke(tmp_path: Path) -> None:
    store = tmp_path / "keys.db"
    created = apiward("keys", "create", "billing", "--scope", "orders:read", "--scope",
                      "orders:write", "--expires", "30d", "--store", str(store), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY_RE.fullmatch(key), created.stdout  # stdout is the key alone: scriptable
    assert "cannot" not in created.stdout
    assert "only time the key is shown" in created.stderr
    assert "billing" in created.stderr and key not in created.stderr
    secret = key.split("_", 2)[2]

    assert gateway_check(store, key) == (True, None, "billing")

    table = apiward("keys", "list", "--store", str(store), cwd=tmp_path)
    listed = apiward("keys", "list", "--json", "--store", str(store), cwd=tmp_path)
    assert table.returncode == listed.returncode == 0
    for output in (table.stdout + table.stderr, listed.stdout + listed.stderr):
        assert secret not in output and key not in output
    (entry,) = json.loads(listed.stdout)
    hash_hex = hashlib.sha256(secret.encode()).hexdigest()
    assert hash_hex not in table.stdout and hash_hex not in listed.stdout
    assert set(entry) == {"name", "id", "scopes", "created", "expires", "revoked", "status"}
    assert entry["name"] == "billing" and key.startswith(f"aw_{entry['id']}_")
    assert entry["scopes"] == ["orders:read", "orders:write"]
    assert entry["status"] == "active" and entry["revoked"] is None
    assert 29.9 * 86400 < (_ts(entry["expires"]) - time.time()) <= 30 * 86400
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "STATUS", "SCOPES", "CREATED", "EXPIRES"]
    assert row.split()[:4] == ["billing", entry["id"], "active", "orders:read,orders:write"]

    revoked = apiward("keys", "revoke", "billing", "--store", str(store), cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked API key 'billing'" in revoked.stdout
    assert gateway_check(store, key) == (False, "revoked", "billing")
    (entry,) = json.loads(apiward("keys", "list", "--json", "--store", str(store),
                                  cwd=tmp_path).stdout)
    assert entry["status"] == "revoked" and entry["revoked"] is not None

    again = apiward("keys", "create", "billing", "--store", str(store), cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the name is free again
    assert gateway_check(store, again.stdout.strip()) == (True, None, "billing")


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_running_table_sees_the_cli_revoke_at_its_next_refresh(tmp_path: Path) -> None:
    store_path = tmp_path / "live.db"
    key = apiward("keys", "create", "svc", "--store", str(store_path), cwd=tmp_path
                  ).stdout.strip()

    async def scenario() -> None:
        store = open_store(store_path)
        table = await KeyTable.load(store)
        assert table.verify(key, time.time()).ok
        revoked = await asyncio.to_thread(apiward, "keys", "revoke", "svc", "--store",
                                          str(store_path), cwd=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        await table.refresh()
        assert table.verify(key, time.time()).reason == "revoked"
        await store.close()

    asyncio.run(scenario())


def test_the_store_comes_from_the_environment_or_the_current_directory(tmp_path: Path
                                                                        ) -> None:
    here = apiward("keys", "create", "local", cwd=tmp_path)
    assert here.returncode == 0, here.stderr
    assert (tmp_path / "apiward.db").exists()
    assert gateway_check(tmp_path / "apiward.db", here.stdout.strip())[0]

    elsewhere = tmp_path / "env.db"
    env = {"APIWARD_STORE": f"sqlite://{elsewhere}"}
    there = apiward("keys", "create", "remote", cwd=tmp_path, env=env)
    assert there.returncode == 0, there.stderr
    assert gateway_check(elsewhere, there.stdout.strip())[0]
    names = [e["name"] for e in json.loads(apiward("keys", "list", "--json", cwd=tmp_path,
                                                   env=env).stdout)]
    assert names == ["remote"]
    local = json.loads(apiward("keys", "list", "--json", cwd=tmp_path).stdout)
    assert [e["name"] for e in local] == ["local"]


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    store = tmp_path / "empty.db"
    asyncio.run(open_store(store).close())
    listed = apiward("keys", "list", "--store", str(store), cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout == ""
    assert "no API keys" in listed.stderr
    assert apiward("keys", "list", "--json", "--store", str(store), cwd=tmp_path
                   ).stdout.strip() == "[]"


@pytest.mark.parametrize(("args", "fragments"), [
    (["create", "dup"], ["a key named 'dup' exists"]),
    (["create", "x", "--expires", "soon"], ["--expires", "expected a duration"]),
    (["create", "x", "--expires", "2001-01-01"], ["not in the future"]),
    (["create", "bad name"], ["invalid key name"]),
    (["create", "x", "--scope", "two words"], ["invalid scope"]),
    (["revoke", "ghost"], ["no key named 'ghost'"]),
    (["create", "x", "--store", "{tmp}/missing/dir/k.db"], ["missing/dir", "does not exist"]),
    (["create", "x", "--store", "{tmp}/not-a-db"], ["not-a-db", "not a SQLite database"]),
    (["list", "--store", "{tmp}/nowhere.db"], ["no state store at", "nowhere.db"]),
    (["revoke", "dup", "--store", "{tmp}/nowhere.db"], ["no state store at"]),
    (["list", "--store", "redis://:secret@127.0.0.1:1"],
     ["cannot reach Redis at redis://:***@127.0.0.1:1", "check that redis-server runs"]),
])
def test_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                        fragments: list[str]) -> None:
    store = tmp_path / "s.db"
    (tmp_path / "not-a-db").write_text("just text, " * 200)
    assert apiward("keys", "create", "dup", "--store", str(store), cwd=tmp_path
                   ).returncode == 0
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--store" not in args:
        args += ["--store", str(store)]
    refused(apiward("keys", *args, cwd=tmp_path), *fragments)
    assert not (tmp_path / "nowhere.db").exists()  # list and revoke never make a store


def test_a_refused_name_or_scope_makes_no_store(tmp_path: Path) -> None:
    refused(apiward("keys", "create", "bad name", cwd=tmp_path), "invalid key name")
    refused(apiward("keys", "create", "x", "--scope", "two words", cwd=tmp_path),
            "invalid scope")
    assert not (tmp_path / "apiward.db").exists()
