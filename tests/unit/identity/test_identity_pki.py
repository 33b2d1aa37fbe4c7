"""The little CA (identity/pki.py) and the certificate helpers (identity/certs.py), with real
files under tmp_path and real TLS handshakes on 127.0.0.1 with the certificates it issues."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from apiward.identity.certs import (
    CrlError,
    CrlWatcher,
    cert_facts,
    header_value,
    load_crl,
)
from apiward.identity.pki import CaError, CertificateAuthority, parse_san


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def der(path: Path) -> bytes:
    return read_cert(path).public_bytes(serialization.Encoding.DER)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "ca")


# -- init and load -------------------------------------------------------------------------


def test_init_writes_a_ca_with_private_modes(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", name="Example CA", days=30)
    directory = tmp_path / "ca"
    assert mode(directory) == 0o700
    assert mode(directory / "issued") == 0o700
    assert mode(directory / "ca.key") == 0o600
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"

    cert = read_cert(directory / "ca.crt")
    cert.verify_directly_issued_by(cert)  # self-signed
    assert cert.subject.rfc4514_string() == "CN=Example CA"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=30) <= lifetime <= timedelta(days=30, minutes=10)
    assert ca.certificate == cert

    crl = load_crl(directory / "crl.pem", issuer=cert)  # signed by the CA, empty
    assert len(crl) == 0 and crl.number == 1
    assert json.loads((directory / "index.json").read_text())["certificates"] == []
    assert ca.list() == []


def test_init_with_rsa_makes_an_rsa_3072_ca_issuing_rsa_keys(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", key_type="rsa")
    assert isinstance(ca.key, rsa.RSAPrivateKey) and ca.key.key_size == 3072
    issued = ca.issue("alice")
    key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    read_cert(issued.cert).verify_directly_issued_by(ca.certificate)


def test_init_refuses_to_overwrite_a_ca(ca: CertificateAuthority) -> None:
    before = ca.key_path.read_bytes()
    with pytest.raises(CaError, match=r"already holds a CA .*refusing to overwrite"):
        CertificateAuthority.init(ca.directory)
    assert ca.key_path.read_bytes() == before


def test_init_in_an_existing_empty_directory_tightens_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    directory.mkdir(mode=0o755)
    CertificateAuthority.init(directory)
    assert mode(directory) == 0o700


def test_init_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(CaError, match="key type 'dsa'"):
        CertificateAuthority.init(tmp_path / "a", key_type="dsa")  # type: ignore[arg-type]
    with pytest.raises(CaError, match="days 0"):
        CertificateAuthority.init(tmp_path / "b", days=0)
    with pytest.raises(CaError, match="CA name"):
        CertificateAuthority.init(tmp_path / "c", name="bad\nname")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_load_reads_the_ca_back(ca: CertificateAuthority) -> None:
    ca.issue("alice")
    again = CertificateAuthority.load(ca.directory)
    assert again.certificate == ca.certificate
    assert [e.name for e in again.list()] == ["alice"]


def _ed25519_cert_pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed25519 CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now()).not_valid_after(now() + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, None))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_load_says_what_is_wrong_and_what_to_do(tmp_path: Path,
                                                ca: CertificateAuthority) -> None:
    with pytest.raises(CaError, match=r"no CA directory at .*apiward ca init --dir"):
        CertificateAuthority.load(tmp_path / "nowhere")

    other = CertificateAuthority.init(tmp_path / "other")
    good_key = ca.key_path.read_bytes()
    ca.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(CaError, match=r"ca.key does not belong to the certificate"):
        CertificateAuthority.load(ca.directory)
    good_cert = ca.cert_path.read_bytes()
    ca.cert_path.write_bytes(_ed25519_cert_pem())  # a kind of key with no public_numbers
    with pytest.raises(CaError, match=r"ca.key does not belong to the certificate"):
        CertificateAuthority.load(ca.directory)
    ca.cert_path.write_bytes(good_cert)
    ca.key_path.write_bytes(b"not a key")
    with pytest.raises(CaError, match=r"ca.key: not a PEM private key"):
        CertificateAuthority.load(ca.directory)
    ca.key_path.unlink()
    with pytest.raises(CaError, match=r"ca.key: missing \(the CA's private key\)"):
        CertificateAuthority.load(ca.directory)
    ca.key_path.write_bytes(good_key)

    good_cert = ca.cert_path.read_bytes()
    ca.cert_path.write_text("garbage")
    with pytest.raises(CaError, match=r"ca.crt: not a PEM certificate"):
        CertificateAuthority.load(ca.directory)
    ca.cert_path.write_bytes(good_cert)

    ca.index_path.write_text("{not json")
    with pytest.raises(CaError, match=r"index.json: not a valid index"):
        CertificateAuthority.load(ca.directory)
    ca.index_path.unlink()
    with pytest.raises(CaError, match=r"index.json: missing"):
        CertificateAuthority.load(ca.directory)


def test_load_says_when_a_file_is_unreadable(ca: CertificateAuthority) -> None:
    ca.key_path.unlink()
    ca.key_path.mkdir()  # unreadable even for root
    with pytest.raises(CaError, match=r"ca.key: cannot read the CA's private key"):
        CertificateAuthority.load(ca.directory)


# -- issuing -------------------------------------------------------------------------------


def test_issue_writes_a_client_certificate_the_ca_signed(ca: CertificateAuthority) -> None:
    issued = ca.issue("alice", sans=["alice@example.com", "10.0.0.7", "::1",
                                     "spiffe://example.org/alice", "api.example.com"])
    assert issued.key == ca.directory / "issued" / "alice.key"
    assert issued.cert == ca.directory / "issued" / "alice.crt"
    assert issued.chain == ca.directory / "issued" / "alice-chain.pem"
    assert issued.p12 is None and not (ca.directory / "issued" / "alice.p12").exists()
    assert mode(issued.key) == 0o600

    cert = read_cert(issued.cert)
    cert.verify_directly_issued_by(ca.certificate)
    key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
    assert key.public_key() == cert.public_key()
    assert cert.subject.rfc4514_string() == "CN=alice"
    assert 0 < cert.serial_number < 2**128
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.value.digest

    entry = issued.entry
    assert entry.sans == ("email:alice@example.com", "IP:10.0.0.7", "IP:::1",
                          "URI:spiffe://example.org/alice", "DNS:api.example.com")
    assert entry.kind == "client" and entry.status == "valid" and entry.revoked_at is None
    facts = cert_facts(der(issued.cert))
    assert (facts.subject, facts.sans, facts.serial, facts.fingerprint) == (
        entry.subject, entry.sans, entry.serial, entry.fingerprint)
    assert (facts.not_before, facts.not_after) == (entry.not_before, entry.not_after)
    assert timedelta(days=365, seconds=-2) <= entry.not_after - now() <= timedelta(days=365)

    chain = x509.load_pem_x509_certificates(issued.chain.read_bytes())
    assert chain == [cert, ca.certificate]


def test_serials_are_random_and_distinct(ca: CertificateAuthority) -> None:
    serials = {ca.issue(f"c{i}").entry.serial for i in range(8)}
    assert len(serials) == 8
    assert max(len(s) for s in serials) > 24  # 128 random bits, not a counter


def test_a_server_certificate_is_for_serverauth_and_named_by_default(
        ca: CertificateAuthority) -> None:
    issued = ca.issue("api.example.com", kind="server")
    cert = read_cert(issued.cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert issued.entry.sans == ("DNS:api.example.com",)
    assert ca.issue("10.1.1.1", kind="server").entry.sans == ("IP:10.1.1.1",)


def test_issue_writes_a_pkcs12_bundle_that_loads_with_its_password(
        ca: CertificateAuthority) -> None:
    issued = ca.issue("alice", pkcs12_password="correct horse")
    assert issued.p12 == ca.directory / "issued" / "alice.p12"
    assert mode(issued.p12) == 0o600
    bundle = pkcs12.load_pkcs12(issued.p12.read_bytes(), b"correct horse")
    assert bundle.cert is not None and bundle.cert.certificate == read_cert(issued.cert)
    assert bundle.cert.friendly_name == b"alice"
    assert [c.certificate for c in bundle.additional_certs] == [ca.certificate]
    assert bundle.key is not None
    assert bundle.key.public_key() == read_cert(issued.cert).public_key()
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(issued.p12.read_bytes(), b"wrong")
    with pytest.raises(CaError, match="PKCS#12 password is empty"):
        ca.issue("bob", pkcs12_password="")


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "", ".hidden", "a..b", "-x",
                                  "x" * 65, "sp ace", "new\nline", "é"])
def test_names_that_are_no_safe_file_name_are_refused(ca: CertificateAuthority,
                                                       name: str) -> None:
    with pytest.raises(CaError, match="certificate name"):
        ca.issue(name)
    assert list((ca.directory / "issued").iterdir()) == []
    assert sorted(p.name for p in ca.directory.parent.iterdir()) == ["ca"]


def test_issuing_a_name_again_is_refused_until_it_is_revoked(
        ca: CertificateAuthority) -> None:
    first = ca.issue("alice")
    for name in ("alice", "ALICE"):  # case-insensitive file systems would mix them
        with pytest.raises(CaError, match=r"'alice' was already issued .*revoke it first"
                                          r".*or pick another name"):
            ca.issue(name)
    assert read_cert(first.cert).serial_number == int(first.entry.serial, 16)
    ca.revoke("alice")
    second = ca.issue("alice")
    assert second.entry.serial != first.entry.serial
    assert [e.status for e in ca.list()] == ["revoked", "valid"]


@pytest.mark.parametrize(("san", "text"), [
    ("example.com", "DNS:example.com"), ("*.example.com", "DNS:*.example.com"),
    ("192.0.2.1", "IP:192.0.2.1"), ("2001:db8::1", "IP:2001:db8::1"),
    ("ops@example.com", "email:ops@example.com"),
    ("https://example.com/x", "URI:https://example.com/x"),
    ("DNS:10.0.0.1", "DNS:10.0.0.1"), ("URI:urn:example:alice", "URI:urn:example:alice"),
    ("email:ops@example.com", "email:ops@example.com"), ("IP:127.0.0.1", "IP:127.0.0.1"),
])
def test_sans_are_told_apart_by_form_or_prefix(san: str, text: str) -> None:
    from apiward.identity.certs import san_text

    assert san_text(parse_san(san)) == text


@pytest.mark.parametrize("san", ["", "bad name", "-x.example.com", "IP:999.1.1.1",
                                 "a@", "@b", "héllo.example", "x\r\ny", "URI:no spaces?",
                                 "a..b"])
def test_bad_sans_are_refused(ca: CertificateAuthority, san: str) -> None:
    with pytest.raises(CaError, match="SAN"):
        ca.issue("alice", sans=[san])
    assert ca.list() == []


def test_explicit_validity_makes_expired_and_not_yet_valid_certificates(
        ca: CertificateAuthority) -> None:
    old = ca.issue("old", not_before=now() - timedelta(days=10),
                   not_after=now() - timedelta(days=1))
    future = ca.issue("future", not_before=now() + timedelta(days=1),
                      not_after=now() + timedelta(days=2))
    assert old.entry.status == "expired" and future.entry.status == "not-yet-valid"
    assert read_cert(old.cert).not_valid_after_utc < now()
    assert read_cert(future.cert).not_valid_before_utc > now()
    statuses = {e.name: e.status for e in CertificateAuthority.load(ca.directory).list()}
    assert statuses == {"old": "expired", "future": "not-yet-valid"}
    assert {e.name: e.status for e in ca.list(now=now() + timedelta(days=1, hours=1))} == {
        "old": "expired", "future": "valid"}


def test_validity_that_makes_no_sense_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CaError, match="not after not_before"):
        ca.issue("x", not_before=now(), not_after=now() - timedelta(seconds=1))
    with pytest.raises(CaError, match="timezone-aware"):
        ca.issue("x", not_after=datetime(2030, 1, 1))
    with pytest.raises(CaError, match=r"outlive the CA.*--days \d+ or fewer"):
        ca.issue("x", days=3651)
    with pytest.raises(CaError, match="days 0"):
        ca.issue("x", days=0)
    assert ca.list() == []


# -- revoking and the CRL ------------------------------------------------------------------


def test_revoke_puts_the_serial_in_a_new_signed_crl(ca: CertificateAuthority) -> None:
    alice, bob = ca.issue("alice"), ca.issue("bob")
    revoked = ca.revoke("alice")
    assert revoked.status == "revoked" and revoked.revoked_at is not None
    crl = load_crl(ca.crl_path, issuer=ca.certificate)
    assert crl.is_revoked(int(alice.entry.serial, 16))
    assert not crl.is_revoked(int(bob.entry.serial, 16))
    assert crl.number == 2
    assert crl.next_update is not None
    assert timedelta(days=6, hours=23) < crl.next_update - now() <= timedelta(days=7)
    assert abs(crl.this_update - now()) < timedelta(minutes=1)
    assert not crl.expired()

    pem = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert pem.is_signature_valid(ca.certificate.public_key())
    entry = pem.get_revoked_certificate_by_serial_number(int(alice.entry.serial, 16))
    assert entry is not None and entry.revocation_date_utc == revoked.revoked_at

    # by serial, in any usual spelling; the CRL number goes on counting
    serial = bob.entry.serial.upper()
    ca.revoke("0x" + ":".join(serial[i:i + 2] for i in range(0, len(serial), 2)))
    crl = load_crl(ca.crl_path, issuer=ca.certificate)
    assert crl.number == 3 and len(crl) == 2
    assert {e.name: e.status for e in CertificateAuthority.load(ca.directory).list()} == {
        "alice": "revoked", "bob": "revoked"}


def test_revoke_moves_the_files_aside(ca: CertificateAuthority) -> None:
    issued = ca.issue("alice", pkcs12_password="pw")
    ca.revoke("alice")
    aside = ca.directory / "issued" / "revoked"
    serial = issued.entry.serial
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        f"alice-{serial}{suffix}" for suffix in (".key", ".crt", "-chain.pem", ".p12"))
    assert mode(aside / f"alice-{serial}.key") == 0o600
    assert not issued.key.exists() and not issued.cert.exists()


def test_revoke_refuses_unknown_and_twice(ca: CertificateAuthority) -> None:
    ca.issue("alice")
    with pytest.raises(CaError, match=r"no certificate named or with serial 'bob'"):
        ca.revoke("bob")
    with pytest.raises(CaError, match=r"no certificate named or with serial 'abcdef'"):
        ca.revoke("abcdef")
    ca.revoke("alice")
    with pytest.raises(CaError, match="already revoked"):
        ca.revoke("alice")
    assert load_crl(ca.crl_path).number == 2  # the refusals wrote nothing


def test_refresh_crl_resigns_with_the_same_revocations(ca: CertificateAuthority) -> None:
    serial = int(ca.issue("alice").entry.serial, 16)
    ca.revoke("alice")
    ca.refresh_crl()
    crl = load_crl(ca.crl_path, issuer=ca.certificate)
    assert crl.number == 3 and crl.is_revoked(serial) and len(crl) == 1


def test_index_survives_a_reload_exactly(ca: CertificateAuthority) -> None:
    ca.issue("alice", sans=["a.example.com"])
    ca.issue("api", kind="server", pkcs12_password="pw")
    ca.revoke("alice")
    before = ca.list()
    after = CertificateAuthority.load(ca.directory).list()
    assert after == before
    assert mode(ca.index_path) == 0o600


def test_concurrent_issues_lose_no_entry(ca: CertificateAuthority) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            CertificateAuthority.load(ca.directory).issue(f"c{i}")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(e.name for e in ca.list()) == [f"c{i}" for i in range(8)]


# -- real TLS handshakes -------------------------------------------------------------------


def handshake(server: ssl.SSLContext, client: ssl.SSLContext,
              hostname: str = "localhost") -> dict[str, Any]:
    """One TLS connection on 127.0.0.1 and a ping/pong over it; what each side saw."""
    result: dict[str, Any] = {}
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                result["peer"] = tls.getpeercert(binary_form=True)
                if tls.recv(4) == b"ping":
                    tls.sendall(b"pong")
        except (ssl.SSLError, OSError) as error:
            result["server_error"] = error

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as raw, \
                client.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(b"ping")
            if tls.recv(4) != b"pong":
                raise ConnectionError("no answer")
            result["ok"] = True
    except (ssl.SSLError, OSError) as error:
        result["client_error"] = error
    finally:
        thread.join(5)
        listener.close()
    return result


def server_context(ca: CertificateAuthority, crl: bool = False) -> ssl.SSLContext:
    issued = ca.issue("localhost", kind="server", sans=["localhost", "127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    context.load_verify_locations(cafile=ca.cert_path)
    context.verify_mode = ssl.CERT_REQUIRED
    if crl:
        context.load_verify_locations(cafile=ca.crl_path)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def client_context(ca: CertificateAuthority, cert: Path | None,
                   key: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + hostname check
    context.load_verify_locations(cafile=ca.cert_path)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_mutual_tls_handshake_with_issued_certificates(tmp_path: Path, key_type: str) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", key_type=key_type)  # type: ignore[arg-type]
    server = server_context(ca)
    alice = ca.issue("alice", sans=["alice@example.com"])
    for hostname in ("localhost", "127.0.0.1"):
        result = handshake(server, client_context(ca, alice.cert, alice.key), hostname)
        assert result.get("ok"), result
        facts = cert_facts(result["peer"])
        assert facts.fingerprint == alice.entry.fingerprint
        assert facts.subject == "CN=alice" and facts.issuer == "CN=apiward CA"
        assert facts.sans == ("email:alice@example.com",)


def test_the_chain_file_and_p12_work_as_client_credentials(ca: CertificateAuthority,
                                                           tmp_path: Path) -> None:
    server = server_context(ca)
    alice = ca.issue("alice", pkcs12_password="pw")
    result = handshake(server, client_context(ca, alice.chain, alice.key))
    assert result.get("ok"), result
    bundle = pkcs12.load_pkcs12(alice.p12.read_bytes(), b"pw")  # type: ignore[union-attr]
    assert bundle.key is not None and bundle.cert is not None
    pem = tmp_path / "from-p12.pem"
    pem.write_bytes(bundle.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()) + bundle.cert.certificate.public_bytes(
        serialization.Encoding.PEM))
    assert handshake(server, client_context(ca, pem, None)).get("ok")


def refused(result: dict[str, Any], reason: str) -> None:
    assert not result.get("ok"), result
    assert reason in str(result.get("server_error")), result


def test_handshakes_the_server_refuses(ca: CertificateAuthority, tmp_path: Path) -> None:
    server = server_context(ca)
    expired = ca.issue("expired", not_before=now() - timedelta(days=10),
                       not_after=now() - timedelta(days=1))
    future = ca.issue("future", not_before=now() + timedelta(days=1),
                      not_after=now() + timedelta(days=2))
    wrong_kind = ca.issue("a-server", kind="server")
    other = CertificateAuthority.init(tmp_path / "other").issue("alice")

    refused(handshake(server, client_context(ca, None, None)),
            "PEER_DID_NOT_RETURN_A_CERTIFICATE")
    refused(handshake(server, client_context(ca, expired.cert, expired.key)),
            "certificate has expired")
    refused(handshake(server, client_context(ca, future.cert, future.key)),
            "certificate is not yet valid")
    refused(handshake(server, client_context(ca, other.cert, other.key)),
            "unable to get local issuer certificate")
    refused(handshake(server, client_context(ca, wrong_kind.cert, wrong_kind.key)),
            "unsuitable certificate purpose")


def test_openssl_refuses_a_certificate_revoked_in_the_crl(ca: CertificateAuthority) -> None:
    alice, bob = ca.issue("alice"), ca.issue("bob")
    ca.revoke("alice")
    server = server_context(ca, crl=True)  # OpenSSL itself reads our crl.pem
    refused(handshake(server, client_context(ca, *_moved(ca, alice))),
            "certificate revoked")
    assert handshake(server, client_context(ca, bob.cert, bob.key)).get("ok")


def _moved(ca: CertificateAuthority, issued: Any) -> tuple[Path, Path]:
    aside = ca.directory / "issued" / "revoked"
    name, serial = issued.entry.name, issued.entry.serial
    return aside / f"{name}-{serial}.crt", aside / f"{name}-{serial}.key"


def test_a_client_checking_the_hostname_refuses_a_wrong_name(
        ca: CertificateAuthority) -> None:
    server = server_context(ca)
    alice = ca.issue("alice")
    result = handshake(server, client_context(ca, alice.cert, alice.key), "api.example.com")
    assert "Hostname mismatch" in str(result.get("client_error")), result


# -- cert_facts ----------------------------------------------------------------------------


def test_cert_facts_are_cached_by_the_der_bytes(ca: CertificateAuthority) -> None:
    data = der(ca.issue("alice").cert)
    first = cert_facts(data)
    assert cert_facts(bytes(bytearray(data))) is first  # equal bytes, another object
    assert cert_facts(memoryview(data)) is first  # type: ignore[arg-type]
    assert first.serial == format(int(first.serial, 16), "x")
    assert len(first.fingerprint) == 64 and first.fingerprint == first.fingerprint.lower()
    with pytest.raises(ValueError):
        cert_facts(b"\x30\x03\x02\x01\x01")


def test_cert_facts_of_a_subject_with_odd_characters(ca: CertificateAuthority) -> None:
    ca_cert = CertificateAuthority.init(ca.directory.parent / "odd", name="Ops, Inc. \"CA\"")
    facts = cert_facts(der(ca_cert.issue("alice").cert))
    assert facts.issuer == 'CN=Ops\\, Inc. \\"CA\\"'


# -- header_value --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("CN=alice,O=Example", "CN=alice,O=Example"),
    ("CN=evil\r\nX-Admin: yes", "CN=evil%0D%0AX-Admin: yes"),
    ("nul\x00del\x7ftab\t", "nul%00del%7Ftab%09"),
    ("100%", "100%25"),
    ("CN=Zoë", "CN=Zo%C3%AB"),
    (" padded ", "%20padded%20"),
    ("", ""),
    ("DNS:a.example, IP:10.0.0.1", "DNS:a.example, IP:10.0.0.1"),
])
def test_header_value_encodes_what_a_header_cannot_carry(text: str, value: str) -> None:
    assert header_value(text) == value


def test_header_value_leaves_only_visible_ascii_for_every_character() -> None:
    from urllib.parse import unquote

    text = "".join(chr(c) for c in range(0, 0x180)) + "\u2028\U0001f600"
    value = header_value(text)
    assert all(0x20 <= ord(c) < 0x7F for c in value)
    assert unquote(value) == text  # nothing lost, one reading


# -- load_crl and CrlWatcher ---------------------------------------------------------------


def test_load_crl_errors_name_the_file(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(CrlError, match=r"nope.pem: no such file"):
        load_crl(tmp_path / "nope.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
    with pytest.raises(CrlError, match=r"garbage.pem: not a certificate revocation list"):
        load_crl(garbage)
    garbage.write_bytes(b"")
    with pytest.raises(CrlError, match="empty"):
        load_crl(garbage)
    other = CertificateAuthority.init(tmp_path / "other")
    with pytest.raises(CrlError, match=r"not signed by the CA CN=apiward CA"):
        load_crl(other.crl_path, issuer=ca.certificate)


def test_load_crl_reads_der_and_several_cas_in_one_file(ca: CertificateAuthority,
                                                       tmp_path: Path) -> None:
    other = CertificateAuthority.init(tmp_path / "other", name="Other CA")
    mine = int(ca.issue("alice").entry.serial, 16)
    theirs = int(other.issue("bob").entry.serial, 16)
    ca.revoke("alice")
    other.revoke("bob")

    der_file = tmp_path / "crl.der"
    der_file.write_bytes(x509.load_pem_x509_crl(ca.crl_path.read_bytes()).public_bytes(
        serialization.Encoding.DER))
    assert load_crl(der_file, issuer=ca.certificate).is_revoked(mine)

    both = tmp_path / "both.pem"
    both.write_bytes(ca.crl_path.read_bytes() + other.crl_path.read_bytes())
    crl = load_crl(both)
    assert crl.issuers == ("CN=apiward CA", "CN=Other CA")
    assert crl.is_revoked(mine) and crl.is_revoked(theirs)
    assert crl.is_revoked(mine, issuer="CN=apiward CA")
    assert not crl.is_revoked(mine, issuer="CN=Other CA")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_crl_watcher_reloads_a_changed_file_at_most_once_an_interval(
        ca: CertificateAuthority) -> None:
    clock = Clock()
    watcher = CrlWatcher(ca.crl_path, issuer=ca.certificate, clock=clock)
    first = watcher.current()
    assert watcher.current() is first and len(first) == 0

    serial = int(ca.issue("alice").entry.serial, 16)
    ca.revoke("alice")
    clock.now += 0.5
    assert watcher.current() is first  # not looked at yet
    clock.now += 0.6
    second = watcher.current()
    assert second is not first and second.is_revoked(serial)
    clock.now += 5
    assert watcher.current() is second  # unchanged file: not read again


def test_crl_watcher_keeps_the_last_good_list_and_reports_once(
        ca: CertificateAuthority, caplog: pytest.LogCaptureFixture) -> None:
    serial = int(ca.issue("alice").entry.serial, 16)
    ca.revoke("alice")
    clock = Clock()
    watcher = CrlWatcher(ca.crl_path, clock=clock)
    good = watcher.current()
    caplog.set_level(logging.WARNING, logger="apiward.identity.certs")

    for junk in (b"broken", b"still broken!"):
        ca.crl_path.write_bytes(junk)
        clock.now += 2
        assert watcher.current() is good and good.is_revoked(serial)
    assert watcher.error is not None and "not a certificate revocation list" in watcher.error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeping the CRL loaded before" in warnings[0].getMessage()

    ca.crl_path.unlink()
    clock.now += 2
    assert watcher.current() is good
    ca.refresh_crl()
    clock.now += 2
    fresh = watcher.current()
    assert fresh is not good and fresh.is_revoked(serial) and watcher.error is None
    assert watcher.reload() is not fresh  # SIGHUP: read again, changed or not


def test_crl_watcher_refuses_to_start_without_its_crl(tmp_path: Path) -> None:
    with pytest.raises(CrlError, match="no such file"):
        CrlWatcher(tmp_path / "crl.pem")
