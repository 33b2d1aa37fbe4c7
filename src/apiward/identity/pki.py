"""The little CA behind ``apiward ca``: a CA key and certificate in one directory, client
and server certificates issued from it, an index of what was issued, and a CRL.

Layout of a CA directory (the directory 0700, private keys and PKCS#12 bundles 0600)::

    ca.key  ca.crt  crl.pem  index.json  .lock
    issued/NAME.key  NAME.crt  NAME-chain.pem  [NAME.p12]
    issued/revoked/NAME-SERIAL.*     (a revoked certificate's files, moved aside)

Every change takes an exclusive lock on ``.lock`` and writes each file atomically (a
temporary file renamed over it), so two ``apiward ca`` commands at once cannot lose an
entry of the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apiward.errors import ApiwardError
from apiward.identity.certs import cert_sans

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one command at a time
    fcntl = None  # type: ignore[assignment]

Kind = Literal["client", "server"]
KeyType = Literal["ec", "rsa"]
Status = Literal["valid", "expired", "not-yet-valid", "revoked"]

CRL_DAYS = 7  # a CRL's nextUpdate: re-sign it (`apiward ca crl`) within a week
BACKDATE = timedelta(minutes=5)  # notBefore a little in the past: clocks differ
RSA_BITS = 3072
INDEX_FORMAT = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


class CaError(ApiwardError):
    """A CA operation cannot be done; the message says why and what to do."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """One entry of ``index.json``; ``status`` is worked out when the entry is read."""

    name: str
    serial: str  # lower-case hex
    fingerprint: str  # SHA-256 of the DER, lower-case hex
    subject: str  # RFC 4514
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    kind: Kind
    revoked_at: datetime | None = None
    status: Status = "valid"

    def status_at(self, now: datetime) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        if now > self.not_after:
            return "expired"
        if now < self.not_before:
            return "not-yet-valid"
        return "valid"

    def to_json(self, with_status: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "serial": self.serial, "fingerprint": self.fingerprint,
            "subject": self.subject, "sans": list(self.sans),
            "not_before": _iso(self.not_before), "not_after": _iso(self.not_after),
            "kind": self.kind,
            "revoked_at": _iso(self.revoked_at) if self.revoked_at else None,
        }
        if with_status:
            data["status"] = self.status
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IssuedCert:
        revoked = data.get("revoked_at")
        return cls(
            name=data["name"], serial=data["serial"], fingerprint=data["fingerprint"],
            subject=data["subject"], sans=tuple(data["sans"]),
            not_before=_parse_time(data["not_before"]),
            not_after=_parse_time(data["not_after"]), kind=data["kind"],
            revoked_at=_parse_time(revoked) if revoked else None,
        )


@dataclass(frozen=True, slots=True)
class Issued:
    """What :meth:`CertificateAuthority.issue` wrote."""

    entry: IssuedCert
    key: Path
    cert: Path
    chain: Path
    p12: Path | None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.key, self.cert, self.chain, *((self.p12,) if self.p12 else ()))


class CertificateAuthority:
    """A CA directory: :meth:`init` makes one, :meth:`load` opens one."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
                 certificate: x509.Certificate) -> None:
        self.directory = directory
        self.key = key
        self.certificate = certificate

    # -- paths ---------------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.directory / "index.json"

    @property
    def issued_dir(self) -> Path:
        return self.directory / "issued"

    @property
    def key_type(self) -> KeyType:
        return "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ec"

    # -- making and opening --------------------------------------------------------------

    @classmethod
    def init(cls, directory: str | os.PathLike[str], name: str = "apiward CA",
             days: int = 3650, key_type: KeyType = "ec") -> CertificateAuthority:
        """Make a new CA in ``directory`` (created 0700; it may exist but must hold no CA)."""
        directory = Path(directory)
        if key_type not in ("ec", "rsa"):
            raise CaError(f"key type {key_type!r}: use 'ec' (P-256) or 'rsa' (3072 bits)")
        if not name.strip() or len(name) > 64 or _has_control(name):
            raise CaError(f"CA name {name!r}: give 1 to 64 printable characters")
        _check_days(days)
        existing = [p.name for p in (directory / "ca.key", directory / "ca.crt",
                                     directory / "index.json") if p.exists()]
        if existing:
            raise CaError(f"{directory} already holds a CA ({', '.join(existing)}); refusing "
                          "to overwrite it: use another --dir, or remove that directory "
                          "first if you really mean to replace the CA")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)
            (directory / "issued").mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise CaError(f"cannot create the CA directory {directory}: "
                          f"{error.strerror or error}") from None
        key = _new_key(key_type)
        now = _now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory, key, cert)
        with ca._locked():
            _write(ca.key_path, _key_pem(key), 0o600)
            _write(ca.cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            ca._write_crl([], number=1)
            ca._write_index({"format": INDEX_FORMAT, "crl_number": 1, "certificates": []})
        return ca

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        """Open the CA in ``directory``; ``CaError`` says which file is wrong and the fix."""
        directory = Path(directory)
        if not directory.is_dir():
            raise CaError(f"no CA directory at {directory}: create one with "
                          f"`apiward ca init --dir {directory}` (or give --dir / "
                          "APIWARD_CA_DIR for an existing one)")
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        cert_bytes = _read(cert_path, "the CA certificate")
        try:
            cert = x509.load_pem_x509_certificate(cert_bytes)
        except ValueError:
            raise CaError(f"{cert_path}: not a PEM certificate; restore the CA's ca.crt "
                          "from a backup") from None
        key_bytes = _read(key_path, "the CA's private key")
        try:
            key = serialization.load_pem_private_key(key_bytes, password=None)
        except TypeError:
            raise CaError(f"{key_path}: the key is encrypted; apiward's CA keeps it "
                          "unencrypted in a 0700 directory (decrypt it with "
                          "`openssl pkey -in ca.key -out ca.key`)") from None
        except ValueError:
            raise CaError(f"{key_path}: not a PEM private key; restore the CA's ca.key "
                          "from a backup") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CaError(f"{key_path}: a {type(key).__name__}; apiward's CA uses an EC "
                          "or RSA key")
        if key.public_key() != cert.public_key():  # also when the two kinds differ
            raise CaError(f"{key_path} does not belong to the certificate in {cert_path}; "
                          "restore the matching pair from a backup")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CaError(f"{cert_path}: not a CA certificate (no basicConstraints CA:true)")
        ca = cls(directory, key, cert)
        ca._read_index()  # a broken index is found now, not halfway through a change
        return ca

    # -- issuing -------------------------------------------------------------------------

    def issue(self, name: str, days: int = 365, sans: Iterable[str] = (),
              kind: Kind = "client", pkcs12_password: str | None = None, *,
              not_before: datetime | None = None,
              not_after: datetime | None = None) -> Issued:
        """Issue a certificate and key named ``name`` (its CN and file names).

        ``sans``: DNS names, IP addresses, e-mail addresses and URIs, told apart by their
        form (or prefixed ``DNS:``, ``IP:``, ``email:``, ``URI:``); a server certificate
        without any gets its name. ``pkcs12_password`` also writes ``NAME.p12``.
        ``not_before``/``not_after`` (for tests) replace the validity worked out from now
        and ``days``.
        """
        check_name(name)
        if kind not in ("client", "server"):
            raise CaError(f"kind {kind!r}: 'client' or 'server'")
        names = parse_sans(sans)
        if kind == "server" and not names:
            names = parse_sans([name])
        if pkcs12_password is not None and not pkcs12_password:
            raise CaError("the PKCS#12 password is empty; give one (clients ask for it "
                          "when they import the bundle)")
        now = _now()
        if not_before is None and not_after is None:
            _check_days(days)
        start = not_before if not_before is not None else now - BACKDATE
        end = not_after if not_after is not None else start + BACKDATE + timedelta(days=days)
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise CaError(f"not_after ({_iso(end)}) is not after not_before ({_iso(start)})")
        ca_end = self.certificate.not_valid_after_utc
        if now > ca_end:
            raise CaError(f"the CA certificate {self.cert_path} expired on {_iso(ca_end)}; "
                          "make a new CA (`apiward ca init` in another directory)")
        if end > ca_end:
            left = max((ca_end - now).days, 0)
            raise CaError(f"the certificate would outlive the CA, which expires on "
                          f"{_iso(ca_end)}: give --days {left} or fewer")

        with self._locked():
            index = self._read_index()
            entries = [IssuedCert.from_json(e) for e in index["certificates"]]
            for entry in entries:
                if entry.name.lower() == name.lower() and entry.revoked_at is None:
                    expired = " (expired)" if now > entry.not_after else ""
                    raise CaError(f"a certificate named {entry.name!r} was already issued "
                                  f"(serial {entry.serial}){expired}: revoke it first "
                                  f"(`apiward ca revoke {entry.name}`) or pick another name")
            taken = {int(e.serial, 16) for e in entries}
            serial = _serial()
            while serial in taken:  # pragma: no cover - 1 in 2**128
                serial = _serial()

            key = _new_key(self.key_type)
            cert = self._build(name, key, serial, names, kind, start, end)
            der = cert.public_bytes(serialization.Encoding.DER)
            cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            ca_pem = self.certificate.public_bytes(serialization.Encoding.PEM)

            paths = self._files(name)
            self.issued_dir.mkdir(mode=0o700, exist_ok=True)
            _write(paths["key"], _key_pem(key), 0o600)
            _write(paths["crt"], cert_pem, 0o644)
            _write(paths["chain"], cert_pem + ca_pem, 0o644)
            p12_path = None
            if pkcs12_password is not None:
                p12_path = paths["p12"]
                _write(p12_path, pkcs12.serialize_key_and_certificates(
                    name.encode(), key, cert, [self.certificate],
                    serialization.BestAvailableEncryption(pkcs12_password.encode()),
                ), 0o600)
            else:
                paths["p12"].unlink(missing_ok=True)  # never one from another certificate

            entry = IssuedCert(
                name=name, serial=format(serial, "x"),
                fingerprint=_sha256(der), subject=cert.subject.rfc4514_string(),
                sans=cert_sans(cert), not_before=start, not_after=end, kind=kind,
            )
            entry = replace(entry, status=entry.status_at(now))
            index["certificates"].append(entry.to_json())
            self._write_index(index)
        return Issued(entry, paths["key"], paths["crt"], paths["chain"], p12_path)

    def _build(self, name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
               serial: int, names: list[x509.GeneralName], kind: Kind,
               start: datetime, end: datetime) -> x509.Certificate:
        ca_ski = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value
        usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" \
            else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names),
                                            critical=False)
        return builder.sign(self.key, hashes.SHA256())

    # -- listing and revoking ------------------------------------------------------------

    def list(self, now: datetime | None = None) -> list[IssuedCert]:
        """Every certificate issued, oldest first, each with its status at ``now``."""
        now = now or _now()
        return [replace(entry, status=entry.status_at(now)) for entry in
                (IssuedCert.from_json(e) for e in self._read_index()["certificates"])]

    def revoke(self, name_or_serial: str) -> IssuedCert:
        """Revoke the certificate with that name (its current one) or serial (hex, colons
        and ``0x`` allowed), re-sign ``crl.pem``, and move its files to issued/revoked/."""
        now = _now()
        with self._locked():
            index = self._read_index()
            entries = [IssuedCert.from_json(e) for e in index["certificates"]]
            position = _find(entries, name_or_serial)
            entry = entries[position]
            if entry.revoked_at is not None:
                raise CaError(f"{entry.name!r} (serial {entry.serial}) was already revoked "
                              f"on {_iso(entry.revoked_at)}")
            entry = replace(entry, revoked_at=now, status="revoked")
            entries[position] = entry
            number = int(index.get("crl_number", 0)) + 1
            self._write_crl(entries, number)
            index["crl_number"] = number
            index["certificates"][position] = entry.to_json()
            self._write_index(index)
            self._move_aside(entry)
        return entry

    def refresh_crl(self) -> Path:
        """Re-sign ``crl.pem`` (same revocations, a new number, nextUpdate a week on)."""
        with self._locked():
            index = self._read_index()
            number = int(index.get("crl_number", 0)) + 1
            self._write_crl([IssuedCert.from_json(e) for e in index["certificates"]], number)
            index["crl_number"] = number
            self._write_index(index)
        return self.crl_path

    def _write_crl(self, entries: Iterable[IssuedCert], number: int) -> None:
        now = _now()
        ca_ski = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + timedelta(days=CRL_DAYS))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False)
        )
        for entry in entries:
            if entry.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(entry.serial, 16))
                    .revocation_date(entry.revoked_at)
                    .build())
        crl = builder.sign(self.key, hashes.SHA256())
        _write(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)

    def _files(self, name: str) -> dict[str, Path]:
        base = self.issued_dir
        return {"key": base / f"{name}.key", "crt": base / f"{name}.crt",
                "chain": base / f"{name}-chain.pem", "p12": base / f"{name}.p12"}

    def _move_aside(self, entry: IssuedCert) -> None:
        """A revoked certificate's files leave issued/ (its name can be issued again),
        unless issued/NAME.crt is another certificate's (one issued since)."""
        files = self._files(entry.name)
        try:
            current = x509.load_pem_x509_certificate(files["crt"].read_bytes())
        except (OSError, ValueError):
            return  # the revocation stands; files left behind are harmless
        if _sha256(current.public_bytes(serialization.Encoding.DER)) != entry.fingerprint:
            return
        aside = self.issued_dir / "revoked"
        for path in files.values():
            suffix = path.name[len(entry.name):]  # ".key", "-chain.pem" …
            with contextlib.suppress(OSError):
                aside.mkdir(mode=0o700, exist_ok=True)
                path.replace(aside / f"{entry.name}-{entry.serial}{suffix}")

    # -- the index and the lock ----------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        path = self.index_path
        raw = _read(path, "the index of issued certificates")
        try:
            index = json.loads(raw)
            if not isinstance(index, dict) or not isinstance(index.get("certificates"),
                                                             list):
                raise ValueError("expected an object with a 'certificates' list")
            for entry in index["certificates"]:
                IssuedCert.from_json(entry)
        except (ValueError, KeyError, TypeError) as error:
            raise CaError(f"{path}: not a valid index ({error}); restore it from a backup "
                          "(the certificates themselves are in issued/)") from None
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        _write(self.index_path, (json.dumps(index, indent=2) + "\n").encode(), 0o600)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        try:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise CaError(f"cannot lock the CA directory {self.directory}: "
                          f"{error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


# -- names -------------------------------------------------------------------------------


def check_name(name: str) -> None:
    """A certificate's name is its CN and its file names: 1-64 letters, digits and
    ``. _ @ + -``, starting with a letter or digit (no path separators, no '..')."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise CaError(f"certificate name {name!r}: use 1 to 64 letters, digits and . _ @ + - "
                      "starting with a letter or digit (it names files: no '/', '\\' or "
                      "'..')")


def parse_sans(values: Iterable[str]) -> list[x509.GeneralName]:
    """SAN strings to general names, duplicates dropped. Each is an IP address, a URI
    (``scheme:…`` with ``://``), an e-mail address (has '@') or else a DNS name; a prefix
    ``DNS:``, ``IP:``, ``email:`` or ``URI:`` says which explicitly."""
    names: list[x509.GeneralName] = []
    for value in values:
        name = parse_san(value)
        if name not in names:
            names.append(name)
    return names


def parse_san(value: str) -> x509.GeneralName:
    text = value.strip()
    prefix, _, rest = text.partition(":")
    kind = prefix.lower() if rest and prefix.lower() in ("dns", "ip", "email", "uri") \
        else None
    if kind is not None:
        text = rest.strip()
    if not text or _has_control(text) or not text.isascii():
        raise CaError(f"SAN {value!r}: empty, or with control or non-ASCII characters "
                      "(give an internationalised domain in its xn-- form)")
    if kind == "ip" or (kind is None and _is_ip(text)):
        try:
            return x509.IPAddress(ipaddress.ip_address(text))
        except ValueError:
            raise CaError(f"SAN {value!r}: not an IP address") from None
    if kind == "uri" or (kind is None and "://" in text):
        if not _URI.fullmatch(text):
            raise CaError(f"SAN {value!r}: not a URI (scheme:… with no spaces)")
        return x509.UniformResourceIdentifier(text)
    if kind == "email" or (kind is None and "@" in text):
        local, at, domain = text.rpartition("@")
        if not at or not local or " " in text or not _is_dns(domain):
            raise CaError(f"SAN {value!r}: not an e-mail address (local@domain)")
        return x509.RFC822Name(text)
    if not _is_dns(text, wildcard=True):
        raise CaError(f"SAN {value!r}: not a DNS name, IP address, e-mail address or URI "
                      "(prefix it with DNS:, IP:, email: or URI: to say which)")
    return x509.DNSName(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_dns(text: str, wildcard: bool = False) -> bool:
    if wildcard and text.startswith("*."):
        text = text[2:]
    labels = text.split(".")
    return len(text) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in labels)


def _find(entries: list[IssuedCert], name_or_serial: str) -> int:
    """The index of the entry named (its newest, unrevoked first) or with that serial."""
    wanted = name_or_serial.strip()
    named = [i for i, e in enumerate(entries) if e.name.lower() == wanted.lower()]
    if named:
        live = [i for i in named if entries[i].revoked_at is None]
        return (live or named)[-1]
    digits = wanted.lower().removeprefix("0x").replace(":", "")
    try:
        serial = int(digits, 16)
    except ValueError:
        serial = None
    if serial is not None:
        for i, entry in enumerate(entries):
            if int(entry.serial, 16) == serial:
                return i
    raise CaError(f"no certificate named or with serial {name_or_serial!r} in this CA "
                  "(`apiward ca list` shows them)")


# -- small helpers -------------------------------------------------------------------------


def _new_key(key_type: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _serial() -> int:
    """A random, positive 128-bit serial number."""
    return secrets.randbits(128) or 1


def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _check_days(days: int) -> None:
    if not isinstance(days, int) or days < 1 or days > 36500:
        raise CaError(f"days {days!r}: give a whole number of days from 1 to 36500")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _utc(moment: datetime) -> datetime:
    """Aware and in UTC, whole seconds (certificates keep no fractions)."""
    if moment.tzinfo is None:
        raise CaError(f"{moment!r}: give a timezone-aware datetime (UTC)")
    return moment.astimezone(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CaError(f"{path}: missing ({what}); the directory {path.parent} is not a "
                      "complete apiward CA: restore the file from a backup, or make a new "
                      "CA with `apiward ca init` in an empty directory") from None
    except OSError as error:
        raise CaError(f"{path}: cannot read {what}: {error.strerror or error} (run as the "
                      "user who made the CA)") from None


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, with exactly ``mode`` whatever the umask."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as file:
                fd = -1
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        finally:
            if fd != -1:
                os.close(fd)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CaError(f"cannot write {path}: {error.strerror or error}") from None
