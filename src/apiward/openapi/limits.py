"""Body limits derived from a request schema: the largest body the schema allows.

Where a request body schema bounds everything (every string, array and object, and no
recursion), the body can be refused by its size before it is parsed, and the JSON parser
can be given the schema's exact nesting depth: both far tighter than the global limits.

How a body is counted, and so which valid bodies a derived limit still refuses:

- A string of ``maxLength`` n counts 12 bytes a character: JSON may write any code point
  escaped, an astral one as a surrogate pair ``\\uD83D\\uDE00`` (Python's ``json.dumps``
  does by default). Property names and enum/const strings are known, so each of their
  characters counts its own worst case (6 bytes as ``\\u00XX``, 12 if astral).
- ``enum``/``const``, and the formats of ``FORMAT_CHARS`` (date, uuid, ip addresses: ASCII
  of a fixed width, 6 bytes a character) bound a string; so does a ``pattern`` anchored at
  both ends whose longest match is finite. ``date-time`` and ``time`` count a fraction of
  up to 38 digits: RFC 3339 sets no limit, real clients write at most 9.
- A number counts ``NUMBER_BYTES`` (32) characters: float64 and int64 need at most 24
  (``-2.2250738585072014e-308``); a number padded longer (``1.000…``) may be refused.
- Whitespace: JSON allows any amount, so a derived limit must pick a margin. It allows the
  whitespace of pretty-printing with up to 8 columns of indentation a level, CRLF line
  ends and a space on each side of every ``:`` and after every ``,`` (more than Python's
  ``indent=4``, Jackson's, or ``JSON.stringify(v, null, "\\t")`` produce), plus
  ``SLACK`` (1 KiB) for a BOM, trailing newlines and the like. A body padded beyond that
  is refused (413) although its JSON is valid: no formatter in use writes one.
- Forms (``application/x-www-form-urlencoded``) count every byte of a name or value as
  percent-encoded (``%XX``: 12 bytes a character); they are bounded only as a flat object
  of scalars and arrays of scalars. Multipart bodies get no derived limit: their part
  headers and boundaries are the client's choice, and files are limited elsewhere.

The nesting depth counts nested arrays and objects (``{"a": [1]}`` has 2; a scalar body
0) and is exact: it takes no margin.
"""

from __future__ import annotations

import re._parser as sre  # the stdlib's own regex parser: longest match of a pattern
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from apiward.openapi.document import SpecDocument, split_ref
from apiward.openapi.media import is_json

NUMBER_BYTES = 32
CHAR_BYTES = 12  # a code point escaped as a surrogate pair, or 4 UTF-8 bytes as %XX each
INDENT_BYTES = 8  # indentation a nesting level, for the whitespace margin
NEWLINE_BYTES = 2  # CRLF
SEPARATOR_SPACES = 3  # '"a" : 1, '
SLACK = 1024

FORMAT_CHARS = {
    "date": 10,  # 2024-02-29
    "date-time": 64,  # 2024-02-29T23:59:60 + "." + 38 digits + "+05:30"
    "time": 53,
    "uuid": 36,
    "ipv4": 15,
    "ipv6": 45,  # ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
}

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ALL_TYPES = ("null", "boolean", "number", "string", "array", "object")
Where = tuple[str, str]  # (document URI, JSON pointer inside it)


@dataclass(frozen=True, slots=True)
class DerivedLimits:
    """``body_bytes`` and ``json_depth`` are None when the schema does not bound them;
    ``unbounded`` then says which schema lets the body grow, and why."""

    body_bytes: int | None
    json_depth: int | None
    unbounded: str | None = None


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The derived limits of one request body media type of one operation."""

    method: str  # upper case
    template: str
    pointer: str  # of the media type object
    media_type: str
    limits: DerivedLimits


def derive_limits(schema: Any, base_uri: str, spec: SpecDocument, media_kind: str, *,
                  pointer: str = "") -> DerivedLimits:
    """The limits a request body schema implies for ``media_kind`` ("json", "form",
    "multipart" or "opaque"); ``base_uri`` is the URI of the document holding ``schema``,
    ``pointer`` where in it (only to say where a body is unbounded)."""
    if media_kind not in ("json", "form"):
        return DerivedLimits(None, None, f"{media_kind} bodies get no derived limit")
    bounder = _Bounder(spec, media_kind)
    try:
        found = bounder.bound(schema, base_uri, (base_uri, pointer), 0)
    except RecursionError:  # a long $ref chain: no limit is derived, none is wrong
        return DerivedLimits(None, None, f"{show(spec, (base_uri, pointer))}: the schema "
                             "nests too deeply through $ref to bound")
    if isinstance(found, Unbounded):
        return DerivedLimits(None, None, found.why)
    if media_kind == "form":
        return DerivedLimits(found.size + SLACK, None)
    spaces = (NEWLINE_BYTES * found.lines + INDENT_BYTES * found.indent
              + SEPARATOR_SPACES * found.items)
    return DerivedLimits(found.size + spaces + SLACK, found.depth)


def operation_limits(spec: SpecDocument) -> list[BodyLimits]:
    """``derive_limits`` for every media type of every operation's request body."""
    found = []
    for template, item in (spec.root.get("paths") or {}).items():
        item, base = spec.resolve(item, spec.uri)
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict) or operation.get("requestBody") is None:
                continue
            body, body_base = spec.resolve(operation["requestBody"], base)
            pointer = f"/paths/{escape(template)}/{method}/requestBody/content"
            for media_type, media in (body.get("content") or {}).items():
                media, media_base = spec.resolve(media or {}, body_base)
                schema = media.get("schema")
                at = f"{pointer}/{escape(media_type)}"
                limits = (DerivedLimits(None, None, f"{at}: no schema") if schema is None else
                          derive_limits(schema, media_base, spec, media_kind(media_type),
                                        pointer=f"{at}/schema"))
                found.append(BodyLimits(method.upper(), template, at, media_type, limits))
    return found


def media_kind(media_type: str) -> str:
    """How a body of this media type is read: "json", "form", "multipart" or "opaque"."""
    if is_json(media_type):
        return "json"
    name = media_type.split(";", 1)[0].strip().lower()
    if name == "application/x-www-form-urlencoded":
        return "form"
    return "multipart" if name == "multipart/form-data" else "opaque"


def string_max_chars(schema: dict) -> int | None:
    """The longest string ``schema`` allows by ``maxLength``, a bounded format or an
    anchored pattern (enum and const aside), or None."""
    bounds = _string_bounds(schema, 1, 1)
    return min(bounds) if bounds else None


def show(spec: SpecDocument, where: Where) -> str:
    """A location as users read it: the pointer, prefixed by its file when not the root."""
    uri, pointer = where
    if uri == spec.uri:
        return pointer or "/"
    return f"{unquote(urlsplit(uri).path).rsplit('/', 1)[-1]}#{pointer}"


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


# -- the bound of a schema ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Bound:
    """The largest text of a value. ``lines`` and ``indent`` measure what pretty-printing
    adds: the line breaks inside the value and the sum of their nesting levels (relative
    to the value's own); ``items`` counts its members and elements, each of which may get
    spaces around its ``:`` and ``,``."""

    size: int
    depth: int = 0
    lines: int = 0
    indent: int = 0
    items: int = 0


@dataclass(frozen=True, slots=True)
class Unbounded:
    why: str


Result = Bound | Unbounded
NOTHING = Bound(0)  # the false schema: no value at all


class _Bounder:
    """One walk over the schemas of one body, memoised by schema node, cycle-safe."""

    def __init__(self, spec: SpecDocument, kind: str) -> None:
        self.spec = spec
        self.form = kind == "form"
        self.v31 = spec.version == "3.1"
        self.memo: dict[tuple[int, int], Result] = {}
        self.active: set[tuple[int, int]] = set()
        self.types: dict[int, frozenset[str] | None] = {}

    def bound(self, node: Any, base: str, where: Where, level: int) -> Result:
        """``level`` is the nesting level in a form (0 the body, 1 a field, 2 an item of
        an array field); JSON bounds do not depend on it, and always pass 0."""
        if isinstance(node, bool):
            return NOTHING if node is False else self._any(where)
        if not isinstance(node, dict):
            return Unbounded(f"{show(self.spec, where)}: not a schema")
        key = (id(node), level)
        found = self.memo.get(key)
        if found is not None:
            return found
        if key in self.active:
            return Unbounded(f"{show(self.spec, where)}: recursive schema, no depth bound")
        self.active.add(key)
        try:
            found = self._compose(node, base, where, level)
        finally:
            self.active.discard(key)
        self.memo[key] = found
        return found

    def _compose(self, node: dict, base: str, where: Where, level: int) -> Result:
        """A value meets the schema's own keywords, its ``$ref`` and every ``allOf``
        member (so the least of their bounds), and one branch of each ``anyOf``/``oneOf``
        (so the greatest of theirs)."""
        ref = node.get("$ref")
        parts: list[Result] = []
        if isinstance(ref, str):
            target, target_base = self.spec.resolve({"$ref": ref}, base)
            parts.append(self.bound(target, target_base, split_ref(ref, base), level))
            if not self.v31:
                return parts[0]  # 3.0: a $ref's siblings are ignored
        uri, pointer = where
        for i, member in enumerate(node.get("allOf") or ()):
            parts.append(self.bound(member, base, (uri, f"{pointer}/allOf/{i}"), level))
        for keyword in ("anyOf", "oneOf"):
            branches = node.get(keyword)
            if branches:
                parts.append(_greatest([
                    self.bound(branch, base, (uri, f"{pointer}/{keyword}/{i}"), level)
                    for i, branch in enumerate(branches)]))
        parts.append(self._own(node, base, where, level))  # last: the least telling "why"
        return _least(parts)

    def _own(self, node: dict, base: str, where: Where, level: int) -> Result:
        """The bound of the schema's own keywords, composition aside, for the types the
        whole schema admits (so ``{"$ref": text, "maxLength": 5}`` is a short string)."""
        if "const" in node:
            return self._value(node["const"], where, level)
        if "enum" in node and isinstance(node["enum"], list):
            return _greatest([self._value(v, where, level) for v in node["enum"]])
        admitted = self._types(node, base, set())
        types = ALL_TYPES if admitted is None else tuple(t for t in ALL_TYPES if t in admitted)
        if self.form and level == 0:  # a form body is always a set of fields
            if "object" not in types:
                return Unbounded(f"{show(self.spec, where)}: a form body must be an object")
            types = ("object",)
        return _greatest([self._typed(kind, node, base, where, level, admitted is not None)
                          for kind in types])

    def _types(self, node: Any, base: str, seen: set[int]) -> frozenset[str] | None:
        """The JSON types a schema admits, from ``type`` here and in the subschemas
        applied with it (allOf, a 3.1 $ref: all; anyOf, oneOf: one); None for any."""
        if isinstance(node, bool) or not isinstance(node, dict) or id(node) in seen:
            return None if node is not False else frozenset()
        if id(node) in self.types:
            return self.types[id(node)]
        seen.add(id(node))
        found = self._types_here(node, base, seen)
        seen.discard(id(node))
        self.types[id(node)] = found
        return found

    def _types_here(self, node: dict, base: str, seen: set[int]) -> frozenset[str] | None:
        ref = node.get("$ref")
        if isinstance(ref, str):
            target, target_base = self.spec.resolve({"$ref": ref}, base)
            found = self._types(target, target_base, seen)
            if not self.v31:
                return found
        else:
            found = None
        declared = node.get("type")
        if declared is not None:
            own = {declared} if isinstance(declared, str) else set(declared)
            if not self.v31 and node.get("nullable") is True:
                own.add("null")
            found = _meet(found, frozenset("number" if t == "integer" else t for t in own))
        for member in node.get("allOf") or ():
            found = _meet(found, self._types(member, base, seen))
        for keyword in ("anyOf", "oneOf"):
            branches = [self._types(b, base, seen) for b in node.get(keyword) or ()]
            if branches and None not in branches:
                found = _meet(found, frozenset().union(*branches))  # type: ignore[arg-type]
        return found

    def _typed(self, kind: str, node: dict, base: str, where: Where, level: int,
               typed: bool) -> Result:
        at = show(self.spec, where)
        if kind == "number":
            return Bound(NUMBER_BYTES * (3 if self.form else 1))
        if kind == "boolean":
            return Bound(15 if self.form else 5)
        if kind == "null":
            return Bound(0 if self.form else 4)
        if kind == "string":
            bounds = _string_bounds(node, CHAR_BYTES, 3 if self.form else 6)
            if not bounds:
                return Unbounded(f"{at}: string without maxLength" if typed else
                                 f"{at}: no type, so any string is allowed")
            return Bound(min(bounds) + (0 if self.form else 2))
        if self.form and level >= (1 if kind == "object" else 2):
            return Unbounded(f"{at}: nested {kind} in a form body")
        if kind == "array":
            return self._array(node, base, where, level)
        if kind == "object":
            return self._object(node, base, where, level)
        return Unbounded(f"{at}: unknown type {kind!r}")

    def _array(self, node: dict, base: str, where: Where, level: int) -> Result:
        uri, pointer = where
        prefix = (node.get("prefixItems") or []) if self.v31 else []
        items = node.get("items", True)
        most = node.get("maxItems")
        if items is False:
            most = len(prefix) if most is None else min(most, len(prefix))
        if most is None:
            return Unbounded(f"{show(self.spec, where)}: array without maxItems")
        known = [self.bound(p, base, (uri, f"{pointer}/prefixItems/{i}"), self._deeper(level))
                 for i, p in enumerate(prefix)]
        extra = None
        if most > len(prefix) and items is not False:
            extra = self.bound(items, base, (uri, f"{pointer}/items"), self._deeper(level))
        for part in (*known, extra):
            if isinstance(part, Unbounded):
                return part
        if self.form:  # each element is a name=value pair of the field: counted above
            return Bound(_top([b.size for b in known], extra and extra.size, most), items=most)
        return _container(known, extra, most)

    def _object(self, node: dict, base: str, where: Where, level: int) -> Result:
        at = show(self.spec, where)
        fields = self._fields(node, base, where)
        if fields is None:
            return Unbounded(f"{at}: unevaluatedProperties leaves names open")
        closed = (node.get("additionalProperties") is False
                  and not node.get("patternProperties"))
        if not closed and self.v31 and node.get("unevaluatedProperties") is False and \
                "additionalProperties" not in node and not node.get("patternProperties"):
            closed = True
        most = node.get("maxProperties")
        known = []
        for name, definitions in fields.items():
            value = _greatest([self.bound(s, b, w, self._deeper(level)) for s, b, w in definitions])
            if isinstance(value, Unbounded):
                return value
            known.append(self._member(self._key(name), value))
        extra = None
        if not closed and most != 0:
            if most is None:
                return Unbounded(f"{at}: object open to more properties, "
                                 "without maxProperties")
            extra = self._extra(node, base, where, level)
            if isinstance(extra, Unbounded):
                return extra
        count = len(known) if extra is None else most
        if most is not None:
            count = min(count, most)
        if self.form:
            return Bound(_top([b.size for b in known], extra and extra.size, count),
                         items=_top([b.items for b in known], extra and extra.items, count))
        return _container(known, extra, count)

    def _fields(self, node: dict, base: str, where: Where) -> dict[str, list] | None:
        """Each property name a value may have, with the schemas that define it; under
        ``unevaluatedProperties: false`` also those of in-place subschemas."""
        uri, pointer = where
        fields: dict[str, list] = {}
        for name, schema in (node.get("properties") or {}).items():
            fields[name] = [(schema, base, (uri, f"{pointer}/properties/{escape(name)}"))]
        if not (self.v31 and node.get("unevaluatedProperties") is False):
            return fields
        for sub, sub_base, sub_where in self._in_place(node, base, where, {id(node)}):
            if sub.get("additionalProperties", False) is not False or sub.get(
                    "patternProperties") or sub.get("unevaluatedProperties", False) is not False:
                return None
            sub_uri, sub_pointer = sub_where
            for name, schema in (sub.get("properties") or {}).items():
                fields.setdefault(name, []).append(
                    (schema, sub_base, (sub_uri, f"{sub_pointer}/properties/{escape(name)}")))
        return fields

    def _in_place(self, node: dict, base: str, where: Where,
                  seen: set[int]) -> Iterable[tuple[dict, str, Where]]:
        """The subschemas applied to the same value (allOf, anyOf, oneOf, $ref, then,
        else, dependentSchemas), followed through $ref, each once."""
        uri, pointer = where
        subs: list[tuple[Any, str, Where]] = []
        ref = node.get("$ref")
        if isinstance(ref, str):
            target, target_base = self.spec.resolve({"$ref": ref}, base)
            subs.append((target, target_base, split_ref(ref, base)))
        for keyword in ("allOf", "anyOf", "oneOf"):
            for i, member in enumerate(node.get(keyword) or ()):
                subs.append((member, base, (uri, f"{pointer}/{keyword}/{i}")))
        for keyword in ("then", "else"):
            if keyword in node:
                subs.append((node[keyword], base, (uri, f"{pointer}/{keyword}")))
        for name, member in (node.get("dependentSchemas") or {}).items():
            subs.append((member, base, (uri, f"{pointer}/dependentSchemas/{escape(name)}")))
        for sub, sub_base, sub_where in subs:
            if isinstance(sub, dict) and id(sub) not in seen:
                seen.add(id(sub))
                yield sub, sub_base, sub_where
                yield from self._in_place(sub, sub_base, sub_where, seen)

    def _extra(self, node: dict, base: str, where: Where, level: int) -> Result:
        """The largest member beyond the named properties: its name bounded by
        ``propertyNames``, its value by ``additionalProperties``/``patternProperties``."""
        uri, pointer = where
        names = node.get("propertyNames") if self.v31 else None
        if not isinstance(names, dict):
            return Unbounded(f"{show(self.spec, where)}: extra property names are unbounded "
                             "(no propertyNames with maxLength)")
        key = self._string_only(names)
        if key is None:
            return Unbounded(f"{show(self.spec, (uri, pointer + '/propertyNames'))}: "
                             "property names without maxLength")
        values = [self.bound(s, base, (uri, f"{pointer}/patternProperties/{escape(p)}"),
                             self._deeper(level))
                  for p, s in (node.get("patternProperties") or {}).items()]
        additional = node.get("additionalProperties", True)
        if additional is not False:
            values.append(self.bound(additional, base,
                                     (uri, f"{pointer}/additionalProperties"), self._deeper(level)))
        value = _greatest(values)
        return value if isinstance(value, Unbounded) else self._member(key, value)

    def _string_only(self, node: dict) -> int | None:
        """The text size of a property name meeting ``node`` (a propertyNames schema)."""
        if "const" in node:
            return self._key(str(node["const"]))
        if isinstance(node.get("enum"), list):
            return max((self._key(str(v)) for v in node["enum"]), default=0)
        bounds = _string_bounds(node, CHAR_BYTES, 3 if self.form else 6)
        return min(bounds) + (0 if self.form else 2) if bounds else None

    def _member(self, key: int, value: Bound) -> Bound:
        if self.form:  # name=value&, once per element of an array field
            return Bound(value.size + max(1, value.items) * (key + 2), items=max(1, value.items))
        return replace(value, size=value.size + key + 1)

    def _key(self, name: str) -> int:
        if self.form:
            return 3 * len(name.encode("utf-8", "surrogatepass"))
        return 2 + sum(12 if ord(c) > 0xFFFF else 6 for c in name)

    def _value(self, value: Any, where: Where, level: int) -> Result:
        """The largest text of one enum or const value."""
        if value is None:
            return Bound(0 if self.form else 4)
        if isinstance(value, bool):
            return Bound(15 if self.form else 5)
        if isinstance(value, (int, float)):
            return Bound(NUMBER_BYTES * (3 if self.form else 1))
        if isinstance(value, str):
            return Bound(self._key(value))
        if self.form:
            return Unbounded(f"{show(self.spec, where)}: structured enum in a form body")
        if isinstance(value, list):
            parts = [self._value(v, where, level) for v in value]
        elif isinstance(value, dict):
            parts = [self._member(self._key(str(k)), self._value(v, where, level))
                     for k, v in value.items()]
        else:
            return Unbounded(f"{show(self.spec, where)}: not a JSON value")
        for part in parts:
            if isinstance(part, Unbounded):
                return part
        return _container(parts, None, len(parts))  # type: ignore[arg-type]

    def _deeper(self, level: int) -> int:
        """The level of a value's members: counted in forms (up to 3, past which all is
        refused), always 0 in JSON, where it would only split the memo."""
        return min(level + 1, 3) if self.form else 0

    def _any(self, where: Where) -> Unbounded:
        return Unbounded(f"{show(self.spec, where)}: accepts any value")


def _string_bounds(node: dict, char_bytes: int, ascii_bytes: int) -> list[int]:
    """The text size (quotes aside) each string keyword allows, at the given bytes a
    character (any character; a character of an ASCII format)."""
    bounds = []
    most = node.get("maxLength")
    if isinstance(most, int) and not isinstance(most, bool):
        bounds.append(char_bytes * most)
    chars = FORMAT_CHARS.get(node.get("format"))  # type: ignore[arg-type]
    if chars is not None:
        bounds.append(ascii_bytes * chars)
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        width = _pattern_chars(pattern)
        if width is not None:
            bounds.append(char_bytes * width)
    return bounds


def _pattern_chars(pattern: str) -> int | None:
    """The longest string matching a pattern anchored at both ends (``^…$``), or None.
    Read with Python's regex parser, which shares the syntax of the patterns schemas use;
    one more character allows for a ``$`` matching before a final newline."""
    try:
        parsed = sre.parse(pattern)
        data = parsed.data
        if (len(data) < 2 or data[0][0] is not sre.AT or data[-1][0] is not sre.AT
                or data[0][1] not in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)
                or data[-1][1] not in (sre.AT_END, sre.AT_END_STRING)):
            return None
        width = parsed.getwidth()[1]
    except Exception:  # a pattern Python cannot read (\p{L} ...) is simply not a bound
        return None
    return None if width >= sre.MAXREPEAT else width + 1


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return b if a is None else a if b is None else a & b


def _least(parts: list[Result]) -> Result:
    """A value meeting every part: no larger than any of them (unbounded: the first
    part's reason)."""
    bounded = [p for p in parts if isinstance(p, Bound)]
    if not bounded:
        return parts[0]
    if len(bounded) == 1:
        return bounded[0]
    return Bound(min(b.size for b in bounded), min(b.depth for b in bounded),
                 min(b.lines for b in bounded), min(b.indent for b in bounded),
                 min(b.items for b in bounded))


def _greatest(parts: list[Result]) -> Result:
    """A value meeting one of the parts: no larger than the largest."""
    for part in parts:
        if isinstance(part, Unbounded):
            return part
    if not parts:
        return NOTHING
    if len(parts) == 1:
        return parts[0]
    bounded: list[Bound] = parts  # type: ignore[assignment]
    return Bound(max(b.size for b in bounded), max(b.depth for b in bounded),
                 max(b.lines for b in bounded), max(b.indent for b in bounded),
                 max(b.items for b in bounded))


def _top(values: list[int], extra: int | None, count: int) -> int:
    """The largest sum of ``count`` values, each of ``values`` used at most once and
    ``extra`` (when not None) any number of times."""
    ranked = sorted(values, reverse=True)
    if extra is not None:
        ranked = [v for v in ranked if v > extra]
    chosen = ranked[:count]
    return sum(chosen) + (count - len(chosen)) * (extra or 0)


def _container(known: list[Bound], extra: Bound | None, count: int) -> Bound:
    """The largest JSON array or object of ``count`` entries drawn from ``known`` (each
    at most once) and ``extra`` (any number of times). Each measure is maximised on its
    own, which bounds every real choice of entries."""
    if count <= 0:
        return Bound(2, 1)
    pool = [*known, extra] if extra is not None else known
    def top(measure) -> int:
        return _top([measure(b) for b in known], None if extra is None else measure(extra),
                    count)
    return Bound(
        size=2 + (count - 1) + top(lambda b: b.size),
        depth=1 + max(b.depth for b in pool),
        lines=count + 1 + top(lambda b: b.lines),
        indent=count + top(lambda b: b.indent + b.lines),
        items=count + top(lambda b: b.items),
    )
