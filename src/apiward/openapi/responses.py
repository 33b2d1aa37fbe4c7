"""An operation's ``responses``, compiled to judge what the upstream answers: a status it
declares, a media type it declares, and a JSON body its schema allows (so an undeclared
field that leaks data is caught). Compiled only when response validation is on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apiward.openapi.bodies import BodyError, parse_json
from apiward.openapi.document import SpecDocument
from apiward.openapi.media import MediaMatcher, is_json, parse_media_type
from apiward.openapi.schemas import SchemaCompiler, SchemaValidator
from apiward.pipeline.verdict import ALLOW, Verdict, Violation, deny


@dataclass(slots=True)
class ResponseRule:
    media: MediaMatcher | None  # None: the response declares no content
    validators: dict[str, SchemaValidator | None]  # by content key; None: type only


class ResponseRules:
    """``judge(status, header lines, body or None)`` → ALLOW or a denial saying why."""

    def __init__(self, responses: dict[str, Any], base: str, spec: SpecDocument,
                 schemas: SchemaCompiler, max_errors: int = 10) -> None:
        self.max_errors = max_errors
        self.exact: dict[int, ResponseRule] = {}
        self.ranges: dict[int, ResponseRule] = {}
        self.default: ResponseRule | None = None
        for key, raw in responses.items():
            raw, raw_base = spec.resolve(raw, base)
            rule = self._rule(raw or {}, raw_base, spec, schemas)
            key = str(key).upper()
            if key == "DEFAULT":
                self.default = rule
            elif len(key) == 3 and key[0] in "12345" and key[1:] == "XX":
                self.ranges[int(key[0])] = rule
            elif key.isdigit():
                self.exact[int(key)] = rule

    @staticmethod
    def _rule(raw: dict, base: str, spec: SpecDocument, schemas: SchemaCompiler) -> ResponseRule:
        content = raw.get("content")
        if not content:
            return ResponseRule(None, {})
        validators: dict[str, SchemaValidator | None] = {}
        for key, media in content.items():
            media, media_base = spec.resolve(media or {}, base)
            parsed = parse_media_type(key)
            schema = media.get("schema")
            validators[key] = (schemas.validator(schema, media_base, "response")
                               if schema is not None and parsed and is_json(parsed[0]) else None)
        return ResponseRule(MediaMatcher(list(content)), validators)

    def judge(self, status: int, lines: list[bytes], body: bytes | None) -> Verdict:
        rule = self.exact.get(status) or self.ranges.get(status // 100) or self.default
        if rule is None:
            return deny(502, "undeclared_response_status",
                        f"the upstream answered {status}, which the operation does not declare")
        if rule.media is None or (body is not None and not body):
            return ALLOW
        content_type = _content_type(lines)
        key = rule.media.match(content_type)
        if key is None:
            return deny(502, "undeclared_response_type",
                        "the upstream answered with a media type the operation does not declare")
        validator = rule.validators.get(key)
        if validator is None or body is None:
            return ALLOW
        try:
            value = parse_json(body)
        except BodyError as err:
            return deny(502, "invalid_response_body", "the upstream's answer is not valid JSON",
                        violations=(Violation("response.body", err.rule, err.message),))
        if validator.is_valid(value):
            return ALLOW
        violations = validator.violations(value, "response.body", self.max_errors)
        return deny(502, "invalid_response_body",
                    "the upstream's answer does not match the operation's response schema",
                    violations=tuple(violations[: self.max_errors]))


def _content_type(lines: list[bytes]) -> str | None:
    for line in lines[1:]:
        if line[:13].lower() == b"content-type:":
            return line[13:].strip().decode("latin-1")
    return None
