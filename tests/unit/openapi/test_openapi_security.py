"""Security requirements: which credentials must be present, and the 401 when none are."""

from __future__ import annotations

import pytest

from apiward.errors import SpecError
from apiward.openapi.security import compile_security, missing_credentials
from apiward.pipeline.request import Request
from apiward.wire.headers import Headers

SCHEMES = {
    "key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "qkey": {"type": "apiKey", "in": "query", "name": "api_key"},
    "ckey": {"type": "apiKey", "in": "cookie", "name": "session"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "basic"},
    "oauth": {"type": "oauth2", "flows": {}},
    "mtls": {"type": "mutualTLS"},
}


def request(headers: dict[str, str] | None = None, query: str = "") -> Request:
    fields = [(k.lower().encode(), k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request("GET", "/", query, Headers(fields), "192.0.2.1", "r-1")


def judge(security, req: Request):
    alternatives = compile_security(security, SCHEMES, "/paths/~1/get")
    return None if alternatives is None else missing_credentials(alternatives, req)


@pytest.mark.parametrize("security", [None, [], [{}], [{"key": []}, {}]])
def test_no_requirement_means_public(security) -> None:
    assert compile_security(security, SCHEMES, "/x") is None


@pytest.mark.parametrize(("security", "req"), [
    ([{"key": []}], request({"x-api-key": "k"})),
    ([{"qkey": []}], request(query="api_key=abc&x=1")),
    ([{"ckey": []}], request({"Cookie": "a=1; session=xyz"})),
    ([{"bearer": []}], request({"Authorization": "Bearer abc.def"})),
    ([{"bearer": []}], request({"Authorization": "bearer abc"})),
    ([{"basic": []}], request({"Authorization": "Basic dXNlcjpwdw=="})),
    ([{"oauth": ["read"]}], request({"Authorization": "Bearer t"})),
    ([{"key": []}, {"bearer": []}], request({"Authorization": "Bearer t"})),
    ([{"key": [], "bearer": []}], request({"X-API-Key": "k", "Authorization": "Bearer t"})),
])
def test_present_credentials_pass(security, req) -> None:
    assert judge(security, req) is None


@pytest.mark.parametrize(("security", "req"), [
    ([{"key": []}], request()),
    ([{"key": []}], request({"X-API-Key": ""})),
    ([{"qkey": []}], request(query="other=1")),
    ([{"ckey": []}], request({"Cookie": "sessionx=1"})),
    ([{"bearer": []}], request({"Authorization": "Basic abc"})),
    ([{"bearer": []}], request({"Authorization": "Bearer "})),
    ([{"bearer": []}], request({"Authorization": "Bearerabc"})),
    ([{"key": [], "bearer": []}], request({"X-API-Key": "k"})),  # both are needed
    ([{"mtls": []}], request()),
])
def test_missing_credentials_are_401(security, req) -> None:
    verdict = judge(security, req)
    assert verdict is not None and verdict.status == 401
    assert verdict.reason == "missing_credentials"


def test_the_401_names_the_schemes_and_challenges() -> None:
    verdict = judge([{"bearer": []}, {"basic": []}, {"key": []}], request())
    assert verdict is not None
    assert verdict.headers == (("WWW-Authenticate", "Bearer"),
                               ("WWW-Authenticate", 'Basic realm="api"'))
    assert "bearer" in verdict.detail and "key" in verdict.detail


def test_an_undefined_scheme_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="nope"):
        compile_security([{"nope": []}], SCHEMES, "/paths/~1x/get")
