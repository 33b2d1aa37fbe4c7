"""resp: the RESP2 parser as plain calls (every type, replies cut at every byte, many in one
read, malformed input); the encoding against redis-py's; and the client against a real
redis-server (pipelining in order, NOSCRIPT, AUTH and SELECT, TLS, the server killed in the
middle of a pipeline) and against small fake servers (silent, half a reply, garbage, a
Redis older than 6). Every live test runs on asyncio's loop and on uvloop's. No sleeps."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import Connection

from apiward.ratelimit import redis_limiter, resp
from apiward.ratelimit.gcra import Rate
from apiward.ratelimit.local import BanRule, LocalLimiter
from apiward.ratelimit.redis_limiter import RedisLimiter
from apiward.ratelimit.resp import (
    Parser,
    ProtocolError,
    ReplyError,
    RespClient,
    Script,
    _Connection,
    bulk,
    command,
)
from apiward.ratelimit.table import SharedTable
from support.redis_server import RedisServer, free_port

REDIS_ERRORS = redis_limiter._ERRORS  # what the limiter takes for "Redis failed"


def shape(value: Any) -> Any:
    """A reply with its errors as comparable tuples."""
    if isinstance(value, ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return [shape(item) for item in value]
    return value


# -- the parser

REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b"+\r\n", b""),
    (b"-ERR unknown command 'X'\r\n", ("error", "ERR unknown command 'X'")),
    (b"-NOSCRIPT No matching script.\r\n", ("error", "NOSCRIPT No matching script.")),
    (b":0\r\n", 0),
    (b":-42\r\n", -42),
    (b":9223372036854775807\r\n", 2**63 - 1),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"$6\r\n1 2 3.\r\n", b"1 2 3."),
    (b"$4\r\n\r\n\r\n\r\n", b"\r\n\r\n"),  # CRLF inside the data
    (b"$3\r\n\x00\xff\n\r\n", b"\x00\xff\n"),
    (b"*0\r\n", []),
    (b"*-1\r\n", None),
    (b"*3\r\n:1\r\n$1\r\na\r\n*2\r\n+x\r\n$-1\r\n", [1, b"a", [b"x", None]]),
    (b"*2\r\n-WRONGTYPE no\r\n:1\r\n", [("error", "WRONGTYPE no"), 1]),
]
STREAM = b"".join(data for data, _ in REPLIES)
EXPECTED = [want for _, want in REPLIES]


@pytest.mark.parametrize(("data", "want"), REPLIES)
def test_each_type(data: bytes, want: Any) -> None:
    assert [shape(r) for r in Parser().feed(data)] == [want]


def test_many_replies_in_one_read() -> None:
    assert [shape(r) for r in Parser().feed(STREAM)] == EXPECTED
    assert [shape(r) for r in Parser().feed(STREAM * 50)] == EXPECTED * 50


def test_replies_cut_at_every_byte() -> None:
    for cut in range(len(STREAM) + 1):
        parser = Parser()
        got = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert [shape(r) for r in got] == EXPECTED, cut
    parser = Parser()
    got = []
    for i in range(len(STREAM)):
        got += parser.feed(STREAM[i:i + 1])
    assert [shape(r) for r in got] == EXPECTED
    assert parser.feed(b"") == []


def test_a_reply_waits_for_its_last_byte() -> None:
    parser = Parser()
    for data, _ in REPLIES:
        assert parser.feed(data[:-1]) == [], data
        assert len(parser.feed(data[-1:])) == 1, data


def encode(value: Any) -> bytes:
    """The test's own RESP2 writer."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, tuple):
        return b"-" + value[1].encode() + b"\r\n"
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


values = st.recursive(
    st.none() | st.integers(-2**63, 2**63 - 1) | st.binary(max_size=40)
    | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20).map(
        lambda text: ("error", text)),
    lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(replies=st.lists(values, min_size=1, max_size=8), data=st.data())
def test_any_replies_in_any_pieces(replies: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode(reply) for reply in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = Parser()
    got = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += parser.feed(stream[start:stop])
    assert [shape(r) for r in got] == replies


@pytest.mark.parametrize("data", [
    b"?what\r\n",  # no such type
    b"HTTP/1.1 400 Bad Request\r\n",  # not Redis at all
    b"$abc\r\n",
    b":\r\n",
    b":12x\r\n",
    b"$3\r\nabcd\r\n",  # longer than it said
    b"$-2\r\n",
    b"*-5\r\n",
    b"*1\r\n" * 5000 + b":1\r\n",  # nested past any sense
])
def test_what_is_not_resp_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        Parser().feed(data)
    assert issubclass(ProtocolError, ConnectionError)  # the limiter's "Redis failed"


def test_an_endless_reply_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp, "MAX_REPLY", 100)
    parser = Parser()
    assert parser.feed(b"$1000\r\n" + b"x" * 90) == []
    with pytest.raises(ProtocolError, match="longer than 100"):
        parser.feed(b"x" * 20)


# -- the encoding


def redis_py(*args: Any) -> bytes:
    """What redis-py writes for the same command."""
    return b"".join(Connection(encoding_errors="surrogatepass").pack_command(*args))


def test_command_encodes_as_redis_py_does() -> None:
    for args in [("PING",), ("ZADD", "k", repr(1.5), "node\udcff"), ("EXPIRE", "k", 60),
                 ("SET", b"\x00\r\n", "")]:
        assert command(*args) == redis_py(*args)
    assert command("SCORE", 1.5) == redis_py("SCORE", "1.5")
    assert bulk(b"") == b"$0\r\n\r\n"


@pytest.mark.parametrize("time_source", ["redis", "caller"])
@pytest.mark.parametrize("ban", [None, BanRule(3, 10.0, 30.0)])
def test_the_limiters_evalsha_is_redis_pys(time_source: str, ban: BanRule | None) -> None:
    """The bytes the limiter builds for one decision are the bytes redis-py wrote from its
    keys and arguments (as the cluster path still does)."""
    limiter = RedisLimiter("redis://127.0.0.1:1/0", time_source=time_source)  # type: ignore[arg-type]
    rates = (Rate(5, 1.0, 5), Rate(100, 3600.0, 20))
    keys = ["apiward:{ip:1}rl|a|r|0|ip:1", "apiward:{k\udcff}rl|a|r|1|k\udcff"]
    if ban is not None:
        keys += ["apiward:{ip:1}ban|ip:1", "apiward:{ip:1}viol|ip:1"]
    for op, now, cost in [(b"a", 1.7e9 + 0.25, 1), (b"p", 0.0, 0.5), (b"c", 3.0, -2)]:
        args = [op, limiter._now(now), limiter._slack, repr(float(cost)),
                *redis_limiter._rate_args(rates)]
        if ban is not None:
            args += redis_limiter._ban_args(ban)
        want = redis_py("EVALSHA", redis_limiter._SCRIPT.sha, len(keys), *keys, *args)
        assert limiter._payload(op, keys, now, cost, rates, ban) == want


def test_auth_and_select_on_connect() -> None:
    async def hello(**given: Any) -> list[tuple[bytes, bytes | None]]:
        return RespClient("h", 1, timeout=1, connect_timeout=1, **given)._hello

    def made(**given: Any) -> list[tuple[bytes, bytes | None]]:
        return asyncio.run(hello(**given))

    assert made() == []
    assert made(password="s3cret") == [
        (command("AUTH", "default", "s3cret"), command("AUTH", "s3cret"))]
    assert made(username="alice", password="pw", db=3) == [
        (command("AUTH", "alice", "pw"), None), (command("SELECT", "3"), None)]
    assert made(username="alice") == [(command("AUTH", "alice", ""), None)]


def test_the_url_gives_the_connection() -> None:
    server = redis_limiter._server
    assert server("redis://u%40x:p%3Aw%2F@[::1]:7000/2", "shown", {}) == (
        {"host": "::1", "port": 7000, "db": 2, "username": "u@x", "password": "p:w/"}, None)
    assert server("rediss://h", "shown", {"ssl_ca_certs": "ca.pem"}) == (
        {"host": "h", "port": 6379, "db": 0, "username": None, "password": None},
        {"ssl_ca_certs": "ca.pem"})
    assert server("redis://:@h:1/", "s", {})[0]["password"] == ""
    with pytest.raises(ValueError, match="database number"):
        RedisLimiter("redis://127.0.0.1:6379/zero")
    with pytest.raises(ValueError, match="need TLS; write rediss://"):
        RedisLimiter("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem")


def test_script_heads() -> None:
    script = Script("return 1")
    assert script.sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    assert script.head(2, 1) + bulk(b"a") + bulk(b"b") + bulk(b"c") == redis_py(
        "EVALSHA", script.sha, 2, "a", "b", "c")
    assert script.head(2, 1) is script.head(2, 1)  # made once
    assert script.load == redis_py("SCRIPT", "LOAD", "return 1")


# -- live: fixtures


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh loop of each kind; whatever reaches its exception handler (a task's
    exception nobody retrieved, a callback's traceback) fails the test."""
    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    unraisable: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        yield loop
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
        gc.collect()
        sys.unraisablehook = hook
    assert not seen, seen
    assert not [u for u in unraisable if not issubclass(u.exc_type, ResourceWarning)]


def run(loop: asyncio.AbstractEventLoop, coroutine: Any) -> Any:
    return loop.run_until_complete(coroutine)


def client_of(server: RedisServer | int, **given: Any) -> RespClient:
    port = server if isinstance(server, int) else server.port
    given.setdefault("timeout", 2.0)
    given.setdefault("connect_timeout", 2.0)
    return RespClient("127.0.0.1", port, **given)


COUNTED = Script("local n = redis.call('INCR', KEYS[1]) return {n, ARGV[1]}")


def counted(key: bytes, arg: bytes) -> bytes:
    return COUNTED.head(1, 1) + bulk(key) + bulk(arg)


PING = command("PING")
PAUSE = ("CLIENT", "PAUSE", "3000")  # Redis holds every client's commands for 3 s


async def all_outcomes(futures: list[Any]) -> list[Any]:
    return await asyncio.gather(*futures, return_exceptions=True)


# -- live: a real redis-server


def test_pipelined_calls_answer_in_order(loop, redis_url: str, redis_server) -> None:
    async def scenario() -> None:
        client = client_of(redis_server)
        try:
            assert await client.call(PING) == b"PONG"
            me = await client.call(command("CLIENT", "ID"))
            assert await client.call(COUNTED.load) == COUNTED.sha.encode()
            # 500 calls in flight at once on the one connection, written in order: each
            # gets its own reply, and Redis ran them in the order they were made.
            futures = [client.call(counted(b"n", b"%d" % i), COUNTED.load) for i in range(500)]
            assert await asyncio.gather(*futures) == [[i + 1, b"%d" % i] for i in range(500)]
            # Concurrent tasks too, each awaiting its own.
            async def one(i: int) -> Any:
                return await client.call(command("ECHO", b"task %d" % i))
            assert await asyncio.gather(*(one(i) for i in range(200))) == [
                b"task %d" % i for i in range(200)]
            with pytest.raises(ReplyError, match=r"^ERR unknown command"):
                await client.call(command("NO-SUCH-COMMAND"))
            assert await client.call(PING) == b"PONG"  # an error reply harms no one else
            replies = await client.pipeline([command("SET", "k", "v"),
                                             command("LPUSH", "k", "x"), command("GET", "k")])
            assert [shape(r)[0] if isinstance(r, ReplyError) else r for r in replies] == [
                b"OK", "error", b"v"]
            assert await client.call(command("CLIENT", "ID")) == me  # one connection did all
        finally:
            await client.aclose()

    run(loop, scenario())


def test_noscript_loads_the_script_and_sends_the_call_again(loop, redis_url: str,
                                                            redis_server) -> None:
    async def scenario() -> None:
        client = client_of(redis_server)
        try:
            assert await client.call(counted(b"n", b"a"), COUNTED.load) == [1, b"a"]  # unknown
            redis_server.command("SCRIPT", "FLUSH")
            futures = [client.call(counted(b"n", b"%d" % i), COUNTED.load) for i in range(50)]
            got = await asyncio.gather(*futures)
            assert [arg for _, arg in got] == [b"%d" % i for i in range(50)]
            assert sorted(n for n, _ in got) == list(range(2, 52))  # each ran exactly once
            redis_server.command("SCRIPT", "FLUSH")
            with pytest.raises(ReplyError, match=r"^NOSCRIPT"):  # no load given: no retry
                await client.call(counted(b"n", b"x"))
            assert await client.call(command("GET", "n")) == b"51"
        finally:
            await client.aclose()

    run(loop, scenario())


def test_the_limiter_survives_a_script_flush(loop, redis_url: str, redis_server) -> None:
    names = ("rl|api|r|0|ip:1",)
    rates = (Rate(10, 60.0, 10),)

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url, time_source="caller")
        try:
            assert (await limiter.admit("ip:1", names, rates, 0.0, 1, None)).remaining == 9
            redis_server.command("SCRIPT", "FLUSH")
            assert (await limiter.admit("ip:1", names, rates, 0.0, 1, None)).remaining == 8
            assert limiter.available
        finally:
            await limiter.close()

    run(loop, scenario())


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, redis_server) -> Iterator[RedisServer]:
    """A redis-server with a password and an ACL user (whose password needs quoting in a
    URL)."""
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), extra_args=(
        "--requirepass", "s3cret", "--user", "alice", "on", ">p@ss:w/rd", "~*", "+@all"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_auth_with_a_password_and_a_user(loop, guarded: RedisServer) -> None:
    async def scenario() -> None:
        clients = [client_of(guarded, password="s3cret"),
                   client_of(guarded, username="alice", password="p@ss:w/rd", db=3)]
        wrong = client_of(guarded, password="wrong-one")
        none = client_of(guarded)
        try:
            for client in clients:
                assert await client.call(PING) == b"PONG"
            await clients[1].call(command("SET", "in-3", "x"))
            assert await clients[0].call(command("EXISTS", "in-3")) == 0  # db 0
            assert await clients[0].call(command("SELECT", "3")) == b"OK"
            assert await clients[0].call(command("GETDEL", "in-3")) == b"x"
            with pytest.raises(ReplyError, match=r"^WRONGPASS") as caught:
                await wrong.call(PING)
            assert isinstance(caught.value, REDIS_ERRORS) and "wrong-one" not in str(caught.value)
            with pytest.raises(ReplyError, match=r"^NOAUTH"):
                await none.call(PING)
        finally:
            for client in (*clients, wrong, none):
                await client.aclose()

    run(loop, scenario())


def test_the_limiter_authenticates_from_its_url(loop, guarded: RedisServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="apiward")
    names = ("rl|api|r|0|ip:1",)
    rates = (Rate(10, 60.0, 10),)
    port = guarded.port

    async def scenario() -> None:
        good = RedisLimiter(f"redis://alice:p%40ss%3Aw%2Frd@127.0.0.1:{port}/5",
                            time_source="caller")
        bad = RedisLimiter(f"redis://:wrong-one@127.0.0.1:{port}/0", fallback=LocalLimiter(
            SharedTable(1 << 10, shared=False)))
        checking = client_of(guarded, password="s3cret", db=5)
        try:
            await checking.call(command("FLUSHDB"))
            assert (await good.admit("ip:1", names, rates, 0.0, 1, None)).remaining == 9
            await good.heartbeat()
            assert good.available and good.nodes == 1
            keys = await checking.call(command("KEYS", "*"))
            assert sorted(keys) == [b"apiward:nodes", b"apiward:{ip:1}rl|api|r|0|ip:1"]
            assert (await bad.admit("ip:1", names, rates, 0.0, 1, None)).allowed  # fallback
            assert not bad.available
        finally:
            for limiter in (good, bad):
                await limiter.close()
            await checking.aclose()

    run(loop, scenario())
    assert "WRONGPASS" in caplog.text and "wrong-one" not in caplog.text


def test_server_killed_mid_pipeline_fails_every_call_then_recovers(
        loop, redis_url: str, redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = client_of(redis_server, timeout=5.0)  # the loss, not a timeout, ends them
        try:
            await client.call(COUNTED.load)
            redis_server.command(*PAUSE)
            futures = [client.call(counted(b"n", b"%d" % i)) for i in range(50)]
            await asyncio.sleep(0)  # (the iteration's end: the calls are written)
            assert redis_server.process is not None
            os.kill(redis_server.process.pid, signal.SIGKILL)
            started = time.monotonic()
            outcomes = await all_outcomes(futures)
            assert time.monotonic() - started < 1.0
            assert all(type(o) is ConnectionError for o in outcomes), outcomes
            assert all(isinstance(o, REDIS_ERRORS) for o in outcomes)
            with pytest.raises(ConnectionError):  # refused (or reset, while it dies)
                await client.call(PING)
            redis_server.stop()  # (reaped)
            redis_server.start()
            assert await client.call(counted(b"n", b"back"), COUNTED.load) == [1, b"back"]
        finally:
            await client.aclose()

    try:
        run(loop, scenario())
    finally:
        redis_server.start()


def test_limiter_with_redis_killed_mid_pipeline_decides_every_call_then_recovers(
        loop, redis_url: str, redis_server: RedisServer, caplog) -> None:
    caplog.set_level(logging.INFO, logger="apiward")
    clock = [1000.0]
    names = ("rl|api|r|0|ip:1",)
    rates = (Rate(1000, 60.0, 1000),)

    async def scenario() -> None:
        limiter = RedisLimiter(redis_url, clock=lambda: clock[0], timeout=5.0,
                               fallback=LocalLimiter(SharedTable(1 << 10, shared=False)))
        try:
            assert (await limiter.admit("ip:1", names, rates, 0.0, 1, None)).remaining == 999
            redis_server.command(*PAUSE)
            decisions = [asyncio.ensure_future(limiter.admit("ip:1", names, rates, 0.0, 1, None))
                         for _ in range(50)]
            for _ in range(3):
                await asyncio.sleep(0)  # the tasks start and their calls are written
            os.kill(redis_server.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
            started = time.monotonic()
            got = await asyncio.gather(*decisions)
            assert time.monotonic() - started < 1.0
            assert all(d.allowed for d in got)  # decided here, at the fallback
            assert not limiter.available
            redis_server.stop()
            redis_server.start()
            clock[0] += 1.0  # the next probe
            back = await limiter.admit("ip:1", names, rates, 0.0, 1, None)
            assert limiter.available and back.remaining == 999  # a fresh Redis's decision
        finally:
            await limiter.close()

    try:
        run(loop, scenario())
    finally:
        redis_server.start()
    ours = [r for r in caplog.records if r.name == "apiward"]
    assert [r.levelno for r in ours] == [logging.WARNING, logging.INFO]  # once each


def test_a_cancelled_caller_leaves_the_others_their_replies(loop, redis_url: str,
                                                            redis_server) -> None:
    async def scenario() -> None:
        client = client_of(redis_server)
        try:
            await client.call(PING)
            first = client.call(command("EVAL", "return 'first'", 0))
            gone = client.call(command("ECHO", "gone"))
            last = client.call(command("ECHO", "last"))
            gone.cancel()  # type: ignore[attr-defined]
            assert (await first, await last) == (b"first", b"last")
            assert await client.call(PING) == b"PONG"
        finally:
            await client.aclose()

    run(loop, scenario())


def test_close_fails_what_waits_and_what_comes(loop, redis_url: str, redis_server) -> None:
    async def scenario() -> None:
        client = client_of(redis_server)
        await client.call(PING)
        waiting = [client.call(PING), client.call(PING)]  # written, not yet answered
        await client.aclose()
        assert [type(o) for o in await all_outcomes(waiting)] == [ConnectionError] * 2
        with pytest.raises(ConnectionError, match="closed"):
            await client.call(PING)

    run(loop, scenario())


def test_a_loop_closed_under_an_open_connection_leaves_no_traceback(
        loop, redis_url: str, redis_server) -> None:
    """The loop fixture checks that nothing reached the loop's exception handler or
    sys.unraisablehook once it is closed and collected."""
    async def scenario() -> Any:
        client = client_of(redis_server, timeout=5.0)
        await client.call(PING)
        client.call(PING)  # still waiting when the loop is closed
        return client

    run(loop, scenario())


def test_tls_with_our_own_ca(loop, redis_server, tmp_path: Path, caplog) -> None:
    from apiward.identity.pki import CertificateAuthority

    ca = CertificateAuthority.init(tmp_path / "ca")
    cert = ca.issue("redis", kind="server", sans=["127.0.0.1"])
    tls_port = free_port()
    server = RedisServer(tmp_path / "tls", extra_args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert.cert),
        "--tls-key-file", str(cert.key), "--tls-ca-cert-file", str(ca.cert_path),
        "--tls-auth-clients", "no"))
    server.start()
    names = ("rl|api|r|0|ip:1",)
    rates = (Rate(10, 60.0, 10),)

    async def scenario() -> None:
        base = f"rediss://127.0.0.1:{tls_port}/0"
        trusting = RedisLimiter(f"{base}?ssl_ca_certs={ca.cert_path}", time_source="caller")
        doubting = RedisLimiter(base, fallback=LocalLimiter(SharedTable(1 << 10, shared=False)))
        try:
            assert (await trusting.admit("ip:1", names, rates, 0.0, 1, None)).remaining == 9
            assert (await trusting.admit("ip:1", names, rates, 0.0, 1, None)).remaining == 8
            assert trusting.available
            assert (await doubting.admit("ip:1", names, rates, 0.0, 1, None)).allowed
            assert not doubting.available  # the system's CAs do not know ours
        finally:
            await trusting.close()
            await doubting.close()

    try:
        run(loop, scenario())
    finally:
        server.stop()
    assert "certificate verify failed" in caplog.text


# -- live: fake servers


async def fake_server(answer: Callable[[list[bytes]], bytes | None],
                      seen: list[Any] | None = None) -> tuple[asyncio.Server, int]:
    """A server reading commands (RESP arrays: resp.Parser reads them) and writing
    ``answer(command)`` for each; None says nothing; b"" or what ends with b"<close>"
    closes the connection."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = Parser()
        if seen is not None:
            seen.append(writer)
        try:
            while data := await reader.read(65536):
                for args in parser.feed(data):
                    reply = answer(args)
                    if reply is not None:
                        writer.write(reply.removesuffix(b"<close>"))
                        if not reply or reply.endswith(b"<close>"):
                            return
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_no_reply_within_the_timeout_fails_every_call_and_the_connection(loop) -> None:
    async def scenario() -> None:
        connections: list[Any] = []
        server, port = await fake_server(lambda args: None, connections)
        client = client_of(port, timeout=0.05)
        try:
            started = time.monotonic()
            outcomes = await all_outcomes([client.call(PING) for _ in range(10)])
            assert 0.04 < time.monotonic() - started < 0.5
            assert all(type(o) is TimeoutError for o in outcomes)
            assert "within 50 ms" in str(outcomes[0])
            assert isinstance(outcomes[0], REDIS_ERRORS)
            assert len(connections) == 1
            with pytest.raises(TimeoutError):
                await client.call(PING)  # on a new connection, which is silent too
            assert len(connections) == 2
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    run(loop, scenario())


def test_the_connect_timeout_bounds_tls_and_auth(loop) -> None:
    async def scenario() -> None:
        server, port = await fake_server(lambda args: None)
        tls = client_of(port, timeout=5.0, connect_timeout=0.05,
                        ssl=ssl.create_default_context)
        auth = client_of(port, timeout=5.0, connect_timeout=0.05, password="pw")
        try:
            for client in (tls, auth):
                started = time.monotonic()
                with pytest.raises(TimeoutError, match="no connection to Redis at "
                                   r"127\.0\.0\.1:\d+ within 50 ms"):
                    await client.call(PING)
                assert 0.04 < time.monotonic() - started < 0.5
        finally:
            for client in (tls, auth):
                await client.aclose()
            server.close()
            await server.wait_closed()

    run(loop, scenario())


@pytest.mark.parametrize(("reply", "error", "match"), [
    (b"$10\r\nhal<close>", ConnectionError, "closed the connection"),  # half a reply
    (b"", ConnectionError, "closed the connection"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", ProtocolError, "a reply starting with b'H'"),
])
def test_a_peer_that_is_not_redis(loop, reply: bytes, error: type, match: str) -> None:
    async def scenario() -> None:
        server, port = await fake_server(lambda args: reply)
        client = client_of(port, timeout=5.0)
        try:
            outcomes = await all_outcomes([client.call(PING) for _ in range(3)])
            for outcome in outcomes:
                assert type(outcome) is error, outcomes
                assert isinstance(outcome, REDIS_ERRORS)
                assert re.search(match, str(outcome)), outcome
            with pytest.raises(error):  # on a new connection: the same again
                await client.call(PING)
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    run(loop, scenario())


def test_auth_with_the_password_alone_for_a_redis_older_than_6(loop) -> None:
    seen: list[list[bytes]] = []

    def old_redis(args: list[bytes]) -> bytes:
        seen.append(args)
        if args[0] == b"AUTH" and len(args) == 3:
            return b"-ERR wrong number of arguments for 'auth' command\r\n"
        return b"+PONG\r\n" if args[0] == b"PING" else b"+OK\r\n"

    async def scenario() -> None:
        server, port = await fake_server(old_redis)
        client = client_of(port, password="pw", db=2)
        try:
            assert await client.call(PING) == b"PONG"
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    run(loop, scenario())
    assert seen == [[b"AUTH", b"default", b"pw"], [b"AUTH", b"pw"], [b"SELECT", b"2"],
                    [b"PING"]]


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


def test_a_reply_nobody_asked_for_closes_the_connection(loop) -> None:
    async def scenario() -> None:
        conn = _Connection(asyncio.get_running_loop(), 5.0, "here:1")
        transport = Transport()
        conn.connection_made(transport)
        first = conn.send(PING)
        assert transport.written == [PING]
        conn.data_received(b"+PONG\r\n+PONG\r\n")
        assert await first == b"PONG"
        assert conn.closed and transport.aborted
        with pytest.raises(ConnectionError, match="is closed"):
            await conn.send(PING)
        conn.data_received(b"+late\r\n")  # after the end: nothing happens
        conn.connection_lost(None)

    run(loop, scenario())


def test_writes_are_batched(loop) -> None:
    async def scenario() -> None:
        conn = _Connection(asyncio.get_running_loop(), 5.0, "here:1")
        transport = Transport()
        conn.connection_made(transport)
        calls = [conn.send(command("ECHO", b"%d" % i)) for i in range(resp.WRITE_BATCH + 4)]
        echo = [command("ECHO", b"%d" % i) for i in range(len(calls))]
        # The first at once, then WRITE_BATCH together...
        assert transport.written == [echo[0], b"".join(echo[1:resp.WRITE_BATCH + 1])]
        await asyncio.sleep(0)  # ...and the loop iteration's end writes the rest
        assert transport.written[2:] == [b"".join(echo[resp.WRITE_BATCH + 1:])]
        alone = conn.send(command("ECHO", b"x"))  # the first of its iteration again
        assert transport.written[3:] == [command("ECHO", b"x")]
        conn.data_received(b"".join(b"$1\r\n%d\r\n" % (i % 10) for i in range(len(calls)))
                           + b"$1\r\nx\r\n")
        assert [await c for c in calls] == [b"%d" % (i % 10) for i in range(len(calls))]
        assert await alone == b"x"
        conn.close()

    run(loop, scenario())
