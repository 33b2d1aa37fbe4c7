"""The security pipeline in the real gateway: methods and ipfilter checks, block and log
modes, problem+json answers, the event log, and routing of several APIs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    EVENT_KEYS,
    PROBLEM_KEYS,
    CountingUpstream,
    RawClient,
    gateway_config,
    read_events,
    start_gateway,
    wait_event,
)


@pytest.fixture(scope="module")
def upstream_a() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def upstream_b() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def setup(upstream_a: CountingUpstream, upstream_b: CountingUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("checks")
    events = directory / "events.jsonl"
    a, b = upstream_a.url, upstream_b.url
    config = gateway_config(
        {"name": "methods", "match": {"path_prefix": "/m/"}, "upstream": {"url": a},
         "checks": {"methods": {"allow": ["GET", "HEAD"]}}},
        {"name": "denied", "match": {"path_prefix": "/denied/"}, "upstream": {"url": a},
         "checks": {"ipfilter": {"deny": ["127.0.0.0/8"]}}},
        {"name": "allowlist", "match": {"path_prefix": "/allowlist/"}, "upstream": {"url": a},
         "checks": {"ipfilter": {"allow": ["10.0.0.0/8"]}}},
        {"name": "logged", "match": {"path_prefix": "/logged/"}, "upstream": {"url": a},
         "mode": "log",
         "checks": {"methods": {"allow": ["GET"]}, "ipfilter": {"deny": ["127.0.0.1/32"]}}},
        {"name": "mixed", "match": {"path_prefix": "/mixed/"}, "upstream": {"url": a},
         "checks": {"methods": {"allow": ["GET"], "mode": "log"}}},
        {"name": "host-a", "match": {"host": "a.example"}, "upstream": {"url": a}},
        {"name": "host-b", "match": {"host": "b.example"}, "upstream": {"url": b}},
        {"name": "wild-b", "match": {"host": "*.b.example"}, "upstream": {"url": b}},
        {"name": "prefix-a", "match": {"path_prefix": "/pa/"}, "upstream": {"url": a}},
        {"name": "prefix-b", "match": {"path_prefix": "/pb"}, "upstream": {"url": b}},
        events_file=events,
    )
    with start_gateway(config, directory) as gw:
        yield gw, events


@pytest.fixture(scope="module")
def gateway(setup: tuple[GatewayProcess, Path]) -> GatewayProcess:
    return setup[0]


@pytest.fixture(scope="module")
def events(setup: tuple[GatewayProcess, Path]) -> Path:
    return setup[1]


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http


def assert_problem(response: httpx.Response, status: int, check: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem.keys() >= PROBLEM_KEYS
    assert problem["status"] == status
    assert problem["check"] == check
    assert problem["request_id"] == response.headers["x-request-id"]
    assert isinstance(problem["type"], str) and problem["type"]
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    return problem


def assert_event(event: dict[str, Any], response: httpx.Response, *, check: str, action: str,
                 status: int, method: str, path: str) -> None:
    assert event.keys() >= EVENT_KEYS
    assert isinstance(event["time"], int | float | str)
    assert event["client_ip"] == "127.0.0.1"
    assert event["request_id"] == response.headers["x-request-id"]
    assert (event["check"], event["action"], event["status"]) == (check, action, status)
    assert (event["method"], event["path"]) == (method, path)
    assert isinstance(event["reason"], str) and event["reason"]


def unique(path: str) -> str:
    return f"{path}{uuid.uuid4().hex}"


# -- methods --------------------------------------------------------------------------------
def test_methods_allowed_pass(client: httpx.Client) -> None:
    assert client.get("/m/echo").status_code == 200
    assert client.head("/m/echo").status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_refused_with_405(client: httpx.Client, upstream_a: CountingUpstream,
                                  events: Path, method: str) -> None:
    path = unique("/m/echo/")
    response = client.request(method, path, content=b"{}" if method != "DELETE" else b"")
    problem = assert_problem(response, 405, "methods")
    assert response.headers["allow"] == "GET, HEAD"
    assert path not in upstream_a.paths()
    event = wait_event(events, problem["request_id"])
    assert_event(event, response, check="methods", action="block", status=405,
                 method=method, path=path)


def test_refused_keepalive_connection_still_usable(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as conn:
        conn.request("DELETE", "/m/echo/x")
        assert conn.read_response().status == 405
        conn.request("GET", "/m/echo/y")
        response = conn.read_response()
        assert response.status == 200
        assert response.json()["path"] == "/m/echo/y"


def test_refused_call_body_never_reaches_upstream(gateway: GatewayProcess,
                                                  upstream_a: CountingUpstream) -> None:
    path = unique("/m/echo/")
    with RawClient(gateway.port) as conn:
        conn.request("POST", path, body=b"x" * 10000)
        response = conn.read_response()
        assert response.status == 405
    assert path not in upstream_a.paths()


def test_head_refusal_has_no_body(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as conn:
        conn.request("HEAD", "/denied/x")
        conn.request("GET", "/m/echo/after")
        refusal = conn.read_response("HEAD")
        assert refusal.status == 403
        after = conn.read_response()
        assert (after.status, after.json()["path"]) == (200, "/m/echo/after")


# -- ipfilter -------------------------------------------------------------------------------
def test_ipfilter_deny_403(client: httpx.Client, events: Path,
                           upstream_a: CountingUpstream) -> None:
    path = unique("/denied/echo/")
    response = client.get(path)
    problem = assert_problem(response, 403, "ipfilter")
    assert path not in upstream_a.paths()
    assert_event(wait_event(events, problem["request_id"]), response, check="ipfilter",
                 action="block", status=403, method="GET", path=path)


def test_ipfilter_allowlist_refuses_others(client: httpx.Client) -> None:
    assert_problem(client.get("/allowlist/echo"), 403, "ipfilter")


# -- log mode -------------------------------------------------------------------------------
def test_log_mode_lets_the_call_through_and_records_would_block(
        client: httpx.Client, events: Path, upstream_a: CountingUpstream) -> None:
    path = unique("/logged/echo/")
    response = client.post(path, content=b"body")
    assert response.status_code == 200
    assert response.json()["body"] == "body"
    assert path in upstream_a.paths()
    rid = response.headers["x-request-id"]
    ip_event = wait_event(events, rid, check="ipfilter")
    assert_event(ip_event, response, check="ipfilter", action="would_block", status=403,
                 method="POST", path=path)
    method_event = wait_event(events, rid, check="methods")
    assert_event(method_event, response, check="methods", action="would_block", status=405,
                 method="POST", path=path)


def test_log_mode_allowed_call_writes_no_event(client: httpx.Client, events: Path) -> None:
    response = client.get(unique("/mixed/echo/"))  # GET passes the methods check
    assert response.status_code == 200
    rid = response.headers["x-request-id"]
    # A later event (a block) proves the writer has flushed what came before it.
    marker = client.get(unique("/denied/"))
    wait_event(events, marker.headers["x-request-id"])
    assert not [e for e in read_events(events) if e["request_id"] == rid]


def test_check_mode_overrides_api_mode(client: httpx.Client, events: Path) -> None:
    path = unique("/mixed/echo/")
    response = client.put(path, content=b"x")
    assert response.status_code == 200
    assert_event(wait_event(events, response.headers["x-request-id"]), response,
                 check="methods", action="would_block", status=405, method="PUT", path=path)


def test_event_lines_are_one_json_object_each(events: Path, client: httpx.Client) -> None:
    response = client.get(unique("/denied/"))
    wait_event(events, response.headers["x-request-id"])
    lines = events.read_text().splitlines()
    assert lines
    for event in read_events(events):
        assert event.keys() >= EVENT_KEYS


# -- routing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "expected"), [
    ("a.example", "a"), ("A.Example:8080", "a"), ("b.example", "b"), ("x.b.example", "b"),
])
def test_routing_by_host(client: httpx.Client, upstream_a: CountingUpstream,
                         upstream_b: CountingUpstream, host: str, expected: str) -> None:
    path = unique("/echo/")
    response = client.get(path, headers={"Host": host})
    assert response.status_code == 200
    chosen, other = (upstream_a, upstream_b) if expected == "a" else (upstream_b, upstream_a)
    assert path in chosen.paths()
    assert path not in other.paths()


@pytest.mark.parametrize(("prefix", "expected"), [("/pa/", "a"), ("/pb/", "b")])
def test_routing_by_path_prefix(client: httpx.Client, upstream_a: CountingUpstream,
                                upstream_b: CountingUpstream, prefix: str, expected: str) -> None:
    path = unique(prefix)
    response = client.get(path, headers={"Host": "anything.example"})
    assert response.status_code == 200
    assert response.json()["path"] == path  # the prefix is not stripped
    chosen, other = (upstream_a, upstream_b) if expected == "a" else (upstream_b, upstream_a)
    assert path in chosen.paths()
    assert path not in other.paths()


def test_path_prefix_is_per_segment_not_per_character(
        client: httpx.Client, upstream_b: CountingUpstream) -> None:
    # "/pbc" must not be served by the "/pb" API; "/pb" itself is.
    assert_problem(client.get("/pbc/echo"), 404, "routing")
    assert_problem(client.get("/pabc/echo"), 404, "routing")
    assert client.get("/pb").status_code == 200
    assert upstream_b.paths()[-1] == "/pb"


@pytest.mark.parametrize(("host", "path"), [
    ("c.example", "/echo/x"),       # unknown host, no catch-all
    ("gw.test", "/nothing/here"),   # unknown prefix
    ("b.example.evil", "/echo/x"),  # a host that only starts like a known one
])
def test_unknown_host_or_prefix_is_404(client: httpx.Client, events: Path,
                                       upstream_a: CountingUpstream,
                                       upstream_b: CountingUpstream,
                                       host: str, path: str) -> None:
    before = (upstream_a.requests, upstream_b.requests)
    response = client.get(path, headers={"Host": host})
    problem = assert_problem(response, 404, "routing")
    assert (upstream_a.requests, upstream_b.requests) == before
    assert_event(wait_event(events, problem["request_id"]), response, check="routing",
                 action="block", status=404, method="GET", path=path)


def test_events_file_grows_only_with_blocks(events: Path, client: httpx.Client) -> None:
    def mark() -> None:  # a block whose event, once written, follows all earlier ones
        marker = client.get(unique("/denied/"))
        wait_event(events, marker.headers["x-request-id"])

    mark()
    count = len(read_events(events))
    for _ in range(3):
        assert client.get("/pa/ok").status_code == 200
    mark()
    assert len(read_events(events)) == count + 1
