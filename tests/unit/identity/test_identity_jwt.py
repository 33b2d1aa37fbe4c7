"""JwtVerifier with real keys: a JWKS file, a static key file, and a real JWKS server on
127.0.0.1:0 (which counts the requests it gets, so a token can be shown to fetch nothing)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from pydantic import ValidationError

from apiward.errors import ConfigError
from apiward.identity.jwt import (
    MAX_CACHE_TTL,
    Claims,
    JwtConfig,
    JwtError,
    JwtVerifier,
    token_scopes,
)

NOW = 1_900_000_000.0
ISSUER, AUDIENCE = "https://idp.example", "orders-api"


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "attacker": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }


def jwk(private: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    family = {rsa.RSAPrivateKey: "RS256", ec.EllipticCurvePrivateKey: "ES256",
              ed25519.Ed25519PrivateKey: "EdDSA"}
    loader = next(a for cls, a in family.items() if isinstance(private, cls))
    found = get_default_algorithms()[loader].to_jwk(private.public_key(), as_dict=True)
    found.pop("key_ops", None)
    return {**found, "kid": kid, **({"alg": alg} if alg else {})}


def jwks_of(keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [jwk(keys["rsa"], "rsa-1", "RS256"), jwk(keys["ec"], "ec-1"),
                     jwk(keys["ed"], "ed-1")]}


def pem(private: Any) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": int(NOW) - 10,
            "exp": int(NOW) + 600, "scope": "orders:read orders:write"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(private: Any, alg: str = "RS256", kid: str | None = "rsa-1", **changes: Any) -> str:
    headers = {"kid": kid} if kid else {}
    return pyjwt.encode(claims(**changes), private, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: Any, sign_with=None) -> str:
    """A compact JWS built by hand: whatever header, payload and signer an attacker likes."""
    head = b64(json.dumps(header).encode())
    body = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    signature = sign_with(f"{head}.{body}".encode()) if sign_with else b""
    return f"{head}.{body}.{b64(signature)}"


def rsa_forge(private: Any, header: dict[str, Any], payload: Any) -> str:
    """Really signed by ``private`` (RS256), whatever the header and payload say."""
    return forge(header, payload, lambda data: get_default_algorithms()["RS256"].sign(
        data, private))


def config(path: Path, **options: Any) -> JwtConfig:
    options.setdefault("algorithms", ["RS256", "ES256", "EdDSA"])
    options.setdefault("issuer", ISSUER)
    options.setdefault("audience", AUDIENCE)
    return JwtConfig(jwks_file=path, **options)


@pytest.fixture
def jwks_path(tmp_path: Path, keys: dict[str, Any]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(keys)))
    return path


@pytest.fixture
def verifier(jwks_path: Path) -> JwtVerifier:
    return JwtVerifier(config(jwks_path))


def reason(verifier: JwtVerifier, token: str, now: float = NOW) -> str:
    with pytest.raises(JwtError) as caught:
        verifier.verify(token, now)
    return caught.value.reason


class JwksServer(ThreadingHTTPServer):
    """Serves ``documents[path]`` (bytes, or (status, headers, bytes)); counts requests."""

    daemon_threads = True

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                found = server.documents.get(self.path, (404, {}, b"not found"))
                status, headers, body = found if isinstance(found, tuple) else (200, {}, found)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[JwksServer]:
    server = JwksServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def url_verifier(server: JwksServer, document: dict[str, Any], **options: Any) -> JwtVerifier:
    server.documents["/jwks.json"] = json.dumps(document).encode()
    options.setdefault("algorithms", ["RS256", "ES256", "EdDSA"])
    return JwtVerifier(JwtConfig(jwks_url=server.url("/jwks.json"), issuer=ISSUER,
                                 audience=AUDIENCE, **options), clock=lambda: NOW)


# -- valid tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "alg", "kid"), [("rsa", "RS256", "rsa-1"),
                                                  ("ec", "ES256", "ec-1"),
                                                  ("ed", "EdDSA", "ed-1")])
def test_a_valid_token_gives_its_claims(verifier, keys, key, alg, kid) -> None:
    found = verifier.verify(sign(keys[key], alg, kid), NOW)
    assert isinstance(found, Claims)
    assert found["sub"] == "user-1" and found.get("iss") == ISSUER
    assert token_scopes(found) == {"orders:read", "orders:write"}
    assert verifier.verifications == 1


def test_a_static_rsa_public_key_or_certificate_verifies(tmp_path, keys) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(pem(keys["rsa"]))
    verifier = JwtVerifier(JwtConfig(key_file=path, algorithms=["RS256"], audience=AUDIENCE))
    assert verifier.verify(sign(keys["rsa"], kid="anything"), NOW)["sub"] == "user-1"
    assert verifier.verify(sign(keys["rsa"], kid=None), NOW)["sub"] == "user-1"
    assert reason(verifier, sign(keys["rsa2"])) == "signature"


def test_an_hmac_secret_file_verifies_hs256(tmp_path) -> None:
    secret = b"s" * 40
    path = tmp_path / "secret"
    path.write_bytes(secret + b"\n")  # the trailing newline of `echo` is not the secret
    verifier = JwtVerifier(JwtConfig(key_file=path, algorithms=["HS256"], audience=AUDIENCE))
    assert verifier.verify(sign(secret, "HS256", None), NOW)["sub"] == "user-1"
    assert reason(verifier, sign(b"t" * 40, "HS256", None)) == "signature"


# -- algorithm confusion ----------------------------------------------------------------


def test_alg_none_is_refused_and_cannot_be_configured(verifier, jwks_path) -> None:
    token = forge({"alg": "none", "kid": "rsa-1"}, claims())
    assert reason(verifier, token) == "algorithm"
    assert reason(verifier, forge({"alg": "None"}, claims())) == "algorithm"
    for spelling in ("none", "NONE"):
        with pytest.raises(ValidationError, match="never accepted"):
            config(jwks_path, algorithms=["RS256", spelling])


def test_hs256_signed_with_the_rsa_public_key_is_refused(tmp_path, keys) -> None:
    public_pem = pem(keys["rsa"])

    def hmac_with_pem(data: bytes) -> bytes:
        return hmac.new(public_pem, data, hashlib.sha256).digest()

    # a static RSA key: HS256 is not allowed, and cannot be
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem)
    static = JwtVerifier(JwtConfig(key_file=path, algorithms=["RS256"], audience=AUDIENCE))
    forged = forge({"alg": "HS256", "typ": "JWT"}, claims(), hmac_with_pem)
    assert reason(static, forged) == "algorithm"
    with pytest.raises(ConfigError, match="cannot verify HS256"):
        JwtVerifier(JwtConfig(key_file=path, algorithms=["HS256"]))
    with pytest.raises(ValidationError, match="cannot verify both"):
        JwtConfig(key_file=path, algorithms=["RS256", "HS256"])

    # a JWKS that allows HS256 too (for its oct key): the RSA key is still RS256-only, and
    # an oct key whose secret is the PEM is refused by PyJWT's own check at load
    jwks = {"keys": [jwk(keys["rsa"], "rsa-1"),
                     {"kty": "oct", "kid": "pem-secret", "k": b64(public_pem)},
                     {"kty": "oct", "kid": "hmac-1", "k": b64(b"k" * 32)}]}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(jwks))
    mixed = JwtVerifier(config(path, algorithms=["RS256", "HS256"]))
    assert set(mixed.keys.by_kid) == {"rsa-1", "hmac-1"}
    assert reason(mixed, forge({"alg": "HS256", "kid": "rsa-1"}, claims(),
                               hmac_with_pem)) == "algorithm"
    assert reason(mixed, forge({"alg": "HS256", "kid": "pem-secret"}, claims(),
                               hmac_with_pem)) == "unknown_key"
    assert reason(mixed, forge({"alg": "HS256"}, claims(), hmac_with_pem)) == "signature"
    assert mixed.verify(sign(b"k" * 32, "HS256", "hmac-1"), NOW)["sub"] == "user-1"


def test_a_key_verifies_only_its_own_algorithm(verifier, keys, jwks_path) -> None:
    # rsa-1 is published with alg RS256: a PS256 token naming it is refused even when
    # PS256 is allowed; the EC key cannot be named by an RS256 token
    ps = JwtVerifier(config(jwks_path, algorithms=["RS256", "PS256", "ES256"]))
    assert reason(ps, sign(keys["rsa"], "PS256", "rsa-1")) == "algorithm"
    assert reason(verifier, forge({"alg": "RS256", "kid": "ec-1"}, claims())) == "algorithm"
    assert reason(verifier, sign(keys["rsa"], "RS384", "rsa-1")) == "algorithm"


# -- claims -------------------------------------------------------------------------------


def test_exp_with_leeway(verifier, keys) -> None:
    assert verifier.verify(sign(keys["rsa"], exp=int(NOW) - 29), NOW)
    assert reason(verifier, sign(keys["rsa"], exp=int(NOW) - 30)) == "expired"
    assert reason(verifier, sign(keys["rsa"], exp=int(NOW) - 3600)) == "expired"


def test_not_yet_valid_and_issued_in_the_future(verifier, keys) -> None:
    assert reason(verifier, sign(keys["rsa"], nbf=int(NOW) + 31)) == "not_yet_valid"
    assert verifier.verify(sign(keys["rsa"], nbf=int(NOW) + 30), NOW)
    assert reason(verifier, sign(keys["rsa"], iat=int(NOW) + 31)) == "issued_in_future"
    assert verifier.verify(sign(keys["rsa"], iat=int(NOW) + 30), NOW)


def test_issuer(verifier, keys, jwks_path) -> None:
    assert reason(verifier, sign(keys["rsa"], iss="https://evil.example")) == "issuer"
    listed = rsa_forge(keys["rsa"], {"alg": "RS256", "kid": "rsa-1"}, claims(iss=[ISSUER]))
    assert reason(verifier, listed) == "issuer"
    assert reason(verifier, sign(keys["rsa"], iss=None)) == "missing_claim"
    several = JwtVerifier(config(jwks_path, issuer=["https://a.example", ISSUER]))
    assert several.verify(sign(keys["rsa"]), NOW)


def test_audience(verifier, keys, jwks_path) -> None:
    assert reason(verifier, sign(keys["rsa"], aud="billing-api")) == "audience"
    assert reason(verifier, sign(keys["rsa"], aud=["billing-api", "x"])) == "audience"
    assert verifier.verify(sign(keys["rsa"], aud=["billing-api", AUDIENCE]), NOW)
    assert reason(verifier, sign(keys["rsa"], aud=None)) == "missing_claim"
    # RFC 7519 4.1.3: a token naming an audience is refused where none is configured
    unconfigured = JwtVerifier(config(jwks_path, audience=None))
    assert reason(unconfigured, sign(keys["rsa"])) == "audience"
    assert unconfigured.verify(sign(keys["rsa"], aud=None), NOW)


def test_required_claims(verifier, keys, jwks_path) -> None:
    assert reason(verifier, sign(keys["rsa"], exp=None)) == "missing_claim"
    optional = JwtVerifier(config(jwks_path, required_claims=[]))
    assert optional.verify(sign(keys["rsa"], exp=None), NOW)
    stricter = JwtVerifier(config(jwks_path, required_claims=["exp", "sub", "jti"]))
    assert reason(stricter, sign(keys["rsa"])) == "missing_claim"


def test_tampered_payload(verifier, keys) -> None:
    head, _, signature = sign(keys["rsa"]).split(".")
    body = b64(json.dumps(claims(sub="admin")).encode())
    assert reason(verifier, f"{head}.{body}.{signature}") == "signature"
    other_key = sign(keys["rsa2"])  # right kid, another key's signature
    assert reason(verifier, other_key) == "signature"


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", "a.b.c.d.e",
    "eyJhbGciOiJSUzI1NiJ9.e30.x=",  # padding
    "eyJhbGciOiJSUzI1NiJ9.e30.a+b/",  # base64, not base64url
    "eyJhbGciOiJSUzI1NiJ9 .e30.sig",
    "tōken.e30.sig",
    b64(b"[1]") + ".e30.sig",  # header not an object
    b64(b"{") + ".e30.sig",
])
def test_malformed_tokens(verifier, token) -> None:
    assert reason(verifier, token) == "malformed"


def test_malformed_headers_and_claims(verifier, keys) -> None:
    header = {"alg": "RS256", "kid": "rsa-1"}
    cases = [
        ({**header, "crit": ["exp"], "exp": 1}, claims()),
        ({**header, "b64": False, "crit": ["b64"]}, claims()),
        ({"alg": "RS256", "kid": 7}, claims()),
        (header, b"not json"),
        (header, [1, 2]),
        (header, claims(exp="soon")),
        (header, claims(exp=True)),
        (header, {**claims(), "exp": None}),
        (header, claims(sub=42)),
    ]
    for head, payload in cases:
        token = rsa_forge(keys["rsa"], head, payload)
        assert reason(verifier, token) == "malformed", (head, payload)
    assert reason(verifier, forge({**header, "alg": ["RS256"]}, claims())) == "algorithm"


def test_a_huge_token_is_refused_cheaply(verifier, keys) -> None:
    valid = sign(keys["rsa"])
    huge = valid + "A" * (1024 * 1024)
    start = time.perf_counter()
    for _ in range(1000):
        assert reason(verifier, huge) == "too_large"
    assert time.perf_counter() - start < 0.5  # a length check: no decoding, no hashing
    small = JwtVerifier(config(verifier.config.jwks_file, max_token_bytes="200"))
    assert reason(small, valid) == "too_large"


# -- kid, jku and friends ----------------------------------------------------------------


def test_kid_is_only_a_lookup_key(verifier, keys, tmp_path) -> None:
    for kid in ("../../etc/passwd", "/etc/passwd", str(tmp_path / "jwks.json"), "rsa-1 ",
                "RSA-1", "x" * 2000):
        assert reason(verifier, sign(keys["rsa"], kid=kid)) == "unknown_key"


def test_no_kid_needs_exactly_one_key_for_the_algorithm(tmp_path, keys, verifier) -> None:
    assert verifier.verify(sign(keys["rsa"], kid=None), NOW)  # one RS256 key
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"keys": [jwk(keys["rsa"], "a"), jwk(keys["rsa2"], "b")]}))
    two = JwtVerifier(config(path, algorithms=["RS256"]))
    assert reason(two, sign(keys["rsa"], kid=None)) == "unknown_key"
    assert two.verify(sign(keys["rsa2"], kid="b"), NOW)


def test_jku_x5u_jwk_headers_are_never_fetched_or_used(server, keys) -> None:
    verifier = url_verifier(server, jwks_of(keys))
    server.documents["/attacker.json"] = json.dumps(
        {"keys": [jwk(keys["attacker"], "evil", "RS256")]}).encode()
    attacker_jwk = jwk(keys["attacker"], "evil", "RS256")
    elsewhere = server.url("/attacker.json")
    cases = [({"kid": "evil", "jku": elsewhere}, "unknown_key"),
             ({"kid": "evil", "x5u": elsewhere}, "unknown_key"),
             ({"kid": "evil", "jwk": attacker_jwk}, "unknown_key"),
             ({"jwk": attacker_jwk}, "signature"),  # checked with rsa-1, the one RS256 key
             ({"kid": "rsa-1", "jku": elsewhere}, "signature")]
    for headers, expected in cases:
        token = pyjwt.encode(claims(), keys["attacker"], algorithm="RS256", headers=headers)
        assert reason(verifier, token) == expected, headers
    asyncio.run(verifier.refresh_if_needed(NOW))  # the unknown kid asked for one refresh
    assert "/attacker.json" not in server.hits
    assert server.hits == {"/jwks.json": 2}


# -- the cache ------------------------------------------------------------------------------


def count_verifications(verifier: JwtVerifier, monkeypatch) -> list[bytes]:
    calls: list[bytes] = []
    real = verifier._verify

    def spy(raw, now, keys):
        calls.append(raw)
        return real(raw, now, keys)

    monkeypatch.setattr(verifier, "_verify", spy)
    return calls


def test_a_cache_hit_does_not_verify_again(verifier, keys, monkeypatch) -> None:
    calls = count_verifications(verifier, monkeypatch)
    token = sign(keys["rsa"])
    first = verifier.verify(token, NOW)
    for offset in range(10):
        assert verifier.verify(token, NOW + offset) is first
    assert len(calls) == 1 and verifier.cache_hits == 10
    # keyed by the token's SHA-256, never the token itself
    assert list(verifier._cache) == [hashlib.sha256(token.encode()).digest()]


def test_a_cached_token_expires_at_exp(verifier, keys, monkeypatch) -> None:
    calls = count_verifications(verifier, monkeypatch)
    exp = int(NOW) + 100
    token = sign(keys["rsa"], exp=exp)
    verifier.verify(token, NOW)
    verifier.verify(token, exp + 29.9)  # leeway 30 s
    assert len(calls) == 1
    assert reason(verifier, token, exp + 30) == "expired"
    assert len(calls) == 2


def test_the_cache_keeps_a_token_at_most_max_ttl(verifier, keys, monkeypatch) -> None:
    calls = count_verifications(verifier, monkeypatch)
    token = sign(keys["rsa"], exp=int(NOW) + 86400)
    verifier.verify(token, NOW)
    verifier.verify(token, NOW + MAX_CACHE_TTL - 1)
    assert len(calls) == 1
    verifier.verify(token, NOW + MAX_CACHE_TTL)
    assert len(calls) == 2


def test_the_cache_is_bounded_and_drops_the_oldest(jwks_path, keys, monkeypatch) -> None:
    verifier = JwtVerifier(config(jwks_path, cache_size=2))
    calls = count_verifications(verifier, monkeypatch)
    tokens = [sign(keys["rsa"], jti=str(i)) for i in range(3)]
    for token in tokens:
        verifier.verify(token, NOW)
    assert len(verifier._cache) == 2
    verifier.verify(tokens[2], NOW)
    verifier.verify(tokens[1], NOW)
    assert len(calls) == 3
    verifier.verify(tokens[0], NOW)  # dropped first
    assert len(calls) == 4 and len(verifier._cache) == 2
    uncached = JwtVerifier(config(jwks_path, cache_size=0))
    uncached.verify(tokens[0], NOW)
    uncached.verify(tokens[0], NOW)
    assert uncached.verifications == 2 and not uncached._cache


def test_failures_are_not_cached(verifier, keys) -> None:
    token = sign(keys["rsa"], exp=int(NOW) - 100)
    assert reason(verifier, token) == "expired"
    assert reason(verifier, token) == "expired"
    assert not verifier._cache


# -- JWKS from a URL --------------------------------------------------------------------------


def test_a_jwks_url_is_fetched_once_at_build(server, keys) -> None:
    verifier = url_verifier(server, jwks_of(keys))
    assert server.hits == {"/jwks.json": 1}
    assert verifier.verify(sign(keys["rsa"]), NOW)["sub"] == "user-1"
    assert asyncio.run(verifier.refresh_if_needed(NOW)) is False  # nothing asked for one
    assert server.hits == {"/jwks.json": 1}


def test_an_unknown_kid_refreshes_at_most_once_a_minute(server, keys) -> None:
    verifier = url_verifier(server, jwks_of(keys), jwks_refresh="1h")
    rotated = sign(keys["rsa2"], kid="rsa-2")
    assert reason(verifier, rotated, NOW) == "unknown_key"
    assert verifier.needs_refresh
    # the IdP publishes the new key; the periodic job fetches it (once)
    server.documents["/jwks.json"] = json.dumps(
        {"keys": [*jwks_of(keys)["keys"], jwk(keys["rsa2"], "rsa-2")]}).encode()
    assert asyncio.run(verifier.refresh_if_needed(NOW)) is True
    assert server.hits["/jwks.json"] == 2 and not verifier.needs_refresh
    assert verifier.verify(rotated, NOW)["sub"] == "user-1"

    # a flood of unknown kids: at most one more fetch per 60 s of the given clock
    for second in range(0, 180, 5):
        now = NOW + 1 + second
        assert reason(verifier, sign(keys["attacker"], kid=f"k{second}"), now) == "unknown_key"
        asyncio.run(verifier.refresh_if_needed(now))
    assert server.hits["/jwks.json"] == 4  # at NOW+61 and NOW+121


def test_one_fetch_at_a_time(server, keys) -> None:
    verifier = url_verifier(server, jwks_of(keys))

    async def scenario() -> None:
        verifier.needs_refresh = True
        first = asyncio.create_task(verifier.refresh_if_needed(NOW))
        await asyncio.sleep(0)  # the first fetch is under way in its thread
        verifier.needs_refresh = True
        assert await verifier.refresh_if_needed(NOW + 1) is False
        await first

    asyncio.run(scenario())
    assert server.hits["/jwks.json"] == 2
    assert verifier.needs_refresh  # still asked for: the next periodic run fetches


def test_the_jwks_is_fetched_again_after_jwks_refresh(server, keys) -> None:
    verifier = url_verifier(server, jwks_of(keys), jwks_refresh="5m")
    assert asyncio.run(verifier.refresh_if_needed()) is False  # the clock given at build
    assert asyncio.run(verifier.refresh_if_needed(NOW + 299)) is False
    assert server.hits["/jwks.json"] == 1
    asyncio.run(verifier.refresh_if_needed(NOW + 300))
    assert server.hits["/jwks.json"] == 2


def test_a_removed_key_stops_verifying_after_a_refresh(server, keys) -> None:
    verifier = url_verifier(server, jwks_of(keys))
    token = sign(keys["rsa"])
    assert verifier.verify(token, NOW)
    server.documents["/jwks.json"] = json.dumps(
        {"keys": [jwk(keys["ec"], "ec-1")]}).encode()
    assert verifier.refresh(NOW) is True
    assert reason(verifier, token) == "unknown_key"  # not served from the cache


def test_an_unchanged_jwks_keeps_the_cache(server, keys, monkeypatch) -> None:
    verifier = url_verifier(server, jwks_of(keys))
    calls = count_verifications(verifier, monkeypatch)
    token = sign(keys["rsa"])
    verifier.verify(token, NOW)
    assert verifier.refresh(NOW) is False
    verifier.verify(token, NOW)
    assert len(calls) == 1


@pytest.mark.parametrize("answer", [
    (500, {}, b"oops"),
    (200, {}, b"<html>not json</html>"),
    (200, {}, b'{"keys": []}'),
    (302, {"Location": "/jwks.json"}, b""),
])
def test_a_failed_refresh_keeps_the_old_keys(server, keys, answer) -> None:
    verifier = url_verifier(server, jwks_of(keys))
    server.documents["/jwks.json"] = answer
    assert reason(verifier, sign(keys["rsa2"], kid="new")) == "unknown_key"
    assert asyncio.run(verifier.refresh_if_needed(NOW)) is False
    assert verifier.last_refresh_error
    assert verifier.verify(sign(keys["rsa"]), NOW)["sub"] == "user-1"


def test_the_build_fails_when_the_jwks_url_does(server, keys) -> None:
    with pytest.raises(ConfigError, match="HTTP 404"):
        JwtVerifier(JwtConfig(jwks_url=server.url("/missing"), algorithms=["RS256"]))
    server.documents["/moved"] = (301, {"Location": server.url("/jwks.json")}, b"")
    server.documents["/jwks.json"] = json.dumps(jwks_of(keys)).encode()
    with pytest.raises(ConfigError, match="not followed"):
        JwtVerifier(JwtConfig(jwks_url=server.url("/moved"), algorithms=["RS256"]))
    server.documents["/big"] = b'{"keys": [' + b" " * 300_000 + b"]}"
    with pytest.raises(ConfigError, match="larger than"):
        JwtVerifier(JwtConfig(jwks_url=server.url("/big"), algorithms=["RS256"]))
    assert "/jwks.json" not in server.hits  # the redirect was not followed


def test_hmac_secrets_never_come_from_a_url(server, keys) -> None:
    with pytest.raises(ValidationError, match="never fetched from a URL"):
        JwtConfig(jwks_url=server.url("/jwks.json"), algorithms=["RS256", "HS256"])
    document = {"keys": [*jwks_of(keys)["keys"], {"kty": "oct", "kid": "h", "k": b64(b"k" * 32)}]}
    verifier = url_verifier(server, document)
    assert "h" not in verifier.keys.by_kid


# -- config -------------------------------------------------------------------------------------


def test_config_needs_exactly_one_key_source(tmp_path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        JwtConfig(algorithms=["RS256"])
    with pytest.raises(ValidationError, match="exactly one"):
        JwtConfig(jwks_file=tmp_path / "a", key_file=tmp_path / "b", algorithms=["RS256"])
    with pytest.raises(ValidationError):
        JwtConfig(jwks_file=tmp_path / "a", algorithms=["RS256"], verify_exp=False)
    with pytest.raises(ValidationError, match="at least 1"):
        JwtConfig(jwks_file=tmp_path / "a", algorithms=[])
    with pytest.raises(ValidationError, match="unsupported algorithm"):
        JwtConfig(jwks_file=tmp_path / "a", algorithms=["rs256"])
    with pytest.raises(ValidationError, match="loopback"):
        JwtConfig(jwks_url="http://idp.example/jwks.json", algorithms=["RS256"])
    with pytest.raises(ValidationError):
        JwtConfig(jwks_file=tmp_path / "a", algorithms=["RS256"], issuer="")


def test_config_units_and_defaults(tmp_path) -> None:
    parsed = JwtConfig(jwks_url="https://idp.example/jwks", algorithms=["ES256", "ES256"],
                       leeway="1m", max_token_bytes="16KiB")
    assert parsed.algorithms == ["ES256"]
    assert parsed.leeway == 60.0 and parsed.max_token_bytes == 16384
    assert parsed.required_claims == ["exp"] and parsed.cache_size == 10_000
    assert JwtConfig(jwks_url="http://127.0.0.1:8080/jwks", algorithms=["RS256"])


def test_build_errors_are_config_errors(tmp_path, keys) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        JwtVerifier(JwtConfig(jwks_file=tmp_path / "missing.json", algorithms=["RS256"]))
    path = tmp_path / "ec.json"
    path.write_text(json.dumps({"keys": [jwk(keys["ec"], "ec-1")]}))
    with pytest.raises(ConfigError, match="no usable key"):
        JwtVerifier(JwtConfig(jwks_file=path, algorithms=["RS256"]))


# -- scopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("found", "expected"), [
    ({"scope": "a b  c"}, {"a", "b", "c"}),
    ({"scp": ["a", "b", 3]}, {"a", "b"}),
    ({"scp": "a b"}, {"a", "b"}),
    ({"scope": "a", "scp": ["b"]}, {"a"}),
    ({"scope": ""}, set()),
    ({"sub": "x"}, set()),
    ({"scope": {"a": 1}}, set()),
])
def test_token_scopes(found, expected) -> None:
    assert token_scopes(found) == expected
    assert token_scopes(Claims(found)) == expected
