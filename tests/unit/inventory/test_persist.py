"""The inventory in the store: one key per writer, merged on loading (memory and SQLite)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest

from apiward.inventory.aggregates import CallRecord, Inventory
from apiward.inventory.persist import PREFIX, TTL, load, save, writer_id
from apiward.state.store import Store, open_store

T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def rec(path: str, template: str | None, ident: str, t: float,
        method: str = "GET") -> CallRecord:
    return CallRecord("shop", method, "api.example", path, template, 200, 0.01, 10, 100,
                      "key", ident, True, "allow", t)


def canonical(inventory: Inventory) -> list[dict]:
    endpoints = orjson.loads(orjson.dumps(inventory.to_dict()))["endpoints"]
    for ep in endpoints:
        for kind, flat in ep.get("clients", {}).items():
            ep["clients"][kind] = sorted(flat[at:at + 6] for at in range(0, len(flat), 6))
    return sorted(endpoints, key=lambda ep: (ep["method"], ep["template"]))


def run(make: Callable[[], Store], body: Callable[[Store], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        store = make()
        try:
            await body(store)
        finally:
            await store.close()
    asyncio.run(main())


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Callable[[], Store], Clock]:
    clock = Clock()
    url = "memory://" if request.param == "memory" else str(tmp_path / "state.db")
    return (lambda: open_store(url, clock=clock)), clock


def traffic(ident: str, start: float, n: int) -> list[CallRecord]:
    return [rec(f"/users/{i}", "/users/{id}", ident, start + i) for i in range(n)] + [
        rec(f"/carts/{1000 + i}", None, ident, start + i, method="POST") for i in range(n)]


def test_two_writers_merge_into_one_view(backend: tuple[Callable[[], Store], Clock]) -> None:
    make, _clock = backend
    a = Inventory(spec_templates={"shop": {("GET", "/users/{id}")}})
    b = Inventory(spec_templates={"shop": {("GET", "/users/{id}")}})
    a.add(traffic("alice", T0, 30))
    b.add(traffic("bob", T0 + 5, 20))
    everything = Inventory(spec_templates={"shop": {("GET", "/users/{id}")}})
    everything.add(traffic("alice", T0, 30) + traffic("bob", T0 + 5, 20))

    async def body(store: Store) -> None:
        written = await save(store, "gw1-100", a)
        assert written == len(orjson.dumps(a.to_dict()))
        await save(store, "gw2-200", b)
        assert [key for key, _ in await store.scan(PREFIX)] == [
            "inventory:gw1-100", "inventory:gw2-200"]
        view = await load(store)
        found = {(ep.method, ep.template): (ep.calls, ep.in_spec, sorted(ep.clients))
                 for ep in view.endpoints()}
        assert found == {
            ("GET", "/users/{id}"): (50, True, [("key", "alice"), ("key", "bob")]),
            ("POST", "/carts/{cart_id}"): (50, False, [("key", "alice"), ("key", "bob")])}
        assert canonical(view) == canonical(everything)  # as one writer fed both
        # A writer rewrites its own key with its cumulative state: nothing is counted twice.
        a.add(traffic("alice", T0 + 100, 5))
        await save(store, "gw1-100", a)
        again = {(ep.method, ep.template): ep.calls for ep in (await load(store)).endpoints()}
        assert again == {("GET", "/users/{id}"): 55, ("POST", "/carts/{cart_id}"): 55}

    run(make, body)


def test_dead_writers_age_out(backend: tuple[Callable[[], Store], Clock]) -> None:
    make, clock = backend
    a, b = Inventory(), Inventory()
    a.add(traffic("alice", T0, 3))
    b.add(traffic("bob", T0, 4))

    async def body(store: Store) -> None:
        await save(store, "gone-1", a)
        clock.now += TTL / 2
        await save(store, "alive-2", b)
        clock.now += TTL / 2 + 1  # gone-1 has not written for TTL: its key expired
        view = await load(store)
        assert sum(ep.calls for ep in view.endpoints()) == 8
        assert {ident for ep in view.endpoints() for _, ident in ep.clients} == {"bob"}

    run(make, body)


def test_load_of_an_empty_store_is_an_empty_inventory(
        backend: tuple[Callable[[], Store], Clock]) -> None:
    make, _clock = backend

    async def body(store: Store) -> None:
        view = await load(store, spec_templates={"shop": {("get", "/a")}})
        assert view.endpoints() == []
        assert view.spec_templates == {"shop": {("GET", "/a")}}

    run(make, body)


def test_a_damaged_state_is_skipped_with_a_warning(
        backend: tuple[Callable[[], Store], Clock], caplog: pytest.LogCaptureFixture) -> None:
    make, _clock = backend
    good = Inventory()
    good.add(traffic("alice", T0, 2))

    async def body(store: Store) -> None:
        await store.set(PREFIX + "broken-1", b"{not json", TTL)
        await store.set(PREFIX + "other-2", orjson.dumps({"format": 99}), TTL)
        await save(store, "good-3", good)
        with caplog.at_level(logging.WARNING, logger="apiward.inventory"):
            view = await load(store)
        assert sum(ep.calls for ep in view.endpoints()) == 4
        assert "broken-1" in caplog.text and "other-2" in caplog.text

    run(make, body)


def test_the_spec_given_to_load_replaces_the_writers_specs(
        backend: tuple[Callable[[], Store], Clock]) -> None:
    make, _clock = backend
    old = Inventory(spec_templates={"shop": {("GET", "/users/{id}"), ("GET", "/gone")}})
    old.add(traffic("alice", T0, 2))

    async def body(store: Store) -> None:
        await save(store, "w-1", old)
        merged = await load(store)
        assert merged.spec_templates == {"shop": {("GET", "/users/{id}"), ("GET", "/gone")}}
        now = await load(store, spec_templates={"shop": {("GET", "/users/{id}")}})
        assert now.spec_templates == {"shop": {("GET", "/users/{id}")}}
        assert {ep.template: ep.in_spec for ep in now.endpoints()} == {
            "/users/{id}": True, "/carts/{cart_id}": False}

    run(make, body)


def test_writer_ids_are_safe_key_parts() -> None:
    assert writer_id("gw-1.example", 42) == "gw-1.example-42"
    assert writer_id("a b/c:d", 7) == "a_b_c_d-7"
    assert writer_id(None).rsplit("-", 1)[1].isdigit()
    assert len(writer_id("x" * 500, 1)) == 66
