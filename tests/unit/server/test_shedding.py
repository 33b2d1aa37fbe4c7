"""Load shedding's pure logic: the cap, the gradient limiter, priorities, and its config."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from apiward.config.loader import load_config
from apiward.config.models import Config, LoadShedding
from apiward.errors import ConfigError
from apiward.server.shedding import (
    PRIORITIES,
    Shedder,
    compile_priorities,
    priority_for,
)

LOW, NORMAL, HIGH, CRITICAL = range(4)
FAST, SLOW = 0.1, 0.4  # seconds: the upstream's usual latency, and 4x that


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def make(clock: Clock | None = None, **options) -> Shedder:
    return Shedder(LoadShedding(**options), clock or Clock())


def run_window(shedder: Shedder, clock: Clock, latency: float, failed: int = 0) -> int:
    """One window of calls, one at a time, the first ``failed`` of them failing; the clock
    moves 0.1 s. Returns the limit after it."""
    for i in range(shedder.window):
        assert shedder.admit(CRITICAL)
        shedder.release(latency, failed=i < failed)
    clock.now += 0.1
    return shedder.limit


def at_max(clock: Clock, **options) -> Shedder:
    """A shedder that has learnt FAST as its baseline and sits at max_inflight."""
    shedder = make(clock, **options)
    for _ in range(3):
        run_window(shedder, clock, FAST)
    assert shedder.limit == shedder._max and shedder.baseline == FAST
    return shedder


# --- the cap --------------------------------------------------------------------------


def test_the_cap_is_enforced_exactly() -> None:
    shedder = make(max_inflight=3, adaptive=False)
    assert [shedder.admit(CRITICAL) for _ in range(4)] == [True, True, True, False]
    assert shedder.inflight == 3 and shedder.limit == 3


def test_release_frees_a_slot() -> None:
    shedder = make(max_inflight=2, adaptive=False)
    assert shedder.admit(CRITICAL) and shedder.admit(CRITICAL)
    assert not shedder.admit(CRITICAL)
    shedder.release(0.01)
    assert shedder.inflight == 1
    assert shedder.admit(CRITICAL)
    assert not shedder.admit(CRITICAL)


def test_a_release_without_an_admit_is_ignored() -> None:
    shedder = make()
    shedder.release(0.01)
    assert shedder.inflight == 0 and shedder._n == 0  # not even a sample


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert make().retry_after == 1
    assert make(retry_after="2500ms").retry_after == 3
    assert make(retry_after=0).retry_after == 0


def test_the_clock_is_read_only_when_a_window_closes() -> None:
    clock = Clock()
    shedder = make(clock)
    assert clock.reads == 1  # the first period starts
    for _ in range(shedder.window - 1):
        shedder.admit(NORMAL)
        shedder.release(FAST)
    assert clock.reads == 1
    shedder.admit(NORMAL)
    shedder.release(FAST)
    assert clock.reads == 2


# --- the gradient limiter -------------------------------------------------------------


def test_latency_rising_4x_lowers_the_limit_to_min_within_30_windows() -> None:
    clock = Clock()
    shedder = at_max(clock)
    limits = [run_window(shedder, clock, SLOW) for _ in range(30)]
    assert limits == sorted(limits, reverse=True)  # only ever down
    assert limits[0] == 200  # 256 + 0.5 * (256 * 0.5 + 16 - 256)
    assert limits[2] < 128 and limits[19] <= 8
    assert limits[-1] == 4  # min_inflight
    assert shedder.baseline == FAST  # slowness is not taken for the new normal


def test_latency_within_the_tolerance_keeps_the_limit() -> None:
    clock = Clock()
    shedder = at_max(clock)
    for _ in range(10):
        assert run_window(shedder, clock, FAST * 1.5) == 256


def test_the_limit_grows_back_to_max_once_latency_returns() -> None:
    clock = Clock()
    shedder = at_max(clock)
    for _ in range(30):
        run_window(shedder, clock, SLOW)
    assert shedder.limit == 4
    limits = [run_window(shedder, clock, FAST) for _ in range(60)]
    grown = limits[: limits.index(256) + 1]
    assert grown == sorted(set(grown))  # strictly up, by sqrt(limit) / 2 a window
    assert len(grown) <= 60 and limits[-1] == 256


def test_a_lasting_slowdown_becomes_the_baseline_within_two_periods() -> None:
    clock = Clock()
    shedder = at_max(clock)
    while clock.now < 1000.0 + 2 * 30.0 + 1:  # the period that saw FAST has passed
        run_window(shedder, clock, SLOW)
        clock.now += 1.0
    assert shedder.baseline == SLOW
    for _ in range(60):
        run_window(shedder, clock, SLOW)
    assert shedder.limit == 256


def test_a_faster_upstream_lowers_the_baseline_at_once() -> None:
    clock = Clock()
    shedder = at_max(clock)
    run_window(shedder, clock, FAST / 2)
    assert shedder.baseline == FAST / 2


def test_failures_cut_the_limit_by_a_quarter_a_window() -> None:
    clock = Clock()
    shedder = at_max(clock)
    limits = [run_window(shedder, clock, 0.001, failed=256) for _ in range(3)]
    assert limits == [192, 144, 108]
    assert shedder.baseline == FAST  # fast failures are no latency samples


def test_a_tenth_failed_cuts_fewer_does_not() -> None:
    clock = Clock()
    shedder = at_max(clock, max_inflight=16)  # windows of 16 calls
    assert run_window(shedder, clock, FAST, failed=1) == 16
    assert run_window(shedder, clock, FAST, failed=2) == 12


def test_the_limit_never_leaves_min_and_max() -> None:
    clock = Clock()
    shedder = at_max(clock, min_inflight=10, max_inflight=20)
    for _ in range(20):
        assert run_window(shedder, clock, 0.001, failed=16) >= 10
    assert shedder.limit == 10


def test_not_adaptive_keeps_max_whatever_the_latency() -> None:
    clock = Clock()
    shedder = make(clock, max_inflight=32, adaptive=False)
    for _ in range(10):
        assert run_window(shedder, clock, 10.0, failed=16) == 32


# --- priorities -----------------------------------------------------------------------


def test_at_a_saturated_limit_low_is_refused_first_and_critical_last() -> None:
    shedder = make(max_inflight=10, adaptive=False)
    admitted = {}
    for priority in (LOW, NORMAL, HIGH, CRITICAL):
        admitted[PRIORITIES[priority]] = 0
        while shedder.admit(priority):
            admitted[PRIORITIES[priority]] += 1
    # each priority fills the calls in flight up to its share: 50%, 80%, 90%, 100% of 10
    assert admitted == {"low": 5, "normal": 3, "high": 1, "critical": 1}
    assert shedder.inflight == 10
    shedder.release(0.01)
    assert not shedder.admit(LOW) and not shedder.admit(NORMAL) and not shedder.admit(HIGH)
    assert shedder.admit(CRITICAL)


def test_the_shares_follow_the_limit_down() -> None:
    clock = Clock()
    shedder = at_max(clock)
    for _ in range(30):
        run_window(shedder, clock, SLOW)
    assert shedder.limit == 4
    assert [shedder.admit(LOW) for _ in range(3)] == [True, True, False]  # 50% of 4
    assert shedder.admit(NORMAL) and not shedder.admit(NORMAL)  # 80% of 4 is 3
    assert not shedder.admit(HIGH)  # 90% of 4 is 3 too
    assert shedder.admit(CRITICAL) and not shedder.admit(CRITICAL)


def test_every_priority_keeps_one_slot_at_a_limit_of_one() -> None:
    shedder = make(max_inflight=1, min_inflight=1, adaptive=False)
    assert shedder.admit(LOW) and not shedder.admit(CRITICAL)


def test_priority_for_a_method_a_path_the_star_and_the_default() -> None:
    table = compile_priorities(LoadShedding(priorities={
        "GET /users/{id}": "low", "/users/{id}": "high", "/health": "critical",
        "POST /login": "critical", "*": "low",
    }))
    assert priority_for(table, "GET", "/users/{id}") == LOW
    assert priority_for(table, "DELETE", "/users/{id}") == HIGH
    assert priority_for(table, "HEAD", "/health") == CRITICAL
    assert priority_for(table, "POST", "/login") == CRITICAL
    assert priority_for(table, "GET", "/login") == LOW  # the "*"
    assert priority_for(table, "GET", "/elsewhere") == LOW
    plain = compile_priorities(LoadShedding(priorities={"PUT /a": "high"}))
    assert priority_for(plain, "GET", "/a") == NORMAL
    assert priority_for(plain, "GET", "/b") == NORMAL


# --- config ---------------------------------------------------------------------------


def api_with(load_shedding: dict) -> dict:
    return {"apis": [{"upstream": {"url": "http://127.0.0.1:9000"},
                      "load_shedding": copy.deepcopy(load_shedding)}]}


def one_error(load_shedding: dict) -> dict:
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(api_with(load_shedding))
    (error,) = caught.value.errors()
    return error


def test_config_defaults_and_absent_means_no_shedding() -> None:
    config = Config.model_validate(api_with({}))
    shedding = config.apis[0].load_shedding
    assert shedding == LoadShedding()
    assert (shedding.max_inflight, shedding.min_inflight, shedding.adaptive,
            shedding.tolerance, shedding.retry_after, shedding.priorities) == (
        256, 4, True, 0.5, 1.0, {})
    bare = Config.model_validate({"apis": [{"upstream": {"url": "http://127.0.0.1:9000"}}]})
    assert bare.apis[0].load_shedding is None


@pytest.mark.parametrize("key", ["get /users", "users", "GET  /users", "GET /users?id=1",
                                 "GET *", "/a b", ""])
def test_a_bad_endpoint_key_is_named_with_the_forms_expected(key: str) -> None:
    error = one_error({"priorities": {key: "low", "GET /fine": "high"}})
    assert error["loc"] == ("apis", 0, "load_shedding", "priorities")
    assert repr(key) in error["msg"] and "fine" not in error["msg"]
    assert '"METHOD /path/template"' in error["msg"] and '"*"' in error["msg"]


def test_a_bad_priority_names_the_four() -> None:
    error = one_error({"priorities": {"GET /a": "urgent"}})
    assert error["loc"][-1] == "GET /a"
    assert "'low', 'normal', 'high' or 'critical'" in error["msg"]


def test_min_above_max_says_both() -> None:
    error = one_error({"min_inflight": 8, "max_inflight": 4})
    assert "min_inflight (8) must be <= max_inflight (4)" in error["msg"]
    assert LoadShedding(max_inflight=2).min_inflight == 2  # the default yields to a small max
    assert one_error({"max_inflight": 0})["loc"][-1] == "max_inflight"
    assert one_error({"burst": 3})["type"] == "extra_forbidden"


def test_the_loader_points_at_the_key_and_its_line(tmp_path) -> None:
    path = tmp_path / "apiward.yaml"
    path.write_text("apis:\n  - upstream: {url: 'http://127.0.0.1:9000'}\n"
                    "    load_shedding:\n      priorities:\n        'post /login': critical\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "apis[0].load_shedding.priorities (" in text
    assert "'post /login' is not an endpoint" in text


# --- a property -----------------------------------------------------------------------

steps = st.lists(st.one_of(
    st.tuples(st.just("admit"), st.integers(0, 3)),
    st.tuples(st.just("release"), st.floats(0.0, 5.0), st.booleans()),
    st.tuples(st.just("tick"), st.floats(0.0, 100.0)),
), max_size=400)


@settings(max_examples=200, deadline=None)
@given(steps=steps, adaptive=st.booleans(), maximum=st.integers(1, 40),
       minimum=st.integers(1, 40))
def test_inflight_is_never_negative_nor_raised_past_the_limit(steps, adaptive, maximum,
                                                               minimum) -> None:
    clock = Clock()
    shedder = make(clock, adaptive=adaptive, max_inflight=max(maximum, minimum),
                   min_inflight=min(maximum, minimum))
    outstanding = 0
    for step in steps:
        if step[0] == "admit":
            before = shedder.inflight
            if shedder.admit(step[1]):
                outstanding += 1
                assert before < shedder.limit and shedder.inflight <= shedder.limit
            else:
                assert shedder.inflight == before
        elif step[0] == "release":
            shedder.release(step[1], failed=step[2])  # also with nothing admitted
            outstanding = max(0, outstanding - 1)
        else:
            clock.now += step[1]
        assert 0 <= shedder.inflight == outstanding
        assert shedder._min <= shedder.limit <= shedder._max
        if not adaptive:
            assert shedder.inflight <= shedder.limit
