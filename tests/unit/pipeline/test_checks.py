"""The two shipped checks, called as plain functions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from apiward.pipeline.checks import ipfilter, methods
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import ALLOW
from apiward.wire.headers import Headers


def make_request(method: str = "GET", ip: str = "127.0.0.1", query: str = "") -> Request:
    return Request(method, "/x", query, Headers([]), ip, "rid")


def test_methods_allows_listed_and_refuses_others_with_allow_header() -> None:
    check = methods.build(methods.Config(allow=["get", "post"]), "block")
    assert check.run(make_request("GET"), Context(None, 0)) is ALLOW
    verdict = check.run(make_request("DELETE"), Context(None, 0))
    assert not verdict.allowed
    assert verdict.status == 405
    assert ("Allow", "GET, POST") in verdict.headers


def test_methods_config_refuses_non_tokens() -> None:
    with pytest.raises(ValidationError):
        methods.Config(allow=["GE T"])


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.9.9.9", False),  # deny wins over allow
        ("192.168.1.1", False),  # outside the allow list
        ("::ffff:10.1.2.3", True),  # v4-mapped v6 is judged as v4
        ("2001:db8::1", True),
        ("not-an-ip", False),
    ],
)
def test_ipfilter_allow_and_deny(ip: str, allowed: bool) -> None:
    config = ipfilter.Config(allow=["10.0.0.0/8", "2001:db8::/32"], deny=["10.9.9.0/24"])
    check = ipfilter.build(config, "block")
    verdict = check.run(make_request(ip=ip), Context(None, 0))
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.status == 403
    # the cached answer is the same
    assert check.run(make_request(ip=ip), Context(None, 0)).allowed is allowed


def test_ipfilter_deny_only_allows_everyone_else() -> None:
    check = ipfilter.build(ipfilter.Config(deny=["192.0.2.0/24"]), "log")
    assert check.mode == "log"
    assert check.run(make_request(ip="198.51.100.1"), Context(None, 0)) is ALLOW
    assert not check.run(make_request(ip="192.0.2.7"), Context(None, 0)).allowed


def test_request_query_params_multi_dict() -> None:
    request = make_request(query="a=1&b=2&a=3&empty=")
    assert request.query_params == {"a": ["1", "3"], "b": ["2"], "empty": [""]}


def test_headers_case_insensitive_and_duplicates_kept() -> None:
    headers = Headers([(b"x-a", b"X-A", b"1"), (b"x-a", b"x-a", b"2"), (b"host", b"Host", b"h")])
    assert headers.get("X-a") == "1"
    assert headers.getall("x-A") == ["1", "2"]
    assert "HOST" in headers
    assert "missing" not in headers
    assert len(headers) == 3
