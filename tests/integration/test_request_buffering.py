"""Request buffering: by default a body is read whole before the upstream is used, so a
slow or cut-short body ties up only the gateway; ``request_buffering: false`` streams."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from support.gateway import GatewayProcess
from support.wire_fixtures import (
    RawClient,
    WireUpstream,
    assert_problem,
    settled_count,
    wait_until,
    wire_gateway,
)

HEAD = b"POST /echo/upload HTTP/1.1\r\nHost: wire.test\r\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[WireUpstream]:
    with WireUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def buffered(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[GatewayProcess]:
    with wire_gateway(tmp_path_factory.mktemp("buffered"), upstream) as gw:
        yield gw


@pytest.fixture(scope="module")
def streaming(upstream: WireUpstream, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[GatewayProcess]:
    with wire_gateway(tmp_path_factory.mktemp("streaming"), upstream,
                      upstream={"request_buffering": False}) as gw:
        yield gw


def test_a_chunked_body_that_never_ends_reaches_no_upstream(buffered: GatewayProcess,
                                                            upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(buffered.port) as client:
        client.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        client.sock.shutdown(socket.SHUT_WR)  # the client half-closes after one chunk
        assert_problem(client.response(), 400)
    assert settled_count(upstream, before) == before


def test_a_body_in_progress_holds_no_upstream_request(buffered: GatewayProcess,
                                                      upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(buffered.port) as client:
        client.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\nslow\r\n")
        assert client.silent_for(0.2)
        assert upstream.requests == before  # nothing upstream while the body trickles in
        client.send(b"5\r\n body\r\n0\r\n\r\n")
        response = client.response()
    assert response.status == 200
    echoed = response.json()
    assert echoed["body"] == "slow body"
    names = {name.lower(): value for name, value in echoed["headers"]}
    assert names["content-length"] == "9" and "transfer-encoding" not in names  # re-framed


def test_streaming_forwards_the_head_before_the_body_is_whole(streaming: GatewayProcess,
                                                              upstream: WireUpstream) -> None:
    before = upstream.requests
    with RawClient(streaming.port) as client:
        client.send(HEAD + b"Content-Length: 10\r\n\r\nhalf ")
        assert wait_until(lambda: upstream.requests > before)  # the head went on at once
        client.send(b"done!")
        response = client.response()
    assert response.status == 200 and response.json()["body"] == "half done!"
