"""``apiward ca``: the built-in certificate authority — init, issue, list, revoke, crl.

Only flag parsing and output live here; the work is in ``apiward.identity.pki`` (imported
when a command runs, so ``apiward --help`` stays fast).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

DEFAULT_DIR = "./apiward-ca"
T = TypeVar("T")

dir_option = click.option(
    "--dir", "directory", envvar="APIWARD_CA_DIR", default=DEFAULT_DIR, show_default=True,
    show_envvar=True, type=click.Path(path_type=Path, file_okay=False),
    help="The CA's directory.")


@click.group()
def ca() -> None:
    """A small CA for mutual TLS: init, issue, list, revoke, crl."""


@ca.command()
@click.option("--name", default="apiward CA", show_default=True,
              help="The CA certificate's common name.")
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True,
              help="How long the CA certificate is valid.")
@click.option("--rsa", is_flag=True, help="An RSA 3072 key instead of EC P-256 (the "
              "certificates it issues get the same kind of key).")
@dir_option
def init(name: str, days: int, rsa: bool, directory: Path) -> None:
    """Make a new CA: its key, its certificate, an empty CRL and an index."""
    from apiward.identity.pki import CertificateAuthority

    authority = _do(lambda: CertificateAuthority.init(directory, name=name, days=days,
                                                      key_type="rsa" if rsa else "ec"))
    click.echo(f"created CA {name!r} in {directory} ({'RSA 3072' if rsa else 'EC P-256'}, "
               f"valid until {_when(authority.certificate.not_valid_after_utc)})")
    click.echo(f"  {authority.cert_path}   the CA certificate: the gateway's tls.client_ca")
    click.echo(f"  {authority.key_path}   the CA's private key (0600): keep it secret")
    click.echo(f"  {authority.crl_path}  the revocation list: the gateway's tls.crl")


@ca.command()
@click.argument("name")
@click.option("--days", type=click.IntRange(1, 36500), default=365, show_default=True,
              help="How long the certificate is valid.")
@click.option("--san", "sans", multiple=True, metavar="X",
              help="A subject alternative name: DNS name, IP address, e-mail or URI (or "
                   "prefixed DNS:, IP:, email:, URI:); repeat for several.")
@click.option("--server", is_flag=True,
              help="A server certificate (serverAuth; its name is its SAN unless --san).")
@click.option("--p12", is_flag=True,
              help="Also write NAME.p12 (key, certificate and CA) for browsers and tools.")
@click.option("--password", envvar="APIWARD_P12_PASSWORD", show_envvar=True,
              help="The PKCS#12 password (implies --p12); asked for when not given.")
@dir_option
def issue(name: str, days: int, sans: tuple[str, ...], server: bool, p12: bool,
          password: str | None, directory: Path) -> None:
    """Issue a client (or --server) certificate and key called NAME."""
    from apiward.identity.pki import CertificateAuthority

    authority = _do(lambda: CertificateAuthority.load(directory))
    if password is None and p12:
        password = click.prompt("PKCS#12 password", hide_input=True,
                                confirmation_prompt=True, err=True)
    issued = _do(lambda: authority.issue(name, days=days, sans=sans,
                                         kind="server" if server else "client",
                                         pkcs12_password=password))
    entry = issued.entry
    click.echo(f"issued {entry.kind} certificate {entry.name!r} (serial {entry.serial}, "
               f"valid until {_when(entry.not_after)})")
    if entry.sans:
        click.echo(f"  SANs: {', '.join(entry.sans)}")
    click.echo(f"  SHA-256 fingerprint: {entry.fingerprint}")
    labels = {issued.key: "private key (0600)", issued.cert: "certificate",
              issued.chain: "certificate + CA certificate",
              issued.p12: "PKCS#12 bundle (0600)"}
    for path in issued.paths:
        click.echo(f"  {path}  {labels[path]}")


@ca.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object each.")
@dir_option
def list_(as_json: bool, directory: Path) -> None:
    """Show every certificate issued, with its status (valid, expired, revoked …)."""
    from apiward.identity.pki import CertificateAuthority

    authority = _do(lambda: CertificateAuthority.load(directory))
    entries = _do(authority.list)
    if as_json:
        click.echo(json.dumps([e.to_json(with_status=True) for e in entries], indent=2))
        return
    if not entries:
        _say(f"no certificates issued yet by the CA in {directory} "
             "(`apiward ca issue NAME`)")
        return
    from rich.console import Console
    from rich.table import Table

    colours = {"valid": "green", "expired": "yellow", "not-yet-valid": "yellow",
               "revoked": "red"}
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "KIND", "STATUS", "NOT AFTER", "SERIAL", "SHA-256 FINGERPRINT",
                   "SANS"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e.name, e.kind, f"[{colours[e.status]}]{e.status}[/]",
                      _when(e.not_after), e.serial, e.fingerprint, ", ".join(e.sans) or "-")
    out = Console(highlight=False)
    if not out.is_terminal:  # piped: one line a certificate, nothing folded
        out.width = 400
    out.print(table)


@ca.command()
@click.argument("name_or_serial", metavar="NAME|SERIAL")
@dir_option
def revoke(name_or_serial: str, directory: Path) -> None:
    """Revoke a certificate (by name or hex serial) and re-sign crl.pem."""
    from apiward.identity.certs import load_crl
    from apiward.identity.pki import CertificateAuthority

    authority = _do(lambda: CertificateAuthority.load(directory))
    entry = _do(lambda: authority.revoke(name_or_serial))
    crl = _do(lambda: load_crl(authority.crl_path))
    click.echo(f"revoked {entry.name!r} (serial {entry.serial})")
    click.echo(f"  {authority.crl_path} re-signed: CRL number {crl.number}, "
               f"{len(crl)} revoked, next update due {_when(crl.next_update)}; gateways "
               "reading it refuse the certificate from their next check of the file")


@ca.command()
@dir_option
def crl(directory: Path) -> None:
    """Re-sign crl.pem (a CRL is valid for 7 days: run this at least weekly, e.g. cron)."""
    from apiward.identity.certs import load_crl
    from apiward.identity.pki import CertificateAuthority

    authority = _do(lambda: CertificateAuthority.load(directory))
    path = _do(authority.refresh_crl)
    current = _do(lambda: load_crl(path))
    click.echo(f"{path} re-signed: CRL number {current.number}, {len(current)} revoked, "
               f"next update due {_when(current.next_update)}")


def _do(work: Callable[[], T]) -> T:
    """Run ``work``; a CA or CRL problem (or a file the OS refuses) ends the command."""
    from apiward.identity.certs import CrlError
    from apiward.identity.pki import CaError

    try:
        return work()
    except (CaError, CrlError) as error:
        _fail(str(error))
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}")


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _say(text: str, markup: bool = False) -> None:
    from apiward.cli import err

    err.print(text, markup=markup)


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit 2 (as ``apiward.cli.fail`` does for configs); shared by
    ``apiward ca`` and ``apiward keys``."""
    from rich.markup import escape

    from apiward.cli import err

    err.print(f"[bold red]error[/]: {escape(message)}", markup=True)
    sys.exit(2)
