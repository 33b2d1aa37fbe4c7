"""Rate limits in the real gateway: 429 answers and their headers, per-client keys (told
apart by real source addresses on 127/8), limits shared by worker processes, log mode,
costs decided by the upstream's status, and bans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    CountingUpstream,
    api,
    gateway_config,
    read_events,
    start_gateway,
    wait_until,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


def client(gateway: GatewayProcess, source: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(base_url=gateway.url, timeout=5.0,
                        transport=httpx.HTTPTransport(local_address=source))


def limited(upstream: CountingUpstream, rules: list[dict[str, Any]], **extra: Any) -> dict:
    return api(upstream.url, checks={"ratelimit": {"rules": rules, **extra}})


@pytest.fixture(scope="module")
def gateway(upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("ratelimit")
    events = directory / "events.jsonl"
    rules = [
        {"name": "per-ip", "key": "ip", "match": "/echo/ip", "limits": ["3/min"]},
        {"name": "logins", "key": "ip", "match": "/status/{code}", "limits": ["2/min"],
         "count_status": [401]},
    ]
    config = gateway_config(limited(upstream, rules, ban={"after": 3, "within": "1m",
                                                          "duration": "1h"}),
                            events_file=events)
    with start_gateway(config, directory) as gw:
        yield gw, events


def test_over_the_limit_is_429_problem_with_rate_limit_headers(
        gateway: tuple[GatewayProcess, Path], upstream: CountingUpstream) -> None:
    gw, _ = gateway
    with client(gw, "127.0.0.2") as http:
        answers = [http.get("/echo/ip") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"per-ip";q=3;w=60'
    assert answers[0].headers["RateLimit"] == '"per-ip";r=2;t=20'
    assert answers[2].headers["RateLimit"] == '"per-ip";r=0;t=60'
    refused = answers[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["RateLimit"] == '"per-ip";r=0;t=20'
    body = refused.json()
    assert (body["status"], body["check"]) == (429, "ratelimit")
    assert body["type"].endswith("rate_limited")
    with client(gw, "127.0.0.3") as http:  # another address has its own quota
        assert http.get("/echo/ip").status_code == 200


def test_refused_calls_do_not_count_and_never_reach_the_upstream(
        gateway: tuple[GatewayProcess, Path], upstream: CountingUpstream) -> None:
    gw, _ = gateway
    before = len(upstream.paths())
    with client(gw, "127.0.0.4") as http:
        codes = [http.get("/echo/ip").status_code for _ in range(6)]
    assert codes == [200] * 3 + [429] * 3
    assert len(upstream.paths()) - before == 3


def test_only_answers_with_a_counted_status_spend_quota_then_a_ban(
        gateway: tuple[GatewayProcess, Path]) -> None:
    gw, events = gateway
    with client(gw, "127.0.0.5") as http:
        assert all(http.get("/status/200").status_code == 200 for _ in range(5))
        assert [http.get("/status/401").status_code for _ in range(2)] == [401, 401]
        third = http.get("/status/401")
        assert third.status_code == 429  # two failures a minute: the third is refused
        assert [http.get("/status/200").status_code for _ in range(2)] == [429, 429]
        banned = http.get("/status/200")  # refused three times: banned for an hour
        assert banned.status_code == 429 and banned.json()["type"].endswith("banned")
        assert int(banned.headers["Retry-After"]) > 3500
        assert http.get("/echo/ip").status_code == 429  # banned from every rule by ip
    with client(gw, "127.0.0.6") as http:
        assert http.get("/status/200").status_code == 200
    found = wait_until(lambda: [e for e in read_events(events)
                                if e["client_ip"] == "127.0.0.5" and e["reason"] == "banned"])
    assert found[0]["check"] == "ratelimit" and found[0]["action"] == "block"


def test_workers_share_one_limit_for_the_node(upstream: CountingUpstream,
                                             tmp_path: Path) -> None:
    config = gateway_config(limited(upstream, [{"key": "ip", "limits": ["5/min"]}]),
                            workers=2)
    with start_gateway(config, tmp_path) as gw:
        codes = []
        for _ in range(20):  # a new connection each: the kernel spreads them over workers
            with client(gw, "127.0.0.7") as http:
                codes.append(http.get("/echo/w").status_code)
    assert codes.count(200) == 5 and codes.count(429) == 15


def test_log_mode_lets_calls_through_and_records_who_would_be_limited(
        upstream: CountingUpstream, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = gateway_config(limited(upstream, [{"key": "ip", "limits": ["1/min"]}],
                                    mode="log"), events_file=events)
    with start_gateway(config, tmp_path) as gw, client(gw, "127.0.0.8") as http:
        codes = [http.get("/echo/log").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    found = wait_until(lambda: [e for e in read_events(events)
                                if e["action"] == "would_block"] or None)
    assert {(e["client_ip"], e["check"], e["reason"]) for e in found} == {
        ("127.0.0.8", "ratelimit", "rate_limited")}


def test_block_and_allow_lists_from_apiward_block(upstream: CountingUpstream,
                                                  tmp_path: Path) -> None:
    import subprocess
    import sys

    store = tmp_path / "lists.db"

    def block(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "apiward", "block", *args,
                               "--store", str(store)], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    block("add", "127.0.0.10", "--allow")  # exists before the gateway starts
    config = gateway_config(limited(upstream, [{"key": "ip", "limits": ["1/min"]}],
                                    lists=str(store)))
    with start_gateway(config, tmp_path) as gw:
        with client(gw, "127.0.0.10") as http:  # allowed: never limited
            assert [http.get("/echo/a").status_code for _ in range(3)] == [200] * 3
        block("add", "127.0.0.9", "--reason", "test")
        with client(gw, "127.0.0.9") as http:
            def refused() -> Any:
                answer = http.get("/echo/b")
                return answer if answer.status_code == 403 else None
            answer = wait_until(refused, timeout=15, message="the block to apply")
            assert answer.json()["type"].endswith("blocked")
        assert "127.0.0.9" in block("list")
        block("remove", "127.0.0.9")
