"""Pure helpers for one request head: the fields framing and addressing depend on, the
request line sent upstream, and sizes."""

from __future__ import annotations

from apiward.wire.forwarded import forwarded_chain


class NotedFields:
    """The request fields that framing, host and client address depend on (slow path)."""

    __slots__ = ("connection_tokens", "content_lengths", "expect_continue", "forwarded",
                 "forwarded_proto", "hosts", "request_id", "transfer_encodings", "xff")

    def __init__(self, noted: list[tuple[bytes, bytes]], request_id_lname: bytes) -> None:
        self.hosts: list[bytes] = []
        self.content_lengths: list[bytes] = []
        self.transfer_encodings: list[bytes] = []
        self.xff: list[str] = []
        self.forwarded: list[str] = []
        self.forwarded_proto: bytes | None = None
        self.connection_tokens: frozenset[bytes] = frozenset()
        self.expect_continue = False
        self.request_id: bytes | None = None
        for lname, value in noted:
            if lname == b"host":
                self.hosts.append(value)
            elif lname == b"content-length":
                self.content_lengths.append(value)
            elif lname == b"transfer-encoding":
                self.transfer_encodings.append(value)
            elif lname == b"expect":
                self.expect_continue = value.strip().lower() == b"100-continue"
            elif lname == b"connection":
                self.connection_tokens |= {t.strip() for t in value.lower().split(b",")}
            elif lname == b"x-forwarded-for":
                self.xff.append(value.decode("latin-1"))
            elif lname == b"forwarded":
                self.forwarded.append(value.decode("latin-1"))
            elif lname == b"x-forwarded-proto":
                self.forwarded_proto = value
            elif lname == request_id_lname and self.request_id is None:
                self.request_id = value

    def chain(self) -> list[str]:
        return forwarded_chain(self.xff, self.forwarded) if self.xff or self.forwarded else []


def request_line(method: bytes, base_path: str, path: str, query: str) -> bytes:
    """``METHOD /base/path?query HTTP/1.1`` from the normalised target."""
    target = (base_path + path).encode("ascii")
    if query:
        target += b"?" + query.encode("ascii")
    return method + b" " + target + b" HTTP/1.1"


def field_bytes(fields: list[tuple[bytes, bytes, bytes]]) -> int:
    """The size of a header section as sent: ``name: value CRLF`` per field."""
    return sum(len(name) + len(value) + 4 for _, name, value in fields)


def strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host
