"""Request-target normalisation through the real gateway: what the upstream sees.

Two gateways share one upstream: one with the default path rules (non-ASCII and empty
segments refused), one with ``paths: {allow_non_ascii: true, empty_segments: merge}``.
The upstream's /echo answers with the target it received, so every accepted case checks
the exact path forwarded and every refused case checks that nothing was forwarded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.gateway import GatewayProcess
from support.upstream import UpstreamServer
from support.wire_fixtures import (
    RawClient,
    assert_problem,
    echo_path,
    exchange,
    settled_count,
    wire_gateway,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(scope="module")
def strict(upstream: UpstreamServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GatewayProcess]:
    with wire_gateway(tmp_path_factory.mktemp("target-strict"), upstream) as gw:
        yield gw


@pytest.fixture(scope="module")
def lenient(upstream: UpstreamServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    with wire_gateway(tmp_path_factory.mktemp("target-lenient"), upstream,
                      paths={"allow_non_ascii": True, "empty_segments": "merge"}) as gw:
        yield gw


def raw_get(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: wire.test\r\n\r\n"


def seen_path(gateway: GatewayProcess, target: bytes) -> str:
    with RawClient(gateway.port) as client:
        client.send(raw_get(target))
        response = client.response()
    assert response.status == 200, (target, response.status, response.body[:300])
    return response.json()["path"]


def refused(gateway: GatewayProcess, upstream: UpstreamServer, target: bytes) -> dict:
    before = upstream.requests
    response, closed = exchange(gateway.port, raw_get(target))
    doc = assert_problem(response, 400, "http")
    assert closed
    assert settled_count(upstream, before, within=0.05) == before, upstream.seen[-1]
    return doc


# -- accepted and normalised -------------------------------------------------------------
NORMALISED = [
    (b"/echo/a/./b/../c", "/echo/a/c"),
    (b"/echo/a/../b", "/echo/b"),
    (b"/echo/./x", "/echo/x"),
    (b"/echo/a/b/../../c", "/echo/c"),
    (b"/echo/a/..", "/echo/"),
    (b"/echo/a/.", "/echo/a/"),
    (b"/echo/a/%2e%2e/b", "/echo/b"),
    (b"/echo/a/%2E/b", "/echo/a/b"),
    (b"/echo/a/.%2e/b", "/echo/b"),
    (b"/echo/%41", "/echo/A"),
    (b"/echo/%41%62%63", "/echo/Abc"),
    (b"/echo/%7e%2D%5f%2e1", "/echo/~-_.1"),
    (b"/echo/a%3ab", "/echo/a%3Ab"),
    (b"/echo/a%3Ab", "/echo/a%3Ab"),
    (b"/echo/a%20b", "/echo/a%20b"),
    (b"/echo/%25", "/echo/%25"),
    (b"/echo/%2541", "/echo/%2541"),
    (b"/echo/a:b@c!$&'()*+,=", "/echo/a:b@c!$&'()*+,="),
    (b"/echo/a/b/", "/echo/a/b/"),
    (b"/echo/..a/a..", "/echo/..a/a.."),
    (b"/echo/...", "/echo/..."),
]


@pytest.mark.parametrize(("target", "path"), NORMALISED,
                         ids=[t.decode() for t, _ in NORMALISED])
def test_targets_are_normalised_before_forwarding(strict: GatewayProcess, target: bytes,
                                                  path: str) -> None:
    assert seen_path(strict, target) == path


def test_upstream_log_matches_what_the_client_was_told(strict: GatewayProcess,
                                                       upstream: UpstreamServer) -> None:
    assert seen_path(strict, b"/echo/one/../two/%41") == "/echo/two/A"
    assert upstream.seen[-1][1] == "/echo/two/A"


QUERIES = [
    b"/echo?a=1&b=2",
    b"/echo?x=%2f%2F&y=../..&z=a;b&w=%41",
    b"/echo?path=/../../etc/passwd",
    b"/echo?q=%C3%A9&r=%00",
    b"/echo?a=%5C&b=\\?c",
    b"/echo?a=b?c=d",
    b"/echo?a=//b",
    b"/echo?=&&=",
]


@pytest.mark.parametrize("target", QUERIES, ids=[t.decode() for t in QUERIES])
def test_query_strings_pass_untouched(strict: GatewayProcess, target: bytes) -> None:
    assert seen_path(strict, target) == target.decode()


def test_query_untouched_while_the_path_is_normalised(strict: GatewayProcess) -> None:
    assert seen_path(strict, b"/echo/./a/../b?c=/../%41") == "/echo/b?c=/../%41"


def test_absolute_form_target_is_normalised(strict: GatewayProcess) -> None:
    data = b"GET http://wire.test/echo/a/%2e%2e/%42?x=%41 HTTP/1.1\r\nHost: wire.test\r\n\r\n"
    with RawClient(strict.port) as client:
        client.send(data)
        response = client.response()
    assert response.status == 200
    assert response.json()["path"] == "/echo/B?x=%41"


# -- refused by default ------------------------------------------------------------------
REFUSED = {
    "escape_root": b"/../echo",
    "escape_root_deep": b"/echo/../../x",
    "escape_root_only": b"/..",
    "escape_root_encoded": b"/echo/%2e%2e/%2E%2E/x",
    "escape_root_mixed": b"/echo/.%2E/..",
    "encoded_slash": b"/echo/a%2Fb",
    "encoded_slash_lower": b"/echo/a%2fb",
    "encoded_slash_dotdot": b"/echo/..%2F..%2Fx",
    "encoded_backslash": b"/echo/a%5Cb",
    "encoded_backslash_lower": b"/echo/a%5cb",
    "raw_backslash": b"/echo/a\\b",
    "raw_backslash_dotdot": b"/echo/..\\..\\x",
    "encoded_nul": b"/echo/a%00b",
    "encoded_nul_end": b"/echo/a%00",
    "invalid_percent_alone": b"/echo/a%",
    "invalid_percent_one_digit": b"/echo/a%4",
    "invalid_percent_not_hex": b"/echo/a%zz",
    "invalid_percent_double": b"/echo/a%%41",
    "invalid_percent_query": b"/echo?a=%zz",
    "encoded_question_mark": b"/echo/a%3Fb",
    "encoded_question_mark_lower": b"/echo/a%3fb",
    "encoded_hash": b"/echo/a%23b",
    "fragment": b"/echo/a#frag",
    "fragment_after_query": b"/echo/a?b=c#frag",
    "empty_fragment": b"/echo#",
    "double_slash": b"/echo//a",
    "double_slash_start": b"//echo",
    "triple_slash": b"/echo///a",
    "trailing_double_slash": b"/echo/a//",
    "matrix": b"/echo/a;b=c",
    "matrix_jsessionid": b"/echo;jsessionid=x",
    "matrix_dotdot": b"/echo/..;/x",
    "matrix_empty": b"/echo/;/x",
    "encoded_cr": b"/echo/a%0Db",
    "encoded_lf": b"/echo/a%0ab",
    "encoded_tab": b"/echo/a%09b",
    "encoded_del": b"/echo/a%7Fb",
    "encoded_esc": b"/echo/a%1Bb",
    "raw_non_ascii": "/echo/é".encode(),
    "encoded_non_ascii": b"/echo/%C3%A9",
    "encoded_non_ascii_lower": b"/echo/%c3%a9",
    "overlong_dot": b"/echo/%C0%AE%C0%AE/x",
    "overlong_dot_single": b"/echo/a%C0%AE",
    "overlong_slash": b"/echo/a%C0%AFb",
    "overlong_3_byte_dot": b"/echo/%E0%80%AE",
    "fullwidth_solidus": b"/echo/a%EF%BC%8Fb",
    "fullwidth_solidus_raw": "/echo/a\uff0fb".encode(),
    "invalid_utf8_ff": b"/echo/%FF",
    "invalid_utf8_truncated": b"/echo/%C3",
    "surrogate": b"/echo/%ED%A0%80",
    "not_origin_form": b"echo/a",
    "asterisk_for_get": b"*",
    "relative_dot": b"./echo",
}


@pytest.mark.parametrize("target", REFUSED.values(), ids=REFUSED.keys())
def test_ambiguous_targets_are_refused(strict: GatewayProcess, upstream: UpstreamServer,
                                       target: bytes) -> None:
    refused(strict, upstream, target)


def test_raw_space_and_control_bytes_in_the_target_are_refused(
        strict: GatewayProcess, upstream: UpstreamServer) -> None:
    for target in (b"/echo/a b", b"/echo/a\x01b", b"/echo/a\x7fb", b"/echo/a\x00b",
                   b"/echo/a\tb"):
        before = upstream.requests
        response, closed = exchange(strict.port, raw_get(target))
        assert_problem(response, 400, "http")
        assert closed, target
        assert settled_count(upstream, before, within=0.05) == before, target


# -- the lenient gateway: merged empty segments, non-ASCII allowed ------------------------
MERGED = [
    (b"/echo//a", "/echo/a"),
    (b"//echo", "/echo"),
    (b"/echo///a//b", "/echo/a/b"),
    (b"/echo//a/..//b", "/echo/b"),
    (b"/echo/%C3%A9", "/echo/%C3%A9"),
    (b"/echo/%c3%a9", "/echo/%C3%A9"),
    (b"/echo/%E6%97%A5%E6%9C%AC/../x", "/echo/x"),
]


@pytest.mark.parametrize(("target", "path"), MERGED, ids=[p for _, p in MERGED])
def test_lenient_rules_merge_and_allow_non_ascii(lenient: GatewayProcess, target: bytes,
                                                 path: str) -> None:
    assert seen_path(lenient, target) == path


RAW_NON_ASCII = ["/echo/é".encode(), "/echo/日本".encode()]


@pytest.mark.parametrize("target", RAW_NON_ASCII, ids=["e-acute", "nihon"])
def test_raw_utf8_is_refused_even_by_lenient_rules(lenient: GatewayProcess,
                                                   upstream: UpstreamServer,
                                                   target: bytes) -> None:
    """A request-target is ASCII (RFC 9112 §3.2, RFC 3986 §2): llhttp refuses raw UTF-8
    whatever the config says; ``allow_non_ascii`` admits it percent-encoded."""
    refused(lenient, upstream, target)


LENIENT_REFUSED = {
    "overlong_dot": b"/echo/%C0%AE%C0%AE/x",
    "overlong_slash": b"/echo/a%C0%AFb",
    "fullwidth_solidus": b"/echo/a%EF%BC%8Fb",
    "fullwidth_solidus_raw": "/echo/a\uff0fb".encode(),
    "fullwidth_full_stop": b"/echo/%EF%BC%8E%EF%BC%8E/x",
    "fullwidth_backslash": b"/echo/a%EF%BC%BCb",
    "division_slash": b"/echo/a%E2%88%95b",
    "fraction_slash": b"/echo/a%E2%81%84b",
    "one_dot_leader": b"/echo/%E2%80%A4%E2%80%A4/x",
    "zero_width_space": b"/echo/a%E2%80%8Bb",
    "bidi_override": b"/echo/a%E2%80%AEb",
    "no_break_space": b"/echo/a%C2%A0b",
    "ideographic_space": b"/echo/a%E3%80%80b",
    "c1_control": b"/echo/a%C2%85b",
    "invalid_utf8": b"/echo/%FF%FE",
    "surrogate": b"/echo/%ED%A0%80",
    "encoded_slash": b"/echo/a%2Fb",
    "escape_root": b"/echo/../../x",
    "matrix": b"/echo/a;b",
}


@pytest.mark.parametrize("target", LENIENT_REFUSED.values(), ids=LENIENT_REFUSED.keys())
def test_lenient_rules_still_refuse_lookalikes_and_ambiguity(
        lenient: GatewayProcess, upstream: UpstreamServer, target: bytes) -> None:
    refused(lenient, upstream, target)


def test_strict_and_lenient_agree_on_plain_paths(strict: GatewayProcess,
                                                 lenient: GatewayProcess) -> None:
    for target in ("/echo", "/echo/a/b", "/echo/a/../b?x=1"):
        assert echo_path(strict.port, target) == echo_path(lenient.port, target)
