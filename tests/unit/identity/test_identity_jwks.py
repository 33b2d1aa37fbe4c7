"""Which keys a JWKS or a key file yields, and to which algorithms each is bound."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import get_default_algorithms

from apiward.identity.jwks import JwksError, KeySet, check_jwks_url, load_key_file, parse_jwks

RSA_ALL = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private: Any, **extra: Any) -> dict[str, Any]:
    loader = "RS256" if isinstance(private, rsa.RSAPrivateKey) else \
        "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "EdDSA"
    found = get_default_algorithms()[loader].to_jwk(private.public_key(), as_dict=True)
    found.pop("key_ops", None)
    return {**found, **extra}


def parse(keys: list[Any], allowed: list[str], allow_oct: bool = True) -> KeySet:
    return parse_jwks(json.dumps({"keys": keys}).encode(), allowed, allow_oct=allow_oct)


def verifies(key_set: KeySet, kid: str, alg: str, private: Any) -> bool:
    algorithm = get_default_algorithms()[alg]
    signature = algorithm.sign(b"message", private)
    return key_set.by_kid[kid][alg].verify(b"message", signature)


def test_a_key_without_alg_serves_every_allowed_algorithm_of_its_kind(rsa_key) -> None:
    found = parse([public_jwk(rsa_key, kid="r")], ["RS256", "PS256", "ES256"])
    assert set(found.by_kid["r"]) == {"RS256", "PS256"}
    assert verifies(found, "r", "PS256", rsa_key)
    assert found.algorithms == {"RS256", "PS256"}


def test_a_declared_alg_binds_the_key_to_it(rsa_key) -> None:
    found = parse([public_jwk(rsa_key, kid="r", alg="RS384")], RSA_ALL)
    assert set(found.by_kid["r"]) == {"RS384"}
    with pytest.raises(JwksError, match="no usable key"):
        parse([public_jwk(rsa_key, kid="r", alg="RS384")], ["RS256"])


def test_private_members_are_ignored(rsa_key) -> None:
    private_jwk = get_default_algorithms()["RS256"].to_jwk(rsa_key, as_dict=True)
    del private_jwk["key_ops"]
    found = parse([{**private_jwk, "kid": "r"}], ["RS256"])
    assert verifies(found, "r", "RS256", rsa_key)  # a public key does the verifying


@pytest.mark.parametrize("extra", [
    {"use": "enc"},
    {"key_ops": ["encrypt"]},
    {"key_ops": "verify"},
    {"alg": "ES256"},  # an RSA key cannot be an ES256 key
    {"alg": "HS256"},
    {"alg": "none"},
    {"kid": 5},
    {"kty": "RSA", "n": 5},
    {"kty": "XYZ"},
])
def test_unusable_keys_are_skipped(rsa_key, extra) -> None:
    good = public_jwk(rsa_key, kid="good")
    found = parse([{**public_jwk(rsa_key, kid="bad"), **extra}, good, "junk", 7], RSA_ALL)
    assert set(found.by_kid) == {"good"}


def test_small_rsa_keys_and_short_secrets_are_refused(rsa_key) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    found = parse([public_jwk(small, kid="small"), public_jwk(rsa_key, kid="ok")], ["RS256"])
    assert set(found.by_kid) == {"ok"}
    secrets = [{"kty": "oct", "kid": "short", "k": b64(b"s" * 31)},
               {"kty": "oct", "kid": "40", "k": b64(b"s" * 40)}]
    found = parse(secrets, ["HS256", "HS384"])
    assert set(found.by_kid) == {"40"} and set(found.by_kid["40"]) == {"HS256"}


def test_oct_keys_only_when_allowed(rsa_key) -> None:
    keys = [{"kty": "oct", "kid": "h", "k": b64(b"s" * 32)}, public_jwk(rsa_key, kid="r")]
    assert set(parse(keys, ["HS256", "RS256"], allow_oct=False).by_kid) == {"r"}
    assert set(parse(keys, ["HS256", "RS256"], allow_oct=True).by_kid) == {"h", "r"}


def test_curves_pick_their_algorithm() -> None:
    p256, p384 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    found = parse([public_jwk(p256, kid="a"), public_jwk(p384, kid="b"),
                   public_jwk(ed, kid="c")], ["ES256", "ES384", "EdDSA"])
    assert {kid: set(algs) for kid, algs in found.by_kid.items()} == {
        "a": {"ES256"}, "b": {"ES384"}, "c": {"EdDSA"}}
    assert verifies(found, "b", "ES384", p384) and verifies(found, "c", "EdDSA", ed)
    assert not verifies(found, "a", "ES256", ec.generate_private_key(ec.SECP256R1()))
    # a P-256 key claiming ES384 does not fit
    with pytest.raises(JwksError):
        parse([public_jwk(p256, kid="a", alg="ES384")], ["ES384"])


def test_sole_keys_and_duplicate_kids(rsa_key) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    found = parse([public_jwk(rsa_key, kid="a"), public_jwk(other, kid="a")], ["RS256"])
    assert verifies(found, "a", "RS256", rsa_key)  # the first one wins
    assert "RS256" in found.sole
    two = parse([public_jwk(rsa_key, kid="a"), public_jwk(other, kid="b")], ["RS256"])
    assert "RS256" not in two.sole


def test_fingerprints_tell_changed_sets_apart(rsa_key) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    a, b = public_jwk(rsa_key, kid="a"), public_jwk(other, kid="b")
    assert parse([a, b], ["RS256"]).fingerprint == parse([b, {**a, "x5t": "t"}],
                                                         ["RS256"]).fingerprint
    assert parse([a, b], ["RS256"]).fingerprint != parse([a], ["RS256"]).fingerprint
    assert parse([a], ["RS256"]).fingerprint != parse([{**a, "kid": "c"}],
                                                      ["RS256"]).fingerprint


@pytest.mark.parametrize("document", [b"", b"{", b"[]", b'{"keys": {}}', b'{"keys": []}',
                                      b'{"other": 1}'])
def test_invalid_documents(document) -> None:
    with pytest.raises(JwksError):
        parse_jwks(document, ["RS256"], allow_oct=False)


# -- key files -------------------------------------------------------------------------------


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "key"
    path.write_bytes(data)
    return path


def public_pem(private: Any) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def test_pem_public_keys_bind_their_family(tmp_path, rsa_key) -> None:
    found = load_key_file(write(tmp_path, public_pem(rsa_key)), ["RS256", "PS512"])
    assert found.static and set(found.sole) == {"RS256", "PS512"}
    ed = ed25519.Ed25519PrivateKey.generate()
    assert set(load_key_file(write(tmp_path, public_pem(ed)), ["EdDSA"]).sole) == {"EdDSA"}
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert set(load_key_file(write(tmp_path, public_pem(p384)), ["ES384"]).sole) == {"ES384"}
    with pytest.raises(JwksError, match="cannot verify ES256"):
        load_key_file(write(tmp_path, public_pem(p384)), ["ES256"])
    with pytest.raises(JwksError, match="cannot verify HS256, RS256"):
        load_key_file(write(tmp_path, public_pem(ed)), ["HS256", "RS256"])


def test_a_certificate_gives_its_public_key(tmp_path, rsa_key) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(rsa_key.public_key()).serial_number(1)
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(rsa_key, hashes.SHA256()))
    path = write(tmp_path, certificate.public_bytes(serialization.Encoding.PEM))
    found = load_key_file(path, ["RS256"])
    signature = get_default_algorithms()["RS256"].sign(b"m", rsa_key)
    assert found.sole["RS256"].verify(b"m", signature)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\n", "empty"),
    (b"s" * 31, "cannot verify HS256"),
    (b"ssh-rsa AAAAB3NzaC1yc2E", "SSH key"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
])
def test_bad_key_files(tmp_path, data, message) -> None:
    with pytest.raises(JwksError, match=message):
        load_key_file(write(tmp_path, data), ["HS256"])


def test_a_private_key_file_is_refused(tmp_path, rsa_key) -> None:
    data = rsa_key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    with pytest.raises(JwksError, match="a private key"):
        load_key_file(write(tmp_path, data), ["RS256"])
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(JwksError, match="1024 bits"):
        load_key_file(write(tmp_path, public_pem(small)), ["RS256"])


def test_hmac_secret_lengths(tmp_path) -> None:
    found = load_key_file(write(tmp_path, b"s" * 48 + b"\r\n"), ["HS256", "HS384"])
    assert set(found.sole) == {"HS256", "HS384"}
    with pytest.raises(JwksError, match="cannot verify HS512"):
        load_key_file(write(tmp_path, b"s" * 48), ["HS512"])


@pytest.mark.parametrize(("url", "ok"), [
    ("https://idp.example/.well-known/jwks.json", True),
    ("http://127.0.0.1:8080/jwks", True),
    ("http://127.5.5.5/jwks", True),
    ("http://[::1]:9000/jwks", True),
    ("http://localhost/jwks", True),
    ("http://idp.example/jwks", False),
    ("http://10.0.0.1/jwks", False),
    ("file:///etc/passwd", False),
    ("ftp://idp.example/jwks", False),
    ("https:///jwks", False),
    ("jwks.json", False),
])
def test_jwks_url_policy(url, ok) -> None:
    if ok:
        assert check_jwks_url(url) == url
    else:
        with pytest.raises(ValueError):
            check_jwks_url(url)


def test_a_url_that_does_not_answer_http_is_a_jwks_error() -> None:
    import socket
    import threading

    from apiward.identity.jwks import fetch_jwks

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(JwksError, match="not a valid HTTP answer"):
            fetch_jwks(f"http://127.0.0.1:{server.getsockname()[1]}/jwks", timeout=5)
    finally:
        thread.join(5)
        server.close()
