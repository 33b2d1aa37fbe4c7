"""methods: an allow-list of HTTP methods; anything else is 405 with ``Allow``."""

from __future__ import annotations

from pydantic import Field, field_validator

from apiward.pipeline.check import NO_DEPS, Check, CheckConfig, Deps, Mode
from apiward.pipeline.verdict import ALLOW, Verdict, deny

NAME = "methods"


class Config(CheckConfig):
    allow: list[str] = Field(
        default=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], min_length=1
    )

    @field_validator("allow")
    @classmethod
    def _upper_tokens(cls, value: list[str]) -> list[str]:
        out = []
        for method in value:
            if not method.isascii() or not method.isalpha():
                raise ValueError(f"not an HTTP method: {method!r}")
            out.append(method.upper())
        return out


def build(config: Config, mode: Mode, deps: Deps = NO_DEPS) -> Check:
    allowed = frozenset(config.allow)
    refusal = deny(
        405,
        "method_not_allowed",
        f"this API accepts only {', '.join(config.allow)}",
        headers=(("Allow", ", ".join(config.allow)),),
    )

    def run(request, context) -> Verdict:
        return ALLOW if request.method in allowed else refusal

    return Check(NAME, mode, run)
