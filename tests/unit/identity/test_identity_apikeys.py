"""API keys: creation and revocation in a store, and KeyTable.verify on the request path."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from apiward.identity import apikeys
from apiward.identity.apikeys import ApiKey, ApiKeyError, KeyTable, allows, parse_expiry
from apiward.state.store import Store, open_store

KEY_RE = re.compile(r"aw_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def store() -> Store:
    return open_store("memory://")


def made(store: Store, name: str = "billing", scopes: tuple[str, ...] = ("orders:read",),
         expires: datetime | None = None) -> tuple[ApiKey, str]:
    return run(apikeys.create(store, name, scopes, expires, now=T0))


def table_of(store: Store) -> KeyTable:
    return run(KeyTable.load(store))


# -- creating ------------------------------------------------------------------------------

def test_create_returns_the_key_once_and_stores_only_a_hash(store: Store) -> None:
    record, key = made(store, scopes=("orders:read", "orders:write"))
    match = KEY_RE.fullmatch(key)
    assert match, key
    kid, secret = match.groups()
    assert record.id == kid and record.name == "billing"
    assert record.scopes == {"orders:read", "orders:write"}
    assert record.created == T0 and record.expires is None and record.revoked is None
    assert record.hash == hashlib.sha256(secret.encode()).hexdigest()

    everything = run(store.scan(""))
    assert [k for k, _ in everything] == ["apikey-name:billing", f"apikey:{kid}"]
    assert all(secret.encode() not in value for _, value in everything)
    stored = orjson.loads(dict(everything)[f"apikey:{kid}"])
    assert stored == {"name": "billing", "id": kid, "hash": record.hash,
                      "scopes": ["orders:read", "orders:write"],
                      "created": "2026-03-01T12:00:00+00:00", "expires": None, "revoked": None}
    assert dict(everything)["apikey-name:billing"] == kid.encode()
    assert record.hash not in repr(record)  # kept out of logs


def test_every_key_is_different(store: Store) -> None:
    keys = {made(store, f"k{i}")[1] for i in range(50)}
    assert len(keys) == 50
    assert len({KEY_RE.fullmatch(k).group(1) for k in keys}) == 50  # type: ignore[union-attr]


def test_names_are_unique_among_unrevoked_keys(store: Store) -> None:
    first, _ = made(store)
    with pytest.raises(ApiKeyError, match="a key named 'billing' exists"):
        made(store)
    run(apikeys.revoke(store, "billing", now=T0))
    second, _ = run(apikeys.create(store, "billing", now=T0 + timedelta(seconds=1)))
    assert second.id != first.id
    names = [(k.name, k.revoked is not None) for k in run(apikeys.list(store))]
    assert names == [("billing", True), ("billing", False)]


def test_concurrent_creates_of_one_name_have_one_winner(tmp_path: Path) -> None:
    async def scenario() -> list[object]:
        one, two = open_store(tmp_path / "s.db"), open_store(tmp_path / "s.db")
        results = await asyncio.gather(
            *(apikeys.create(s, "same") for s in (one, two, one, two)),
            return_exceptions=True)
        await one.close()
        await two.close()
        return results

    results = run(scenario())
    assert sum(isinstance(r, tuple) for r in results) == 1
    assert all(isinstance(r, ApiKeyError) for r in results if not isinstance(r, tuple))


@pytest.mark.parametrize("name", ["", " lead", "has space", "-dash-first", "x" * 101,
                                  "new\nline", "ünï"])
def test_bad_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(ApiKeyError, match="invalid key name"):
        made(store, name)


@pytest.mark.parametrize("scope", ["", "two words", 'quote"', "back\\slash", "tab\t", "é"])
def test_bad_scopes_are_refused(store: Store, scope: str) -> None:
    with pytest.raises(ApiKeyError, match="invalid scope"):
        made(store, scopes=(scope,))


def test_expiry_must_be_aware_and_in_the_future(store: Store) -> None:
    with pytest.raises(ApiKeyError, match="time zone"):
        made(store, expires=datetime(2030, 1, 1))
    with pytest.raises(ApiKeyError, match="not in the future"):
        made(store, expires=T0)
    record, _ = made(store, expires=datetime(2030, 1, 1, 2, tzinfo=timezone_plus(2)))
    assert record.expires == datetime(2030, 1, 1, tzinfo=UTC)


def timezone_plus(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_parse_expiry() -> None:
    assert parse_expiry("30d", T0) == T0 + timedelta(days=30)
    assert parse_expiry("12h", T0) == T0 + timedelta(hours=12)
    assert parse_expiry(" 2w ", T0) == T0 + timedelta(weeks=2)
    assert parse_expiry("2027-01-31") == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_expiry("2027-01-31T12:00:00Z") == datetime(2027, 1, 31, 12, tzinfo=UTC)
    assert parse_expiry("2027-01-31T12:00+02:00") == datetime(2027, 1, 31, 10, tzinfo=UTC)
    for bad in ("soon", "30", "30x", "-1d", "2027-13-01", ""):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_expiry(bad, T0)


# -- verifying -----------------------------------------------------------------------------

NOW = T0.timestamp() + 60


def test_a_valid_key_verifies_with_its_record(store: Store) -> None:
    record, key = made(store)
    check = table_of(store).verify(key, NOW)
    assert check.ok and check.reason is None and check.key == record


def test_a_revoked_key_is_refused_after_the_next_refresh(store: Store) -> None:
    record, key = made(store)
    table = table_of(store)
    run(apikeys.revoke(store, "billing", now=T0))
    assert table.verify(key, NOW).ok  # until the gateway refreshes (every few seconds)
    run(table.refresh())
    check = table.verify(key, NOW)
    assert (check.ok, check.reason, check.key.id if check.key else None) == (
        False, "revoked", record.id)


def test_an_expired_key_is_refused_from_its_expiry_on(store: Store) -> None:
    expires = T0 + timedelta(hours=1)
    _, key = made(store, expires=expires)
    table = table_of(store)
    assert table.verify(key, expires.timestamp() - 0.001).ok
    check = table.verify(key, expires.timestamp())
    assert (check.ok, check.reason) == (False, "expired")
    assert check.key is not None and check.key.name == "billing"


def test_scopes_decide_what_a_key_may_call(store: Store) -> None:
    _, key = made(store, scopes=("orders:read", "users:read"))
    found = table_of(store).verify(key, NOW).key
    assert found is not None
    assert allows(found, ["orders:read"])
    assert allows(found, ("orders:read", "users:read"))
    assert allows(found, [])
    assert not allows(found, ["orders:write"])
    assert not allows(found, ["orders:read", "orders:write"])
    no_scopes, _ = made(store, "plain", scopes=())
    assert allows(no_scopes, []) and not allows(no_scopes, ["orders:read"])


def test_unknown_ids_and_wrong_secrets_look_the_same(store: Store) -> None:
    _, key = made(store)
    table = table_of(store)
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown_id = f"aw_ZZZZZZZZZZZZ_{key.split('_', 2)[2]}"
    for presented in (wrong_secret, unknown_id):
        check = table.verify(presented, NOW)
        assert (check.ok, check.reason, check.key) == (False, "unknown", None)


def test_revoked_and_expired_are_only_told_to_the_holder_of_the_secret(store: Store) -> None:
    _, revoked_key = made(store, "gone")
    _, expired_key = made(store, "old", expires=T0 + timedelta(seconds=1))
    run(apikeys.revoke(store, "gone", now=T0))
    table = table_of(store)
    for key in (revoked_key, expired_key):
        guess = key[:-1] + ("x" if key[-1] != "x" else "y")
        assert table.verify(guess, NOW).reason == "unknown"
    assert table.verify(revoked_key, NOW).reason == "revoked"
    assert table.verify(expired_key, NOW).reason == "expired"


@pytest.mark.parametrize("presented", [
    "", "aw_", "aw__", "Bearer aw_x", "AW_ABCDEFGHIJKL_" + "a" * 43,
    "aw_ABCDEFGHIJKL",  # no secret
    "aw_ABCDEFGHIJKL_" + "a" * 42,  # secret too short
    "aw_ABCDEFG_" + "a" * 43,  # id too short
    "aw_" + "A" * 33 + "_" + "a" * 43,  # id too long
    "aw_ABCDEF-HIJKL_" + "a" * 43,  # id not alphanumeric
    "aw_ABCDEFGHIJKL_" + "a" * 42 + "é",  # not ASCII
    "aw_ABCDEFGHIJKL_" + "a" * 43 + "\udcff",  # a lone surrogate (cannot even be encoded)
    "aw_ABCDEFGHIJKL_" + "a" * 500,  # too long
])
def test_malformed_keys_are_refused_before_any_lookup(store: Store, presented: str) -> None:
    made(store)
    check = table_of(store).verify(presented, NOW)
    assert (check.ok, check.reason, check.key) == (False, "malformed", None)


def test_verify_always_compares_digests_in_constant_time(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing safety by construction: an unknown id costs the same hash and the same
    constant-time comparison (of two 32-byte digests) as a known one."""
    _, key = made(store)
    table = table_of(store)
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", counting)
    secret = key.split("_", 2)[2]
    cases = {
        "valid": (key, True),
        "unknown id": (f"aw_ZZZZZZZZZZZZ_{secret}", False),
        "wrong secret": (key[:-1] + ("x" if key[-1] != "x" else "y"), False),
    }
    for label, (presented, ok) in cases.items():
        calls.clear()
        assert table.verify(presented, NOW).ok is ok, label
        assert calls == [(32, 32)], label
    calls.clear()
    table.verify("not a key", NOW)
    assert calls == []  # malformed input is refused by its shape alone


def test_the_stand_in_digest_for_unknown_ids_is_random_per_process() -> None:
    digest = apikeys._NO_ENTRY[0]
    assert len(digest) == 32 and digest != bytes(32)


# -- the table -------------------------------------------------------------------------------

def test_the_table_sees_keys_made_through_another_handle(tmp_path: Path) -> None:
    async def scenario() -> None:
        gateway_side, cli_side = open_store(tmp_path / "s.db"), open_store(tmp_path / "s.db")
        table = await KeyTable.load(gateway_side)
        assert len(table) == 0
        record, key = await apikeys.create(cli_side, "late")
        assert table.verify(key, NOW).reason == "unknown"
        await table.refresh()
        assert table.verify(key, NOW).key == record
        await apikeys.revoke(cli_side, "late")
        await table.refresh()
        assert table.verify(key, NOW).reason == "revoked"
        await gateway_side.close()
        await cli_side.close()

    run(scenario())


def test_a_damaged_record_is_skipped_and_reported_once(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    _, key = made(store)
    run(store.set("apikey:BROKEN12", b"{not json"))
    run(store.set("apikey:MISMATCH", made(store, "other")[0].to_json()))
    with caplog.at_level(logging.WARNING, logger="apiward"):
        table = table_of(store)
        run(table.refresh())
    assert table.verify(key, NOW).ok
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert any("apikey:BROKEN12 ignored" in w for w in warnings)
    assert any("apikey:MISMATCH ignored" in w for w in warnings)
    assert len(table) == 2


def test_refresh_does_not_parse_unchanged_records_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        made(store, f"k{i}")
    table = table_of(store)
    parsed: list[bytes] = []
    real = ApiKey.from_json.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(ApiKey, "from_json",
                        classmethod(lambda cls, raw: (parsed.append(raw), real(cls, raw))[1]))
    run(table.refresh())
    assert parsed == []
    run(apikeys.revoke(store, "k3"))
    parsed.clear()
    run(table.refresh())
    assert len(parsed) == 1 and b'"k3"' in parsed[0]


def test_keep_fresh_refreshes_until_cancelled(store: Store) -> None:
    async def scenario() -> None:
        table = await KeyTable.load(store)
        task = asyncio.create_task(table.keep_fresh(interval=0.01))
        _, key = await apikeys.create(store, "new")
        for _ in range(500):
            if table.verify(key, NOW).ok:
                break
            await asyncio.sleep(0.01)
        assert table.verify(key, NOW).ok
        task.cancel()

    run(scenario())


# -- listing and revoking --------------------------------------------------------------------

def test_list_shows_every_record_oldest_first(store: Store) -> None:
    run(apikeys.create(store, "b", now=T0 + timedelta(seconds=2)))
    run(apikeys.create(store, "a", now=T0 + timedelta(seconds=1)))
    run(apikeys.create(store, "c", now=T0 + timedelta(seconds=3)))
    run(apikeys.revoke(store, "c"))
    records = run(apikeys.list(store))
    assert [(r.name, r.status(NOW)) for r in records] == [
        ("a", "active"), ("b", "active"), ("c", "revoked")]
    public = records[0].public(NOW)
    assert "hash" not in public and records[0].hash not in str(public)


def test_revoke_says_what_is_wrong(store: Store) -> None:
    with pytest.raises(ApiKeyError, match="no key named 'ghost'"):
        run(apikeys.revoke(store, "ghost"))
    made(store)
    revoked = run(apikeys.revoke(store, "billing", now=T0))
    assert revoked is not None and revoked.revoked == T0
    with pytest.raises(ApiKeyError, match="already revoked"):
        run(apikeys.revoke(store, "billing"))


def test_an_interrupted_create_holds_a_name_until_revoked(store: Store) -> None:
    run(store.set("apikey-name:stuck", b"NOSUCHRECORD"))  # a create that died halfway
    with pytest.raises(ApiKeyError, match=r"unfinished key.*revoke 'stuck'"):
        made(store, "stuck")
    assert run(apikeys.revoke(store, "stuck")) is None
    record, _ = made(store, "stuck")
    assert record.name == "stuck"
