"""Request body parsers: JSON, urlencoded forms, multipart/form-data. Pure, no I/O.

Each refuses what an upstream might read differently from the gateway (duplicate keys,
numbers that lose their value, invalid escapes, truncated parts) with ``BodyError``,
whose ``rule`` names the broken rule and whose message never quotes the body.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from apiward.openapi.media import parse_media_type


class BodyError(ValueError):
    """A body refused before schema validation; ``rule`` is ``json``, ``duplicate_key``,
    ``depth``, ``number``, ``form``, ``multipart``, ``file_size`` or ``field_size``."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


# --- JSON -------------------------------------------------------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19  # from 19 digits an integer may be past orjson's 64 bits
_BIG_INT = re.compile(rb"(?<![0-9.eE+\-])-?[0-9]{19,}(?![0-9.eE])")
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1  # orjson keeps [-2**63, 2**64-1] as int, the rest becomes float
_ESCAPED_COLON = b"\\u003"  # \u003a or \u003A (and, harmlessly, \u0030-\u003f)
_BRACKETS = bytes.maketrans(b"{}", b"[]")


def parse_json(body: bytes, max_depth: int = 64) -> Any:
    """Parse with orjson, refusing what orjson lets through silently.

    - nesting deeper than ``max_depth`` (``depth``): arrays and objects count one level
      (orjson itself stops at 1024, so a larger ``max_depth`` acts as 1024);
    - duplicate keys, even spelled differently (``"a"`` and ``"\\u0061"``), at any level
      (``duplicate_key``). orjson keeps the last; an upstream may keep the first;
    - integers orjson cannot hold (beyond -2**63 .. 2**64-1: it turns them into floats,
      losing digits the upstream will read) and numbers that overflow to infinity
      (``number``). NaN and Infinity literals are not JSON (``json``).

    Depth: a body is no deeper than half its length, nor than its count of ``[`` and
    ``{`` (those in strings included); past both bounds, the parsed value is walked
    (``_deeper``). The value is as deep as the body unless a dropped duplicate key held
    the deepest part: such a body is refused all the same, and the exact test on the body
    (``_too_deep``) then says which of the two to report, as before.

    Duplicates and big integers are found by a round trip, ``orjson.dumps`` of the value.
    When it gives the body back byte for byte (compact JSON, as ``JSON.stringify`` and
    most clients write it) the body has neither: a dropped key would make the round trip
    shorter, and an integer turned float comes back with a "." or an "e" in its digits.
    Otherwise the slower tests: the ``:`` outside strings in the body are its key/value
    pairs; the ``:`` in the round trip are those kept plus the ones inside strings, which
    the body has too, unless it spells them ``\\u003a``. So with no such escape, fewer
    colons after the round trip means a pair was dropped (C-speed counts); the exact
    count (strings stripped by a regex) only for bodies with that escape. Big integers: a
    run of 19 digits, then a regex over the body without its strings.

    Measured (timeit min, this 2-core machine, noisy to ±5%; the 279-byte, 11-field ORDER
    body of bench/validation.py, a nested object and an array, 5 brackets): 1.1-1.2 µs in
    all (was 2.0-2.2 µs), of which orjson's loads is 0.6 µs and its dumps 0.16 µs, the
    bracket count ~0.2 µs; with ``max_depth=3`` (what the schema check passes for it)
    ~1.85 µs (was 4.7-5.0: the regex-based exact test on the body, 2.7 µs, where the walk
    of the value takes 0.67); the same body with a space after each ":" and "," (the
    slower tests) ~1.8 µs (was 2.0); ``{"a":1,"b":"x"}`` 0.3 µs (was 0.9).
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise _json_error(err) from None
    if type(value) is not dict and type(value) is not list:
        if body.translate(_DIGITS).find(_LONG_RUN) >= 0:
            _check_big_ints(body)
        return value
    size = len(body)  # (replace() jumps from bracket to bracket with memchr; count()
    # reads every byte: 2.5 times slower here)
    if size > 2 * max_depth + 1 and \
            2 * size - len(body.replace(b"[", b"")) - len(body.replace(b"{", b"")) > max_depth \
            and _deeper(value, max_depth):
        raise BodyError("depth", f"JSON nested deeper than {max_depth} levels")
    try:
        kept = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past the 254 levels orjson.dumps goes to
        return _checked_slowly(body, value, max_depth)  # (only a max_depth above that lets it here)
    if kept == body:  # canonical: no key dropped, no integer turned float
        return value
    colons = body.count(b":")
    if colons:
        if body.find(b"\\") >= 0 and body.find(_ESCAPED_COLON) >= 0:
            lost = (_STRING.sub(b"", body).count(b":")
                    != _STRING.sub(b"", kept).count(b":"))
        else:
            lost = kept.count(b":") < colons
        if lost:
            if size > 2 * max_depth + 1 and _too_deep(body, max_depth):
                raise BodyError("depth", f"JSON nested deeper than {max_depth} levels")
            raise BodyError("duplicate_key", "an object in the JSON body repeats a key")
    if body.translate(_DIGITS).find(_LONG_RUN) >= 0:
        _check_big_ints(body)
    return value


def _checked_slowly(body: bytes, value: Any, max_depth: int) -> Any:
    """Duplicate keys and big integers in a body too deep for the round trip: the json
    module looks for the duplicates (its own recursion stops it near 1000 levels: a body
    that deep is refused as too deep)."""
    if body.find(b":") >= 0:
        try:
            json.loads(body, object_pairs_hook=_unique_keys)
        except RecursionError:
            raise BodyError("depth", "JSON nested too deeply") from None
        except BodyError:
            if _too_deep(body, max_depth):  # the dropped duplicate held the depth
                raise BodyError("depth", f"JSON nested deeper than {max_depth} levels") \
                    from None
            raise
    if body.translate(_DIGITS).find(_LONG_RUN) >= 0:
        _check_big_ints(body)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        raise BodyError("duplicate_key", "an object in the JSON body repeats a key")


def _json_error(err: orjson.JSONDecodeError) -> BodyError:
    if "depth limit" in err.msg or "recursion" in err.msg:
        return BodyError("depth", "JSON nested too deeply")
    if "infinity" in err.msg:
        return BodyError("number", f"a number at line {err.lineno} column {err.colno} is "
                         "too large")
    return BodyError("json", f"malformed JSON at line {err.lineno} column {err.colno}: "
                     f"{err.msg}")


def _deeper(value: Any, max_depth: int) -> bool:
    """Whether a parsed object or array nests deeper than ``max_depth`` (it is level 1).

    A walk of its containers, at most ``max_depth`` levels down (0.67 µs for the ORDER
    body of bench/validation.py, 2.7 µs by ``_too_deep``). Recursive under
    ``_RECURSE_BELOW`` levels; level by level past that, out of reach of Python's own
    recursion limit (orjson lets 1024 through)."""
    if max_depth < _RECURSE_BELOW:
        return _deeper_below(value, max_depth)
    level = [value]
    for _ in range(max_depth):
        level = [item for node in level
                 for item in (node.values() if type(node) is dict else node)
                 if type(item) is dict or type(item) is list]
        if not level:
            return False
    return True


_RECURSE_BELOW = 200


def _deeper_below(node: Any, levels: int) -> bool:
    if not levels:
        return True
    for item in (node.values() if type(node) is dict else node):
        if (type(item) is dict or type(item) is list) and _deeper_below(item, levels - 1):
            return True
    return False


def _too_deep(body: bytes, max_depth: int) -> bool:
    """Exact test for valid JSON, on the body itself (so duplicate keys count): strip
    strings, keep the brackets, peel the innermost pairs, one level per pass; what is left
    after ``max_depth`` passes was nested deeper."""
    rest = _STRING.sub(b"", body).translate(_BRACKETS, b" \t\r\n,:0123456789.eE+-truefalsn")
    for _ in range(max_depth):
        if not rest:
            return False
        rest = rest.replace(b"[]", b"")
    return bool(rest)


def _check_big_ints(body: bytes) -> None:
    for literal in _BIG_INT.findall(_STRING.sub(b"", body)):
        if not _INT_MIN <= int(literal) <= _INT_MAX:
            raise BodyError("number", f"an integer of {len(literal.lstrip(b'-'))} digits is "
                            "beyond 64 bits")


# --- application/x-www-form-urlencoded --------------------------------------------------

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CHARSETS = {"utf-8", "ascii", "iso8859-1"}


def _codec(charset: str | None) -> str:
    """Only charsets that cannot smuggle markup past a check (no UTF-7, no UTF-16)."""
    try:
        name = codecs.lookup(charset or "utf-8").name
    except LookupError:
        name = ""
    if name not in _CHARSETS:
        raise BodyError("form", "unsupported charset (use utf-8)")
    return name


def parse_form(body: bytes, charset: str | None = "utf-8") -> dict[str, list[str]]:
    """``a=1&b=x+y&a=2`` → ``{"a": ["1", "2"], "b": ["x y"]}``.

    As the WHATWG URL standard parses this media type: ``+`` is a space (HTML forms
    encode spaces so), ``%2B`` a plus; empty ``&&`` segments are skipped; a name without
    ``=`` has the empty value. Stricter than it: a ``%`` not followed by two hex digits,
    and bytes that are not text in ``charset``, are refused rather than passed through.
    """
    codec = _codec(charset)
    bad = _BAD_PERCENT.search(body)
    if bad is not None:
        raise BodyError("form", f"invalid percent-encoding at byte {bad.start()}")
    fields: dict[str, list[str]] = {}
    for pair in body.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        try:
            key = unquote_to_bytes(name.replace(b"+", b" ")).decode(codec)
            text = unquote_to_bytes(value.replace(b"+", b" ")).decode(codec)
        except UnicodeDecodeError:
            raise BodyError("form", f"a field is not valid {codec} text") from None
        fields.setdefault(key, []).append(text)
    return fields


# --- multipart/form-data ----------------------------------------------------------------

_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046

FileInfo = tuple[str, str, int]
"""(filename, content type, size in bytes) of one uploaded file; its bytes are not kept."""


def parse_multipart(
    body: bytes, content_type_header: str, max_part_size: int, max_parts: int
) -> tuple[dict[str, list[str]], dict[str, list[FileInfo]]]:
    """Split a multipart/form-data body (RFC 7578) into text fields and file facts.

    Text parts (no ``filename``) must be UTF-8 and at most ``max_part_size`` bytes
    (``field_size``); file parts are measured, not stored, and refused past it
    (``file_size``). Refused as ``multipart``: a missing or invalid boundary, more than
    ``max_parts`` parts, a part without ``Content-Disposition: form-data; name=…``, a
    preamble, a body that ends before its closing boundary.
    """
    parsed = parse_media_type(content_type_header or "")
    if parsed is None or parsed[0] != "multipart/form-data":
        raise BodyError("multipart", "Content-Type is not multipart/form-data")
    boundary = parsed[1].get("boundary")
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise BodyError("multipart", "missing or invalid multipart boundary")
    reader = _PartReader(max_part_size, max_parts)
    parser = MultipartParser(boundary.encode("ascii"), reader.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as err:
        where = getattr(err, "offset", None)
        raise BodyError("multipart", "malformed multipart body" +
                        (f" near byte {where}" if where is not None else "")) from None
    if parser.state != MultipartState.END:
        raise BodyError("multipart", "multipart body ends before its closing boundary")
    return reader.fields, reader.files


class _PartReader:
    """python-multipart's callbacks: collects field text and file sizes, nothing on disk."""

    def __init__(self, max_part_size: int, max_parts: int) -> None:
        self.max_part_size = max_part_size
        self.max_parts = max_parts
        self.fields: dict[str, list[str]] = {}
        self.files: dict[str, list[FileInfo]] = {}
        self.parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._name = ""
        self._filename: str | None = None
        self._type = ""
        self._chunks: list[bytes] = []
        self._size = 0

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise BodyError("multipart", f"more than {self.max_parts} parts")
        self._headers = {}
        self._field = self._value = b""
        self._chunks = []
        self._size = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.strip().lower()
        if name in self._headers:
            raise BodyError("multipart", "a part repeats a header")
        self._headers[name] = self._value.strip()
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition")
        kind, params = parse_options_header(disposition)
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise BodyError("multipart", 'a part lacks Content-Disposition: form-data; name="…"')
        try:
            self._name = name.decode("utf-8")
            filename = params.get(b"filename")
            self._filename = None if filename is None else filename.decode("utf-8")
            self._type = self._headers.get(b"content-type", b"").decode("ascii")
        except UnicodeDecodeError:
            raise BodyError("multipart", "a part's headers are not valid UTF-8") from None
        if not self._type:
            self._type = "application/octet-stream" if self._filename is not None \
                else "text/plain"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._size > self.max_part_size:
            if self._filename is not None:
                raise BodyError("file_size", f"file in part {self._name!r:.40} is larger than "
                                f"{self.max_part_size} bytes")
            raise BodyError("field_size", f"field {self._name!r:.40} is larger than "
                            f"{self.max_part_size} bytes")
        if self._filename is None:
            self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        if self._filename is not None:
            info = (self._filename, self._type, self._size)
            self.files.setdefault(self._name, []).append(info)
            return
        try:
            text = b"".join(self._chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise BodyError("multipart", f"field {self._name!r:.40} is not UTF-8 text") \
                from None
        self.fields.setdefault(self._name, []).append(text)


# --- form fields to schema types --------------------------------------------------------

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,300})")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,300})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,4})?")
_SEPARATORS = {"form": ",", "spaceDelimited": " ", "pipeDelimited": "|"}


def coerce_fields(
    fields: dict[str, list[str]],
    schema: Any,
    *,
    encoding: dict[str, Any] | None = None,
    resolve: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Form fields (all strings) → the value the body's object schema describes.

    Per declared property: an ``array`` gets every value (repeated fields, or one field
    split per its ``encoding`` style when ``explode`` is false), each converted to the
    items' type; a scalar gets its one value converted (``integer``, ``number``,
    ``boolean`` as ``true``/``false``). A value that does not convert stays a string,
    and a scalar sent twice stays a list, so the schema validator reports a type error
    instead of the gateway choosing one. Undeclared fields: a string, or a list if
    repeated. ``resolve`` follows a ``$ref`` property schema (e.g. the spec's resolver);
    without it such a property is left as text.
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        properties = {}
    result: dict[str, Any] = {}
    for name, values in fields.items():
        prop = properties.get(name)
        if resolve is not None and isinstance(prop, dict) and "$ref" in prop:
            prop = resolve(prop)
        types = _types(prop)
        if "array" in types:
            items = prop.get("items") if isinstance(prop, dict) else None
            if resolve is not None and isinstance(items, dict) and "$ref" in items:
                items = resolve(items)
            split = _separator(encoding, name)
            if split is not None:
                values = [part for value in values for part in value.split(split)]
            item_types = _types(items)
            result[name] = [_convert(value, item_types) for value in values]
        elif len(values) == 1:
            result[name] = _convert(values[0], types)
        else:
            result[name] = list(values)
    return result


def _types(schema: Any) -> tuple[str, ...]:
    if not isinstance(schema, dict):
        return ()
    declared = schema.get("type")
    if isinstance(declared, str):
        return (declared,)
    if isinstance(declared, list):
        return tuple(t for t in declared if isinstance(t, str))
    return ()


def _separator(encoding: dict[str, Any] | None, name: str) -> str | None:
    """How one field holds several values: None when repeated (form, explode: true)."""
    rule = (encoding or {}).get(name)
    if not isinstance(rule, dict):
        return None
    style = rule.get("style", "form")
    explode = rule.get("explode", style == "form")
    return None if explode else _SEPARATORS.get(style)


def _convert(value: str, types: tuple[str, ...]) -> Any:
    if "string" in types or not types:
        return value
    if "integer" in types and _INTEGER.fullmatch(value):
        return int(value)
    if "number" in types and _NUMBER.fullmatch(value):
        number = int(value) if _INTEGER.fullmatch(value) else float(value)
        if isinstance(number, int) or math.isfinite(number):
            return number
    if "boolean" in types:
        if value == "true":
            return True
        if value == "false":
            return False
    return value
