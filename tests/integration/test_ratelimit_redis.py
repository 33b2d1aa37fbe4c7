"""Cluster-wide limits through a real redis-server: two gateway processes share one limit;
Redis killed in the middle of traffic gives the configured fail mode (local limits at
limit / nodes, or 503), logged once, and the gateways go back to Redis by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import CountingUpstream, api, gateway_config, start_gateway, wait_until
from support.redis_server import RedisServer
from support.wire_fixtures import RawClient

LIMIT = 6  # per minute, burst 6: nothing comes back during a test


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@contextmanager
def gateways(upstream: CountingUpstream, url: str, tmp_path: Path, count: int,
             on_failure: str = "fail_open", **extra: Any) -> Iterator[list[GatewayProcess]]:
    checks = {"ratelimit": {"store": url, "on_store_failure": on_failure,
                            "rules": [{"key": "ip", "limits": [f"{LIMIT}/min"]}]}}
    with ExitStack() as stack:
        yield [stack.enter_context(start_gateway(
            gateway_config(api(upstream.url, checks=checks), **extra), tmp_path / f"gw{i}"))
            for i in range(count)]


def codes(gateway: GatewayProcess, source: str, n: int) -> list[int]:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=gateway.url, transport=transport, timeout=5) as http:
        return [http.get("/echo/r").status_code for _ in range(n)]


def heartbeats(server: RedisServer) -> list[float]:
    """The nodes' last heartbeat times (a sorted set: member, score, member, score …)."""
    reply = server.command("ZRANGE", "apiward:nodes", "0", "-1", "WITHSCORES").decode()
    items = [line for line in reply.split("\r\n") if line and line[0] not in "*$"]
    return [float(score) for score in items[1::2]]


def both_count_two(server: RedisServer) -> None:
    """Wait until each node has sent a heartbeat after both were registered: then each
    has counted two nodes."""
    registered = wait_until(lambda: len(heartbeats(server)) == 2 and max(heartbeats(server)),
                            message="both nodes registered")
    wait_until(lambda: min(heartbeats(server)) > registered, timeout=15,
               message="a heartbeat from each node since")


@pytest.fixture
def pair(upstream: CountingUpstream, redis_url: str, redis_server: RedisServer,
         tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    try:
        with gateways(upstream, redis_url, tmp_path, 2) as pair:
            yield pair
    finally:
        redis_server.start()  # a test that stopped it leaves it running for the next


def test_two_gateways_share_one_limit(pair: list[GatewayProcess]) -> None:
    a, b = pair
    answers = []
    for _ in range(8):
        answers += codes(a, "127.0.1.1", 1) + codes(b, "127.0.1.1", 1)
    assert answers.count(200) == LIMIT and answers.count(429) == 16 - LIMIT
    assert codes(a, "127.0.1.2", 1) == [200]  # another client, its own quota


def test_redis_gone_mid_traffic_fails_open_at_a_share_then_recovers(
        pair: list[GatewayProcess], redis_server: RedisServer) -> None:
    a, b = pair
    both_count_two(redis_server)
    assert codes(a, "127.0.1.3", 2) == [200, 200]  # through Redis
    redis_server.stop()
    local = codes(a, "127.0.1.4", 10)
    assert local.count(200) == LIMIT // 2  # each node: its share of the limit
    assert codes(a, "127.0.1.3", 1) == [200]  # the local fallback starts its own count
    assert wait_until(lambda: "redis" in a.stderr.lower(), message="the outage logged")
    assert a.stderr.lower().count("unreachable") + a.stderr.lower().count("away") <= 2
    redis_server.start()

    for gateway, probe in ((a, "127.0.1.8"), (b, "127.0.1.9")):
        def decided_in_redis(gateway: GatewayProcess = gateway, probe: str = probe) -> bool:
            codes(gateway, probe, 1)
            return redis_server.command("KEYS", f"*{probe}*") != b"*0\r\n"
        assert wait_until(decided_in_redis, message="decisions back on Redis")
    rest = codes(a, "127.0.1.5", LIMIT) + codes(b, "127.0.1.5", LIMIT)
    assert rest.count(200) == LIMIT  # one shared count again


def test_fail_closed_refuses_with_503_while_redis_is_away(
        upstream: CountingUpstream, redis_url: str, redis_server: RedisServer,
        tmp_path: Path) -> None:
    try:
        with gateways(upstream, redis_url, tmp_path, 1, "fail_closed") as (gw,):
            assert codes(gw, "127.0.1.6", 1) == [200]
            redis_server.stop()
            with httpx.Client(base_url=gw.url, timeout=5) as http:
                answer = http.get("/echo/closed")
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["type"].endswith("rate_limit_unavailable")
            redis_server.start()
            assert wait_until(lambda: codes(gw, "127.0.1.7", 1) == [200],
                              message="back on Redis")
    finally:
        redis_server.start()


def test_decisions_awaited_from_redis_keep_bodies_and_pipelining_in_order(
        upstream: CountingUpstream, redis_url: str, tmp_path: Path) -> None:
    """A verdict still on its way from Redis holds the call, not the connection: a body
    sent meanwhile is forwarded whole once allowed, pipelined calls are answered in order,
    and a refused call with a body in flight is answered 429 and the connection closed."""

    with gateways(upstream, redis_url, tmp_path, 1) as (gw,):
        with RawClient(gw.port) as client:
            body = b'{"n": 1}'
            post = (b"POST /echo/p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b"
                    % (len(body), body))
            client.send(post + b"GET /echo/second HTTP/1.1\r\nHost: t\r\n\r\n" + post)
            first, second, third = (client.response() for _ in range(3))
            assert first.status == 200 and first.json()["body"] == body.decode()
            assert second.status == 200 and second.json()["path"] == "/echo/second"
            assert third.status == 200
        with RawClient(gw.port) as client:  # the quota (6) is spent after 3 more calls
            for _ in range(3):
                client.send(b"GET /echo/x HTTP/1.1\r\nHost: t\r\n\r\n")
                assert client.response().status == 200
            client.send(b"POST /echo/late HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
                        b"partial")
            refused = client.response()
            assert refused.status == 429
            assert client.closed_within(3.0)  # its body never finished: no next request
