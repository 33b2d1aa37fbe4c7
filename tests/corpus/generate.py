#!/usr/bin/env python
"""Write the schema conformance corpus: ``python tests/corpus/generate.py [spec-name ...]``.

For every spec in ``support.corpus.SPECS`` (the ones under ``../shared/specs/`` are skipped
when that directory is absent) and every operation, schemathesis draws positive and
negative cases with a fixed hypothesis seed; each becomes one concrete request, which
openapi-core judges too. Only cases whose expected status is certain are written: see
tests/corpus/README.md for the rules, and the summary printed at the end for what was
dropped and why.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.*

from support.corpus import (
    DISPUTED,
    NEGATIVE,
    POSITIVE,
    SPECS,
    UPSTREAM,
    Case,
    OpenApiCore,
    Spec,
)

SEED = 20250101
POSITIVE_PER_OPERATION = 8
NEGATIVE_PER_OPERATION = 8
DRAWS = 30  # hypothesis examples per operation, media type and mode
MAX_BODY = 2048  # bytes: keep the files small
MAX_TARGET = 1024
VERBOSE = False
DISPUTED_PER_REASON = 2

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CLIENT_HEADERS = {"user-agent", "accept-encoding", "accept", "connection",
                  "x-schemathesis-testcaseid", "content-length"}
DUMMY_KEY = "corpus-dummy-key"
DUMMY_TOKEN = "corpus-dummy-token"
DUMMY_BASIC = "Y29ycHVzOmR1bW15"  # corpus:dummy
WRONG_CONTENT_TYPE = "text/plain; charset=utf-8"
EXTRA_SEGMENT = "corpus-extra-segment"
# Bytes a path parameter may decode to and still be judged the same by every reader:
# printable ASCII but the ones the gateway refuses encoded ("/", "\", "?", "#").
PLAIN_PATH_BYTES = frozenset(range(0x20, 0x7F)) - set(b"/\\?#")
PATH_RAW_OK = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                        b"-._~!$&'()*+,=:@/%")


# -- the spec, read directly -----------------------------------------------------------------
def _walk(document: dict, ref: str) -> Any:
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(document: dict, node: Any) -> Any:
    """Follow local ``$ref`` chains (these specs use no external ones)."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = _walk(document, node["$ref"])
        seen += 1
        if seen > 32:
            raise ValueError("$ref loop")
    return node


@dataclass
class OperationInfo:
    method: str
    template: str
    raw: dict
    media_types: list[str]
    body_schemas: dict[str, Any]
    body_required: bool
    security: list[dict] | None  # alternatives; None or [] or a {} among them: optional
    header_params: set[str]

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


def operations_of(spec: Spec) -> dict[str, OperationInfo]:
    document = spec.document
    found = {}
    for template, item in (document.get("paths") or {}).items():
        item = deref(document, item)
        shared = item.get("parameters") or []
        for method in METHODS:
            raw = item.get(method)
            if raw is None:
                continue
            params = [deref(document, p) for p in (*shared, *(raw.get("parameters") or []))]
            body = deref(document, raw.get("requestBody")) or {}
            info = OperationInfo(
                method=method.upper(),
                template=template,
                raw=raw,
                media_types=list(body.get("content") or {}),
                body_schemas={mt: (deref(document, media) or {}).get("schema")
                              for mt, media in (body.get("content") or {}).items()},
                body_required=bool(body.get("required")),
                security=raw.get("security", document.get("security")),
                header_params={p["name"].lower() for p in params if p.get("in") == "header"},
            )
            found[info.label] = info
    return found


def object_fields(document: dict, schema: Any, depth: int = 0) -> set[str]:
    """Properties of a form body's schema (through ``oneOf``/``anyOf``/``allOf``) that are
    objects: how those travel in a form is not agreed (schemathesis sends the object's keys
    as the field's values; openapi-core drops fields of ``oneOf`` bodies)."""
    schema = deref(document, schema)
    if not isinstance(schema, dict) or depth > 8:
        return set()
    found = set()
    for name, prop in (schema.get("properties") or {}).items():
        prop = deref(document, prop)
        if isinstance(prop, dict) and (prop.get("type") == "object" or "properties" in prop):
            found.add(name)
    for keyword in ("oneOf", "anyOf", "allOf"):
        for alternative in schema.get(keyword) or []:
            found |= object_fields(document, alternative, depth + 1)
    return found


def media_kind(media_type: str) -> str:
    name = media_type.split(";")[0].strip().lower()
    if name == "application/json" or name.endswith("+json"):
        return "json"
    if name in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return "form"
    if name == "application/octet-stream":
        return "binary"
    return "opaque"  # XML, text ...: apiward checks only their Content-Type


# -- credentials -----------------------------------------------------------------------------
@dataclass
class Credentials:
    headers: list[tuple[str, str]] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)
    cookies: list[tuple[str, str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.names)


def credentials_for(spec: Spec, op: OperationInfo) -> Credentials | None:
    """Dummy credentials for the first alternative of the operation's ``security`` we can
    present; an empty Credentials when none is required; None when none can be presented."""
    if not op.security or any(not alternative for alternative in op.security):
        return Credentials()
    schemes = (spec.document.get("components") or {}).get("securitySchemes") or {}
    for alternative in op.security:
        creds = Credentials()
        for name in alternative:
            scheme = deref(spec.document, schemes.get(name)) or {}
            kind = scheme.get("type")
            if kind == "apiKey":
                where = {"header": creds.headers, "query": creds.query,
                         "cookie": creds.cookies}[scheme.get("in", "header")]
                where.append((scheme["name"], DUMMY_KEY))
            elif kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
                creds.headers.append(("Authorization", f"Basic {DUMMY_BASIC}"))
            elif kind == "http":
                creds.headers.append(("Authorization",
                                      f"{str(scheme['scheme']).capitalize()} {DUMMY_TOKEN}"))
            elif kind in ("oauth2", "openIdConnect"):
                creds.headers.append(("Authorization", f"Bearer {DUMMY_TOKEN}"))
            else:
                break  # mutualTLS: not something a header can carry
            creds.names.append(name)
        else:
            if len({n.lower() for n, _ in creds.headers}) == len(creds.headers):
                return creds
    return None


# -- schemathesis ----------------------------------------------------------------------------
def load_schema(spec: Spec) -> Any:
    import schemathesis
    from schemathesis.config import SchemathesisConfig

    schema = schemathesis.openapi.from_path(spec.path, config=SchemathesisConfig())
    # Credentials are ours (dummy ones, see credentials_for); undeclared extra parameters
    # are allowed by both validators, so schemathesis must not count them as negative.
    schema.config.generation.update(with_security_parameters=False,
                                    allow_extra_parameters=False)
    return schema


def draw(strategy: Any, count: int) -> list[Any]:
    from hypothesis import HealthCheck, Phase, given, seed, settings

    found: list[Any] = []

    @seed(SEED)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(strategy)
    def collect(case: Any) -> None:
        found.append(case)

    collect()
    return found


@dataclass
class Raw:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes | None

    def key(self) -> tuple:
        return (self.method, self.path, self.query, tuple(self.headers), self.body)


def serialise(case: Any, spec: Spec, op: OperationInfo, creds: Credentials) -> Raw | None:
    """The request schemathesis would send for ``case``, with our credentials; None when
    it cannot be sent as is (requests refuses a header value ...)."""
    import requests

    host, base = spec.server_url
    kwargs = case.as_transport_kwargs(base_url=host + base)
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
               if k.lower() not in CLIENT_HEADERS or k.lower() in op.header_params}
    for name, value in creds.headers:
        headers[name] = value
    params = kwargs.get("params") or {}
    params = [*(params.items() if isinstance(params, dict) else params), *creds.query]
    cookies = {**(kwargs.get("cookies") or {}), **dict(creds.cookies)}
    try:
        prepared = requests.Request(
            method=kwargs["method"], url=kwargs["url"], headers=headers, params=params,
            cookies=cookies, json=kwargs.get("json"), data=kwargs.get("data"),
            files=kwargs.get("files"),
        ).prepare()
    except (ValueError, TypeError, requests.RequestException):
        return None
    url = urlsplit(prepared.url)
    body = prepared.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    if "json" in kwargs and kwargs["json"] is None and body is None:
        body = b"null"
    out_headers = []
    for name, value in prepared.headers.items():
        if name.lower() == "content-length":
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out_headers.append((name, value))
    return Raw(prepared.method or kwargs["method"], url.path, url.query, out_headers,
               body or None)


def sendable(raw: Raw, spec: Spec) -> str | None:
    """Why the request is not one every reader sees the same way; None when it is."""
    if not raw.path.startswith(spec.base_path + "/"):
        return "path outside the server's base path"
    if len(raw.path) + len(raw.query) > MAX_TARGET or len(raw.body or b"") > MAX_BODY:
        return "too large for the corpus"
    if not set(raw.path.encode("latin-1")) <= PATH_RAW_OK:
        return "raw path character"
    for segment in raw.path.split("/")[1:]:
        decoded = unquote_to_bytes(segment)
        if decoded in (b"", b".", b".."):
            return "empty or dot path segment"
        if not set(decoded) <= PLAIN_PATH_BYTES:
            return "path parameter with non-ASCII, control, '/', '\\', '?' or '#'"
    for name, value in raw.headers:
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return "header value outside latin-1"
        if value != value.strip(" \t") or any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F
                                               for c in value):
            return "header value with edge whitespace or control characters"
        if not name or any(c in name for c in " \t:\r\n"):
            return "invalid header name"
    return None


def empty_query_values(query: str) -> set[str]:
    """Query parameters with an empty occurrence (``a=`` or ``a``): whether that is valid
    depends on the reader's take on ``allowEmptyValue`` (for array items above all)."""
    return {name for name, value in parse_qsl(query, keep_blank_values=True) if not value}


def mutation_places(case: Any, creds: Credentials) -> tuple[str, ...] | None:
    """Where the negative ``case`` breaks the spec (``query.limit``, ``body`` ...), from its
    mutations; None when its metadata does not say, or names a credential."""
    meta = case.meta
    if meta is None:
        return None
    data = meta.phase.data
    mutations = getattr(data, "mutations", ())
    if not mutations:
        return None
    places = set()
    credential_names = {n.lower() for n, _ in creds.headers + creds.query + creds.cookies}
    for mutation in mutations:
        if mutation.parameter and mutation.parameter.lower() in credential_names:
            return None
        location = mutation.parameter_location.value
        if location == "body" or not mutation.parameter:
            places.add(location)
        else:
            name = mutation.parameter
            places.add(f"{location}.{name.lower() if location == 'header' else name}")
    return tuple(sorted(places))


def describe(case: Any) -> str:
    data = case.meta.phase.data
    parts = []
    for mutation in data.mutations:
        where = mutation.parameter_location.value
        if mutation.parameter:
            where += f".{mutation.parameter}"
        keywords = ", ".join(mutation.keywords) or mutation.operator.value
        parts.append(f"{where}: {mutation.operator.value} ({keywords})"
                     + (f" at {mutation.schema_pointer}" if mutation.schema_pointer else ""))
    return "; ".join(parts)


# -- one spec --------------------------------------------------------------------------------
@dataclass
class Builder:
    spec: Spec
    core: OpenApiCore
    dropped: Counter = field(default_factory=Counter)
    cases: list[Case] = field(default_factory=list)
    disputed: list[Case] = field(default_factory=list)
    disputes: Counter = field(default_factory=Counter)
    seen: set = field(default_factory=set)

    def add(self, op_label: str, raw: Raw, kind: str, expect: str, why: str,
            where: tuple[str, ...], counter: Counter, matched_op: str | None = None) -> bool:
        """Judge by openapi-core and keep the case when it agrees; returns kept."""
        if raw.key() in self.seen:
            self.dropped["duplicate"] += 1
            return False
        reason = sendable(raw, self.spec)
        if reason:
            self.dropped[f"{kind}: {reason}"] += 1
            return False
        slot = (op_label, kind)
        number = counter[slot] = counter[slot] + 1
        case = Case(
            id=f"{op_label} {kind[0]}{number}", spec=self.spec.ref, operation=op_label,
            method=raw.method, path=raw.path, query=raw.query, headers=tuple(raw.headers),
            body=raw.body, kind=kind, expect=expect, why=why[:300], where=where,
            openapi_core="",
        )
        verdict = self.core.judge(case)
        if any(f"query.{name}" not in where for name in empty_query_values(raw.query)):
            counter[slot] -= 1
            reason = f"{kind}: empty query value outside the place it breaks"
            self.dropped[reason] += 1
            self.dispute(case, verdict.label, reason)
            return False
        expected = None if expect == UPSTREAM else int(expect)
        if verdict.status != expected:
            counter[slot] -= 1
            reason = f"{kind}: openapi-core says {verdict.label}, expected {expect}"
            self.dropped[reason] += 1
            if VERBOSE:
                print(f"  [{reason}] {why[:160]}\n      {case.method} {case.target[:200]} "
                      f"{list(case.headers)} {(case.body or b'')[:300]!r}")
            self.dispute(case, verdict.label, reason)
            return False
        if matched_op is not None and verdict.operation != matched_op:
            counter[slot] -= 1
            self.dropped[f"{kind}: openapi-core matched another operation"] += 1
            return False
        if expect == "400" and verdict.place not in where:
            # schemathesis' "positive" parts may break the spec too (an empty required
            # query value ...): then the case breaks it in a place we do not know.
            counter[slot] -= 1
            self.dropped[f"{kind}: openapi-core finds it broken elsewhere too"] += 1
            self.dispute(case, verdict.label, "broken elsewhere")
            return False
        self.seen.add(raw.key())
        self.cases.append(replace(case, openapi_core=verdict.label))
        return True

    def dispute(self, case: Case, label: str, reason: str) -> None:
        """Keep a few cases where schemathesis and openapi-core disagree, for the differential
        test: at most DISPUTED_PER_REASON per operation and reason."""
        slot = (case.operation, reason)
        self.disputes[slot] += 1
        if self.disputes[slot] > DISPUTED_PER_REASON:
            return
        self.seen.add((case.method, case.path, case.query, case.headers, case.body))
        self.disputed.append(replace(
            case, id=f"{case.operation} d{len(self.disputed) + 1}", kind=DISPUTED,
            openapi_core=label))


def build_spec(spec: Spec) -> Builder:
    from schemathesis import GenerationMode

    schema = load_schema(spec)
    core = OpenApiCore(spec)
    ops = operations_of(spec)
    builder = Builder(spec, core)
    numbers: Counter = Counter()
    first_positive: dict[str, tuple[Any, Raw]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        op = ops[f"{operation.method.upper()} {operation.path}"]
        creds = credentials_for(spec, op)
        if creds is None:
            builder.dropped["operation: no credential we can present"] += 1
            continue
        kinds = {mt: media_kind(mt) for mt in op.media_types}
        if op.media_types and all(k == "opaque" for k in kinds.values()):
            builder.dropped["operation: only bodies apiward does not parse (XML ...)"] += 1
            continue
        for mode, kind, cap in ((GenerationMode.POSITIVE, POSITIVE, POSITIVE_PER_OPERATION),
                                (GenerationMode.NEGATIVE, NEGATIVE, NEGATIVE_PER_OPERATION)):
            # Negative bodies only where apiward parses them: any bytes are a valid binary.
            usable = [mt for mt, k in kinds.items()
                      if k in ("json", "form") or (k == "binary" and kind == POSITIVE)]
            share = cap // max(1, len(usable))
            kept: Counter = Counter()
            for case in _draw(operation, mode, len(kinds) or 1, builder):
                media_type = case.media_type
                if media_type is not None and media_type not in usable:
                    builder.dropped[f"{kind}: body apiward does not parse ({media_type})"] += 1
                    continue
                if kept[media_type] >= share:
                    continue
                why = "valid per the spec (schemathesis positive case)"
                expect, where = UPSTREAM, ()
                if kind == NEGATIVE:
                    # Every mutation schemathesis makes (parameters, body) calls for a 400.
                    found = mutation_places(case, creds)
                    if not found:
                        builder.dropped["negative: no known place it breaks"] += 1
                        continue
                    why = f"schemathesis negative case: {describe(case)}"
                    expect, where = "400", found
                if media_type is not None:
                    why += f"; {media_type} body"
                raw = serialise(case, spec, op, creds)
                if raw is None:
                    builder.dropped[f"{kind}: cannot be sent"] += 1
                    continue
                if media_type is not None and kinds[media_type] == "form" and raw.body and \
                        _form_names(raw.body) & object_fields(spec.document,
                                                              op.body_schemas[media_type]):
                    builder.dropped[f"{kind}: form field for an object-typed property"] += 1
                    continue
                if builder.add(op.label, raw, kind, expect, why, where, numbers, op.label):
                    kept[media_type] += 1
                    if kind == POSITIVE:
                        first_positive.setdefault(op.label, (case, raw))
        derive(builder, spec, op, creds, first_positive.get(op.label), numbers)
    derive_routes(builder, spec, ops, first_positive, numbers)
    return builder


def _draw(operation: Any, mode: Any, media_types: int, builder: Builder) -> list[Any]:
    """``DRAWS`` cases per media type (schemathesis picks the media type of each)."""
    try:
        return draw(operation.as_strategy(generation_mode=mode), DRAWS * media_types)
    except Exception as err:  # schemathesis cannot negate every schema (no parameters ...)
        builder.dropped[f"{mode.value}: generation failed ({type(err).__name__})"] += 1
        return []


def derive(builder: Builder, spec: Spec, op: OperationInfo, creds: Credentials,
           first: tuple[Any, Raw] | None, numbers: Counter) -> None:
    """401 (credentials taken away) and 415 (an undeclared Content-Type) from a positive."""
    if first is None:
        return
    case, raw = first
    if creds:
        bare = serialise(case, spec, op, Credentials())
        if bare is not None:
            builder.add(op.label, bare, NEGATIVE, "401",
                        "no credentials for the operation's security "
                        f"({' or '.join(sorted(_scheme_names(op)))})", ("security",), numbers,
                        op.label)
    if raw.body is not None and op.media_types and not any(
            mt.split(";")[0].strip().lower() in ("*/*", "text/*", "text/plain")
            for mt in op.media_types):
        headers = [(n, WRONG_CONTENT_TYPE if n.lower() == "content-type" else v)
                   for n, v in raw.headers]
        builder.add(op.label, replace(raw, headers=headers), NEGATIVE, "415",
                    f"Content-Type {WRONG_CONTENT_TYPE} is not one the operation declares "
                    f"({', '.join(op.media_types)})", ("content-type",), numbers, op.label)


def derive_routes(builder: Builder, spec: Spec, ops: dict[str, OperationInfo],
                  first_positive: dict[str, tuple[Any, Raw]], numbers: Counter) -> None:
    """405 (an undeclared method on a declared path) and 404 (paths no template matches)."""
    by_template: dict[str, list[OperationInfo]] = {}
    for op in ops.values():
        by_template.setdefault(op.template, []).append(op)
    for template, path_ops in by_template.items():
        sample = next((first_positive[o.label][1] for o in path_ops
                       if o.label in first_positive), None)
        if sample is None:
            continue
        declared = {o.method for o in path_ops}
        if "GET" in declared:
            declared.add("HEAD")
        method = next((m for m in ("PATCH", "PUT", "POST", "DELETE", "GET") if m not in declared),
                      None)
        headers = [(n, v) for n, v in sample.headers if n.lower() != "content-type"]
        if method is not None:
            builder.add(f"{method} {template}", replace(sample, method=method, headers=headers,
                                                        body=None),
                        NEGATIVE, "405", f"{method} is not declared for {template} "
                        f"(only {', '.join(sorted(declared))})", ("method",), numbers)
        longer = replace(sample, method=path_ops[0].method if sample.body is None else "GET",
                         path=sample.path.rstrip("/") + "/" + EXTRA_SEGMENT, headers=headers,
                         body=None)
        builder.add(f"{longer.method} {template}/{EXTRA_SEGMENT}", longer, NEGATIVE, "404",
                    f"no path template matches (one segment more than {template})", ("path",),
                    numbers)
    if spec.base_path and first_positive:
        label, (_, sample) = next(iter(first_positive.items()))
        outside = replace(sample, path=sample.path[len(spec.base_path):])
        builder.add(f"{label} (no base path)", outside, NEGATIVE, "404",
                    f"the path lacks the server's base path {spec.base_path}", ("path",), numbers)
    unknown = Raw("GET", spec.base_path + "/corpus-unknown-endpoint", "", [], None)
    builder.add("GET /corpus-unknown-endpoint", unknown, NEGATIVE, "404",
                "no path template matches", ("path",), numbers)


def _form_names(body: bytes) -> set[str]:
    return {name for name, _ in parse_qsl(body.decode("latin-1"), keep_blank_values=True)}


def _scheme_names(op: OperationInfo) -> set[str]:
    return {name for alternative in op.security or [] for name in alternative}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="spec names (default: all available)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every case dropped because openapi-core disagrees")
    args = parser.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    chosen = [s for s in SPECS if not args.names or s.name in args.names]
    total_bytes = 0
    for spec in chosen:
        if not spec.available:
            print(f"{spec.name}: {spec.ref} not found, skipped")
            continue
        started = time.monotonic()
        builder = build_spec(spec)
        cases, dropped = builder.cases, builder.dropped
        text = "".join(case.to_json() + "\n" for case in cases)
        spec.corpus.write_text(text, encoding="ascii")
        disputed = "".join(case.to_json() + "\n" for case in builder.disputed)
        spec.disputed.write_text(disputed, encoding="ascii")
        total_bytes += len(text) + len(disputed)
        kinds = Counter(f"{c.kind} {c.expect}" for c in cases)
        split = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
        print(f"{spec.name}: {len(cases)} cases ({split}), {len(text) // 1024} KiB; "
              f"{len(builder.disputed)} disputed; {time.monotonic() - started:.1f} s")
        for reason, count in sorted(dropped.items()):
            print(f"    dropped {count:4d}  {reason}")
    print(f"total {total_bytes // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
