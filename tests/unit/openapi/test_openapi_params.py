"""Parameter deserialisers: the OpenAPI 3.1 "Style Examples" table, type coercion, and
what a hostile request can do to them."""

from __future__ import annotations

import time
import timeit
from pathlib import Path
from typing import Any

import pytest

from apiward.errors import SpecError
from apiward.openapi.document import SpecDocument
from apiward.openapi.params import ParameterRule, ParameterSet, compile_parameter
from apiward.pipeline.verdict import Violation
from apiward.wire.headers import Headers

STRING = {"type": "string"}
ARRAY = {"type": "array", "items": {"type": "string"}}
OBJECT = {"type": "object", "properties": {"R": {"type": "integer"}, "G": {"type": "integer"},
                                           "B": {"type": "integer"}}}
RGB = {"R": 100, "G": 200, "B": 150}
COLORS = ["blue", "black", "brown"]


def rule(name: str = "color", where: str = "query", schema: Any = STRING, spec: Any = None,
         **extra: Any) -> ParameterRule:
    param = {"name": name, "in": where, **({"schema": schema} if schema is not None else {}),
             **extra}
    return compile_parameter(param, "file:///api.yaml", spec)


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers([(n.lower().encode(), n.encode(), v.encode("latin-1")) for n, v in pairs])


def extract(*rules: ParameterRule, path: dict | None = None, query: str = "",
            head: Headers | None = None, undeclared: bool = False) -> tuple[dict, list]:
    values, problems = ParameterSet(list(rules), undeclared).extract(
        path or {}, query, head or headers())
    return {r.where: v for r, v in values}, problems


def one(r: ParameterRule, **kw: Any) -> Any:
    values, problems = extract(r, **kw)
    assert problems == []
    return values[r.where]


def violation(r: ParameterRule | None = None, *rules: ParameterRule, **kw: Any) -> Violation:
    _, problems = extract(*([r] if r else []), *rules, **kw)
    assert len(problems) == 1, problems
    return problems[0]


# --- the Style Examples table (OpenAPI 3.1.1 §4.8.12.4) -----------------------------------


@pytest.mark.parametrize(("style", "explode", "raw", "schema", "value"), [
    ("matrix", False, ";color", STRING, ""),
    ("matrix", False, ";color=blue", STRING, "blue"),
    ("matrix", False, ";color=blue,black,brown", ARRAY, COLORS),
    ("matrix", False, ";color=R,100,G,200,B,150", OBJECT, RGB),
    ("matrix", True, ";color", STRING, ""),
    ("matrix", True, ";color=blue", STRING, "blue"),
    ("matrix", True, ";color=blue;color=black;color=brown", ARRAY, COLORS),
    ("matrix", True, ";R=100;G=200;B=150", OBJECT, RGB),
    ("label", False, ".", STRING, ""),
    ("label", False, ".blue", STRING, "blue"),
    ("label", False, ".blue,black,brown", ARRAY, COLORS),
    ("label", False, ".R,100,G,200,B,150", OBJECT, RGB),
    ("label", True, ".blue", STRING, "blue"),
    ("label", True, ".blue.black.brown", ARRAY, COLORS),
    ("label", True, ".R=100.G=200.B=150", OBJECT, RGB),
    ("simple", False, "blue", STRING, "blue"),
    ("simple", False, "blue,black,brown", ARRAY, COLORS),
    ("simple", False, "R,100,G,200,B,150", OBJECT, RGB),
    ("simple", True, "blue", STRING, "blue"),
    ("simple", True, "blue,black,brown", ARRAY, COLORS),
    ("simple", True, "R=100,G=200,B=150", OBJECT, RGB),
])
def test_path_styles(style: str, explode: bool, raw: str, schema: dict, value: Any) -> None:
    r = rule(where="path", schema=schema, style=style, explode=explode, required=True)
    assert one(r, path={"color": raw}) == value


@pytest.mark.parametrize(("style", "explode", "query", "schema", "value"), [
    ("form", False, "color=blue", STRING, "blue"),
    ("form", False, "color=blue,black,brown", ARRAY, COLORS),
    ("form", False, "color=R,100,G,200,B,150", OBJECT, RGB),
    ("form", True, "color=blue", STRING, "blue"),
    ("form", True, "color=blue&color=black&color=brown", ARRAY, COLORS),
    ("form", True, "R=100&G=200&B=150", OBJECT, RGB),
    ("spaceDelimited", False, "color=blue%20black%20brown", ARRAY, COLORS),
    ("spaceDelimited", False, "color=blue+black+brown", ARRAY, COLORS),
    ("spaceDelimited", False, "color=R%20100%20G%20200%20B%20150", OBJECT, RGB),
    ("pipeDelimited", False, "color=blue%7Cblack%7Cbrown", ARRAY, COLORS),
    ("pipeDelimited", False, "color=blue|black|brown", ARRAY, COLORS),
    ("pipeDelimited", False, "color=R%7C100%7CG%7C200%7CB%7C150", OBJECT, RGB),
    ("deepObject", True, "color%5BR%5D=100&color%5BG%5D=200&color%5BB%5D=150", OBJECT, RGB),
    ("deepObject", True, "color[R]=100&color[G]=200&color[B]=150", OBJECT, RGB),
    # n/a in the table: read as form with the same explode
    ("spaceDelimited", True, "color=blue&color=black&color=brown", ARRAY, COLORS),
    ("pipeDelimited", False, "color=blue", STRING, "blue"),
])
def test_query_styles(style: str, explode: bool, query: str, schema: dict, value: Any) -> None:
    r = rule(schema=schema, style=style, explode=explode)
    assert one(r, query=query) == value


def test_form_is_the_query_default_and_explodes() -> None:
    r = rule(schema=ARRAY)
    assert (r.style, r.explode) == ("form", True)
    assert one(r, query="color=blue&color=black") == ["blue", "black"]
    assert one(r, query="color=blue,black") == ["blue,black"]


@pytest.mark.parametrize(("explode", "lines", "schema", "value"), [
    (False, ["blue"], STRING, "blue"),
    (False, ["blue,black,brown"], ARRAY, COLORS),
    (False, ["blue, black", "brown"], ARRAY, COLORS),  # OWS, and lines joined as one list
    (False, ["R,100,G,200,B,150"], OBJECT, RGB),
    (True, ["R=100, G=200,B=150"], OBJECT, RGB),
    (False, ["a%20b"], STRING, "a%20b"),  # header values are not percent-decoded
])
def test_header_simple(explode: bool, lines: list[str], schema: dict, value: Any) -> None:
    r = rule("X-Color", "header", schema, explode=explode)
    assert one(r, head=headers(*(("x-color", line) for line in lines))) == value


def test_header_names_are_case_insensitive_and_some_are_ignored() -> None:
    assert one(rule("X-Rate", "header", {"type": "integer"}),
               head=headers(("X-RATE", "5"))) == 5
    ignored = [rule(n, "header", STRING, required=True)
               for n in ("Accept", "content-type", "Authorization")]
    assert ParameterSet(ignored).rules == []
    assert extract(*ignored) == ({}, [])


def test_a_primitive_header_given_twice_is_refused() -> None:
    found = violation(rule("X-Id", "header"), head=headers(("x-id", "1"), ("x-id", "2")))
    assert (found.location, found.rule) == ("header.X-Id", "repeated")


@pytest.mark.parametrize(("cookie", "schema", "explode", "value"), [
    ("color=blue", STRING, True, "blue"),
    ('a=1; color="blue"', STRING, True, "blue"),
    ("color=blue,black,brown", ARRAY, False, COLORS),
    ("color=blue; color=black", ARRAY, True, ["blue", "black"]),
    ("color=R,100,G,200,B,150", OBJECT, False, RGB),
    ("R=100; G=200; B=150", OBJECT, True, RGB),
    ("color=caf%C3%A9", STRING, True, "café"),
])
def test_cookie_form(cookie: str, schema: dict, explode: bool, value: Any) -> None:
    r = rule(where="cookie", schema=schema, explode=explode)
    assert one(r, head=headers(("Cookie", cookie))) == value


def test_cookies_across_several_headers() -> None:
    r = rule("sid", "cookie", required=True)
    assert one(r, head=headers(("cookie", "a=1"), ("Cookie", "sid=x; b=2"))) == "x"
    assert violation(r, head=headers(("cookie", "a=1; sidx=2"))).rule == "required"


# --- coercion ----------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "raw", "value"), [
    ({"type": "integer"}, "42", 42),
    ({"type": "integer"}, "-0", 0),
    ({"type": "integer"}, "%2B5", "+5"),
    ({"type": "integer"}, "+5", " 5"),  # "+" is a space in a query
    ({"type": "integer"}, " 5", " 5"),
    ({"type": "integer"}, "5_000", "5_000"),
    ({"type": "integer"}, "\u0663", "\u0663"),  # an Arabic-Indic digit: int() would take it
    ({"type": "integer"}, "1.0", "1.0"),
    ({"type": "integer"}, "9" * 5000, "9" * 5000),  # beyond int()'s limit: stays a string
    ({"type": "number"}, "1.5e3", 1500.0),
    ({"type": "number"}, "7", 7),
    ({"type": "number"}, "1e999", "1e999"),
    ({"type": "number"}, "NaN", "NaN"),
    ({"type": "number"}, "Infinity", "Infinity"),
    ({"type": "boolean"}, "true", True),
    ({"type": "boolean"}, "false", False),
    ({"type": "boolean"}, "True", "True"),
    ({"type": "boolean"}, "1", "1"),
    ({"type": ["integer", "null"]}, "3", 3),
    ({"type": ["integer", "boolean"]}, "true", True),
    ({"oneOf": [{"type": "integer"}, {"type": "string", "format": "uuid"}]}, "3", 3),
    ({"enum": [1, 2, 3]}, "2", 2),
    ({}, "2", "2"),
    ({"type": "string"}, "2", "2"),
])
def test_primitives_are_coerced_to_the_schema_type_or_left_as_strings(
        schema: dict, raw: str, value: Any) -> None:
    got = one(rule("n", schema=schema), query=f"n={raw}")
    assert got == value and type(got) is type(value)


def test_items_and_properties_are_coerced() -> None:
    ints = {"type": "array", "items": {"type": "integer"}}
    assert one(rule("n", schema=ints, explode=False), query="n=1,2,x") == [1, 2, "x"]
    free = {"type": "object", "additionalProperties": {"type": "boolean"},
            "properties": {"n": {"type": "number"}}}
    assert one(rule("f", schema=free, style="deepObject"),
               query="f[n]=2.5&f[on]=true&f[x]=y") == {"n": 2.5, "on": True, "x": "y"}


def test_schema_references_are_followed_through_the_spec(tmp_path: Path) -> None:
    root = {"components": {"schemas": {
        "Ids": {"type": "array", "items": {"$ref": "#/components/schemas/Id"}},
        "Id": {"type": "integer"},
        "Filter": {"properties": {"min": {"$ref": "#/components/schemas/Id"}}},
    }}}
    uri = "file:///api.yaml"
    spec = SpecDocument(tmp_path / "api.yaml", uri, "3.0", root, {uri: root})
    ids = rule("ids", schema={"$ref": "#/components/schemas/Ids"}, spec=spec, explode=False)
    assert ids.shape == "array" and ids.schema == {"$ref": "#/components/schemas/Ids"}
    assert ids.base == uri
    assert one(ids, query="ids=1,2") == [1, 2]
    f = rule("f", schema={"$ref": "#/components/schemas/Filter"}, spec=spec, style="deepObject")
    assert one(f, query="f[min]=3") == {"min": 3}


# --- decoding, strictly ------------------------------------------------------------------


def test_percent_decoding_and_plus() -> None:
    assert one(rule("q"), query="q=a+b%2Bc%20d") == "a b+c d"
    assert one(rule("q", "path", required=True), path={"q": "a+b%20c"}) == "a+b c"
    assert one(rule("q", schema=ARRAY, explode=False), query="q=a%2Cb,c") == ["a,b", "c"]
    assert one(rule("q"), query="q=%E2%9C%93") == "\u2713"


@pytest.mark.parametrize("raw", ["%2", "a%", "%ZZ", "%C0%AF", "%ff", "%E2%9C", "%ED%A0%80"])
def test_invalid_percent_encoding_is_a_violation(raw: str) -> None:
    found = violation(rule("q"), query=f"q={raw}")
    assert (found.location, found.rule) == ("query.q", "encoding")
    found = violation(rule("q", "path", required=True), path={"q": raw})
    assert (found.location, found.rule) == ("path.q", "encoding")
    found = violation(rule("q", "cookie"), head=headers(("cookie", f"q={raw}")))
    assert (found.location, found.rule) == ("cookie.q", "encoding")


def test_an_invalid_name_is_reported_for_the_query() -> None:
    found = violation(rule("q"), query="q=1&%C0%AF=2")
    assert (found.location, found.rule) == ("query", "encoding")


# --- presence, repetition, emptiness -----------------------------------------------------


@pytest.mark.parametrize(("where", "name"), [("query", "limit"), ("header", "X-Key"),
                                             ("cookie", "sid"), ("path", "id")])
def test_missing_required_parameters(where: str, name: str) -> None:
    found = violation(rule(name, where, required=True))
    assert found == Violation(f"{where}.{name}", "required",
                              f"the required {where} parameter {name!r} is missing")


def test_path_parameters_are_always_required_and_optional_ones_may_be_absent() -> None:
    assert rule("id", "path", required=False).required is True
    assert extract(rule("limit")) == ({}, [])


def test_a_repeated_single_value_is_refused() -> None:
    found = violation(rule("limit", schema={"type": "integer"}), query="limit=1&limit=2")
    assert (found.location, found.rule) == ("query.limit", "repeated")
    assert violation(rule("ids", schema=ARRAY, explode=False),
                     query="ids=1&ids=2").rule == "repeated"
    assert violation(rule("f", schema=OBJECT, style="deepObject"),
                     query="f[R]=1&f[R]=2").rule == "repeated"


def test_empty_values_need_allow_empty_value() -> None:
    assert violation(rule("q"), query="q=").rule == "empty"
    assert violation(rule("q"), query="q").rule == "empty"
    assert violation(rule("q", schema=ARRAY), query="q=a&q=").rule == "empty"
    assert one(rule("q", allowEmptyValue=True), query="q=") == ""
    assert extract(rule("q"), query="&&") == ({}, [])


def test_malformed_styles_are_violations() -> None:
    odd = violation(rule("c", "path", OBJECT, required=True), path={"c": "R,1,G"})
    assert (odd.location, odd.rule) == ("path.c", "style")
    assert violation(rule("c", "path", STRING, style="label"), path={"c": "blue"}).rule == "style"
    assert violation(rule("c", "path", STRING, style="matrix"),
                     path={"c": ";other=1"}).rule == "style"
    assert violation(rule("c", "path", OBJECT, explode=True),
                     path={"c": "R=1,G"}).rule == "style"
    assert violation(rule("c", "path", OBJECT), path={"c": "R,1,R,2"}).rule == "repeated"


def test_huge_counts_stay_linear() -> None:
    ints = rule("n", schema={"type": "array", "items": {"type": "integer"}})
    query = "&".join(["n=1"] * 100_000)
    started = time.perf_counter()
    assert one(ints, query=query) == [1] * 100_000
    assert time.perf_counter() - started < 1
    wide = rule("n", schema={"type": "array", "items": {"type": "integer"}}, explode=False)
    assert len(one(wide, query="n=" + ",".join(["7"] * 100_000))) == 100_000


# --- content parameters ------------------------------------------------------------------


def test_json_content_parameters_are_parsed() -> None:
    r = rule("filter", schema=None, content={"application/json": {
        "schema": {"type": "object", "properties": {"lat": {"type": "number"}}}}})
    assert r.media_type == "application/json" and r.schema["type"] == "object"
    assert one(r, query="filter=%7B%22lat%22%3A1.5%7D") == {"lat": 1.5}
    found = violation(r, query="filter=%7Bnope")
    assert (found.location, found.rule) == ("query.filter", "json")
    text = rule("t", "header", schema=None, content={"text/plain": {}})
    assert one(text, head=headers(("t", "{x"))) == "{x"


# --- the set: merging, undeclared names --------------------------------------------------


def test_operation_parameters_replace_path_item_ones() -> None:
    shared = rule("limit", schema={"type": "string"})
    own = rule("limit", schema={"type": "integer"}, required=True)
    header_a, header_b = rule("X-A", "header"), rule("x-a", "header", required=True)
    rules = ParameterSet([shared, header_a, own, header_b]).rules
    assert rules == [own, header_b]


def test_undeclared_query_names_are_reported_when_asked() -> None:
    declared = [rule("limit"), rule("f", schema=OBJECT, style="deepObject"),
                rule("rgb", schema=OBJECT)]  # form+explode: owns R, G, B
    query = "limit=1&f[R]=1&R=2&G=3&other=x&" + "y" * 500 + "=1"
    values, problems = extract(*declared, query=query, undeclared=True)
    assert values == {"query.limit": "1", "query.f": {"R": 1}, "query.rgb": {"R": 2, "G": 3}}
    assert [(p.location, p.rule) for p in problems] == [
        ("query.other", "undeclared"), ("query." + "y" * 39 + "…", "undeclared")]
    assert extract(*declared, query=query)[1] == []


def test_a_free_form_object_takes_every_undeclared_name() -> None:
    free = rule("extra", schema={"type": "object", "additionalProperties": {"type": "integer"}})
    values, problems = extract(rule("limit"), free, query="limit=1&a=2&b=x", undeclared=True)
    assert problems == []
    assert values == {"query.limit": "1", "query.extra": {"a": 2, "b": "x"}}


def test_messages_never_echo_long_request_values() -> None:
    name = "n" * 2000
    _, problems = extract(rule("q"), query=f"q=1&q=2&{name}=%zz", undeclared=True)
    assert problems
    for problem in problems:
        assert len(problem.location) <= 60 and len(problem.message) <= 80


# --- compile-time refusals ---------------------------------------------------------------


@pytest.mark.parametrize(("param", "says"), [
    ({"name": "x", "in": "query", "style": "matrix"}, "not allowed in query"),
    ({"name": "x", "in": "header", "style": "form"}, "not allowed in header"),
    ({"name": "x", "in": "body"}, "'in' among"),
    ({"in": "query"}, "string name"),
    ({"name": "x", "in": "query", "content": {"a/b": {}, "c/d": {}}}, "one entry"),
])
def test_invalid_parameter_objects_are_refused(param: dict, says: str) -> None:
    with pytest.raises(SpecError, match=says):
        compile_parameter(param, "file:///api.yaml", None)


def test_extract_is_fast_for_a_typical_operation() -> None:
    params = ParameterSet([rule("id", "path", {"type": "integer"}, required=True),
                           rule("limit", "query", {"type": "integer"})])
    head = headers(("Host", "x"))
    call = lambda: params.extract({"id": "12"}, "limit=10", head)  # noqa: E731
    assert call()[0][1][1] == 10
    per_call = min(timeit.repeat(call, number=2000, repeat=5)) / 2000
    assert per_call < 50e-6  # ~2 µs here; generous for slow CI machines


# --- the two query paths: nothing to decode (split only), and "%" or "+" somewhere --------
#
# A query with no "%" and no "+" is split and read without decoding anything; any escape
# anywhere in it sends the whole query down the decoding path. Both must read alike.

ESCAPED = "&zz=%7E"  # an undeclared name with an escape: forces the decoding path


@pytest.mark.parametrize(("style", "explode", "query", "schema", "value"), [
    ("form", True, "color=blue", STRING, "blue"),
    ("form", True, "color=blue&color=black", ARRAY, ["blue", "black"]),
    ("form", True, "color=blue", ARRAY, ["blue"]),
    ("form", True, "color=3&color=4", {"type": "array", "items": {"type": "integer"}},
     [3, 4]),
    ("form", True, "color=3", {"type": "array", "items": {"type": "integer"}}, [3]),
    ("form", False, "color=blue,black", ARRAY, ["blue", "black"]),
    ("form", False, "color=R,100,G,200", OBJECT, {"R": 100, "G": 200}),
    ("form", True, "R=100&G=200", OBJECT, {"R": 100, "G": 200}),
    ("pipeDelimited", False, "color=blue|black", ARRAY, ["blue", "black"]),
    ("spaceDelimited", False, "color=blue", ARRAY, ["blue"]),
    ("deepObject", True, "color[R]=1&color[B]=2", OBJECT, {"R": 1, "B": 2}),
    ("form", True, "color=42", {"type": "integer"}, 42),
    ("form", True, "color=0042", {"type": "integer"}, 42),
    ("form", True, "color=-7", {"type": "integer"}, -7),
    ("form", True, "color=\u00b2", {"type": "integer"}, "\u00b2"),  # isdigit, not [0-9]
    ("form", True, "color=12", {"type": "number"}, 12),
    ("form", True, "color=-1.5", {"type": "number"}, -1.5),
    ("form", True, "color=true", {"type": "boolean"}, True),
    ("form", True, "color=yes", {"type": "boolean"}, "yes"),
])
def test_both_query_paths_read_alike(style: str, explode: bool, query: str, schema: dict,
                                     value: Any) -> None:
    r = rule(schema=schema, style=style, explode=explode)
    plain, escaped = one(r, query=query), one(r, query=query + ESCAPED)
    assert plain == escaped == value
    assert type(plain) is type(escaped) is type(value)


@pytest.mark.parametrize("suffix", ["", ESCAPED])
def test_both_query_paths_refuse_alike(suffix: str) -> None:
    text, ints = rule("q"), rule("n", schema={"type": "integer"})
    arr = rule("a", schema=ARRAY)
    cases = [
        (text, "q=a&q=b", "repeated"),
        (ints, "n=1&n=2&n=3", "repeated"),
        (text, "q=", "empty"),
        (text, "q", "empty"),
        (arr, "a=x&a=", "empty"),
        (arr, "a=&a=x", "empty"),
        (rule("q", required=True), "other=1", "required"),
        (rule("j", schema=None, content={"application/json": {}}), "j={nope", "json"),
        (rule("c", schema=OBJECT, explode=False), "c=R,1,G", "style"),
    ]
    for r, query, expected in cases:
        found = violation(r, query=query + suffix)
        assert (found.location, found.rule) == (r.where, expected), query


@pytest.mark.parametrize("suffix", ["", ESCAPED])
def test_both_query_paths_skip_empty_items_and_keep_an_empty_name(suffix: str) -> None:
    assert one(rule("q"), query="&&q=1&" + suffix) == "1"
    assert one(rule("q", schema=ARRAY), query="q=1&&q=2&" + suffix) == ["1", "2"]
    _, problems = extract(rule("q"), query="=x&&q=1&&" + suffix, undeclared=True)
    assert [(p.location, p.rule) for p in problems][:1] == [("query.", "undeclared")]
    assert len([p for p in problems if p.location == "query."]) == 1


def test_the_decoding_path_decodes_and_the_plain_path_has_nothing_to_decode() -> None:
    r = rule("q")
    assert one(r, query="q=a+b") == "a b"
    assert one(r, query="q=a%2Bb") == "a+b"
    assert one(r, query="q=a-b~c") == "a-b~c"
    assert one(rule("n", schema={"type": "integer"}), query="n=%34%32") == 42
    assert one(rule("a", schema=ARRAY), query="a=x%20y&a=z") == ["x y", "z"]
    assert one(rule("a b"), query="a+b=1") == "1"  # names decoded too
    assert one(rule("a b", schema=ARRAY), query="a+b=1&a%20b=2") == ["1", "2"]


def test_path_primitives_with_and_without_escapes() -> None:
    ints = rule("id", "path", {"type": "integer"}, required=True)
    assert one(ints, path={"id": "42"}) == 42
    assert one(ints, path={"id": "%34%32"}) == 42
    assert one(ints, path={"id": "4+2"}) == "4+2"  # "+" is itself in a path
    assert one(ints, path={"id": "\u00b2"}) == "\u00b2"
    assert violation(ints, path={"id": "%zz"}).rule == "encoding"
    text = rule("s", "path", STRING, required=True)
    assert one(text, path={"s": "a%20b+c"}) == "a b+c"


def test_the_same_set_reads_many_requests_independently() -> None:
    params = ParameterSet([rule("tag", schema=ARRAY), rule("n", schema={"type": "integer"})])
    first, _ = params.extract({}, "tag=a&tag=b&n=1", headers())
    second, problems = params.extract({}, "tag=c&n=x", headers())
    assert [v for _, v in first] == [["a", "b"], 1]
    assert [v for _, v in second] == [["c"], "x"] and problems == []
    again, more = params.extract({}, "tag=a&tag=b&n=1", headers())
    assert again == first and more is not problems


@pytest.mark.parametrize("where", ["path", "query", "header", "cookie"])
def test_inlined_readers_and_called_readers_agree(where: str) -> None:
    """extract reads a plain str itself for the commonest readers (string, integer,
    exploded array); anything else goes through the reader: both must agree."""
    ints = rule("n", where, {"type": "integer"}, required=True)
    text = rule("s", where, STRING, required=True)

    def read(r: ParameterRule, raw: str) -> Any:
        if where == "path":
            return one(r, path={r.name: raw})
        if where == "query":
            return one(r, query=f"{r.name}={raw}")
        if where == "header":
            return one(r, head=headers((r.name, raw)))
        return one(r, head=headers(("cookie", f"{r.name}={raw}")))

    assert read(ints, "42") == 42 and read(ints, "007") == 7
    assert read(ints, "-3") == -3  # not [0-9]+: through the reader
    assert read(ints, "x1") == "x1" and read(ints, "\u00b2") == "\u00b2"
    assert read(ints, "9" * 4001) == "9" * 4001
    assert read(text, "abc") == "abc"
    if where != "header":
        assert read(ints, "%34%32") == 42 and read(text, "a%20b") == "a b"
