"""Pass-through behaviour of the real gateway process in front of a real upstream:
methods, bodies, keep-alive, HTTP/1.0, pipelining, 100-continue, chunked both ways,
bodiless answers, hop-by-hop headers, X-Forwarded-*, trusted proxies, request ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    REQUEST_ID,
    CountingUpstream,
    RawClient,
    api,
    echo_header_values,
    gateway_config,
    start_gateway,
    wait_event,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    # The ipfilter denies 1.2.3.4: a client spoofing that address must not be judged as it.
    config = gateway_config(api(upstream.url, checks={"ipfilter": {"deny": ["1.2.3.4/32"]}}))
    with start_gateway(config, tmp_path_factory.mktemp("basics")) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http


def raw(gateway: GatewayProcess, **kwargs: float) -> RawClient:
    return RawClient(gateway.port, **kwargs)


# -- methods, bodies, queries -----------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_method_body_and_query_pass_through(client: httpx.Client, method: str) -> None:
    body = b"" if method == "GET" else b'{"name": "x", "n": [1, 2]}'
    response = client.request(method, "/echo/items/7?b=2&a=1&a=%20x&empty=", content=body)
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == method
    assert seen["path"] == "/echo/items/7?b=2&a=1&a=%20x&empty="
    assert seen["body"] == body.decode()


def test_binary_body_of_every_byte_value(client: httpx.Client) -> None:
    body = bytes(range(256)) * 64
    response = client.post("/echo/bin", content=body)
    assert response.json()["body"].encode("latin-1") == body


# -- keep-alive ---------------------------------------------------------------------------
def test_keepalive_many_requests_on_one_client_connection(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        for i in range(5):
            conn.request("GET", f"/echo/ka/{i}")
            response = conn.read_response()
            assert response.status == 200
            assert response.json()["path"] == f"/echo/ka/{i}"
            assert "close" not in (response.header("connection") or "").lower()


def test_upstream_connections_are_reused(gateway: GatewayProcess,
                                         upstream: CountingUpstream) -> None:
    before = upstream.connections
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for i in range(10):
            assert http.get(f"/echo/reuse/{i}").status_code == 200
    # Fresh client connections each time too: the pool is per upstream, not per client.
    for i in range(5):
        with raw(gateway) as conn:
            conn.request("GET", f"/echo/reuse/raw/{i}", headers={"Connection": "close"})
            assert conn.read_response().status == 200
    assert upstream.connections - before <= 1, (
        f"15 sequential calls opened {upstream.connections - before} upstream connections")


# -- HTTP/1.0 -----------------------------------------------------------------------------
def test_http10_closes_by_default(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("GET", "/echo/ten", version="1.0")
        response = conn.read_response()
        assert response.status == 200
        assert response.json()["path"] == "/echo/ten"
        assert conn.closed()


def test_http10_without_host(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("GET", "/echo/ten", {"X-A": "1"}, version="1.0", host="")
        response = conn.read_response()
        assert response.status == 200
        seen = response.json()
        assert seen["path"] == "/echo/ten"
        assert ["X-A", "1"] in seen["headers"]
        assert echo_header_values(response, "x-forwarded-for") == ["127.0.0.1"]
        assert REQUEST_ID.fullmatch(echo_header_values(response, "x-request-id")[0])
        assert conn.closed()


def test_http10_keepalive_when_asked(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        for i in range(2):
            conn.request("GET", f"/echo/ten/{i}", {"Connection": "keep-alive"}, version="1.0")
            response = conn.read_response()
            assert response.status == 200
            assert response.header("content-length") is not None
            assert (response.header("connection") or "").lower() == "keep-alive"
            assert response.json()["path"] == f"/echo/ten/{i}"
        conn.request("GET", "/echo/ten/last", version="1.0")  # no keep-alive: then close
        assert conn.read_response().status == 200
        assert conn.closed()


def test_http10_post_with_body(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("POST", "/echo/ten", body=b"payload", version="1.0")
        response = conn.read_response()
        assert response.json()["body"] == "payload"


# -- pipelining -----------------------------------------------------------------------------
def test_pipelined_requests_answered_in_order(gateway: GatewayProcess) -> None:
    # The first one is the slowest: answers must still come in request order.
    paths = ["/slow?s=0.3", "/echo/p2", "/echo/p3?x=1"]
    data = b"".join(f"GET {p} HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode() for p in paths)
    with raw(gateway) as conn:
        conn.send(data)
        got = [conn.read_response().json()["path"] for _ in paths]
        assert got == paths
        conn.request("GET", "/echo/after")
        assert conn.read_response().json()["path"] == "/echo/after"


def test_pipelined_post_bodies_stay_with_their_requests(gateway: GatewayProcess) -> None:
    data = (b"POST /echo/1 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\none"
            b"PUT /echo/2 HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\ntwo\r\n0\r\n\r\n"
            b"GET /echo/3 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    with raw(gateway) as conn:
        conn.send(data)
        answers = [conn.read_response().json() for _ in range(3)]
    assert [(a["method"], a["path"], a["body"]) for a in answers] == [
        ("POST", "/echo/1", "one"), ("PUT", "/echo/2", "two"), ("GET", "/echo/3", "")]


# -- Expect: 100-continue ---------------------------------------------------------------------
def test_expect_100_continue(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.send(b"POST /echo/expect HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 11\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        interim = conn.read_head()  # before any body byte is sent
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        conn.send(b"hello world")
        response = conn.read_response()
        assert response.status == 200
        assert response.json()["body"] == "hello world"
        # The connection is still usable.
        conn.request("GET", "/echo/next")
        assert conn.read_response().json()["path"] == "/echo/next"


# -- chunked ---------------------------------------------------------------------------------
def test_chunked_request_body_forwarded(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.send(b"POST /echo/chunked HTTP/1.1\r\nHost: gw.test\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.json()["body"] == "hello world!"


def test_chunked_request_body_from_httpx_stream(client: httpx.Client) -> None:
    parts = [b"a" * 1000, b"b" * 70000, b"c"]
    response = client.post("/echo/gen", content=iter(parts))
    assert response.json()["body"] == b"".join(parts).decode()


def test_chunked_response_rechunked_for_http11(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("GET", "/chunked")
        response = conn.read_response()
        assert response.status == 200
        assert (response.header("transfer-encoding") or "").lower() == "chunked"
        assert response.complete
        assert response.body == b"hello chunked world"
        assert response.header("x-hop") is None
        assert "x-hop" not in (response.header("connection") or "").lower()
        conn.request("GET", "/echo/after-chunked")
        assert conn.read_response().json()["path"] == "/echo/after-chunked"


def test_chunked_response_close_delimited_for_http10(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("GET", "/chunked", {"Connection": "keep-alive"}, version="1.0")
        response = conn.read_response()
        assert response.status == 200
        assert response.header("transfer-encoding") is None
        assert response.body == b"hello chunked world"  # read until the close
        assert conn.eof
        assert response.header("x-hop") is None


def test_close_delimited_upstream_answer(gateway: GatewayProcess, client: httpx.Client) -> None:
    response = client.get("/close")
    assert response.status_code == 200
    assert response.content == b"until the end"
    with raw(gateway) as conn:
        conn.request("GET", "/close")
        response = conn.read_response()
        assert response.complete
        assert response.body == b"until the end"
        conn.request("GET", "/echo/after-close")  # keep-alive with the client still holds
        assert conn.read_response().json()["path"] == "/echo/after-close"


# -- bodiless answers -------------------------------------------------------------------------
def test_head_has_no_body(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("HEAD", "/big?size=1000000")
        conn.request("HEAD", "/echo/head")
        conn.request("GET", "/echo/after-head")
        big = conn.read_response("HEAD")
        assert big.status == 200
        assert big.header("content-length") == "1000000"
        assert conn.read_response("HEAD").status == 200
        # Any body byte sent after a HEAD answer would be read as this response's head.
        after = conn.read_response()
        assert after.status == 200
        assert after.json()["path"] == "/echo/after-head"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(gateway: GatewayProcess, status: int) -> None:
    with raw(gateway) as conn:
        conn.request("GET", f"/status/{status}")
        conn.request("GET", "/echo/after-status")
        response = conn.read_response()
        assert response.status == status
        assert response.header("transfer-encoding") is None
        after = conn.read_response()
        assert after.status == 200
        assert after.json()["path"] == "/echo/after-status"


def test_other_statuses_pass_through(client: httpx.Client) -> None:
    for status in (201, 404, 418, 500, 503):
        response = client.get(f"/status/{status}")
        assert response.status_code == status
        assert response.content == b"ok"


# -- hop-by-hop --------------------------------------------------------------------------------
def test_hop_by_hop_request_headers_removed(gateway: GatewayProcess) -> None:
    with raw(gateway) as conn:
        conn.request("GET", "/echo/hop", {
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "X-Kept": "yes",
        })
        response = conn.read_response()
    names = {k.lower() for k, _ in response.json()["headers"]}
    for gone in ("x-secret", "keep-alive", "proxy-authorization", "proxy-connection", "te",
                 "trailer"):
        assert gone not in names, f"{gone} reached the upstream"
    assert "x-kept" in names
    # Whatever Connection header goes upstream is the gateway's own, naming nothing.
    for value in echo_header_values(response, "connection"):
        assert "x-secret" not in value.lower()


def test_hop_by_hop_response_headers_removed(client: httpx.Client) -> None:
    response = client.get("/chunked")
    assert response.text == "hello chunked world"
    assert "x-hop" not in response.headers
    assert "x-hop" not in response.headers.get("connection", "").lower()


# -- X-Forwarded-* ---------------------------------------------------------------------------
def test_forwarded_headers_set(client: httpx.Client, gateway: GatewayProcess) -> None:
    response = client.get("/echo/xff", headers={"Host": "api.example:8443"})
    assert echo_header_values(response, "x-forwarded-for") == ["127.0.0.1"]
    assert echo_header_values(response, "x-forwarded-proto") == ["http"]
    assert echo_header_values(response, "x-forwarded-host") == ["api.example:8443"]


def test_spoofed_forwarded_for_is_replaced(client: httpx.Client) -> None:
    response = client.get("/echo/spoof", headers={
        "X-Forwarded-For": "1.2.3.4", "Forwarded": "for=1.2.3.4",
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
    # 1.2.3.4 is denied by the ipfilter: a 200 shows the check judged the socket peer.
    assert response.status_code == 200
    assert echo_header_values(response, "x-forwarded-for") == ["127.0.0.1"]
    assert echo_header_values(response, "x-forwarded-proto") == ["http"]
    assert "evil.example" not in echo_header_values(response, "x-forwarded-host")
    for _, value in response.json()["headers"]:
        assert "1.2.3.4" not in value


@pytest.fixture(scope="module")
def trusting(upstream: CountingUpstream, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("trusting")
    events = directory / "events.jsonl"
    config = gateway_config(
        api(upstream.url, checks={"ipfilter": {"deny": ["1.2.3.4/32"]}}),
        events_file=events, trusted_proxies=["127.0.0.0/8"])
    with start_gateway(config, directory) as gw:
        yield gw, events


def test_trusted_proxy_forwarded_for_is_the_client(
        trusting: tuple[GatewayProcess, Path]) -> None:
    gateway, events = trusting
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        denied = http.get("/echo/t", headers={"X-Forwarded-For": "1.2.3.4"})
        assert denied.status_code == 403
        event = wait_event(events, denied.headers["x-request-id"])
        assert event["client_ip"] == "1.2.3.4"
        assert event["check"] == "ipfilter"

        allowed = http.get("/echo/t", headers={"X-Forwarded-For": "5.6.7.8"})
        assert allowed.status_code == 200
        assert echo_header_values(allowed, "x-forwarded-for") == ["5.6.7.8, 127.0.0.1"]

        # Several hops: the right-most untrusted address is the client.
        chained = http.get("/echo/t", headers={"X-Forwarded-For": "9.9.9.9, 1.2.3.4, 127.0.0.2"})
        assert chained.status_code == 403


# -- request ids ------------------------------------------------------------------------------
def test_request_id_generated_returned_and_forwarded(client: httpx.Client) -> None:
    first = client.get("/echo/rid")
    second = client.get("/echo/rid")
    rid = first.headers["x-request-id"]
    assert REQUEST_ID.fullmatch(rid)
    assert echo_header_values(first, "x-request-id") == [rid]
    assert second.headers["x-request-id"] != rid


def test_valid_client_request_id_kept(client: httpx.Client) -> None:
    rid = "client-Req_42.a:b"
    response = client.get("/echo/rid", headers={"X-Request-ID": rid})
    assert response.headers["x-request-id"] == rid
    assert echo_header_values(response, "x-request-id") == [rid]


@pytest.mark.parametrize("bad", ["<script>alert(1)</script>", "a" * 300, "has space", ""])
def test_invalid_client_request_id_replaced(client: httpx.Client, bad: str) -> None:
    response = client.get("/echo/rid", headers={"X-Request-ID": bad})
    rid = response.headers["x-request-id"]
    assert rid != bad
    assert REQUEST_ID.fullmatch(rid)
    assert echo_header_values(response, "x-request-id") == [rid]


def test_request_id_on_bodiless_and_streamed_answers(client: httpx.Client) -> None:
    for path in ("/status/204", "/chunked", "/close"):
        assert REQUEST_ID.fullmatch(client.get(path).headers["x-request-id"])
