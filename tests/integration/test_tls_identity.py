"""TLS and mutual TLS through the running gateway, with certificates made by apiward's
own CA: real handshakes on 127.0.0.1, each client certificate case with its exact answer."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from apiward.identity.certs import cert_facts
from apiward.identity.pki import CertificateAuthority
from support.gateway import GatewayProcess
from support.proxy_fixtures import CountingUpstream, gateway_config, start_gateway, wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.init(root / "ca")
    other = CertificateAuthority.init(root / "other", name="someone else's CA")
    now = datetime.now(UTC)
    issued = {
        "server": ca.issue("gateway", kind="server", sans=["127.0.0.1", "localhost"]),
        "alice": ca.issue("alice"),
        "bob": ca.issue("bob"),
        "carol": ca.issue("carol"),
        "expired": ca.issue("expired", not_before=now - timedelta(days=10),
                            not_after=now - timedelta(days=1)),
        "future": ca.issue("future", not_before=now + timedelta(days=1),
                           not_after=now + timedelta(days=10)),
        "mallory": other.issue("mallory"),
    }
    kept = root / "clients"  # a revocation moves the CA's copies aside; a client keeps its own
    kept.mkdir()
    files = {}
    for who, found in issued.items():
        cert, key = kept / f"{who}.crt", kept / f"{who}.key"
        shutil.copy(found.chain if who == "server" else found.cert, cert)
        shutil.copy(found.key, key)
        files[who] = (cert, key)
    ca.revoke("bob")
    return {"ca": ca, **files}


@pytest.fixture(scope="module")
def upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server


def tls_config(pki: dict, upstream: CountingUpstream, client_certs: str) -> dict:
    ca: CertificateAuthority = pki["ca"]  # type: ignore[assignment]
    server = pki["server"]
    return gateway_config(
        {"upstream": {"url": upstream.url}, "checks": {"identity": {
            "schemes": {"cert": {"client_cert": {}}},
            "rules": [{"path": "/admin/*", "require": [["cert"]]}],
            "require_client_cert": ["/secure/*"],
        }}},
        tls={"cert": str(server[0]), "key": str(server[1]),  # type: ignore[index]
             "client_ca": str(ca.cert_path), "client_certs": client_certs,
             "crl": str(ca.crl_path)},
    )


@pytest.fixture(scope="module")
def gateway(pki: dict, upstream: CountingUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with start_gateway(tls_config(pki, upstream, "optional"),
                       tmp_path_factory.mktemp("tls")) as gw:
        yield gw


def client_context(pki: dict, who: str | None = None, *,
                   maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ca: CertificateAuthority = pki["ca"]  # type: ignore[assignment]
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    if who is not None:
        cert, key = pki[who]
        context.load_cert_chain(str(cert), str(key))
    return context


def get(gw: GatewayProcess, pki: dict, path: str, who: str | None = None,
        headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(verify=client_context(pki, who), timeout=10) as client:
        return client.get(gw.url + path, headers=headers)


def echoed(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"]}


def test_the_gateway_speaks_tls_with_its_certificate(gateway: GatewayProcess,
                                                     pki: dict) -> None:
    assert gateway.url.startswith("https://")
    response = get(gateway, pki, "/echo/public")
    assert response.status_code == 200
    sent = echoed(response)
    assert sent["x-forwarded-proto"] == "https"
    assert not any(name.startswith("x-client-cert") for name in sent)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_alpn_and_protocol_floor(gateway: GatewayProcess, pki: dict) -> None:
    import socket

    context = client_context(pki)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", gateway.port)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    tls12 = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", gateway.port)) as raw, \
            tls12.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0].startswith(("ECDHE-ECDSA-AES", "ECDHE-ECDSA-CHACHA20"))
    old = client_context(pki, maximum=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would speak TLS 1.1; the gateway won't
    with socket.create_connection(("127.0.0.1", gateway.port)) as raw, \
            pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNEXPECTED_EOF"):
        old.wrap_socket(raw, server_hostname="localhost")


def test_a_valid_client_certificate_reaches_the_upstream_as_headers(
        gateway: GatewayProcess, pki: dict) -> None:
    response = get(gateway, pki, "/admin/users", "alice",
                   headers={"X-Client-Cert-Subject": "CN=root"})  # a spoofing attempt
    assert response.status_code == 200
    sent = echoed(response)
    facts = cert_facts(ssl.PEM_cert_to_DER_cert(pki["alice"][0].read_text()))
    assert sent["x-client-cert-subject"] == "CN=alice"
    assert sent["x-client-cert-fingerprint"] == facts.fingerprint
    assert sent["x-client-cert-serial"] == facts.serial


@pytest.mark.parametrize(("who", "path", "status", "reason"), [
    (None, "/admin/users", 401, "missing_client_cert"),
    ("bob", "/admin/users", 401, "client_cert_revoked"),
    (None, "/secure/data", 403, "client_cert_required"),
    ("bob", "/secure/data", 403, "client_cert_required"),
])
def test_refusals(gateway: GatewayProcess, pki: dict, upstream: CountingUpstream,
                  who: str | None, path: str, status: int, reason: str) -> None:
    before = upstream.requests
    response = get(gateway, pki, path, who)
    assert response.status_code == status
    assert response.json()["type"] == f"urn:apiward:problem:{reason}"
    assert upstream.requests == before
    sent = get(gateway, pki, "/echo/open", who)  # a revoked one never becomes headers
    assert not any(name.startswith("x-client-cert") for name in echoed(sent))


@pytest.mark.parametrize("who", ["expired", "future", "mallory"])
def test_certificates_that_do_not_verify_fail_the_handshake(gateway: GatewayProcess,
                                                            pki: dict, who: str) -> None:
    with pytest.raises(httpx.TransportError):
        get(gateway, pki, "/echo/public", who)


def test_a_revocation_takes_effect_without_a_restart(gateway: GatewayProcess,
                                                     pki: dict) -> None:
    assert get(gateway, pki, "/admin/users", "carol").status_code == 200
    pki["ca"].revoke("carol")  # type: ignore[attr-defined]
    wait_until(lambda: get(gateway, pki, "/admin/users", "carol").status_code == 401,
               message="the new CRL to be read")


def test_required_client_certificates(pki: dict, upstream: CountingUpstream,
                                      tmp_path: Path) -> None:
    with start_gateway(tls_config(pki, upstream, "required"), tmp_path) as gw:
        assert get(gw, pki, "/echo/x", "alice").status_code == 200
        for who in (None, "bob", "mallory"):  # none, revoked, another CA's
            with pytest.raises(httpx.TransportError):
                get(gw, pki, "/echo/x", who)


def test_sighup_rotates_the_server_certificate(pki: dict, upstream: CountingUpstream,
                                              tmp_path: Path) -> None:
    import signal
    import socket

    import yaml

    def served_serial(gw: GatewayProcess) -> str:
        with socket.create_connection(("127.0.0.1", gw.port)) as raw, \
                client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return cert_facts(der).serial

    ca: CertificateAuthority = pki["ca"]  # type: ignore[assignment]
    with start_gateway(tls_config(pki, upstream, "optional"), tmp_path) as gw:
        first = served_serial(gw)
        fresh = ca.issue("gateway-next", kind="server", sans=["127.0.0.1", "localhost"])
        config = yaml.safe_load(gw.path.read_text())
        config["tls"].update(cert=str(fresh.chain), key=str(fresh.key))
        config["listen"] = f"127.0.0.1:{gw.port}"
        gw.path.write_text(yaml.safe_dump(config))
        gw.signal(signal.SIGHUP)
        wait_until(lambda: served_serial(gw) == fresh.entry.serial,
                   message="the new certificate to be served")
        assert first != fresh.entry.serial
        assert get(gw, pki, "/admin/x", "alice").status_code == 200
