"""Block and allow lists: target forms, precedence, expiry through the store."""

from __future__ import annotations

import asyncio

import pytest

from apiward.ratelimit import lists
from apiward.state.store import open_store


@pytest.mark.parametrize(("target", "canonical"), [
    ("203.0.113.7", "ip:203.0.113.7"), ("10.1.2.3/8", "net:10.0.0.0/8"),
    ("2001:db8::1/128", "ip:2001:db8::1"), ("key:alice", "id:key:alice"),
    ("jwt:https://issuer#sub-1", "id:jwt:https://issuer#sub-1"),
])
def test_targets_are_canonical(target: str, canonical: str) -> None:
    assert lists.parse_target(target) == canonical


@pytest.mark.parametrize("target", ["nonsense", "300.1.1.1", "key:", "10.0.0.0/33"])
def test_bad_targets_say_what_is_expected(target: str) -> None:
    with pytest.raises(lists.ListError, match="CIDR network"):
        lists.parse_target(target)


def test_block_wins_over_allow_and_networks_match() -> None:
    def entry(kind: str, target: str) -> lists.Entry:
        return lists.Entry(kind, lists.parse_target(target), "", 0.0, None)

    compiled = lists.Lists.compile([entry("allow", "10.0.0.0/8"), entry("block", "10.9.0.0/16"),
                                    entry("allow", "192.0.2.5"), entry("block", "192.0.2.5"),
                                    entry("block", "key:mallory")])
    assert compiled.of_ip("10.1.1.1") == "allow"
    assert compiled.of_ip("10.9.1.1") == "block"
    assert compiled.of_ip("192.0.2.5") == "block"
    assert compiled.of_ip("::ffff:10.9.3.3") == "block"
    assert compiled.of_ip("198.51.100.1") is None
    assert compiled.ids == {"key:mallory": "block"}


def test_entries_round_trip_and_expire(tmp_path) -> None:
    async def main() -> None:
        store = open_store(f"sqlite://{tmp_path / 'l.db'}")
        try:
            await lists.add(store, "block", "203.0.113.0/24", "scan", ttl=3600, now=1000.0)
            await lists.add(store, "allow", "key:ci")
            found = {(e.kind, e.target): e for e in await lists.entries(store)}
            assert set(found) == {("block", "net:203.0.113.0/24"), ("allow", "id:key:ci")}
            assert found[("block", "net:203.0.113.0/24")].reason == "scan"
            assert await lists.remove(store, "allow", "key:ci")
            assert not await lists.remove(store, "allow", "key:ci")
        finally:
            await store.close()
    asyncio.run(main())
