"""An operation's ``security`` requirement, compiled to presence tests.

Verifying credentials is the identity check's job; here a call that carries none of the
credentials its operation requires is refused (401) before anything else reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apiward.errors import SpecError
from apiward.openapi.params import cookie_jar
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import Verdict, deny


@dataclass(frozen=True, slots=True)
class Scheme:
    """One security scheme and where its credential travels."""

    name: str
    kind: str  # apiKey, http, oauth2, openIdConnect, mutualTLS
    location: str = ""  # apiKey: header, query or cookie
    param: str = ""  # apiKey: the header, query or cookie name
    auth_scheme: str = ""  # http: "bearer", "basic", ... (lower-case)

    def present(self, request: Request) -> bool:
        if self.kind == "apiKey":
            if self.location == "header":
                return bool(request.headers.get(self.param))
            if self.location == "query":
                return bool(request.query_params.get(self.param))
            return self.param in cookie_jar(request.headers)
        if self.kind == "mutualTLS":
            return request.tls is not None and bool(getattr(request.tls, "fingerprint", None))
        value = request.headers.get("authorization")
        if not value:
            return False
        scheme, _, credentials = value.partition(" ")
        return scheme.lower() == self.auth_scheme and bool(credentials.strip())

    @property
    def challenge(self) -> str | None:
        if self.kind == "http":
            return ('Basic realm="api"' if self.auth_scheme == "basic"
                    else self.auth_scheme.capitalize())
        if self.kind in ("oauth2", "openIdConnect"):
            return "Bearer"
        return None


Requirement = tuple[tuple[Scheme, tuple[str, ...]], ...]
"""Schemes that must all be present, each with the scopes it must grant."""


@dataclass(frozen=True, slots=True)
class SecurityRequirement:
    schemes: Requirement

    def met(self, request: Request) -> bool:
        return all(scheme.present(request) for scheme, _ in self.schemes)


def compile_security(security: Any, schemes: dict[str, dict], pointer: str,
                     warn: Callable[[str], None] | None = None,
                     ) -> tuple[SecurityRequirement, ...] | None:
    """The alternatives of a ``security`` list (any one suffices), or None when the
    operation requires nothing (absent, ``[]``, or one empty requirement ``{}``).

    A requirement naming a scheme the document does not define cannot be judged: it is
    dropped with a warning (real specs do this, and refusing every call would be worse);
    without ``warn`` it is a SpecError."""
    if not security:
        return None
    alternatives = []
    for i, requirement in enumerate(security):
        if not requirement:
            return None  # {} makes authentication optional
        needed = []
        for name, scopes in requirement.items():
            raw = schemes.get(name)
            if raw is None:
                problem = (f"{pointer}/security/{i}: names the security scheme {name!r}, "
                           "which components.securitySchemes does not define")
                if warn is None:
                    raise SpecError(problem)
                warn(problem + "; its presence is not checked")
                return None
            needed.append((_scheme(name, raw), tuple(scopes or ())))
        alternatives.append(SecurityRequirement(tuple(needed)))
    return tuple(alternatives)


def missing_credentials(alternatives: tuple[SecurityRequirement, ...],
                        request: Request) -> Verdict | None:
    """A 401 when no alternative's credentials are all present."""
    for requirement in alternatives:
        if requirement.met(request):
            return None
    challenges = dict.fromkeys(
        scheme.challenge for requirement in alternatives for scheme, _ in requirement.schemes
        if scheme.challenge is not None
    )
    names = sorted({scheme.name for r in alternatives for scheme, _ in r.schemes})
    headers = tuple(("WWW-Authenticate", c) for c in challenges)
    return deny(401, "missing_credentials",
                f"this operation needs credentials ({' or '.join(names)})", headers=headers)


def _scheme(name: str, raw: dict) -> Scheme:
    kind = raw.get("type", "")
    if kind == "apiKey":
        location = raw.get("in", "header")
        param = raw.get("name", "")
        return Scheme(name, kind, location, param.lower() if location == "header" else param)
    if kind == "http":
        return Scheme(name, kind, auth_scheme=str(raw.get("scheme", "")).lower())
    return Scheme(name, kind, auth_scheme="bearer")
