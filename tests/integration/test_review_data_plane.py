"""Data-plane review: misbehaving upstreams, pipelining, pool limits, reload in flight.

One gateway serves several APIs, each routed by path prefix to an upstream that plays one
trick (see ``support.review_fixtures.ScriptedUpstream``), plus a real upstream for the
pool and pipelining cases.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    CountingUpstream,
    established_sockets,
    gateway_config,
    rss_kib,
    start_gateway,
    wait_until,
)
from support.review_fixtures import ScriptedUpstream, UpstreamPeer
from support.wire_fixtures import RawClient

HEADER_TIMEOUT = 1.0
SEND_TIMEOUT = 1.0
PER_IP = 24
TIGHT = "tight.test"  # the API whose pool holds at most 2 connections


# -- upstream scripts -----------------------------------------------------------------------
def two_answers(peer: UpstreamPeer) -> None:
    """Answers each request with two responses in one write (the second one unasked)."""
    while (request := peer.read_request()) is not None:
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
                  b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nsmuggled")
        del request


def head_with_body(peer: UpstreamPeer) -> None:
    """Answers every request, HEAD included, with a 5-byte body, in one write."""
    while peer.read_request() is not None:
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")


def interim_answers(peer: UpstreamPeer) -> None:
    """100 Continue and 103 Early Hints before the final answer, all in one write."""
    while peer.read_request() is not None:
        peer.send(b"HTTP/1.1 100 Continue\r\n\r\n"
                  b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def switching_protocols(peer: UpstreamPeer) -> None:
    """Answers 101 (an upgrade nobody asked for: the gateway never forwards Upgrade)."""
    if peer.read_request() is not None:
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\n\r\n")
        peer.wait_closed()


def early_answer(peer: UpstreamPeer) -> None:
    """Answers 413 as soon as the head is read, before the body, then closes."""
    if peer.read_head() is not None:
        peer.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n"
                  b"Connection: close\r\n\r\ntoo big!")


def make_dies_after_first(upstream: list[ScriptedUpstream]):
    def dies_after_first(peer: UpstreamPeer) -> None:
        """Keep-alive for one answer; then reads the next request whole and dies without
        answering (a crash after receiving it, or an idle close racing the request)."""
        request = peer.read_request()
        if request is None:
            return
        upstream[0].record(request[0])
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        request = peer.read_request()
        if request is not None:
            upstream[0].record(request[0])
    return dies_after_first


def instant_16k(peer: UpstreamPeer) -> None:
    """Answers at once with a 16 kB body, head and body in one write."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 16000\r\n\r\n" + b"x" * 16000
    while peer.read_request() is not None:
        peer.send(answer)


def idle_closer(peer: UpstreamPeer) -> None:
    """Keep-alive answer, then closes the connection while it is idle in the pool."""
    if peer.read_request() is not None:
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


# -- fixtures -----------------------------------------------------------------------------
SCRIPTS = {
    "/two": two_answers,
    "/headbody": head_with_body,
    "/interim": interim_answers,
    "/upgrade": switching_protocols,
    "/early": early_answer,
    "/idleclose": idle_closer,
    "/fast16k": instant_16k,
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def scripted() -> Iterator[dict[str, ScriptedUpstream]]:
    servers = {prefix: ScriptedUpstream(script) for prefix, script in SCRIPTS.items()}
    holder: list[ScriptedUpstream] = []
    servers["/dies"] = ScriptedUpstream(make_dies_after_first(holder))
    holder.append(servers["/dies"])
    for server in servers.values():
        server.__enter__()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gateway(upstream: CountingUpstream, scripted: dict[str, ScriptedUpstream],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    apis = [{"name": prefix.strip("/"), "match": {"path_prefix": prefix},
             "upstream": {"url": server.url, "response_timeout": "3s",
                          # /early answers before the body is whole: bodies must stream
                          "request_buffering": prefix != "/early"}}
            for prefix, server in scripted.items()]
    apis.append({"name": "tight", "match": {"host": TIGHT},
                 "upstream": {"url": upstream.url, "connect_timeout": "1s",
                              "pool": {"max_total": 2, "max_idle": 2}}})
    apis.append({"name": "main", "upstream": {"url": upstream.url, "response_timeout": "5s"}})
    config = gateway_config(*apis, limits={"header_timeout": f"{HEADER_TIMEOUT}s",
                                           "keepalive_timeout": "5s",
                                           "send_timeout": f"{SEND_TIMEOUT}s",
                                           "max_connections_per_ip": PER_IP})
    with start_gateway(config, tmp_path_factory.mktemp("review")) as gw:
        yield gw


def get(path: str, host: str = "gw.test", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def assert_no_traceback(gateway: GatewayProcess, since: int = 0) -> None:
    """No traceback in the gateway's stderr after offset ``since``."""
    tail = gateway.stderr[since:]
    assert "Traceback" not in tail, tail[-3000:]


# -- responses stay with their requests ----------------------------------------------------
def test_unasked_second_upstream_response_is_not_forwarded(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(get("/two/a"))
        first = client.response()
        assert (first.status, first.body) == (200, b"first")
        client.send(get("/echo/next"))  # served by the real upstream, on the same connection
        second = client.response()
        assert second.header("x-smuggled") is None
        assert second.body != b"smuggled"


def test_head_answer_with_a_body_does_not_desync_the_client(gateway: GatewayProcess) -> None:
    with RawClient(gateway.port) as client:
        client.send(b"HEAD /headbody/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        head = client.response(head_request=True)
        assert head.status == 200
        client.send(get("/echo/after-head"))
        after = client.response()
        assert after.status == 200
        assert after.json()["path"] == "/echo/after-head"


def test_interim_upstream_answers_are_consumed(gateway: GatewayProcess) -> None:
    mark = len(gateway.stderr)
    with RawClient(gateway.port) as client:
        for _ in range(3):  # the upstream connection stays usable after its 1xx answers
            client.send(get("/interim/x"))
            response = client.response()
            assert (response.status, response.body) == (200, b"ok")
    assert_no_traceback(gateway, mark)


def test_unasked_switching_protocols_is_a_clean_502(gateway: GatewayProcess) -> None:
    mark = len(gateway.stderr)
    with RawClient(gateway.port) as client:
        client.send(get("/upgrade/x"))
        response = client.response()
        assert response.status == 502
        assert response.is_problem
    assert_no_traceback(gateway, mark)


def test_early_upstream_answer_reaches_the_client(gateway: GatewayProcess) -> None:
    """The upstream refuses before the body is complete: the client gets that answer and
    the connection closes (its body framing is unfinished)."""
    mark = len(gateway.stderr)
    with RawClient(gateway.port) as client:
        client.send(b"POST /early/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n"
                    b"Content-Type: application/octet-stream\r\n\r\n" + b"a" * 1000)
        response = client.response()
        assert (response.status, response.body) == (413, b"too big!")
        assert client.closed_within(3.0)
    assert_no_traceback(gateway, mark)


# -- pipelining and timers ------------------------------------------------------------------
def test_pipelined_request_behind_a_slow_call_is_answered(gateway: GatewayProcess) -> None:
    slow = 2.5 * HEADER_TIMEOUT  # well within response_timeout (5 s)
    with RawClient(gateway.port, timeout=10) as client:
        client.send(get("/echo/warm"))  # leaves an idle pooled connection to take at once
        assert client.response().status == 200
        client.send(get(f"/slow?s={slow}") + get("/echo/second"))
        first = client.response()
        assert first.status == 200
        second = client.response()
        assert second.json()["path"] == "/echo/second"


# -- pool limits and connection reuse -------------------------------------------------------
def test_pool_at_max_total_queues_calls_until_a_connection_frees(
        gateway: GatewayProcess, upstream: CountingUpstream) -> None:
    def call(i: int) -> int:
        with RawClient(gateway.port, timeout=10) as client:
            client.send(get(f"/slow?s=0.05&i={i}", TIGHT))
            return client.response().status
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(call, range(12)))
    assert statuses == [200] * 12
    assert established_sockets(gateway.proc.pid, upstream.port) <= 2 + 2  # tight + main


def test_pool_exhausted_is_a_quick_504_and_the_pool_recovers(gateway: GatewayProcess) -> None:
    started = time.monotonic()

    def call(i: int) -> tuple[int, float]:
        with RawClient(gateway.port, timeout=10) as client:
            client.send(get(f"/slow?s=2&i={i}", TIGHT))
            return client.response().status, time.monotonic() - started
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(call, range(5)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 504, 504, 504]
    assert all(elapsed < 1.9 for status, elapsed in results if status == 504)
    # No slot leaked: two calls at once still get a connection each, at once.
    with ThreadPoolExecutor(2) as pool:
        again = list(pool.map(lambda i: call(i)[0], range(2)))
    assert again == [200, 200]


def test_upstream_closing_an_idle_pooled_connection(gateway: GatewayProcess,
                                                    scripted: dict[str, ScriptedUpstream]
                                                    ) -> None:
    server = scripted["/idleclose"]
    with RawClient(gateway.port) as client:
        client.send(get("/idleclose/1"))
        assert client.response().body == b"ok"
        wait_until(lambda: established_sockets(gateway.proc.pid, server.port) == 0,
                   message="the gateway to notice the upstream's close")
        client.send(b"POST /idleclose/2 HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\n\r\nabc")
        response = client.response()
        assert (response.status, response.body) == (200, b"ok")


def test_non_idempotent_request_is_not_replayed(gateway: GatewayProcess,
                                                scripted: dict[str, ScriptedUpstream]) -> None:
    server = scripted["/dies"]
    with RawClient(gateway.port) as client:
        client.send(get("/dies/warm"))
        assert client.response().body == b"ok"
        client.send(b"POST /dies/transfer HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        response = client.response()
    wait_until(lambda: server.count(b"POST /dies/transfer") >= 1)
    assert response.status == 502
    assert server.count(b"POST /dies/transfer") == 1


# -- reload with calls in flight -------------------------------------------------------------
def test_reload_with_calls_waiting_for_a_full_pool(gateway: GatewayProcess) -> None:
    """SIGHUP while two calls hold the whole pool and one more waits for it: all finish."""
    mark = len(gateway.stderr)
    results: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        with RawClient(gateway.port, timeout=10) as client:
            client.send(get(f"/slow?s=0.3&r={i}", TIGHT))
            status = client.response().status
        with lock:
            results.append(status)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    gateway.signal(signal.SIGHUP)
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [200, 200, 200]
    with RawClient(gateway.port) as client:
        client.send(get("/echo/after-reload", TIGHT))
        assert client.response().status == 200
    assert_no_traceback(gateway, mark)


# -- a client that never reads ----------------------------------------------------------------
def test_pipelining_client_that_never_reads_keeps_memory_bounded(
        gateway: GatewayProcess) -> None:
    pid = gateway.proc.pid
    before = rss_kib(pid)
    budget_kib = 64 * 1024
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.setblocking(False)
    burst = b"GET /fast16k/x HTTP/1.1\r\nHost: gw.test\r\n\r\n" * 200
    grown = 0
    try:
        deadline = time.monotonic() + 4 * SEND_TIMEOUT
        while time.monotonic() < deadline and grown < budget_kib:
            try:
                sock.send(burst)
            except BlockingIOError:
                time.sleep(0.01)  # pacing a sender, not synchronisation
            except OSError:
                break  # the gateway gave up on this client: what it should do
            grown = rss_kib(pid) - before
    finally:
        sock.close()
    assert grown < budget_kib, f"gateway RSS grew {grown} KiB for one non-reading client"


# -- per-address connection counts ------------------------------------------------------------
def test_per_ip_count_does_not_drift(gateway: GatewayProcess) -> None:
    """Connections ended every which way (reset mid-call, mid-body, mid-head, refused over
    the limit, normal close) leave the per-address count where it was."""
    for _ in range(3):
        clients = [RawClient(gateway.port) for _ in range(PER_IP)]
        over = RawClient(gateway.port)
        refused = over.response()
        assert refused.status == 503
        over.close()
        clients[0].send(get("/slow?s=2"))
        clients[1].send(b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\n\r\nab")
        clients[2].send(b"GET /echo HTTP/1.1\r\nHost: gw")
        clients[3].send(get("/slow?s=2", TIGHT))
        clients[4].send(get("/echo/ok"))
        assert clients[4].response().status == 200
        for client in clients:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.close()  # linger 0: a reset
        wait_until(lambda: established_sockets(gateway.proc.pid, gateway.port) == 0,
                   message="the gateway to drop every client connection")
    clients = [RawClient(gateway.port) for _ in range(PER_IP)]
    try:
        for client in clients:
            client.send(get("/echo/admitted"))
        assert [client.response().status for client in clients] == [200] * PER_IP
    finally:
        for client in clients:
            client.close()
