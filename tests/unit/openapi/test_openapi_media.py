"""Content-Type parsing and the choice of a requestBody.content key."""

from __future__ import annotations

import pytest

from apiward.openapi.media import MediaMatcher, is_json, parse_media_type


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", ("application/json", {})),
        ("Application/JSON", ("application/json", {})),
        (" text/plain ; charset=UTF-8", ("text/plain", {"charset": "utf-8"})),
        ("text/plain;charset=utf-8;format=Flowed", ("text/plain",
                                                    {"charset": "utf-8", "format": "Flowed"})),
        ('multipart/form-data; boundary="a b;c\\"d"',
         ("multipart/form-data", {"boundary": 'a b;c"d'})),
        ("application/json;", ("application/json", {})),
        ("application/json; ; charset=utf-8", ("application/json", {"charset": "utf-8"})),
        ("application/vnd.api+json", ("application/vnd.api+json", {})),
        ("*/*", ("*/*", {})),
    ],
)
def test_parse_media_type_accepts_the_grammar(value, expected):
    assert parse_media_type(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "json",
        "application/",
        "/json",
        "application/json/x",
        "application /json",
        "application/json charset=utf-8",
        "application/json; charset",
        "application/json; charset=",
        "application/json; charset=utf-8; charset=latin1",  # twice: two readings
        "application/json; CHARSET=utf-8; charset=utf-8",
        'application/json; charset="utf-8',  # unterminated quote
        "application/json; a=b c",
        "application/json,text/plain",
        "text/plain; charset=\x00",
        "application/j\u00e9son",
    ],
)
def test_parse_media_type_refuses_what_is_outside_it(value):
    assert parse_media_type(value) is None


def test_is_json():
    assert is_json("application/json")
    assert is_json("Application/JSON; charset=utf-8")
    assert is_json("application/problem+json")
    assert is_json("application/*+json")
    assert not is_json("application/jsonx")
    assert not is_json("text/plain")
    assert not is_json("application/x-www-form-urlencoded")


KEYS = [
    "*/*",
    "application/*",
    "application/*+json",
    "application/json",
    "text/plain; charset=utf-8",
    "text/plain",
]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("APPLICATION/JSON", "application/json"),
        ("application/merge-patch+json", "application/*+json"),
        ("application/xml", "application/*"),
        ("image/png", "*/*"),
        ("text/plain; charset=UTF-8", "text/plain; charset=utf-8"),
        ('text/plain; charset="utf-8"', "text/plain; charset=utf-8"),
        ("text/plain; charset=latin1", "text/plain"),
        ("text/plain", "text/plain"),
        (None, "application/*"),  # taken as application/octet-stream
        ("application/json; charset=a; charset=b", None),
        ("garbage", None),
        ("*/*", None),  # a range is not a body's type
        ("application/*", None),
    ],
)
def test_most_specific_key_wins(header, expected):
    assert MediaMatcher(KEYS).match(header) == expected


def test_order_of_keys_does_not_matter():
    assert MediaMatcher(list(reversed(KEYS))).match("application/json") == "application/json"
    assert MediaMatcher(["application/*", "application/*+json"]).match(
        "application/vnd.x+json") == "application/*+json"


def test_exact_key_does_not_admit_other_types():
    matcher = MediaMatcher(["application/json"])
    assert matcher.match("application/json-patch") is None
    assert matcher.match("application/vnd.x+json") is None
    assert matcher.match("text/json") is None
    assert matcher.match(None) is None


def test_suffix_range_needs_the_suffix():
    matcher = MediaMatcher(["application/*+json"])
    assert matcher.match("application/json") is None  # not a +json type (RFC 6839)
    assert matcher.match("text/vnd.x+json") is None
    assert matcher.match("application/x+jsonx") is None
    assert matcher.match("application/a+b+json") == "application/*+json"


def test_key_params_must_all_match():
    matcher = MediaMatcher(["application/json; charset=utf-8; v=2"])
    assert matcher.match("application/json; v=2; charset=UTF-8") is not None
    assert matcher.match("application/json; charset=utf-8") is None
    assert matcher.match("application/json; v=3; charset=utf-8") is None


def test_invalid_keys_never_match():
    matcher = MediaMatcher(["not a type", "application/json"])
    assert matcher.match("application/json") == "application/json"
    assert MediaMatcher([]).match("application/json") is None


def test_cache_gives_the_same_answers():
    matcher = MediaMatcher(KEYS)
    for _ in range(3):
        assert matcher.match("application/xml") == "application/*"
        assert matcher.match("bad") is None
    for i in range(2000):  # past the cache bound: still answered
        assert matcher.match(f"image/x{i}") == "*/*"
