"""The path matcher: which template a normalised request path names, and its raw params."""

from __future__ import annotations

import json
import re
import time
import timeit
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.openapi.matcher import PathMatcher, overlaps, shadowed

SHARED_SPECS = Path(__file__).resolve().parents[4] / "shared" / "specs"


def matcher(*templates: str, bases: tuple[str, ...] = ("",), **kw) -> PathMatcher[str]:
    return PathMatcher({t: t for t in templates}, list(bases), **kw)


def test_concrete_paths_win_over_templated_ones_whatever_the_declaration_order() -> None:
    for order in (("/pets/{id}", "/pets/mine"), ("/pets/mine", "/pets/{id}")):
        m = matcher(*order)
        assert m.match("/pets/mine") == ("/pets/mine", {})
        assert m.match("/pets/yours") == ("/pets/{id}", {"id": "yours"})


def test_literal_beats_template_at_the_first_differing_segment() -> None:
    m = matcher("/a/{x}/c", "/a/b/{y}")
    assert m.match("/a/b/c") == ("/a/b/{y}", {"y": "c"})
    assert m.match("/a/z/c") == ("/a/{x}/c", {"x": "z"})
    assert m.match("/a/z/d") is None


def test_a_candidate_that_fails_later_gives_way_to_the_next_one() -> None:
    m = matcher("/a/b/c", "/a/{x}/d")
    assert m.match("/a/b/d") == ("/a/{x}/d", {"x": "b"})


def test_more_literal_characters_win_among_templated_segments() -> None:
    m = matcher("/f/{id}", "/f/{name}.{ext}", "/f/{name}.json")
    assert m.match("/f/report.json") == ("/f/{name}.json", {"name": "report"})
    assert m.match("/f/report.csv") == ("/f/{name}.{ext}", {"name": "report", "ext": "csv"})
    assert m.match("/f/report") == ("/f/{id}", {"id": "report"})


def test_mixed_segments_and_several_parameters() -> None:
    m = matcher("/files/{name}.{ext}", "/v{version}/x", "/{a}-{b}/y", "/o/{org}/r/{repo}")
    assert m.match("/files/a.tar.gz") == ("/files/{name}.{ext}", {"name": "a.tar", "ext": "gz"})
    assert m.match("/v2/x") == ("/v{version}/x", {"version": "2"})
    assert m.match("/v/x") is None  # a parameter is never empty
    assert m.match("/x-y-z/y") == ("/{a}-{b}/y", {"a": "x-y", "b": "z"})
    assert m.match("/-z/y") is None
    assert m.match("/o/acme/r/gw") == ("/o/{org}/r/{repo}", {"org": "acme", "repo": "gw"})


def test_parameters_never_match_empty_segments_or_slashes() -> None:
    m = matcher("/pets/{id}", "/pets/{id}/toys")
    assert m.match("/pets/") is None
    assert m.match("/pets//toys") is None
    assert m.match("/pets/a/b") is None


def test_trailing_slash_is_significant() -> None:
    m = matcher("/pets", "/shops/")
    assert m.match("/pets/") is None
    assert m.match("/shops") is None
    assert m.match("/shops/") == ("/shops/", {})


def test_captured_values_stay_percent_encoded() -> None:
    m = matcher("/users/{name}")
    assert m.match("/users/J%C3%BCrgen%20K") == ("/users/{name}", {"name": "J%C3%BCrgen%20K"})


def test_template_literals_are_compared_in_the_gateways_normal_form() -> None:
    m = matcher("/café/{x}", "/a%7ez/{x}", "/b%2fc")
    assert m.match("/caf%C3%A9/1") == ("/café/{x}", {"x": "1"})
    assert m.match("/a~z/1") == ("/a%7ez/{x}", {"x": "1"})
    assert m.match("/b%2Fc") == ("/b%2fc", {})


def test_base_paths_are_stripped_longest_first() -> None:
    m = matcher("/pets", "/pets/{id}", "/v1/{x}", bases=("", "/api/", "/api/v1"))
    assert m.match("/api/v1/pets/3") == ("/pets/{id}", {"id": "3"})
    assert m.match("/api/pets") == ("/pets", {})
    assert m.match("/pets/3") == ("/pets/{id}", {"id": "3"})
    assert m.match("/apipets") is None
    assert m.match("/api") is None
    assert m.match("/v1/pets") == ("/v1/{x}", {"x": "pets"})  # under the empty base


def test_base_paths_are_normalised_like_templates() -> None:
    m = matcher("/pets", bases=("/caf%c3%a9//v%7e1/",))
    assert m.match("/caf%C3%A9/v~1/pets") == ("/pets", {})


def test_without_an_empty_base_the_bare_path_does_not_match() -> None:
    m = matcher("/pets", "/pets/{id}", bases=("/v1",))
    assert m.match("/pets") is None
    assert m.match("/pets/1") is None
    assert m.match("/v1/pets/1") == ("/pets/{id}", {"id": "1"})
    assert m.match("/v1pets/1") is None


def test_a_path_item_may_have_its_own_bases() -> None:
    m = matcher("/pets", "/admin/{x}", bases=("/v1",),
                template_bases={"/admin/{x}": ["/ops/"]})
    assert m.match("/v1/pets") == ("/pets", {})
    assert m.match("/ops/admin/1") == ("/admin/{x}", {"x": "1"})
    assert m.match("/v1/admin/1") is None


def test_root_template_under_a_base_needs_its_slash() -> None:
    m = matcher("/", bases=("/v1",))
    assert m.match("/v1/") == ("/", {})
    assert m.match("/v1") is None


def test_values_that_are_falsy_are_still_found() -> None:
    m = PathMatcher({"/a": None, "/b/{x}": 0}, [""])
    assert m.match("/a") == (None, {})
    assert m.match("/b/1") == (0, {"x": "1"})


@pytest.mark.parametrize("template", ["pets", "/a/{", "/a/}", "/a/{}", "/a/{x}{"])
def test_malformed_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        matcher(template)


def test_hostile_paths_cost_little() -> None:
    m = matcher("/a/{x}-{y}-{z}.json", "/b/{x}")
    started = time.perf_counter()
    assert m.match("/a/" + "-" * 20_000) is None  # a backtracking regex: ~10^12 steps
    assert m.match("/" + "a/" * 10_000) is None
    assert m.match("/b/" + "x" * 100_000) == ("/b/{x}", {"x": "x" * 100_000})
    assert time.perf_counter() - started < 0.5


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["", "-", ".", "a", "ab"]), min_size=2, max_size=4),
       st.text(alphabet="-.ab", max_size=12))
def test_several_parameters_split_like_a_greedy_regex(literals: list[str], segment: str) -> None:
    template = "/" + "".join(f"{lit}{{p{i}}}" for i, lit in enumerate(literals[:-1])) + literals[-1]
    regex = re.compile("([^/]+)".join(re.escape(lit) for lit in literals))
    expected = regex.fullmatch(segment)
    found = matcher(template).match("/" + segment) if segment else None
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert list(found[1].values()) == list(expected.groups())


def test_overlaps_lists_templates_that_can_match_one_path_winner_first() -> None:
    found = overlaps(["/a/{x}/c", "/a/b/{y}", "/{a}.json", "/{a}.xml", "/{x}", "/{a}-{b}",
                      "/pets/mine", "/p/{a}/q"])
    assert ("/a/b/{y}", "/a/{x}/c") in found
    assert ("/{a}.json", "/{x}") in found
    assert ("/{a}.json", "/{a}-{b}") in found  # "x-y.json"
    assert ("/{a}.json", "/{a}.xml") not in found and ("/{a}.xml", "/{a}.json") not in found
    assert all("/pets/mine" not in pair for pair in found)
    assert all("/p/{a}/q" not in pair for pair in found)


def test_overlap_needs_a_common_non_empty_value() -> None:
    assert overlaps(["/{a}x", "/x{b}"]) == [("/x{b}", "/{a}x")]  # "xx"; tie: template text
    assert overlaps(["/{a}ab", "/ba{b}"]) == [("/ba{b}", "/{a}ab")]  # "bab"
    assert overlaps(["/a{x}", "/b{y}"]) == []
    assert overlaps(["/{a}/x", "/{a}"]) == []


def test_shadowed_lists_concrete_paths_a_template_would_also_match() -> None:
    assert shadowed(["/pets/mine", "/pets/{id}", "/x.json", "/{a}.xml", "/pets"]) == [
        ("/pets/mine", "/pets/{id}"),
    ]


@pytest.mark.skipif(not SHARED_SPECS.is_dir(), reason="no shared specs")
def test_every_kratos_path_matches_itself_and_matching_is_fast() -> None:
    paths = json.loads((SHARED_SPECS / "ory-kratos-3.0.json").read_text())["paths"]
    m = matcher(*paths)
    for template in paths:
        concrete = template.replace("{", "").replace("}", "")
        found = m.match(concrete)
        assert found is not None and found[0] == template, template
    probe = "/admin/identities/abc/credentials/password"
    assert m.match(probe) == ("/admin/identities/{id}/credentials/{type}",
                              {"id": "abc", "type": "password"})
    per_call = min(timeit.repeat(lambda: m.match(probe), number=2000, repeat=5)) / 2000
    assert per_call < 20e-6  # ~1 µs here; generous for slow CI machines


def test_adjacent_parameters_each_take_a_character() -> None:
    m = matcher("/{p0}{p1}ab")
    assert m.match("/ab") is None  # found by the property test above: '' for p1
    assert m.match("/aab") is None
    assert m.match("/xyab") == ("/{p0}{p1}ab", {"p0": "x", "p1": "y"})
