"""Reading certificates and CRLs on the server's side: the facts of a peer certificate,
a revocation list (and a watcher that reloads it when its file changes), and header-safe
text for the ``X-Client-Cert-*`` headers. Pure functions over bytes and files; no sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from apiward.errors import ApiwardError

log = logging.getLogger(__name__)


class CrlError(ApiwardError):
    """A CRL file is missing, unreadable, not a CRL, or not signed by the expected CA."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What a gateway tells about one certificate (strings ready for logs and headers,
    after :func:`header_value`)."""

    subject: str  # RFC 4514, e.g. "CN=alice,O=Example"
    sans: tuple[str, ...]  # "DNS:api.example.com", "IP:10.0.0.1", "email:a@b", "URI:spiffe://…"
    serial: str  # lower-case hex, no colons, no leading zeros
    fingerprint: str  # SHA-256 of the DER, lower-case hex, no colons
    not_before: datetime  # UTC
    not_after: datetime  # UTC
    issuer: str  # RFC 4514


def cert_facts(der: bytes) -> CertFacts:
    """The facts of a DER certificate (``SSLObject.getpeercert(binary_form=True)``).

    Cached by the DER bytes (a client reconnects with the same certificate), so a repeat
    costs one hash of the bytes. Raises ``ValueError`` for bytes that are not a certificate.
    """
    return _cert_facts(bytes(der))


@lru_cache(maxsize=1024)
def _cert_facts(der: bytes) -> CertFacts:
    cert = x509.load_der_x509_certificate(der)
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        sans=cert_sans(cert),
        serial=format(cert.serial_number, "x"),
        fingerprint=hashlib.sha256(der).hexdigest(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.rfc4514_string(),
    )


def cert_sans(cert: x509.Certificate) -> tuple[str, ...]:
    """A certificate's subject alternative names as ``TYPE:value`` strings (OpenSSL's
    prefixes), in the certificate's order; () when it has none."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san_text(name) for name in names)


def san_text(name: x509.GeneralName) -> str:
    """One general name as ``TYPE:value``."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        value = name.value
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return f"IP:{value}"
        return f"IP:{value.with_prefixlen}"  # a network: only in name constraints
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"dirName:{name.value.rfc4514_string()}"
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        return f"otherName:{name.type_id.dotted_string}"
    return f"{type(name).__name__}:{name.value!r}"  # pragma: no cover - every type above


# -- header values -------------------------------------------------------------------------

# Anything but visible ASCII and space, and '%' itself (so the encoding reads back one way).
_UNSAFE = re.compile(r"[^\x20-\x24\x26-\x7e]")


def header_value(text: str) -> str:
    """``text`` made safe for an HTTP header value: control characters (CR, LF, NUL, DEL …),
    non-ASCII characters and '%' are percent-encoded as UTF-8 bytes; the rest is kept.

    >>> header_value("CN=evil\\r\\nX-Admin: yes")
    'CN=evil%0D%0AX-Admin: yes'
    """
    if _UNSAFE.search(text) is None and text[:1] != " " and text[-1:] != " ":
        return text
    out = _UNSAFE.sub(_percent, text)
    # A header value cannot start or end with a space (parsers drop it): encode it too.
    if out[:1] == " ":
        out = "%20" + out[1:]
    if out[-1:] == " ":
        out = out[:-1] + "%20"
    return out


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "surrogatepass"))


# -- revocation lists ----------------------------------------------------------------------

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class RevocationList:
    """The revoked serial numbers of one CRL file (one or several CRLs, PEM or DER)."""

    path: Path
    issuers: tuple[str, ...]  # RFC 4514, one per CRL in the file
    this_update: datetime  # the oldest of the file's CRLs
    next_update: datetime | None  # the soonest; None when a CRL has none
    number: int | None  # the CRL number (of the first CRL), when it has one
    _serials: frozenset[int] = field(repr=False)
    _by_issuer: frozenset[tuple[str, int]] = field(repr=False)

    def is_revoked(self, serial: int, issuer: str | None = None) -> bool:
        """Whether ``serial`` is on the list (of ``issuer``, an RFC 4514 string, when the
        file holds several CAs' CRLs and the caller knows which CA issued it)."""
        if issuer is None:
            return serial in self._serials
        return (issuer, serial) in self._by_issuer

    def __contains__(self, serial: object) -> bool:
        return serial in self._serials

    def __len__(self) -> int:
        return len(self._serials)

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the CRL is past its nextUpdate (its CA should have published a new one)."""
        if self.next_update is None:
            return False
        return (now or datetime.now(UTC)) > self.next_update


def load_crl(path: str | os.PathLike[str],
             issuer: x509.Certificate | None = None) -> RevocationList:
    """Read a CRL file (PEM, possibly several CRLs, or DER). With ``issuer``, every CRL in it
    must be that CA's and carry its valid signature. ``CrlError`` names the file and the fix.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CrlError(f"CRL file {path}: no such file (with apiward's CA it is crl.pem in "
                       "the CA directory; `apiward ca crl` writes it)") from None
    except OSError as error:
        raise CrlError(f"CRL file {path}: cannot read it: "
                       f"{error.strerror or error}") from None
    crls = _parse_crls(path, data)
    if issuer is not None:
        _check_issuer(path, crls, issuer)
    serials: set[int] = set()
    by_issuer: set[tuple[str, int]] = set()
    names = []
    for crl in crls:
        name = crl.issuer.rfc4514_string()
        names.append(name)
        for revoked in crl:
            serials.add(revoked.serial_number)
            by_issuer.add((name, revoked.serial_number))
    next_updates = [crl.next_update_utc for crl in crls]
    number = None
    with contextlib.suppress(x509.ExtensionNotFound):
        number = crls[0].extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return RevocationList(
        path=path, issuers=tuple(names),
        this_update=min(crl.last_update_utc for crl in crls),
        next_update=None if None in next_updates else min(next_updates),  # type: ignore[type-var]
        number=number, _serials=frozenset(serials), _by_issuer=frozenset(by_issuer),
    )


def _parse_crls(path: Path, data: bytes) -> list[x509.CertificateRevocationList]:
    blocks = _PEM_CRL.findall(data)
    try:
        if blocks:
            return [x509.load_pem_x509_crl(block) for block in blocks]
        if data.lstrip().startswith(b"-----BEGIN"):
            raise ValueError("a PEM file without an X509 CRL block")
        if not data:
            raise ValueError("the file is empty")
        return [x509.load_der_x509_crl(data)]
    except ValueError as error:
        raise CrlError(f"CRL file {path}: not a certificate revocation list (PEM or DER): "
                       f"{error}") from None


def _check_issuer(path: Path, crls: list[x509.CertificateRevocationList],
                  issuer: x509.Certificate) -> None:
    key: CertificateIssuerPublicKeyTypes = issuer.public_key()  # type: ignore[assignment]
    for crl in crls:
        if crl.issuer != issuer.subject or not crl.is_signature_valid(key):
            raise CrlError(f"CRL file {path}: not signed by the CA "
                           f"{issuer.subject.rfc4514_string()} (CRL issuer: "
                           f"{crl.issuer.rfc4514_string()}); publish that CA's CRL")


class CrlWatcher:
    """A CRL file, reloaded when it changes.

    ``current()`` looks at the file at most once per ``interval`` seconds (one ``stat``)
    and reloads it only when its mtime, size or inode changed. A file that cannot be read
    or parsed keeps the last good list; the problem is logged once (until the file loads
    again) and the latest one kept in ``error``. The first load happens in the constructor
    and raises ``CrlError``: a gateway must not start without its CRL.
    """

    def __init__(self, path: str | os.PathLike[str], issuer: x509.Certificate | None = None,
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.issuer = issuer
        self.interval = interval
        self.error: str | None = None
        self._clock = clock
        self._signature = self._stat()
        self._list = load_crl(self.path, issuer)
        self._checked = clock()

    def current(self) -> RevocationList:
        """The freshest good revocation list."""
        now = self._clock()
        if now - self._checked >= self.interval:
            self._checked = now
            signature = self._stat()
            if signature != self._signature:
                self._signature = signature
                self._load()
        return self._list

    def reload(self) -> RevocationList:
        """Read the file now, changed or not (on SIGHUP)."""
        self._checked = self._clock()
        self._signature = self._stat()
        self._load()
        return self._list

    def _load(self) -> None:
        try:
            self._list = load_crl(self.path, self.issuer)
        except CrlError as error:
            message = str(error)
            if self.error is None:  # once per spell of trouble, not once per look
                log.warning("%s; keeping the CRL loaded before (%d revoked serials)",
                            message, len(self._list))
            self.error = message
            return
        if self.error is not None:
            log.info("CRL file %s loaded again (%d revoked serials)", self.path,
                     len(self._list))
        self.error = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)
