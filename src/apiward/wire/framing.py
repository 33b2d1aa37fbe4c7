"""Message framing rules (RFC 9112 §6) that llhttp does not enforce by itself.

llhttp (httptools 0.9, default settings) was probed with raw requests; the results are
pinned by tests/unit/wire/test_framing.py so an upgrade that loosens anything fails a test.

========================================  ========================  ==========================
request                                   llhttp                    here
========================================  ========================  ==========================
Transfer-Encoding + Content-Length        refuses                   refuses too (cheap belt)
two Content-Length (same / different)     refuses                   refuses too
Content-Length: 1, 1 / +5 / 0x5 / -1      refuses                   refuses too
Content-Length: > 2**64-1                 refuses (overflow)        refuses too
Content-Length: 19-20 digits < 2**64      accepts                   refuses (> 18 digits)
Content-Length: " 5" / "5 "               accepts (lead OWS cut)    accepts (OWS stripped)
Transfer-Encoding: gzip, chunked          accepts                   refuses
two TE headers (gzip / chunked)           accepts                   refuses
Transfer-Encoding: ,chunked               accepts                   refuses
Transfer-Encoding: Chunked / " chunked"   accepts                   accepts
TE chunked,chunked / identity / xchunked  refuses                   refuses too
TE in an HTTP/1.0 request                 accepts (as chunked)      refuses (http10=True)
chunk size zz, -1, 0x5, 17+ hex, "5 "     refuses                   -
bare LF / bare CR anywhere, LF in ext     refuses                   -
obs-fold, space before colon              refuses                   -
CTL / DEL / NUL in name or value          refuses (HTAB allowed)    -
bad token or empty header name            refuses                   -
obs-text (0x80-0xFF) in a value           accepts                   accepts (RFC 9110 §5.5)
G@T, get, FOO, DESCRIBE                   refuses                   - (no check_method)
PRI (HTTP/2 preface)                      refuses (pause)           -
CONNECT, any Upgrade: header              raises HttpParserUpgrade  - (server must catch it)
two Host headers                          accepts                   server refuses
Host with spaces / obs-text / ","         accepts                   refuses (is_valid_host)
HTTP/0.9 ("GET /" alone) and HTTP/2.0     accepts                   refuses (check_version)
HTTP/1.2, HTTP/3.0, lower-case http/1.1   refuses                   -
"#" or "\\" in the target                 accepts                   target.py refuses
========================================  ========================  ==========================

Also: trailer fields of a chunked body reach ``on_header`` after ``on_headers_complete``.
"""

from __future__ import annotations

from apiward.errors import WireError

CHUNKED = -1
_OWS = b" \t"
_MAX_DIGITS = 18  # 10**18 - 1 bytes: always fits an int64 upstream, never overflows


def request_body_length(
    content_lengths: list[bytes], transfer_encodings: list[bytes], *, http10: bool = False
) -> int:
    """CHUNKED (-1), the Content-Length, or 0 for no body; WireError(400) if ambiguous.

    Only one framing a server can read one way is let through: a single plain decimal
    Content-Length, or a single ``chunked`` coding (RFC 9112 §6.1, §6.3).
    """
    if not transfer_encodings:
        if not content_lengths:
            return 0
        return _content_length(content_lengths)
    if content_lengths:
        raise WireError(400, "content_length_with_transfer_encoding",
                        "the request has both Content-Length and Transfer-Encoding")
    if http10:
        raise WireError(400, "transfer_encoding_in_http10",
                        "an HTTP/1.0 request cannot use Transfer-Encoding")
    if len(transfer_encodings) > 1:
        raise WireError(400, "multiple_transfer_encoding",
                        "the request has more than one Transfer-Encoding header")
    if transfer_encodings[0].strip(_OWS).lower() != b"chunked":
        raise WireError(400, "unsupported_transfer_encoding",
                        "only a single 'chunked' transfer coding is accepted")
    return CHUNKED


def _content_length(content_lengths: list[bytes]) -> int:
    """The one Content-Length value: 1*DIGIT, at most 18 digits."""
    if len(content_lengths) > 1 or b"," in content_lengths[0]:
        raise WireError(400, "multiple_content_length",
                        "the request has more than one Content-Length value")
    value = content_lengths[0].strip(_OWS)
    if not value.isdigit() or len(value) > _MAX_DIGITS:  # bytes.isdigit: ASCII 0-9 only
        raise WireError(400, "invalid_content_length",
                        "Content-Length must be a plain decimal number")
    return int(value)


def check_version(version: str) -> None:
    """Refuse what llhttp parses but we do not speak: HTTP/0.9 and HTTP/2.0 over /1 framing."""
    if version != "1.1" and version != "1.0":
        raise WireError(505, "http_version_not_supported", "only HTTP/1.0 and 1.1 are served")
