"""Differential test: openapi-core's request validator and the running gateway judge the same
requests and must agree on valid / invalid, except for the deliberate differences listed in
DIFFERENCES (each with its reason, and each shown by at least one edge request below).

Requests: the conformance corpus (tests/corpus/<spec>.jsonl), the disputed cases
(tests/corpus/<spec>.disputed.jsonl: schemathesis and openapi-core disagree on them, so they
are where validators differ most) and EDGES, hand-written requests for each difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import pytest

from support.corpus import (
    POSITIVE,
    SPECS,
    Case,
    Farm,
    Judgement,
    OpenApiCore,
    Spec,
    load_cases,
    send,
)

SPECS_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Difference:
    """openapi-core and apiward disagree on purpose: ``openapi_core`` and ``apiward`` say
    what each answers ("valid" or a status)."""

    name: str
    openapi_core: str
    apiward: str
    reason: str


DIFFERENCES = {d.name: d for d in (
    Difference(
        "body-without-request-body", "valid", "400",
        "A body on an operation that declares no requestBody is refused "
        "(unexpected_body): the upstream would read bytes nobody validated. openapi-core "
        "ignores the body.",
    ),
    Difference(
        "duplicate-json-keys", "valid", "400",
        "JSON objects with a key twice are refused (duplicate_key): the gateway's parser "
        "keeps the last value, an upstream may keep the first, so what was validated would "
        "not be what is used. openapi-core (json.loads) keeps the last silently.",
    ),
    Difference(
        "json-numbers-beyond-64-bits", "valid", "400",
        "JSON integers outside -2^63 .. 2^64-1 are refused (number): they would lose digits "
        "in the gateway's parser and in many upstreams. openapi-core reads them exactly.",
    ),
    Difference(
        "json-nesting-depth", "valid", "400",
        "JSON nested deeper than json_max_depth (default 64) is refused (depth), before "
        "validation. openapi-core has no depth limit.",
    ),
    Difference(
        "head-where-get", "405", "valid",
        "HEAD is accepted wherever GET is declared (RFC 9110 §9.3.2: HEAD is GET without "
        "the body) and judged as that GET. openapi-core knows only declared methods.",
    ),
    Difference(
        "strict-path-target", "valid", "400",
        "Path targets that servers read differently are refused before routing: "
        "percent-encoded '/', '\\\\', '?', '#', NUL and control characters, ';' matrix "
        "parameters, and non-ASCII (paths.allow_non_ascii: false by default). openapi-core "
        "percent-decodes the path and matches whatever results.",
    ),
    Difference(
        "oauth2-openid-credentials", "valid", "401",
        "oauth2 and openIdConnect requirements need an 'Authorization: Bearer' credential "
        "to be present. openapi-core cannot check these schemes and lets every call through.",
    ),
    Difference(
        "empty-credentials", "valid", "401",
        "An API key header (or query parameter) that is present but empty is no credential. "
        "openapi-core counts it as present.",
    ),
    Difference(
        "openapi-core-form-oneof", "valid", "400",
        "Not apiward's choice but openapi-core's defect: it reads a urlencoded body whose "
        "schema is a oneOf keeping only some of the declared fields (in Kratos' forms it "
        "drops identifier, totp_code, upstream_parameters, id_token ...) and validates only "
        "those; apiward validates every field, so a field of the wrong type is refused.",
    ),
    Difference(
        "json-strict-syntax", "valid", "400",
        "JSON must be RFC 8259 text: UTF-8 without a byte order mark (UTF-16 is refused "
        "even when the charset says so), no NaN / Infinity, no \\u escapes of unpaired "
        "surrogates (json). Python's json module, which openapi-core uses, accepts all of "
        "these.",
    ),
    Difference(
        "invalid-utf8-parameter", "valid", "400",
        "Percent-decoded parameter values must be UTF-8 (author=%FF is refused, "
        "'encoding'): an upstream may decode them differently. openapi-core (werkzeug) "
        "replaces the bad bytes with U+FFFD and validates that.",
    ),
    Difference(
        "repeated-scalar-parameter", "valid", "400",
        "A parameter that is not an array, sent twice (limit=1&limit=2), is refused "
        "(repeated): the upstream may read the first or the last. openapi-core reads the "
        "first.",
    ),
    Difference(
        "strict-integer-text", "valid", "400",
        "An integer parameter is digits with an optional '-': '+1', ' 1' (a '+' in a query "
        "is a space) and '1_0' are refused. openapi-core converts with Python's int(), which "
        "takes all three.",
    ),
    Difference(
        "empty-array-item", "valid", "400",
        "An empty occurrence of an exploded array query parameter (tags=&tags=a) is refused "
        "like any empty value unless allowEmptyValue is set; openapi-core refuses an empty "
        "scalar value but takes an empty array item as the string \"\".",
    ),
)}


def _case(spec: str, name: str, method: str, target: str,
          headers: tuple[tuple[str, str], ...] = (), body: bytes | None = None) -> Case:
    path, _, query = target.partition("?")
    return Case(id=name, spec=SPECS_BY_NAME[spec].ref, operation="", method=method,
                path=path, query=query, headers=headers, body=body, kind="edge",
                expect="", why=name, where=(), openapi_core="")


JSON = (("Content-Type", "application/json"),)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)
BEARER = (("Authorization", "Bearer corpus-dummy-token"),)
KRATOS_KEY = (("Authorization", "corpus-dummy-key"),)
BOOK = b'{"title": "T", "author": "A", "price": 1'

# Each edge request shows one difference; ``Difference.apiward`` / ``openapi_core`` are
# asserted on it exactly.
EDGES: list[tuple[str, Case]] = [
    ("body-without-request-body",
     _case("demo", "GET with a JSON body", "GET", "/books/1", JSON, b'{"a": 1}')),
    ("body-without-request-body",
     _case("demo", "DELETE with a body", "DELETE", "/books/1", BEARER, b"x")),
    ("duplicate-json-keys",
     _case("demo", "title twice", "POST", "/books", JSON, BOOK + b', "title": "U"}')),
    ("duplicate-json-keys",
     _case("demo", "title twice, escaped", "POST", "/books", JSON,
           BOOK + b', "\\u0074itle": "U"}')),
    ("json-numbers-beyond-64-bits",
     _case("ory-kratos-3.0", "a 30-digit integer in free-form traits", "POST",
           "/admin/identities", KRATOS_KEY + JSON,
           b'{"schema_id": "default", "traits": {"n": 123456789012345678901234567890}}')),
    ("json-nesting-depth",
     _case("ory-kratos-3.0", "traits nested 70 deep", "POST", "/admin/identities",
           KRATOS_KEY + JSON,
           b'{"schema_id": "default", "traits": ' + b'{"a": ' * 70 + b"1" + b"}" * 71)),
    ("head-where-get", _case("demo", "HEAD /books", "HEAD", "/books")),
    ("head-where-get", _case("demo", "HEAD /books/7", "HEAD", "/books/7")),
    ("strict-path-target",
     _case("ory-kratos-3.0", "non-ASCII id", "GET", "/admin/identities/%C3%A9",
           KRATOS_KEY)),
    ("strict-path-target",
     _case("ory-kratos-3.0", "encoded ? in id", "GET", "/admin/identities/a%3Fb",
           KRATOS_KEY)),
    ("strict-path-target",
     _case("ory-kratos-3.0", "encoded backslash in id", "GET", "/admin/identities/a%5Cb",
           KRATOS_KEY)),
    ("strict-path-target",
     _case("ory-kratos-3.0", "; in id", "GET", "/admin/identities/a;b", KRATOS_KEY)),
    ("oauth2-openid-credentials",
     _case("swagger-petstore-3.0", "oauth2 operation without credentials", "GET",
           "/api/v3/pet/findByStatus?status=available")),
    ("empty-credentials",
     _case("ory-kratos-3.0", "empty API key header", "GET", "/admin/identities",
           (("Authorization", ""),))),
    ("empty-array-item",
     _case("oai-petstore-expanded-3.0", "tags=&tags=a", "GET", "/v2/pets?tags=&tags=a")),
    ("openapi-core-form-oneof",
     _case("ory-kratos-3.0", "oidc registration, upstream_parameters not an object", "POST",
           "/self-service/registration?flow=f", FORM,
           b"method=oidc&provider=p&upstream_parameters=y")),
    ("json-strict-syntax",
     _case("demo", "byte order mark", "POST", "/login", JSON,
           b'\xef\xbb\xbf{"username": "a", "password": "b"}')),
    ("json-strict-syntax",
     _case("demo", "NaN", "POST", "/books", JSON, BOOK[:-1] + b"NaN}")),
    ("json-strict-syntax",
     _case("demo", "unpaired surrogate escape", "POST", "/login", JSON,
           b'{"username": "\\ud800", "password": "b"}')),
    ("json-strict-syntax",
     _case("demo", "UTF-16 with its charset", "POST", "/login",
           (("Content-Type", "application/json; charset=utf-16"),),
           '{"username": "a", "password": "b"}'.encode("utf-16"))),
    ("invalid-utf8-parameter", _case("demo", "author=%FF", "GET", "/books?author=%FF")),
    ("repeated-scalar-parameter",
     _case("demo", "limit twice", "GET", "/books?limit=1&limit=2")),
    ("strict-integer-text", _case("demo", "id +1", "GET", "/books/+1")),
    ("strict-integer-text", _case("demo", "limit with a space", "GET", "/books?limit=+1")),
    ("strict-integer-text", _case("demo", "limit 1_0", "GET", "/books?limit=1_0")),
]

# Hand-written requests on which the gateway must agree with openapi-core (regressions for
# bugs this test found); the second item names a bug still open (xfail, strict: when the
# fix lands the test fails until the reason is removed).
AGREEMENTS: list[tuple[Case, str | None]] = [
    (_case("ory-kratos-3.0", "Kratos password login (JSON)", "POST",
           "/self-service/login?flow=f", JSON,
           b'{"method": "password", "identifier": "a", "password": "b"}'), None),
    (_case("ory-kratos-3.0", "Kratos password login (form)", "POST",
           "/self-service/login?flow=f", FORM, b"method=password&identifier=a&password=b"),
     None),
    (_case("ory-kratos-3.0", "Kratos login, a method the discriminator does not map",
           "POST", "/self-service/login?flow=f", JSON,
           b'{"method": "nonsense", "identifier": "a"}'), None),
    (_case("ory-kratos-3.0", "Kratos settings, boolean form field", "POST",
           "/self-service/settings?flow=f", FORM,
           b"method=lookup_secret&lookup_secret_disable=true&csrf_token=a"), None),
]

# Known gateway bugs (to be fixed in src/, not here): case ids ``<spec name>: <case id>``
# where the gateway disagrees with openapi-core for no documented reason. xfail(strict):
# when a fix lands the test fails until its line is removed.
KNOWN_BUGS: dict[str, str] = {}


@cache
def reference(spec: Spec) -> OpenApiCore:
    return OpenApiCore(spec)


# Generated cases where a difference applies: a predicate per difference on (spec, case).
def _explains(spec: Spec, case: Case) -> list[str]:
    found = []
    for name, applies in EXPLAINERS.items():
        if applies(spec, case):
            found.append(name)
    return found


def _empty_array_item(spec: Spec, case: Case) -> bool:
    from urllib.parse import parse_qsl

    arrays = _array_query_params(spec, case)
    return any(not value and name in arrays
               for name, value in parse_qsl(case.query, keep_blank_values=True))


def _array_query_params(spec: Spec, case: Case) -> set[str]:
    method, _, template = case.operation.partition(" ")
    item = (spec.document.get("paths") or {}).get(template) or {}
    op = item.get(method.lower()) or {}
    names = set()
    for param in (*(item.get("parameters") or []), *(op.get("parameters") or [])):
        param = _deref(spec.document, param)
        schema = _deref(spec.document, param.get("schema") or {})
        if param.get("in") == "query" and schema.get("type") == "array":
            names.add(param["name"])
    return names


def _oauth2_alternative(spec: Spec, case: Case) -> bool:
    """No Authorization header, and one of the operation's security alternatives is only
    oauth2 / openIdConnect schemes (openapi-core accepts that alternative unchecked)."""
    method, _, template = case.operation.partition(" ")
    op = ((spec.document.get("paths") or {}).get(template) or {}).get(method.lower()) or {}
    security = op.get("security", spec.document.get("security")) or []
    schemes = (spec.document.get("components") or {}).get("securitySchemes") or {}
    return case.header("authorization") is None and any(
        alternative and all(schemes.get(name, {}).get("type") in ("oauth2", "openIdConnect")
                            for name in alternative)
        for alternative in security)


def _deref(document: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target: object = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]  # type: ignore[index]
        node = target  # type: ignore[assignment]
    return node


EXPLAINERS: dict[str, Callable[[Spec, Case], bool]] = {
    "empty-array-item": _empty_array_item,
    "oauth2-openid-credentials": _oauth2_alternative,
}


# -- the tests ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    with Farm(tmp_path_factory.mktemp("differential")) as gateways:
        yield gateways


def gateway_says(farm: Farm, spec: Spec, case: Case) -> str:
    """"valid" when the call reached the upstream, else the gateway's status."""
    served = farm.serve(spec)
    before = served.upstream.requests
    response = send(served.client, case)
    if served.upstream.requests - before == 1:
        assert response.status_code == 200, response.text[:300]
        return "valid"
    assert response.headers.get("content-type") == "application/problem+json"
    return str(response.status_code)


def core_says(judgement: Judgement) -> str:
    return "valid" if judgement.valid else str(judgement.status)


def _generated() -> list:
    params = []
    for spec in SPECS:
        if not spec.available:
            params.append(pytest.param(spec, None, id=f"{spec.name}: spec absent",
                                       marks=pytest.mark.skip(f"{spec.ref} not found")))
            continue
        for case in load_cases(spec) + load_cases(spec, disputed=True):
            key = f"{spec.name}: {case.id}"
            marks = [pytest.mark.xfail(reason=KNOWN_BUGS[key], strict=True)] \
                if key in KNOWN_BUGS else []
            params.append(pytest.param(spec, case, id=key, marks=marks))
    return params


@pytest.mark.parametrize(("spec", "case"), _generated())
def test_generated(farm: Farm, spec: Spec, case: Case) -> None:
    judgement = reference(spec).judge(case)
    if case.kind in (POSITIVE, "negative"):
        assert judgement.label == case.openapi_core, (
            "openapi-core's verdict changed since the corpus was generated: regenerate it "
            "(python tests/corpus/generate.py) and review the diff")
    core = core_says(judgement)
    gateway = gateway_says(farm, spec, case)
    if (core == "valid") == (gateway == "valid"):
        return
    explained = [name for name in _explains(spec, case)
                 if (DIFFERENCES[name].openapi_core == "valid") == (core == "valid")
                 and (DIFFERENCES[name].apiward == "valid") == (gateway == "valid")]
    assert explained, (f"openapi-core says {judgement.label}, the gateway {gateway}, and no "
                       f"documented difference explains it ({case.why})")


@pytest.mark.parametrize(("difference", "case"), [
    pytest.param(name, case, id=f"{name}: {case.id}")
    for name, case in sorted(EDGES, key=lambda edge: edge[1].spec)])  # one gateway a spec
def test_difference(farm: Farm, difference: str, case: Case) -> None:
    spec = next(s for s in SPECS if s.ref == case.spec)
    if not spec.available:
        pytest.skip(f"{spec.ref} not found")
    documented = DIFFERENCES[difference]
    assert core_says(reference(spec).judge(case)) == documented.openapi_core
    assert gateway_says(farm, spec, case) == documented.apiward


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.id, marks=[pytest.mark.xfail(reason=bug, strict=True)]
                 if bug else []) for case, bug in AGREEMENTS])
def test_agreement(farm: Farm, case: Case) -> None:
    spec = next(s for s in SPECS if s.ref == case.spec)
    if not spec.available:
        pytest.skip(f"{spec.ref} not found")
    core = core_says(reference(spec).judge(case))
    assert (core == "valid") == (gateway_says(farm, spec, case) == "valid")


def test_every_difference_is_shown() -> None:
    assert {name for name, _ in EDGES} == set(DIFFERENCES)
