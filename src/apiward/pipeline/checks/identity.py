"""identity: every call ends with one verified client identity, or is refused.

What an operation needs comes from the spec (its ``security``: alternatives, each a set
of schemes that must all verify) or, without a spec, from ``rules`` (path patterns).
Each scheme name maps to a verifier in ``schemes``: API keys from the key store, JWTs
(JWKS or a static key), or the TLS client certificate. Missing or bad credentials are
401 with ``WWW-Authenticate``; a valid identity that is not allowed (scope, allow-list)
is 403. The identity (certificate fingerprint, key name, or JWT ``sub`` with its issuer;
else anonymous with the client IP) goes into ``context.identity`` and every event.
"""

from __future__ import annotations

import fnmatch
import hmac
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from apiward.errors import ConfigError
from apiward.identity.jwt_config import JwtConfig
from apiward.openapi.params import cookie_jar
from apiward.openapi.security import Scheme, SecurityRequirement
from apiward.pipeline.check import NO_DEPS, Check, CheckConfig, Deps, Mode, store_table
from apiward.pipeline.verdict import ALLOW, Verdict, deny

NAME = "identity"
IDENTITY_CACHE = 10_000


class Strict(BaseModel):
    """config.models.Strict again: importing it here would be circular (the config
    models are built from this registry)."""

    model_config = ConfigDict(extra="forbid")


class ApiKeys(Strict):
    """Keys made by ``apiward keys create``; where the spec's apiKey scheme says, else in
    ``header`` (or ``query``)."""

    header: str | None = None
    query: str | None = None


class ClientCertRule(Strict):
    """A verified TLS client certificate; optionally only these subjects or SHA-256
    fingerprints (lower-case hex)."""

    subjects: list[str] = Field(default_factory=list)
    fingerprints: list[str] = Field(default_factory=list)


class SchemeConfig(Strict):
    jwt: JwtConfig | None = None
    api_keys: ApiKeys | None = None
    client_cert: ClientCertRule | None = None

    @model_validator(mode="after")
    def _one(self) -> SchemeConfig:
        if sum(x is not None for x in (self.jwt, self.api_keys, self.client_cert)) != 1:
            raise ValueError("give exactly one of jwt, api_keys, client_cert")
        return self


class Rule(Strict):
    """Without a spec: calls whose path matches ``path`` (``*`` wildcards) need one of the
    ``require`` alternatives, each a list of scheme names that must all verify."""

    path: str
    methods: list[str] | None = None
    require: list[list[str]] = Field(min_length=1)


class Config(CheckConfig):
    schemes: dict[str, SchemeConfig] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    require_client_cert: list[str] = Field(default_factory=list)  # path patterns -> 403
    key_store: str = "apiward.db"  # the state store API keys live in (re-read every 5 s)


@dataclass(frozen=True, slots=True)
class Identity:
    kind: Literal["cert", "key", "jwt", "anonymous"]
    id: str
    issuer: str | None = None
    scopes: frozenset[str] = frozenset()
    # A JWT's verified claims, for checks keyed by one (ratelimit's ``jwt:<claim>``).
    claims: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.issuer is None else \
            f"{self.kind}:{self.issuer}#{self.id}"


class _Refusal(Exception):
    """Why one alternative failed; a 403 names the valid identity that was not enough."""

    def __init__(self, status: int, reason: str, detail: str, challenge: str | None,
                 identity: Identity | None = None) -> None:
        self.status, self.reason, self.detail, self.challenge = status, reason, detail, challenge
        self.identity = identity


def build(config: Config, mode: Mode, deps: Deps = NO_DEPS) -> Check:
    verifiers = _verifiers(config, deps)
    rules = [(_pattern(rule.path), frozenset(m.upper() for m in rule.methods or ()), tuple(
        SecurityRequirement(tuple((_scheme_for(name, config, deps), ()) for name in alternative))
        for alternative in rule.require)) for rule in config.rules]
    cert_paths = tuple(_pattern(p) for p in config.require_client_cert)

    def run(request, context) -> Verdict:
        path = request.path
        if cert_paths and any(matches(path) for matches in cert_paths):
            tls = request.tls
            if tls is None or tls.fingerprint is None:
                return deny(403, "client_cert_required",
                            "this endpoint needs a valid TLS client certificate")
        alternatives = _requirement(request, context, rules)
        if alternatives is None:
            context.identity = Identity("anonymous", request.client_ip)
            return ALLOW
        refusals: list[_Refusal] = []
        for alternative in alternatives:
            try:
                identity = None
                for scheme, scopes in alternative.schemes:
                    found = verifiers[scheme.name](scheme, scopes, request, context.now)
                    identity = identity or found
            except _Refusal as refusal:
                refusals.append(refusal)
                continue
            context.identity = identity
            return ALLOW
        return _answer(refusals, context)

    return Check(NAME, mode, run)


def _requirement(request, context, rules) -> Any:
    """The alternatives this call must meet: the matched operation's, else a rule's."""
    endpoint = context.endpoint
    if endpoint is not None:
        return endpoint.security
    for matches, methods, alternatives in rules:
        if (not methods or request.method in methods) and matches(request.path):
            return alternatives
    return None


def _pattern(pattern: str) -> Any:
    """A path pattern (``*`` any run of characters, ``?`` one) compiled once."""
    return re.compile(fnmatch.translate(pattern)).match


def _answer(refusals: list[_Refusal], context) -> Verdict:
    """403 when some credential was valid but not enough; else 401 with challenges."""
    forbidden = [r for r in refusals if r.status == 403]
    if forbidden:
        first = forbidden[0]
        context.identity = first.identity  # the event says who was refused
        return deny(403, first.reason, first.detail)
    first = refusals[0]
    challenges = tuple(dict.fromkeys(r.challenge for r in refusals if r.challenge))
    return deny(401, first.reason, first.detail,
                headers=tuple(("WWW-Authenticate", c) for c in challenges))


def _scheme_for(name: str, config: Config, deps: Deps) -> Scheme:
    """A rule names a scheme: the spec's definition if it has one, else the config's."""
    spec = deps.spec
    if spec is not None:
        for op in spec.operations:
            for alternative in op.security or ():
                for scheme, _ in alternative.schemes:
                    if scheme.name == name:
                        return scheme
    found = config.schemes.get(name)
    if found is None:
        raise ConfigError([f"checks.identity.rules: no scheme named {name!r} in schemes"])
    if found.jwt is not None:
        return Scheme(name, "http", auth_scheme="bearer")
    if found.api_keys is not None:
        keys = found.api_keys
        if keys.query:
            return Scheme(name, "apiKey", "query", keys.query)
        return Scheme(name, "apiKey", "header", (keys.header or "X-API-Key").lower())
    return Scheme(name, "mutualTLS")


def _verifiers(config: Config, deps: Deps) -> dict[str, Any]:
    """One verifier per configured scheme; every scheme the spec requires must have one."""
    verifiers: dict[str, Any] = {}
    table = None
    for name, scheme in config.schemes.items():
        if scheme.jwt is not None:
            from apiward.identity.jwt import JwtVerifier  # only when JWTs are configured

            try:
                jwt = JwtVerifier(scheme.jwt)
            except ConfigError as error:
                where = f"apis ({deps.api_name}).checks.identity.schemes.{name}"
                raise ConfigError([f"{where}.{p}" for p in error.problems]) from None
            verifiers[name] = _jwt_verifier(jwt, deps)
        elif scheme.api_keys is not None:
            if table is None:
                table = _key_table(config, deps)
            verifiers[name] = _key_verifier(table)
        else:
            assert scheme.client_cert is not None
            verifiers[name] = _cert_verifier(scheme.client_cert)
    spec = deps.spec
    if spec is not None:
        required = {scheme.name: scheme for op in spec.operations
                    for alt in op.security or () for scheme, _ in alt.schemes}
        for name, scheme in required.items():
            if name not in verifiers and scheme.kind == "http" and scheme.auth_scheme != "bearer":
                verifiers[name] = _refuse_scheme  # e.g. basic: passwords are not checked here
        missing = sorted(required.keys() - verifiers.keys())
        if missing:
            raise ConfigError([f"apis ({deps.api_name}).checks.identity.schemes: the spec's "
                               f"security schemes {', '.join(missing)} have no verifier; "
                               "map each to jwt, api_keys or client_cert"])
    return verifiers


def _refuse_scheme(scheme: Scheme, scopes: tuple[str, ...], request, now: float) -> Identity:
    """An HTTP scheme apiward does not verify (basic, digest…): never accepted, so an
    alternative that needs it fails and another one may pass."""
    raise _Refusal(401, "unsupported_scheme",
                   f"the {scheme.auth_scheme} scheme is not accepted by this gateway", None)


def _jwt_verifier(verifier: Any, deps: Deps) -> Any:
    from apiward.identity.jwt import JwtError, token_scopes

    deps.periodic.append(verifier.refresh_if_needed)
    # The identity of a token the verifier answered from its cache is the same object
    # again: kept with the claims it was made from, so a hit builds nothing.
    identities: dict[str, tuple[Any, Identity]] = {}

    def verify(scheme: Scheme, scopes: tuple[str, ...], request, now: float) -> Identity:
        value = request.headers.get("authorization") or ""
        kind, _, token = value.partition(" ")
        challenge = 'Bearer realm="api"'
        if kind.lower() != "bearer" or not token.strip():
            raise _Refusal(401, "missing_credentials", "a bearer token is required", challenge)
        token = token.strip()
        try:
            claims = verifier.verify(token, now)
        except JwtError as err:
            raise _Refusal(401, f"invalid_token_{err.reason}", err.detail,
                           'Bearer realm="api", error="invalid_token"') from None
        known = identities.get(token)
        if known is not None and known[0] is claims:
            identity = known[1]
        else:
            identity = Identity("jwt", str(claims.get("sub", "")),
                                str(claims.get("iss", "")) or None, token_scopes(claims),
                                claims)
            if len(identities) >= IDENTITY_CACHE:
                identities.clear()
            identities[token] = (claims, identity)
        granted = identity.scopes
        if scopes and not granted.issuperset(scopes):
            lacking = " ".join(sorted(set(scopes) - granted))
            raise _Refusal(403, "insufficient_scope", f"the token lacks the scope(s) {lacking}",
                           None, identity)
        return identity

    return verify


def _key_table(config: Config, deps: Deps) -> Any:
    """Every key of the store in memory (refreshed every few seconds by the gateway)."""
    from apiward.identity.apikeys import KeyTable

    return store_table(config.key_store, KeyTable.load, deps, "identity.key_store")


def _key_verifier(table: Any) -> Any:
    identities: dict[str, tuple[Any, Identity]] = {}  # by key id, with its record

    def verify(scheme: Scheme, scopes: tuple[str, ...], request, now: float) -> Identity:
        presented = _api_key(scheme, request)
        if not presented:
            raise _Refusal(401, "missing_credentials", "an API key is required",
                           f'ApiKey realm="api", name="{scheme.param}"')
        result = table.verify(presented, now)
        if not result.ok:
            raise _Refusal(401, f"key_{result.reason}", f"the API key is {result.reason}",
                           f'ApiKey realm="api", name="{scheme.param}"')
        record = result.key
        known = identities.get(record.id)
        if known is not None and known[0] is record:
            identity = known[1]
        else:  # a key's identity is built once per record the table holds
            identity = Identity("key", record.name, None, record.scopes)
            identities[record.id] = (record, identity)
        if scopes and not record.scopes.issuperset(scopes):
            raise _Refusal(403, "insufficient_scope",
                           "the API key's scopes do not include this operation's", None,
                           identity)
        return identity

    return verify


def _api_key(scheme: Scheme, request) -> str | None:
    if scheme.location == "query":
        values = request.query_params.get(scheme.param)
        return values[0] if values else None
    if scheme.location == "cookie":
        values = cookie_jar(request.headers).get(scheme.param)
        return values[0] if values else None
    return request.headers.get(scheme.param)


def _cert_verifier(rule: ClientCertRule) -> Any:
    subjects = tuple(rule.subjects)
    fingerprints = tuple(f.lower().replace(":", "") for f in rule.fingerprints)

    def verify(scheme: Scheme, scopes: tuple[str, ...], request, now: float) -> Identity:
        tls = request.tls
        cert = tls.client if tls is not None else None
        if cert is None:
            raise _Refusal(401, "missing_client_cert", "a TLS client certificate is required",
                           None)
        if cert.revoked:
            raise _Refusal(401, "client_cert_revoked", "the client certificate is revoked",
                           None)
        identity = Identity("cert", cert.fingerprint)
        if (subjects and cert.subject not in subjects) or (fingerprints and not any(
                hmac.compare_digest(cert.fingerprint, f) for f in fingerprints)):
            raise _Refusal(403, "client_cert_not_allowed",
                           "this client certificate is not allowed here", None, identity)
        return identity

    return verify
