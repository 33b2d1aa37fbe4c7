"""schema: the call must be one the matched operation allows.

Head stage: required credentials present (401), parameters deserialised and valid (400),
a body only where the operation takes one, of a declared media type (415). Body stage:
the body parsed (JSON, form, multipart) and validated against its schema (400). On by
default when the API has a spec; runs after ``route``, which finds the operation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apiward.config.units import Size
from apiward.errors import ConfigError
from apiward.openapi import UNBOUNDED
from apiward.openapi.bodies import BodyError, coerce_fields, parse_form, parse_json, parse_multipart
from apiward.openapi.media import parse_media_type
from apiward.openapi.security import missing_credentials
from apiward.pipeline.check import NO_DEPS, Check, CheckConfig, Deps, Mode
from apiward.pipeline.verdict import ALLOW, Verdict, Violation, deny

NAME = "schema"
KNOWN_TARGETS = 1024  # per operation
KNOWN_TARGET_BYTES = 512
NEEDS_SPEC = True


class Config(CheckConfig):
    max_errors: int = Field(10, ge=1, le=1000)
    undeclared_query: Literal["allow", "block"] = "allow"
    json_max_depth: int = Field(64, ge=1, le=10_000)
    max_parts: int = Field(100, ge=1)
    max_part_size: Size | None = None
    validate_responses: Literal["off", "log", "block"] = "off"


NO_BODY_HERE = deny(400, "unexpected_body", "this operation takes no request body",
                    violations=(Violation("body", "absent", "this operation takes no body"),))
AMBIGUOUS_TYPE = deny(400, "ambiguous_content_type",
                      "the request has more than one Content-Type field")
BODY_REQUIRED = deny(400, "missing_body", "this operation needs a request body",
                     violations=(Violation("body", "required", "a request body is required"),))


def build(config: Config, mode: Mode, deps: Deps = NO_DEPS) -> Check:
    if deps.spec is None:
        raise ConfigError([f"apis ({deps.api_name}).checks.schema: needs the API's spec"])
    cap = config.max_errors
    max_parts = config.max_parts
    part_size = config.max_part_size
    max_depth = config.json_max_depth

    def run(request, context) -> Verdict:
        op = context.endpoint
        if op is None:
            return ALLOW  # no operation matched (route in log mode): nothing to judge
        known = op.known_good
        if known is not None:  # the verdict depends on the path and query alone
            if request.has_body:
                return NO_BODY_HERE
            target = request.path + "?" + request.query
            if target in known:
                return ALLOW
        elif op.security is not None:
            refusal = missing_credentials(op.security, request)
            if refusal is not None:
                return refusal
        values, violations = op.parameters.extract(context.path_params, request.query,
                                                   request.headers)
        validators = op.validators
        for rule, value in values:
            found = validators.get(id(rule))
            if found is not None and not found[0].is_valid(value):
                violations += found[0].violations(value, found[1], cap)
        if violations:
            return _invalid("invalid_parameters", "parameters", violations, cap)
        body = op.body
        if known is not None:
            if len(target) <= KNOWN_TARGET_BYTES:  # a flood of distinct targets only
                if len(known) >= KNOWN_TARGETS:  # empties this
                    known.clear()
                known.add(target)
            return ALLOW
        if body is None:
            return NO_BODY_HERE if request.has_body else ALLOW
        if not request.has_body:
            return BODY_REQUIRED if body.required else ALLOW
        types = request.headers.getall("content-type")
        if len(types) > 1:  # an upstream reading the other one parses what nobody judged
            return AMBIGUOUS_TYPE
        key = body.media.match(types[0] if types else None)
        if key is None:
            return deny(415, "unsupported_media_type",
                        f"this operation accepts a body of type {body.accepted}",
                        headers=(("Accept", body.accepted),) if body.accepted else ())
        if body.contents[key].kind != "opaque" or op.body_limit < UNBOUNDED:
            context.body_limit = op.body_limit
        return ALLOW

    def run_body(request, context) -> Verdict:
        op = context.endpoint
        data = request.body
        if op is None or op.body is None:
            return ALLOW
        if not data:
            return BODY_REQUIRED if op.body.required else ALLOW
        content_type = request.headers.get("content-type") or ""
        rule = op.body.contents[op.body.media.match(content_type)]
        try:
            if rule.kind == "json":
                # A derived depth (op.json_depth) needs no scan of its own: a schema that
                # bounds everything cannot match a deeper value, and orjson parses at C
                # speed up to this global cap.
                value = parse_json(data, max_depth)
            elif rule.kind == "form":
                charset = (parse_media_type(content_type) or ("", {}))[1].get("charset", "utf-8")
                value = coerce_fields(parse_form(data, charset), rule.form,
                                      encoding=rule.encoding, resolve=rule.resolve)
            elif rule.kind == "multipart":
                fields, files = parse_multipart(data, content_type, part_size or len(data),
                                                 max_parts)
                value = coerce_fields({**fields, **{
                    name: [filename or "" for filename, _, _ in parts]
                    for name, parts in files.items()
                }}, rule.form, encoding=rule.encoding, resolve=rule.resolve)
            else:
                return ALLOW
        except BodyError as err:
            return _invalid("invalid_body", "body", [Violation("body", err.rule, err.message)],
                            cap)
        validator = rule.validator
        if validator is None or validator.is_valid(value):
            return ALLOW
        return _invalid("invalid_body", "body", validator.violations(value, "body", cap), cap)

    if config.validate_responses == "off":
        return Check(NAME, mode, run, run_body)
    from apiward.openapi.responses import ResponseRules  # only when answers are judged

    spec = deps.spec
    rules = {id(op): ResponseRules(op.responses, op.base, spec.spec, spec.schemas, cap)
             for op in spec.operations}

    def run_response(request, context, status, lines, body) -> Verdict:
        return rules[id(context.endpoint)].judge(status, lines, body)

    return Check(NAME, mode, run, run_body, run_response=run_response,
                 response_mode=config.validate_responses)


def _invalid(reason: str, part: str, violations: list[Violation], cap: int) -> Verdict:
    """A 400 listing at most ``cap`` of the violations; the detail counts them all."""
    count = len(violations)
    subject = "request's parameters do" if part == "parameters" else "request body does"
    return deny(400, reason, f"the {subject} not match the API's schema "
                f"({count} problem{'' if count == 1 else 's'})",
                violations=tuple(violations[:cap]))
