"""The inventory report and the rate-limit suggestions: a small hand-made inventory."""

from __future__ import annotations

import random

import pytest
import yaml

from apiward.inventory.aggregates import CallRecord, Inventory
from apiward.inventory.report import (
    Row,
    Suggestion,
    as_config,
    nice_limit,
    rate_suggestions,
    rows,
)
from apiward.pipeline.checks.ratelimit import Config

DAY = 86400.0
NOW = 1_750_000_000.0
START = NOW - 40 * DAY  # the inventory has watched the shop for 40 days

SPEC = {"shop": {("GET", "/users"), ("GET", "/users/{id}"), ("DELETE", "/users/{id}"),
                 ("GET", "/old"), ("GET", "/legacy")}}
SECURED = {"shop": {("GET", "/users/{id}"), ("DELETE", "/users/{id}"), ("GET", "/users")}}


def rec(path: str, template: str | None, *, api: str = "shop", method: str = "GET",
        status: int = 200, latency: float = 0.01, credentials: bool = True,
        action: str = "allow", ident: str | None = "alice", t: float = NOW - 60) -> CallRecord:
    kind = "key" if ident is not None else None
    return CallRecord(api, method, "api.example", path, template, status, latency, 10, 100,
                      kind, ident, credentials, action, t)


def shop() -> Inventory:
    inventory = Inventory(spec_templates=SPEC)
    records = [rec("/users", "/users", t=START)]  # the first call: watching since START
    records += [rec("/users", "/users", latency=0.010 if i < 50 else 0.100,
                    status=500 if i < 5 else 404 if i < 15 else 200) for i in range(100)]
    # A secured operation: one call without credentials got through.
    records += [rec("/users/7", "/users/{id}") for _ in range(99)]
    records += [rec("/users/7", "/users/{id}", credentials=False, ident=None)]
    # Secured too, but every uncredentialed call was refused: the gateway did its job.
    records += [rec("/users/7", "/users/{id}", method="DELETE", credentials=False,
                    ident=None, status=401, action="block") for _ in range(10)]
    # In the spec, last called 31 days ago.
    records += [rec("/legacy", "/legacy", t=NOW - 31 * DAY)]
    # Discovered: a shadow endpoint, public (no calls have credentials): not flagged.
    records += [rec("/health", None, credentials=False, ident=None) for _ in range(20)]
    # Discovered, most calls with credentials, 5% without that got through (log mode).
    records += [rec(f"/orders/{i}", None, method="POST") for i in range(95)]
    records += [rec(f"/orders/{i}", None, method="POST", credentials=False, ident=None,
                    action="would_block") for i in range(5)]
    inventory.add(records)
    return inventory


def by_endpoint(found: list[Row]) -> dict[tuple[str, str], Row]:
    return {(row.method, row.template): row for row in found}


def test_rows_and_flags_of_a_small_inventory() -> None:
    found = rows(shop(), now=NOW, secured=SECURED)
    table = by_endpoint(found)
    assert list(table) == [("GET", "/health"), ("GET", "/legacy"), ("GET", "/old"),
                           ("POST", "/orders/{order_id}"), ("GET", "/users"),
                           ("DELETE", "/users/{id}"), ("GET", "/users/{id}")]
    users = table[("GET", "/users")]
    assert (users.source, users.calls, users.flags) == ("spec", 101, ())
    assert users.error_rate == pytest.approx(5 / 101)
    assert users.client_error_rate == pytest.approx(10 / 101)
    assert users.p50_ms == pytest.approx(10, rel=0.12)
    assert users.p99_ms == pytest.approx(100, rel=0.12)
    assert users.unauthenticated_share == 0.0
    assert users.last_seen == NOW - 60

    assert table[("GET", "/users/{id}")].flags == ("unauthenticated",)
    assert table[("GET", "/users/{id}")].unauthenticated_share == pytest.approx(0.01)
    assert table[("DELETE", "/users/{id}")].flags == ()
    assert table[("DELETE", "/users/{id}")].unauthenticated_share == 1.0
    assert table[("GET", "/legacy")].flags == ("zombie",)

    never = table[("GET", "/old")]
    assert (never.source, never.calls, never.p50_ms, never.last_seen, never.flags) == (
        "spec", 0, None, None, ("zombie",))

    health = table[("GET", "/health")]
    assert (health.source, health.flags, health.unauthenticated_share) == (
        "discovered", ("shadow",), 1.0)
    orders = table[("POST", "/orders/{order_id}")]
    assert orders.flags == ("shadow", "unauthenticated")
    assert orders.unauthenticated_share == pytest.approx(0.05)


def test_thresholds_are_arguments() -> None:
    table = by_endpoint(rows(shop(), now=NOW, zombie_after=60 * DAY, unauth_threshold=0.10))
    assert table[("GET", "/legacy")].flags == ()
    assert table[("GET", "/old")].flags == ()  # watched for 40 days only
    assert table[("POST", "/orders/{order_id}")].flags == ("shadow",)
    # Without `secured`, the one uncredentialed call (1%) is not above 10%.
    assert table[("GET", "/users/{id}")].flags == ()


def test_a_never_called_operation_is_no_zombie_before_its_api_was_watched_long() -> None:
    inventory = Inventory(spec_templates={"shop": {("GET", "/a"), ("GET", "/b")}})
    inventory.add([rec("/a", "/a", t=NOW - DAY)])
    table = by_endpoint(rows(inventory, now=NOW))
    assert table[("GET", "/b")].flags == ()
    assert table[("GET", "/b")].calls == 0
    nothing = Inventory(spec_templates={"shop": {("GET", "/a")}})
    assert [row.flags for row in rows(nothing, now=NOW)] == [()]


def test_no_shadow_without_a_spec_and_the_overflow_is_flagged() -> None:
    inventory = Inventory(max_endpoints=2)
    inventory.add(rec(f"/r{i}", f"/r{i}", api="nospec") for i in range(5))
    found = rows(inventory, now=NOW)
    assert all(row.source == "discovered" and "shadow" not in row.flags for row in found)
    assert [row.template for row in found if "overflow" in row.flags] == ["/{...}"]


def test_row_to_dict_is_json_ready() -> None:
    row = rows(shop(), now=NOW)[0]
    data = row.to_dict()
    assert data["flags"] == ["shadow"] and data["template"] == "/health"
    assert set(data) == {"api", "method", "template", "source", "calls", "error_rate",
                         "client_error_rate", "p50_ms", "p99_ms", "unauthenticated_share",
                         "last_seen", "flags"}


# -- rate-limit suggestions --------------------------------------------------------------------


def per_minute(counts: dict[str, list[int]], *, template: str = "/users/{id}",
               method: str = "GET") -> list[CallRecord]:
    """Each client's calls: counts[client][k] calls in minute k."""
    base = (NOW // 60) * 60
    out = []
    for client, minutes in counts.items():
        for k, count in enumerate(minutes):
            out += [rec("/users/1", template, method=method, ident=client,
                        t=base + 60 * k + i * 59 / max(count, 1)) for i in range(count)]
    out.sort(key=lambda r: r.time)
    return out


def test_suggestions_from_per_client_windows() -> None:
    inventory = Inventory()
    inventory.add(per_minute({"alice": [10, 12, 8, 10], "bob": [1, 2, 3], "carol": [40]}))
    [s] = rate_suggestions(inventory)
    # Windows: alice 8 10 10 12, bob 1 2 3, carol 40 (open windows included).
    assert (s.api, s.method, s.template, s.clients, s.windows) == (
        "shop", "GET", "/users/{id}", 3, 8)
    # Above 32 a window is its bucket's largest count (39-41 here); the max is exact.
    assert (s.p50, s.p99, s.max) == (8, 41, 40)
    assert s.limit == 100 and s.rate == "100/min"  # 2 x 41 -> 100


def test_suggestions_floor_and_minimum_windows() -> None:
    inventory = Inventory()
    inventory.add(per_minute({"alice": [1, 1, 2, 1, 1]}))
    [s] = rate_suggestions(inventory)
    assert s.limit == 10  # 2 x p99 (2) is below the floor
    assert rate_suggestions(inventory, min_windows=6) == []
    assert rate_suggestions(inventory, floor=1)[0].limit == 5  # 2 x 2 -> 5


def test_suggestions_count_evicted_clients_windows() -> None:
    rng = random.Random(1)
    inventory = Inventory(max_clients_per_endpoint=8)
    heavy = {f"h{i}": [rng.randint(10, 30) for _ in range(5)] for i in range(6)}
    inventory.add(per_minute(heavy))
    # 100 one-off clients in the third minute: evicted, their windows (1 call) counted.
    inventory.add(per_minute({f"once{i}": [0, 0, 1] for i in range(100)}))
    [s] = rate_suggestions(inventory)
    assert s.clients <= 8
    assert {ident for ident in heavy} <= {i for _, i in inventory.endpoints()[0].clients}
    assert s.windows == 6 * 5 + 100
    assert s.max == max(max(m) for m in heavy.values())
    assert s.p50 == 1


@pytest.mark.parametrize(("value", "nice"), [(0, 1), (1, 1), (1.5, 2), (3, 3), (4, 5),
                                             (7, 10), (10, 10), (11, 20), (250, 300),
                                             (301, 500), (999, 1000), (12_345, 20_000)])
def test_nice_limits(value: float, nice: int) -> None:
    assert nice_limit(value) == nice


def test_as_config_parses_and_validates_as_the_ratelimit_check() -> None:
    inventory = Inventory()
    inventory.add(per_minute({"alice": [10, 12, 8], "bob": [100, 90]}))
    inventory.add(per_minute({"alice": [3, 4, 5]}, template="/users/{id}", method="DELETE"))
    inventory.add(per_minute({"alice": [3, 4, 5]}, template="/a:b/#x/'q'\"/{id}"))
    inventory.add(per_minute({"alice": [3, 4, 5]}, template="/get/users/{id}"))
    suggestions = rate_suggestions(inventory, min_windows=1)
    assert len(suggestions) == 4
    text = as_config(suggestions)
    data = yaml.safe_load(text)
    config = Config.model_validate(data)
    assert config.mode == "log"
    by_match = {rule.match[0]: rule for rule in config.rules}
    assert set(by_match) == {f"{s.method} {s.template}" for s in suggestions}
    for s in suggestions:
        rule = by_match[f"{s.method} {s.template}"]
        assert rule.key == ["identity"]
        assert [limit.rate for limit in rule.limits] == [f"{s.limit}/min"]
    names = [rule.name for rule in config.rules]
    assert len(set(names)) == len(names)
    assert "get-users-id" in names
    assert text.count("# ") >= 4  # a comment with the observed rates per rule


def test_as_config_picks_one_api() -> None:
    both = [Suggestion("a", "GET", "/x", 1, 5, 1, 2, 3, 10),
            Suggestion("b", "GET", "/x", 1, 5, 1, 2, 3, 20)]
    with pytest.raises(ValueError, match="several APIs"):
        as_config(both)
    data = yaml.safe_load(as_config(both, api="b"))
    assert Config.model_validate(data).rules[0].limits[0].rate == "20/min"
    with pytest.raises(ValueError, match="no suggestions"):
        as_config(both, api="c")
    with pytest.raises(ValueError):
        as_config([])


def test_no_suggestion_for_overflow_other_or_unmatchable_templates() -> None:
    inventory = Inventory(max_endpoints=1)
    inventory.add(per_minute({"alice": [5, 5]}, template="/folded"))
    inventory.add(per_minute({"alice": [5, 5]}, template="/kept"))  # /folded -> /{...}
    inventory.add([rec("/x", None, method="BREW", t=NOW + i) for i in range(10)])  # OTHER
    spaced = Inventory()
    spaced.add(per_minute({"alice": [5, 5]}, template="/with space"))
    inventory.merge(spaced)  # past the cap: the busiest stays
    templates = {(ep.method, ep.template) for ep in inventory.endpoints()}
    assert ("GET", "/{...}") in templates and ("OTHER", "/{...}") in templates
    suggestions = rate_suggestions(inventory, min_windows=1)
    assert [(s.method, s.template) for s in suggestions] == [
        (m, t) for m, t in templates if t in ("/kept", "/folded")]
    assert rate_suggestions(spaced, min_windows=1) == []
