"""Body parsers: what each refuses, and that its refusals never quote the body."""

from __future__ import annotations

import json

import orjson
import pytest

from apiward.openapi.bodies import BodyError, coerce_fields, parse_form, parse_json, parse_multipart

# parse_json: timeit on this machine, the 279-byte 11-field ORDER body of bench/validation.py:
# 1.15-1.2 µs (was 2.1-2.2; orjson.loads 0.6). See its docstring for the two paths.


def refused(call, *args, **kwargs) -> BodyError:
    with pytest.raises(BodyError) as info:
        call(*args, **kwargs)
    return info.value


# --- JSON -------------------------------------------------------------------------------


def test_parse_json_returns_the_value():
    body = b'{"a": [1, 2.5, "x:y", {"b": null}], "c": true, "d": "\\u00e9\\"q\\":"}'
    assert parse_json(body) == {"a": [1, 2.5, "x:y", {"b": None}], "c": True, "d": 'é"q":'}
    assert parse_json(b" 42 ") == 42
    assert parse_json(b'"s"') == "s"
    assert parse_json(b"-0") == 0


@pytest.mark.parametrize(
    "body",
    [b"", b" ", b"{", b"[1,2", b'{"a":1,}', b"{'a':1}", b"NaN", b"Infinity", b"-Infinity",
     b'{"a":1} x', b"\xff", b'"\\ud800"', b"\xef\xbb\xbf{}", b"01", b'{"a" 1}'],
)
def test_malformed_json_is_refused_with_a_position(body):
    err = refused(parse_json, body)
    assert err.rule == "json"
    assert "line 1 column" in err.message


def test_json_error_does_not_echo_the_body():
    err = refused(parse_json, b'{"secret": "hunter2" oops}')
    assert "hunter2" not in err.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": 1, "\\u0061": 2}',  # same key, spelled with an escape
        b'{"x": {"a": 1, "b": 2, "a": 3}}',  # nested
        b'[{"ok": 1}, {"k": 1, "k": 1}]',  # inside an array, same value
        b'{"a": {"x": 1}, "a": {"x": 1}}',
        b'{"k\\":": 1, "k\\":": 2}',  # a key holding '":'
        b'{"a:b": "c:d", "a:b": "e"}',
        b'{"\\u003a": 1, ":": 2}',  # the escape that defeats counting: exact path
        b'{"\\u003A": ":", "z": {"q": 1, "q": 2}}',
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(body):
    assert refused(parse_json, body).rule == "duplicate_key"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "b": {"a": 1}}',  # same key in different objects is fine
        b'[{"k": 1}, {"k": 2}]',
        b'{"a": "::::", "b": "\\":\\":"}',  # colons inside strings
        b'{"\\u003a": "\\u003a:", "x": ":"}',  # escaped colons, no duplicates
        b'{"a\\\\": 1, "a": 2}',  # "a\" and "a" differ
        b'{"\\u0061b": 1, "a": 2}',
    ],
)
def test_distinct_keys_are_not_taken_for_duplicates(body):
    parse_json(body)


def test_depth_limit():
    assert parse_json(b"[" * 64 + b"]" * 64, max_depth=64)
    assert refused(parse_json, b"[" * 65 + b"]" * 65, max_depth=64).rule == "depth"
    mixed = b'{"a":' * 33 + b"[" * 32 + b"1" + b"]" * 32 + b"}" * 33  # depth 65
    assert refused(parse_json, mixed, max_depth=64).rule == "depth"
    assert parse_json(mixed, max_depth=65)
    shallow_but_many = b"[" + b",".join([b"[[1]]"] * 500) + b"]"  # depth 3, 1501 brackets
    assert len(parse_json(shallow_but_many, max_depth=3)) == 500
    assert refused(parse_json, shallow_but_many, max_depth=2).rule == "depth"
    brackets_in_strings = b'["' + b"[" * 200 + b'", {"k": "{{{{"}]'
    assert parse_json(brackets_in_strings, max_depth=2)


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000,
                                  b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
def test_absurd_nesting_is_refused_as_depth(body):
    assert refused(parse_json, body).rule == "depth"


@pytest.mark.parametrize(
    "body",
    [
        b"1e400",
        b"[-1e400]",
        b"123456789012345678901234567890",  # a bare number too
        b'{"n": 123456789012345678901234567890}',
        b"[18446744073709551616]",  # 2**64
        b"[-9223372036854775809]",  # -2**63 - 1
        b'{"a": "12345678901234567890123", "n": 100000000000000000000}',
    ],
)
def test_numbers_that_lose_their_value_are_refused(body):
    assert refused(parse_json, body).rule == "number"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[18446744073709551615]", [2**64 - 1]),
        (b"[-9223372036854775808]", [-(2**63)]),
        (b'["123456789012345678901234567890"]', ["123456789012345678901234567890"]),
        (b"[0.123456789012345678901234567890]", [0.12345678901234568]),
        (b"[1e00000000000000000001]", [10.0]),
        (b"[1.5e-400]", [0.0]),
    ],
)
def test_long_digit_runs_that_keep_their_value_pass(body, expected):
    assert parse_json(body) == expected


# --- JSON: the compact round trip and the slower tests ------------------------------------
#
# A body that orjson.dumps gives back byte for byte (compact JSON) is taken after the depth
# test alone; any other goes through the colon counts and the digit-run search. Each case
# is run both ways: compact (orjson.dumps) and spaced (json.dumps, as Python clients send).

VALUES = [
    {"customer": {"name": "Ada", "email": "ada@example.com"}, "items": [{"sku": "A", "q": 2}],
     "at": "2026-11-24T10:00:00Z", "gift": False, "n": None, "x": 1.5, "e": -0.0},
    [1, 2, 3, [4, [5, [6]]], {}, [], ""],
    {"keys:with": "colons:", "brackets": "[[{{", "quote": 'a"b', "slash": "a\\b", "u": "é✓"},
    {"big": 2**64 - 1, "small": -(2**63), "long": 12345678901234567890, "s": "9" * 30},
    {"a": {"b": {"c": {"d": {}}}}},
    [],
    {},
]


@pytest.mark.parametrize("value", VALUES)
def test_compact_and_spaced_bodies_read_alike(value):
    compact, spaced = orjson.dumps(value), json.dumps(value).encode()
    assert compact != spaced or value in ([], {})
    assert parse_json(compact) == parse_json(spaced) == value


@pytest.mark.parametrize("spaced", [False, True])
@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b'{"a":1,"a":2}', "duplicate_key"),
        (b'{"a":1,"\\u0061":2}', "duplicate_key"),  # the round trip spells it "a": shorter
        (b'[{"k":1},{"k":1,"k":1}]', "duplicate_key"),
        (b'{"x":{"a":1,"a":1}}', "duplicate_key"),
        (b'[18446744073709551616]', "number"),  # 2**64: comes back as 1.8446744073709552e19
        (b'{"n":-9223372036854775809}', "number"),
        (b'{"n":100000000000000000000,"s":"1"}', "number"),
        (b"[1e400]", "number"),
        (b"[[[[1]]]]", "depth"),
        (b'{"a":{"b":{"c":{"d":1}}}}', "depth"),
        (b'{"a":[[[[1]]]],"a":1}', "depth"),  # the deep part was the dropped duplicate
        (b'{"a":1,"a":[[[[1]]]]}', "depth"),
    ],
)
def test_refusals_hold_on_both_paths(body, rule, spaced):
    if spaced:
        body = body.replace(b":", b": ").replace(b",", b", ")
    assert refused(parse_json, body, max_depth=3).rule == rule


@pytest.mark.parametrize("spaced", [False, True])
def test_depth_on_both_paths(spaced):
    def body(value):
        return json.dumps(value).encode() if spaced else orjson.dumps(value)

    three = {"a": [{"b": 1}, {"c": 2}], "d": "[[[[[[", "e": {}}
    assert parse_json(body(three), max_depth=3) == three
    assert refused(parse_json, body(three), max_depth=2).rule == "depth"
    empty_at_four = [[[[]]]]
    assert refused(parse_json, body(empty_at_four), max_depth=3).rule == "depth"
    assert parse_json(body(empty_at_four), max_depth=4) == empty_at_four
    wide = [[[1]]] * 300  # depth 3, 900 brackets: past the cheap bounds
    assert parse_json(body(wide), max_depth=3) == wide
    assert refused(parse_json, body(wide), max_depth=2).rule == "depth"


@pytest.mark.parametrize("levels", [199, 200, 201, 300, 1000])
def test_deep_limits_need_no_python_recursion(levels):
    body = b"[" * levels + b"]" * levels
    assert type(parse_json(body, max_depth=levels)) is list  # (== would recurse 1000 deep)
    assert type(parse_json(body, max_depth=levels + 5)) is list
    assert refused(parse_json, body, max_depth=levels - 1).rule == "depth"


@pytest.mark.parametrize("levels", [199, 200, 255, 300])
def test_objects_deeper_than_orjson_dumps_goes_are_still_checked(levels):
    """orjson.dumps stops at 254 levels: past that (a max_depth of 255 or more), the
    duplicate keys are looked for by the json module instead."""
    deep = b'{"a":' * (levels - 1) + b'{"k":[1]}' + b"}" * (levels - 1)  # levels + 1 deep
    assert parse_json(deep, max_depth=levels + 1)
    assert refused(parse_json, deep, max_depth=levels).rule == "depth"
    twice = deep.replace(b'{"k":[1]}', b'{"k":[1],"k":2}')
    assert refused(parse_json, twice, max_depth=levels + 1).rule == "duplicate_key"
    held = deep.replace(b'{"k":[1]}', b'{"k":[[1]],"k":2}')  # the dropped "k" was deepest
    assert refused(parse_json, held, max_depth=levels + 1).rule == "depth"
    big = deep.replace(b"[1]", b"[18446744073709551616]")
    assert refused(parse_json, big, max_depth=levels + 1).rule == "number"


def test_objects_deeper_than_python_recursion_are_refused_as_depth():
    deep = b'{"a":' * 1010 + b"1" + b"}" * 1010  # orjson takes 1024 levels; json, ~1000
    assert refused(parse_json, deep, max_depth=2000).rule == "depth"


def test_the_round_trip_does_not_mistake_long_integers_in_range():
    assert parse_json(b"[18446744073709551615,-9223372036854775808]") == [2**64 - 1, -(2**63)]
    assert parse_json(b'{"n":1e19}') == {"n": 1e19}  # a float literal is no integer
    assert parse_json(b'{"n":10000000000000000000}') == {"n": 10**19}


# --- forms ------------------------------------------------------------------------------


def test_parse_form():
    body = b"a=1&b=x+y%2Bz&a=2&&empty=&flag&%C3%A9=%E2%9C%93"
    assert parse_form(body, "utf-8") == {
        "a": ["1", "2"], "b": ["x y+z"], "empty": [""], "flag": [""], "é": ["✓"]}
    assert parse_form(b"", "utf-8") == {}
    assert parse_form(b"n=%E9", "ISO-8859-1") == {"n": ["é"]}
    assert parse_form(b"n=1", None) == {"n": ["1"]}


@pytest.mark.parametrize("body", [b"a=%", b"a=%2", b"a=%zz", b"a=100%", b"%G1=x", b"a=%%41"])
def test_form_refuses_invalid_percent_encoding(body):
    assert refused(parse_form, body, "utf-8").rule == "form"


def test_form_refuses_bytes_that_are_not_text_and_odd_charsets():
    assert refused(parse_form, b"a=%FF", "utf-8").rule == "form"
    assert refused(parse_form, b"a=\xff", "utf-8").rule == "form"
    assert refused(parse_form, b"a=1", "utf-7").rule == "form"
    assert refused(parse_form, b"a=1", "no-such-charset").rule == "form"


# --- multipart --------------------------------------------------------------------------

CT = "multipart/form-data; boundary=XyZ"


def part(name: str, data: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"Content-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return b"--XyZ\r\n" + head.encode() + b"\r\n" + data + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--XyZ--\r\n"


def test_parse_multipart_fields_and_files():
    body = multipart(
        part("name", "Zoë".encode()),
        part("tag", b"a"),
        part("tag", b"b"),
        part("photo", b"\x89PNG" + b"\0" * 100, "p.png", "image/png"),
        part("doc", b"--XyZ is not a boundary without CRLF", "d.txt"),
    )
    fields, files = parse_multipart(body, CT, 1000, 10)
    assert fields == {"name": ["Zoë"], "tag": ["a", "b"]}
    assert files == {"photo": [("p.png", "image/png", 104)],
                     "doc": [("d.txt", "application/octet-stream", 36)]}


def test_quoted_boundary_and_empty_body():
    body = multipart(part("a", b"1")).replace(b"XyZ", b"a b:c")
    assert parse_multipart(body, 'multipart/form-data; boundary="a b:c"', 10, 10)[0] == {
        "a": ["1"]}
    assert parse_multipart(b"--XyZ--\r\n", CT, 10, 10) == ({}, {})


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "a" * 71,
        'multipart/form-data; boundary="ends with space "',
        "multipart/form-data; boundary=a; boundary=b",
        'multipart/form-data; boundary="x\\"y"',
        "multipart/mixed; boundary=XyZ",
        "application/json",
        "",
    ],
)
def test_missing_or_invalid_boundary(content_type):
    assert refused(parse_multipart, multipart(part("a", b"1")), content_type, 10, 10).rule \
        == "multipart"


def test_part_limits():
    many = multipart(*[part(f"f{i}", b"x") for i in range(11)])
    assert len(parse_multipart(many, CT, 10, 11)[0]) == 11
    assert refused(parse_multipart, many, CT, 10, 10).rule == "multipart"
    big_file = multipart(part("f", b"x" * 101, "f.bin"))
    assert refused(parse_multipart, big_file, CT, 100, 10).rule == "file_size"
    assert parse_multipart(big_file, CT, 101, 10)[1]["f"][0][2] == 101
    big_field = multipart(part("f", b"x" * 101))
    assert refused(parse_multipart, big_field, CT, 100, 10).rule == "field_size"


@pytest.mark.parametrize(
    "body",
    [
        part("a", b"1"),  # no closing boundary
        b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n12",  # truncated
        b"preamble\r\n" + multipart(part("a", b"1")),
        multipart(b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n"),  # no disposition
        multipart(b"--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n"),
        multipart(b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n"),  # no name
        multipart(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n"
                  b"Content-Disposition: form-data; name=\"b\"\r\n\r\nx\r\n"),
        multipart(part("a", b"\xff\xfe")),  # field not UTF-8
        b"--XyZ\r\nbroken header line\r\n\r\nx\r\n--XyZ--\r\n",
        b"",
    ],
)
def test_malformed_multipart(body):
    err = refused(parse_multipart, body, CT, 100, 10)
    assert err.rule == "multipart"


def test_multipart_error_does_not_echo_long_names():
    body = multipart(part("n" * 500, b"x" * 20))
    err = refused(parse_multipart, body, CT, 10, 10)
    assert err.rule == "field_size"
    assert len(err.message) < 120


# --- coercion ---------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "price": {"type": "number"},
        "ok": {"type": "boolean"},
        "name": {"type": "string"},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "maybe": {"type": ["integer", "null"]},
        "ref": {"$ref": "#/components/schemas/N"},
    },
}


def test_coerce_fields_converts_declared_types():
    fields = {"count": ["12"], "price": ["-1.5e2"], "ok": ["true"], "name": ["007"],
              "ids": ["1", "2"], "tags": ["x"], "maybe": ["3"], "other": ["5"]}
    assert coerce_fields(fields, SCHEMA) == {
        "count": 12, "price": -150.0, "ok": True, "name": "007", "ids": [1, 2],
        "tags": ["x"], "maybe": 3, "other": "5"}
    assert coerce_fields({"price": ["3"]}, SCHEMA) == {"price": 3}


@pytest.mark.parametrize(
    ("name", "raw"),
    [("count", "1.5"), ("count", " 1"), ("count", "1_000"), ("count", "0x10"), ("count", "+1"),
     ("count", "01"), ("count", "9" * 400), ("price", "nan"), ("price", "inf"),
     ("price", "1e99999"), ("ok", "True"), ("ok", "1"), ("ok", "")],
)
def test_values_that_do_not_convert_stay_strings(name, raw):
    assert coerce_fields({name: [raw]}, SCHEMA) == {name: raw}


def test_repeated_scalar_stays_a_list_and_arrays_split_per_encoding():
    assert coerce_fields({"count": ["1", "2"]}, SCHEMA) == {"count": ["1", "2"]}
    assert coerce_fields({"other": ["a", "b"]}, SCHEMA) == {"other": ["a", "b"]}
    assert coerce_fields({"ids": ["1,2,x"]}, SCHEMA,
                         encoding={"ids": {"style": "form", "explode": False}}) == {
        "ids": [1, 2, "x"]}
    assert coerce_fields({"ids": ["1|2"]}, SCHEMA,
                         encoding={"ids": {"style": "pipeDelimited"}}) == {"ids": [1, 2]}
    assert coerce_fields({"ids": ["1,2"]}, SCHEMA) == {"ids": ["1,2"]}  # explode by default


def test_ref_properties_need_a_resolver():
    assert coerce_fields({"ref": ["4"]}, SCHEMA) == {"ref": "4"}
    resolved = coerce_fields({"ref": ["4"]}, SCHEMA, resolve=lambda node: {"type": "integer"})
    assert resolved == {"ref": 4}


def test_coerce_fields_without_a_usable_schema():
    assert coerce_fields({"a": ["1"]}, {}) == {"a": "1"}
    assert coerce_fields({"a": ["1"]}, None) == {"a": "1"}
    assert coerce_fields({"a": ["1"]}, {"properties": []}) == {"a": "1"}
