"""Learned schemas: plain calls on ShapeLearner, QueryLearner and infer_format."""

from __future__ import annotations

import random
import string
from typing import Any
from urllib.parse import urlencode

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi

from apiward.inventory.schemas import (
    _DATE_TIME,
    _EMAIL,
    _IPV4,
    _URI,
    _UUID,
    FORMAT_CHECKS,
    POSITION_BYTES,
    QueryLearner,
    ShapeLearner,
    infer_format,
    is_secret_name,
    looks_like_value,
    state_bound,
)
from apiward.openapi.params import ParameterSet, compile_parameter
from apiward.wire.headers import Headers

UUID = "123e4567-e89b-12d3-a456-426614174000"


def learned(*values: Any, **config: Any) -> ShapeLearner:
    learner = ShapeLearner(**config)
    for value in values:
        learner.observe(value)
    return learner


def schema_of(*values: Any, **config: Any) -> dict:
    return learned(*values, **config).schema()


def validator(schema: dict) -> Any:
    """The gateway's way: 2020-12 with formats enforced; refuses an invalid schema."""
    assert jsonschema_rs.meta.is_valid(schema), schema
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def dumps(learner: ShapeLearner | QueryLearner) -> bytes:
    return orjson.dumps(learner.to_dict())


# --- types -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (True, "boolean"), (3, "integer"), (2.5, "number"), (None, "null"), ("x", "string"),
    ({}, "object"), ([], "array"),
])
def test_one_type(value: Any, expected: str) -> None:
    assert schema_of(value)["type"] == expected


def test_nothing_seen_is_the_empty_schema() -> None:
    assert ShapeLearner().schema() == {}
    assert ShapeLearner().count == 0


def test_integers_widen_to_number_and_booleans_stay_apart() -> None:
    assert schema_of(1, 2)["type"] == "integer"
    assert schema_of(1, 2.5)["type"] == "number"
    assert schema_of(1, True)["type"] == ["integer", "boolean"]  # bool is no integer here


def test_several_types_are_a_type_list_with_each_types_keywords() -> None:
    schema = schema_of({"a": 1}, [1, 2], "abc", 4, None)
    assert schema == {
        "type": ["object", "array", "string", "integer", "null"],
        "properties": {"a": {"type": "integer"}}, "required": ["a"],
        "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
        "minLength": 3, "maxLength": 3,
    }
    check = validator(schema)
    assert all(check.is_valid(value) for value in ({"a": 1}, [1, 2], "abc", 4, None))
    assert not check.is_valid(True)


def test_nulls_make_a_field_nullable() -> None:
    schema = schema_of({"a": "x"}, {"a": None})
    assert schema["properties"]["a"] == {"type": ["string", "null"], "minLength": 1,
                                         "maxLength": 1}
    assert schema["required"] == ["a"]  # present, though null


def test_count_is_values_observed() -> None:
    assert learned(1, {}, [], None).count == 4


def test_a_value_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError, match="set"):
        ShapeLearner().observe({"a": {1, 2}})


# --- required ----------------------------------------------------------------------------


def bodies(total: int, with_b: int) -> list[dict]:
    return [{"a": 1, "b": 2} if i < with_b else {"a": 1} for i in range(total)]


def test_required_when_seen_in_at_least_95_percent() -> None:
    assert schema_of(*bodies(20, 19))["required"] == ["a", "b"]  # 95%
    assert schema_of(*bodies(20, 18))["required"] == ["a"]  # 90%
    assert schema_of(*bodies(100, 95))["required"] == ["a", "b"]
    assert schema_of(*bodies(100, 94))["required"] == ["a"]


def test_required_ratio_one_is_every_object() -> None:
    learner = learned(*bodies(100, 99))
    assert learner.schema()["required"] == ["a", "b"]
    assert learner.schema(required_ratio=1.0)["required"] == ["a"]


def test_required_counts_objects_not_other_types_at_the_position() -> None:
    schema = schema_of({"a": 1}, {"a": 2}, "text", "text", "text")
    assert schema["required"] == ["a"]  # in both objects; the strings do not dilute it


# --- strings, formats ---------------------------------------------------------------------


def test_strings_keep_the_lengths_seen() -> None:
    schema = schema_of("ab", "abcdef", "abc")
    assert (schema["minLength"], schema["maxLength"]) == (2, 6)


@pytest.mark.parametrize(("text", "expected"), [
    (UUID, "uuid"), (UUID.upper(), "uuid"),
    ("2024-02-29", "date"), ("2024-01-31T23:59:59Z", "date-time"),
    ("2024-01-31t10:00:00.123456+05:30", "date-time"),
    ("ada@example.com", "email"), ("first.last+tag@mail.example.co.uk", "email"),
    ("https://example.com/a/b?c=d#e", "uri"), ("http://localhost:8080/", "uri"),
    ("192.168.0.1", "ipv4"), ("0.0.0.0", "ipv4"),
    ("2023-02-29", None), ("2024-13-01", None), ("2024-01-01T24:00:00Z", None),
    ("2024-01-01T00:00:00", None), ("2024-01-01 00:00:00Z", None),
    ("2024-01-01T23:59:60Z", None),  # a leap second: valid only at 23:59 UTC, not inferred
    ("a@b", None), ("a..b@example.com", None), ("ada@localhost", None),
    ("ftp://example.com", None), ("http://x.com/a b", None), ("01.2.3.4", None),
    ("256.1.1.1", None), ("123e4567e89b12d3a456426614174000", None), ("hello", None), ("", None),
    ("\u0661\u0662\u0663\u0664-\u0660\u0661-\u0660\u0661", None),  # Arabic-Indic digits
])
def test_infer_format(text: str, expected: str | None) -> None:
    assert infer_format(text) == expected


def test_a_format_is_kept_only_when_every_sample_has_it() -> None:
    assert schema_of(UUID, UUID.replace("1", "2"))["format"] == "uuid"
    assert "format" not in schema_of(UUID, "not-a-uuid")
    assert "format" not in schema_of("2024-01-01", "2024-01-01T00:00:00Z")  # date ≠ date-time


FORMAT_SAMPLES = {
    "uuid": st.from_regex(_UUID, fullmatch=True),
    "date-time": st.from_regex(_DATE_TIME, fullmatch=True),
    "date": st.dates().map(lambda d: d.isoformat()),
    "email": st.from_regex(_EMAIL, fullmatch=True) | st.emails(),
    "uri": st.from_regex(_URI, fullmatch=True),
    "ipv4": st.from_regex(_IPV4, fullmatch=True) | st.ip_addresses(v=4).map(str),
}


@settings(max_examples=300, deadline=None)
@given(st.one_of(*FORMAT_SAMPLES.values(), st.text(), st.text(alphabet="0123456789-:T.Z@h"),
                 st.from_regex(r"[0-9]{4}-[0-9a-z@.:/-]{2,30}", fullmatch=True)))
def test_an_inferred_format_is_one_jsonschema_rs_accepts(text: str) -> None:
    """A subset of the gateway's format checks: a learned format never refuses its samples;
    and ``FORMAT_CHECKS`` agrees with ``infer_format`` (what a learner relies on)."""
    found = infer_format(text)
    for name, check in FORMAT_CHECKS.items():
        assert check(text) == (found == name), (name, text)
    if found is not None:
        assert jsonschema_rs.validator_for({"format": found},
                                           validate_formats=True).is_valid(text), text


@pytest.mark.parametrize("name", list(FORMAT_SAMPLES))
def test_each_format_is_inferred_from_its_own_samples(name: str) -> None:
    examples = {"uuid": UUID, "date-time": "2024-05-06T07:08:09Z", "date": "2024-05-06",
                "email": "a@example.org", "uri": "https://a.example/x", "ipv4": "10.0.0.1"}
    assert infer_format(examples[name]) == name


# --- enums and their privacy rules ---------------------------------------------------------


def statuses(count: int, values: list[str], field: str = "status") -> list[dict]:
    return [{field: values[i % len(values)]} for i in range(count)]


def test_an_enum_for_a_small_set_of_strings_seen_many_times() -> None:
    schema = schema_of(*statuses(20, ["paid", "pending", "refunded"]))
    assert schema["properties"]["status"] == {"type": "string",
                                              "enum": ["paid", "pending", "refunded"]}


def test_no_enum_before_enum_min_count_values() -> None:
    prop = schema_of(*statuses(19, ["paid", "pending"]))["properties"]["status"]
    assert "enum" not in prop
    assert prop == {"type": "string", "minLength": 4, "maxLength": 7}


def test_no_enum_beyond_max_enum_values_and_the_candidates_are_forgotten() -> None:
    values = [f"v{letter}" for letter in "abcdefghijk"]  # 11 distinct
    learner = learned(*statuses(50, values))
    assert "enum" not in learner.schema()["properties"]["status"]
    assert b"vab" not in dumps(learner) and b"\"va\"" not in dumps(learner)
    assert "enum" in schema_of(*statuses(50, values[:10]))["properties"]["status"]
    assert "enum" in schema_of(*statuses(50, values[:3]), max_enum=3)["properties"]["status"]
    assert "enum" not in schema_of(*statuses(50, values[:4]),
                                   max_enum=3)["properties"]["status"]


def test_a_nullable_enum_lists_null() -> None:
    values = [{"s": "on"}, {"s": "off"}, {"s": None}] * 10
    prop = schema_of(*values)["properties"]["s"]
    assert prop == {"type": ["string", "null"], "enum": ["off", "on", None]}
    assert validator(prop).is_valid(None)


def test_no_enum_where_other_types_share_the_position() -> None:
    prop = schema_of(*statuses(30, ["a", "b"]), {"status": 1})["properties"]["status"]
    assert "enum" not in prop and prop["type"] == ["string", "integer"]


@pytest.mark.parametrize("field", [
    "password", "newPassword", "api_key", "apiKey", "x-auth-token", "accessToken", "secret",
    "client_secret", "Authorization", "card", "card_number", "ssn", "email", "phone",
    "last_name", "username", "pin", "otp", "session_id", "cvv",
])
def test_no_enum_for_a_field_whose_name_looks_secret(field: str) -> None:
    learner = learned(*statuses(100, ["alpha", "beta"], field))
    assert is_secret_name(field)
    assert "enum" not in learner.schema()["properties"][field]
    assert b"alpha" not in dumps(learner)  # not even as a candidate in the state


@pytest.mark.parametrize("field", ["status", "kind", "currency", "monkey", "sort", "color"])
def test_ordinary_names_are_not_secret(field: str) -> None:
    assert not is_secret_name(field)


def test_no_enum_below_a_secret_name() -> None:
    values = [{"credentials": {"kind": "basic", "items": ["x", "y"]}}] * 30
    learner = learned(*values)
    credentials = learner.schema()["properties"]["credentials"]
    assert "enum" not in credentials["properties"]["kind"]
    assert "enum" not in credentials["properties"]["items"]["items"]
    assert b"basic" not in dumps(learner)


def test_a_secrets_lengths_are_kept_to_a_power_of_two() -> None:
    prop = schema_of({"password": "hunter2"}, {"password": "correct horse battery"})
    assert prop["properties"]["password"] == {"type": "string", "minLength": 4,
                                              "maxLength": 32}


@pytest.mark.parametrize("value", [
    UUID, "ada@example.com", "2024-01-01", "ORD-12345", "a1b2c3d4e5f6", "deadbeef01",
    "eyJhbGciOiJIUzI1NiJ9", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "free text here",
    "x" * 33, "naïve", "a\nb",
])
def test_no_enum_for_values_that_look_like_data(value: str) -> None:
    learner = learned(*statuses(40, ["paid", value]))
    assert "enum" not in learner.schema()["properties"]["status"]
    assert orjson.dumps(value)[1:-1] not in dumps(learner)


@pytest.mark.parametrize("value", ["paid", "in_progress", "EUR", "en-US", "text/plain",
                                   "v2", "h264", ""])
def test_words_are_enum_safe(value: str) -> None:
    assert not looks_like_value(value)
    assert schema_of(*statuses(20, [value]))["properties"]["status"]["enum"] == [value]


def test_the_state_holds_no_values_but_enum_words() -> None:
    """Numbers, tokens, ids, free text: none of them is in the stored state."""
    rng = random.Random(7)
    secrets = []
    learner = ShapeLearner()
    for i in range(200):
        token = "".join(rng.choices(string.ascii_letters + string.digits, k=24))
        amount = rng.randrange(10**6, 10**9)
        note = f"note {rng.random()}"
        secrets += [token, str(amount), note]
        learner.observe({"token": token, "amount": amount, "note": note, "id": i * 7919 + 10**5,
                         "customer": {"email": f"u{i}@example.com",
                                      "state": ["on", "off"][i % 2]},
                         "scores": [rng.random() for _ in range(3)]})
    state = dumps(learner)
    assert not [value for value in secrets if value.encode() in state]
    assert b"@example.com" not in state
    customer = learner.schema()["properties"]["customer"]
    assert customer["properties"]["state"]["enum"] == ["off", "on"]


# --- arrays and nesting ------------------------------------------------------------------


def test_arrays_of_objects_merge_their_items() -> None:
    schema = schema_of({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2.5}]},
                       {"items": [{"sku": "c", "gift": True}]},
                       {"items": []})
    items = schema["properties"]["items"]
    assert items["minItems"] == 0 and items["maxItems"] == 2
    assert items["items"] == {
        "type": "object",
        "properties": {"sku": {"type": "string", "minLength": 1, "maxLength": 1},
                       "qty": {"type": "number"}, "gift": {"type": "boolean"}},
        "required": ["sku"],  # 3 of 3 items; qty 2 of 3
    }


def test_an_array_always_empty_has_no_item_schema() -> None:
    assert schema_of([], []) == {"type": "array", "minItems": 0, "maxItems": 0}


def test_nested_objects() -> None:
    schema = schema_of({"order": {"customer": {"id": UUID, "vip": False}, "total": 9.5}})
    customer = schema["properties"]["order"]["properties"]["customer"]
    assert customer == {"type": "object", "required": ["id", "vip"], "properties": {
        "id": {"type": "string", "format": "uuid", "minLength": 36, "maxLength": 36},
        "vip": {"type": "boolean"}}}


def test_keys_that_look_like_values_make_a_map() -> None:
    values = [{"rates": {UUID: 1.5, "2024-01-01": 2, "10042": 3, "USD": 1}}]
    rates = schema_of(*values)["properties"]["rates"]
    assert list(rates["properties"]) == ["USD"]
    assert rates["additionalProperties"] == {"type": "number"}
    assert UUID.encode() not in dumps(learned(*values))


# --- bounds ------------------------------------------------------------------------------


def test_properties_beyond_max_properties_are_counted_not_listed() -> None:
    body = {f"field_{letter}": 1 for letter in "abcdefgh"}
    learner = learned(body, {"field_z": "x"}, max_properties=5)
    schema = learner.schema()
    assert list(schema["properties"]) == ["field_a", "field_b", "field_c", "field_d",
                                          "field_e"]
    assert schema["additionalProperties"] is True
    assert learner.to_dict()["root"]["objects"]["extra"] == 4
    assert validator(schema).is_valid(body)


def test_long_or_unprintable_names_are_not_stored() -> None:
    long_name, odd = "n" * 65, "a\x00b"
    schema = schema_of({long_name: 1, odd: 2, "n" * 64: 3})
    assert list(schema["properties"]) == ["n" * 64]
    assert schema["additionalProperties"] == {"type": "integer"}


def test_depth_beyond_max_depth_is_the_empty_schema() -> None:
    value = {"a": {"b": {"c": {"d": 1}}}}
    schema = schema_of(value, max_depth=2)
    assert schema["properties"]["a"]["properties"]["b"] == {}
    assert schema["properties"]["a"]["required"] == ["b"]
    assert schema_of(value, max_depth=0) == {}
    assert schema_of([[[1]]], max_depth=2)["items"]["items"] == {}


def test_a_deep_document_costs_only_max_depth_levels() -> None:
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    learner = learned(deep)
    assert len(dumps(learner)) < 1000


def test_the_node_budget_bounds_the_positions() -> None:
    rng = random.Random(1)
    learner = ShapeLearner(max_nodes=20)
    values = [{f"k{rng.randrange(100)}": {"x": [1], "y": {"z": "w"}} for _ in range(5)}
              for _ in range(50)]
    for value in values:
        learner.observe(value)
    assert learner._nodes <= 20
    check = validator(learner.schema(required_ratio=1.0))
    assert all(check.is_valid(value) for value in values)


WIDE_CHARACTERS = [chr(c) for c in range(0x100, 0x3000) if chr(c).isprintable()]
WIDE_CHARACTERS += ["\U0001d518", "\U0001f600", '"', "\\"]
WORDS = ["id", "name", "status", "items", "meta", "data", "paid", "pending", "a", "b"]

SCALARS = (
    lambda rng: None, lambda rng: True, lambda rng: rng.getrandbits(40),
    lambda rng: rng.random() * 1e6, lambda rng: rng.choice(WORDS), lambda rng: UUID,
    lambda rng: "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(1, 12))),
    lambda rng: "".join(rng.choices(string.printable, k=rng.randrange(80))),
    lambda rng: "2024-01-01T00:00:00Z", lambda rng: "x" * rng.randrange(1000),
)


def random_document(rng: random.Random, depth: int = 0) -> Any:
    """JSON with random keys (words, ids, wide characters, names too long to keep) and
    random shapes and scalars."""
    roll = rng.random()
    if depth > 9 or roll < 0.4 + depth / 15:
        return SCALARS[rng.randrange(len(SCALARS))](rng)
    if roll < 0.6:
        return [random_document(rng, depth + 1) for _ in range(rng.randrange(4))]
    document = {}
    for _ in range(rng.randrange(1, 5)):
        kind = rng.random()
        if kind < 0.4:
            key = "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(1, 10)))
        elif kind < 0.6:
            key = "".join(rng.choices(WIDE_CHARACTERS, k=rng.randrange(1, 70)))
        elif kind < 0.8:
            key = f"{rng.getrandbits(32):x}"
        else:
            key = rng.choice(WORDS)
        document[key] = random_document(rng, depth + 1)
    return document


STATE_BOUND = state_bound()


def test_100k_random_documents_stay_under_the_bound() -> None:
    rng = random.Random(2024)
    learner = ShapeLearner()
    for _ in range(100_000):
        learner.observe(random_document(rng))
    size = len(dumps(learner))
    assert size < STATE_BOUND, size
    assert learner._nodes <= learner.max_nodes
    print(f"100k random documents: {size} bytes, {learner._nodes} positions")


def test_the_worst_case_state_stays_under_the_bound() -> None:
    """Every position as large as it can be: 64-character names of 4-byte characters, every
    type, ten 32-character enum candidates, an array, an object, a map, an extra key, and
    every count 16 digits long."""
    candidates = ["".join(random.Random(i).choices("abcdefghij_.:/+-", k=32))
                  for i in range(10)]
    leaves = [None, True, 1, 1.5, [[1]], {UUID: 1}, *candidates]

    def tree(depth: int, stop: int, leaf: Any) -> Any:
        if depth == stop:
            return leaf
        return {"\U0001d518" * 61 + suffix: tree(depth + 1, stop, leaf)
                for suffix in ("abc", "abd", "abe")}

    learner = ShapeLearner()
    for stop in range(8):
        for leaf in leaves:
            learner.observe(tree(0, stop, leaf))
    learner.observe({"one more key": 1})
    assert learner._nodes == 256
    state = learner.to_dict()

    def bump(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: bump(value) for key, value in node.items()}
        if isinstance(node, list):
            return [bump(value) for value in node]
        return 10**15 if type(node) is int else node

    state["root"] = bump(state["root"])
    assert ShapeLearner.from_dict(state)._nodes == 256
    size = len(orjson.dumps(state))
    assert size < STATE_BOUND, size
    print(f"worst case: {size} bytes, {size / 256:.0f} per position")


def test_the_largest_position_is_under_position_bytes() -> None:
    """What ``state_bound`` is made of: one property with every type, a full enum, a name
    of 64 four-byte characters, both stand-ins, counts of 19 digits."""
    name = "\U0001d518" * 64
    candidates = ["".join(random.Random(i).choices("abcdefghij_.:/+-", k=32))
                  for i in range(10)]
    learner = ShapeLearner(max_nodes=2)  # the root and this one: its children are stand-ins
    for value in (None, True, 1, 1.5, [1], {"a": 1}, {"123456": 1}, *candidates):
        learner.observe({name: value})
    position = learner.to_dict()["root"]["objects"]["properties"][name]
    assert position["strings"]["enum"] == sorted(candidates)
    assert position["arrays"]["items"]["any"] and position["objects"]["map"]["any"]
    assert position["objects"]["extra"] == 1

    def bump(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: bump(value) for key, value in node.items()}
        return 10**18 if type(node) is int else node

    size = len(orjson.dumps({name: bump(position)}))
    assert size < POSITION_BYTES, size


# --- merge and state ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["paid", "pending", UUID, "2024-01-01", "a@example.com",
                       "https://x.example/", "10.1.2.3", "2024-01-01T00:00:00Z"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "c", "status", "items", "id", "token"]),
                      children, max_size=4),
    max_leaves=20,
)
LARGE = {"max_nodes": 100_000}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=30), st.lists(json_values, max_size=30))
def test_merge_equals_one_learner_fed_everything(first: list, second: list) -> None:
    one, two = learned(*first, **LARGE), learned(*second, **LARGE)
    one.merge(two)
    everything = learned(*first, *second, **LARGE)
    assert one.to_dict() == everything.to_dict()
    assert one.schema() == everything.schema()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, min_size=1, max_size=40))
def test_every_learned_schema_accepts_every_value_observed(values: list) -> None:
    learner = learned(*values, enum_min_count=3)
    strict = validator(learner.schema(required_ratio=1.0))
    assert all(strict.is_valid(value) for value in values)
    usual = validator(learner.schema())  # 95%: only a missing "nearly all" field is refused
    for value in values:
        for error in usual.iter_errors(value):
            assert isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required), error


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=30), st.integers(1, 6), st.integers(0, 4),
       st.lists(json_values, max_size=10))
def test_bounded_learners_stay_sound_after_merge(values: list, max_properties: int,
                                                 max_depth: int, more: list) -> None:
    config = {"max_properties": max_properties, "max_depth": max_depth, "max_nodes": 12,
              "max_enum": 2, "enum_min_count": 2}
    half = len(values) // 2
    one, two = learned(*values[:half], **config), learned(*values[half:], **config)
    one.merge(two)
    assert one._nodes <= 12
    for value in more:
        one.observe(value)
    check = validator(one.schema(required_ratio=1.0))
    assert all(check.is_valid(value) for value in [*values, *more])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=30), st.lists(json_values, max_size=10))
def test_to_dict_round_trips(values: list, more: list) -> None:
    learner = learned(*values, max_nodes=30, max_properties=3)
    state = orjson.loads(dumps(learner))
    copy = ShapeLearner.from_dict(state)
    assert copy.to_dict() == learner.to_dict()
    assert copy._nodes == learner._nodes
    for value in more:  # and it goes on learning alike
        learner.observe(value)
        copy.observe(value)
    assert copy.to_dict() == learner.to_dict()


def test_merge_past_a_cap_forgets_what_the_other_left_unlisted() -> None:
    """The other learner listed a and c and counted b as extra: b's values there are
    unknown, so b says nothing more; and a new key after an uncounted one is not listed."""
    one = learned({"a": None, "b": None}, max_properties=2)
    two = learned({"a": None, "c": None, "b": False}, max_properties=2)
    one.merge(two)
    schema = one.schema()
    assert schema["properties"] == {"a": {"type": "null"}, "b": {}}
    assert schema["additionalProperties"] is True
    assert validator(schema).is_valid({"a": None, "c": None, "b": False})


def test_merge_forgets_what_the_other_could_not_describe() -> None:
    shallow = learned({"a": {"b": 1}}, max_depth=1)
    deep = learned({"a": {"c": "x"}})
    deep.merge(shallow)
    assert deep.schema()["properties"]["a"] == {}
    assert validator(deep.schema()).is_valid({"a": {"b": 1}})


def test_merge_applies_the_receivers_bounds() -> None:
    wide = learned({f"f{letter}": 1 for letter in "abcdefgh"})
    narrow = ShapeLearner(max_properties=3)
    narrow.merge(wide)
    assert len(narrow.schema()["properties"]) == 3
    assert narrow.to_dict()["root"]["objects"]["extra"] == 5


@pytest.mark.parametrize("state", [
    None, {}, {"version": 2}, {"version": 1, "config": {}},
    {"version": 1, "config": ShapeLearner().to_dict()["config"], "root": []},
    {"version": 1, "config": ShapeLearner().to_dict()["config"], "root": {"count": -1}},
    {"version": 1, "config": ShapeLearner().to_dict()["config"],
     "root": {"count": 1, "strings": {"count": 1, "min_length": 1, "max_length": 1,
                                      "format": "zip"}}},
])
def test_from_dict_refuses_what_is_not_a_state(state: Any) -> None:
    with pytest.raises(ValueError, match="learned"):
        ShapeLearner.from_dict(state)


def test_from_dict_applies_the_privacy_rules_again() -> None:
    """A state written before a name counted as secret loses its enum when loaded."""
    learner = learned(*statuses(30, ["alpha", "beta"]))
    state = orjson.loads(dumps(learner).replace(b'"status"', b'"token"'))
    assert b"alpha" not in orjson.dumps(ShapeLearner.from_dict(state).to_dict())


# --- query parameters --------------------------------------------------------------------


def queried(*queries: dict[str, list[str]], **config: Any) -> QueryLearner:
    learner = QueryLearner(**config)
    for query in queries:
        learner.observe(query)
    return learner


def parameter(learner: QueryLearner, name: str, **kwargs: Any) -> dict:
    return next(p for p in learner.parameters(**kwargs) if p["name"] == name)


@pytest.mark.parametrize(("values", "schema"), [
    (["1", "20", "-3"], {"type": "integer"}),
    (["1", "2.5", "1e3"], {"type": "number"}),
    (["true", "false"], {"type": "boolean"}),
    ([UUID], {"type": "string", "format": "uuid", "minLength": 36, "maxLength": 36}),
    (["2024-01-01"], {"type": "string", "format": "date", "minLength": 10, "maxLength": 10}),
    (["2024-01-01T00:00:00Z"], {"type": "string", "format": "date-time", "minLength": 20,
                                "maxLength": 20}),
    (["a@example.com"], {"type": "string", "format": "email", "minLength": 13,
                         "maxLength": 13}),
    (["price", "name"], {"type": "string", "minLength": 4, "maxLength": 5}),
    (["1", "yes"], {"type": "string", "minLength": 1, "maxLength": 3}),
    (["007"], {"type": "string", "minLength": 3, "maxLength": 3}),  # a code, not a number
    (["1234567890123456"], {"type": "string", "minLength": 16, "maxLength": 16}),
    (["1e999"], {"type": "string", "minLength": 5, "maxLength": 5}),
    (["True"], {"type": "string", "minLength": 4, "maxLength": 4}),
    (["1", "2024-01-01"], {"type": "string", "minLength": 1, "maxLength": 10}),
])
def test_query_value_shapes(values: list[str], schema: dict) -> None:
    learner = queried(*({"q": [value]} for value in values))
    assert parameter(learner, "q") == {"name": "q", "in": "query", "required": True,
                                       "schema": schema}


def test_a_name_given_several_times_is_an_array() -> None:
    learner = queried({"tag": ["red", "blue"]}, {"tag": ["green"]}, {"tag": ["a", "b", "c"]})
    assert parameter(learner, "tag")["schema"] == {
        "type": "array", "maxItems": 3,
        "items": {"type": "string", "minLength": 1, "maxLength": 5}}


def test_an_empty_value_allows_empty_values() -> None:
    learner = queried({"flag": [""]}, {"flag": ["1"]})
    assert parameter(learner, "flag") == {
        "name": "flag", "in": "query", "required": True, "allowEmptyValue": True,
        "schema": {"type": "string", "minLength": 0, "maxLength": 1}}


def test_query_required_when_seen_in_at_least_95_percent() -> None:
    calls = [{"page": ["1"], "sort": ["asc"]}] * 19 + [{"page": ["2"]}]
    learner = queried(*calls)
    assert parameter(learner, "sort")["required"] is True
    assert parameter(learner, "sort", required_ratio=1.0)["required"] is False
    learner.observe({"page": ["3"]})
    assert parameter(learner, "sort")["required"] is False  # 19 of 21
    assert learner.count == 21


def test_query_names_are_bounded_and_value_like_names_not_stored() -> None:
    learner = queried({f"p{letter}": ["1"] for letter in "abcdefgh"}, {UUID: [""]},
                      {"12345": ["x"], "n" * 65: ["x"]}, max_params=5)
    assert [p["name"] for p in learner.parameters()] == ["pa", "pb", "pc", "pd", "pe"]
    assert (learner.extra, learner.unnamed) == (3, 3)
    learner.observe({"pz": ["1"]})  # past the cap, no later name is stored
    assert learner.extra == 4
    assert UUID.encode() not in dumps(learner)


def test_query_state_holds_no_values() -> None:
    rng = random.Random(3)
    learner, values = QueryLearner(), []
    for _ in range(100):
        token = "".join(rng.choices(string.ascii_letters, k=30))
        number = str(rng.randrange(10**6, 10**9))
        values += [token, number]
        learner.observe({"api_key": [token], "id": [number], "q": [f"search {token}"]})
    state = dumps(learner)
    assert not [value for value in values if value.encode() in state]
    assert parameter(learner, "api_key")["schema"] == {"type": "string", "minLength": 16,
                                                       "maxLength": 32}  # a secret: coarse


def test_learned_parameters_form_a_valid_openapi_31_document() -> None:
    learner = queried({"limit": ["10"], "tag": ["a", "b"], "since": ["2024-01-01"],
                       "flag": [""], "ratio": ["0.5"], "on": ["true"], "id": [UUID]},
                      {"limit": ["20"], "email": ["a@example.com"]})
    body = learned({"name": "x", "items": [{"sku": UUID}]}, None)
    document = {
        "openapi": "3.1.0", "info": {"title": "learned", "version": "1"},
        "paths": {"/orders": {"post": {
            "parameters": learner.parameters(),
            "requestBody": {"content": {"application/json": {"schema": body.schema()}}},
            "responses": {"200": {"description": "ok"}},
        }}},
    }
    validate_openapi(document)


query_values = st.dictionaries(
    st.sampled_from(["limit", "tag", "q", "since", "token", "x"]),
    st.lists(st.one_of(st.text(max_size=12), st.integers().map(str),
                       st.sampled_from(["true", "false", UUID, "2024-01-01", "1.5", ""])),
             max_size=3),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(query_values, max_size=20), st.lists(query_values, max_size=20))
def test_query_merge_equals_one_learner_fed_everything(first: list, second: list) -> None:
    one, two = queried(*first), queried(*second)
    one.merge(two)
    everything = queried(*first, *second)
    assert one.to_dict() == everything.to_dict()
    assert one.parameters() == everything.parameters()
    copy = QueryLearner.from_dict(orjson.loads(dumps(everything)))
    assert copy.to_dict() == everything.to_dict()


READ = {"integer": int, "number": float, "boolean": lambda text: text == "true"}
"""How the gateway reads a query value for the learned type (openapi/params.py)."""


@settings(max_examples=150, deadline=None)
@given(st.lists(query_values, min_size=1, max_size=20))
def test_learned_parameter_schemas_accept_every_value_observed(queries: list) -> None:
    """Each value, read as the gateway reads it for the learned type, fits the schema."""
    learner = queried(*queries)
    for param in learner.parameters(required_ratio=1.0):
        schema = param["schema"]
        is_array = schema.get("type") == "array"
        read = READ.get(schema.get("items", schema).get("type"), str)
        check = validator(schema)
        for query in queries:
            values = [read(value) for value in query.get(param["name"], [])]
            if is_array:
                assert check.is_valid(values), (values, schema)
            elif values:
                assert len(values) == 1 and check.is_valid(values[0]), (values, schema)
            else:
                assert not param["required"]


@settings(max_examples=150, deadline=None)
@given(st.lists(query_values, max_size=20), st.integers(0, 4), st.lists(query_values,
                                                                      max_size=5))
def test_bounded_query_learners_stay_sound_after_merge(queries: list, max_params: int,
                                                       more: list) -> None:
    half = len(queries) // 2
    one = queried(*queries[:half], max_params=max_params)
    one.merge(queried(*queries[half:], max_params=max_params))
    for query in more:
        one.observe(query)
    assert len(one.parameters()) <= max_params
    for param in one.parameters(required_ratio=1.0):
        schema = param["schema"]
        check = validator(schema)
        for query in [*queries, *more]:
            values = query.get(param["name"], [])
            if schema.get("type") == "array":
                assert check.is_valid([READ.get(schema["items"].get("type"), str)(value)
                                       for value in values])
            elif values:
                read = READ.get(schema.get("type"), str)
                assert len(values) == 1 and check.is_valid(read(values[0])), (query, schema)


@settings(max_examples=100, deadline=None)
@given(st.lists(query_values, min_size=1, max_size=15))
def test_the_gateway_reads_the_same_queries_through_learned_parameters(queries: list) -> None:
    """End to end with the gateway's own readers (openapi/params.py): each observed query,
    urlencoded, is read without a violation and every value fits its learned schema."""
    learner = queried(*queries)
    rules = [compile_parameter(param, "file:///learned.yaml", None)
             for param in learner.parameters(required_ratio=1.0)]
    checks = {rule.name: validator(param["schema"])
              for rule, param in zip(rules, learner.parameters(), strict=True)}
    readers = ParameterSet(rules)
    for query in queries:
        raw = urlencode([(name, value) for name, values in query.items() for value in values])
        values, problems = readers.extract({}, raw, Headers([]))
        assert problems == [], (raw, learner.parameters())
        for rule, value in values:
            assert checks[rule.name].is_valid(value), (rule.name, value)


def test_query_from_dict_refuses_what_is_not_a_state() -> None:
    with pytest.raises(ValueError, match="learned query"):
        QueryLearner.from_dict({"version": 1, "config": {}, "params": []})
    with pytest.raises(ValueError, match="kind"):
        QueryLearner.from_dict({"version": 1, "config": {"max_params": 5}, "count": 1,
                                "extra": 0, "params": {"a": {"kind": "zip"}}})
