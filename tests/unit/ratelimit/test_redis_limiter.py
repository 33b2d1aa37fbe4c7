"""RedisLimiter against a real redis-server: the same decisions as LocalLimiter, shared by
nodes, and what it does while Redis is away. Times are passed in (``time_source="caller"``)
or are slow enough that the test's own milliseconds do not count; probes are timed by a
clock the test moves; no sleeps."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from apiward.ratelimit.gcra import Decision, Rate
from apiward.ratelimit.local import BanRule, LocalLimiter
from apiward.ratelimit.redis_limiter import UNAVAILABLE, RedisLimiter
from apiward.ratelimit.table import SharedTable

_serial = itertools.count()


class Clock:
    """The limiter's probe and heartbeat clock, moved by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def slots(key: str, count: int = 1) -> tuple[str, ...]:
    """Slot names as the ratelimit check makes them."""
    return tuple(f"rl|api|rule|{i}|{key}" for i in range(count))


def fresh_key() -> str:
    return f"ip:198.51.100.{next(_serial)}"


def local() -> LocalLimiter:
    return LocalLimiter(SharedTable(1 << 10, shared=False))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def run(loop: asyncio.AbstractEventLoop, coroutine):
    return loop.run_until_complete(coroutine)


async def raw_keys(url: str, pattern: str = "apiward:*") -> dict[bytes, int]:
    """Every key matching ``pattern`` and its PTTL."""
    client = aioredis.from_url(url)
    try:
        return {key: await client.pttl(key) async for key in client.scan_iter(pattern)}
    finally:
        await client.aclose()


# -- the same decisions as LocalLimiter

rate_st = st.builds(Rate, count=st.integers(1, 20),
                    period=st.sampled_from([0.25, 1.0, 7.5, 60.0, 3600.0]),
                    burst=st.one_of(st.integers(1, 4), st.integers(1, 40)))
step_st = st.tuples(
    st.sampled_from(["admit", "admit", "admit", "peek", "charge"]),
    st.one_of(st.just(0.0), st.floats(0.0, 2.0), st.floats(0.0, 100.0)),  # time step
    st.sampled_from([1, 1, 2, 5, 0.5, 0, -1, -3]),  # cost (charge gives back when < 0)
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rates=st.lists(rate_st, min_size=1, max_size=3).map(tuple),
       ban=st.one_of(st.none(), st.builds(BanRule, after=st.integers(1, 4),
                                          within=st.sampled_from([0.5, 2.0, 5.0, 30.0]),
                                          duration=st.sampled_from([0.5, 3.0, 10.0, 90.0]))),
       steps=st.lists(step_st, min_size=1, max_size=40),
       start=st.floats(0.0, 2e9))
def test_decisions_equal_the_local_limiters(loop, redis_url, rates, ban, steps,
                                            start) -> None:
    key = fresh_key()
    names = slots(key, len(rates))
    mine = local()

    async def scenario() -> None:
        remote = RedisLimiter(redis_url, time_source="caller", fallback=local())
        try:
            now = start
            for op, step, cost in steps:
                now += step
                if op == "charge":
                    await remote.charge(names, rates, now, cost)
                    mine.charge(names, rates, now, cost)
                    continue
                cost = abs(cost)
                if op == "peek":
                    got = await remote.peek(names, rates, now, cost)
                    want = mine.peek(names, rates, now, cost)
                else:
                    got = await remote.admit(key, names, rates, now, cost, ban)
                    want = mine.admit(key, names, rates, now, cost, ban)
                assert got == want, (op, now, cost)
            assert remote.available  # every decision above was Redis's
        finally:
            await remote.close()

    run(loop, scenario())


def test_all_or_nothing_across_rates(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key, 2)
    rates = (Rate(2, 1.0, 2), Rate(3, 60.0, 3))

    async def scenario() -> None:
        remote = RedisLimiter(redis_url, time_source="caller")
        try:
            assert (await remote.admit(key, names, rates, 100.0, 1, None)).allowed
            assert (await remote.admit(key, names, rates, 100.0, 1, None)).allowed
            refused = await remote.admit(key, names, rates, 100.0, 1, None)
            assert (refused.allowed, refused.tightest, refused.retry_after) == (False, 0, 0.5)
            # The refusal by the first rate took nothing from the second: its third call
            # is still there a second later, and only then is it spent.
            third = await remote.admit(key, names, rates, 101.0, 1, None)
            assert (third.allowed, third.remaining, third.tightest) == (True, 0, 1)
            fourth = await remote.admit(key, names, rates, 102.0, 1, None)
            assert (fourth.allowed, fourth.tightest) == (False, 1)
        finally:
            await remote.close()

    run(loop, scenario())


# -- bans


def test_ban_after_refusals_and_its_expiry(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key)
    rates = (Rate(1, 60.0, 1),)
    ban = BanRule(after=3, within=10.0, duration=30.0)

    async def scenario() -> None:
        remote = RedisLimiter(redis_url, time_source="caller")
        try:
            assert (await remote.admit(key, names, rates, 0.0, 1, ban)).allowed
            for now in (1.0, 2.0):
                refused = await remote.admit(key, names, rates, now, 1, ban)
                assert not refused.allowed and not refused.banned
            refused = await remote.admit(key, names, rates, 3.0, 1, ban)  # the third: banned
            assert not refused.banned  # this one is refused by the rate...
            banned = await remote.admit(key, names, rates, 4.0, 1, ban)  # ...then the ban
            assert banned == Decision(False, 0, 0.0, 29.0, 0, True)
            ttls = await raw_keys(redis_url, f"*ban|{key}")
            assert len(ttls) == 1 and 29_000 < next(iter(ttls.values())) <= 31_000
            assert (await remote.admit(key, names, rates, 32.5, 1, ban)).retry_after == 0.5
            # Over: the rate decides again (its TAT is 60; the ban did not move it).
            after = await remote.admit(key, names, rates, 33.0, 1, ban)
            assert (after.allowed, after.banned, after.retry_after) == (False, False, 27.0)
            assert (await remote.admit(key, names, rates, 60.0, 1, ban)).allowed
            # A ban needs no rule to be read, and peek ignores it as LocalLimiter's does.
            assert (await remote.peek(names, rates, 61.0, 0)).allowed
        finally:
            await remote.close()

    run(loop, scenario())


def test_refusals_further_apart_than_within_are_forgotten(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key)
    rates = (Rate(1, 3600.0, 1),)
    ban = BanRule(after=3, within=10.0, duration=30.0)

    async def scenario() -> None:
        remote = RedisLimiter(redis_url, time_source="caller")
        try:
            assert (await remote.admit(key, names, rates, 0.0, 1, ban)).allowed
            for now in (1.0, 2.0, 12.5, 13.0):  # 2.0 -> 12.5: more than 10 s, forgotten
                assert not (await remote.admit(key, names, rates, now, 1, ban)).banned
            assert not (await remote.admit(key, names, rates, 13.5, 1, ban)).banned
            assert (await remote.admit(key, names, rates, 14.0, 1, ban)).banned
        finally:
            await remote.close()

    run(loop, scenario())


def test_ban_at_redis_time(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key)
    ban = BanRule(after=1, within=10.0, duration=300.0)

    async def scenario() -> None:
        remote = RedisLimiter(redis_url)
        try:
            rates = (Rate(1, 3600.0, 1),)
            assert (await remote.admit(key, names, rates, 0.0, 1, ban)).allowed
            assert not (await remote.admit(key, names, rates, 0.0, 1, ban)).banned
            banned = await remote.admit(key, names, rates, 0.0, 1, ban)
            assert banned.banned and 299.0 < banned.retry_after <= 300.0
        finally:
            await remote.close()

    run(loop, scenario())


# -- nodes


def test_two_nodes_share_one_limit_exactly_whatever_their_clocks(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key, 2)
    rates = (Rate(10, 3600.0, 10), Rate(1000, 86400.0, 1000))  # nothing comes back in a test

    async def scenario() -> None:
        # Redis's clock decides: node b's clock is 11 days ahead of a's, and gains nothing.
        a = RedisLimiter(redis_url, node_id="a")
        b = RedisLimiter(redis_url, node_id="b")
        try:
            seen = []
            for i in range(14):
                node, now = (a, 1.7e9) if i % 2 else (b, 1.7e9 + 1e6)
                decision = await node.admit(key, names, rates, now, 1, None)
                seen.append(decision.remaining if decision.allowed else None)
            assert seen == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, None, None, None, None]
        finally:
            await a.close()
            await b.close()

    run(loop, scenario())


def test_two_nodes_at_the_callers_clock(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key)
    rates = (Rate(5, 1.0, 5),)

    async def scenario() -> None:
        a = RedisLimiter(redis_url, node_id="a", time_source="caller")
        b = RedisLimiter(redis_url, node_id="b", time_source="caller")
        try:
            allowed = [(await node.admit(key, names, rates, 50.0, 1, None)).allowed
                       for node in (a, b) * 4]
            assert allowed == [True] * 5 + [False] * 3
            # 0.4 s later, two calls' worth came back, for whichever node asks.
            assert (await b.admit(key, names, rates, 50.4, 1, None)).allowed
            assert (await a.admit(key, names, rates, 50.4, 1, None)).allowed
            assert not (await b.admit(key, names, rates, 50.4, 1, None)).allowed
        finally:
            await a.close()
            await b.close()

    run(loop, scenario())


def test_heartbeats_count_live_nodes(loop, redis_url) -> None:
    clock = Clock(1000.0)

    async def scenario() -> None:
        a = RedisLimiter(redis_url, node_id="a", clock=clock)
        b = RedisLimiter(redis_url, node_id="b", clock=clock)
        try:
            assert a.nodes == 1
            await a.heartbeat()
            assert a.nodes == 1
            clock.now = 1010.0
            await b.heartbeat()
            await a.heartbeat()
            assert (a.nodes, b.nodes) == (2, 2)
            clock.now = 1024.0  # b's beat is 14 s old: still alive
            await a.heartbeat()
            assert a.nodes == 2
            clock.now = 1026.0  # 16 s: gone
            await a.heartbeat()
            assert a.nodes == 1
        finally:
            await a.close()
            await b.close()

    run(loop, scenario())


# -- while Redis is away


def test_outage_falls_back_to_this_nodes_share_and_recovers(loop, redis_server, redis_url,
                                                              caplog) -> None:
    caplog.set_level(logging.INFO, logger="apiward")
    clock = Clock(1000.0)
    key = fresh_key()
    names = slots(key)
    rates = (Rate(10, 60.0, 10),)
    url = redis_url.replace("redis://", "redis://:hunter2@")  # a password, to be redacted

    async def scenario() -> None:
        limiter = RedisLimiter(url, node_id="a", clock=clock, time_source="caller",
                               fallback=local())
        other = RedisLimiter(redis_url, node_id="b", clock=clock)
        try:
            await other.heartbeat()
            await limiter.heartbeat()
            assert limiter.nodes == 2
            assert (await limiter.admit(key, names, rates, 5.0, 1, None)).allowed
            assert limiter.available

            redis_server.stop()
            # The first call finds Redis gone; this one and the next decide at half the
            # rate on this node (10 per minute, 2 nodes: 5, burst 5).
            allowed = [(await limiter.admit(key, names, rates, 5.0, 1, None)).allowed
                       for _ in range(8)]
            assert allowed == [True] * 5 + [False] * 3
            assert not limiter.available
            assert limiter.nodes == 2  # kept while Redis is away
            assert (await limiter.peek(names, rates, 5.0, 1)).allowed is False
            await limiter.charge(names, rates, 5.0, -1)  # given back on this node
            assert (await limiter.admit(key, names, rates, 5.0, 1, None)).allowed
            clock.now += 1.0
            assert not (await limiter.admit(key, names, rates, 5.0, 1, None)).allowed  # probe

            redis_server.start()
            # Within the second after the last probe, still this node's share...
            assert not (await limiter.admit(key, names, rates, 5.0, 1, None)).allowed
            assert not limiter.available
            clock.now += 1.0
            # ...then the next call is Redis's again (a fresh, empty Redis here).
            back = await limiter.admit(key, names, rates, 5.0, 1, None)
            assert (back.allowed, back.remaining) == (True, 9)
            assert limiter.available
            assert len(await raw_keys(redis_url, f"*{names[0]}")) == 1
        finally:
            await limiter.close()
            await other.close()

    run(loop, scenario())
    ours = [r for r in caplog.records if r.name == "apiward" and "Redis" in r.getMessage()]
    assert [r.levelno for r in ours] == [logging.WARNING, logging.INFO]
    assert "hunter2" not in caplog.text and ":***@127.0.0.1" in ours[0].getMessage()
    assert "1/2 of each limit" in ours[0].getMessage()


def test_fail_closed_answers_unavailable(loop, redis_server, redis_url) -> None:
    clock = Clock()
    key = fresh_key()
    names = slots(key)
    rates = (Rate(10, 60.0, 10),)

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url, on_failure="fail_closed", clock=clock,
                               fallback=local())
        try:
            assert (await limiter.admit(key, names, rates, 0.0, 1, None)).allowed
            redis_server.stop()
            assert await limiter.admit(key, names, rates, 0.0, 1, None) is UNAVAILABLE
            assert await limiter.admit(key, names, rates, 0.0, 1, None) is UNAVAILABLE
            assert await limiter.peek(names, rates, 0.0, 1) is UNAVAILABLE
            await limiter.charge(names, rates, 0.0, 1)  # nowhere to count it: dropped
            redis_server.start()
            clock.now += 1.0
            decision = await limiter.admit(key, names, rates, 0.0, 1, None)
            assert decision is not UNAVAILABLE and decision.allowed
        finally:
            await limiter.close()

    run(loop, scenario())


def test_a_silent_redis_costs_one_timeout_a_second(loop) -> None:
    """A peer that accepts and never answers: the first call waits one timeout, the
    calls after it do not try again until a second has passed."""
    clock = Clock()
    connections = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read()  # until the client gives up
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", clock=clock, fallback=local(),
                               timeout=0.05)
        key = fresh_key()
        names = slots(key)
        rates = (Rate(100, 1.0, 100),)
        try:
            started = time.monotonic()
            assert (await limiter.admit(key, names, rates, 0.0, 1, None)).allowed
            first = time.monotonic() - started
            assert 0.04 < first < 0.5
            started = time.monotonic()
            for _ in range(50):
                assert (await limiter.admit(key, names, rates, 0.0, 1, None)).allowed
            assert time.monotonic() - started < 0.04  # no call waited for Redis
            assert len(connections) == 1
            clock.now += 1.0
            await limiter.admit(key, names, rates, 0.0, 1, None)  # the one probe
            await limiter.admit(key, names, rates, 0.0, 1, None)
            assert len(connections) == 2
        finally:
            await limiter.close()
            server.close()
            for writer in connections:
                writer.close()
            await server.wait_closed()

    run(loop, scenario())


# -- keys


@pytest.mark.parametrize("key", [
    "ip:203.0.113.7",
    "key:ak_live_1&ip:203.0.113.7",
    "hdr:x-tenant:{acme}",  # braces of the client's making
    "hdr:x-tenant:a|b|c",  # a '|' in the key itself
    "hdr:x-tenant:" + "x" * 300,  # long
    "hdr:x-tenant:|",  # nothing after the last '|'
])
def test_keys_of_one_decision_share_a_cluster_slot(loop, redis_url, key: str) -> None:
    names = slots(key, 3)
    rates = (Rate(1, 60.0, 1), Rate(5, 60.0, 5), Rate(100, 3600.0, 100))

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url, time_source="caller")
        try:
            assert (await limiter.admit(key, names, rates, 0.0, 1, BanRule(2, 60.0, 60.0))).allowed
            await limiter.admit(key, names, rates, 0.0, 1, BanRule(2, 60.0, 60.0))  # viol
            first = await raw_keys(redis_url)
            await limiter.admit(key, names, rates, 0.0, 1, BanRule(2, 60.0, 60.0))  # ban
            second = await raw_keys(redis_url)
        finally:
            await limiter.close()
        found = set(first) | set(second)
        assert len(found) == 5  # 3 TATs, the violations, the ban
        if len(key) < 90:  # a long one's are digests
            assert sum(b"}viol|" in k for k in found) == sum(b"}ban|" in k for k in found) == 1
        assert len({key_slot(k) for k in found}) == 1
        assert all(len(k) < 220 for k in found)
        # Everything expires: a TAT once it passed, the ban when it ends (plus the second
        # of slack at the caller's clock).
        assert all(0 < ttl <= 61_000 for ttl in second.values())

    run(loop, scenario())


def test_charge_and_peek_find_the_keys_admit_wrote(loop, redis_url) -> None:
    key = "hdr:tenant:" + "y" * 200
    names = slots(key, 2)
    rates = (Rate(2, 60.0, 2), Rate(10, 60.0, 10))

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url, time_source="caller")
        try:
            assert (await limiter.admit(key, names, rates, 0.0, 2, None)).allowed
            assert not (await limiter.peek(names, rates, 0.0, 1)).allowed
            await limiter.charge(names, rates, 0.0, -2)  # given back: nothing left to keep
            assert await raw_keys(redis_url) == {}
            assert (await limiter.peek(names, rates, 0.0, 2)).remaining == 0
        finally:
            await limiter.close()

    run(loop, scenario())


def test_slot_names_must_end_with_the_key(loop, redis_url) -> None:
    async def scenario() -> None:
        limiter = RedisLimiter(redis_url)
        try:
            with pytest.raises(ValueError, match="end with"):
                await limiter.admit("ip:1", ("rl|a|r|0|ip:2",), (Rate(1, 1.0, 1),), 0.0, 1,
                                    None)
        finally:
            await limiter.close()

    run(loop, scenario())


def test_prefix_must_not_hold_braces() -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisLimiter("redis://127.0.0.1:1/0", prefix="{x}:")


def test_the_url_takes_the_stores_options(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key)

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url + "?prefix=elsewhere:&timeout=0.2&max_connections=4")
        try:
            assert (limiter.prefix, limiter.timeout, limiter.max_connections) == (
                "elsewhere:", 0.2, 4)
            assert (await limiter.admit(key, names, (Rate(1, 60.0, 1),), 0.0, 1, None)).allowed
            assert [k.startswith(b"elsewhere:{") for k in await raw_keys(redis_url, "*")] == [
                True]
        finally:
            await limiter.close()

    run(loop, scenario())
    assert RedisLimiter(redis_url + "?prefix=a:", prefix="b:").prefix == "b:"
    with pytest.raises(ValueError, match="unknown option 'db'"):
        RedisLimiter(redis_url + "?db=1")
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisLimiter("memcached://127.0.0.1:11211")


def test_more_calls_than_connections_wait_their_turn(loop, redis_url) -> None:
    key = fresh_key()
    names = slots(key)
    rates = (Rate(100, 60.0, 100),)

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url, max_connections=2, timeout=1.0)
        try:
            decisions = await asyncio.gather(*(
                limiter.admit(key, names, rates, 0.0, 1, None) for _ in range(120)))
            assert sum(d.allowed for d in decisions) == 100  # every one decided by Redis
            assert limiter.available
            clients = aioredis.from_url(redis_url)
            try:
                listed = await clients.client_list()
            finally:
                await clients.aclose()
            assert len(listed) <= 3  # the two of the limiter, and the one asking
        finally:
            await limiter.close()

    run(loop, scenario())


def test_a_redis_cluster(loop, redis_cluster_url) -> None:
    """Every key of one decision in one slot: the script runs on a cluster (no CROSSSLOT)
    for clients whose keys live on different nodes."""
    ban = BanRule(after=1, within=60.0, duration=60.0)
    rates = (Rate(1, 60.0, 1), Rate(10, 3600.0, 10))

    async def scenario() -> None:
        limiter = RedisLimiter(redis_cluster_url, time_source="caller")
        try:
            for i in range(12):
                key = f"key:ak_{i}&ip:203.0.113.{i}"
                names = slots(key, 2)
                assert (await limiter.admit(key, names, rates, 0.0, 1, ban)).allowed
                assert not (await limiter.peek(names, rates, 0.0, 1)).allowed
                assert not (await limiter.admit(key, names, rates, 1.0, 1, ban)).banned
                assert (await limiter.admit(key, names, rates, 2.0, 1, ban)).banned
                await limiter.charge(names, rates, 2.0, -1)
                assert (await limiter.peek(names, rates, 2.0, 1)).allowed
            await limiter.heartbeat()
            assert limiter.nodes == 1 and limiter.available
        finally:
            await limiter.close()

    run(loop, scenario())
