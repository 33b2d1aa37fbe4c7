"""The schema conformance corpus (tests/corpus/*.jsonl) replayed through the running gateway
in front of a real upstream, one gateway per spec: every positive case reaches the upstream
as sent and its answer comes back; every negative case is refused with exactly its
expected status and a problem+json body, and the upstream receives nothing.

Regenerate the corpus with ``python tests/corpus/generate.py`` (tests/corpus/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from support.corpus import SPECS, Case, Farm, Spec, echo_of, load_cases, send

# Known gateway bugs: corpus case ids (``<spec name>: <case id>``) whose answer is wrong
# today, each with what goes wrong. Marked xfail(strict=True): when the fix lands the test
# fails until the line is removed.
KNOWN_BUGS: dict[str, str] = {}


def _params() -> list:
    params = []
    for spec in SPECS:
        if not spec.available:
            params.append(pytest.param(spec, None, id=f"{spec.name}: spec absent",
                                       marks=pytest.mark.skip(f"{spec.ref} not found")))
            continue
        for case in load_cases(spec):
            key = f"{spec.name}: {case.id}"
            marks = [pytest.mark.xfail(reason=KNOWN_BUGS[key], strict=True)] \
                if key in KNOWN_BUGS else []
            params.append(pytest.param(spec, case, id=key, marks=marks))
    return params


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    with Farm(tmp_path_factory.mktemp("corpus")) as gateways:
        yield gateways


@pytest.mark.parametrize(("spec", "case"), _params())
def test_case(farm: Farm, spec: Spec, case: Case) -> None:
    served = farm.serve(spec)
    before = served.upstream.requests
    response = send(served.client, case)
    forwarded = served.upstream.requests - before
    if case.expect_status is None:
        assert forwarded == 1, f"{case.why}: not forwarded, got {_show(response)}"
        assert response.status_code == 200, _show(response)
        echo = echo_of(response)
        assert echo["method"] == case.method
        assert echo["path"] == case.target
        assert echo["body"].encode("latin-1") == (case.body or b"")
        received = [(k.lower(), v) for k, v in echo["headers"]]
        for name, value in case.headers:
            assert (name.lower(), value) in received, f"{name} did not reach the upstream"
        return
    assert forwarded == 0, "a refused call reached the upstream"
    assert response.status_code == case.expect_status, f"{case.why}: {_show(response)}"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == case.expect_status
    assert problem["check"] in ("route", "schema"), problem
    if case.expect_status == 405:
        assert case.method not in response.headers["allow"].split(", ")
    if case.expect_status == 400:
        locations = [error["location"] for error in problem.get("errors", [])]
        assert locations, f"no errors listed: {problem}"
        assert any(_within(location, place) for location in locations
                   for place in case.where), f"{case.why}: errors at {locations}"


def test_two_content_types_are_refused(farm: Farm) -> None:
    """Found while building the corpus: Content-Type is a singleton field (RFC 9110 §8.3);
    two of them make the body's reading ambiguous, which the gateway refuses elsewhere."""
    spec = next(s for s in SPECS if s.name == "demo")
    served = farm.serve(spec)
    before = served.upstream.requests
    case = Case(id="two content types", spec=spec.ref, operation="POST /login",
                method="POST", path="/login", query="",
                headers=(("Content-Type", "application/json"),
                         ("Content-Type", "application/x-www-form-urlencoded")),
                body=b'{"username": "a", "password": "b"}', kind="negative", expect="400",
                why="two Content-Type fields", where=("content-type",), openapi_core="")
    response = send(served.client, case)
    assert served.upstream.requests == before
    assert response.status_code == 400
    assert response.json()["type"] == "urn:apiward:problem:ambiguous_content_type"


def _within(location: str, place: str) -> bool:
    """``location`` (an error's) is ``place`` (a case's) or inside it."""
    location, place = location.lower(), place.lower()
    return location == place or location.startswith((place + ".", place + "["))


def _show(response: httpx.Response) -> str:
    try:
        body = json.dumps(response.json())[:600]
    except ValueError:
        body = response.text[:300]
    return f"{response.status_code} {body}"
