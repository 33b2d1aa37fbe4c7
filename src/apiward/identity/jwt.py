"""JWT bearer tokens: verified against a JWKS (file or URL) or one static key, then cached.

``JwtVerifier(config).verify(token, now)`` runs on the event loop, so it is synchronous and
does no I/O. What it enforces (RFC 7515, 7519, 8725):

- Size first: a token over ``max_token_bytes`` is refused before it is even decoded.
- Compact JWS only, strict unpadded base64url (canonical), JSON objects; ``crit`` and
  ``b64`` are refused (no extension is understood).
- ``alg`` must be on the configured allow-list (``none`` cannot be configured) and the key
  must be bound to that same algorithm: every loaded key carries the one algorithm it may
  verify (its JWK ``alg``, or those its ``kty``/``crv`` allow), so an HS256 token can never
  be checked with an RSA public key, whatever its header says.
- ``kid`` is only a dictionary key into the loaded set. ``jku``, ``x5u``, ``x5c`` and
  ``jwk`` headers are never read. A token without ``kid`` needs exactly one key for its
  algorithm. With a ``key_file`` there is one key and ``kid`` is not looked at.
- The signature is checked before the payload is parsed; then ``exp``/``nbf``/``iat``
  against ``now`` with ``leeway``, ``iss``, ``aud`` (a token with ``aud`` is refused when
  no audience is configured: RFC 7519 §4.1.3) and ``required_claims``.

Verified tokens are cached by their SHA-256 (never the token itself) until ``exp`` (plus
leeway) but at most ``MAX_CACHE_TTL``, in a bounded FIFO; an entry counts only for the key
set it was verified against, so a refreshed JWKS re-verifies every token.

JWKS from a URL: fetched at build (blocking, at config load, off the loop; a failure is a
``ConfigError``). A token with an unknown ``kid`` is refused ``unknown_key`` and sets
``needs_refresh`` (at most once per ``UNKNOWN_KID_INTERVAL``, on the clock ``verify`` is
given); ``await refresh_if_needed()``, which the identity check registers as a periodic job
on the loop, then fetches in a worker thread (urllib) and swaps the key set on the loop.
The set is also fetched again every ``jwks_refresh``, so removed keys stop verifying. A
failed fetch keeps the old keys.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from apiward.errors import ApiwardError, ConfigError
from apiward.identity.jwks import (
    JwksError,
    KeySet,
    VerifyKey,
    fetch_jwks,
    load_key_file,
    parse_jwks,
)
from apiward.identity.jwt_config import JwtConfig

log = logging.getLogger("apiward.identity")

MAX_CACHE_TTL = 300.0  # seconds a verified token is trusted without a new verification
UNKNOWN_KID_INTERVAL = 60.0  # at most one JWKS refresh per this many seconds for unknown kids

REASONS = frozenset({
    "malformed", "too_large", "algorithm", "unknown_key", "signature", "expired",
    "not_yet_valid", "issued_in_future", "issuer", "audience", "missing_claim",
})


class JwtError(ApiwardError):
    """A token refused: ``reason`` is one of ``REASONS`` (stable), ``detail`` human text
    (never a secret; at most a short, truncated echo of the token's own values)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class Claims(Mapping[str, Any]):
    """A verified token's claims: a read-only mapping (shared by every cache hit, so never
    mutate nested values), with its scopes worked out once."""

    __slots__ = ("_claims", "scopes")

    def __init__(self, claims: dict[str, Any]) -> None:
        self._claims = claims
        self.scopes = _scopes(claims)

    def __getitem__(self, name: str) -> Any:
        return self._claims[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._claims.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._claims

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims)

    def __len__(self) -> int:
        return len(self._claims)

    def __repr__(self) -> str:
        return f"Claims({self._claims!r})"


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """OAuth2 scopes: ``scope`` (space-separated string, or a list), else ``scp`` (list or
    string)."""
    if isinstance(claims, Claims):
        return claims.scopes
    return _scopes(claims)


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    value = claims.get("scope")
    if value is None:
        value = claims.get("scp")
    if isinstance(value, str):
        return frozenset(part for part in value.split(" ") if part)
    if isinstance(value, list):
        return frozenset(part for part in value if isinstance(part, str) and part)
    return frozenset()


_MISSING = object()
# base64url -> base64 for binascii: "-" and "_" become "+" and "/"; "+", "/" and "=" in a
# token become "!", which strict decoding refuses.
_B64URL = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")  # by len % 4 (1 is never valid)


def _b64(segment: bytes) -> bytes:
    """Strict base64url: the URL alphabet, no padding, canonical (unused bits zero)."""
    text = segment.translate(_B64URL) + _PADDING[len(segment) % 4]
    data = binascii.a2b_base64(text, strict_mode=True)  # binascii.Error is a ValueError
    if binascii.b2a_base64(data, newline=False) != text:
        raise ValueError("not canonical base64")
    return data


def _json_object(segment: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_b64(segment))
    except (ValueError, orjson.JSONDecodeError):
        raise JwtError("malformed", f"the {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise JwtError("malformed", f"the {what} is not a JSON object")
    return value


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        return None
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    raise JwtError("malformed", f"the {name} claim is not a number")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "...'"


class JwtVerifier:
    """Built once from a ``JwtConfig`` (loads or fetches the keys: may block, raises
    ConfigError); ``verify`` is then pure CPU work on the loop."""

    def __init__(self, config: JwtConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock  # wall time for refresh_if_needed(); verify() is given its own
        self._allowed = frozenset(config.algorithms)
        self._leeway = float(config.leeway)
        issuer, audience = config.issuer, config.audience
        self._issuers = None if issuer is None else frozenset(
            [issuer] if isinstance(issuer, str) else issuer)
        self._audiences = None if audience is None else frozenset(
            [audience] if isinstance(audience, str) else audience)
        self._required = tuple(config.required_claims)
        self._max_bytes = config.max_token_bytes
        self._cache_size = config.cache_size
        self._cache: OrderedDict[bytes, tuple[Claims, float, KeySet]] = OrderedDict()
        self._url = config.jwks_url
        self.needs_refresh = False
        self._refreshing = False  # a fetch is under way (one at a time)
        self.last_refresh_error: str | None = None
        self.verifications = 0  # full (signature) verifications that succeeded
        self.cache_hits = 0
        self._unknown_kid_at = -math.inf
        self._fetched_at = clock()
        try:
            self._keys = self._load()
        except JwksError as error:
            raise ConfigError([f"jwt: {error}"]) from None
        unused = sorted(self._allowed - self._keys.algorithms)
        if unused:
            log.warning("jwt: no loaded key verifies %s; such tokens are refused",
                        ", ".join(unused))

    @property
    def keys(self) -> KeySet:
        return self._keys

    def _load(self) -> KeySet:
        config = self.config
        if config.key_file is not None:
            return load_key_file(config.key_file, config.algorithms)
        if config.jwks_file is not None:
            try:
                document = Path(config.jwks_file).read_bytes()
            except OSError as error:
                raise JwksError(f"cannot read {config.jwks_file}: "
                                f"{error.strerror or error}") from None
            return parse_jwks(document, self._allowed, allow_oct=True,
                              source=str(config.jwks_file))
        return self._fetch()

    def _fetch(self) -> KeySet:
        """Blocking: fetch and parse the JWKS URL (a worker thread, or the build)."""
        assert self._url is not None
        return parse_jwks(fetch_jwks(self._url), self._allowed, allow_oct=False,
                          source=self._url)

    # -- the request path -------------------------------------------------------------

    def verify(self, token: str, now: float) -> Claims:
        """The claims of a valid token, else JwtError; ``now`` is wall time in seconds."""
        if len(token) > self._max_bytes:
            raise JwtError("too_large", f"the token is longer than {self._max_bytes} bytes")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise JwtError("malformed", "the token is not ASCII") from None
        digest = hashlib.sha256(raw).digest()
        keys = self._keys
        entry = self._cache.get(digest)
        if entry is not None and now < entry[1] and entry[2] is keys:
            self.cache_hits += 1
            return entry[0]
        claims, until = self._verify(raw, now, keys)
        self.verifications += 1
        if self._cache_size:
            cache = self._cache
            if len(cache) >= self._cache_size and digest not in cache:
                cache.popitem(last=False)
            cache[digest] = (claims, until, keys)
        return claims

    def _verify(self, raw: bytes, now: float, keys: KeySet) -> tuple[Claims, float]:
        parts = raw.split(b".")
        if len(parts) != 3:
            raise JwtError("malformed", "encrypted tokens (JWE) are not supported"
                           if len(parts) == 5 else "a JWT has three dot-separated parts")
        head, body, signature = parts
        header = _json_object(head, "header")
        alg = header.get("alg")
        if type(alg) is not str or alg not in self._allowed:
            raise JwtError("algorithm", f"alg {_show(alg)} is not allowed")
        if "crit" in header or header.get("b64", True) is not True:
            raise JwtError("malformed", "critical header extensions are not supported")
        key = self._key(keys, header.get("kid"), alg, now)
        try:
            signature_bytes = _b64(signature)
        except ValueError:
            raise JwtError("malformed", "the signature is not base64url") from None
        if not key.verify(raw[: len(head) + 1 + len(body)], signature_bytes):
            raise JwtError("signature", "the signature does not verify")
        claims = _json_object(body, "payload")
        until = self._check_claims(claims, now)
        return Claims(claims), until

    def _key(self, keys: KeySet, kid: Any, alg: str, now: float) -> VerifyKey:
        if keys.static:
            key = keys.sole.get(alg)
        elif kid is None:
            key = keys.sole.get(alg)
            if key is None:
                raise JwtError("unknown_key", "the token names no key (kid) and there is "
                               f"not exactly one key for {alg}")
        else:
            if type(kid) is not str:
                raise JwtError("malformed", "the kid header is not a string")
            for_kid = keys.by_kid.get(kid)
            if for_kid is None:
                self._unknown_kid(now)
                raise JwtError("unknown_key", f"no key with kid {_show(kid)}")
            key = for_kid.get(alg)
            if key is None:
                raise JwtError("algorithm", f"the key {_show(kid)} is not for {alg}")
        if key is None:
            raise JwtError("algorithm", f"no key for {alg}")
        return key

    def _check_claims(self, claims: dict[str, Any], now: float) -> float:
        """Raises for a claim that fails; returns until when the token may be cached."""
        for name in self._required:
            if name not in claims:
                raise JwtError("missing_claim", f"the token has no {name} claim")
        leeway = self._leeway
        until = now + MAX_CACHE_TTL
        exp = _number(claims, "exp")
        if exp is not None:
            if now >= exp + leeway:
                raise JwtError("expired", "the token has expired")
            until = min(until, exp + leeway)
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise JwtError("not_yet_valid", "the token is not valid yet (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise JwtError("issued_in_future", "the token was issued in the future (iat)")
        if self._issuers is not None:
            iss = claims.get("iss", _MISSING)
            if iss is _MISSING:
                raise JwtError("missing_claim", "the token has no iss claim")
            if type(iss) is not str or iss not in self._issuers:
                raise JwtError("issuer", f"the issuer {_show(iss)} is not accepted")
        aud = claims.get("aud", _MISSING)
        if self._audiences is None:
            if aud is not _MISSING:
                raise JwtError("audience", "the token names an audience (aud) but this API "
                               "has none configured")
        elif aud is _MISSING:
            raise JwtError("missing_claim", "the token has no aud claim")
        else:
            values = [aud] if type(aud) is str else aud if type(aud) is list else ()
            if not any(type(v) is str and v in self._audiences for v in values):
                raise JwtError("audience", "the token is not meant for this audience")
        sub = claims.get("sub")
        if sub is not None and type(sub) is not str:
            raise JwtError("malformed", "the sub claim is not a string")
        return until

    # -- JWKS refresh -----------------------------------------------------------------

    def _unknown_kid(self, now: float) -> None:
        """Ask for a JWKS refresh, at most once per interval (a clock that went back
        counts as a new interval)."""
        if self._url is not None and not 0 <= now - self._unknown_kid_at < UNKNOWN_KID_INTERVAL:
            self._unknown_kid_at = now
            self.needs_refresh = True

    def _due(self, now: float) -> bool:
        return self._url is not None and (
            self.needs_refresh or not 0 <= now - self._fetched_at < self.config.jwks_refresh)

    async def refresh_if_needed(self, now: float | None = None) -> bool:
        """The periodic job: fetch the JWKS in a worker thread when an unknown ``kid``
        asked for it or ``jwks_refresh`` has passed; True when the key set changed."""
        now = self._clock() if now is None else now
        if self._refreshing or not self._due(now):
            return False
        self.needs_refresh, self._fetched_at, self._refreshing = False, now, True
        try:
            keys = await asyncio.to_thread(self._fetch)
        except JwksError as error:
            return self._failed(error)
        finally:
            self._refreshing = False
        return self._install(keys)

    def refresh(self, now: float | None = None) -> bool:
        """The same fetch, blocking (tools, tests): True when the key set changed."""
        self.needs_refresh, self._fetched_at = False, self._clock() if now is None else now
        if self._url is None:
            return False
        try:
            keys = self._fetch()
        except JwksError as error:
            return self._failed(error)
        return self._install(keys)

    def _failed(self, error: JwksError) -> bool:
        self.last_refresh_error = str(error)
        log.warning("jwt: JWKS refresh failed, the previous keys stay: %s", error)
        return False

    def _install(self, keys: KeySet) -> bool:
        self.last_refresh_error = None
        if keys.fingerprint == self._keys.fingerprint:
            return False
        log.info("jwt: JWKS %s changed: %d keys (was %d)", self._url, len(keys),
                 len(self._keys))
        self._keys = keys
        self._cache.clear()  # entries name the old set and would miss anyway
        return True
