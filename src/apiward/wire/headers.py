"""A read-only, case-insensitive multi-dict over the raw header fields of a message."""

from __future__ import annotations

from collections.abc import Iterator

from apiward.errors import WireError


class Headers:
    """Header fields as received, duplicates and order kept.

    ``fields`` is a list of ``(lower_name, name, value)`` byte triples; names are
    lower-cased once by the parser, so look-ups are plain comparisons.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: list[tuple[bytes, bytes, bytes]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (any case), decoded as latin-1."""
        key = name.lower().encode("latin-1")
        for lname, _, value in self.fields:
            if lname == key:
                return value.decode("latin-1")
        return default

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in order."""
        key = name.lower().encode("latin-1")
        return [value.decode("latin-1") for lname, _, value in self.fields if lname == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(lname == key for lname, _, _ in self.fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self.fields:
            yield name.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    }
)
"""Fields that describe one connection, never passed on (RFC 9110 §7.6.1); so is any
field a ``Connection`` header names, and any ``Proxy-*`` field."""

SET_BY_GATEWAY = frozenset(
    {
        b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
        b"x-forwarded-host", b"forwarded", b"x-client-cert-subject", b"x-client-cert-san",
        b"x-client-cert-serial", b"x-client-cert-fingerprint",
    }
)
"""Request fields the gateway writes itself (or consumes) instead of passing on."""

NOTED = frozenset(
    {
        b"host", b"content-length", b"transfer-encoding", b"expect", b"connection",
        b"x-forwarded-for", b"forwarded", b"x-forwarded-proto",
    }
)
"""Request fields the head stage reads: framing, host, client address."""


PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})
"""``Connection`` values that name no other field."""

PASS, SET_ASIDE, CONTENT_LENGTH, CONNECTION, DROPPED = 0, 1, 2, 3, 4
"""Field classes: passed on as is; set aside (the gateway reads it and writes its own, or
drops it); passed on and frames the body; names more hop-by-hop fields; dropped unseen (a
name with ``_``, which CGI-style servers read as the same variable as with ``-``)."""


class FieldTable:
    """Classifies field names as they arrive, keyed by the raw name so that no lower-casing
    is needed for names seen before (peers repeat their spelling). Bounded.

    ``underscores`` is what becomes of a name with ``_``: ``"drop"`` (class DROPPED: no
    check sees it, nothing passes it on), ``"reject"`` (``classify`` raises a 400, so such
    a name is never cached) or ``None`` (a name like any other). ``declared`` names (lower
    case) keep their ``_``: the API's own spec or config names them (``api_key``), so the
    upstream expects exactly that field; a name whose ``-`` spelling means something to
    the gateway (framing, hop-by-hop, forwarding) is never among them.
    """

    __slots__ = ("cache", "declared", "kinds", "prefixes", "set_aside", "underscores")

    LIMIT = 4096

    def __init__(self, set_aside: frozenset[bytes], underscores: str | None = None,
                 declared: frozenset[bytes] = frozenset()) -> None:
        self.set_aside = set_aside
        self.underscores = underscores
        self.declared = frozenset(
            name for name in declared
            if (dashed := name.replace(b"_", b"-")) not in set_aside
            and dashed not in HOP_BY_HOP and dashed != b"content-length"
            and not dashed.startswith(b"proxy-"))
        self.cache: dict[bytes, tuple[int, bytes]] = {}
        self.kinds: dict[bytes, int] = {}  # the class alone, for callers that need no name
        self.prefixes: dict[bytes, bytes] = {}  # PASS names only: b"Name: ", as passed on

    def classify(self, name: bytes) -> tuple[int, bytes]:
        """``(class, lower-case name)`` for a raw field name."""
        lname = name.lower()
        if self.underscores is not None and b"_" in name and lname not in self.declared:
            if self.underscores == "reject":
                raise WireError(400, "underscore_in_header_name",
                                "a header field name contains an underscore")
            kind = DROPPED
        elif lname == b"connection":
            kind = CONNECTION
        elif lname in self.set_aside or lname.startswith(b"proxy-"):
            kind = SET_ASIDE
        elif lname == b"content-length":
            kind = CONTENT_LENGTH
        else:
            kind = PASS
        entry = (kind, lname)
        if len(self.cache) < self.LIMIT:
            self.cache[name] = entry
            self.kinds[name] = kind
            if kind == PASS:
                self.prefixes[name] = name + b": "
        return entry
