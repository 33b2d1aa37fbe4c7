"""The ``jwt`` settings of a scheme, kept apart from the verifier so that reading a
config never loads the cryptography stack (a gateway without JWTs stays small)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apiward.config.units import Duration, Size

HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 §3.2
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "secp256k1"}
OKP_CURVES = frozenset({"Ed25519", "Ed448"})
SUPPORTED = frozenset({*HMAC_MIN_BYTES, *RSA_ALGORITHMS, *EC_CURVES, "EdDSA"})


def check_jwks_url(url: str) -> str:
    """https anywhere, or http to a loopback address (a sidecar, tests); ValueError else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
        raise ValueError(f"a JWKS over plain http is fetched only from a loopback "
                         f"address (127.0.0.1, ::1, localhost); use https for {host}")
    raise ValueError(f'expected a JWKS URL like "https://idp.example/.well-known/jwks.json", '
                     f"got {url!r}")



def _one_or_many(value: str | list[str] | None) -> str | list[str] | None:
    values = [value] if isinstance(value, str) else value
    if values is not None and (not values or not all(values)):
        raise ValueError("expected a non-empty string or a non-empty list of them")
    return value


class JwtConfig(BaseModel):
    """``apis[].checks.identity.schemes.<name>.jwt``: where the keys come from (exactly one
    of ``jwks_file``, ``jwks_url``, ``key_file``) and what a token must satisfy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jwks_file: Path | None = None
    jwks_url: str | None = None
    key_file: Path | None = Field(None, description="a PEM public key or certificate, "
                                  "or a file holding an HMAC secret")
    algorithms: list[str] = Field(min_length=1)
    issuer: str | list[str] | None = None
    audience: str | list[str] | None = None
    leeway: Duration = 30.0
    required_claims: list[str] = Field(default_factory=lambda: ["exp"])
    max_token_bytes: Annotated[Size, Field(gt=0)] = 8 * 1024
    cache_size: int = Field(10_000, ge=0, description="0: no cache")
    jwks_refresh: Annotated[Duration, Field(ge=60)] = 300.0  # jwks_url fetched this often

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg.lower() == "none":
                raise ValueError('"none" (unsigned tokens) is never accepted')
            if alg not in SUPPORTED:
                raise ValueError(f"unsupported algorithm {alg!r}; choose from "
                                 f"{', '.join(sorted(SUPPORTED))}")
        return list(dict.fromkeys(value))

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_jwks_url(value)

    @field_validator("issuer", "audience")
    @classmethod
    def _non_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        return _one_or_many(value)

    @model_validator(mode="after")
    def _sources(self) -> JwtConfig:
        given = [name for name in ("jwks_file", "jwks_url", "key_file")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of jwks_file, jwks_url, key_file"
                             + (f" (got {', '.join(given)})" if given else ""))
        hmac = [alg for alg in self.algorithms if alg in HMAC_MIN_BYTES]
        if hmac and self.jwks_url is not None:
            raise ValueError(f"{', '.join(hmac)} need a shared secret (key_file or jwks_file);"
                             " a secret is never fetched from a URL")
        if hmac and self.key_file is not None and len(hmac) != len(self.algorithms):
            raise ValueError("one key_file cannot verify both HMAC (HS*) and public-key "
                             "algorithms")
        return self
