"""Warnings about an OpenAPI document that loads fine but protects its API less than it
could: ambiguous paths, operations left without security, readOnly fields a request must
send, and request inputs of unbounded size (a DoS lever: the bigger the input a schema
admits, the more a flood of calls costs the API to parse and validate).

Only what a client sends is judged: parameters and request bodies, never responses. Each
schema is reported once, at its own location: a shared component at its component pointer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from apiward.openapi.document import SpecDocument, split_ref
from apiward.openapi.limits import METHODS, Where, escape, show, string_max_chars
from apiward.openapi.matcher import overlaps, shadowed

SIZED = frozenset(("string", "array", "object"))


@dataclass(frozen=True, slots=True)
class LintWarning:
    """``pointer``: JSON pointer into the root document (``file#pointer`` for another
    file); ``code``: stable, for filtering; ``message``: what is wrong and what to do."""

    pointer: str
    code: str
    message: str


def lint(spec: SpecDocument) -> list[LintWarning]:
    """Every warning for ``spec``: paths first, then each operation's in document order."""
    paths = spec.root.get("paths") or {}
    found = [*_path_warnings(list(paths)), *_security_warnings(spec)]
    found += _RequestSchemas(spec).walk()
    return found


def _path_warnings(templates: list[str]) -> Iterator[LintWarning]:
    for first, second in overlaps(templates):
        yield LintWarning(f"/paths/{escape(second)}", "ambiguous_paths",
                          f"can match the same request paths as {first}, which is tried "
                          "first: make the two templates distinct")
    for literal, template in shadowed(templates):
        yield LintWarning(f"/paths/{escape(literal)}", "shadowed_path",
                          f"also matches {template}; the concrete path wins, so {template} "
                          "never sees this value (informational)")


def _security_warnings(spec: SpecDocument) -> Iterator[LintWarning]:
    """An operation without ``security`` of its own, in an API that has some. An explicit
    ``security: []`` says "public on purpose" and is not reported."""
    root = spec.root
    if root.get("security"):
        return  # every operation without its own inherits it
    if not (root.get("components") or {}).get("securitySchemes"):
        return
    for template, _item, _base, method, operation in _operations(spec):
        if "security" not in operation:
            yield LintWarning(f"/paths/{escape(template)}/{method}", "no_security",
                              "no security requirement, though the API defines security "
                              "schemes: add security (or security: [] if public on purpose)")


def _operations(spec: SpecDocument) -> Iterator[tuple[str, dict, str, str, dict]]:
    """(template, path item, its base URI, method, operation) in document order."""
    for template, item in (spec.root.get("paths") or {}).items():
        item, base = spec.resolve(item, spec.uri)
        if not isinstance(item, dict):
            continue
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                yield template, item, base, method, operation


class _RequestSchemas:
    """One walk over every schema a request's parameters and body are checked against,
    through $ref (each target once) and composition; cycle-safe."""

    def __init__(self, spec: SpecDocument) -> None:
        self.spec = spec
        self.v31 = spec.version == "3.1"
        self.found: list[LintWarning] = []
        self.reported: set[tuple[str, str]] = set()
        self.visited: set[tuple[int, frozenset[str]]] = set()

    def walk(self) -> list[LintWarning]:
        spec = self.spec
        done_items: set[int] = set()
        for template, item, base, method, operation in _operations(spec):
            at = f"/paths/{escape(template)}"
            if id(item) not in done_items:
                done_items.add(id(item))
                self._parameters(item, base, (spec.uri, at))
            self._parameters(operation, base, (spec.uri, f"{at}/{method}"))
            body = operation.get("requestBody")
            if body is not None:
                where = self._where(body, base, (spec.uri, f"{at}/{method}/requestBody"))
                body, body_base = spec.resolve(body, base)
                self._content(body, body_base, where)
        return self.found

    def _parameters(self, owner: dict, base: str, where: Where) -> None:
        uri, pointer = where
        for i, param in enumerate(owner.get("parameters") or ()):
            at = self._where(param, base, (uri, f"{pointer}/parameters/{i}"))
            param, param_base = self.spec.resolve(param, base)
            if not isinstance(param, dict):
                continue
            if "schema" in param:
                self._schema(param["schema"], param_base, (at[0], f"{at[1]}/schema"))
            self._content(param, param_base, at)

    def _content(self, owner: dict, base: str, where: Where) -> None:
        uri, pointer = where
        for media_type, media in (owner.get("content") or {}).items():
            at = self._where(media, base, (uri, f"{pointer}/content/{escape(media_type)}"))
            media, media_base = self.spec.resolve(media or {}, base)
            if isinstance(media, dict) and "schema" in media:
                self._schema(media["schema"], media_base, (at[0], f"{at[1]}/schema"))

    def _where(self, node: Any, base: str, where: Where) -> Where:
        """Where a possibly-$ref node really lives: its first $ref's target."""
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            return split_ref(node["$ref"], base)
        return where

    def _schema(self, node: Any, base: str, where: Where,
                bounded: frozenset[str] = frozenset()) -> None:
        """``bounded``: the kinds (string, array, object) a schema applying to the same
        value already bounds (an allOf sibling, the parent of a oneOf), not reported."""
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):  # one hop at a time: each schema at its own pointer
            target, target_base = self.spec.lookup(ref, base)
            if not self.v31:  # 3.0: a $ref's siblings are ignored
                self._schema(target, target_base, split_ref(ref, base), bounded)
                return
            self._schema(target, target_base, split_ref(ref, base),
                         bounded | _bounds(node))
        key = (id(node), bounded)
        if key in self.visited:
            return
        self.visited.add(key)
        self._check_size(node, where, bounded)
        self._check_read_only(node, base, where)
        uri, pointer = where
        together = bounded | _bounds(node)
        for member in node.get("allOf") or ():
            together |= _bounds(self.spec.resolve(member, base)[0])
        for keyword in ("allOf", "anyOf", "oneOf"):
            for i, member in enumerate(node.get(keyword) or ()):
                self._schema(member, base, (uri, f"{pointer}/{keyword}/{i}"), together)
        for keyword in ("then", "else"):
            self._schema(node.get(keyword), base, (uri, f"{pointer}/{keyword}"), together)
        for keyword in ("properties", "patternProperties", "dependentSchemas"):
            for name, sub in (node.get(keyword) or {}).items():
                self._schema(sub, base, (uri, f"{pointer}/{keyword}/{escape(name)}"),
                             together if keyword == "dependentSchemas" else frozenset())
        for keyword in ("additionalProperties", "items", "unevaluatedProperties",
                        "unevaluatedItems"):
            self._schema(node.get(keyword), base, (uri, f"{pointer}/{keyword}"))
        for i, sub in enumerate(node.get("prefixItems") or ()):
            self._schema(sub, base, (uri, f"{pointer}/prefixItems/{i}"))

    def _check_size(self, node: dict, where: Where, bounded: frozenset[str]) -> None:
        if _untyped(node) and not bounded.issuperset(SIZED):
            self._warn(where, "unbounded_value", "accepts any JSON value, of any size: give "
                       "it a type (and maxLength, maxItems or maxProperties)")
            return
        kinds = _kinds(node) - bounded - _bounds(node)
        if "string" in kinds:
            self._warn(where, "unbounded_string", "string without maxLength: add maxLength "
                       "(or an enum, or a bounded format such as date or uuid)")
        if "array" in kinds:
            self._warn(where, "unbounded_array", "array without maxItems: add maxItems")
        if "object" in kinds:
            self._warn(where, "unbounded_object", "object open to any number of properties: "
                       "set additionalProperties: false, or maxProperties")

    def _check_read_only(self, node: dict, base: str, where: Where) -> None:
        """A required property that is readOnly. apiward refuses a readOnly property in a
        request and drops it from a ``required`` of the same object (OpenAPI 3.0's rule);
        a requirement made by another allOf member it cannot drop."""
        properties, required = self._merged(node, base, where, set())
        for name, requirer in required.items():
            found = properties.get(name)
            if found is None or not self._read_only(found[0], found[1]):
                continue
            at, owner = found[2], found[3]
            if requirer != owner:
                message = (f"{name!r} is readOnly, and required by another schema of this "
                           "allOf: a request may not send it yet must, so none can pass; "
                           "list it in required next to its declaration, or split request "
                           "and response schemas")
            elif self.v31:
                message = (f"{name!r} is readOnly and required: OpenAPI 3.1 (unlike 3.0) "
                           "keeps required in requests, so strictly no request is valid; "
                           "apiward applies 3.0's rule (requests leave it out): split "
                           "request and response schemas to say so")
            else:
                message = (f"{name!r} is readOnly and required: OpenAPI 3.0 applies required "
                           "to responses only, so requests must leave it out (apiward "
                           "refuses it if sent); if clients are to send it, drop readOnly")
            self._warn(at, "readonly_required", message)

    def _merged(self, node: dict, base: str, where: Where, seen: set[int],
                ) -> tuple[dict[str, tuple[Any, str, Where, int]], dict[str, int]]:
        """The properties and required names of a schema and its allOf members (and 3.1
        $ref), as one object: each property with where it is and the id of the schema
        declaring it, each required name with the id of the schema requiring it."""
        properties: dict[str, tuple[Any, str, Where, int]] = {}
        required: dict[str, int] = {}
        if id(node) in seen:
            return properties, required
        seen.add(id(node))
        uri, pointer = where
        members: list[tuple[Any, str, Where]] = [
            (member, base, (uri, f"{pointer}/allOf/{i}"))
            for i, member in enumerate(node.get("allOf") or ())]
        ref = node.get("$ref")
        if isinstance(ref, str) and self.v31:
            members.append((node, base, where))
        for member, member_base, member_where in members:
            member_where = self._where(member, member_base, member_where)
            resolved, resolved_base = self.spec.resolve(member, member_base)
            if isinstance(resolved, dict) and resolved is not node:
                more, names = self._merged(resolved, resolved_base, member_where, seen)
                properties.update(more)
                required.update(names)
        for name, schema in (node.get("properties") or {}).items():
            properties[name] = (schema, base, (uri, f"{pointer}/properties/{escape(name)}"),
                                id(node))
        for name in node.get("required") or ():
            if isinstance(name, str):
                required[name] = id(node)
        return properties, required

    def _read_only(self, schema: Any, base: str) -> bool:
        if not isinstance(schema, dict):
            return False
        if schema.get("readOnly") is True:
            return True
        resolved = self.spec.resolve(schema, base)[0] if "$ref" in schema else schema
        if isinstance(resolved, dict) and resolved.get("readOnly") is True:
            return True
        return any(isinstance(m, dict) and self.spec.resolve(m, base)[0].get("readOnly") is True
                   for m in resolved.get("allOf") or ()) if isinstance(resolved, dict) else False

    def _warn(self, where: Where, code: str, message: str) -> None:
        pointer = show(self.spec, where)
        if (pointer, code) not in self.reported:
            self.reported.add((pointer, code))
            self.found.append(LintWarning(pointer, code, message))


def _kinds(node: dict) -> set[str]:
    """The sized kinds a schema admits: its ``type``, or what its keywords imply. An enum
    or const admits only its values, which are bounded."""
    if "enum" in node or "const" in node:
        return set()
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared} & SIZED
    if isinstance(declared, list):
        return set(declared) & SIZED
    implied = set()
    if any(k in node for k in ("properties", "additionalProperties", "patternProperties")):
        implied.add("object")
    if "items" in node or "prefixItems" in node:
        implied.add("array")
    if any(k in node for k in ("maxLength", "minLength", "pattern")):
        implied.add("string")
    return implied


_SHAPING = frozenset((
    "type", "enum", "const", "$ref", "allOf", "anyOf", "oneOf", "not", "if", "format",
    "properties", "additionalProperties", "patternProperties", "unevaluatedProperties",
    "propertyNames", "maxProperties", "items", "prefixItems", "unevaluatedItems", "contains",
    "maxItems", "maxLength", "minLength", "pattern"))


def _untyped(node: dict) -> bool:
    """No keyword narrows what the schema admits: any JSON value passes."""
    return _SHAPING.isdisjoint(node)


def _bounds(node: Any) -> frozenset[str]:
    """The sized kinds a schema's own keywords bound (whatever its type)."""
    if not isinstance(node, dict):
        return frozenset()
    if "enum" in node or "const" in node:
        return SIZED
    found = set()
    if string_max_chars(node) is not None:
        found.add("string")
    if "maxItems" in node or node.get("items") is False:
        found.add("array")
    if "maxProperties" in node or node.get("unevaluatedProperties") is False or (
            node.get("additionalProperties") is False and not node.get("patternProperties")):
        found.add("object")
    return frozenset(found)
