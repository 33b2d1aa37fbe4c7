"""Load apiward.yaml (or the CLI flags standing for one) into a validated ``Config``.

Every problem becomes one line, ``path.to.key (file:line): message``; all of them are raised
together as one ``ConfigError``, and nothing else escapes ``load_config``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from apiward.config.models import Config
from apiward.errors import ConfigError, SpecError

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PARSE_ERRORS = (yaml.YAMLError, ValueError, RecursionError)  # ValueError: bad dates, JSON
_NETWORK = 'expected an IP network like "10.0.0.0/8" or "2001:db8::/32"'
_PLAIN = {
    "missing": "required key is missing",
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "expected a whole number"),
    **dict.fromkeys(("float_type", "float_parsing"), "expected a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "expected true or false"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "expected a mapping"),
    **dict.fromkeys(("ip_v4_network", "ip_v6_network"), _NETWORK),
    "string_type": "expected a string",
    "list_type": "expected a list",
    "path_type": "expected a file path",
}
_READ_ERRORS = {
    FileNotFoundError: "no such file; check the path to the {0} file",
    IsADirectoryError: "is a directory; give the path of the {0} file",
    PermissionError: "permission denied; make the file readable",
}
_FLAGS = {"listen": "--listen", "workers": "--workers", "apis[0].upstream.url": "--upstream",
          "apis[0].spec": "--spec", "apis[0].mode": "--mode"}


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the line of every mapping key and sequence item."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[int, Any] = {}  # id(dict) -> {key: line}; id(list) -> [line, ...]
        self.duplicates: list[tuple[dict, Any, int, int]] = []  # (mapping, key, first, again)

    def _map(self, node: yaml.MappingNode):
        data: dict = {}
        yield data
        own = [key for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"]
        data.update(self.construct_mapping(node))  # merges "<<", refuses unhashable keys
        lines = {self.construct_object(k): k.start_mark.line + 1 for k, _ in node.value}
        self.lines[id(data)] = lines
        seen: dict = {}
        for key_node in own:
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append((data, key, seen[key], line))
            seen[key] = line

    def _seq(self, node: yaml.SequenceNode):
        data: list = []
        yield data
        data.extend(self.construct_sequence(node))
        self.lines[id(data)] = [item.start_mark.line + 1 for item in node.value]


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader._map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader._seq)


def load_config(path: str | os.PathLike) -> Config:
    path = Path(path)
    name = str(path)
    text = _read(path, "config", ConfigError)
    try:
        loader = _LineLoader(text)  # the reader refuses control characters right here
        data = loader.get_single_data()
    except _PARSE_ERRORS as err:
        raise ConfigError(_syntax_problem(name, err, text), source=name) from None
    if not isinstance(data, dict):
        what = "has no settings" if data is None else f"holds {_shown(data)} at the top level"
        raise ConfigError(f"{name}: the file {what}; it must be a mapping of settings "
                          "(key: value lines) with at least an `apis:` list", source=name)

    problems: list[tuple[int, str]] = []  # (line, text), sorted by line at the end
    for mapping, key, first, again in loader.duplicates:
        where = _dotted([*_find(data, mapping), _piece(mapping, key)])
        problems.append((again, f"{where} ({name}:{again}): duplicate key, first on line {first}"))
    base = Path(os.path.abspath(path)).parent
    apis = data.get("apis")
    for i, api in enumerate(apis if isinstance(apis, list) else []):
        spec = api.get("spec") if isinstance(api, dict) else None
        if isinstance(spec, str):
            try:
                load_spec_document(_resolve(base, spec))
            except SpecError as err:
                pieces, line = _locate(data, ("apis", i, "spec"), loader.lines)
                where = f"{_dotted(pieces)} ({name}:{line})"
                problems += [(line, f"{where}: {problem}") for problem in err.problems]
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        for error in err.errors():
            pieces, line = _locate(data, error["loc"], loader.lines)
            problems.append((line, f"{_dotted(pieces)} ({name}:{line}): {_message(error)}"))
    if problems:
        texts = dict.fromkeys(text for _, text in sorted(problems, key=lambda p: p[0]))
        raise ConfigError(list(texts), source=name)
    return _resolve_paths(config, base)


def _resolve_paths(model: BaseModel, base: Path) -> Any:
    """Every ``Path`` anywhere in the config (spec, events.file, tls.*, a check's files)
    made absolute against ``base``, the config file's directory: a new Path setting needs
    nothing here. The key store is a URL or a path, so it is resolved by name."""
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path):
            updates[name] = _resolve(base, value)
        elif isinstance(value, BaseModel):
            updates[name] = _resolve_paths(value, base)
        elif isinstance(value, list):
            updates[name] = [_resolve_paths(v, base) if isinstance(v, BaseModel) else v
                             for v in value]
        elif isinstance(value, dict):
            updates[name] = {k: _resolve_paths(v, base) if isinstance(v, BaseModel) else v
                             for k, v in value.items()}
        elif name == "key_store" and isinstance(value, str) and "://" not in value:
            updates[name] = str(_resolve(base, value))
    return model.model_copy(update=updates) if updates else model


def config_from_flags(*, listen: str, upstream: str, spec: str | None = None,
                      mode: str = "block", workers: int = 1) -> Config:
    api: dict[str, Any] = {"name": "default", "upstream": {"url": upstream}, "mode": mode}
    if spec is not None:
        api["spec"] = spec
    data = {"listen": listen, "workers": workers, "apis": [api]}
    problems: list[str] = []
    if spec is not None:
        try:
            load_spec_document(Path(spec))
        except SpecError as err:
            problems += [f"--spec: {problem}" for problem in err.problems]
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        for error in err.errors():
            where = _dotted(_locate(data, error["loc"], {})[0])
            problems.append(f"{_FLAGS.get(where, where)}: {_message(error)}")
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)), source="command line")
    return _resolve_paths(config, Path.cwd())


def load_spec_document(path: Path) -> dict:
    """Parse an OpenAPI 3.0/3.1 document (JSON for ``*.json``, else YAML); no validation yet."""
    path, line = Path(path), 1
    text = _read(path, "OpenAPI", SpecError)
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            loader = _FAST_LOADER(text)
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
            keys = node.value if isinstance(node, yaml.MappingNode) else []
            line = next((k.start_mark.line + 1 for k, _ in keys if k.value == "openapi"), 1)
    except _PARSE_ERRORS as err:
        raise SpecError(_syntax_problem(str(path), err, text), str(path)) from None
    version = doc.get("openapi") if isinstance(doc, dict) else None
    if isinstance(version, str) and version.startswith(("3.0", "3.1")):
        return doc
    if not isinstance(doc, dict):
        why = f"the top level is {_shown(doc)}, not a mapping"
    elif version is None:
        why = 'no "openapi" key' + ("; Swagger 2.0 is not supported" if "swagger" in doc else "")
    elif isinstance(version, int | float):
        why = f'"openapi" is the number {version}; write it as a string like "3.1.0"'
    else:
        why = f'"openapi" is {_shown(version)}; apiward reads versions 3.0.x and 3.1.x'
    raise SpecError(f"{path}:{line}: not an OpenAPI 3.0/3.1 document: {why}", str(path))


def _read(path: Path, what: str, error: type[ConfigError]) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        hint = f"not UTF-8 text (bad byte at offset {err.start}); save it as UTF-8"
    except OSError as err:
        hint = next((m for t, m in _READ_ERRORS.items() if isinstance(err, t)), None)
        hint = (hint or "cannot read the file: {1}").format(what, err.strerror)
    else:
        if text.strip():
            return text
        hint = f"the file is empty; write the {what} settings into it"
    raise error(f"{path}: {hint}", str(path))


def _syntax_problem(name: str, err: Exception, text: str) -> str:
    mark = getattr(err, "problem_mark", None)
    if isinstance(err, json.JSONDecodeError):
        return f"{name}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}"
    if isinstance(err, yaml.MarkedYAMLError) and mark is not None:
        start = err.context_mark
        context = f" ({err.context})" if err.context else ""
        if err.context and start and start.line != mark.line:
            context = f" ({err.context} started at {start.line + 1}:{start.column + 1})"
        return f"{name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {err.problem}{context}"
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - text.rfind("\n", 0, err.position)
        return f"{name}:{line}:{column}: invalid YAML: control character #x{err.character:04x}"
    why = "nested too deeply" if isinstance(err, RecursionError) else " ".join(str(err).split())
    return f"{name}: cannot read the document: {why}"


def _resolve(base: Path, value: str | os.PathLike) -> Path:
    return Path(os.path.abspath(base / Path(value).expanduser()))  # lexical: keeps symlinks


def _piece(container: Any, key: Any) -> str:
    return f"[{key}]" if isinstance(container, list) else f".{key}"


def _dotted(pieces: list[str]) -> str:
    return "".join(pieces).lstrip(".") or "(top level)"


def _find(data: Any, target: Any) -> list[str]:
    """The path pieces leading from ``data`` to the container ``target``."""
    todo, seen = [(data, [])], set()
    while todo:
        node, pieces = todo.pop()
        if node is target:
            return pieces
        if id(node) not in seen and isinstance(node, dict | list):
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            todo += [(value, [*pieces, _piece(node, key)]) for key, value in items]
    return []


def _locate(data: Any, loc: tuple, lines: dict[int, Any]) -> tuple[list[str], int]:
    """Path pieces and line of a pydantic ``loc``, skipping union tags that name no key."""
    pieces, line, node = [], 1, data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            line = lines.get(id(node), {}).get(part, line)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = lines[id(node)][part] if id(node) in lines else line
        elif isinstance(node, dict) and i == len(loc) - 1:  # a missing key
            return [*pieces, _piece(node, part)], line
        else:
            continue
        pieces.append(_piece(node, part))
        node = node[part]
    return pieces, line


def _message(error: Any) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, _known_keys(error["loc"]), n=1)
        return f'unknown key "{key}"' + (f'; did you mean "{close[0]}"?' if close else "")
    if kind in ("ip_v4_network", "ip_v6_network"):
        try:
            network = ipaddress.ip_network(value, strict=False)
            return f'{value!r} has host bits set; did you mean "{network}"?'
        except (TypeError, ValueError):
            pass
    text = _PLAIN.get(kind) or error["msg"].removeprefix("Value error, ")
    text = text.replace("Input should", "should").replace(" after validation", "")
    plain = kind in ("value_error", "missing", "too_short", "too_long")
    return text if plain else f"{text}, got {_shown(value)}"


def _known_keys(loc: tuple) -> list[str]:
    """The field names of the model(s) that ``loc[:-1]`` leads to from ``Config``."""
    kinds: list[Any] = [Config]
    for part in loc[:-1]:
        found = []
        for kind in kinds:
            if typing.get_origin(kind) is list and isinstance(part, int):
                found.append(typing.get_args(kind)[0])
            elif _is_model(kind) and isinstance(part, str) and part in kind.model_fields:
                found.append(kind.model_fields[part].annotation)
        unions = (typing.Union, types.UnionType)
        kinds = [a for k in found for a in (typing.get_args(k) if typing.get_origin(k) in unions
                                            else [k])]
    return [name for kind in kinds if _is_model(kind) for name in kind.model_fields]


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and not typing.get_args(kind) and issubclass(kind, BaseModel)


def _shown(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
