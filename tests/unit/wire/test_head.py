"""Pure helpers for a request head."""

from __future__ import annotations

from apiward.wire.head import NotedFields, field_bytes, request_line, strip_port


def test_noted_fields_sorts_what_framing_and_addressing_need() -> None:
    facts = NotedFields(
        [
            (b"host", b"a.example"),
            (b"content-length", b"5"),
            (b"expect", b" 100-Continue "),
            (b"connection", b"keep-alive, X-Secret"),
            (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
            (b"x-forwarded-proto", b"https"),
            (b"x-request-id", b"first"),
            (b"x-request-id", b"second"),
        ],
        b"x-request-id",
    )
    assert facts.hosts == [b"a.example"]
    assert facts.content_lengths == [b"5"]
    assert facts.transfer_encodings == []
    assert facts.expect_continue
    assert facts.connection_tokens == {b"keep-alive", b"x-secret"}
    assert facts.forwarded_proto == b"https"
    assert facts.request_id == b"first"
    assert facts.chain() == ["203.0.113.7", "10.0.0.2"]


def test_request_line_joins_base_path_and_query() -> None:
    assert request_line(b"GET", "/api", "/books/1", "x=1") == b"GET /api/books/1?x=1 HTTP/1.1"
    assert request_line(b"POST", "", "/", "") == b"POST / HTTP/1.1"


def test_field_bytes_counts_the_section_as_sent() -> None:
    fields = [(b"host", b"Host", b"a"), (b"x", b"X", b"yz")]
    assert field_bytes(fields) == len(b"Host: a\r\nX: yz\r\n")


def test_strip_port() -> None:
    assert strip_port("a.example:8080") == "a.example"
    assert strip_port("a.example") == "a.example"
    assert strip_port("[::1]:443") == "[::1]"
