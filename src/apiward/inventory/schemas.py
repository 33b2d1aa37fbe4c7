"""Learned schemas: the shapes of the JSON bodies and query parameters seen in live traffic.

Sans-I/O: a learner takes parsed values (``observe``), keeps a bounded summary of them, and
gives it back as JSON Schema 2020-12 (``ShapeLearner.schema``, also OpenAPI 3.1 Schema
Objects) or OpenAPI 3.1 Parameter Objects (``QueryLearner.parameters``). Its state is a
JSON-able dict (``to_dict``/``from_dict``), so the inventory stores it anywhere and
``merge`` adds up what several gateways learned.

What is kept: counts, types, string lengths, array lengths, property and parameter names,
formats, and (the one place literal values appear) short enum candidates under the rules
below. Never a body, a query value, a number's value, a secret or a token.

Rules (each one visible in a test):

- **Required** means "seen in nearly all": a property present in at least 95% of the
  objects observed at its position (``REQUIRED_RATIO``), a query parameter in at least 95%
  of the calls. A learned schema may therefore refuse the rare value that lacked such a
  field; ``schema(required_ratio=1.0)`` gives the strict "accepts everything seen" form.
- **Types** widen: integers and non-integral numbers make ``number`` (int ⊂ number); a
  position that held several types gets ``type: [...]`` (``null`` added for nulls) with the
  keywords of each type side by side — ``properties`` only judge objects, ``items`` only
  arrays, ``minLength`` only strings — so ``anyOf`` is never produced. Objects seen at one
  position merge into one shape (properties united, required by ratio) rather than a
  growing list of alternatives: what is learned stays one bounded schema.
- **Strings** keep the shortest and longest length seen and a ``format`` (uuid, date-time,
  date, email, uri, ipv4) when every sample matched it. ``infer_format`` is stricter than
  jsonschema-rs's format checks, so a learned format never refuses a value it was learned
  from when the gateway enforces formats. Numbers keep no bounds (they would be values).
- **Enums** (a string-only position, ``null`` allowed): emitted when the position held at
  least ``enum_min_count`` strings with at most ``max_enum`` distinct values, every value
  "enum-safe": at most 32 ASCII characters of ``[A-Za-z0-9_.:/+-]`` (no spaces, so no
  free text), not looking like a value (``looks_like_value``: a format, four digits in a
  row, a hex or base64/token-like run), and the field's name (or an enclosing one) does not
  look secret or personal (``is_secret_name``: password, token, secret, key, auth,
  authorization, card, ssn, email, phone, name, address…). A position that breaks a rule
  once forgets its candidates for good. Until ``enum_min_count`` is reached the
  candidates sit in the state (at most ``max_enum`` per position) but not in the schema.
  Under a secret-looking name the string lengths are also kept only to a power of two.
- **Arrays**: one item schema merged over all items of all arrays at the position, and the
  fewest and most items seen.
- **Objects**: up to ``max_properties`` properties per object position, in first-seen
  order; names longer than 64 characters, not printable, or looking like values (ids,
  dates, emails as keys: a map) are not stored — their values merge into one
  ``additionalProperties`` schema; names beyond the cap or the node budget are counted
  (``extra``) and make ``additionalProperties: true``, listed no further. Once a key of
  an object position went uncounted, no later new key is listed there (its earlier
  values may have been among the uncounted ones).
- **Depth**: positions nested ``max_depth`` containers deep (the root is depth 0) are
  ``{}``: counted, not described.
- **Query parameters**: per name, the share of calls that gave it, whether it was ever
  given several times (then an exploded array, as the gateway refuses a repeated scalar),
  whether a value was empty (``allowEmptyValue``), the lengths, and the least kind of all
  its values: integer (≤ 15 digits, no leading zero) ⊂ number ⊂ string, boolean
  ("true"/"false") ⊂ string, a format ⊂ string. Names that read as data are counted
  (``unnamed``), never stored; past ``max_params`` names are counted (``extra``).

Bounds: a learner counts at most ``max_nodes`` positions (every property position and
every described one); an ``items`` or ``map`` position that comes after the budget ran
out, or past the depth, is an opaque stand-in (a count) that is not counted: a leaf, at
most two per counted position. The largest position — a 64-character name of 4-byte
characters, every type, ten 32-character enum candidates, an array and an object with
their stand-ins, 19-digit counts — is under 1200 bytes, so ``len(orjson.dumps(to_dict()))``
stays under ``state_bound(max_nodes)`` = ``max_nodes * 1200 + 1024`` bytes (~301 KiB at
the defaults) whatever the traffic. Measured (tests): 100k random documents with random
keys, ~23 KiB; a crafted worst case at every position, ~140 KB; a typical order body,
~2 KiB. A ``QueryLearner`` keeps at most ``max_params`` names, each under 300 bytes.

``merge(a, b)`` gives exactly what one learner fed a's values then b's would have, as long
as neither reached a bound; past a bound it stays sound (the schema accepts what either
saw) but keeps less: which names fill a cap depends on the order of arrival, and what
the other learner did not describe (its uncounted keys, its stand-ins) makes the
positions it may concern ``{}``. ``from_dict`` restores a state exactly when it fits the
config (else merges it in under the config's bounds), and applies the privacy rules again.

Costs (CPython 3.11, this 2-core machine, timeit min of 5 x 20k): ``observe`` of a
1006-byte order body (nested customer and address, 8 line items with tags: 84 values)
into a learner that has seen it, ~22 µs (~0.26 µs a value; its first sighting, creating
the positions, ~110 µs); ``schema()`` ~16 µs; ``to_dict()`` ~13 µs;
``QueryLearner.observe`` of four parameters (one repeated), ~5 µs. Meant off the hot
path (the events writer), not per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REQUIRED_RATIO = 0.95
""""Nearly all": a field seen in at least this share of its parent's observations."""
MAX_NAME_LENGTH = 64
"""Longer property or parameter names are never stored (they read as data, not names)."""
ENUM_MAX_LENGTH = 32
MAX_NODES = 256
MAX_PARAMS = 50
STATE_VERSION = 1
POSITION_BYTES = 1200
"""The most one counted position (with its stand-ins) takes in ``to_dict``'s JSON."""


def state_bound(max_nodes: int = MAX_NODES) -> int:
    """The most bytes ``orjson.dumps(ShapeLearner(max_nodes=…).to_dict())`` can take: what
    to size ``max_nodes`` by, from a memory budget per endpoint."""
    return max_nodes * POSITION_BYTES + 1024

# --- formats -----------------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    rf"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}")
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_URI = re.compile(
    rf"https?://{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?(?:/{_PCHAR}*)*"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_MAX_URI = 2048


def _valid_date(year: str, month: str, day: str) -> bool:
    y, m, d = int(year), int(month), int(day)
    if not 1 <= m <= 12 or d < 1:
        return False
    if m == 2:
        return d <= (29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28)
    return d <= (30 if m in (4, 6, 9, 11) else 31)


def _is_uuid(text: str) -> bool:
    return len(text) == 36 and _UUID.fullmatch(text) is not None


def _is_date(text: str) -> bool:
    match = _DATE.fullmatch(text)
    return match is not None and _valid_date(*match.groups())


def _is_date_time(text: str) -> bool:
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_hour, off_minute = match.groups()
    # a leap second (":60") is valid only at 23:59 UTC: never inferred, to stay a subset
    return (_valid_date(year, month, day) and int(hour) < 24 and int(minute) < 60
            and int(second) < 60
            and (off_hour is None or (int(off_hour) < 24 and int(off_minute) < 60)))


def _is_email(text: str) -> bool:
    local, _, _ = text.partition("@")
    return len(text) <= 254 and len(local) <= 64 and _EMAIL.fullmatch(text) is not None


def _is_uri(text: str) -> bool:
    return len(text) <= _MAX_URI and text[:1] == "h" and _URI.fullmatch(text) is not None


def _is_ipv4(text: str) -> bool:
    return len(text) <= 15 and _IPV4.fullmatch(text) is not None


FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "uuid": _is_uuid, "date-time": _is_date_time, "date": _is_date, "email": _is_email,
    "uri": _is_uri, "ipv4": _is_ipv4,
}
"""``FORMAT_CHECKS[f](text)`` is true exactly when ``infer_format(text) == f`` (the formats
are disjoint), so a learner that has a format checks only that one on later samples."""


def infer_format(text: str) -> str | None:
    """The JSON Schema format ``text`` certainly has ("uuid", "date-time", "date", "email",
    "uri" (http and https only), "ipv4"), or None. Each test is a strict subset of what
    jsonschema-rs accepts for the format, so a format learned from samples accepts them."""
    size = len(text)
    if size < 6:
        return None
    first = text[0]
    if size == 36 and text[8] == "-" and _UUID.fullmatch(text):
        return "uuid"
    if "0" <= first <= "9" and text[4:5] == "-":
        if size == 10 and _is_date(text):
            return "date"
        if size >= 20 and _is_date_time(text):
            return "date-time"
    if first == "h" and text.startswith(("http://", "https://")):
        return "uri" if _is_uri(text) else None  # before email: a URI may hold an "@"
    if "@" in text:
        return "email" if _is_email(text) else None
    if "0" <= first <= "9" and _is_ipv4(text):
        return "ipv4"
    return None


# --- privacy rules -----------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"[0-9]{4}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{8,}")
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.~-]{16,}")
_ENUM_SAFE = re.compile(r"[A-Za-z0-9_.:/+-]*")


def looks_like_value(text: str) -> bool:
    """Whether a string reads as data rather than a word: it has a format, four digits in a
    row (ids, phone and card numbers, years), is a hex run of 8+ with a digit, or a 16+
    character token-like run with letters and digits. Such strings are never enum
    candidates, and as object keys they make a map, never property names."""
    if _DIGIT_RUN.search(text) or infer_format(text) is not None:
        return True
    has_digit = any("0" <= c <= "9" for c in text)
    if not has_digit:
        return False
    if _HEX_RUN.fullmatch(text):
        return True
    return _TOKEN.fullmatch(text) is not None and any(c.isalpha() for c in text)


_SECRET_PARTS = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "credential",
    "authoriz", "cookie", "session", "signature", "private", "ssn", "iban", "cvv", "cvc",
    "passport", "email", "phone", "birth",
)
_SECRET_WORDS = frozenset({
    "key", "auth", "pass", "pwd", "pin", "otp", "totp", "mfa", "card", "pan", "cc", "ccv",
    "csc", "sig", "sid", "jwt", "bearer", "salt", "hash", "nonce", "tin", "sin", "tax",
    "account", "acct", "mail", "mobile", "tel", "address", "addr", "dob", "name",
    "username", "user", "login", "ip", "license", "licence", "routing",
})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def is_secret_name(name: str) -> bool:
    """Whether a field or parameter name looks secret or personal (``apiKey``,
    ``x_auth_token``, ``card_number``, ``ssn``, ``email``, ``last_name``…): substrings such
    as "password" or "token" anywhere, short words such as "key" or "pin" as a word of a
    camelCase, snake_case or kebab-case name. Under such a name (and everything nested in
    it) no enum is learned and string lengths are kept only to a power of two."""
    lowered = name.lower()
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def _enum_safe(text: str) -> bool:
    return (len(text) <= ENUM_MAX_LENGTH and _ENUM_SAFE.fullmatch(text) is not None
            and not looks_like_value(text))


def _storable_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and name.isprintable() and not looks_like_value(name)


def _coarse(length: int) -> tuple[int, int]:
    """A length as the powers of two around it: what a secret's length may tell."""
    if length == 0:
        return 0, 0
    return 1 << (length.bit_length() - 1), 1 << (length - 1).bit_length()


# --- shapes ------------------------------------------------------------------------------

_ANY = "any"


class _Node:
    """What was seen at one position of the JSON values. Each shape's fields are used only
    once its counter is non-zero; ``opaque`` positions are only counted."""

    __slots__ = (
        "arrays", "booleans", "count", "enum", "extra", "format", "integers", "items",
        "map", "max_items", "max_length", "min_items", "min_length", "nulls", "numbers",
        "objects", "opaque", "properties", "secret", "strings",
    )

    def __init__(self, secret: bool, opaque: bool) -> None:
        self.count = 0
        self.opaque = opaque
        self.secret = secret
        self.nulls = self.booleans = self.integers = self.numbers = 0
        self.strings = self.min_length = self.max_length = 0
        self.format: str | None = None  # None: no string yet; "": no common format
        self.enum: set[str] | None = None if secret else set()
        self.arrays = self.min_items = self.max_items = 0
        self.items: _Node | None = None
        self.objects = self.extra = 0
        self.properties: dict[str, _Node] = {}
        self.map: _Node | None = None

    def forget(self) -> None:
        """Become opaque (keeping the count): another learner saw values here that it did
        not describe, so nothing more can be said of them."""
        count, secret = self.count, self.secret
        self.__init__(secret, True)  # type: ignore[misc]
        self.count = count


class ShapeLearner:
    """One learned shape (a JSON value's summary), merged incrementally, bounded.

    Feed it parsed JSON values with ``observe``; ``schema`` says what they had in common.
    The module docstring states the rules and bounds."""

    def __init__(self, *, max_properties: int = 100, max_depth: int = 8, max_enum: int = 10,
                 enum_min_count: int = 20, max_nodes: int = MAX_NODES) -> None:
        self.max_properties = max_properties
        self.max_depth = max_depth
        self.max_enum = max_enum
        self.enum_min_count = enum_min_count
        self.max_nodes = max_nodes
        self._root = _Node(False, max_depth <= 0)
        self._nodes = 1  # positions counted in the budget (see _slot and _property)

    @property
    def count(self) -> int:
        """How many values were observed."""
        return self._root.count

    # -- learning --

    def observe(self, value: Any) -> None:
        """Add one parsed JSON value (dict, list, str, int, float, bool or None)."""
        self._see(self._root, value, 0)

    def _see(self, node: _Node, value: Any, depth: int) -> None:
        node.count += 1
        if node.opaque:
            return
        kind = type(value)
        if kind is str:
            length = len(value)
            if node.secret:
                low, high = _coarse(length)
            else:
                low = high = length
            if node.strings == 0:
                node.min_length, node.max_length = low, high
                node.format = infer_format(value) or ""
            else:
                if low < node.min_length:
                    node.min_length = low
                if high > node.max_length:
                    node.max_length = high
                if node.format and not FORMAT_CHECKS[node.format](value):
                    node.format = ""
            node.strings += 1
            enum = node.enum
            if enum is not None and value not in enum:
                if len(enum) >= self.max_enum or not _enum_safe(value):
                    node.enum = None
                else:
                    enum.add(value)
        elif kind is dict:
            node.objects += 1
            properties = node.properties
            for key, item in value.items():
                child = properties.get(key)
                if child is None:
                    child = self._property(node, key, depth)
                    if child is None:
                        continue
                self._see(child, item, depth + 1)
        elif kind is list:
            size = len(value)
            if node.arrays == 0:
                node.min_items = node.max_items = size
            elif size < node.min_items:
                node.min_items = size
            elif size > node.max_items:
                node.max_items = size
            node.arrays += 1
            if size:
                items = node.items
                if items is None:
                    items = node.items = self._slot(depth + 1, node.secret)
                for item in value:
                    self._see(items, item, depth + 1)
        elif kind is int:
            node.integers += 1
        elif kind is bool:
            node.booleans += 1
        elif kind is float:
            node.numbers += 1
        elif value is None:
            node.nulls += 1
        else:
            raise TypeError(f"not a parsed JSON value: {kind.__name__}")

    def _slot(self, depth: int, secret: bool) -> _Node:
        """A new ``items`` or ``map`` position. Past the depth or the node budget it is an
        opaque stand-in, not counted in the budget: a leaf, at most two per position."""
        if depth < self.max_depth and self._nodes < self.max_nodes:
            self._nodes += 1
            return _Node(secret, False)
        return _Node(secret, True)

    def _property(self, node: _Node, key: str, depth: int, weight: int = 1) -> _Node | None:
        """The position of a new key, or None when the key is only counted (``extra``,
        ``weight`` times). A property position always counts in the budget, even an opaque
        one (past the depth): an object may have many."""
        if not _storable_name(key):
            if node.map is None:
                node.map = self._slot(depth + 1, node.secret)
            return node.map
        if (node.extra or len(node.properties) >= self.max_properties
                or self._nodes >= self.max_nodes):
            # once a key went uncounted, no later key is listed: its earlier values may be
            # among the uncounted ones, and its schema would refuse them
            node.extra += weight
            return None
        self._nodes += 1
        child = node.properties[key] = _Node(node.secret or is_secret_name(key),
                                             depth + 1 >= self.max_depth)
        return child

    # -- combining --

    def merge(self, other: ShapeLearner) -> None:
        """Add what ``other`` learned (this learner's bounds apply): several gateways, or
        several periods, add up to one inventory."""
        self._merge(self._root, other._root, 0)
        self._recount()

    def _merge(self, node: _Node, other: _Node, depth: int) -> None:
        node.count += other.count
        if node.opaque:
            return
        if other.opaque and other.count:
            node.forget()
            return
        node.nulls += other.nulls
        node.booleans += other.booleans
        node.integers += other.integers
        node.numbers += other.numbers
        if other.strings:
            low, high = other.min_length, other.max_length
            if node.secret and not other.secret:
                low, high = _coarse(low)[0], _coarse(high)[1]
            if node.strings == 0:
                node.min_length, node.max_length = low, high
                node.format = other.format
            else:
                node.min_length = min(node.min_length, low)
                node.max_length = max(node.max_length, high)
                if node.format != other.format:
                    node.format = ""
            node.strings += other.strings
            if node.enum is not None:
                if other.enum is None:
                    node.enum = None
                else:
                    union = node.enum | other.enum
                    safe = all(_enum_safe(value) for value in other.enum - node.enum)
                    node.enum = union if safe and len(union) <= self.max_enum else None
        if other.arrays:
            if node.arrays == 0:
                node.min_items, node.max_items = other.min_items, other.max_items
            else:
                node.min_items = min(node.min_items, other.min_items)
                node.max_items = max(node.max_items, other.max_items)
            node.arrays += other.arrays
            if other.items is not None:
                if node.items is None:
                    node.items = self._slot(depth + 1, node.secret)
                self._merge(node.items, other.items, depth + 1)
        if other.objects:
            node.objects += other.objects
            if other.extra:  # what other did not list may be any of our properties
                for key, mine in node.properties.items():
                    if key not in other.properties:
                        mine.forget()
            for key, theirs in other.properties.items():
                mine = node.properties.get(key)
                if mine is None:
                    mine = self._property(node, key, depth, theirs.count)
                    if mine is None:
                        continue
                self._merge(mine, theirs, depth + 1)
            node.extra += other.extra
            if other.map is not None:
                if node.map is None:
                    node.map = self._slot(depth + 1, node.secret)
                self._merge(node.map, other.map, depth + 1)

    def _recount(self) -> None:
        """The budget in use after a merge (which may have made positions opaque): every
        position but the opaque ``items``/``map`` stand-ins."""
        nodes = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            nodes += 1
            stack.extend(node.properties.values())
            for child in (node.items, node.map):
                if child is not None:
                    if child.opaque:
                        continue
                    stack.append(child)
        self._nodes = nodes

    # -- output --

    def schema(self, *, required_ratio: float = REQUIRED_RATIO) -> dict:
        """The JSON Schema (2020-12, an OpenAPI 3.1 Schema Object) of what was seen; ``{}``
        before anything was. ``required_ratio=1.0`` lists as required only the properties
        present in every object, so the schema accepts every value observed."""
        return self._schema(self._root, required_ratio)

    def _schema(self, node: _Node, ratio: float) -> dict:
        if node.opaque or node.count == 0:
            return {}
        types: list[str] = []
        out: dict[str, Any] = {}
        if node.objects:
            types.append("object")
            properties = {key: self._schema(child, ratio)
                          for key, child in node.properties.items()}
            if properties:
                out["properties"] = properties
            floor = node.objects * ratio - 1e-9
            required = [key for key, child in node.properties.items() if child.count >= floor]
            if required:
                out["required"] = required
            if node.extra:
                out["additionalProperties"] = True
            elif node.map is not None:
                out["additionalProperties"] = self._schema(node.map, ratio)
        if node.arrays:
            types.append("array")
            if node.items is not None:
                out["items"] = self._schema(node.items, ratio)
            out["minItems"], out["maxItems"] = node.min_items, node.max_items
        if node.strings:
            types.append("string")
            only_strings = node.strings + node.nulls == node.count
            if (only_strings and node.enum is not None and not node.secret
                    and node.strings >= self.enum_min_count
                    and len(node.enum) <= self.max_enum):
                out["enum"] = [*sorted(node.enum), *([None] if node.nulls else [])]
            else:
                out["minLength"], out["maxLength"] = node.min_length, node.max_length
                if node.format:
                    out["format"] = node.format
        if node.numbers:
            types.append("number")
        elif node.integers:
            types.append("integer")
        if node.booleans:
            types.append("boolean")
        if node.nulls:
            types.append("null")
        return {"type": types[0] if len(types) == 1 else types, **out}

    # -- state --

    def to_dict(self) -> dict:
        """The learned state as plain JSON types (no values beyond enum candidates)."""
        return {
            "version": STATE_VERSION,
            "config": {"max_properties": self.max_properties, "max_depth": self.max_depth,
                       "max_enum": self.max_enum, "enum_min_count": self.enum_min_count,
                       "max_nodes": self.max_nodes},
            "root": _dump(self._root),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ShapeLearner:
        """A learner from ``to_dict``'s output; ValueError when it is not such a state.
        The bounds and privacy rules of the config apply again to the loaded state."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a learned shape state (version 1)")
        config = data.get("config")
        keys = ("max_properties", "max_depth", "max_enum", "enum_min_count", "max_nodes")
        if not isinstance(config, dict) or set(config) != set(keys):
            raise ValueError(f"learned shape config: expected the keys {', '.join(keys)}")
        learner = cls(**{key: _count(config, key) for key in keys})
        root = _load(data.get("root"))
        if learner._fits(root, 0, False):
            learner._root = root  # as it was: the budget went where the traffic sent it
        else:  # not written under this config: merged in, within its bounds
            learner._merge(learner._root, root, 0)
        learner._recount()
        if learner._nodes > learner.max_nodes:
            learner = cls(**{key: _count(config, key) for key in keys})
            learner._merge(learner._root, _load(data.get("root")), 0)
            learner._recount()
        return learner

    def _fits(self, node: _Node, depth: int, secret: bool) -> bool:
        """Whether a loaded tree keeps this learner's bounds; on the way, its positions get
        the privacy rules again (secret names, enum candidates)."""
        node.secret = secret
        if node.opaque:
            return True
        if depth >= self.max_depth:
            return False
        if secret:
            node.enum = None
            node.min_length, node.max_length = (_coarse(node.min_length)[0],
                                                _coarse(node.max_length)[1])
        elif node.enum is not None and (len(node.enum) > self.max_enum
                                        or not all(map(_enum_safe, node.enum))):
            node.enum = None
        if len(node.properties) > self.max_properties:
            return False
        for key, child in node.properties.items():
            if not _storable_name(key) or not self._fits(child, depth + 1,
                                                         secret or is_secret_name(key)):
                return False
        return all(self._fits(child, depth + 1, secret) for child in (node.items, node.map)
                   if child is not None)


def _count(data: dict, key: str) -> int:
    value = data.get(key, 0)
    if type(value) is not int or value < 0:
        raise ValueError(f"learned state: {key} must be a non-negative integer")
    return value


def _dump(node: _Node) -> dict:
    out: dict[str, Any] = {"count": node.count}
    if node.opaque:
        out[_ANY] = True
        return out
    for key in ("nulls", "booleans", "integers", "numbers"):
        if value := getattr(node, key):
            out[key] = value
    if node.strings:
        strings: dict[str, Any] = {"count": node.strings, "min_length": node.min_length,
                                   "max_length": node.max_length}
        if node.format:
            strings["format"] = node.format
        if node.enum is not None:
            strings["enum"] = sorted(node.enum)
        out["strings"] = strings
    if node.arrays:
        arrays: dict[str, Any] = {"count": node.arrays, "min_items": node.min_items,
                                  "max_items": node.max_items}
        if node.items is not None:
            arrays["items"] = _dump(node.items)
        out["arrays"] = arrays
    if node.objects:
        objects: dict[str, Any] = {"count": node.objects, "properties": {
            key: _dump(child) for key, child in node.properties.items()}}
        if node.extra:
            objects["extra"] = node.extra
        if node.map is not None:
            objects["map"] = _dump(node.map)
        out["objects"] = objects
    return out


def _load(data: Any) -> _Node:
    """A node tree as stored, unchecked against any bounds (``_merge`` applies them)."""
    if not isinstance(data, dict):
        raise ValueError("learned state: a position must be an object")
    node = _Node(False, data.get(_ANY) is True)
    node.count = _count(data, "count")
    if node.opaque:
        return node
    for key in ("nulls", "booleans", "integers", "numbers"):
        setattr(node, key, _count(data, key))
    if (strings := data.get("strings")) is not None:
        if not isinstance(strings, dict):
            raise ValueError("learned state: strings must be an object")
        node.strings = _count(strings, "count")
        node.min_length = _count(strings, "min_length")
        node.max_length = _count(strings, "max_length")
        node.format = strings.get("format", "")
        if node.format and node.format not in FORMAT_CHECKS:
            raise ValueError(f"learned state: unknown format {node.format!r}")
        enum = strings.get("enum")
        if enum is not None and not (isinstance(enum, list)
                                     and all(isinstance(value, str) for value in enum)):
            raise ValueError("learned state: enum must be a list of strings")
        node.enum = None if enum is None else set(enum)
    if (arrays := data.get("arrays")) is not None:
        if not isinstance(arrays, dict):
            raise ValueError("learned state: arrays must be an object")
        node.arrays = _count(arrays, "count")
        node.min_items = _count(arrays, "min_items")
        node.max_items = _count(arrays, "max_items")
        if "items" in arrays:
            node.items = _load(arrays["items"])
    if (objects := data.get("objects")) is not None:
        if not isinstance(objects, dict) or not isinstance(objects.get("properties"), dict):
            raise ValueError("learned state: objects must be an object with properties")
        node.objects = _count(objects, "count")
        node.extra = _count(objects, "extra")
        node.properties = {str(key): _load(child)
                           for key, child in objects["properties"].items()}
        if "map" in objects:
            node.map = _load(objects["map"])
    return node


# --- query parameters --------------------------------------------------------------------

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?(?:[eE][-+]?[0-9]{1,3})?")
_STRING = "string"
_TOP = frozenset({_STRING, _ANY})  # "any": values another learner did not describe
_KINDS = frozenset({"integer", "number", "boolean", *_TOP, *FORMAT_CHECKS})


def _kind(text: str) -> str:
    """A query value's shape: integer (at most 15 digits, no leading zero: "007" and long
    digit strings are codes and ids), number (finite, as the gateway reads it), boolean
    ("true"/"false", as the gateway reads them), a format, or string."""
    if _INTEGER.fullmatch(text):
        return "integer"
    if _NUMBER.fullmatch(text) and abs(float(text)) != float("inf"):
        return "number"
    if text in ("true", "false"):
        return "boolean"
    return infer_format(text) or _STRING


def _join(one: str | None, other: str | None) -> str | None:
    """The least shape of both: integer ⊂ number ⊂ string, other kinds ⊂ string ⊂ any."""
    if one is None or one == other:
        return other
    if other is None:
        return one
    if _ANY in (one, other):
        return _ANY
    if {one, other} == {"integer", "number"}:
        return "number"
    return _STRING


class _Param:
    __slots__ = ("count", "empty", "kind", "max_length", "max_values", "min_length",
                 "secret", "values")

    def __init__(self, secret: bool) -> None:
        self.secret = secret
        self.count = self.values = self.max_values = self.min_length = self.max_length = 0
        self.kind: str | None = None
        self.empty = False


class QueryLearner:
    """The query parameters of one endpoint: names and value shapes, never values."""

    def __init__(self, *, max_params: int = MAX_PARAMS) -> None:
        self.max_params = max_params
        self.count = 0
        self.extra = 0  # names given past max_params: counted, not stored
        self.unnamed = 0  # names that read as data (looks_like_value), or too long
        self._params: dict[str, _Param] = {}

    def observe(self, params: dict[str, list[str]]) -> None:
        """Add one call's query, as {name: [value, …]} (every value given for the name)."""
        self.count += 1
        for name, values in params.items():
            if not values:
                continue  # a parsed query has a value for each name it names
            param = self._params.get(name)
            if param is None:
                param = self._add(name)
                if param is None:
                    continue
            param.count += 1
            if len(values) > param.max_values:
                param.max_values = len(values)
            for value in values:
                self._see(param, value)

    def _add(self, name: str, weight: int = 1) -> _Param | None:
        """The state of a new name, or None when it is only counted (``weight`` times): a
        name that reads as data (``unnamed``), or past ``max_params`` (``extra``; from then
        on no new name is stored, as its earlier calls went uncounted)."""
        if not _storable_name(name):
            self.unnamed += weight
            return None
        if self.extra or len(self._params) >= self.max_params:
            self.extra += weight
            return None
        param = self._params[name] = _Param(is_secret_name(name))
        return param

    @staticmethod
    def _see(param: _Param, value: str) -> None:
        length = len(value)
        low, high = _coarse(length) if param.secret else (length, length)
        if param.values == 0:
            param.min_length, param.max_length = low, high
        else:
            param.min_length = min(param.min_length, low)
            param.max_length = max(param.max_length, high)
        param.values += 1
        if not value:
            param.empty = True
        if param.kind not in _TOP:
            param.kind = _join(param.kind, _kind(value))

    def merge(self, other: QueryLearner) -> None:
        """Add what ``other`` learned (this learner's bound on names applies)."""
        self.count += other.count
        self.unnamed += other.unnamed
        if other.extra:  # what other did not store may be any of our names
            for name, mine in self._params.items():
                if name not in other._params:
                    mine.kind = _ANY
        for name, theirs in other._params.items():
            mine = self._params.get(name)
            if mine is None:
                mine = self._add(name, theirs.count)
                if mine is None:
                    continue
            mine.count += theirs.count
            mine.max_values = max(mine.max_values, theirs.max_values)
            if theirs.values:
                low, high = theirs.min_length, theirs.max_length
                if mine.secret and not theirs.secret:
                    low, high = _coarse(low)[0], _coarse(high)[1]
                if mine.values == 0:
                    mine.min_length, mine.max_length = low, high
                else:
                    mine.min_length = min(mine.min_length, low)
                    mine.max_length = max(mine.max_length, high)
                mine.values += theirs.values
            mine.empty = mine.empty or theirs.empty
            mine.kind = _join(mine.kind, theirs.kind)
        self.extra += other.extra

    def parameters(self, *, required_ratio: float = REQUIRED_RATIO) -> list[dict]:
        """OpenAPI 3.1 Parameter Objects (``in: query``), in first-seen order: required
        when seen in at least ``required_ratio`` of the calls; a name ever given several
        times is an exploded array (the gateway refuses a repeated non-array parameter);
        ``allowEmptyValue`` when an empty value was seen. A name another learner may have
        left uncounted (merged past its cap) accepts anything: an array of anything."""
        floor = self.count * required_ratio - 1e-9
        out = []
        for name, param in self._params.items():
            schema = _param_schema(param)
            if param.kind == _ANY:  # given any number of times, with any values
                schema = {"type": "array", "items": {}}
            elif param.max_values > 1:
                schema = {"type": "array", "items": schema, "maxItems": param.max_values}
            parameter: dict[str, Any] = {"name": name, "in": "query",
                                         "required": param.count >= floor, "schema": schema}
            if param.empty:
                parameter["allowEmptyValue"] = True
            out.append(parameter)
        return out

    def to_dict(self) -> dict:
        """The learned state as plain JSON types: names, counts, kinds, lengths."""
        return {
            "version": STATE_VERSION,
            "config": {"max_params": self.max_params},
            "count": self.count,
            "extra": self.extra,
            "unnamed": self.unnamed,
            "params": {name: {"count": p.count, "values": p.values, "kind": p.kind,
                              "max_values": p.max_values, "min_length": p.min_length,
                              "max_length": p.max_length, "empty": p.empty}
                       for name, p in self._params.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> QueryLearner:
        """A learner from ``to_dict``'s output; ValueError when it is not such a state."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a learned query state (version 1)")
        config, params = data.get("config"), data.get("params")
        if not isinstance(config, dict) or not isinstance(params, dict):
            raise ValueError("learned query state: config and params must be objects")
        stored = cls()  # everything as stored; merge applies the bound and the rules
        stored.count, stored.unnamed = _count(data, "count"), _count(data, "unnamed")
        for name, fields in params.items():
            if not isinstance(fields, dict):
                raise ValueError("learned query state: a parameter must be an object")
            kind = fields.get("kind")
            if kind is not None and kind not in _KINDS:
                raise ValueError(f"learned query state: unknown kind {kind!r}")
            param = stored._params[str(name)] = _Param(False)
            param.kind, param.empty = kind, fields.get("empty") is True
            for key in ("count", "values", "max_values", "min_length", "max_length"):
                setattr(param, key, _count(fields, key))
        learner = cls(max_params=_count(config, "max_params"))
        learner.merge(stored)
        learner.extra += _count(data, "extra")  # after the names: the stored ones stay
        return learner


def _param_schema(param: _Param) -> dict:
    kind = param.kind
    if kind is None:
        return {}
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    schema: dict[str, Any] = {"type": "string", "minLength": param.min_length,
                              "maxLength": param.max_length}
    if kind != _STRING:
        schema["format"] = kind
    return schema
