"""Client address derivation and the problem+json answer."""

from __future__ import annotations

import ipaddress

import orjson

from apiward.pipeline.verdict import Violation, deny
from apiward.wire.forwarded import client_ip, forwarded_chain
from apiward.wire.problem import problem_response

TRUSTED = ipaddress.ip_network("10.0.0.0/8")


def trusted(ip: str) -> bool:
    return ipaddress.ip_address(ip) in TRUSTED


def test_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    chain = forwarded_chain(["1.2.3.4"], [])
    assert client_ip("203.0.113.9", chain, trusted) == "203.0.113.9"


def test_trusted_proxy_chain_walked_from_the_right() -> None:
    chain = forwarded_chain(["6.6.6.6, 198.51.100.7, 10.0.0.2"], [])
    assert chain == ["6.6.6.6", "198.51.100.7", "10.0.0.2"]
    # 10.0.0.2 is another trusted proxy; 198.51.100.7 is the first untrusted hop
    assert client_ip("10.0.0.1", chain, trusted) == "198.51.100.7"


def test_forwarded_header_parsed_when_no_xff() -> None:
    chain = forwarded_chain([], ['for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"'])
    assert chain == ["192.0.2.60", "2001:db8:cafe::17"]


def test_garbage_in_the_chain_is_skipped() -> None:
    assert forwarded_chain(["unknown, <script>, 192.0.2.1:8080"], []) == ["192.0.2.1"]


def test_problem_response_is_complete_http_with_rfc9457_fields() -> None:
    verdict = deny(400, "bad_thing", "it was bad", headers=(("X-Extra", "1"),),
                   violations=(Violation("body.a", "type", "not a number"),))
    raw = problem_response(verdict, "schema", "rid-1", close=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Content-Type: application/problem+json" in head
    assert b"X-Request-ID: rid-1" in head
    assert b"X-Extra: 1" in head
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    doc = orjson.loads(body)
    assert doc == {
        "type": "urn:apiward:problem:bad_thing", "title": "Bad Request", "status": 400,
        "detail": "it was bad", "check": "schema", "request_id": "rid-1",
        "errors": [{"location": "body.a", "rule": "type", "message": "not a number"}],
    }


def test_problem_response_for_head_has_no_body() -> None:
    raw = problem_response(deny(405, "m", "d"), "methods", "r", head_only=True)
    assert raw.endswith(b"\r\n\r\n")
    assert b"Content-Length: " in raw
