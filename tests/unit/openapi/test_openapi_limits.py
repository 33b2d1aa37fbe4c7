"""Body limits derived from request schemas: exact sizes, soundness against the largest
bodies real serialisers write, and None wherever a schema leaves something unbounded."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.openapi.document import SpecDocument, load_spec
from apiward.openapi.limits import (
    NUMBER_BYTES,
    SLACK,
    DerivedLimits,
    derive_limits,
    media_kind,
    operation_limits,
    string_max_chars,
)


def make_spec(schemas: dict | None = None, version: str = "3.0",
              files: dict[str, dict] | None = None, paths: dict | None = None) -> SpecDocument:
    """A spec loaded (and validated) as apiward loads it, from files in a temporary dir."""
    root = {"openapi": f"{version}.0", "info": {"title": "t", "version": "1"},
            "paths": paths or {}, "components": {"schemas": schemas or {}}}
    with tempfile.TemporaryDirectory() as folder:
        for name, document in {"openapi.json": root, **(files or {})}.items():
            (Path(folder) / name).write_text(json.dumps(document))
        return load_spec(Path(folder) / "openapi.json")


def limits(schema: Any, spec: SpecDocument | None = None, kind: str = "json",
           **schemas: dict) -> DerivedLimits:
    spec = spec or make_spec(schemas)
    return derive_limits(schema, spec.uri, spec, kind)


def closed(**properties: Any) -> dict:
    return {"type": "object", "properties": properties, "additionalProperties": False}


def string(n: int, **more: Any) -> dict:
    return {"type": "string", "maxLength": n, **more}


# -- exact sizes -------------------------------------------------------------------------

def test_one_string_property_exact() -> None:
    found = limits(closed(name=string(10)))
    # {"name":"..."}: braces 2, key "name" escaped 2+4*6, colon 1, value 2+10*12
    compact = 2 + 26 + 1 + 122
    # pretty: 2 line breaks (CRLF), one line at indent level 1 (8 columns), one member
    assert found == DerivedLimits(compact + 2 * 2 + 8 + 3 + SLACK, 1)


@pytest.mark.parametrize(("schema", "size"), [
    ({"type": "integer"}, NUMBER_BYTES),
    ({"type": "number", "maximum": 3}, NUMBER_BYTES),
    ({"type": "boolean"}, 5),
    ({"type": "string", "format": "date"}, 2 + 10 * 6),
    ({"type": "string", "format": "uuid", "maxLength": 4}, 2 + 4 * 12),
    ({"type": "string", "enum": ["a", "bb"]}, 2 + 2 * 6),
    ({"type": "string", "enum": ["\U0001F600"]}, 2 + 12),
    ({"const": "x"}, 2 + 6),
    ({"enum": [None, True, 12]}, NUMBER_BYTES),
    ({"type": "string", "pattern": "^[a-f0-9]{24}$"}, 2 + 25 * 12),
])
def test_scalars(schema: dict, size: int) -> None:
    assert limits(schema) == DerivedLimits(size + SLACK, 0)


def test_nullable_and_type_lists() -> None:
    assert limits({"type": "boolean", "nullable": True}).body_bytes == 5 + SLACK
    assert limits({"type": ["string", "null"], "maxLength": 0},
                  make_spec(version="3.1")).body_bytes == 4 + SLACK


def test_array_of_strings() -> None:
    found = limits({"type": "array", "maxItems": 3, "items": string(2)})
    compact = 2 + 2 + 3 * (2 + 24)  # brackets, two commas, three strings
    whitespace = 4 * 2 + 3 * 8 + 3 * 3  # 4 line breaks, 3 lines at level 1, 3 items
    assert found == DerivedLimits(compact + whitespace + SLACK, 1)


def test_nested_arrays_depth_is_exact() -> None:
    inner = {"type": "array", "maxItems": 2, "items": {"type": "integer"}}
    middle = {"type": "array", "maxItems": 2, "items": inner}
    assert limits({"type": "array", "maxItems": 2, "items": middle}).json_depth == 3
    assert limits(closed(a=closed(b=middle))).json_depth == 4


def test_empty_containers() -> None:
    assert limits(closed()) == DerivedLimits(2 + SLACK, 1)
    assert limits({"type": "array", "maxItems": 0}) == DerivedLimits(2 + SLACK, 1)
    assert limits({"type": "object", "maxProperties": 0}) == DerivedLimits(2 + SLACK, 1)


# -- soundness: the largest bodies real serialisers write fit ---------------------------

ASTRAL = "\U0001F600"


def largest(schema: dict) -> Any:
    """The largest value of a closed, typed schema (no composition): what a hostile client
    sends to hit the limit exactly."""
    kind = schema["type"]
    if kind == "string":
        return ASTRAL * schema["maxLength"]
    if kind == "integer":
        return -9223372036854775808
    if kind == "number":
        return -2.2250738585072014e-308
    if kind == "array":
        return [largest(schema["items"]) for _ in range(schema["maxItems"])]
    return {name: largest(sub) for name, sub in schema["properties"].items()}


BOOK = closed(
    title=string(200),
    isbn=string(17),
    price=closed(amount={"type": "number"}, currency=string(3)),
    tags={"type": "array", "maxItems": 10, "items": string(30)},
    shelves={"type": "array", "maxItems": 4,
             "items": {"type": "array", "maxItems": 3, "items": {"type": "integer"}}},
    authors={"type": "array", "maxItems": 5,
             "items": closed(name=string(100), born={"type": "integer"})},
)


@pytest.mark.parametrize("dump", [
    lambda v: json.dumps(v),  # ensure_ascii: an astral char as a surrogate pair
    lambda v: json.dumps(v, indent=4),
    lambda v: json.dumps(v, indent="\t"),
    lambda v: json.dumps(v, indent=8, separators=(" , ", " : ")).replace("\n", "\r\n"),
    lambda v: json.dumps(v, ensure_ascii=False, indent=2),
], ids=["compact", "indent4", "tab", "indent8-crlf-spaced", "utf8"])
def test_largest_body_fits(dump) -> None:
    found = limits(BOOK)
    text = dump(largest(BOOK)).encode()
    assert found.body_bytes is not None
    assert len(text) <= found.body_bytes
    assert found.json_depth == 3  # the book, shelves, a shelf


def test_limit_is_tight_for_the_compact_worst_case() -> None:
    compact = len(json.dumps(largest(BOOK)).encode())
    found = limits(BOOK).body_bytes
    assert found is not None
    # only number widths, key escapes, whitespace and SLACK separate the two
    assert found < 1.5 * compact + SLACK


# -- composition and $ref ----------------------------------------------------------------

def test_allof_takes_the_tightest_member() -> None:
    open_base = {"type": "object", "properties": {"a": string(5)}}
    tight = closed(a=string(5))
    assert limits({"allOf": [open_base, tight]}) == limits(tight)
    assert limits({"allOf": [open_base, open_base]}).body_bytes is None


def test_oneof_takes_the_largest_branch() -> None:
    small, big = closed(a=string(1)), closed(a=string(50))
    assert limits({"oneOf": [small, big]}) == limits(big)
    found = limits({"anyOf": [small, {"type": "object"}]})
    assert found.body_bytes is None
    assert "/anyOf/1" in (found.unbounded or "")


def test_parent_bounds_apply_to_branches() -> None:
    assert limits({"type": "string", "maxLength": 3,
                   "oneOf": [{"format": "email"}, {"format": "hostname"}]}).body_bytes == \
        2 + 36 + SLACK


def test_ref_chains_and_shared_components() -> None:
    spec = make_spec({
        "A": {"$ref": "#/components/schemas/B"},
        "B": {"$ref": "#/components/schemas/C"},
        "C": closed(x=string(4), y={"$ref": "#/components/schemas/C2"}),
        "C2": string(4),
    })
    direct = limits(closed(x=string(4), y=string(4)))
    assert limits({"$ref": "#/components/schemas/A"}, spec) == direct


def test_ref_to_another_file() -> None:
    common = {"Name": string(4),
              "Pair": closed(a={"$ref": "#/Name"}, b={"$ref": "common.json#/Name"})}
    spec = make_spec({"Pair": {"$ref": "common.json#/Pair"}}, files={"common.json": common})
    assert limits({"$ref": "#/components/schemas/Pair"}, spec) == limits(
        closed(a=string(4), b=string(4)))
    open_pair = {**common, "Name": {"type": "string"}}
    spec = make_spec({"Pair": {"$ref": "common.json#/Pair"}}, files={"common.json": open_pair})
    found = limits({"$ref": "#/components/schemas/Pair"}, spec)
    assert found.unbounded == "common.json#/Name: string without maxLength"


def test_ref_siblings_count_in_31_only() -> None:
    schemas = {"Text": {"type": "string"}}
    node = {"$ref": "#/components/schemas/Text", "maxLength": 5}
    assert limits(node, make_spec(schemas, "3.1")).body_bytes == 2 + 60 + SLACK
    assert limits(node, make_spec(schemas, "3.0")).body_bytes is None


def test_types_come_from_the_whole_composition() -> None:
    spec = make_spec({"Text": {"type": "string"}})
    text = {"$ref": "#/components/schemas/Text"}
    assert limits({"allOf": [text], "maxLength": 5}, spec).body_bytes == 2 + 60 + SLACK
    either = {"maxLength": 5, "anyOf": [text, {"type": "string", "format": "email"}]}
    assert limits(either, spec).body_bytes == 2 + 60 + SLACK
    assert limits({"maxLength": 5, "anyOf": [text, {}]}, spec).body_bytes is None


@pytest.mark.parametrize("schemas", [
    {"Node": closed(next={"$ref": "#/components/schemas/Node"})},
    {"A": closed(b={"$ref": "#/components/schemas/B"}),
     "B": {"type": "array", "maxItems": 2, "items": {"$ref": "#/components/schemas/A"}}},
    {"A": {"type": "array", "maxItems": 2,
           "items": {"oneOf": [{"$ref": "#/components/schemas/A"}, {"type": "integer"}]}}},
])
def test_recursion_is_unbounded_not_a_hang(schemas: dict) -> None:
    first = next(iter(schemas))
    found = limits({"$ref": f"#/components/schemas/{first}"}, **schemas)
    assert found.body_bytes is None and found.json_depth is None
    assert "recursive" in (found.unbounded or "")


def test_shared_component_counts_at_every_use() -> None:
    spec = make_spec({"Name": string(10)})
    ref = {"$ref": "#/components/schemas/Name"}
    one, two = limits(closed(a=ref), spec), limits(closed(a=ref, b=ref), spec)
    assert one.body_bytes is not None and two.body_bytes is not None
    assert two.body_bytes - one.body_bytes == 1 + (2 + 6) + 1 + (2 + 120) + 2 * 1 + 8 + 3


# -- open objects --------------------------------------------------------------------------

def test_max_properties_needs_bounded_names() -> None:
    schema = {"type": "object", "maxProperties": 2, "additionalProperties": string(3)}
    assert limits(schema, make_spec(version="3.0")).body_bytes is None  # names unbounded
    named = {**schema, "propertyNames": {"maxLength": 4}}
    found = limits(named, make_spec(version="3.1"))
    member = (2 + 4 * 12) + 1 + (2 + 3 * 12)
    assert found.body_bytes == 2 + 1 + 2 * member + (3 * 2 + 2 * 8 + 2 * 3) + SLACK


def test_max_properties_picks_the_largest_named_ones() -> None:
    schema = {"type": "object", "maxProperties": 1, "additionalProperties": False,
              "properties": {"small": string(1), "big": string(100)}}
    assert limits(schema) == limits(closed(big=string(100)))


def test_unevaluated_properties_close_an_allof_31() -> None:
    spec = make_spec({"Base": {"type": "object", "properties": {"id": string(8)}}}, "3.1")
    schema = {"allOf": [{"$ref": "#/components/schemas/Base"}],
              "properties": {"name": string(5)}, "type": "object",
              "unevaluatedProperties": False}
    assert limits(schema, spec) == limits(closed(id=string(8), name=string(5)), spec)
    opened = {**schema, "anyOf": [{"additionalProperties": {"type": "integer"}}]}
    assert limits(opened, spec).body_bytes is None


@pytest.mark.parametrize(("schema", "why"), [
    ({"type": "string"}, "string without maxLength"),
    ({"type": "array", "items": string(3)}, "array without maxItems"),
    ({"type": "array", "maxItems": 3}, "any value"),
    ({"type": "object", "properties": {"a": string(3)}}, "without maxProperties"),
    (closed(a={"type": "string"}), "/properties/a: string without maxLength"),
    ({"properties": {"a": string(3)}, "additionalProperties": False}, "no type"),
    ({}, "no type"),
    ({"type": "string", "pattern": "[a-z]{3}"}, "maxLength"),  # not anchored
    ({"type": "string", "pattern": "^[a-z]+$"}, "maxLength"),
    ({"type": "string", "format": "email"}, "maxLength"),
])
def test_unbounded(schema: dict, why: str) -> None:
    found = limits(schema)
    assert found.body_bytes is None and found.json_depth is None
    assert why in (found.unbounded or "")


def test_reason_points_at_the_schema() -> None:
    spec = make_spec({"Pet": closed(tags={"type": "array", "items": string(3)})})
    found = limits({"$ref": "#/components/schemas/Pet"}, spec)
    assert found.unbounded == "/components/schemas/Pet/properties/tags: array without maxItems"


# -- forms and other media -----------------------------------------------------------------

def test_form_body() -> None:
    schema = closed(name=string(4), age={"type": "integer"},
                    tags={"type": "array", "maxItems": 2, "items": string(3)})
    found = limits(schema, kind="form")
    # name=....&age=...&tags=...&tags=...&: names and values percent-encoded (x3 a byte)
    name = 12 + 2 + 4 * 12
    age = 9 + 2 + 3 * NUMBER_BYTES
    tags = 2 * (12 + 2 + 3 * 12)
    assert found == DerivedLimits(name + age + tags + SLACK, None)


def test_largest_form_fits() -> None:
    schema = closed(name=string(4), tags={"type": "array", "maxItems": 2, "items": string(3)},
                    **{"ünï": {"type": "boolean"}})
    value = [("name", ASTRAL * 4), ("tags", ASTRAL * 3), ("tags", ASTRAL * 3),
             ("ünï", "false")]
    found = limits(schema, kind="form").body_bytes
    assert found is not None
    assert len(urlencode(value).encode()) <= found - SLACK
    # ASCII written as %XX too is what a strict encoder may send: counted as well
    everything = "&".join("".join(f"%{b:02X}" for b in k.encode()) + "=" +
                          "".join(f"%{b:02X}" for b in v.encode()) for k, v in value)
    assert len(everything) <= found - SLACK


def test_form_refuses_nesting_and_multipart_gets_none() -> None:
    assert limits(closed(a=closed(b=string(1))), kind="form").body_bytes is None
    assert limits(closed(a=string(1)), kind="multipart") == DerivedLimits(
        None, None, "multipart bodies get no derived limit")
    assert limits(closed(a=string(1)), kind="opaque").body_bytes is None


@pytest.mark.parametrize(("media_type", "kind"), [
    ("application/json", "json"), ("application/merge-patch+json", "json"),
    ("Application/JSON; charset=utf-8", "json"),
    ("application/x-www-form-urlencoded", "form"), ("multipart/form-data", "multipart"),
    ("application/xml", "opaque"), ("application/octet-stream", "opaque"),
])
def test_media_kind(media_type: str, kind: str) -> None:
    assert media_kind(media_type) == kind


def test_operation_limits_walks_every_body() -> None:
    paths = {"/books": {
        "post": {"requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Book"}},
            "application/xml": {"schema": {"$ref": "#/components/schemas/Book"}}}},
            "responses": {"201": {"description": "created"}}},
        "get": {"responses": {"200": {"description": "ok"}}}}}
    spec = make_spec({"Book": closed(title=string(10))}, paths=paths)
    found = operation_limits(spec)
    assert [(b.method, b.template, b.media_type) for b in found] == [
        ("POST", "/books", "application/json"), ("POST", "/books", "application/xml")]
    assert found[0].limits == limits(closed(title=string(10)))
    assert found[0].pointer == "/paths/~1books/post/requestBody/content/application~1json"
    assert found[1].limits.body_bytes is None


def test_string_max_chars() -> None:
    assert string_max_chars({"maxLength": 9, "format": "date"}) == 9
    assert string_max_chars({"format": "date-time"}) == 64
    assert string_max_chars({"pattern": r"\A(?:ab|c)\Z"}) == 3
    assert string_max_chars({"pattern": r"^\p{L}{3}$"}) is None  # not Python's syntax
    assert string_max_chars({"pattern": "^a|b$"}) is None  # anchors bind to one branch each
    assert string_max_chars({"type": "string"}) is None


# -- soundness, generated: any valid body of any bounded schema fits ----------------------

LEAVES = st.one_of(
    st.integers(0, 40).map(lambda n: {"type": "string", "maxLength": n}),
    st.just({"type": "string", "format": "date"}),
    st.lists(st.text(max_size=6), min_size=1, max_size=4, unique=True).map(
        lambda values: {"type": "string", "enum": values}),
    st.just({"type": "integer"}), st.just({"type": "number"}), st.just({"type": "boolean"}),
    st.just({"type": "boolean", "nullable": True}),
)
SCHEMAS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.builds(lambda items, n: {"type": "array", "items": items, "maxItems": n},
              inner, st.integers(0, 4)),
    st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4).map(
        lambda props: {"type": "object", "properties": props, "additionalProperties": False}),
    st.lists(inner, min_size=1, max_size=3).map(lambda branches: {"oneOf": branches}),
), max_leaves=12)


def instance(schema: dict, draw) -> Any:
    """Some value valid against ``schema`` (as generated above), often a large one."""
    if "oneOf" in schema:
        return instance(draw(st.sampled_from(schema["oneOf"])), draw)
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    if schema.get("nullable") and draw(st.booleans()):
        return None
    kind = schema["type"]
    if kind == "string":
        if schema.get("format") == "date":
            return "2024-02-29"
        n = schema["maxLength"]
        return draw(st.text(min_size=n, max_size=n) | st.text(max_size=n))
    if kind == "integer":
        return draw(st.integers(-(1 << 63), (1 << 64) - 1))
    if kind == "number":
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "array":
        count = draw(st.integers(0, schema["maxItems"]))
        return [instance(schema["items"], draw) for _ in range(count)]
    return {name: instance(sub, draw) for name, sub in schema["properties"].items()}


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@functools.cache
def empty_spec() -> SpecDocument:
    return make_spec()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, data=st.data())
def test_every_valid_body_fits(schema: dict, data) -> None:
    spec = empty_spec()
    found = derive_limits(schema, spec.uri, spec, "json")
    assert found.body_bytes is not None and found.json_depth is not None
    value = instance(schema, data.draw)
    for text in (json.dumps(value), json.dumps(value, indent=8, separators=(" , ", " : "))):
        assert len(text.replace("\n", "\r\n").encode()) <= found.body_bytes
    assert depth(value) <= found.json_depth
