"""OpenAPI Schema Objects → compiled jsonschema-rs validators.

OpenAPI 3.1 schemas are JSON Schema 2020-12; 3.0 schemas are a dialect of draft 4 that
is not valid draft 4 (``nullable``, boolean ``exclusiveMinimum``), so both are translated
to 2020-12 and compiled with the same validator. The translation also carries what JSON
Schema leaves to the application: ``readOnly`` properties refused in requests,
``writeOnly`` ones in responses, and the ranges of ``int32``/``int64``.

Decisions (each one visible in a test):

- ``nullable: true`` (3.0) adds ``"null"`` to ``type`` and ``None`` to ``enum``. Where
  something else would still refuse null (``allOf``/``anyOf``/``oneOf``/``not``/``$ref``),
  those keywords move under ``"if": {"type": "null"}, "else": {…}``: null passes, any
  other value meets them unchanged and their own errors are reported (an ``anyOf`` with
  a null branch would report only "anyOf"). 3.0 has no ``if``, so nothing is displaced.
- ``$ref`` in 3.0: its siblings are ignored, as the 3.0 specification says, except
  ``nullable``, ``readOnly`` and ``writeOnly``, whose intent is unambiguous and which
  authors commonly put there. In 3.1 siblings apply (2020-12).
- ``readOnly`` (request) / ``writeOnly`` (response) apply to properties: a property whose
  schema is flagged (itself, next to its ``$ref``, through a chain of ``$ref``, or in an
  ``allOf`` member, across files) is refused when present and dropped from ``required``.
  The refusal is added as one more ``allOf`` member of the object, so the property's own
  schema, which a parameter may ``$ref``, stays as written. A flag reached only through
  ``anyOf``/``oneOf`` is not followed (which branch applies is known only per value), and
  ``required`` names a flagged property only when declared in the same object.
- ``format``: date-time, date, email, uuid, uri, ipv4, ipv6 enforced by jsonschema-rs;
  ``byte`` checked as base64 (RFC 4648 §4, padded); ``int32``/``int64`` on integers become
  ``minimum``/``maximum`` (never loosening bounds the schema has); other formats
  (``binary``, ``float``, ``double``, ``password``…) are annotations.
- Annotations (``example``, ``examples``, ``default``, ``title``, ``description``,
  ``xml``, ``externalDocs``, ``deprecated``, ``discriminator``, ``x-*``) are dropped: they
  validate nothing (``oneOf`` does the discriminator's work), and YAML data in them need
  not be JSON.
- ``$ref``s are rewritten to one registry resource per referenced schema
  (``urn:apiward:…``), found through ``SpecDocument.documents``, so a node compiles
  wherever it sits, other files resolve, and nothing is ever fetched (a reference outside
  the loaded files is a compile error). Anchors (``#name``) are not resolved.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urldefrag, urljoin

import jsonschema_rs
import orjson

from apiward.pipeline.verdict import Violation

if TYPE_CHECKING:  # only its shape is used; the loader imports half the package
    from apiward.openapi.document import SpecDocument

Direction = Literal["request", "response"]

_FLAG = {"request": "readOnly", "response": "writeOnly"}
_REFUSED_MARK = "apiward:refused:"  # in the $comment of the refusal, read back for the rule
_DROP = frozenset({"example", "examples", "default", "title", "description", "xml",
                   "externalDocs", "deprecated", "discriminator", "$comment"})
_ONE = frozenset({"items", "additionalProperties", "not", "contains", "propertyNames", "if",
                  "then", "else", "additionalItems", "unevaluatedItems",
                  "unevaluatedProperties", "contentSchema"})
_MANY = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions",
                  "dependentSchemas"})
_REFUSE_NULL = ("allOf", "anyOf", "oneOf", "not", "$ref")
_REF_SIBLINGS_30 = frozenset({"$ref", "nullable", "readOnly", "writeOnly"})
_RANGES = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}
_NULL = {"type": "null"}


def to_json_schema(schema: Any, version: str, direction: Direction) -> Any:
    """One schema tree translated to JSON Schema 2020-12 for ``direction``; the input is
    not changed and ``$ref``s are left as written (not followed, so a readOnly flag only
    reachable through one is not seen: ``SchemaCompiler`` sees it)."""
    return _Translator(version, direction).schema(schema, "")


# --- translation ------------------------------------------------------------------------

Lookup = Callable[[str], "tuple[Any, str] | None"]


class _Translator:
    """Translates schema nodes once each (memo by identity: shared and recursive nodes
    are fine); with ``lookup``, rewrites each ``$ref`` to a resource of its own and
    queues the referenced node."""

    def __init__(self, version: str, direction: Direction, lookup: Lookup | None = None,
                 prefix: str = "urn:apiward:") -> None:
        self.v30 = version.startswith("3.0")
        self.flag = _FLAG[direction]
        self.lookup = lookup
        self.prefix = prefix
        self.memo: dict[int, Any] = {}
        self.alive: list[Any] = []  # the translated originals, so their ids stay theirs
        self.targets: dict[str, str] = {}  # absolute reference → resource URI
        self.resources: dict[str, Any] = {}  # resource URI → translated schema
        self.pending: list[tuple[str, Any, str]] = []

    def schema(self, node: Any, base: str) -> Any:
        if not isinstance(node, dict):
            return node  # a boolean schema (3.1), or something the spec validator refused
        found = self.memo.get(id(node))
        if found is not None:
            return found
        if "$id" in node and not self.v30 and isinstance(node["$id"], str):
            base = urljoin(base, node["$id"])
        out: dict[str, Any] = {}
        result: dict[str, Any] = out
        self.memo[id(node)] = result
        self.alive.append(node)
        nullable = self.v30 and node.get("nullable") is True
        items = node.items()
        if self.v30 and "$ref" in node:
            items = [(k, v) for k, v in items if k in _REF_SIBLINGS_30]
        for key, value in items:
            key = str(key)
            if key in _DROP or key.startswith("x-"):
                continue
            if key in _ONE:
                out[key] = self.schema(value, base)
            elif key in _MANY and isinstance(value, list):
                out[key] = [self.schema(sub, base) for sub in value]
            elif key in _MAP and isinstance(value, dict):
                out[key] = {str(name): self.schema(sub, base) for name, sub in value.items()}
            elif key == "$ref" and isinstance(value, str):
                out[key] = self.reference(value, base)
            elif key == "dependencies" and isinstance(value, dict):
                out[key] = {str(k): self.schema(v, base) if isinstance(v, dict) else v
                            for k, v in value.items()}
            elif key in ("nullable", "exclusiveMinimum", "exclusiveMaximum") and self.v30:
                continue
            else:
                out[key] = _plain(value)
        if self.v30 and "$ref" not in node:
            self.bounds_30(node, out)
        self.ranges(out)
        props = node.get("properties")
        if isinstance(props, dict) and "properties" in out:
            self.refuse_flagged(props, base, out)
        if isinstance(node.get("discriminator"), dict):
            self.discriminate(node, base, out)
        if nullable:
            self.allow_null(out)
        return result

    def discriminate(self, node: dict, base: str, out: dict) -> None:
        """``oneOf``/``anyOf`` with a ``discriminator``: the property's value picks the one
        schema the value must match (OpenAPI's meaning), so alternatives that overlap do
        not make a valid value "match more than one". Values: the explicit ``mapping``,
        then each ``$ref`` alternative's schema name; any other value is refused."""
        spec = node["discriminator"]
        prop = spec.get("propertyName")
        group = "oneOf" if "oneOf" in out else "anyOf" if "anyOf" in out else None
        if not isinstance(prop, str) or group is None or not isinstance(node[group], list):
            return
        chosen: dict[str, str] = {}
        for value, target in (spec.get("mapping") or {}).items():
            if isinstance(target, str):
                ref = target if "#" in target or "/" in target else f"#/components/schemas/{target}"
                chosen[str(value)] = ref
        mapped = set(chosen.values())
        for alternative in node[group]:
            ref = alternative.get("$ref") if isinstance(alternative, dict) else None
            if not isinstance(ref, str):
                return  # an inline alternative has no name: keep plain oneOf/anyOf
            if ref not in mapped:
                chosen.setdefault(ref.rsplit("/", 1)[-1], ref)
        if not chosen:
            return
        del out[group]
        branches = [{"if": {"required": [prop], "properties": {prop: {"const": value}}},
                     "then": {"$ref": self.reference(ref, base)}}
                    for value, ref in chosen.items()]
        out["required"] = [*out.get("required", []), *([] if prop in out.get("required", [])
                                                         else [prop])]
        out["allOf"] = [*out.get("allOf", []),
                        {"properties": {prop: {"enum": list(chosen)}}}, *branches]

    def reference(self, ref: str, base: str) -> str:
        if self.lookup is None:
            return ref
        target = urljoin(base, ref)
        uri = self.targets.get(target)
        if uri is None:
            found = self.lookup(target)
            if found is None:
                return target  # left to the registry, which refuses it at compile time
            uri = self.targets[target] = f"{self.prefix}{len(self.targets)}"
            self.pending.append((uri, *found))
        return uri

    def drain(self) -> None:
        """Translate every node queued by a ``$ref``, and those they reference."""
        while self.pending:
            uri, node, base = self.pending.pop()
            self.resources[uri] = self.schema(node, base)

    @staticmethod
    def bounds_30(node: dict, out: dict) -> None:
        """3.0's boolean exclusiveMinimum/Maximum → 2020-12's numeric ones."""
        for bound, exclusive in (("minimum", "exclusiveMinimum"),
                                 ("maximum", "exclusiveMaximum")):
            flag = node.get(exclusive)
            if isinstance(flag, bool):
                if flag and bound in out:
                    out[exclusive] = out.pop(bound)
            elif exclusive in node:  # already numeric: a 3.1 habit in a 3.0 file
                out[exclusive] = node[exclusive]

    @staticmethod
    def ranges(out: dict) -> None:
        limits = _RANGES.get(out.get("format"))  # type: ignore[arg-type]
        declared = out.get("type")
        if limits is None or not (declared == "integer" or
                                  (isinstance(declared, list) and "integer" in declared)):
            return
        low, high = limits
        minimum, maximum = out.get("minimum"), out.get("maximum")
        out["minimum"] = low if not isinstance(minimum, int | float) else max(minimum, low)
        out["maximum"] = high if not isinstance(maximum, int | float) else min(maximum, high)

    def refuse_flagged(self, props: dict, base: str, out: dict) -> None:
        flagged = [str(name) for name, sub in props.items() if self.flagged(sub, base, set())]
        if not flagged:
            return
        required = out.get("required")
        if isinstance(required, list):
            out["required"] = [name for name in required if name not in flagged]
        refusal = {"not": {"$comment": _REFUSED_MARK + self.flag}}
        extra = {"properties": {name: refusal for name in flagged}}
        out["allOf"] = [*out.get("allOf", ()), extra]

    def flagged(self, node: Any, base: str, seen: set[int]) -> bool:
        """Whether a property schema carries the direction's flag, looking through
        ``$ref`` chains and ``allOf`` members (not anyOf/oneOf: per value only)."""
        if not isinstance(node, dict) or id(node) in seen:
            return False
        seen.add(id(node))
        if node.get(self.flag) is True:
            return True
        ref = node.get("$ref")
        if isinstance(ref, str) and self.lookup is not None:
            found = self.lookup(urljoin(base, ref))
            if found is not None and self.flagged(found[0], found[1], seen):
                return True
        members = node.get("allOf")
        if isinstance(members, list) and not (self.v30 and "$ref" in node):
            return any(self.flagged(sub, base, seen) for sub in members)
        return False

    @staticmethod
    def allow_null(out: dict) -> None:
        declared = out.get("type")
        if isinstance(declared, str) and declared != "null":
            out["type"] = [declared, "null"]
        elif isinstance(declared, list) and "null" not in declared:
            out["type"] = [*declared, "null"]
        enum = out.get("enum")
        if isinstance(enum, list) and None not in enum:
            out["enum"] = [*enum, None]
        moved = {key: out.pop(key) for key in _REFUSE_NULL if key in out}
        if moved:
            out["if"] = _NULL
            out["else"] = moved


def _plain(value: Any) -> Any:
    """Data (enum, const…) as JSON: YAML may have produced dates or non-string keys."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return value


# --- compiling --------------------------------------------------------------------------

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FORMATS = {"byte": lambda value: _BASE64.fullmatch(value) is not None}
_NODE_URI = "urn:apiward:node"


def _no_fetch(uri: str) -> Any:
    raise ValueError(f"reference outside the loaded spec files: {uri}")


class SchemaValidator:
    """A compiled schema. ``is_valid`` is jsonschema-rs's own method (one call into
    Rust, no Python frame): a 10-field JSON body with formats, a nested object and an
    array checks in about 1 µs (timeit: see the test module). ``violations`` is the slow
    path, for values ``is_valid`` refused."""

    __slots__ = ("_validator", "is_valid")

    def __init__(self, validator: Any) -> None:
        self._validator = validator
        self.is_valid: Callable[[Any], bool] = validator.is_valid

    def violations(self, value: Any, location: str, cap: int) -> list[Violation]:
        """At most ``cap`` violations, located under ``location`` (``body``,
        ``query.limit``…), none quoting more than ~40 characters of the value."""
        found: list[Violation] = []
        for error in self._validator.iter_errors(value):
            for violation in _describe(error, location):
                found.append(violation)
                if len(found) >= cap:
                    return found
        return found


class SchemaCompiler:
    """Compiles the schema nodes of one loaded spec, per direction. Every file of
    ``spec.documents`` is scanned once (``components/schemas``, every ``schema``, every
    ``$ref`` reached from them), translated and put in one jsonschema-rs registry; then
    each ``validator`` call compiles one node against it, cached by node."""

    def __init__(self, spec: SpecDocument) -> None:
        self.spec = spec
        self._translators: dict[str, _Translator] = {}
        self._registries: dict[str, tuple[int, jsonschema_rs.Registry]] = {}
        self._cache: dict[tuple[int, str, str], tuple[Any, SchemaValidator]] = {}

    def validator(self, schema: Any, base_uri: str,
                  direction: Direction = "request") -> SchemaValidator:
        """The validator for ``schema``, a node found in the document at ``base_uri``.
        Raises ValueError (jsonschema_rs.ValidationError) if it cannot compile."""
        key = (id(schema), base_uri, direction)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is schema:
            return cached[1]
        translator = self._translator(direction)
        translated = translator.schema(schema, base_uri)
        translator.drain()
        compiled = SchemaValidator(jsonschema_rs.Draft202012Validator(
            translated,
            formats=_FORMATS,
            validate_formats=True,
            ignore_unknown_formats=True,
            registry=self._registry(direction),
            base_uri=_NODE_URI,
            retriever=_no_fetch,
        ))
        self._cache[key] = (schema, compiled)
        return compiled

    def json_schema(self, schema: Any, base_uri: str, direction: Direction = "request") -> Any:
        """The translated form of a node (its ``$ref``s as registry URIs)."""
        translator = self._translator(direction)
        translated = translator.schema(schema, base_uri)
        translator.drain()
        return translated

    def _translator(self, direction: Direction) -> _Translator:
        translator = self._translators.get(direction)
        if translator is None:
            translator = _Translator(self.spec.version, direction, self._lookup,
                                     f"urn:apiward:{direction}:")
            _Scan(self.spec, translator).run()
            self._translators[direction] = translator
        return translator

    def _registry(self, direction: Direction) -> jsonschema_rs.Registry:
        """Built once per direction; again only if a node compiled later reached a
        schema the scan did not (a node the caller made up, say)."""
        resources = self._translators[direction].resources
        built = self._registries.get(direction)
        if built is None or built[0] != len(resources):
            registry = jsonschema_rs.Registry(list(resources.items()),
                                              draft=jsonschema_rs.Draft202012,
                                              retriever=_no_fetch)
            built = self._registries[direction] = (len(resources), registry)
        return built[1]

    def _lookup(self, reference: str) -> tuple[Any, str] | None:
        uri, fragment = urldefrag(reference)
        node = self.spec.documents.get(uri)
        if node is None:
            return None
        if fragment:
            if not fragment.startswith("/"):
                return None  # an anchor: not resolved here
            for token in unquote(fragment)[1:].split("/"):
                token = token.replace("~1", "/").replace("~0", "~")
                if isinstance(node, dict):
                    if token not in node:
                        return None
                    node = node[token]
                elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                    node = node[int(token)]
                else:
                    return None
        return node, uri


class _Scan:
    """Finds the schemas of an OpenAPI document (``components/schemas`` and the value of
    every ``schema``), following ``$ref`` into other files, and translates them."""

    def __init__(self, spec: SpecDocument, translator: _Translator) -> None:
        self.spec = spec
        self.translator = translator
        self.seen: set[int] = set()

    def run(self) -> None:
        self.walk(self.spec.root, self.spec.uri)
        self.translator.drain()

    def walk(self, node: Any, base: str) -> None:
        if not isinstance(node, dict | list) or id(node) in self.seen:
            return
        self.seen.add(id(node))
        if isinstance(node, list):
            for item in node:
                self.walk(item, base)
            return
        for key, value in node.items():
            key = str(key)  # YAML status codes come as ints
            if key in ("example", "examples") or key.startswith("x-"):
                continue
            if key == "schema":
                self.translator.schema(value, base)
            elif key == "schemas" and isinstance(value, dict) and node is \
                    self.spec.root.get("components"):
                for sub in value.values():
                    self.translator.schema(sub, base)
            elif key == "$ref" and isinstance(value, str):
                found = self.translator.lookup(urljoin(base, value))  # type: ignore[misc]
                if found is not None:
                    self.walk(*found)
            else:
                self.walk(value, base)


# --- violations -------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_QUOTE = 40
_MAX_MESSAGE = 200
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


def _locate(location: str, path: Any) -> str:
    parts = [location]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{_quote(step)}]")
    return "".join(parts)


def _quote(value: Any) -> str:
    """A value as short JSON: strings cut to ~40 characters, containers only named."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value.bit_length() <= 128 else "a very long integer"
    if not isinstance(value, str):
        return orjson.dumps(value).decode()
    text = orjson.dumps(value[:_MAX_QUOTE]).decode()
    if len(value) > _MAX_QUOTE or len(text) > _MAX_QUOTE + 20:
        text = text[:min(len(text) - 1, _MAX_QUOTE + 20)] + '…"'
    return text


def _describe(error: Any, location: str) -> Iterator[Violation]:
    kind = error.kind
    rule = kind.name
    details = kind.as_dict()
    where = _locate(location, error.instance_path)
    value = error.instance
    if rule in ("required", "additionalProperties", "unevaluatedProperties"):
        names = [details["property"]] if rule == "required" else details["unexpected"]
        text = "is required" if rule == "required" else "is not allowed here"
        for name in names:
            yield Violation(_locate(where, [str(name)]), rule, text)
        return
    if rule == "not":
        comment = details.get("schema")
        if isinstance(comment, dict) and str(comment.get("$comment", "")).startswith(
                _REFUSED_MARK):
            flag = comment["$comment"][len(_REFUSED_MARK):]
            text = ("is read-only: it may not be sent" if flag == "readOnly" else
                    "is write-only: it may not be returned")
            yield Violation(where, flag, text)
            return
    yield Violation(where, rule, _message(rule, details, value)[:_MAX_MESSAGE])


def _message(rule: str, details: dict, value: Any) -> str:
    quoted = _quote(value)
    limit = details.get("limit")
    match rule:
        case "type":
            expected = " or ".join(details.get("types") or ())
            return f"expected {expected}, got {_JSON_TYPES.get(type(value), 'a value')}"
        case "minimum":
            return f"{quoted} is less than the minimum of {limit}"
        case "maximum":
            return f"{quoted} is greater than the maximum of {limit}"
        case "exclusiveMinimum":
            return f"{quoted} must be greater than {limit}"
        case "exclusiveMaximum":
            return f"{quoted} must be less than {limit}"
        case "multipleOf":
            return f"{quoted} is not a multiple of {details.get('multiple_of')}"
        case "minLength":
            return f"is shorter than {limit} characters"
        case "maxLength":
            return f"is longer than {limit} characters"
        case "minItems":
            return f"has fewer than {limit} items"
        case "maxItems":
            return f"has more than {limit} items"
        case "minProperties":
            return f"has fewer than {limit} properties"
        case "maxProperties":
            return f"has more than {limit} properties"
        case "uniqueItems":
            return "has repeated items"
        case "format":
            return f"{quoted} is not a valid {details.get('format')}"
        case "pattern":
            return f"{quoted} does not match the pattern {_quote(details.get('pattern'))}"
        case "enum":
            options = ", ".join(_quote(option) for option in details.get("options") or ())
            return f"{quoted} is not one of {options}"
        case "const":
            return f"{quoted} is not {_quote(details.get('expected_value'))}"
        case "oneOf":
            branches = details.get("context") or ()
            if any(not errors for errors in branches):
                return "matches more than one of the alternatives"
            return f"matches none of the {len(branches)} alternatives"
        case "anyOf":
            return f"matches none of the {len(details.get('context') or ())} alternatives"
        case "falseSchema":
            return "is not allowed here"
        case "not":
            return "matches a schema it must not match"
        case "contains":
            return "has no item of the required kind"
        case "propertyNames":
            return "has a property name that is not allowed"
    return f"does not satisfy {rule}"
