"""API keys and JWTs through the running gateway, the spec saying who may call what:
alternatives, combinations, scopes, and every bad credential with its exact answer."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apiward.identity import apikeys
from apiward.state.store import open_store
from support.gateway import GatewayProcess
from support.proxy_fixtures import (
    CountingUpstream,
    gateway_config,
    read_events,
    start_gateway,
    wait_until,
)

ISSUER, AUDIENCE = "https://issuer.test", "bookshop"
OK = {"200": {"description": "ok"}}
SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "components": {"securitySchemes": {
        "key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "basic": {"type": "http", "scheme": "basic"},
        "ckey": {"type": "apiKey", "in": "cookie", "name": "session"},
        "oauth": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "https://issuer.test/token", "scopes": {"reports:read": "read"}}}},
    }},
    "security": [{"key": []}],
    "paths": {
        "/public": {"get": {"security": [], "responses": OK}},
        "/keyed": {"get": {"responses": OK}},
        "/orders": {"get": {"security": [{"key": ["orders:read"]}], "responses": OK}},
        "/bearer": {"get": {"security": [{"bearer": []}], "responses": OK}},
        "/reports": {"get": {"security": [{"oauth": ["reports:read"]}], "responses": OK}},
        "/either": {"get": {"security": [{"key": []}, {"bearer": []}], "responses": OK}},
        "/both": {"get": {"security": [{"key": [], "bearer": []}], "responses": OK}},
        "/basic": {"get": {"security": [{"basic": []}, {"key": []}], "responses": OK}},
        "/cookie": {"get": {"security": [{"ckey": []}], "responses": OK}},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("keys")
    store_path = directory / "apiward.db"

    async def make() -> dict[str, str]:
        store = open_store(str(store_path))
        made = {}
        for name, scopes, expires in (("plain", (), None), ("reader", ("orders:read",), None),
                                      ("gone", (), None),
                                      ("old", (), datetime.now(UTC) + timedelta(seconds=2))):
            _, made[name] = await apikeys.create(store, name, scopes, expires)
        await apikeys.revoke(store, "gone")
        await store.close()
        return made

    return {"store": store_path, **asyncio.run(make())}


@pytest.fixture(scope="module")
def setup(upstream: CountingUpstream, signing_key: rsa.RSAPrivateKey, keys: dict[str, Any],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    directory = tmp_path_factory.mktemp("identity")
    spec = directory / "openapi.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    (directory / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1",
                                                               "alg": "RS256", "use": "sig"}]}))
    jwt_config = {"jwks_file": "jwks.json", "algorithms": ["RS256"], "issuer": ISSUER,
                  "audience": AUDIENCE}
    events = directory / "events.jsonl"
    config = gateway_config(
        {"upstream": {"url": upstream.url}, "spec": str(spec), "checks": {"identity": {
            "key_store": str(keys["store"]),
            "schemes": {"key": {"api_keys": {}}, "ckey": {"api_keys": {}},
                        "bearer": {"jwt": jwt_config},
                        "oauth": {"jwt": jwt_config}},
        }}}, events_file=events)
    with start_gateway(config, directory) as gw:
        yield gw, events


@pytest.fixture(scope="module")
def gateway(setup: tuple[GatewayProcess, Path]) -> GatewayProcess:
    return setup[0]


def token(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300,
            **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return pyjwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def call(gw: GatewayProcess, path: str, key: str | None = None,
         bearer: str | None = None) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["X-API-Key"] = key
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return httpx.get(gw.url + path, headers=headers, timeout=10)


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["type"] == f"urn:apiward:problem:{reason}"
    assert response.json()["check"] == "identity"


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- API keys -------------------------------------------------------------------------------

def test_public_operations_need_nothing(gateway: GatewayProcess) -> None:
    assert call(gateway, "/public").status_code == 200


def test_a_valid_key_passes_and_is_the_identity(setup, keys) -> None:
    gateway, events = setup
    assert call(gateway, "/keyed", keys["plain"]).status_code == 200
    response = call(gateway, "/orders", keys["plain"])  # valid key, lacks the scope
    refused(response, 403, "insufficient_scope")
    rid = response.headers["x-request-id"]
    event = wait_until(lambda: next((e for e in read_events(events)
                                     if e["request_id"] == rid), None), message="the event")
    assert event["identity"] == "key:plain"
    assert keys["plain"] not in json.dumps(read_events(events))  # never the secret


@pytest.mark.parametrize(("who", "status", "reason"), [
    (None, 401, "missing_credentials"),
    ("gone", 401, "key_revoked"),
    ("forged", 401, "key_unknown"),
    ("garbage", 401, "key_malformed"),
])
def test_bad_keys(gateway: GatewayProcess, keys: dict[str, Any], upstream: CountingUpstream,
                  who: str | None, status: int, reason: str) -> None:
    presented = {"forged": keys["plain"][:-4] + "AAAA", "garbage": "hunter2",
                 None: None}.get(who, keys.get(who))  # type: ignore[call-overload]
    before = upstream.requests
    response = call(gateway, "/keyed", presented)
    refused(response, status, reason)
    assert response.headers["www-authenticate"].startswith("ApiKey")
    assert upstream.requests == before


def test_scopes_restrict_keys(gateway: GatewayProcess, keys: dict[str, Any]) -> None:
    assert call(gateway, "/orders", keys["reader"]).status_code == 200


def test_an_expired_key_is_refused(gateway: GatewayProcess, keys: dict[str, Any]) -> None:
    wait_until(lambda: call(gateway, "/keyed", keys["old"]).status_code == 401, timeout=15,
               message="the key to expire")
    refused(call(gateway, "/keyed", keys["old"]), 401, "key_expired")


# -- JWT ------------------------------------------------------------------------------------

def test_a_valid_token_passes(gateway: GatewayProcess, signing_key) -> None:
    assert call(gateway, "/bearer", bearer=token(signing_key)).status_code == 200


def forged_none(key: rsa.RSAPrivateKey) -> str:
    good = token(key)
    _, payload, _ = good.split(".")
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."


def forged_hs256(key: rsa.RSAPrivateKey) -> str:
    """HS256 "signed" with the RSA public key's PEM as the secret: the classic confusion."""
    import hashlib
    import hmac

    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    now = int(time.time())
    body = b64({"iss": ISSUER, "aud": AUDIENCE, "sub": "root", "exp": now + 300})
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def tampered(key: rsa.RSAPrivateKey) -> str:
    head, _, sig = token(key).split(".")
    now = int(time.time())
    return f"{head}.{b64({'iss': ISSUER, 'aud': AUDIENCE, 'sub': 'root', 'exp': now + 300})}.{sig}"


@pytest.mark.parametrize(("make", "reason"), [
    (forged_none, "invalid_token_algorithm"),
    (forged_hs256, "invalid_token_algorithm"),
    (tampered, "invalid_token_signature"),
    (lambda k: token(k, exp=int(time.time()) - 3600), "invalid_token_expired"),
    (lambda k: token(k, nbf=int(time.time()) + 3600), "invalid_token_not_yet_valid"),
    (lambda k: token(k, iss="https://evil.test"), "invalid_token_issuer"),
    (lambda k: token(k, aud="another-api"), "invalid_token_audience"),
    (lambda k: token(k, exp=None), "invalid_token_missing_claim"),
    (lambda k: pyjwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                            k, algorithm="RS256", headers={"kid": "../../etc/passwd"}),
     "invalid_token_unknown_key"),
    (lambda k: pyjwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                            rsa.generate_private_key(public_exponent=65537, key_size=2048),
                            algorithm="RS256",
                            headers={"kid": "k9", "jku": "http://127.0.0.1:9/jwks.json"}),
     "invalid_token_unknown_key"),
])
def test_bad_tokens_are_401(gateway: GatewayProcess, signing_key, upstream, make,
                            reason: str) -> None:
    before = upstream.requests
    response = call(gateway, "/bearer", bearer=make(signing_key))
    refused(response, 401, reason)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert upstream.requests == before


def test_a_huge_token_is_refused_before_any_work(gateway: GatewayProcess, signing_key) -> None:
    response = call(gateway, "/bearer", bearer="a" * 12_000)
    refused(response, 401, "invalid_token_too_large")


def test_oauth_scopes_come_from_the_token(gateway: GatewayProcess, signing_key) -> None:
    refused(call(gateway, "/reports", bearer=token(signing_key, scope="orders:read")), 403,
            "insufficient_scope")
    assert call(gateway, "/reports",
                bearer=token(signing_key, scope="orders:read reports:read")).status_code == 200
    assert call(gateway, "/reports",
                bearer=token(signing_key, scp=["reports:read"])).status_code == 200


# -- alternatives and combinations ----------------------------------------------------------

def test_alternatives_any_one_suffices(gateway, signing_key, keys) -> None:
    assert call(gateway, "/either", keys["plain"]).status_code == 200
    assert call(gateway, "/either", bearer=token(signing_key)).status_code == 200
    response = call(gateway, "/either")
    refused(response, 401, "missing_credentials")
    assert len(response.headers.get_list("www-authenticate")) == 2


def test_combinations_need_all(gateway, signing_key, keys) -> None:
    assert call(gateway, "/both", keys["plain"], token(signing_key)).status_code == 200
    refused(call(gateway, "/both", keys["plain"]), 401, "missing_credentials")
    refused(call(gateway, "/both", bearer=token(signing_key)), 401, "missing_credentials")


def test_basic_auth_is_never_accepted_but_an_alternative_is(gateway, keys) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
    response = httpx.get(gateway.url + "/basic", headers=basic, timeout=10)
    assert response.status_code == 401
    assert call(gateway, "/basic", keys["plain"]).status_code == 200


def test_a_key_in_the_cookie_the_spec_names(gateway: GatewayProcess, keys) -> None:
    def with_cookie(value: str) -> httpx.Response:
        return httpx.get(gateway.url + "/cookie", headers={"Cookie": value}, timeout=10)
    assert with_cookie(f"theme=dark; session={keys['plain']}").status_code == 200
    refused(with_cookie("theme=dark"), 401, "missing_credentials")
    refused(with_cookie(f"session={keys['gone']}"), 401, "key_revoked")
