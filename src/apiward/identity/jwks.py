"""Keys that verify JWT signatures: a JWKS (file or URL) or one static key file.

Everything here runs at load or refresh time, never per request. The result is a
``KeySet``: immutable look-up tables of ``VerifyKey``s, each bound to exactly one algorithm,
so the token's ``alg`` header can only pick among the algorithms its key was loaded for.

- A JWK is used only through its public members (``n``/``e``, ``crv``/``x``/``y``, ``k``):
  private members in a published set are ignored. A key whose ``use`` is not ``sig``, whose
  ``key_ops`` lack ``verify``, whose ``alg`` is not allowed or does not fit its ``kty``/``crv``,
  an RSA key under 2048 bits or an HMAC secret shorter than its hash is skipped (and
  logged). PyJWT loads every key (``Algorithm.from_jwk``) and checks its class against the
  algorithm (``prepare_key``) before it is trusted.
- ``oct`` (HMAC) keys come only from files: a secret is never taken from a URL.
- A JWKS URL is https, or http to a loopback address only; it is fetched with urllib,
  without proxies or redirects, under a timeout and a size cap.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import PyJWTError

from apiward.identity.jwt_config import (  # noqa: F401 (re-exported)
    EC_CURVES,
    HMAC_MIN_BYTES,
    OKP_CURVES,
    RSA_ALGORITHMS,
    SUPPORTED,
    check_jwks_url,
)

log = logging.getLogger("apiward.identity")

RSA_MIN_BITS = 2048
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "oct": ("k",)}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521",
                "secp256k1": "secp256k1"}

FETCH_TIMEOUT = 5.0  # seconds for the whole fetch of a JWKS URL
FETCH_MAX_BYTES = 256 * 1024


class JwksError(Exception):
    """A key set or key file could not be fetched, parsed, or has no usable key."""


@dataclass(frozen=True, slots=True, eq=False)
class VerifyKey:
    """One key bound to one algorithm: ``verify(signing_input, signature) -> bool``."""

    kid: str | None
    alg: str
    verify: Callable[[bytes, bytes], bool]


class KeySet:
    """Look-up tables over the usable keys.

    ``by_kid[kid][alg]`` for tokens naming a key; ``sole[alg]`` for tokens without ``kid``
    (only when exactly one key can verify that algorithm); ``static``: one key file, so a
    token's ``kid`` names nothing and is not looked up. ``fingerprint`` tells two sets
    with the same keys apart from changed ones.
    """

    __slots__ = ("algorithms", "by_kid", "fingerprint", "sole", "static")

    def __init__(self, keys: Iterable[tuple[VerifyKey, bytes]], *, static: bool = False
                 ) -> None:
        by_kid: dict[str, dict[str, VerifyKey]] = {}
        per_alg: dict[str, list[VerifyKey]] = {}
        prints = set()
        for key, identity in keys:
            if key.kid is not None:
                slot = by_kid.setdefault(key.kid, {})
                if key.alg in slot:
                    log.warning("JWKS: a second key with kid %r for %s is ignored",
                                key.kid, key.alg)
                    continue
                slot[key.alg] = key
            per_alg.setdefault(key.alg, []).append(key)
            prints.add((key.kid, key.alg, identity))
        self.by_kid = by_kid
        self.sole = {alg: found[0] for alg, found in per_alg.items() if len(found) == 1}
        self.algorithms = frozenset(per_alg)
        self.static = static
        self.fingerprint = frozenset(prints)

    def __len__(self) -> int:
        return len(self.fingerprint)


def _bind(kid: str | None, alg: str, key: Any) -> VerifyKey:
    """PyJWT's algorithm object for ``alg`` checks the key fits (class, curve, not a PEM
    posing as an HMAC secret) and verifies with it; errors on garbage mean 'invalid'."""
    algorithm = get_default_algorithms()[alg]
    prepared = algorithm.prepare_key(key)

    def verify(signing_input: bytes, signature: bytes) -> bool:
        try:
            return algorithm.verify(signing_input, prepared, signature)
        except (ValueError, TypeError):
            return False

    return VerifyKey(kid, alg, verify)


def _algorithms_for(jwk: dict[str, Any], key: Any) -> tuple[str, ...]:
    """Every algorithm a loaded key may verify, before the allow-list."""
    kty = jwk.get("kty")
    if kty == "RSA":
        return tuple(sorted(RSA_ALGORITHMS))
    if kty == "EC":
        return tuple(alg for alg, crv in EC_CURVES.items() if crv == jwk.get("crv"))
    if kty == "OKP":
        return ("EdDSA",)
    if kty == "oct":
        return tuple(alg for alg, size in HMAC_MIN_BYTES.items() if len(key) >= size)
    return ()


def _load_jwk(jwk: Any, allowed: frozenset[str], allow_oct: bool) -> list[VerifyKey]:
    """The usable (key, algorithm) pairs of one JWK; ValueError says why there is none."""
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    kty = jwk.get("kty")
    if kty not in _PUBLIC_MEMBERS:
        raise ValueError(f"unsupported kty {kty!r}")
    if kty == "oct" and not allow_oct:
        raise ValueError("an HMAC secret (kty oct) is never taken from a URL")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    use, ops = jwk.get("use"), jwk.get("key_ops")
    if use is not None and use != "sig":
        raise ValueError(f"use is {use!r}, not 'sig'")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError("key_ops does not include 'verify'")
    public = {"kty": kty}
    for member in _PUBLIC_MEMBERS[kty]:
        if not isinstance(jwk.get(member), str):
            raise ValueError(f"member {member!r} missing or not a string")
        public[member] = jwk[member]
    if kty == "OKP" and public["crv"] not in OKP_CURVES:
        raise ValueError(f"unsupported OKP curve {public['crv']!r}")
    loader = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA", "oct": "HS256"}[kty]
    try:
        key = get_default_algorithms()[loader].from_jwk(public)
    except (PyJWTError, ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"not a valid {kty} key: {error}") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < RSA_MIN_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits (at least {RSA_MIN_BITS} needed)")
    candidates = _algorithms_for(public, key)
    declared = jwk.get("alg")
    if declared is not None:
        if declared not in candidates:
            raise ValueError(f"alg {declared!r} does not fit a {kty} key of this kind/size")
        candidates = (declared,)
    usable = [alg for alg in candidates if alg in allowed]
    if not usable:
        raise ValueError(f"none of its algorithms ({', '.join(candidates)}) is allowed")
    return [_bind(kid, alg, key) for alg in usable]


def parse_jwks(document: bytes, allowed: Iterable[str], *, allow_oct: bool,
               source: str = "JWKS") -> KeySet:
    """A ``KeySet`` from a JWKS document; JwksError when it is invalid or has no usable key."""
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError as error:
        raise JwksError(f"{source}: not JSON ({error})") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise JwksError(f'{source}: expected a JSON object with a "keys" array')
    allowed = frozenset(allowed)
    loaded: list[tuple[VerifyKey, bytes]] = []
    for index, jwk in enumerate(keys):
        try:
            bound = _load_jwk(jwk, allowed, allow_oct)
        except (ValueError, PyJWTError) as error:
            label = jwk.get("kid") if isinstance(jwk, dict) else None
            log.warning("%s: key %s skipped: %s", source,
                        repr(label) if label is not None else f"#{index}", error)
            continue
        identity = orjson.dumps({m: jwk[m] for m in _PUBLIC_MEMBERS[jwk["kty"]]},
                                option=orjson.OPT_SORT_KEYS)
        loaded.extend((key, hashlib.sha256(identity).digest()) for key in bound)
    if not loaded:
        raise JwksError(f"{source}: no usable key for the algorithms "
                        f"{', '.join(sorted(allowed))}")
    return KeySet(loaded)


def load_key_file(path: Path, allowed: Iterable[str]) -> KeySet:
    """One static key: a PEM public key or certificate, else the file is an HMAC secret
    (one trailing newline dropped). Every allowed algorithm must fit it."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise JwksError(f"cannot read {path}: {error.strerror or error}") from None
    allowed = sorted(set(allowed))
    if data.lstrip().startswith(b"-----BEGIN"):
        key = _pem_public_key(data, path)
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < RSA_MIN_BITS:
                raise JwksError(f"{path}: RSA key of {key.key_size} bits "
                                f"(at least {RSA_MIN_BITS} needed)")
            fits, kind = RSA_ALGORITHMS, "an RSA public key"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            crv = _CURVE_NAMES.get(key.curve.name)
            fits = frozenset(a for a, c in EC_CURVES.items() if c == crv)
            kind = f"an EC public key on {key.curve.name}"
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            fits, kind = frozenset({"EdDSA"}), "an EdDSA public key"
        else:
            raise JwksError(f"{path}: unsupported public key type {type(key).__name__}")
        identity = hashlib.sha256(data.strip()).digest()
    else:
        if data.startswith((b"ssh-", b"ecdsa-sha2-")):
            raise JwksError(f"{path}: an SSH key; give a PEM public key")
        key = data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")
        fits = frozenset(a for a, size in HMAC_MIN_BYTES.items() if len(key) >= size)
        kind = f"an HMAC secret of {len(key)} bytes"
        if not key:
            raise JwksError(f"{path}: the file is empty")
        identity = hashlib.sha256(key).digest()
    wrong = [alg for alg in allowed if alg not in fits]
    if wrong:
        raise JwksError(f"{path} holds {kind}, which cannot verify {', '.join(wrong)}"
                        + (" (an HMAC secret must be at least as long as the hash: "
                           "32/48/64 bytes)" if kind.startswith("an HMAC") else ""))
    try:
        bound = [(_bind(None, alg, key), identity) for alg in allowed]
    except PyJWTError as error:  # PyJWT's own refusal (e.g. a PEM given as HMAC secret)
        raise JwksError(f"{path}: {error}") from None
    return KeySet(bound, static=True)


def _pem_public_key(data: bytes, path: Path) -> Any:
    if b"PRIVATE KEY-----" in data:
        raise JwksError(f"{path}: a private key; give the public key (or a certificate)")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise JwksError(f"{path}: not a PEM public key or certificate ({error})") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code,
                                     f"redirected to {newurl} (not followed)", headers, fp)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def fetch_jwks(url: str, *, timeout: float = FETCH_TIMEOUT,
               max_bytes: int = FETCH_MAX_BYTES) -> bytes:
    """The body of a 200 answer from ``url``: blocking, so call it off the event loop."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "apiward"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise JwksError(f"{url}: HTTP {response.status}")
            chunks, size = [], 0
            while chunk := response.read(min(65536, max_bytes + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise JwksError(f"{url}: larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise JwksError(f"{url}: took longer than {timeout:g} s")
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        raise JwksError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise JwksError(f"{url}: {reason}") from None
    except http.client.HTTPException as error:  # not HTTP (BadStatusLine), cut short
        raise JwksError(f"{url}: not a valid HTTP answer ({type(error).__name__}: "
                        f"{error})") from None
