"""Load shedding in the real gateway: a cap on calls in flight to a slow upstream, 503
with Retry-After at once beyond it, and priorities that shed critical endpoints last."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import CountingUpstream, api, gateway_config, start_gateway, wait_until

CAP = 10  # normal calls may fill 80% of it: 8


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[GatewayProcess]:
    shedding = {"max_inflight": CAP, "adaptive": False, "retry_after": "2s",
                "priorities": {"/status/204": "critical"}}  # no spec: a literal path
    config = gateway_config(api(upstream.url, load_shedding=shedding))
    with start_gateway(config, Path(tmp_path_factory.mktemp("shedding"))) as gw:
        yield gw


def test_calls_beyond_the_cap_are_refused_at_once_and_critical_ones_last(
        gateway: GatewayProcess, upstream: CountingUpstream) -> None:
    slow = [p for p in upstream.paths() if p.startswith("/slow")]
    with ThreadPoolExecutor(8) as pool:
        busy = [pool.submit(httpx.get, f"{gateway.url}/slow?s=2&i={i}", timeout=10)
                for i in range(8)]
        wait_until(lambda: len([p for p in upstream.paths() if p.startswith("/slow")])
                   >= len(slow) + 8, message="8 calls in flight upstream")
        started = time.monotonic()
        shed = httpx.get(f"{gateway.url}/echo/one-more", timeout=10)
        elapsed = time.monotonic() - started
        assert shed.status_code == 503 and elapsed < 1.0  # refused at once, not queued
        assert shed.headers["Retry-After"] == "2"
        assert shed.headers["content-type"] == "application/problem+json"
        body = shed.json()
        assert (body["check"], body["type"]) == ("shedding", "urn:apiward:problem:load_shed")
        assert httpx.get(f"{gateway.url}/status/204", timeout=10).status_code == 204
        assert [f.result().status_code for f in busy] == [200] * 8
    assert httpx.get(f"{gateway.url}/echo/after", timeout=10).status_code == 200  # freed
