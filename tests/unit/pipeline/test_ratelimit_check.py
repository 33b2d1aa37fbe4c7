"""The ratelimit check as plain calls on a private table; time is the context's clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from apiward.pipeline.check import Deps
from apiward.pipeline.checks import ratelimit
from apiward.pipeline.checks.identity import Identity
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import ALLOW
from apiward.ratelimit.table import SharedTable
from apiward.wire.headers import Headers


@dataclass
class Endpoint:
    """The parts of a compiled operation the check reads."""

    method: str
    template: str
    tags: tuple[str, ...] = ()
    extensions: dict[str, Any] = field(default_factory=dict)


def build(mode: str = "block", **config: Any) -> Any:
    return ratelimit.build(ratelimit.Config(**config), mode,  # type: ignore[arg-type]
                           Deps(table=SharedTable(1 << 10, shared=False)))


def call(check: Any, now: float = 1000.0, *, ip: str = "10.0.0.1", method: str = "GET",
         path: str = "/x", headers: list[tuple[str, str]] = (), identity: Any = None,
         endpoint: Endpoint | None = None, params: dict[str, str] | None = None) -> tuple:
    fields = [(k.lower().encode(), k.encode(), v.encode()) for k, v in headers]
    request = Request(method, path, "", Headers(fields), ip, "rid")
    context = Context(None, now)
    context.identity = identity
    context.endpoint = endpoint
    context.path_params = params or {}
    return check.run(request, context), request, context


def admitted(check: Any, n: int, **kwargs: Any) -> int:
    return sum(call(check, **kwargs)[0].allowed for _ in range(n))


def test_limit_per_client_address_with_429_headers() -> None:
    check = build(rules=[{"name": "per-ip", "key": "ip", "limits": ["3/s"]}])
    assert admitted(check, 5) == 3
    verdict, _, _ = call(check)
    assert verdict.status == 429 and verdict.reason == "rate_limited"
    headers = dict(verdict.headers)
    assert headers["Retry-After"] == "1"
    assert headers["RateLimit-Policy"] == '"per-ip";q=3;w=1'
    assert headers["RateLimit"] == '"per-ip";r=0;t=1'
    assert admitted(check, 3, ip="10.0.0.2") == 3  # another client has its own quota
    assert call(check, now=1000.34)[0].allowed  # one call's worth back after 1/3 s


def test_allowed_calls_carry_the_remaining_quota() -> None:
    check = build(rules=[{"name": "api", "key": "ip", "limits": ["10/min"]}])
    verdict, _, context = call(check)
    assert verdict is ALLOW
    assert context.response_lines == (b'RateLimit-Policy: "api";q=10;w=60\r\n'
                                      b'RateLimit: "api";r=9;t=6')
    quiet = build(headers=False, rules=[{"key": "ip", "limits": ["10/min"]}])
    assert call(quiet)[2].response_lines == b""


def test_identity_is_the_default_key_and_anonymous_calls_fall_back_to_the_address() -> None:
    check = build(rules=[{"limits": ["2/s"]}])
    alice = Identity("key", "alice")
    assert admitted(check, 3, identity=alice, ip="10.0.0.1") == 2
    assert admitted(check, 3, identity=alice, ip="10.0.0.9") == 0  # same key, other address
    assert admitted(check, 3, identity=Identity("anonymous", "10.0.0.1")) == 2


def test_network_prefix_key_groups_neighbours() -> None:
    check = build(rules=[{"key": "ip/24", "limits": ["2/s"]}])
    assert call(check, ip="192.0.2.1")[0].allowed
    assert call(check, ip="192.0.2.200")[0].allowed
    assert not call(check, ip="192.0.2.77")[0].allowed
    assert call(check, ip="192.0.3.1")[0].allowed
    assert admitted(check, 3, ip="2001:db8:1:2::1") == 2  # IPv6: the /64
    assert not call(check, ip="2001:db8:1:2:ffff::9")[0].allowed


def test_an_ipv6_prefix_alone_limits_ipv4_clients_by_address() -> None:
    check = build(rules=[{"key": "ip/48", "limits": ["1/s"]}])
    assert call(check, ip="2001:db8:1::1")[0].allowed
    assert not call(check, ip="2001:db8:1:ffff::2")[0].allowed  # the same /48
    assert call(check, ip="192.0.2.1")[0].allowed
    assert call(check, ip="192.0.2.2")[0].allowed  # IPv4: /32
    with pytest.raises(ValidationError, match="at most /32"):
        ratelimit.Config(rules=[{"key": "ip/33/200", "limits": ["1/s"]}])


def test_composite_header_and_jwt_claim_keys() -> None:
    check = build(rules=[{"key": ["header:X-Tenant", "ip"], "limits": ["1/s"]}])
    assert call(check, headers=[("X-Tenant", "a")])[0].allowed
    assert not call(check, headers=[("X-Tenant", "a")])[0].allowed
    assert call(check, headers=[("X-Tenant", "b")])[0].allowed
    assert call(check, headers=[("X-Tenant", "a")], ip="10.0.0.2")[0].allowed
    by_claim = build(rules=[{"key": "jwt:tenant", "limits": ["1/s"]}])
    one = Identity("jwt", "u1", "iss", claims={"tenant": "t1"})
    two = Identity("jwt", "u2", "iss", claims={"tenant": "t1"})
    assert call(by_claim, identity=one)[0].allowed
    assert not call(by_claim, identity=two, ip="10.0.0.5")[0].allowed  # same tenant


def test_a_long_header_value_is_hashed_into_a_bounded_key() -> None:
    check = build(rules=[{"key": "header:X-Id", "limits": ["1/s"]}])
    _, _, context = call(check, headers=[("X-Id", "v" * 5000)])
    item = context.limited[0]
    assert len(item.key) < 64 and len(item.names[0]) < 120


def test_path_parameter_key_with_and_without_a_spec() -> None:
    rule = {"key": "path:account", "match": "POST /accounts/{account}/transfers",
            "limits": ["1/s"]}
    check = build(rules=[rule])
    assert call(check, method="POST", path="/accounts/a1/transfers")[0].allowed
    assert not call(check, method="POST", path="/accounts/a1/transfers")[0].allowed
    assert call(check, method="POST", path="/accounts/a2/transfers")[0].allowed
    assert call(check, method="GET", path="/accounts/a1/transfers")[0].allowed  # not matched
    endpoint = Endpoint("POST", "/accounts/{account}/transfers")
    spec_check = build(rules=[rule])
    kwargs = {"method": "POST", "path": "/v1/accounts/z/transfers", "endpoint": endpoint,
              "params": {"account": "z"}}
    assert call(spec_check, **kwargs)[0].allowed
    assert not call(spec_check, **kwargs)[0].allowed


def test_match_by_tag_and_cost_from_the_spec() -> None:
    check = build(rules=[{"key": "ip", "match": "tag:search", "limits": ["10/s"]}])
    search = Endpoint("GET", "/search", tags=("search",), extensions={"x-apiward-cost": 4})
    other = Endpoint("GET", "/items")
    assert admitted(check, 4, endpoint=search) == 2  # 4 + 4, then 12 > 10
    assert admitted(check, 20, endpoint=other) == 20  # no rule applies


def test_count_status_counts_only_matching_answers() -> None:
    check = build(rules=[{"key": "ip", "match": "POST /login", "limits": ["2/min"],
                          "count_status": [401, 403]}])
    login = {"method": "POST", "path": "/login"}
    for _ in range(5):  # successful logins are never counted
        verdict, request, context = call(check, **login)
        assert verdict.allowed
        check.run_after(request, context, 200, None)
    for _ in range(2):
        verdict, request, context = call(check, **login)
        assert verdict.allowed
        check.run_after(request, context, 401, None)
    assert call(check, **login)[0].status == 429


def test_a_call_refused_further_on_is_given_back() -> None:
    check = build(rules=[{"key": "ip", "limits": ["2/min"]}])
    for _ in range(10):
        verdict, request, context = call(check)
        assert verdict.allowed
        check.run_after(request, context, 400, "schema")
    assert admitted(check, 3) == 2


def test_a_client_that_keeps_exceeding_is_banned_then_forgiven() -> None:
    check = build(rules=[{"key": "ip", "limits": ["1/s"]}],
                  ban={"after": 3, "within": "10s", "duration": "1m"})
    assert call(check)[0].allowed
    assert [call(check)[0].reason for _ in range(3)] == ["rate_limited"] * 3
    verdict = call(check, now=1002.0)[0]  # its quota is back, but it is banned now
    assert verdict.reason == "banned" and dict(verdict.headers)["Retry-After"] == "58"
    assert call(check, ip="10.0.0.2", now=1002.0)[0].allowed
    assert call(check, now=1061.0)[0].allowed


def test_config_errors_say_what_is_expected() -> None:
    with pytest.raises(ValidationError, match="expected a rate like"):
        ratelimit.Config(rules=[{"limits": ["lots"]}])
    with pytest.raises(ValidationError, match="unknown key part"):
        ratelimit.Config(rules=[{"key": "cookie", "limits": ["1/s"]}])
    with pytest.raises(ValidationError, match="unknown match"):
        ratelimit.Config(rules=[{"match": "login", "limits": ["1/s"]}])
    with pytest.raises(ValidationError, match="repeated: a"):
        ratelimit.Config(rules=[{"name": "a", "limits": ["1/s"]},
                                {"name": "a", "limits": ["1/s"]}])
    with pytest.raises(ValidationError, match="count_status"):
        ratelimit.Config(rules=[{"limits": ["1/s"], "count_status": [42]}])


def test_several_rules_each_report_their_state_in_the_headers() -> None:
    check = build(rules=[{"name": "fast", "key": "ip", "limits": ["10/s"]},
                         {"name": "slow", "key": "ip", "limits": ["5/min", "100/day"]}])
    _, _, context = call(check)
    policy, state = context.response_lines.decode().split("\r\n")
    assert policy == ('RateLimit-Policy: "fast";q=10;w=1, '
                      '"slow-0";q=5;w=60, "slow-1";q=100;w=86400')
    assert state == 'RateLimit: "fast";r=9;t=1, "slow-0";r=4;t=12'
