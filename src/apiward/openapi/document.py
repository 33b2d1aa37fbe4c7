"""An OpenAPI document as loaded: the root file, every file it references, and $ref
resolution across them. Validated once at load (openapi-spec-validator).

Loading reads only local files: a ``$ref`` to an http(s) URL is refused (a gateway must
not start with a network fetch whose answer can change what it lets through). YAML is
normalised to what JSON could say (``200:`` keys become ``"200"``, dates ISO strings), so
every later stage sees one data model, and aliases that loop or expand beyond
``MAX_NODES`` are refused.

Validation has two stages. The structure of the document, with the files it references
inlined at their first use, is checked against openapi-spec-validator's JSON Schema for
its version (run with jsonschema-rs, which gives the error kinds needed for short
messages); if that passes, the library's semantic checks run (schemas, defaults,
duplicate operationIds, undeclared path parameters). Every problem is one line
``file: /json/pointer: reason``, located in the file that holds the offending node.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit
from urllib.request import url2pathname

import yaml

from apiward.errors import SpecError

MAX_NODES = 2_000_000
"""Nodes in one document once YAML aliases are expanded (a "billion laughs" guard)."""
MAX_PROBLEMS = 50
MAX_HOPS = 64
"""Longest ``$ref`` chain followed; cycles are refused at load, this is a second guard."""

_DATA_KEYS = frozenset({"example", "enum", "const"})
"""Keys whose values are data, where a ``$ref`` key is not a reference."""
_REF_SIBLINGS = frozenset({"$ref", "summary", "description"})


@dataclass
class SpecDocument:
    """``documents`` holds every file reachable by ``$ref`` (the root included), by file
    URI; ``version`` is "3.0" or "3.1"."""

    path: Path
    uri: str
    version: str
    root: dict
    documents: dict[str, Any] = field(default_factory=dict)
    _targets: dict[tuple[str, str], tuple[Any, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def resolve(self, node: Any, base: str) -> tuple[Any, str]:
        """Follow ``$ref`` chains from ``node`` (found in the document at ``base``) to the
        node they name; returns it with the URI of the document holding it.

        Each (base, ref) pair is looked up once and remembered, so compiling a large spec
        costs a dict lookup per reference. Siblings of a ``$ref`` are ignored (3.0 rules;
        a 3.1 schema with siblings should be read by its compiler, not flattened here)."""
        hops = 0
        while type(node) is dict:
            ref = node.get("$ref")
            if type(ref) is not str:
                break
            found = self._targets.get((base, ref))
            if found is None:
                found = self._targets[(base, ref)] = self.lookup(ref, base)
            node, base = found
            hops += 1
            if hops > MAX_HOPS:
                raise SpecError(f"{base}: $ref chain longer than {MAX_HOPS} (a cycle?)",
                                str(self.path))
        return node, base

    def lookup(self, ref: str, base: str) -> tuple[Any, str]:
        """The node one ``$ref`` names (not followed further) and its document's URI."""
        try:
            uri, pointer = split_ref(ref, base)
            document = self.documents.get(uri)
            if document is None:
                raise _RefProblem(f"{_file_name(uri)} was not loaded with the spec")
            return walk_pointer(document, pointer), uri
        except _RefProblem as err:
            raise SpecError(f"{base}: $ref {ref!r}: {err}", str(self.path)) from None


class _RefProblem(ValueError):
    """A reference that names nothing usable; the message says why."""


def split_ref(ref: str, base: str) -> tuple[str, str]:
    """``(document URI, JSON pointer)`` for a ``$ref`` found in the document at ``base``."""
    address, _, fragment = ref.partition("#")
    uri = base
    if address:
        parts = urlsplit(address)
        if parts.scheme in ("http", "https"):
            raise _RefProblem(f"{parts.scheme} references are not fetched; save the file "
                              "next to the spec and refer to it by a relative path")
        if (parts.scheme and parts.scheme != "file") or parts.netloc not in ("", "localhost"):
            raise _RefProblem("only relative file references (or file: URIs) are read")
        if parts.query:
            raise _RefProblem("a file reference cannot carry a query ('?')")
        uri = _file_uri(urljoin(base, address))
    pointer = unquote(fragment)
    if pointer and not pointer.startswith("/"):
        raise _RefProblem("plain-name fragments ($anchor) are not supported; use a JSON "
                          "pointer such as '#/components/schemas/Pet'")
    return uri, pointer


def walk_pointer(document: Any, pointer: str) -> Any:
    """The node a JSON pointer (RFC 6901, already percent-decoded) names."""
    node = document
    if not pointer:
        return node
    seen = ""
    for token in pointer[1:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if type(node) is dict:
            if key not in node:
                close = difflib.get_close_matches(key, [str(k) for k in node], 1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise _RefProblem(f"nothing at {pointer} (no {key!r} in {seen or '/'}){hint}")
            node = node[key]
        elif type(node) is list:
            if not key.isdigit() or (key != "0" and key[0] == "0") or int(key) >= len(node):
                raise _RefProblem(f"nothing at {pointer} ({seen or '/'} has "
                                  f"{len(node)} items)")
            node = node[int(key)]
        else:
            raise _RefProblem(f"nothing at {pointer} ({seen} is not an object)")
        seen += "/" + token
    return node


def pointer_of(tokens: tuple | list) -> str:
    """A JSON pointer from path tokens: ``("paths", "/pets")`` → ``/paths/~1pets``."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _tokens_of(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _file_uri(uri: str) -> str:
    parts = urlsplit(uri)
    return Path(os.path.normpath(url2pathname(parts.path))).as_uri()


def _file_name(uri: str) -> str:
    return url2pathname(urlsplit(uri).path)


def _is_data(key: str, value: Any) -> bool:
    """Where a ``$ref`` key is data, not a reference: examples, enums, extensions."""
    return key in _DATA_KEYS or key.startswith("x-") or (key == "examples" and
                                                         type(value) is list)


# --- loading -----------------------------------------------------------------------------


def load_spec(path: Path) -> SpecDocument:
    """Parse, load every referenced file, validate; SpecError with file, pointer, reason."""
    from apiward.config.loader import load_spec_document  # the loader imports the checks

    path = Path(path)
    root = load_spec_document(path)  # syntax and version problems, with file:line
    loader = _Loader(path)
    spec = loader.load(root)
    problems = validate(spec, loader.display)
    if problems:
        raise SpecError(_capped(problems), source=str(path))
    return spec


class _Loader:
    """Reads the root and every file its references reach; collects every problem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        absolute = Path(os.path.abspath(path))
        self.uri = absolute.as_uri()
        self.root_dir = absolute.parent
        self.problems: list[str] = []

    def display(self, uri: str) -> str:
        """A file as the user would name it: relative to where the root was named."""
        if uri == self.uri:
            return str(self.path)
        relative = os.path.relpath(_file_name(uri), self.root_dir)
        return os.path.normpath(os.path.join(self.path.parent, relative))

    def problem(self, uri: str, tokens: tuple | list, reason: str) -> None:
        self.problems.append(f"{self.display(uri)}: {pointer_of(tokens) or '/'}: {reason}")

    def load(self, root: dict) -> SpecDocument:
        documents: dict[str, Any] = {}
        sites: list[tuple[str, tuple, str, str, str]] = []  # where, tokens, ref, uri, pointer
        pending = [(self.uri, root, self.path.suffix.lower() != ".json")]
        failed: set[str] = set()
        while pending:
            uri, raw, is_yaml = pending.pop()
            scan = _Scan(convert=is_yaml)
            try:
                documents[uri] = scan.run(raw, [])[0]
            except _ScanError as err:
                self.problem(uri, err.tokens, str(err))
                continue
            for tokens, ref in scan.sites:
                try:
                    target, pointer = split_ref(ref, uri)
                except _RefProblem as err:
                    self.problem(uri, tokens, f"$ref {_short(ref, 60)!r}: {err}")
                    continue
                sites.append((uri, tokens, ref, target, pointer))
                if target in documents or target in failed or any(p[0] == target
                                                                  for p in pending):
                    continue
                parsed = self._read(target, uri, tokens, ref)
                if parsed is None:
                    failed.add(target)
                else:
                    pending.append((target, parsed, not target.endswith(".json")))
        version = "3.1" if str(root["openapi"]).startswith("3.1") else "3.0"
        spec = SpecDocument(self.path, self.uri, version, documents.get(self.uri, root),
                            documents)
        for uri, tokens, ref, target, pointer in sites:
            if target in documents:
                try:
                    walk_pointer(documents[target], pointer)
                except _RefProblem as err:
                    self.problem(uri, tokens, f"$ref {_short(ref, 60)!r}: {err}")
        if not self.problems:
            self._find_cycles(spec, sites)
        if self.problems:
            raise SpecError(_capped(self.problems), source=str(self.path))
        return spec

    def _read(self, uri: str, where: str, tokens: tuple, ref: str) -> Any | None:
        from apiward.config.loader import _FAST_LOADER, _read, _syntax_problem

        path = Path(_file_name(uri))
        if not path.is_file():
            why = "is a directory" if path.is_dir() else "does not exist"
            self.problem(where, tokens, f"$ref {_short(ref, 60)!r}: {self.display(uri)} {why}")
            return None
        try:
            text = _read(path, "referenced", SpecError)
            if path.suffix.lower() == ".json":
                return json.loads(text)
            return yaml.load(text, Loader=_FAST_LOADER)  # a safe loader
        except SpecError as err:
            self.problems += err.problems
        except (ValueError, RecursionError, yaml.YAMLError) as err:
            self.problems.append(_syntax_problem(self.display(uri), err, text))
        return None

    def _find_cycles(self, spec: SpecDocument, sites: list) -> None:
        """A chain of references that only ever names other references names nothing."""
        reported: set[frozenset] = set()
        for uri, tokens, ref, _, _ in sites:
            chain: list[tuple[str, str]] = []
            node, base = {"$ref": ref}, uri
            while type(node) is dict and type(node.get("$ref")) is str:
                target = split_ref(node["$ref"], base)
                if target in chain:
                    loop = frozenset(chain[chain.index(target):])
                    if loop not in reported:
                        reported.add(loop)
                        names = " -> ".join(self._name(t) for t in [*chain, target])
                        self.problem(uri, tokens, f"$ref cycle that never reaches a value: "
                                                  f"{names}")
                    break
                chain.append(target)
                node, base = spec.lookup(node["$ref"], base)

    def _name(self, target: tuple[str, str]) -> str:
        uri, pointer = target
        return (os.path.basename(self.display(uri)) if uri != self.uri else "") + "#" + pointer


class _ScanError(ValueError):
    def __init__(self, tokens: list, message: str) -> None:
        super().__init__(message)
        self.tokens = tuple(tokens)


class _Scan:
    """One walk over a parsed document: collects ``$ref`` sites and, for YAML, rebuilds it
    with JSON's data model. Shared (aliased) nodes are walked once; loops are refused."""

    def __init__(self, convert: bool) -> None:
        self.convert = convert
        self.sites: list[tuple[tuple, str]] = []
        self.memo: dict[int, tuple[Any, int]] = {}
        self.active: set[int] = set()  # the document is alive throughout: ids stay unique

    def run(self, node: Any, path: list, refs: bool = True) -> tuple[Any, int]:
        kind = type(node)
        if kind is not dict and kind is not list:
            if self.convert and isinstance(node, date | datetime | time):
                return node.isoformat(), 1
            if self.convert and isinstance(node, bytes):
                raise _ScanError(path, "binary (!!binary) values are not JSON; use a string")
            return node, 1
        key = id(node)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        if key in self.active:
            raise _ScanError(path, "a YAML alias refers to a node that contains it")
        self.active.add(key)
        size = 1
        try:
            if kind is dict:
                out: Any = {} if self.convert else node
                if refs and type(node.get("$ref")) is str:
                    self.sites.append((tuple(path), node["$ref"]))
                for name, value in node.items():
                    if type(name) is not str:
                        name = _json_key(name)
                    path.append(name)
                    new, count = self.run(value, path, refs and not _is_data(name, value))
                    path.pop()
                    size += count
                    if self.convert:
                        out[name] = new
            else:
                out = [] if self.convert else node
                for i, value in enumerate(node):
                    path.append(i)
                    new, count = self.run(value, path, refs)
                    path.pop()
                    size += count
                    if self.convert:
                        out.append(new)
        except RecursionError:
            raise _ScanError(path, "nested too deeply") from None
        finally:
            self.active.discard(key)
        if size > MAX_NODES:
            raise _ScanError(path, f"more than {MAX_NODES} nodes once YAML aliases are "
                                   "expanded")
        self.memo[key] = (out, size)
        return out, size


def _json_key(key: Any) -> str:
    """A YAML mapping key as JSON would have it: ``200`` → "200", ``true`` → "true"."""
    if isinstance(key, date | datetime):
        return key.isoformat()
    return json.dumps(key) if isinstance(key, bool | None) else str(key)


def _capped(problems: list[str]) -> list[str]:
    unique = list(dict.fromkeys(problems))
    if len(unique) <= MAX_PROBLEMS:
        return unique
    return [*unique[:MAX_PROBLEMS], f"... and {len(unique) - MAX_PROBLEMS} more problems"]


def _short(text: str, limit: int = 160) -> str:
    text = str(text).strip().split("\n", 1)[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- validation --------------------------------------------------------------------------


def validate(spec: SpecDocument, display: Any = None) -> list[str]:
    """Every problem of the loaded document, one ``file: /pointer: reason`` line each."""
    display = display or (lambda uri: _file_name(uri))
    view = _view(spec)
    lines = []
    for tokens, reason in _structure_problems(view, spec.version):
        uri, pointer = _locate(spec, view, tokens)
        lines.append(f"{display(uri)}: {pointer_of(pointer) or '/'}: {reason}")
    if lines:
        return list(dict.fromkeys(lines))
    for tokens, reason in _semantic_problems(spec, view):
        uri, pointer = _locate(spec, view, tokens)
        lines.append(f"{display(uri)}: {pointer_of(pointer) or '/'}: {reason}")
    return list(dict.fromkeys(lines))


def _view(spec: SpecDocument) -> dict:
    """The root with each reference into another file replaced by its target, at the
    target's first use, so that one validation pass sees every file in its context.
    References left in place are made absolute (their base changes)."""
    if len(spec.documents) == 1:
        return spec.root
    inlined: set[tuple[str, str]] = set()

    def copy(node: Any, base: str) -> Any:
        if type(node) is list:
            items = [copy(v, base) for v in node]
            return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
        if type(node) is not dict:
            return node
        ref = node.get("$ref")
        if type(ref) is str:
            target = split_ref(ref, base)
            if target[0] != spec.uri and target not in inlined and node.keys() <= _REF_SIBLINGS:
                inlined.add(target)
                return copy(spec.lookup(ref, base)[0], target[0])
            if base != spec.uri:
                return {**node, "$ref": target[0] + "#" + quote(target[1], safe="/~:@!$&'()*+,;=")}
            return node
        out = {k: v if _is_data(k, v) else copy(v, base) for k, v in node.items()}
        return out if any(out[k] is not node[k] for k in node) else node

    return copy(spec.root, spec.uri)


def _locate(spec: SpecDocument, view: dict, tokens: tuple | list) -> tuple[str, list]:
    """Where a path in the view really is: the file and pointer, references followed."""
    ends_on_ref = _is_ref(_at(view, tokens))
    node, uri, pointer = spec.root, spec.uri, []
    for i, token in enumerate(tokens):
        node, uri, pointer = _follow(spec, node, uri, pointer)
        if type(node) is dict:
            key = token if token in node else str(token)
            if key not in node:
                return uri, pointer + [str(t) for t in tokens[i:]]
        elif type(node) is list and isinstance(token, int) and 0 <= token < len(node):
            key = token
        else:
            return uri, pointer + [str(t) for t in tokens[i:]]
        node = node[key]
        pointer = [*pointer, key]
    if not ends_on_ref:
        node, uri, pointer = _follow(spec, node, uri, pointer)
    return uri, pointer


def _follow(spec: SpecDocument, node: Any, uri: str, pointer: list) -> tuple[Any, str, list]:
    hops = 0
    while _is_ref(node) and hops < MAX_HOPS:
        _, target_pointer = split_ref(node["$ref"], uri)
        node, uri = spec.lookup(node["$ref"], uri)
        pointer = _tokens_of(target_pointer)
        hops += 1
    return node, uri, pointer


def _is_ref(node: Any) -> bool:
    return type(node) is dict and type(node.get("$ref")) is str


def _at(node: Any, tokens: tuple | list) -> Any:
    for token in tokens:
        if type(node) is dict:
            node = node.get(token, node.get(str(token)))
        elif type(node) is list and isinstance(token, int) and token < len(node):
            node = node[token]
        else:
            return None
    return node


# --- stage 1: structure, against the version's JSON Schema -------------------------------


@cache
def _structure_validator(version: str) -> Any:
    import jsonschema_rs
    from openapi_spec_validator.schemas import schema_v30, schema_v31

    return jsonschema_rs.validator_for(dict(schema_v31 if version == "3.1" else schema_v30))


def _structure_problems(view: dict, version: str) -> Iterator[tuple[list, str]]:
    for error in _structure_validator(version).iter_errors(view):
        yield from _explain(error)


def _explain(error: Any) -> Iterator[tuple[list, str]]:
    """Short reasons for one jsonschema-rs error: for "none of the alternatives", the
    alternative the author most likely meant (never the bare Reference one)."""
    kind = error.kind
    name = type(kind).__name__
    path = list(error.instance_path)
    if name in ("OneOfNotValid", "AnyOf"):
        branches = [b for b in kind.context if not _only_wants_ref(b)] or kind.context
        merged = _merged_enum(branches)
        if merged is not None:
            yield merged
            return
        wanted = _merged_required(branches)
        if wanted is not None:
            yield path, wanted
            return
        best = min(branches, key=lambda b: (_leaf_count(b), 0))
        for sub in best:
            yield from _explain(sub)
        return
    yield path, _reason(name, kind, error)


def _reason(name: str, kind: Any, error: Any) -> str:
    if name == "Required":
        return f"missing required key {kind.property!r}"
    if name in ("AdditionalProperties", "UnevaluatedProperties"):
        keys = ", ".join(repr(k) for k in kind.unexpected)
        return f"unknown key{'s' if len(kind.unexpected) > 1 else ''} {keys}"
    if name == "Type":
        return f"expected {' or '.join(kind.types)}, got {_json_type(error.instance)}"
    if name == "Enum":
        return "must be one of " + ", ".join(json.dumps(o) for o in kind.options)
    if name == "Constant":
        return f"must be {json.dumps(kind.expected_value)}"
    if name == "Pattern":
        return f"{_short(json.dumps(error.instance), 40)} does not match {kind.pattern}"
    if name == "OneOfMultipleValid":
        return "matches more than one of the forms allowed here"
    if name == "Not":
        required = kind.schema.get("required") if isinstance(kind.schema, dict) else None
        if required and len(required) > 1:
            return " and ".join(repr(k) for k in required) + " cannot be used together"
        if required:
            return f"{required[0]!r} is not allowed here"
    return _short(error.message)


def _only_wants_ref(branch: list) -> bool:
    return len(branch) == 1 and type(branch[0].kind).__name__ == "Required" and \
        branch[0].kind.property == "$ref"


def _leaves(branch: list) -> Iterator[Any]:
    for error in branch:
        kind = error.kind
        if type(kind).__name__ in ("OneOfNotValid", "AnyOf"):
            for sub in kind.context:
                yield from _leaves(sub)
        else:
            yield error


def _leaf_count(branch: list) -> int:
    return sum(1 for _ in _leaves(branch))


def _merged_enum(branches: list) -> tuple[list, str] | None:
    """``in: qwery`` fails every ParameterLocation branch on its enum: one line, all values.
    Only each branch's own errors count: an enum deeper down is explained at its level."""
    options: list = []
    where = None
    for branch in branches:
        found = [e for e in branch if type(e.kind).__name__ in ("Enum", "Constant")]
        if not found:
            return None
        for error in found:
            path = list(error.instance_path)
            if where is not None and path != where:
                return None
            where = path
            kind = error.kind
            values = kind.options if type(kind).__name__ == "Enum" else [kind.expected_value]
            options += [v for v in values if v not in options]
    if where is None:
        return None
    return where, "must be one of " + ", ".join(json.dumps(o) for o in options)


def _merged_required(branches: list) -> str | None:
    """Each branch only misses one key (schema XOR content): name them together."""
    if len(branches) < 2:
        return None
    keys = []
    for branch in branches:
        if len(branch) != 1 or type(branch[0].kind).__name__ != "Required":
            return None
        keys.append(branch[0].kind.property)
    return "needs one of " + " or ".join(repr(k) for k in keys)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {_short(json.dumps(value), 20)}"
    if isinstance(value, str):
        return f"the string {_short(json.dumps(value), 40)}"
    return "an array" if isinstance(value, list) else "an object"


# --- stage 2: the library's semantic checks ----------------------------------------------


def _semantic_problems(spec: SpecDocument, view: dict) -> Iterator[tuple[list, str]]:
    from jsonschema_path import SchemaPath

    def read(uri: str) -> Any:
        document = spec.documents.get(_file_uri(uri))
        if document is None:
            raise ValueError(f"{uri} is not part of the spec")
        return document

    def refuse(uri: str) -> Any:
        raise ValueError(f"{uri}: only local files are read")

    handlers = {"file": read, **dict.fromkeys(("http", "https", "ftp", "data", ""), refuse)}
    # Each check re-resolves its node's path from the root through `referencing`; without
    # the library's resolved-path cache that is 180 ms of kratos' 190 ms, with it 105 ms.
    schema_path = SchemaPath.from_dict(view, base_uri=spec.uri, handlers=handlers,
                                       resolved_cache_maxsize=4096)
    validator = _located_validator(spec.version)(schema_path)
    try:
        for error in validator.root_validator(validator.schema_path):
            at = getattr(error, "apiward_at", ())
            yield [*at, *error.path], _short(error.message)
    except Exception as err:  # the library's own failure must not hide the spec's problem
        yield [], f"the spec validator stopped: {type(err).__name__}: {_short(str(err), 120)}"


@cache
def _located_validator(version: str) -> Any:
    """The library's validator whose keyword checks tag each error with the path of the
    node they were checking (its errors carry only a path relative to that node)."""
    from jsonschema_path import SchemaPath
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator
    from openapi_spec_validator.validation.keywords import ValueValidator

    base = OpenAPIV31SpecValidator if version == "3.1" else OpenAPIV30SpecValidator

    def located(cls: type) -> type:
        extra = ("default",) if issubclass(cls, ValueValidator) else ()

        class Located(cls):  # type: ignore[misc, valid-type]
            def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
                where = next((a for a in args if isinstance(a, SchemaPath)), None)
                for error in super().__call__(*args, **kwargs):
                    if where is not None and not hasattr(error, "apiward_at"):
                        error.apiward_at = (*where.parts, *extra)
                    yield error

        Located.__name__ = cls.__name__
        return Located

    keywords = {name: located(cls) for name, cls in base.keyword_validators.items()}
    return type(f"Located{base.__name__}", (base,), {"keyword_validators": keywords})


# --- servers -----------------------------------------------------------------------------


MAX_SERVER_VARIANTS = 64


def servers_base_paths(node: dict | SpecDocument,
                       inherited: list[str] | None = None) -> list[str]:
    """The path part of each ``servers[].url`` of ``node`` (the root, a path item or an
    operation), without a trailing ``/``; ``inherited`` (or ``[""]``) when it has none.

    Server variables take their ``default`` and every ``enum`` value (up to
    ``MAX_SERVER_VARIANTS`` combinations, then defaults only): each is a base the API may
    be served under. Absolute URLs give their path; relative ones (``/v1``, ``v1``,
    ``./v1``) are read from the root. A variable the server does not define is a
    ValueError."""
    if isinstance(node, SpecDocument):
        node = node.root
    servers = node.get("servers") if isinstance(node, dict) else None
    if not servers:
        return list(inherited) if inherited is not None else [""]
    bases: list[str] = []
    for server in servers:
        if not isinstance(server, dict):
            continue
        for url in _server_urls(str(server.get("url", "")), server.get("variables") or {}):
            base = _url_path(url)
            if base not in bases:
                bases.append(base)
    return bases or [""]


def _server_urls(url: str, variables: dict) -> list[str]:
    pieces = url.replace("}", "{").split("{")  # literal, name, literal, name, ...
    names = pieces[1::2]
    choices = []
    for name in names:
        variable = variables.get(name)
        if not isinstance(variable, dict) or "default" not in variable:
            raise ValueError(f"server url {url!r} uses {{{name}}}, which its variables "
                             "do not define (with a default)")
        values = [str(variable["default"])]
        values += [str(v) for v in variable.get("enum") or () if str(v) not in values]
        choices.append(values)
    combos = 1
    for values in choices:
        combos *= len(values)
    if combos > MAX_SERVER_VARIANTS:
        choices = [values[:1] for values in choices]
    out = []
    for chosen in product(*choices):
        text = pieces[0]
        for value, literal in zip(chosen, pieces[2::2], strict=True):
            text += value + literal
        out.append(text)
    return out


def _url_path(url: str) -> str:
    if "://" in url or url.startswith("//"):
        path = urlsplit(url).path
    else:
        path = url.split("#", 1)[0].split("?", 1)[0]
    segments = [s for s in path.split("/") if s and s not in (".", "..")]
    return "".join("/" + s for s in segments)
