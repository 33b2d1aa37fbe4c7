"""The spec lint: what it warns about, at which pointer, once; and what it leaves alone."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from apiward.openapi.document import SpecDocument, load_spec
from apiward.openapi.lint import LintWarning, lint

SHARED_SPECS = Path(__file__).resolve().parents[4] / "shared" / "specs"


def make_spec(paths: dict, schemas: dict | None = None, version: str = "3.0",
              security: list | None = None, **components: Any) -> SpecDocument:
    """A spec loaded (and validated) as apiward loads it, from a temporary file."""
    root = {"openapi": f"{version}.0", "info": {"title": "t", "version": "1"},
            "paths": paths, "components": {"schemas": schemas or {}, **components}}
    if security is not None:
        root["security"] = security
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "openapi.json"
        path.write_text(json.dumps(root))
        return load_spec(path)


def post(schema: dict, **more: Any) -> dict:
    return {"post": {"requestBody": {"content": {"application/json": {"schema": schema}}},
                     "responses": {"200": {"description": "ok"}}, **more}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def found(spec: SpecDocument, *codes: str) -> list[tuple[str, str]]:
    return [(w.pointer, w.code) for w in lint(spec) if not codes or w.code in codes]


BOUNDED = {"type": "object", "additionalProperties": False,
           "properties": {"name": {"type": "string", "maxLength": 20}}}
BODY = "/paths/~1things/post/requestBody/content/application~1json/schema"


# -- paths ---------------------------------------------------------------------------------

def test_ambiguous_and_shadowed_paths() -> None:
    def ok(*names: str) -> dict:
        return {"parameters": [{"name": n, "in": "path", "required": True,
                                "schema": {"type": "string", "maxLength": 9}} for n in names],
                "get": {"responses": {"200": {"description": "ok"}}}}
    spec = make_spec({"/a/{x}": ok("x"), "/{y}/b": ok("y"), "/pets/{id}/tags": ok("id"),
                      "/pets/mine/tags": ok(), "/pets/{id}/toys": ok("id")})
    (ambiguous, shadowed) = lint(spec)
    assert ambiguous.code == "ambiguous_paths"
    assert ambiguous.pointer == "/paths/~1{y}~1b"
    assert "/a/{x}, which is tried first" in ambiguous.message
    assert shadowed.code == "shadowed_path"
    assert shadowed.pointer == "/paths/~1pets~1mine~1tags"
    assert "/pets/{id}/tags" in shadowed.message


# -- security ------------------------------------------------------------------------------

SCHEMES = {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}}


def test_operation_without_security_when_the_api_has_schemes() -> None:
    paths = {"/things": {**post(BOUNDED), "get": {"security": [],
                                                   "responses": {"200": {"description": "ok"}}},
                         "put": {"security": [{"key": []}],
                                 "responses": {"200": {"description": "ok"}}}}}
    spec = make_spec(paths, securitySchemes=SCHEMES)
    assert found(spec, "no_security") == [("/paths/~1things/post", "no_security")]


def test_root_security_covers_every_operation() -> None:
    spec = make_spec({"/things": post(BOUNDED)}, security=[{"key": []}],
                     securitySchemes=SCHEMES)
    assert found(spec, "no_security") == []


def test_no_schemes_no_security_warning() -> None:
    assert found(make_spec({"/things": post(BOUNDED)}), "no_security") == []


# -- readOnly + required -----------------------------------------------------------------

PET = {"type": "object", "required": ["id", "name"],
       "properties": {"id": {"type": "integer", "readOnly": True},
                      "name": {"type": "string", "maxLength": 9}}}


@pytest.mark.parametrize(("version", "says"), [("3.0", "responses only"),
                                                ("3.1", "unlike 3.0")])
def test_readonly_required(version: str, says: str) -> None:
    spec = make_spec({"/things": post(ref("Pet"))}, {"Pet": PET}, version)
    (warning,) = [w for w in lint(spec) if w.code == "readonly_required"]
    assert warning.pointer == "/components/schemas/Pet/properties/id"
    assert "'id'" in warning.message and says in warning.message


def test_readonly_required_across_allof_and_ref() -> None:
    schemas = {"Id": {"type": "integer", "readOnly": True},
               "Base": {"type": "object", "properties": {"id": ref("Id")}},
               "Pet": {"allOf": [ref("Base"), {"required": ["id"]}]}}
    spec = make_spec({"/things": post(ref("Pet"))}, schemas)
    (warning,) = [w for w in lint(spec) if w.code == "readonly_required"]
    assert warning.pointer == "/components/schemas/Base/properties/id"
    assert "required by another schema of this allOf" in warning.message


def test_readonly_not_required_and_responses_are_fine() -> None:
    pet = {**PET, "required": ["name"]}
    response = {"200": {"description": "ok", "content": {"application/json": {
        "schema": ref("Pet")}}}}
    spec = make_spec({"/things": {"get": {"responses": response}, **post(ref("Named"))}},
                     {"Pet": PET, "Named": pet})
    assert found(spec, "readonly_required") == []


# -- unbounded request inputs --------------------------------------------------------------

def test_bounded_body_is_quiet() -> None:
    assert found(make_spec({"/things": post(BOUNDED)})) == []


def test_each_unbounded_kind_at_its_pointer() -> None:
    schema = {"type": "object", "properties": {
        "s": {"type": "string"},
        "a": {"type": "array", "items": {"type": "array", "maxItems": 2,
                                         "items": {"type": "string"}}},
        "o": {"type": "object", "maxProperties": 3},
        "any": {"description": "free-form"},
    }}
    assert found(make_spec({"/things": post(schema)})) == [
        (BODY, "unbounded_object"),
        (f"{BODY}/properties/s", "unbounded_string"),
        (f"{BODY}/properties/a", "unbounded_array"),
        (f"{BODY}/properties/a/items/items", "unbounded_string"),
        (f"{BODY}/properties/any", "unbounded_value"),
    ]


@pytest.mark.parametrize("schema", [
    {"type": "string", "enum": ["a", "b"]},
    {"type": "string", "const": "x"},
    {"type": "string", "format": "date"},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uuid"},
    {"type": "string", "pattern": "^[0-9]{4}$"},
    {"type": "integer"},
    {"type": "boolean"},
    {"type": "object", "properties": {}, "additionalProperties": False},
    {"type": "object", "maxProperties": 5},
    {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
])
def test_bounded_schemas_are_not_reported(schema: dict) -> None:
    version = "3.1" if "const" in schema else "3.0"
    assert found(make_spec({"/things": post(schema)}, version=version)) == []


def test_parameters_are_checked_and_responses_are_not() -> None:
    param = {"name": "q", "in": "query", "schema": {"type": "string"}}
    header = {"name": "X-Tags", "in": "header",
              "content": {"application/json": {"schema": {"type": "array",
                                                           "maxItems": 3,
                                                           "items": ref("Tag")}}}}
    responses = {"200": {"description": "ok", "content": {"application/json": {
        "schema": {"type": "string"}}}}}
    paths = {"/things": {"parameters": [param],
                         "get": {"parameters": [header], "responses": responses}}}
    spec = make_spec(paths, {"Tag": {"type": "string"}})
    assert found(spec) == [("/paths/~1things/parameters/0/schema", "unbounded_string"),
                           ("/components/schemas/Tag", "unbounded_string")]


def test_shared_component_reported_once_at_its_own_pointer() -> None:
    schemas = {"Name": {"type": "string"},
               "A": {"type": "object", "maxProperties": 4, "properties": {"n": ref("Name")}},
               "B": {"type": "object", "maxProperties": 4,
                     "properties": {"n": ref("Name"), "m": ref("Name")}}}
    paths = {"/things": post(ref("A")), "/others": post(ref("B"))}
    assert found(make_spec(paths, schemas)) == [("/components/schemas/Name",
                                                 "unbounded_string")]


def test_ref_chain_reported_at_the_schema_itself() -> None:
    schemas = {"Alias": ref("Real"), "Real": {"type": "array", "items": {"type": "integer"}}}
    paths = {"/things": post(ref("Alias")), "/others": post(ref("Real"))}
    assert found(make_spec(paths, schemas)) == [
        ("/components/schemas/Real", "unbounded_array")]


@pytest.mark.parametrize("version", ["3.0", "3.1"])
def test_cycles_terminate_and_report_once(version: str) -> None:
    schemas = {"Node": {"type": "object", "properties": {
        "label": {"type": "string"},
        "children": {"type": "array", "maxItems": 5, "items": ref("Node")},
        "parent": ref("Node"), "also": {"allOf": [ref("Node")]}}}}
    assert found(make_spec({"/things": post(ref("Node"))}, schemas, version)) == [
        ("/components/schemas/Node", "unbounded_object"),
        ("/components/schemas/Node/properties/label", "unbounded_string")]


def test_allof_bounds_from_a_sibling_or_parent() -> None:
    schemas = {"Base": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    capped = {"allOf": [ref("Base"), {"type": "object",
                                      "properties": {"x": {"type": "integer"}}}],
              "maxProperties": 10}
    short = {"type": "string", "maxLength": 50,
             "oneOf": [{"type": "string", "format": "email"}, {"type": "string"}]}
    paths = {"/things": post(capped), "/short": post(short)}
    assert found(make_spec(paths, schemas)) == []
    # reached elsewhere without the cap, Base is reported (once)
    paths["/bare"] = post(ref("Base"))
    assert found(make_spec(paths, schemas)) == [("/components/schemas/Base",
                                                 "unbounded_object")]


def test_ref_siblings_bound_in_31_only() -> None:
    schemas = {"Text": {"type": "string"}}
    node = {"$ref": "#/components/schemas/Text", "maxLength": 10}
    assert found(make_spec({"/things": post(node)}, schemas, "3.1")) == []
    assert found(make_spec({"/things": post(node)}, schemas, "3.0")) == [
        ("/components/schemas/Text", "unbounded_string")]


def test_warning_shape() -> None:
    (warning,) = lint(make_spec({"/things": post({"type": "string"})}))
    assert warning == LintWarning(BODY, "unbounded_string", warning.message)
    assert "maxLength" in warning.message


# -- real specs ----------------------------------------------------------------------------

@pytest.mark.skipif(not SHARED_SPECS.is_dir(), reason="no shared specs")
def test_kratos_lints_fast() -> None:
    spec = load_spec(SHARED_SPECS / "ory-kratos-3.0.json")
    start = time.perf_counter()
    warnings = lint(spec)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.25, f"lint took {elapsed:.3f}s"
    codes = {w.code for w in warnings}
    assert {"no_security", "unbounded_string", "shadowed_path"} <= codes
    pointers = [(w.pointer, w.code) for w in warnings]
    assert len(pointers) == len(set(pointers))
