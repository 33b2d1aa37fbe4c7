"""Framing: what llhttp refuses by itself (pinned), and what framing.py refuses on top."""

from __future__ import annotations

import httptools
import pytest

from apiward.errors import WireError
from apiward.wire.framing import CHUNKED, check_version, request_body_length

GET = b"GET / HTTP/1.1\r\nHost: a\r\n"
POST = b"POST / HTTP/1.1\r\nHost: a\r\n"
CHUNKED_POST = POST + b"Transfer-Encoding: chunked\r\n\r\n"


class Recorder:
    """The smallest httptools protocol: remember what the parser handed over."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def parse(raw: bytes) -> tuple[str, Recorder, httptools.HttpRequestParser]:
    """'accept', 'reject' (HttpParserError) or 'upgrade' (HttpParserUpgrade)."""
    recorder = Recorder()
    parser = httptools.HttpRequestParser(recorder)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        return "upgrade", recorder, parser
    except httptools.HttpParserError:
        return "reject", recorder, parser
    return "accept", recorder, parser


# (id, raw request, what llhttp 0.9 does with default settings)
LLHTTP = [
    ("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
     "reject"),
    ("cl-and-te", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "reject"),
    ("te-trailer-cl", CHUNKED_POST + b"0\r\nContent-Length: 5\r\n\r\n", "reject"),
    ("cl-twice-same", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "reject"),
    ("cl-twice-diff", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "reject"),
    ("cl-twice-case", POST + b"Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello", "reject"),
    ("cl-list", POST + b"Content-Length: 1, 1\r\n\r\nx", "reject"),
    ("cl-plus", POST + b"Content-Length: +5\r\n\r\nhello", "reject"),
    ("cl-minus", POST + b"Content-Length: -1\r\n\r\n", "reject"),
    ("cl-hex", POST + b"Content-Length: 0x5\r\n\r\nhello", "reject"),
    ("cl-empty", POST + b"Content-Length: \r\n\r\n", "reject"),
    ("cl-inner-space", POST + b"Content-Length: 5 5\r\n\r\nhello", "reject"),
    ("cl-overflow", POST + b"Content-Length: 18446744073709551616\r\n\r\n", "reject"),
    ("cl-huge", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", "reject"),
    ("cl-2-64-minus-1", POST + b"Content-Length: 18446744073709551615\r\n\r\n", "accept"),
    ("cl-19-digits", POST + b"Content-Length: 1000000000000000000\r\n\r\n", "accept"),
    ("cl-leading-space", POST + b"Content-Length:  5\r\n\r\nhello", "accept"),
    ("cl-trailing-space", POST + b"Content-Length: 5 \r\n\r\nhello", "accept"),
    ("cl-leading-zeros", POST + b"Content-Length: 0005\r\n\r\nhello", "accept"),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "accept"),
    ("te-comma-chunked", POST + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", "accept"),
    ("te-chunked-gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", "reject"),
    ("te-chunked-twice", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
     "reject"),
    ("te-capital", POST + b"Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", "accept"),
    ("te-leading-space", POST + b"Transfer-Encoding:  chunked\r\n\r\n0\r\n\r\n", "accept"),
    ("te-trailing-space", POST + b"Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n", "accept"),
    ("te-identity", POST + b"Transfer-Encoding: identity\r\n\r\nabc", "reject"),
    ("te-gzip-only", POST + b"Transfer-Encoding: gzip\r\n\r\nabc", "reject"),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "reject"),
    ("te-chunkedx", POST + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", "reject"),
    ("te-params", POST + b"Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", "reject"),
    ("te-empty", POST + b"Transfer-Encoding: \r\n\r\n", "reject"),
    ("te-two-headers-chunked", POST + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "reject"),
    ("te-two-headers-gzip-chunked", POST + b"Transfer-Encoding: gzip\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "accept"),
    ("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "accept"),
    ("chunk-zz", CHUNKED_POST + b"zz\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-minus", CHUNKED_POST + b"-1\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-0x", CHUNKED_POST + b"0x5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-20-hex", CHUNKED_POST + b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-17-hex", CHUNKED_POST + b"10000000000000000\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-empty-size", CHUNKED_POST + b"\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-trailing-space", CHUNKED_POST + b"5 \r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-leading-space", CHUNKED_POST + b" 5\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-tab", CHUNKED_POST + b"5\t\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-space-ext", CHUNKED_POST + b"5 ;a=b\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-ext-space", CHUNKED_POST + b"5; a=b\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-ext-ctl", CHUNKED_POST + b"5;a=\x01\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-ext-lf-name", CHUNKED_POST + b"5;a\nb\r\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-ext-lf-value", CHUNKED_POST + b"5;a=b\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-ext-ok", CHUNKED_POST + b"5;a=b\r\nhello\r\n0\r\n\r\n", "accept"),
    ("chunk-size-lf", CHUNKED_POST + b"5\nhello\r\n0\r\n\r\n", "reject"),
    ("chunk-data-lf", CHUNKED_POST + b"5\r\nhello\n0\r\n\r\n", "reject"),
    ("chunk-last-lf", CHUNKED_POST + b"5\r\nhello\r\n0\n\n", "reject"),
    ("chunk-size-cr", CHUNKED_POST + b"5\rhello\r\n0\r\n\r\n", "reject"),
    ("chunk-data-overrun", CHUNKED_POST + b"5\r\nhelloX0\r\n\r\n", "reject"),
    ("chunk-leading-zeros", CHUNKED_POST + b"0005\r\nhello\r\n0\r\n\r\n", "accept"),
    ("head-lf-only", b"GET / HTTP/1.1\nHost: a\n\n", "reject"),
    ("header-lf", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", "reject"),
    ("header-cr", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "reject"),
    ("request-line-cr", b"GET / HTTP/1.1\rHost: a\r\n\r\n", "reject"),
    ("obs-fold-space", GET + b"X-A: 1\r\n 2\r\n\r\n", "reject"),
    ("obs-fold-tab", GET + b"X-A: 1\r\n\t2\r\n\r\n", "reject"),
    ("first-line-folded", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "reject"),
    ("space-before-colon", GET + b"X-A : 1\r\n\r\n", "reject"),
    ("tab-before-colon", GET + b"X-A\t: 1\r\n\r\n", "reject"),
    ("space-before-colon-cl", POST + b"Content-Length : 5\r\n\r\nhello", "reject"),
    ("name-ctl", GET + b"X-\x01A: 1\r\n\r\n", "reject"),
    ("name-del", GET + b"X-\x7fA: 1\r\n\r\n", "reject"),
    ("name-nul", GET + b"X-\x00A: 1\r\n\r\n", "reject"),
    ("name-separator", GET + b"X-(A: 1\r\n\r\n", "reject"),
    ("name-slash", GET + b"X/A: 1\r\n\r\n", "reject"),
    ("name-high-byte", GET + b"X-\xe9: 1\r\n\r\n", "reject"),
    ("name-empty", GET + b": x\r\n\r\n", "reject"),
    ("name-no-colon", GET + b"XA\r\n\r\n", "reject"),
    ("value-ctl", GET + b"X-A: a\x01b\r\n\r\n", "reject"),
    ("value-del", GET + b"X-A: a\x7fb\r\n\r\n", "reject"),
    ("value-nul", GET + b"X-A: a\x00b\r\n\r\n", "reject"),
    ("value-vt", GET + b"X-A: a\x0bb\r\n\r\n", "reject"),
    ("value-us", GET + b"X-A: a\x1fb\r\n\r\n", "reject"),
    ("value-cr", GET + b"X-A: a\rb\r\n\r\n", "reject"),
    ("value-htab", GET + b"X-A: a\tb\r\n\r\n", "accept"),
    ("value-obs-text", GET + b"X-A: a\x80\xe9\xffb\r\n\r\n", "accept"),
    ("trailer-ctl", CHUNKED_POST + b"0\r\nX-A: \x01\r\n\r\n", "reject"),
    ("trailer-obs-fold", CHUNKED_POST + b"0\r\nX-A: 1\r\n 2\r\n\r\n", "reject"),
    ("method-at", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("method-lower", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("method-unknown", b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("method-rtsp", b"DESCRIBE / HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("method-tab", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("method-pri", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "reject"),
    ("method-connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", "upgrade"),
    ("upgrade-header", GET + b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n", "upgrade"),
    ("host-twice", GET + b"Host: b\r\n\r\n", "accept"),
    ("host-spaces", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "accept"),
    ("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "accept"),
    ("http-0.9-simple", b"GET /\r\n\r\n", "accept"),
    ("http-0.9", b"GET / HTTP/0.9\r\n\r\n", "accept"),
    ("http-2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "accept"),
    ("http-1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", "reject"),
    ("http-3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", "reject"),
    ("http-lower", b"GET / http/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("version-trailing-space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "reject"),
    ("url-space", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-ctl", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-nul", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-del", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-tab", b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-high-byte", b"GET /a\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("query-high-byte", b"GET /a?\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-relative", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", "reject"),
    ("url-fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", "accept"),
    ("url-backslash", b"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", "accept"),
    ("url-bad-pct", b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", "accept"),
    ("url-two-spaces", b"GET  /x  HTTP/1.1\r\nHost: a\r\n\r\n", "accept"),
    ("data-after-close", GET + b"Connection: close\r\n\r\n" + GET + b"\r\n", "reject"),
]


@pytest.mark.parametrize(("raw", "outcome"), [c[1:] for c in LLHTTP], ids=[c[0] for c in LLHTTP])
def test_llhttp_behaviour_is_pinned(raw: bytes, outcome: str) -> None:
    """If this fails after an httptools upgrade, re-check framing.py's table and rules."""
    assert parse(raw)[0] == outcome


def test_llhttp_strips_leading_ows_only() -> None:
    _, recorder, _ = parse(POST + b"Content-Length: \t 5 \r\n\r\nhello")
    assert recorder.headers[-1] == (b"Content-Length", b"5 ")
    assert recorder.body == b"hello"


def test_llhttp_versions_it_reports() -> None:
    assert parse(b"GET /\r\n\r\n")[2].get_http_version() == "0.9"
    assert parse(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")[2].get_http_version() == "2.0"


def test_llhttp_passes_trailers_to_on_header() -> None:
    outcome, recorder, _ = parse(CHUNKED_POST + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert outcome == "accept" and recorder.complete
    assert recorder.headers[-1] == (b"X-Trailer", b"1")


def test_llhttp_gzip_chunked_is_read_as_chunked() -> None:
    """Why request_body_length must refuse it: llhttp frames it, upstreams may not."""
    _, recorder, _ = parse(POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert recorder.body == b"abc" and recorder.complete


# --- request_body_length -----------------------------------------------------------------
LENGTHS = [
    ("none", [], [], 0),
    ("zero", [b"0"], [], 0),
    ("plain", [b"1234"], [], 1234),
    ("ows", [b" \t42 \t"], [], 42),
    ("leading-zeros", [b"0005"], [], 5),
    ("18-digits", [b"9" * 18], [], 10**18 - 1),
    ("chunked", [], [b"chunked"], CHUNKED),
    ("chunked-case", [], [b"ChUnKeD"], CHUNKED),
    ("chunked-ows", [], [b" chunked\t"], CHUNKED),
]


@pytest.mark.parametrize(("cls", "tes", "expected"), [c[1:] for c in LENGTHS],
                         ids=[c[0] for c in LENGTHS])
def test_body_length(cls: list[bytes], tes: list[bytes], expected: int) -> None:
    assert request_body_length(cls, tes) == expected


BAD_LENGTHS = [
    ("cl-and-te", [b"5"], [b"chunked"], "content_length_with_transfer_encoding"),
    ("cl-twice-same", [b"5", b"5"], [], "multiple_content_length"),
    ("cl-twice-diff", [b"5", b"6"], [], "multiple_content_length"),
    ("cl-list-same", [b"1, 1"], [], "multiple_content_length"),
    ("cl-list-diff", [b"1,2"], [], "multiple_content_length"),
    ("cl-empty", [b""], [], "invalid_content_length"),
    ("cl-space-only", [b"  "], [], "invalid_content_length"),
    ("cl-plus", [b"+5"], [], "invalid_content_length"),
    ("cl-minus", [b"-5"], [], "invalid_content_length"),
    ("cl-hex", [b"0x5"], [], "invalid_content_length"),
    ("cl-inner-space", [b"5 5"], [], "invalid_content_length"),
    ("cl-underscore", [b"1_000"], [], "invalid_content_length"),
    ("cl-dot", [b"5.0"], [], "invalid_content_length"),
    ("cl-unicode-digit", ["\u0665".encode()], [], "invalid_content_length"),
    ("cl-superscript", [b"\xb2"], [], "invalid_content_length"),
    ("cl-19-digits", [b"1" + b"0" * 18], [], "invalid_content_length"),
    ("cl-2-64", [b"18446744073709551616"], [], "invalid_content_length"),
    ("cl-vt", [b"5\x0b"], [], "invalid_content_length"),
    ("te-twice", [], [b"chunked", b"chunked"], "multiple_transfer_encoding"),
    ("te-gzip-then-chunked-headers", [], [b"gzip", b"chunked"], "multiple_transfer_encoding"),
    ("te-gzip-chunked", [], [b"gzip, chunked"], "unsupported_transfer_encoding"),
    ("te-chunked-chunked", [], [b"chunked, chunked"], "unsupported_transfer_encoding"),
    ("te-comma-chunked", [], [b",chunked"], "unsupported_transfer_encoding"),
    ("te-identity", [], [b"identity"], "unsupported_transfer_encoding"),
    ("te-xchunked", [], [b"xchunked"], "unsupported_transfer_encoding"),
    ("te-params", [], [b"chunked;q=1"], "unsupported_transfer_encoding"),
    ("te-empty", [], [b""], "unsupported_transfer_encoding"),
    ("te-vt", [], [b"chunked\x0b"], "unsupported_transfer_encoding"),
]


@pytest.mark.parametrize(("cls", "tes", "expected"), [c[1:] for c in BAD_LENGTHS],
                         ids=[c[0] for c in BAD_LENGTHS])
def test_body_length_refused(cls: list[bytes], tes: list[bytes], expected: str) -> None:
    with pytest.raises(WireError) as info:
        request_body_length(cls, tes)
    assert (info.value.status, info.value.reason) == (400, expected)


def test_transfer_encoding_refused_in_http10() -> None:
    with pytest.raises(WireError) as info:
        request_body_length([], [b"chunked"], http10=True)
    assert info.value.reason == "transfer_encoding_in_http10"
    assert request_body_length([b"3"], [], http10=True) == 3


# --- check_version (Host values: see is_valid_host in test_target.py) ------------------
@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_version_accepted(version: str) -> None:
    check_version(version)


@pytest.mark.parametrize("version", ["0.9", "2.0", "", "1.2"])
def test_version_refused(version: str) -> None:
    with pytest.raises(WireError) as info:
        check_version(version)
    assert (info.value.status, info.value.reason) == (505, "http_version_not_supported")
