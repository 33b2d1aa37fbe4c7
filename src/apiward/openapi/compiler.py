"""One OpenAPI document compiled for the request path: path matcher → path item →
operation, each operation with its parameter rules, body rules, security requirements
and validators ready. Built once at load; the checks only call into it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiward.errors import SpecError
from apiward.openapi import UNBOUNDED
from apiward.openapi.document import SpecDocument, load_spec, servers_base_paths
from apiward.openapi.limits import derive_limits
from apiward.openapi.matcher import PathMatcher
from apiward.openapi.media import MediaMatcher, is_json, parse_media_type
from apiward.openapi.params import ParameterSet, compile_parameter
from apiward.openapi.schemas import SchemaCompiler, SchemaValidator
from apiward.openapi.security import SecurityRequirement, compile_security
from apiward.pipeline.verdict import Verdict, deny

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DEFAULT_JSON_DEPTH = 64
MATCH_CACHE = 4096
MATCH_CACHE_BYTES = 512


@dataclass(slots=True)
class MediaRule:
    """One ``requestBody.content`` entry: how to read the body and what it must match."""

    key: str
    kind: str  # "json", "form", "multipart" or "opaque" (only the type and size are judged)
    schema: Any
    validator: SchemaValidator | None
    encoding: dict[str, Any] | None = None  # form fields' style/explode
    base: str | None = None  # the URI of the document holding ``schema``
    resolve: Callable[[Any], Any] | None = None  # $ref → node, in the schema's document
    form: dict[str, Any] | None = None  # form bodies: every field's schema, flattened


@dataclass(slots=True)
class BodyRule:
    required: bool
    media: MediaMatcher
    contents: dict[str, MediaRule]
    accepted: str  # for the 415 detail


@dataclass(slots=True)
class Operation:
    method: str
    template: str
    pointer: str
    operation_id: str | None
    parameters: ParameterSet
    validators: dict[int, tuple[SchemaValidator, str]]  # by id() of the ParameterRule,
    # with the location errors are reported at ("query.limit")
    body: BodyRule | None
    security: tuple[SecurityRequirement, ...] | None  # alternatives; None: no requirement
    body_limit: int = UNBOUNDED
    json_depth: int = DEFAULT_JSON_DEPTH
    responses: dict[str, Any] = field(default_factory=dict)
    base: str = ""  # the URI of the document the operation is written in
    # For an operation whose head verdict depends on its path and query alone (no header
    # or cookie parameters, no security, no body): targets already found valid, so a hot
    # one is judged once. None for every other operation.
    known_good: set[str] | None = None
    tags: tuple[str, ...] = ()
    # The operation's ``x-`` extensions (``x-apiward-cost``, ``x-apiward-priority``).
    extensions: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PathEntry:
    """One path template and its operations, by upper-case method."""

    template: str
    operations: dict[str, Operation]
    not_allowed: Verdict


class CompiledSpec:
    """``match(path)`` → (PathEntry, raw path parameters) or None."""

    def __init__(self, spec: SpecDocument, undeclared_query: bool = False) -> None:
        self.spec = spec
        self.undeclared_query = undeclared_query
        self.warnings: list[str] = []  # what compiling noticed but could work around
        self.schemas = SchemaCompiler(spec)
        root = spec.root
        schemes = _components(spec, "securitySchemes")
        default_security = root.get("security")
        entries: dict[str, PathEntry] = {}
        bases = servers_base_paths(root)
        template_bases = {}
        for template, item in (root.get("paths") or {}).items():
            item, base = spec.resolve(item, spec.uri)
            entries[template] = self._path_entry(template, item, base, schemes, default_security)
            if item.get("servers"):
                template_bases[template] = servers_base_paths(item, bases)
        self.entries = entries
        self.matcher = PathMatcher(entries, bases, template_bases or None)
        self._matches: dict[str, tuple[PathEntry, dict[str, str]]] = {}

    def match(self, path: str) -> tuple[PathEntry, dict[str, str]] | None:
        """The path item for ``path`` and its raw parameters (a shared dict: read only).

        Hot paths are matched once: found matches of short paths are remembered, at most
        MATCH_CACHE of them, so a flood of distinct paths only empties the cache."""
        found = self._matches.get(path)
        if found is None:
            found = self.matcher.match(path)
            if found is not None and len(path) <= MATCH_CACHE_BYTES:
                if len(self._matches) >= MATCH_CACHE:
                    self._matches.clear()
                self._matches[path] = found
        return found

    @property
    def operations(self) -> list[Operation]:
        return [op for entry in self.entries.values() for op in entry.operations.values()]

    def _path_entry(self, template: str, item: dict, base: str, schemes: dict,
                    default_security: Any) -> PathEntry:
        shared = item.get("parameters") or []
        operations = {}
        for method in METHODS:
            raw = item.get(method)
            if raw is None:
                continue
            pointer = f"/paths/{_escape(template)}/{method}"
            operations[method.upper()] = self._operation(
                method.upper(), template, pointer, raw, shared, base, schemes, default_security)
        if "GET" in operations and "HEAD" not in operations:
            operations["HEAD"] = operations["GET"]  # HEAD is GET without the body (RFC 9110)
        allow = ", ".join(operations)
        refusal = deny(405, "method_not_allowed",
                       f"this endpoint accepts only {allow}" if allow else
                       "this endpoint declares no operations",
                       headers=(("Allow", allow),))
        return PathEntry(template, operations, refusal)

    def _operation(self, method: str, template: str, pointer: str, raw: dict, shared: list,
                   base: str, schemes: dict, default_security: Any) -> Operation:
        spec = self.spec
        rules = []
        for param in [*shared, *(raw.get("parameters") or [])]:  # the operation's own win
            param, param_base = spec.resolve(param, base)
            rules.append(compile_parameter(param, param_base, spec))
        parameters = ParameterSet(rules, self.undeclared_query)
        validators = {}
        for rule in parameters.rules:
            if rule.schema is not None:
                validator = self.schemas.validator(rule.schema, rule.base, "request")
                validators[id(rule)] = (validator, rule.where)
        body = None
        body_limit, json_depth = UNBOUNDED, DEFAULT_JSON_DEPTH
        if raw.get("requestBody") is not None:
            body = self._body(*spec.resolve(raw["requestBody"], base))
            body_limit, json_depth = self._limits(body)
        security = compile_security(raw.get("security", default_security), schemes, pointer,
                                    self.warnings.append)
        pure = (body is None and security is None
                and all(rule.location in ("path", "query") for rule in parameters.rules))
        return Operation(
            method=method,
            template=template,
            pointer=pointer,
            operation_id=raw.get("operationId"),
            parameters=parameters,
            validators=validators,
            body=body,
            security=security,
            known_good=set() if pure else None,
            responses=raw.get("responses") or {},
            base=base,
            body_limit=body_limit,
            json_depth=json_depth,
            tags=tuple(str(tag) for tag in raw.get("tags") or () if isinstance(tag, str)),
            extensions={k: v for k, v in raw.items() if isinstance(k, str) and k.startswith("x-")},
        )

    def _body(self, raw: dict, base: str) -> BodyRule:
        contents = {}
        for key, media in (raw.get("content") or {}).items():
            media, media_base = self.spec.resolve(media or {}, base)
            parsed = parse_media_type(key)
            kind = "opaque"
            if parsed is not None:
                name = parsed[0]
                if is_json(name):
                    kind = "json"
                elif name == "application/x-www-form-urlencoded":
                    kind = "form"
                elif name == "multipart/form-data":
                    kind = "multipart"
            schema = media.get("schema")
            validator = resolve = form = None
            if schema is not None and kind != "opaque":
                validator = self.schemas.validator(schema, media_base, "request")
                schema, media_base = self.spec.resolve(schema, media_base)
                resolve = functools.partial(_resolved, self.spec, media_base)
                if kind in ("form", "multipart"):  # fields typed by every alternative's
                    form = {"type": "object",  # properties (oneOf, allOf, $ref)
                            "properties": self._form_fields(schema, media_base, set())}
            contents[key] = MediaRule(key, kind, schema, validator, media.get("encoding"),
                                      media_base, resolve, form)
        return BodyRule(bool(raw.get("required", False)), MediaMatcher(list(contents)),
                        contents, ", ".join(contents) or "none")


    def _form_fields(self, node: Any, base: str, seen: set[int]) -> dict[str, Any]:
        """The properties a form body's fields may be, through ``$ref`` and every
        ``allOf``/``oneOf``/``anyOf`` branch (the first declaration of a name wins): form
        fields arrive as text, and this says which to turn into numbers or booleans."""
        node, base = self.spec.resolve(node, base)
        if not isinstance(node, dict) or id(node) in seen:
            return {}
        seen.add(id(node))
        fields: dict[str, Any] = {}
        for name, sub in (node.get("properties") or {}).items():
            fields.setdefault(name, self.spec.resolve(sub, base)[0])
        for group in ("allOf", "oneOf", "anyOf"):
            for sub in node.get(group) or ():
                for name, value in self._form_fields(sub, base, seen).items():
                    fields.setdefault(name, value)
        return fields

    def _limits(self, body: BodyRule) -> tuple[int, int]:
        """The tightest body size and JSON depth every declared media type allows: where
        each schema bounds everything, a larger body cannot be valid (limits.py)."""
        sizes, depths = [], []
        for rule in body.contents.values():
            if rule.schema is None or rule.base is None:
                return UNBOUNDED, DEFAULT_JSON_DEPTH
            found = derive_limits(rule.schema, rule.base, self.spec, rule.kind)
            if found.body_bytes is None:
                return UNBOUNDED, DEFAULT_JSON_DEPTH
            sizes.append(found.body_bytes)
            depths.append(found.json_depth or 0)
        if not sizes:
            return UNBOUNDED, DEFAULT_JSON_DEPTH
        return max(sizes), min(DEFAULT_JSON_DEPTH, max(depths)) or DEFAULT_JSON_DEPTH


def compile_spec(path: Path, undeclared_query: bool = False) -> CompiledSpec:
    """Load, validate and compile the document at ``path``; SpecError on any problem.
    ``undeclared_query``: refuse query parameters the operation does not declare."""
    spec = load_spec(path)
    try:
        return CompiledSpec(spec, undeclared_query)
    except SpecError:
        raise
    except (ValueError, TypeError, KeyError) as err:  # what validation let through
        raise SpecError(f"{path}: cannot compile: {err}", str(path)) from None
    except RecursionError:  # a long $ref chain: each link is short enough to validate
        raise SpecError(f"{path}: cannot compile: schemas nest too deeply through $ref",
                        str(path)) from None


def _components(spec: SpecDocument, kind: str) -> dict:
    found = (spec.root.get("components") or {}).get(kind) or {}
    return {name: spec.resolve(node, spec.uri)[0] for name, node in found.items()}


def _resolved(spec: SpecDocument, base: str, node: Any) -> Any:
    return spec.resolve(node, base)[0]


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")
