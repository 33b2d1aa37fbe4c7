"""Content-Type matching for ``requestBody.content``.

An operation's content keys are exact types (``application/json``), types with
parameters (``text/plain; charset=utf-8``), structured-suffix ranges
(``application/*+json``), ranges (``application/*``) and ``*/*``. A request's
``Content-Type`` picks the most specific key that admits it, as OpenAPI asks. Parsing is
strict (RFC 9110 §8.3.1): an ambiguous header is not guessed at, it matches nothing.
"""

from __future__ import annotations

import re

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_TYPE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*")
_PARAM = re.compile(rf";[ \t]*(?:({_TOKEN})=({_TOKEN}|{_QUOTED}))?[ \t]*")
_UNQUOTE = re.compile(r"\\(.)")

DEFAULT_TYPE = "application/octet-stream"
"""What a body without ``Content-Type`` is taken to be (RFC 9110 §8.3)."""

_CACHE_SIZE = 512


def parse_media_type(value: str) -> tuple[str, dict[str, str]] | None:
    """``"Text/HTML; Charset=UTF-8"`` → ``("text/html", {"charset": "utf-8"})``.

    Type, subtype and parameter names are lower-cased, and so is the ``charset`` value
    (case-insensitive by definition); other values are kept as sent, unquoted. Anything
    outside the grammar, and a parameter given twice, gives None: two readings of one
    header are how a check and an upstream come to disagree.
    """
    found = _TYPE.match(value)
    if found is None:
        return None
    name = f"{found[1]}/{found[2]}".lower()
    params: dict[str, str] = {}
    pos = found.end()
    end = len(value)
    while pos < end:
        param = _PARAM.match(value, pos)
        if param is None:
            return None
        pos = param.end()
        key = param[1]
        if key is None:
            continue  # an empty parameter ("a/b;") is allowed by the grammar
        key = key.lower()
        if key in params:
            return None
        raw = param[2]
        if raw[0] == '"':
            raw = _UNQUOTE.sub(r"\1", raw[1:-1])
        params[key] = raw.lower() if key == "charset" else raw
    return name, params


def is_json(media_type: str) -> bool:
    """JSON bodies: ``application/json`` and any ``+json`` structured syntax (RFC 6839),
    ranges such as ``application/*+json`` included. Parameters are ignored."""
    name = media_type.split(";", 1)[0].strip().lower()
    return name == "application/json" or name.endswith("+json")


class _Key:
    """One content key, compiled: what it admits and how specific it is."""

    __slots__ = ("key", "params", "rank", "subtype", "suffix", "type")

    def __init__(self, key: str, name: str, params: dict[str, str]) -> None:
        self.key = key
        self.type, self.subtype = name.split("/", 1)
        self.params = params
        self.suffix = ""
        if self.type == "*":
            level = 1  # */*  (and the meaningless */json, treated as */*)
            self.subtype = "*"
        elif self.subtype == "*":
            level = 2
        elif self.subtype.startswith("*+"):
            level = 3
            self.suffix = self.subtype[1:]  # "+json"
        else:
            level = 4
        self.rank = (level, len(params))

    def admits(self, type_: str, subtype: str, params: dict[str, str]) -> bool:
        if self.type != "*":
            if self.type != type_:
                return False
            if self.suffix:
                if not subtype.endswith(self.suffix):
                    return False
            elif self.subtype not in ("*", subtype):
                return False
        return all(params.get(k) == v for k, v in self.params.items())


class MediaMatcher:
    """The content keys of one operation, ordered most specific first: exact with
    parameters > exact > ``type/*+suffix`` > ``type/*`` > ``*/*``. Keys that are not
    media types (a typo in the spec) never match. Answers are cached per header value:
    clients send few distinct ones."""

    def __init__(self, keys: list[str]) -> None:
        compiled = []
        for key in keys:
            parsed = parse_media_type(key)
            if parsed is not None:
                compiled.append(_Key(key, *parsed))
        compiled.sort(key=lambda k: k.rank, reverse=True)  # stable: spec order breaks ties
        self._keys = tuple(compiled)
        self._cache: dict[str | None, str | None] = {}

    def match(self, content_type_header: str | None) -> str | None:
        """The content key that applies to this ``Content-Type``, or None (415). A
        missing header is taken as ``application/octet-stream`` (RFC 9110 §8.3)."""
        cache = self._cache
        try:
            return cache[content_type_header]
        except KeyError:
            pass
        found = self._match(content_type_header)
        if len(cache) < _CACHE_SIZE:
            cache[content_type_header] = found
        return found

    def _match(self, header: str | None) -> str | None:
        parsed = parse_media_type(DEFAULT_TYPE if header is None else header)
        if parsed is None:
            return None
        name, params = parsed
        type_, subtype = name.split("/", 1)
        if type_ == "*" or subtype == "*":
            return None  # a request's body has one concrete type, never a range
        for key in self._keys:
            if key.admits(type_, subtype, params):
                return key.key
        return None
