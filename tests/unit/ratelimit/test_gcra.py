"""GCRA maths with explicit times: no clock, no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.ratelimit.gcra import Rate, admit, charge, parse_rate, seconds


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [("100/s", 100, 1.0), ("5/min", 5, 60.0), ("10000/day", 10000, 86400.0),
     ("30/10s", 30, 10.0), ("2 / hour", 2, 3600.0), ("7/5minutes", 7, 300.0)],
)
def test_parse_rate_forms(text: str, count: int, period: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period, rate.burst) == (count, period, count)


@pytest.mark.parametrize("text", ["100", "0/s", "5/fortnight", "/s", "ten/s", "5/0s"])
def test_parse_rate_refuses_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def run(tats: list[float], rates: tuple[Rate, ...], now: float, cost: float = 1):
    decision, writes = admit(tats, rates, now, cost)
    if writes is not None:
        tats[:] = [tat for tat, _ in writes]
    return decision


def test_burst_then_one_per_interval() -> None:
    rate = parse_rate("10/s")
    tats = [0.0]
    assert all(run(tats, (rate,), 100.0).allowed for _ in range(10))
    refused = run(tats, (rate,), 100.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    assert tats == [pytest.approx(101.0)]  # the refusal wrote nothing
    assert not run(tats, (rate,), 100.09).allowed
    allowed = run(tats, (rate,), 100.1)
    assert allowed.allowed and allowed.remaining == 0


def test_remaining_and_reset_count_down() -> None:
    rate = parse_rate("5/min")
    tats = [0.0]
    first = run(tats, (rate,), 0.0)
    assert (first.remaining, first.reset) == (4, pytest.approx(12.0))
    second = run(tats, (rate,), 0.0)
    assert (second.remaining, second.reset) == (3, pytest.approx(24.0))


def test_all_rates_must_allow_and_a_refusal_writes_none() -> None:
    rates = (parse_rate("2/s"), parse_rate("3/min"))
    tats = [0.0, 0.0]
    assert run(tats, rates, 0.0).allowed
    assert run(tats, rates, 0.0).allowed
    assert not run(tats, rates, 0.0).allowed  # the per-second limit
    before = list(tats)
    assert run(tats, rates, 1.0).allowed  # third call of the minute
    refused = run(tats, rates, 2.0)  # per-second fine, per-minute spent
    assert not refused.allowed and refused.tightest == 1
    assert refused.retry_after == pytest.approx(20.0 - 2.0 + 0.0, abs=1.0)
    assert tats != before


def test_cost_counts_several_calls() -> None:
    rate = parse_rate("10/s")
    tats = [0.0]
    assert run(tats, (rate,), 0.0, cost=7).remaining == 3
    assert not run(tats, (rate,), 0.0, cost=4).allowed
    assert run(tats, (rate,), 0.0, cost=3).allowed


def test_charge_counts_regardless_and_refund_banks_nothing() -> None:
    rate = parse_rate("1/s")
    (tat, _), = charge([0.0], (rate,), 10.0, 5)
    assert tat == 15.0  # over the limit: the next calls wait it out
    (tat, _), = charge([15.0], (rate,), 10.0, -20)
    assert tat == 10.0  # a refund never goes below now


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 50), period=st.sampled_from([1.0, 10.0, 60.0]),
       burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300))
def test_no_window_admits_more_than_burst_plus_rate(count: int, period: float, burst: int,
                                                    gaps: list[float]) -> None:
    rate = Rate(count, period, burst)
    tats = [0.0]
    now = 1000.0
    admitted = []
    for gap in gaps:
        now += gap
        if run(tats, (rate,), now).allowed:
            admitted.append(now)
    for i, start in enumerate(admitted):  # any window [start, start + w]
        for w in (period / 4, period):
            inside = sum(1 for t in admitted[i:] if t <= start + w)
            assert inside <= burst + w / rate.interval + 1e-6


def test_seconds_round_up() -> None:
    assert (seconds(0), seconds(0.01), seconds(1.0), seconds(1.2)) == (0, 1, 1, 2)
