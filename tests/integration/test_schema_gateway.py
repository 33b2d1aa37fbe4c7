"""The route and schema checks in the running gateway: every refusal with its exact status
and problem, the body stage (buffered, re-framed, judged), and response validation."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    CountingUpstream,
    RawClient,
    gateway_config,
    read_events,
    start_gateway,
    wait_until,
)

ITEM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "price"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 10}},
        "id": {"type": "integer", "readOnly": True},
    },
}
SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "shop", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/items": {
            "get": {
                "parameters": [
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 50}},
                    {"name": "X-Trace", "in": "header", "required": True,
                     "schema": {"type": "string", "pattern": "^[a-z]+$"}},
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "post": {
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": ITEM}}},
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/items/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "get": {"responses": {"200": {"description": "ok"}}},
            "delete": {"security": [{"bearer": []}],
                       "responses": {"200": {"description": "gone"}}},
        },
        "/form": {
            "post": {
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["qty"],
                    "properties": {"qty": {"type": "integer", "maximum": 9}},
                }}}},
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/upload": {
            "post": {
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["title", "file"],
                    "properties": {"title": {"type": "string", "maxLength": 10},
                                   "count": {"type": "integer"},
                                   "file": {"type": "string", "format": "binary"}},
                }}}},
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/echo/open": {"get": {"responses": {"200": {"description": "ok", "content": {
            "application/json": {"schema": {"type": "object", "required": ["method"]}}}}}}},
        "/echo/strict": {"get": {"responses": {"200": {"description": "ok", "content": {
            "application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"method": {"type": "string"}}}}}}}}},
        "/echo/teapot": {"get": {"responses": {"418": {"description": "never"}}}},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def setup(upstream: CountingUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("schema")
    spec = directory / "openapi.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    events = directory / "events.jsonl"
    url = upstream.url
    config = gateway_config(
        {"name": "strict", "match": {"path_prefix": "/"}, "upstream": {"url": url},
         "spec": str(spec), "checks": {"schema": {"validate_responses": "block"}}},
        {"name": "logged", "match": {"host": "log.test"}, "upstream": {"url": url},
         "spec": str(spec), "mode": "log"},
        events_file=events,
    )
    with start_gateway(config, directory) as gw:
        yield gw, events


@pytest.fixture(scope="module")
def gateway(setup: tuple[GatewayProcess, Path]) -> GatewayProcess:
    return setup[0]


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http


def problem(response: httpx.Response, status: int, reason: str, check: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert (doc["status"], doc["check"], doc["type"]) == (
        status, check, f"urn:apiward:problem:{reason}")
    return doc


def errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["location"], e["rule"]) for e in doc["errors"]]


def reached(upstream: CountingUpstream, action) -> bool:
    before = upstream.requests
    action()
    return upstream.requests > before


TRACE = {"X-Trace": "abc"}


def test_unknown_path_is_404(client: httpx.Client, upstream: CountingUpstream) -> None:
    def call():
        problem(client.get("/nowhere"), 404, "unknown_endpoint", "route")
    assert not reached(upstream, call)


def test_undeclared_method_is_405_with_allow(client: httpx.Client) -> None:
    response = client.put("/items", json={})
    problem(response, 405, "method_not_allowed", "route")
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "HEAD"}


def test_valid_get_reaches_the_upstream(client: httpx.Client) -> None:
    response = client.get("/items", params={"limit": 10}, headers=TRACE)
    assert response.status_code == 200
    assert response.json()["path"] == "/items?limit=10"


@pytest.mark.parametrize(("params", "headers", "expected"), [
    ({"limit": 0}, TRACE, [("query.limit", "minimum")]),
    ({"limit": "ten"}, TRACE, [("query.limit", "type")]),
    ({}, {}, [("header.X-Trace", "required")]),
    ({"limit": 99}, {"X-Trace": "ABC"}, [("query.limit", "maximum"),
                                         ("header.X-Trace", "pattern")]),
])
def test_bad_parameters_are_400_with_every_error(client, params, headers, expected) -> None:
    doc = problem(client.get("/items", params=params, headers=headers), 400,
                  "invalid_parameters", "schema")
    assert sorted(errors(doc)) == sorted(expected)


def test_path_parameters_are_typed(client: httpx.Client) -> None:
    assert client.get("/items/7").status_code == 200
    doc = problem(client.get("/items/seven"), 400, "invalid_parameters", "schema")
    assert errors(doc) == [("path.id", "type")]


def test_missing_credentials_are_401(client: httpx.Client, upstream: CountingUpstream) -> None:
    def call():
        response = client.delete("/items/3")
        problem(response, 401, "missing_credentials", "schema")
        assert response.headers["www-authenticate"] == "Bearer"
    assert not reached(upstream, call)
    assert client.delete("/items/3", headers={"Authorization": "Bearer t"}).status_code == 200


def test_valid_json_body_is_forwarded_unchanged(client: httpx.Client) -> None:
    body = b'{"name": "pen", "price": 1.5, "tags": ["a"]}'
    response = client.post("/items", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["body"] == body.decode()


@pytest.mark.parametrize(("body", "expected"), [
    ({"name": "pen", "price": -1}, [("body.price", "minimum")]),
    ({"name": "pen", "price": 1, "colour": "red"}, [("body.colour", "additionalProperties")]),
    ({"name": "pen"}, [("body.price", "required")]),
    ({"name": "pen", "price": 1, "tags": ["a", "b", "c", "d"]}, [("body.tags", "maxItems")]),
    ({"name": "pen", "price": 1, "id": 5}, [("body.id", "readOnly")]),
])
def test_invalid_json_bodies_are_400(client, upstream, body, expected) -> None:
    def call():
        doc = problem(client.post("/items", json=body), 400, "invalid_body", "schema")
        assert errors(doc) == expected
    assert not reached(upstream, call)


@pytest.mark.parametrize(("raw", "rule"), [
    (b'{"name": "pen", "price": 1', "json"),
    (b'{"name": "pen", "name": "ink", "price": 1}', "duplicate_key"),
    (b"[" * 100 + b"]" * 100, "depth"),
])
def test_malformed_json_is_400(client: httpx.Client, raw: bytes, rule: str) -> None:
    doc = problem(client.post("/items", content=raw, headers={"Content-Type": "application/json"}),
                  400, "invalid_body", "schema")
    assert errors(doc)[0][1] == rule


def test_wrong_media_type_is_415(client: httpx.Client) -> None:
    response = client.post("/items", content=b"name=pen", headers={"Content-Type": "text/plain"})
    problem(response, 415, "unsupported_media_type", "schema")


def test_required_body_missing_is_400(client: httpx.Client) -> None:
    problem(client.post("/items"), 400, "missing_body", "schema")


def test_body_where_none_is_declared_is_400(client: httpx.Client) -> None:
    response = client.request("GET", "/items/1", content=b"{}",
                              headers={"Content-Type": "application/json"})
    problem(response, 400, "unexpected_body", "schema")


def test_form_bodies_are_coerced_and_validated(client: httpx.Client) -> None:
    ok = client.post("/form", data={"qty": "3"})
    assert ok.status_code == 200 and ok.json()["body"] == "qty=3"
    doc = problem(client.post("/form", data={"qty": "30"}), 400, "invalid_body", "schema")
    assert errors(doc) == [("body.qty", "maximum")]


def test_chunked_body_is_judged_then_sent_with_a_length(gateway: GatewayProcess,
                                                         upstream: CountingUpstream) -> None:
    client = RawClient(gateway.port)
    body = b'{"name": "pen", "price": 2}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:])) + b"0\r\n\r\n"
    client.request("POST", "/items", {"Content-Type": "application/json",
                                      "Transfer-Encoding": "chunked"}, chunks)
    response = client.read_response()
    assert response.status == 200
    echoed = response.json()
    assert echoed["body"] == body.decode()
    sent = dict((k.lower(), v) for k, v in echoed["headers"])
    assert sent["content-length"] == str(len(body)) and "transfer-encoding" not in sent
    # a refused body leaves the connection usable: it was read whole
    bad = b'{"name": "pen", "price": -2}'
    client.request("POST", "/items", {"Content-Type": "application/json"}, bad)
    assert client.read_response().status == 400
    client.request("GET", "/items/1")
    assert client.read_response().status == 200


def test_pipelined_bodies_are_each_judged(gateway: GatewayProcess) -> None:
    client = RawClient(gateway.port)
    good = b'{"name": "a", "price": 1}'
    bad = b'{"name": "b", "price": -1}'
    head = b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    client.send(b"".join(head + b"Content-Length: %d\r\n\r\n" % len(b) + b
                         for b in (good, bad, good)))
    assert [client.read_response("POST").status for _ in range(3)] == [200, 400, 200]


def test_expect_continue_with_a_judged_body(gateway: GatewayProcess) -> None:
    client = RawClient(gateway.port)
    body = b'{"name": "pen", "price": 3}'
    client.send(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert client.read_head().status == 100
    client.send(body)
    assert client.read_response().status == 200


def test_response_validation_blocks_a_leaking_answer(client: httpx.Client) -> None:
    assert client.get("/echo/open").status_code == 200
    problem(client.get("/echo/strict"), 502, "invalid_response_body", "schema")
    problem(client.get("/echo/teapot"), 502, "undeclared_response_status", "schema")


def test_log_mode_lets_everything_through_and_records_it(
        setup: tuple[GatewayProcess, Path], client: httpx.Client) -> None:
    _, events = setup
    host = {"Host": "log.test"}
    unknown = client.get("/nowhere", headers=host)
    bad = client.post("/items", json={"name": "x", "price": -1}, headers=host)
    assert unknown.status_code == 200 and bad.status_code == 200
    ids = {unknown.headers["x-request-id"]: "route", bad.headers["x-request-id"]: "schema"}

    def logged() -> bool:
        seen = {(e["request_id"], e["check"]) for e in read_events(events)
                if e["action"] == "would_block"}
        return all((rid, check) in seen for rid, check in ids.items())
    wait_until(logged, message="would_block events")


def test_problem_never_echoes_long_request_values(client: httpx.Client) -> None:
    value = "<script>" + "x" * 120
    doc = problem(client.post("/items", json={"name": value, "price": 1}), 400,
                  "invalid_body", "schema")
    assert errors(doc) == [("body.name", "maxLength")]
    assert "x" * 60 not in json.dumps(doc)


def test_body_larger_than_the_schema_allows_is_413_before_reading(
        client: httpx.Client, upstream: CountingUpstream) -> None:
    """Every field of ITEM is bounded, so a body past the derived limit cannot be valid."""
    def call():
        response = client.post("/items", json={"name": "x" * 5000, "price": 1})
        problem(response, 413, "body_too_large", "limits")
    assert not reached(upstream, call)


# -- hot reload ---------------------------------------------------------------------------

def small_spec(*paths: str) -> str:
    return yaml.safe_dump({
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
        "paths": {p: {"get": {"responses": {"200": {"description": "ok"}}}} for p in paths},
    })


def get_status(gateway: GatewayProcess, path: str) -> int:
    return httpx.get(gateway.url + path, timeout=10,
                     headers={"Connection": "close"}).status_code


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_swaps_the_spec_and_refuses_a_broken_one(upstream: CountingUpstream,
                                                        tmp_path: Path, workers: int) -> None:
    spec = tmp_path / "openapi.yaml"
    spec.write_text(small_spec("/a"))
    config = gateway_config({"upstream": {"url": upstream.url}, "spec": str(spec)},
                            workers=workers)
    with start_gateway(config, tmp_path) as gw:
        assert (get_status(gw, "/a"), get_status(gw, "/b")) == (200, 404)
        spec.write_text(small_spec("/b"))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: all(get_status(gw, "/b") == 200 for _ in range(10)),
                   message="the new spec to be live in every worker")
        assert get_status(gw, "/a") == 404
        spec.write_text("openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {/c: 7}\n")
        gw.signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in gw.stderr, message="'reload refused'")
        assert "openapi.yaml" in gw.stderr and "Traceback" not in gw.stderr
        for _ in range(5):
            assert (get_status(gw, "/b"), get_status(gw, "/c")) == (200, 404)


def test_multipart_fields_are_validated_and_files_pass(client: httpx.Client) -> None:
    files = {"file": ("a.bin", b"\x00\x01binary", "application/octet-stream")}
    ok = client.post("/upload", data={"title": "report", "count": "2"}, files=files)
    assert ok.status_code == 200 and "binary" in ok.json()["body"]
    doc = problem(client.post("/upload", data={"title": "far too long a title"}, files=files),
                  400, "invalid_body", "schema")
    assert errors(doc) == [("body.title", "maxLength")]
    doc = problem(client.post("/upload", data={"title": "x", "count": "two"}, files=files),
                  400, "invalid_body", "schema")
    assert errors(doc) == [("body.count", "type")]
    other = {"attachment": ("a.bin", b"x", "application/octet-stream")}
    doc = problem(client.post("/upload", data={"title": "x"}, files=other), 400,
                  "invalid_body", "schema")
    assert errors(doc) == [("body.file", "required")]
    as_form = client.post("/upload", data={"title": "x"})  # urlencoded: not declared
    problem(as_form, 415, "unsupported_media_type", "schema")
    broken = client.post("/upload", content=b"--xyz\r\nnot a part",
                         headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert errors(problem(broken, 400, "invalid_body", "schema"))[0][1] == "multipart"
