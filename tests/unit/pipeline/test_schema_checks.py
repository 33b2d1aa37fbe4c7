"""The route and schema checks as plain calls on a compiled spec (no sockets)."""

from __future__ import annotations

import pytest
import yaml

from apiward.openapi.compiler import compile_spec
from apiward.pipeline.check import Deps
from apiward.pipeline.checks import route, schema
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.wire.headers import Headers

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "servers": [{"url": "https://api.example.com/v1"}],
    "components": {"securitySchemes": {"key": {"type": "apiKey", "in": "header",
                                               "name": "X-Key"}}},
    "paths": {
        "/items": {"get": {"parameters": [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10}}],
            "responses": {"200": {"description": "ok"}}}},
        "/items/{id}": {
            "get": {"parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "ok"}}},
            "put": {"security": [{"key": []}],
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer"}}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "additionalProperties": False,
                                   "properties": {"name": {"type": "string",
                                                           "maxLength": 10}}}}}},
                    "responses": {"200": {"description": "ok"}}},
        },
        "/items/latest": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("spec") / "openapi.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    spec = compile_spec(path)
    deps = Deps("t", spec)
    return spec, route.build(route.Config(), "block", deps), \
        schema.build(schema.Config(), "block", deps)


def judge(checks, method: str, target: str, headers: dict[str, str] | None = None,
          body: bytes = b""):
    _, route_check, schema_check = checks
    path, _, query = target.partition("?")
    fields = [(k.lower().encode(), k.encode(), v.encode()) for k, v in (headers or {}).items()]
    request = Request(method, path, query, Headers(fields), "192.0.2.1", "r",
                      has_body=bool(body))
    context = Context(None, 0.0)
    verdict = route_check.run(request, context)
    if verdict.allowed:
        verdict = schema_check.run(request, context)
    if verdict.allowed and context.body_limit is not None:
        request.body = body
        verdict = schema_check.run_body(request, context)
    return verdict, context


def test_the_server_base_path_and_literal_paths_first(checks) -> None:
    verdict, context = judge(checks, "GET", "/v1/items/latest")
    assert verdict.allowed and context.endpoint.template == "/items/latest"
    verdict, context = judge(checks, "GET", "/v1/items/7")
    assert verdict.allowed and context.endpoint.template == "/items/{id}"
    assert judge(checks, "GET", "/items/7")[0].status == 404  # outside the base path


def test_head_follows_get_and_405_lists_the_methods(checks) -> None:
    assert judge(checks, "HEAD", "/v1/items")[0].allowed
    verdict, _ = judge(checks, "DELETE", "/v1/items/1")
    assert verdict.status == 405
    assert dict(verdict.headers)["Allow"] == "GET, PUT, HEAD"


def test_a_valid_target_is_remembered_and_an_invalid_one_never(checks) -> None:
    spec = checks[0]
    op = spec.match("/v1/items")[0].operations["GET"]
    assert op.known_good is not None  # path and query decide everything here
    assert judge(checks, "GET", "/v1/items?limit=3")[0].allowed
    assert "/v1/items?limit=3" in op.known_good
    assert judge(checks, "GET", "/v1/items?limit=3")[0].allowed
    for _ in range(2):
        assert judge(checks, "GET", "/v1/items?limit=30")[0].status == 400
    assert "/v1/items?limit=30" not in op.known_good
    assert judge(checks, "GET", "/v1/items?limit=3", body=b"x")[0].reason == "unexpected_body"


def test_the_remembered_targets_are_bounded(checks) -> None:
    op = checks[0].match("/v1/items")[0].operations["GET"]
    for i in range(schema.KNOWN_TARGETS + 5):
        assert judge(checks, "GET", f"/v1/items?limit={i % 10}&n{i}=x")[0].allowed
    assert len(op.known_good) <= schema.KNOWN_TARGETS


def test_operations_judged_by_headers_or_bodies_are_never_remembered(checks) -> None:
    op = checks[0].match("/v1/items/1")[0].operations["PUT"]
    assert op.known_good is None
    json = {"Content-Type": "application/json"}
    assert judge(checks, "PUT", "/v1/items/1", json, b'{"name": "a"}')[0].status == 401
    keyed = {**json, "X-Key": "k"}
    assert judge(checks, "PUT", "/v1/items/1", keyed, b'{"name": "a"}')[0].allowed
    assert judge(checks, "PUT", "/v1/items/1", keyed, b'{"name": 1}')[0].status == 400


def test_a_bounded_body_schema_sets_the_body_limit(checks) -> None:
    _, context = judge(checks, "PUT", "/v1/items/1",
                       {"Content-Type": "application/json", "X-Key": "k"}, b"{}")
    assert context.body_limit is not None and context.body_limit < 4096
