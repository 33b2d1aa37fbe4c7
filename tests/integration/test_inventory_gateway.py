"""The inventory recorded by the real gateway: calls to spec operations and to endpoints
the spec does not know (shadow), learned templates, and `apiward inventory` reading the
store after the gateway saved it at shutdown."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from support.proxy_fixtures import CountingUpstream, api, gateway_config, start_gateway

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/echo/items/{id}": {"get": {"parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/echo/health": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


def inventory(config: Path, *args: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "apiward", "inventory", "--config",
                           str(config), "--json", *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_calls_are_recorded_and_shadow_endpoints_learned(upstream: CountingUpstream,
                                                         tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    config = gateway_config(api(upstream.url, spec=str(spec),
                                checks={"route": {"mode": "log"}}),
                            inventory={"store": "inventory.db"})
    with start_gateway(config, tmp_path) as gw, httpx.Client(base_url=gw.url) as http:
        for i in range(30):
            assert http.get(f"/echo/items/{i}").status_code == 200
        for i in range(25):  # the spec does not know these: a shadow endpoint
            assert http.get(f"/echo/users/{1000 + i}",
                            headers={"Authorization": "Bearer x"}).status_code == 200
        assert http.get("/echo/items/not-a-number").status_code == 400
    assert (tmp_path / "inventory.db").exists()  # saved at shutdown, next to the config
    rows = {(r["method"], r["template"]): r for r in inventory(gw.path, "--zombie-after", "0")}
    items = rows[("GET", "/echo/items/{id}")]
    assert (items["source"], items["calls"]) == ("spec", 31)
    assert items["client_error_rate"] == pytest.approx(1 / 31)
    assert items["unauthenticated_share"] == 1.0
    assert items["p50_ms"] is not None and items["p50_ms"] > 0
    shadow = rows[("GET", "/echo/users/{user_id}")]
    assert (shadow["source"], shadow["calls"]) == ("discovered", 25)
    assert "shadow" in shadow["flags"]
    assert shadow["unauthenticated_share"] == 0.0
    health = rows[("GET", "/echo/health")]
    assert health["calls"] == 0 and "zombie" in health["flags"]


def test_a_config_without_inventory_says_what_to_add(tmp_path: Path) -> None:
    path = tmp_path / "apiward.yaml"
    path.write_text(yaml.safe_dump({"apis": [{"upstream": {"url": "http://127.0.0.1:9"}}]}))
    done = subprocess.run([sys.executable, "-m", "apiward", "inventory", "--config",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "add an `inventory:` section" in done.stderr
