"""The upstream pool's bookkeeping, with stand-in connections (no sockets needed)."""

from __future__ import annotations

import asyncio

from apiward.server.pool import UpstreamPool


class StandIn:
    def __init__(self) -> None:
        self.usable = True
        self.counted = True
        self.closed = False
        self.idle_since = 0.0

    def close(self) -> None:
        self.closed = True
        self.usable = False


def make_pool(**kwargs: float) -> UpstreamPool:
    options = {"max_idle": 4, "max_total": 1, "idle_timeout": 30.0, "connect_timeout": 1.0}
    options.update(kwargs)
    return UpstreamPool("127.0.0.1", 9, **options)  # type: ignore[arg-type]


def test_a_waiting_call_gets_the_released_connection_before_a_newcomer() -> None:
    async def scenario() -> None:
        pool = make_pool()
        conn = StandIn()
        pool.total = 1  # the one allowed connection is busy
        waiting = asyncio.create_task(pool.connect())
        await asyncio.sleep(0)  # let it queue
        assert pool.take_idle() is None
        pool.release(conn)  # type: ignore[arg-type]
        assert pool.take_idle() is None  # the newcomer does not jump the queue
        assert await asyncio.wait_for(waiting, 1) is conn

    asyncio.run(scenario())


def test_release_keeps_at_most_max_idle_and_expiry_closes_old_ones() -> None:
    pool = make_pool(max_idle=1, max_total=10)
    first, second = StandIn(), StandIn()
    pool.total = 2
    pool.release(first)  # type: ignore[arg-type]
    pool.release(second)  # type: ignore[arg-type]
    assert pool.idle == [first] and second.closed
    pool.expire(now=100.0)  # first went idle at clock 0.0, older than idle_timeout
    assert pool.idle == [] and first.closed


def test_waiting_beyond_connect_timeout_is_a_504() -> None:
    async def scenario() -> None:
        pool = make_pool(connect_timeout=0.05)
        pool.total = 1
        try:
            await pool.connect()
        except Exception as error:  # UpstreamUnavailable
            assert getattr(error, "status", None) == 504
        else:
            raise AssertionError("expected the pool to give up")

    asyncio.run(scenario())
