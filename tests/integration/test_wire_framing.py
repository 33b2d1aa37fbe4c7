"""Strict HTTP/1.1 framing, judged on the real gateway with raw bytes.

Every refusal must be a problem+json 400 (check "http"), the connection must then close,
and the upstream must not have received anything. Each refused request is sent while the
gateway holds an idle pooled upstream connection, the case where forwarding a head early
would be cheapest and so most tempting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from apiward.identity import apikeys
from apiward.state.store import open_store
from support.gateway import GatewayProcess
from support.wire_fixtures import (
    RawClient,
    WireUpstream,
    assert_problem,
    echo_path,
    exchange,
    request,
    settled_count,
    settled_value,
    wire_gateway,
)

HOST = b"Host: wire.test\r\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[WireUpstream]:
    with WireUpstream() as server:
        yield server


# Every target a test expects the upstream to see; anything else reaching it is a leak,
# found by the audit below even if it arrived after its test had finished.
FORWARDED = {"/echo/warm", "/echo/chunked", "/echo/obs-text", "/echo/abs?q=1", "/echo/http10",
             "/echo/outer", "/echo/first", "/echo/second", "/echo/upgrade", "/echo/before",
             *(f"/echo/p{i}" for i in range(5)), "/echo/underscores", "/echo/cl-te_",
             "/echo/te_", "/echo/cl_", "/echo/keyed", "/echo/no-underscore"}


@pytest.fixture(scope="module", autouse=True)
def audit(upstream: WireUpstream) -> Iterator[None]:
    yield
    settled_count(upstream, upstream.requests, within=0.3)
    leaked = [target for _, target, _ in upstream.seen if target not in FORWARDED]
    assert leaked == [], f"the upstream received refused requests: {leaked}"


@pytest.fixture(scope="module")
def gateway(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    with wire_gateway(tmp_path_factory.mktemp("framing"), upstream) as gw:
        yield gw


def refused(gateway: GatewayProcess, upstream: WireUpstream, data: bytes,
            status: int = 400) -> dict:
    """Send ``data`` after warming the pool; the refusal, the close, nothing upstream."""
    assert echo_path(gateway.port, "/echo/warm") == "/echo/warm"
    before, completed = upstream.requests, upstream.completed
    response, closed = exchange(gateway.port, data)
    doc = assert_problem(response, status, "http")
    assert response.closes, response.headers
    assert closed, "the gateway kept the connection open after a framing refusal"
    assert settled_count(upstream, before, within=0.05) == before, upstream.seen[-1]
    assert upstream.completed == completed
    return doc


def post(fields: bytes, body: bytes = b"", target: bytes = b"/echo/framing") -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\n" + HOST + fields + b"\r\n" + body


# -- Content-Length and Transfer-Encoding ------------------------------------------------
FRAMING = {
    "te_and_cl": post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "cl_and_te": post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
    "te_and_cl_zero": post(b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
                           b"0\r\n\r\n"),
    "two_cl_same": post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
    "two_cl_different": post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
    "cl_list_same": post(b"Content-Length: 1, 1\r\n", b"x"),
    "cl_list_different": post(b"Content-Length: 1, 2\r\n", b"xy"),
    "cl_plus": post(b"Content-Length: +5\r\n", b"hello"),
    "cl_minus": post(b"Content-Length: -1\r\n", b"x"),
    "cl_hex": post(b"Content-Length: 0x5\r\n", b"hello"),
    "cl_trailing_garbage": post(b"Content-Length: 5a\r\n", b"hello"),
    "cl_empty": post(b"Content-Length: \r\n"),
    "cl_inner_space": post(b"Content-Length: 1 2\r\n", b"x" * 12),
    "cl_overflow_u64": post(b"Content-Length: 18446744073709551616\r\n", b"x"),
    "cl_20_digits": post(b"Content-Length: 10000000000000000000\r\n", b"x"),
    "cl_19_digits": post(b"Content-Length: 1000000000000000000\r\n", b"x"),
    "te_gzip_chunked": post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    "te_chunked_gzip": post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"),
    "te_identity": post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"),
    "te_chunked_chunked": post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    "te_chunked_identity": post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    "te_xchunked": post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    "te_leading_comma": post(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"),
    "te_empty": post(b"Transfer-Encoding: \r\n", b"0\r\n\r\n"),
    "te_params": post(b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n"),
    "te_two_headers": post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                           b"0\r\n\r\n"),
    "te_two_headers_chunked": post(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "te_two_headers_case": post(
        b"Transfer-Encoding: chunked\r\ntransfer-encoding: identity\r\n", b"0\r\n\r\n"),
    "te_in_http10": (b"POST /echo/framing HTTP/1.0\r\n" + HOST
                     + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("data", FRAMING.values(), ids=FRAMING.keys())
def test_ambiguous_body_framing_is_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                           data: bytes) -> None:
    refused(gateway, upstream, data)


# -- chunked bodies ----------------------------------------------------------------------
TE = b"Transfer-Encoding: chunked\r\n"
CHUNKS = {
    "size_not_hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "size_negative": b"-1\r\nhello\r\n0\r\n\r\n",
    "size_0x_prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size_plus": b"+5\r\nhello\r\n0\r\n\r\n",
    "size_empty": b"\r\nhello\r\n0\r\n\r\n",
    "size_17_hex_digits": b"10000000000000000\r\nhello\r\n0\r\n\r\n",
    "size_overflow": b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "size_trailing_space": b"5 \r\nhello\r\n0\r\n\r\n",
    "size_bare_lf": b"5\nhello\r\n0\r\n\r\n",
    "data_longer_than_size": b"3\r\nhello\r\n0\r\n\r\n",
    "data_not_followed_by_crlf": b"5\r\nhelloXX0\r\n\r\n",
    "lf_in_extension": b"5;a=b\nc\r\nhello\r\n0\r\n\r\n",
    "last_chunk_bad": b"5\r\nhello\r\n0x\r\n\r\n",
}


@pytest.mark.parametrize("body", CHUNKS.values(), ids=CHUNKS.keys())
def test_invalid_chunks_are_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                    body: bytes) -> None:
    refused(gateway, upstream, post(TE, body, b"/echo/chunks"))


@pytest.mark.parametrize("body", CHUNKS.values(), ids=CHUNKS.keys())
def test_invalid_chunks_never_complete_upstream(gateway: GatewayProcess,
                                                upstream: WireUpstream, body: bytes) -> None:
    """Whatever was streamed before the error, the upstream never gets a whole request."""
    completed = upstream.completed
    response, closed = exchange(gateway.port, post(TE, body, b"/echo/chunks"))
    assert_problem(response, 400, "http")
    assert closed
    assert settled_value(lambda: upstream.completed, completed, 0.05) == completed


def test_valid_chunked_body_is_forwarded(gateway: GatewayProcess,
                                         upstream: WireUpstream) -> None:
    data = post(TE, b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
                b"/echo/chunked")
    with RawClient(gateway.port) as client:
        client.send(data)
        response = client.response()
    assert response.status == 200
    seen = response.json()
    assert seen["body"] == "hello world"
    assert not any(k.lower() == "x-trailer" for k, _ in seen["headers"])


# -- field syntax ------------------------------------------------------------------------
def get(fields: bytes) -> bytes:
    return b"GET /echo/fields HTTP/1.1\r\n" + HOST + fields + b"\r\n"


FIELDS = {
    "obs_fold": get(b"X-A: a\r\n b\r\n"),
    "obs_fold_tab": get(b"X-A: a\r\n\tb\r\n"),
    "obs_fold_first_field": b"GET /echo/fields HTTP/1.1\r\n folded: x\r\n" + HOST + b"\r\n",
    "space_before_colon": get(b"X-A : b\r\n"),
    "tab_before_colon": get(b"X-A\t: b\r\n"),
    "space_before_colon_host": b"GET /echo/fields HTTP/1.1\r\nHost : wire.test\r\n\r\n",
    "space_before_colon_te": post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    "nul_in_name": get(b"X-\x00A: b\r\n"),
    "nul_in_value": get(b"X-A: a\x00b\r\n"),
    "ctl_in_name": get(b"X-\x01A: b\r\n"),
    "ctl_in_value": get(b"X-A: a\x01b\r\n"),
    "esc_in_value": get(b"X-A: a\x1b[31mb\r\n"),
    "del_in_name": get(b"X-\x7fA: b\r\n"),
    "del_in_value": get(b"X-A: a\x7fb\r\n"),
    "cr_in_value": get(b"X-A: a\rb\r\n"),
    "lf_in_value": get(b"X-A: a\nb\r\n"),
    "empty_name": get(b": b\r\n"),
    "no_colon": get(b"X-A b\r\n"),
    "space_in_name": get(b"X A: b\r\n"),
    "non_token_name": get(b"X(A): b\r\n"),
    "high_byte_in_name": get(b"X-\xe9: b\r\n"),
    "bare_cr_line_end": get(b"X-A: b\r"),
}


@pytest.mark.parametrize("data", FIELDS.values(), ids=FIELDS.keys())
def test_malformed_fields_are_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                      data: bytes) -> None:
    refused(gateway, upstream, data)


def test_bare_lf_line_ends_are_refused_as_bad_request(gateway: GatewayProcess,
                                                      upstream: WireUpstream) -> None:
    """A bare LF ends no line (RFC 9112 §2.2 lets a server refuse it): 400, not 505."""
    refused(gateway, upstream, b"GET /echo/fields HTTP/1.1\nHost: wire.test\n\n")


def test_obs_text_in_a_value_is_accepted(gateway: GatewayProcess) -> None:
    """RFC 9110 §5.5: obs-text (0x80-0xFF) in a field value is allowed, not a framing error."""
    with RawClient(gateway.port) as client:
        client.send(b"GET /echo/obs-text HTTP/1.1\r\n" + HOST + b"X-Name: caf\xe9\r\n\r\n")
        response = client.response()
    assert response.status == 200
    assert ["X-Name", "caf\xe9"] in response.json()["headers"]


# -- methods -----------------------------------------------------------------------------
METHODS = [b"G@T", b"get", b"FOO", b"G T", b"GET\x00", b"\x00GET", b"GE\tT", b"DESCRIBE",
           b"(GET)", b"G\xc3\xa9T", b"X" * 40]


@pytest.mark.parametrize("method", METHODS, ids=[repr(m)[2:-1] for m in METHODS])
def test_invalid_method_tokens_are_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                           method: bytes) -> None:
    refused(gateway, upstream, method + b" /echo/method HTTP/1.1\r\n" + HOST + b"\r\n")


def test_connect_is_refused(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    refused(gateway, upstream, b"CONNECT wire.test:443 HTTP/1.1\r\nHost: wire.test:443\r\n\r\n")


def test_http2_preface_is_refused(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    before = upstream.requests
    response, closed = exchange(gateway.port,
                                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00")
    assert response.status in (400, 505) and response.is_problem
    assert closed
    assert settled_count(upstream, before, within=0.05) == before


# -- Host and the target's authority ----------------------------------------------------
HOSTS = {
    "absolute_form_other_host": b"GET http://evil.test/echo/host HTTP/1.1\r\n" + HOST + b"\r\n",
    "absolute_form_other_port": (b"GET http://wire.test:8080/echo/host HTTP/1.1\r\n" + HOST
                                 + b"\r\n"),
    "absolute_form_userinfo": (b"GET http://wire.test@evil.test/echo/host HTTP/1.1\r\n"
                               + HOST + b"\r\n"),
    "absolute_form_bad_scheme": b"GET ftp://wire.test/echo/host HTTP/1.1\r\n" + HOST + b"\r\n",
    "absolute_form_empty_authority": b"GET http:///echo/host HTTP/1.1\r\n" + HOST + b"\r\n",
    "two_host_same": b"GET /echo/host HTTP/1.1\r\n" + HOST + HOST + b"\r\n",
    "two_host_different": (b"GET /echo/host HTTP/1.1\r\n" + HOST + b"Host: evil.test\r\n\r\n"),
    "two_host_case": b"GET /echo/host HTTP/1.1\r\n" + HOST + b"host: wire.test\r\n\r\n",
    "missing_host": b"GET /echo/host HTTP/1.1\r\nX-A: b\r\n\r\n",
    "host_list": b"GET /echo/host HTTP/1.1\r\nHost: wire.test, evil.test\r\n\r\n",
    "host_space": b"GET /echo/host HTTP/1.1\r\nHost: wire .test\r\n\r\n",
    "host_userinfo": b"GET /echo/host HTTP/1.1\r\nHost: a@evil.test\r\n\r\n",
    "host_path": b"GET /echo/host HTTP/1.1\r\nHost: wire.test/x\r\n\r\n",
    "host_bad_port": b"GET /echo/host HTTP/1.1\r\nHost: wire.test:80x\r\n\r\n",
    "host_obs_text": b"GET /echo/host HTTP/1.1\r\nHost: wir\xe9.test\r\n\r\n",
}


@pytest.mark.parametrize("data", HOSTS.values(), ids=HOSTS.keys())
def test_host_confusion_is_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                   data: bytes) -> None:
    refused(gateway, upstream, data)


def test_absolute_form_with_the_same_host_is_served(gateway: GatewayProcess,
                                                    upstream: WireUpstream) -> None:
    data = b"GET http://WIRE.test/echo/a/../abs?q=1 HTTP/1.1\r\n" + HOST + b"\r\n"
    with RawClient(gateway.port) as client:
        client.send(data)
        response = client.response()
    assert response.status == 200
    seen = response.json()
    assert seen["path"] == "/echo/abs?q=1"
    assert sum(1 for k, _ in seen["headers"] if k.lower() == "host") == 1


def test_http10_without_host_is_served(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(b"GET /echo/http10 HTTP/1.0\r\n\r\n")
        response = client.response()
        assert response.status == 200
        assert response.json()["path"] == "/echo/http10"
        assert client.closed_within()


# -- versions ----------------------------------------------------------------------------
# src/apiward/wire/framing.py: versions llhttp parses but the gateway does not speak
# (HTTP/0.9, HTTP/2.0) are refused by check_version with 505, as are those llhttp itself
# refuses (HTTP/1.2, HTTP/3.0): the parser's "version" errors map to 505 too.
VERSIONS = {
    "http_2_0": (b"GET /echo/v HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    "http_0_9_token": (b"GET /echo/v HTTP/0.9\r\n" + HOST + b"\r\n", 505),
    "http_0_9_simple": (b"GET /echo/v\r\n" + HOST + b"\r\n", 505),
    "http_1_2": (b"GET /echo/v HTTP/1.2\r\n" + HOST + b"\r\n", 505),
    "http_3_0": (b"GET /echo/v HTTP/3.0\r\n" + HOST + b"\r\n", 505),
    "lower_case_protocol": (b"GET /echo/v http/1.1\r\n" + HOST + b"\r\n", 400),
    "garbage_version": (b"GET /echo/v HTTX/1.1\r\n" + HOST + b"\r\n", 400),
}


@pytest.mark.parametrize(("data", "status"), VERSIONS.values(), ids=VERSIONS.keys())
def test_unsupported_versions_are_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                          data: bytes, status: int) -> None:
    refused(gateway, upstream, data, status)


def test_http_0_9_without_host_is_refused(gateway: GatewayProcess,
                                          upstream: WireUpstream) -> None:
    """A bare "GET /path" line: refused (400 for the missing Host, or 505), closed."""
    before = upstream.requests
    response, closed = exchange(gateway.port, b"GET /echo/v\r\n\r\n")
    assert response.status in (400, 505) and response.is_problem
    assert closed
    assert settled_count(upstream, before, within=0.05) == before


# -- smuggling classics -----------------------------------------------------------------
def answers_and_seen(gateway: GatewayProcess, upstream: WireUpstream,
                     data: bytes) -> tuple[list, list[str]]:
    """Send ``data`` on one connection; every answer until the close and the targets the
    upstream saw meanwhile."""
    assert echo_path(gateway.port, "/echo/warm") == "/echo/warm"
    before = upstream.requests
    responses = []
    with RawClient(gateway.port, timeout=3) as client:
        client.try_send(data)
        while True:
            try:
                responses.append(client.response())
            except (EOFError, TimeoutError):
                break
    settled_count(upstream, before, within=0.05)
    return responses, [target for _, target, _ in upstream.seen[before:]]


def test_cl_te_smuggling_is_refused(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    data = post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nG" + b"ET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [400]
    assert seen == []


def test_te_cl_smuggling_is_refused(gateway: GatewayProcess, upstream: WireUpstream) -> None:
    hidden = b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    data = post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                b"%x\r\n%b\r\n0\r\n\r\n" % (len(hidden), hidden))
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [400]
    assert seen == []


@pytest.mark.parametrize("te", [b"Transfer-Encoding: xchunked", b"Transfer-Encoding : chunked",
                                b"Transfer-Encoding: chunked\r\nTransfer-encoding: cow",
                                b"Transfer-Encoding:\x0bchunked", b"Transfer-Encoding: chunked\x00",
                                b"X: x\nTransfer-Encoding: chunked"],
                         ids=["xchunked", "space_colon", "duplicate", "vtab", "nul", "lf_split"])
def test_te_obfuscation_with_cl_is_refused(gateway: GatewayProcess, upstream: WireUpstream,
                                           te: bytes) -> None:
    hidden = b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    data = post(b"Content-Length: %d\r\n%b\r\n" % (len(hidden) + 5, te), b"0\r\n\r\n" + hidden)
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert len(responses) == 1 and responses[0].status in (400, 505), responses
    assert responses[0].is_problem
    assert seen == []


def test_request_inside_a_chunked_body_stays_body(gateway: GatewayProcess,
                                                  upstream: WireUpstream) -> None:
    hidden = b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    data = post(TE + b"Connection: close\r\n", b"%x\r\n%b\r\n0\r\n\r\n" % (len(hidden), hidden),
                b"/echo/outer")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [200]
    assert responses[0].json()["body"] == hidden.decode()
    assert seen == ["/echo/outer"]


def test_request_after_a_short_chunked_body_is_a_pipelined_request(
        gateway: GatewayProcess, upstream: WireUpstream) -> None:
    """Bytes after the last chunk are the next request: answered, so it may be forwarded,
    and the upstream sees nothing the client was not answered for."""
    hidden = b"GET /echo/second HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
    data = post(TE, b"0\r\n\r\n" + hidden, b"/echo/first")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [200, 200]
    assert [r.json()["path"] for r in responses] == ["/echo/first", "/echo/second"]
    assert seen == ["/echo/first", "/echo/second"]


def test_bytes_after_an_invalid_request_are_never_parsed(gateway: GatewayProcess,
                                                         upstream: WireUpstream) -> None:
    data = (post(b"Content-Length: 1, 1\r\n", b"x")
            + b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [400]
    assert seen == []


def test_upgrade_does_not_open_a_tunnel(gateway: GatewayProcess,
                                        upstream: WireUpstream) -> None:
    """An Upgrade request is served as a plain one (Upgrade is hop-by-hop) and nothing the
    client sends after it is parsed or forwarded."""
    data = (b"GET /echo/upgrade HTTP/1.1\r\n" + HOST
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            + b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert len(responses) <= 1
    assert "/echo/smuggled" not in seen
    if responses:
        seen_headers = {k.lower() for k, _ in responses[0].json()["headers"]}
        assert "upgrade" not in seen_headers


def test_pipelined_valid_requests_are_answered_in_order(gateway: GatewayProcess,
                                                        upstream: WireUpstream) -> None:
    data = b"".join(request("GET", f"/echo/p{i}") for i in range(5))
    with RawClient(gateway.port) as client:
        client.send(data)
        paths = [client.response().json()["path"] for _ in range(5)]
    assert paths == [f"/echo/p{i}" for i in range(5)]


def test_refusal_in_a_pipeline_answers_earlier_requests_first(
        gateway: GatewayProcess, upstream: WireUpstream) -> None:
    data = (request("GET", "/echo/before") + post(b"Content-Length: 1, 1\r\n", b"x")
            + request("GET", "/echo/after"))
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].json()["path"] == "/echo/before"
    assert seen == ["/echo/before"]


# A request the gateway itself refuses (llhttp parsed it without complaint) followed, in
# the same packet, by another one: the framing of the first cannot be trusted, so nothing
# after it may be parsed, let alone forwarded.
REFUSED_THEN_MORE = {
    "te_gzip_chunked": post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    "te_two_headers": post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                           b"0\r\n\r\n"),
    "te_leading_comma": post(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n"),
    "cl_20_digits_zero_body": post(b"Content-Length: 00000000000000000000\r\n"),
    "two_host": b"GET /echo/host HTTP/1.1\r\n" + HOST + b"Host: evil.test\r\n\r\n",
    "host_mismatch": b"GET http://evil.test/echo/host HTTP/1.1\r\n" + HOST + b"\r\n",
    "missing_host": b"GET /echo/host HTTP/1.1\r\n\r\n",
    "http_2_0": b"GET /echo/v HTTP/2.0\r\n" + HOST + b"\r\n",
    "matrix_target": b"GET /echo/a;b HTTP/1.1\r\n" + HOST + b"\r\n",
    "encoded_slash": b"GET /echo/a%2Fb HTTP/1.1\r\n" + HOST + b"\r\n",
}


@pytest.mark.parametrize("first", REFUSED_THEN_MORE.values(), ids=REFUSED_THEN_MORE.keys())
def test_nothing_after_a_refused_request_is_forwarded(
        gateway: GatewayProcess, upstream: WireUpstream, first: bytes) -> None:
    data = first + b"GET /echo/after-refusal HTTP/1.1\r\n" + HOST + b"\r\n"
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert len(responses) == 1 and responses[0].status in (400, 505), responses
    assert seen == [], "a request after a refused one reached the upstream"


# -- field names with "_" (headers.underscores) ------------------------------------------
# CGI/WSGI-style servers read X_Forwarded_For and X-Forwarded-For as one variable
# (HTTP_X_FORWARDED_FOR): a field the gateway does not judge under one spelling must not
# reach the upstream under the other.
UNDERSCORED = [("X_Forwarded_For", "203.0.113.7"), ("X_Client_Cert_Subject", "CN=admin"),
               ("X_Real_IP", "203.0.113.7"), ("Content_Length", "5"),
               ("Transfer_Encoding", "chunked"), ("X_Request_ID", "forged"), ("X_A", "b")]


def seen_names(response) -> list[str]:
    return [name for name, _ in response.json()["headers"]]


def test_fields_with_underscores_are_dropped(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(request("GET", "/echo/underscores",
                            headers=[*UNDERSCORED, ("X-Kept", "yes")]))
        response = client.response()
    assert response.status == 200
    seen = response.json()["headers"]
    assert not [name for name, _ in seen if "_" in name], seen
    assert ["X-Kept", "yes"] in seen
    assert ["X-Forwarded-For", "127.0.0.1"] in seen  # the gateway's own, and only that
    assert sum(1 for name, _ in seen if name.lower() == "x-forwarded-for") == 1


def test_dropped_fields_still_count_towards_the_field_limit(gateway: GatewayProcess) -> None:
    """Thousands of tiny "_" fields would each cost a callback: past header_count (100 by
    default), dropped or not, the head is refused."""
    with RawClient(gateway.port) as client:
        client.send(request("GET", "/echo/many", headers=[(f"X_{i}", "v") for i in range(101)]))
        assert_problem(client.response(), 431, "limits")


def test_an_underscore_content_length_frames_nothing(gateway: GatewayProcess,
                                                     upstream: WireUpstream) -> None:
    """Content_Length is no framing for the gateway, and the upstream never sees it: the
    bytes after the head are the next request (here not one: 400, closed)."""
    data = post(b"Content_Length: 5\r\n", b"hello", b"/echo/cl_")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].json()["body"] == ""
    assert "Content_Length" not in seen_names(responses[0])
    assert seen == ["/echo/cl_"]


def test_an_underscore_transfer_encoding_cannot_desync(gateway: GatewayProcess,
                                                       upstream: WireUpstream) -> None:
    """The request is framed by its Content-Length alone on both sides: an upstream that
    took Transfer_Encoding for Transfer-Encoding would read the body as chunked, end it at
    "0", and take the rest for a request of its own. It never gets the field."""
    hidden = b"GET /echo/smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    body = b"0\r\n\r\n" + hidden
    data = post(b"Content-Length: %d\r\nTransfer_Encoding: chunked\r\n" % len(body), body,
                b"/echo/cl-te_")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [200]
    assert responses[0].json()["body"] == body.decode()
    assert "Transfer_Encoding" not in seen_names(responses[0])
    assert seen == ["/echo/cl-te_"]


def test_an_underscore_transfer_encoding_alone_frames_no_body(gateway: GatewayProcess,
                                                              upstream: WireUpstream) -> None:
    """Without a real framing field the request has no body (sent upstream with
    Content-Length: 0); the chunks after it are no request: 400, closed."""
    data = post(b"Transfer_Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"/echo/te_")
    responses, seen = answers_and_seen(gateway, upstream, data)
    assert [r.status for r in responses] == [200, 400]
    first = responses[0].json()
    assert first["body"] == "" and ["Content-Length", "0"] in first["headers"]
    assert "Transfer_Encoding" not in seen_names(responses[0])
    assert seen == ["/echo/te_"]


@pytest.fixture(scope="module")
def rejecting(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[GatewayProcess]:
    with wire_gateway(tmp_path_factory.mktemp("underscores"), upstream,
                      headers={"underscores": "reject"}) as gw:
        yield gw


@pytest.mark.parametrize(("name", "value"), UNDERSCORED, ids=[n for n, _ in UNDERSCORED])
def test_reject_mode_refuses_a_field_with_an_underscore(
        rejecting: GatewayProcess, upstream: WireUpstream, name: str, value: str) -> None:
    doc = refused(rejecting, upstream, request("GET", "/echo/rejected", headers=[(name, value)]))
    assert doc["type"].endswith(":underscore_in_header_name")


def test_reject_mode_refuses_a_trailer_field_with_an_underscore(
        rejecting: GatewayProcess, upstream: WireUpstream) -> None:
    """Trailers are never passed on; with reject they are refused like header fields.
    (The body streams while it is read: the upstream never gets a whole request.)"""
    completed = upstream.completed
    data = post(TE, b"5\r\nhello\r\n0\r\nX_Trailer: t\r\n\r\n", b"/echo/rejected")
    response, closed = exchange(rejecting.port, data)
    assert assert_problem(response, 400, "http")["type"].endswith(":underscore_in_header_name")
    assert closed
    assert settled_value(lambda: upstream.completed, completed, 0.05) == completed


def test_reject_mode_serves_fields_without_underscores(rejecting: GatewayProcess) -> None:
    assert echo_path(rejecting.port, "/echo/no-underscore",
                     headers=[("X-A", "b")]) == "/echo/no-underscore"


@pytest.fixture(scope="module")
def keyed(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[GatewayProcess, str]]:
    """A gateway whose identity check wants an API key in X-API-Key on every call."""
    directory = tmp_path_factory.mktemp("keyed")
    store_path = directory / "apiward.db"

    async def make() -> str:
        store = open_store(str(store_path))
        _, key = await apikeys.create(store, "alice")
        await store.close()
        return key

    key = asyncio.run(make())
    checks = {"identity": {"key_store": str(store_path),
                           "schemes": {"key": {"api_keys": {"header": "X-API-Key"}}},
                           "rules": [{"path": "/*", "require": [["key"]]}]}}
    with wire_gateway(directory, upstream, checks=checks) as gw:
        yield gw, key


def test_the_identity_check_and_the_upstream_see_the_same_key(
        keyed: tuple[GatewayProcess, str], upstream: WireUpstream) -> None:
    """The key the check verified is the only one the upstream gets: an X_API_Key beside
    it (one variable with X-API-Key for a CGI-style upstream) is dropped..."""
    gw, key = keyed
    with RawClient(gw.port) as client:
        client.send(request("GET", "/echo/keyed",
                            headers=[("X-API-Key", key), ("X_API_Key", "someone-else")]))
        response = client.response()
    assert response.status == 200, response.body
    seen = response.json()["headers"]
    assert ["X-API-Key", key] in seen and "X_API_Key" not in seen_names(response)


def test_a_key_under_an_underscore_name_is_no_key(keyed: tuple[GatewayProcess, str],
                                                  upstream: WireUpstream) -> None:
    """... and a key sent only as X_API_Key is seen by nobody: 401, nothing upstream."""
    gw, key = keyed
    before = upstream.requests
    with RawClient(gw.port) as client:
        client.send(request("GET", "/echo/keyed-underscore", headers=[("X_API_Key", key)]))
        response = client.response()
    assert_problem(response, 401, "identity")
    assert settled_count(upstream, before, within=0.05) == before
