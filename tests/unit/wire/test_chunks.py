"""Chunk-size lines measured from llhttp's callbacks and the bytes of each read.

A small protocol drives the real parser the way the server does (body bytes counted in
``on_body``, chunk ends told to the meter, each read walked at its end or where the body
ended); generated messages, pipelined and cut into reads anywhere, are measured and
compared with what their lines really were.
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.errors import WireError
from apiward.wire.chunks import ChunkMeter, body_starts

HUGE = 1 << 40
HEAD = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@dataclass
class Message:
    chunked: bool = False
    pipelined: bool = False  # its head ended in a read where another message had ended
    received: int = 0
    meter: ChunkMeter | None = None


class Server:
    """The server's use of the meter, without the server."""

    def __init__(self, line: int = HUGE, extensions: int = HUGE, trailer: int = HUGE) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.limits = (line, extensions, trailer)
        self.te = False
        self.current: Message | None = None
        self.messages: list[Message] = []
        self.pipelined = False
        self.packet = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.current is None and name.lower() == b"transfer-encoding":
            self.te = True

    def on_headers_complete(self) -> None:
        self.current = Message(self.te, self.pipelined)
        self.messages.append(self.current)
        self.te = False

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.received += len(body)

    def meter(self, message: Message) -> ChunkMeter:
        if message.meter is None:
            message.meter = ChunkMeter(message, *self.limits)
        return message.meter

    def on_chunk_complete(self) -> None:
        message = self.current
        assert message is not None
        meter = self.meter(message)
        if meter.chunk_end(message.received):
            meter.read(self.packet, message.received, True, self.pipelined)

    def on_message_complete(self) -> None:
        self.current = None
        self.pipelined = True

    def feed(self, data: bytes) -> None:
        self.pipelined = False
        self.packet = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            raise exc.__context__ from None  # type: ignore[misc]
        message = self.current
        if message is not None and message.chunked:
            self.meter(message).read(data, message.received, False, self.pipelined)


def feed_all(server: Server, data: bytes, cuts: list[int]) -> None:
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut > last:
            server.feed(data[last:cut])
            last = cut


# -- generated messages -----------------------------------------------------------------
TOKEN = st.text("abcxyzABC019!#$%&'*+.^_`|~-", min_size=1, max_size=8)
QUOTED = st.text("ab \t;=,\\x01", max_size=8).map(lambda s: '"' + s.replace("\\", "") + '"')
EXTENSION = st.tuples(TOKEN, st.none() | TOKEN | QUOTED).map(
    lambda p: ";" + p[0] + ("" if p[1] is None else "=" + p[1]))
EXTENSIONS = st.lists(EXTENSION, max_size=3).map("".join)
# Data that looks like framing: look-alike chunk-size lines, head ends, bare LFs.
DATA = st.lists(st.sampled_from([b"x", b"\r\n", b"\n", b"\r\n\r\n", b"5;a=b\r\n", b"0\r\n",
                                 b"f\r", b"\r\n0\r\n\r\n", b"Host: a\r\n"]),
                min_size=1, max_size=8).map(b"".join)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A chunked request and its chunk-size lines."""
    lines = []
    body = b""
    for data in draw(st.lists(DATA, max_size=4)):
        size = f"{len(data):0{draw(st.integers(1, 6))}x}"
        size = size.upper() if draw(st.booleans()) else size
        line = (size + draw(EXTENSIONS)).encode() + b"\r\n"
        lines.append(line)
        body += line + data + b"\r\n"
    last = ("0" * draw(st.integers(1, 3)) + draw(EXTENSIONS)).encode() + b"\r\n"
    lines.append(last)
    trailers = b"".join(b"X-T%d: v\r\n" % i for i in range(draw(st.integers(0, 2))))
    return HEAD + body + last + trailers + b"\r\n", lines


def post(body: bytes) -> bytes:
    return b"POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body


OTHER = st.sampled_from([
    b"GET /g HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nGET /g HTTP/1.1\r\nHost: a\r\nX-A: 5;b\r\n\r\n",
    post(b"\r\n\r\n5;a=b\r\nhello\r\n"),
    post(b"\n0\r\n"),
    post(b"5;x\r\nhello\r\n0\r\n\r\n"),
])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[list[bytes] | None], list[int]]:
    data = b""
    expected: list[list[bytes] | None] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            message, lines = draw(chunked())
            expected.append(lines)
        else:
            message = draw(OTHER)
            expected.append(None)
        data += message
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=6))
    return data, expected, cuts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_lines_are_measured_however_the_reads_fall(
        stream: tuple[bytes, list[list[bytes] | None], list[int]]) -> None:
    data, expected, cuts = stream
    server = Server()
    feed_all(server, data, cuts)
    assert server.current is None
    assert len(server.messages) == len(expected)
    for message, lines in zip(server.messages, expected, strict=True):
        assert message.chunked == (lines is not None)
        if lines is None:
            continue
        assert message.meter is not None
        truth = (max(map(len, lines)),
                 sum(len(line) - 2 - line.index(b";") for line in lines if b";" in line))
        measured = [(walk.longest, walk.extensions) for walk in message.meter.walks]
        # The real walk is always among those kept, so the limits hold for the real lines;
        # a look-alike is only ever kept where another message ended in the same read.
        assert truth in measured
        assert len(measured) == 1 or message.pipelined


# -- limits ------------------------------------------------------------------------------
def refusal(server: Server, *reads: bytes) -> tuple[str, int]:
    """The reason of the WireError the reads raise, and how many reads were fed."""
    for count, data in enumerate(reads, 1):
        try:
            server.feed(data)
        except WireError as error:
            return error.reason, count
    return "", len(reads)


def test_a_line_at_the_limit_passes_and_one_byte_more_is_refused() -> None:
    line = b"5;" + b"a" * 13 + b"\r\n"  # 17 bytes
    ok = HEAD + line + b"hello\r\n0\r\n\r\n"
    assert refusal(Server(line=17), ok) == ("", 1)
    assert refusal(Server(line=16), ok) == ("chunk_extension_too_large", 1)


def test_an_over_long_size_without_extensions_is_its_own_reason() -> None:
    data = HEAD + b"0" * 20 + b"5\r\nhello\r\n0\r\n\r\n"
    assert refusal(Server(line=16), data) == ("chunk_size_too_long", 1)


def test_a_line_that_never_ends_is_cut_at_the_read_that_crosses_the_limit() -> None:
    reads = [HEAD + b"5;", *[b"a" * 1000] * 100]
    assert refusal(Server(line=4096), *reads) == ("chunk_extension_too_large", 6)


def test_a_line_split_over_reads_counts_in_all() -> None:
    reads = [HEAD + b"5;ab", b"cd", b"ef\r", b"\nhello\r\n0\r\n\r\n"]  # a 10-byte line
    assert refusal(Server(line=10), *reads) == ("", 4)
    assert refusal(Server(line=9), *reads) == ("chunk_extension_too_large", 4)
    assert refusal(Server(line=8), *reads) == ("chunk_extension_too_large", 3)
    # its extension bytes: ";abcdef", the CR not counted while the LF is awaited
    assert refusal(Server(extensions=7), *reads) == ("", 4)
    assert refusal(Server(extensions=6), *reads) == ("chunk_extension_too_large", 3)


def test_extensions_are_bounded_per_body() -> None:
    chunk = b"1;" + b"e" * 98 + b"\r\nx\r\n"  # 98 extension bytes each
    body = HEAD + chunk * 4 + b"0\r\n\r\n"
    assert refusal(Server(extensions=4 * 99), body) == ("", 1)
    assert refusal(Server(extensions=4 * 99 - 1), body) == ("chunk_extension_too_large", 1)
    # the last chunk's extensions count too, and an open line's so far
    assert refusal(Server(extensions=99), HEAD + chunk + b"0;e\r\n\r\n") == (
        "chunk_extension_too_large", 1)
    assert refusal(Server(extensions=99), HEAD + chunk, b"1;ee") == (
        "chunk_extension_too_large", 2)


def test_the_body_is_judged_before_its_end_is_acted_on() -> None:
    """Where the body ends in the same read as an over-long line, the refusal comes from
    the last chunk's end, before on_message_complete."""
    server = Server(line=8)
    with pytest.raises(WireError):
        server.feed(HEAD + b"5;aaaaaaaaaa\r\nhello\r\n0\r\n\r\n" + HEAD)
    assert server.current is not None  # refused before the message completed


def test_a_growing_trailer_section_is_refused() -> None:
    reads = [HEAD + b"0\r\nX-T: ", *[b"v" * 100] * 10]
    # 5 bytes in the first read, 100 in each one after
    assert refusal(Server(trailer=505), *reads) == ("trailer_section_too_large", 7)
    assert refusal(Server(trailer=504), *reads) == ("trailer_section_too_large", 6)


# -- where a body begins ----------------------------------------------------------------
def test_the_body_begins_after_the_heads_last_line() -> None:
    assert body_starts(HEAD + b"5;x\r\nhello", False) == [len(HEAD)]
    assert body_starts(HEAD + b"5\r\n", False) == [len(HEAD)]
    assert body_starts(HEAD + b"5", False) == [len(HEAD)]  # an open size, nothing else yet
    assert body_starts(HEAD, False) == [len(HEAD)]
    # a head cut short at the start of the read: its end straddles two reads
    assert body_starts(b"\n5;x\r\n", False) == [1]
    assert body_starts(b"\r\n5;x\r\n", False) == [2]


def test_a_pipelined_body_tries_every_look_alike() -> None:
    before = b"POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n\n5;x\r\nz"
    starts = body_starts(before + HEAD + b"5;x\r\nhello", True)
    assert len(before) + len(HEAD) in starts and len(starts) > 1
    with pytest.raises(WireError):
        body_starts(b"\n0\r" * 2000, True)


def test_look_alikes_in_a_pipelined_request_do_not_hide_a_long_line() -> None:
    """A Content-Length body mimicking a chunked one with short lines, before the real one
    in the same read: the walk that fits is the real one."""
    before = post(b"5;x\r\nhello\r\n0\r\n\r\n")
    real = HEAD + b"5;" + b"a" * 50 + b"\r\nhello\r\n0\r\n\r\n"
    assert refusal(Server(line=32), before + real) == ("chunk_extension_too_large", 1)
    assert refusal(Server(line=64), before + real) == ("", 1)
