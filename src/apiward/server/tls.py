"""TLS for the listener: one server context built from the config, with errors that name
the file and say what to do, and the facts of each connection's handshake."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiward.config.models import Tls
from apiward.errors import ConfigError

# Forward secrecy and AEAD only for TLS 1.2; TLS 1.3's suites are all modern already.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class ClientCert:
    """A client certificate the handshake verified against ``client_ca``."""

    subject: str
    sans: tuple[str, ...]
    serial: str  # hex
    fingerprint: str  # SHA-256, lower-case hex
    revoked: bool = False

    @property
    def header_lines(self) -> bytes:
        """``X-Client-Cert-*`` for the upstream head, each line led by CRLF (the values
        are header-safe already: ``identity.certs.header_value``)."""
        return (b"\r\nX-Client-Cert-Subject: " + self.subject.encode("latin-1")
                + b"\r\nX-Client-Cert-SAN: " + ", ".join(self.sans).encode("latin-1")
                + b"\r\nX-Client-Cert-Serial: " + self.serial.encode("ascii")
                + b"\r\nX-Client-Cert-Fingerprint: " + self.fingerprint.encode("ascii"))


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What one TLS connection established; ``Request.tls`` for every call on it."""

    version: str
    cipher: str
    client: ClientCert | None

    @property
    def fingerprint(self) -> str | None:
        """The verified, unrevoked client certificate's fingerprint (None: no identity)."""
        client = self.client
        return client.fingerprint if client is not None and not client.revoked else None


def server_context(tls: Tls) -> ssl.SSLContext:
    """The listener's context; ConfigError with the file and the fix on any problem."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3"
                               else ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.set_alpn_protocols(["http/1.1"])
    # One resumption ticket, not OpenSSL's two: with client certificates each costs a
    # session encoding (~140 µs), and one is all a client resumes with.
    context.num_tickets = 1
    load_certificate(context, tls)
    if tls.client_ca is not None:
        _need_file(tls.client_ca, "tls.client_ca", "the CA bundle client certificates are "
                   "verified against (PEM)")
        try:
            context.load_verify_locations(cafile=str(tls.client_ca))
        except (ssl.SSLError, ValueError) as err:
            raise ConfigError(f"tls.client_ca ({tls.client_ca}): not a PEM CA certificate "
                              f"bundle: {_reason(err)}") from None
        context.verify_mode = (ssl.CERT_REQUIRED if tls.client_certs == "required"
                               else ssl.CERT_OPTIONAL)
    return context


def load_certificate(context: ssl.SSLContext, tls: Tls) -> None:
    """(Re)load the server certificate and key into ``context``: a reload rotates them
    for new connections without a new listener."""
    _need_file(tls.cert, "tls.cert", "the server certificate (PEM, chain after it)")
    _need_file(tls.key, "tls.key", "the server certificate's private key (PEM)")
    try:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    except ssl.SSLError as err:
        why = _reason(err)
        if "KEY_VALUES_MISMATCH" in str(err) or "key values mismatch" in why:
            raise ConfigError(f"tls.key ({tls.key}): does not belong to the certificate in "
                              f"{tls.cert}") from None
        raise ConfigError(f"tls.cert / tls.key ({tls.cert}, {tls.key}): cannot load: {why}; "
                          "both must be PEM, the key unencrypted") from None


def handshake_facts(ssl_object: Any, describe: Any) -> TlsFacts:
    """The facts of a finished handshake; ``describe(der) -> ClientCert`` reads a peer
    certificate (cached by the caller, since a client reconnects with the same one)."""
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return TlsFacts(ssl_object.version() or "", cipher[0] if cipher else "",
                    describe(der) if der else None)


def _need_file(path: Path, key: str, what: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{key} ({path}): no such file; it should be {what}")


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None)
    return str(reason or err).replace("_", " ").lower()
