"""``apiward ca`` as a user runs it: the real binary, a real CA directory under tmp_path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from apiward.identity.certs import load_crl

BIN = Path(sys.executable).parent / "apiward"
ENV = {k: v for k, v in os.environ.items()
       if k not in ("COLUMNS", "LINES", "APIWARD_CA_DIR", "APIWARD_P12_PASSWORD")}


def apiward(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**ENV, **(env or {})}, input=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 with one line on stderr, starting 'error:', and no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    ok(apiward("ca", "init", "--dir", str(directory)))
    return directory


def listing(ca_dir: Path) -> dict[str, dict]:
    return {e["name"]: e for e in json.loads(ok(apiward("ca", "list", "--json",
                                                        "--dir", str(ca_dir))))}


def test_init_makes_a_ca_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    out = ok(apiward("ca", "init", "--dir", str(directory), "--name", "Shop CA",
                     "--days", "100"))
    assert f"{directory}/ca.crt" in out and f"{directory}/ca.key" in out
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=Shop CA"
    key_before = (directory / "ca.key").read_bytes()
    refused(apiward("ca", "init", "--dir", str(directory)), "already holds a CA")
    assert (directory / "ca.key").read_bytes() == key_before


def test_init_rsa_and_the_default_and_environment_directories(tmp_path: Path) -> None:
    ok(apiward("ca", "init", "--rsa", cwd=tmp_path))
    key = (tmp_path / "apiward-ca" / "ca.key").read_text()
    assert "BEGIN PRIVATE KEY" in key
    assert "RSA 3072" in ok(apiward("ca", "init", "--rsa", "--dir", str(tmp_path / "r")))
    elsewhere = tmp_path / "from-env"
    ok(apiward("ca", "init", env={"APIWARD_CA_DIR": str(elsewhere)}, cwd=tmp_path))
    ok(apiward("ca", "issue", "alice", env={"APIWARD_CA_DIR": str(elsewhere)}, cwd=tmp_path))
    assert (elsewhere / "issued" / "alice.crt").exists()


def test_issue_prints_the_paths_it_wrote(ca_dir: Path) -> None:
    out = ok(apiward("ca", "issue", "alice", "--dir", str(ca_dir), "--days", "30",
                     "--san", "alice@example.com", "--san", "10.0.0.7"))
    issued = ca_dir / "issued"
    for name in ("alice.key", "alice.crt", "alice-chain.pem"):
        assert str(issued / name) in out
        assert (issued / name).exists()
    assert stat.S_IMODE((issued / "alice.key").stat().st_mode) == 0o600
    assert "SANs: email:alice@example.com, IP:10.0.0.7" in out
    entry = listing(ca_dir)["alice"]
    assert entry["serial"] in out and entry["fingerprint"] in out
    assert entry["kind"] == "client" and entry["status"] == "valid"
    assert entry["sans"] == ["email:alice@example.com", "IP:10.0.0.7"]
    assert entry["not_after"].startswith(tuple(str(y) for y in range(2000, 2200)))

    out = ok(apiward("ca", "issue", "api.example.com", "--server", "--dir", str(ca_dir)))
    assert "issued server certificate" in out
    assert listing(ca_dir)["api.example.com"]["sans"] == ["DNS:api.example.com"]


def test_issue_p12_with_a_password_from_the_environment_or_the_prompt(
        ca_dir: Path) -> None:
    out = ok(apiward("ca", "issue", "alice", "--p12", "--dir", str(ca_dir),
                     env={"APIWARD_P12_PASSWORD": "from env"}))
    p12 = ca_dir / "issued" / "alice.p12"
    assert str(p12) in out and stat.S_IMODE(p12.stat().st_mode) == 0o600
    assert pkcs12.load_pkcs12(p12.read_bytes(), b"from env").key is not None

    ok(apiward("ca", "issue", "bob", "--p12", "--dir", str(ca_dir),
               stdin="typed in\ntyped in\n"))
    assert pkcs12.load_pkcs12((ca_dir / "issued" / "bob.p12").read_bytes(),
                              b"typed in").cert is not None

    ok(apiward("ca", "issue", "carol", "--password", "given", "--dir", str(ca_dir)))
    assert (ca_dir / "issued" / "carol.p12").exists()  # --password implies --p12


def test_list_shows_a_table_and_statuses(ca_dir: Path) -> None:
    d = str(ca_dir)
    assert "no certificates issued yet" in apiward("ca", "list", "--dir", d).stderr
    assert json.loads(ok(apiward("ca", "list", "--json", "--dir", d))) == []
    ok(apiward("ca", "issue", "alice", "--dir", d))
    ok(apiward("ca", "issue", "bob", "--dir", d))
    ok(apiward("ca", "revoke", "bob", "--dir", d))
    table = ok(apiward("ca", "list", "--dir", d))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["NAME", "KIND", "STATUS", "NOT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["alice"][1:3] == ["client", "valid"]
    assert rows["bob"][1:3] == ["client", "revoked"]
    entries = listing(ca_dir)
    assert entries["alice"]["serial"] in rows["alice"]
    assert entries["bob"]["revoked_at"] is not None


def test_revoke_by_name_and_serial_updates_the_crl(ca_dir: Path) -> None:
    d = str(ca_dir)
    ok(apiward("ca", "issue", "alice", "--dir", d))
    ok(apiward("ca", "issue", "bob", "--dir", d))
    serials = {name: e["serial"] for name, e in listing(ca_dir).items()}

    out = ok(apiward("ca", "revoke", "alice", "--dir", d))
    assert "revoked 'alice'" in out and "CRL number 2" in out
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    crl = load_crl(ca_dir / "crl.pem", issuer=ca_cert)
    assert crl.is_revoked(int(serials["alice"], 16))
    assert not crl.is_revoked(int(serials["bob"], 16))

    ok(apiward("ca", "revoke", serials["bob"].upper(), "--dir", d))
    crl = load_crl(ca_dir / "crl.pem", issuer=ca_cert)
    assert crl.number == 3 and crl.is_revoked(int(serials["bob"], 16))
    assert {e["status"] for e in listing(ca_dir).values()} == {"revoked"}

    refused(apiward("ca", "revoke", "alice", "--dir", d), "already revoked")
    refused(apiward("ca", "revoke", "nobody", "--dir", d), "no certificate", "nobody")
    ok(apiward("ca", "issue", "alice", "--dir", d))  # the name is free again

    out = ok(apiward("ca", "crl", "--dir", d))
    assert "CRL number 4" in out and "2 revoked" in out


def test_mistakes_are_one_line_and_exit_2(ca_dir: Path, tmp_path: Path) -> None:
    d = str(ca_dir)
    refused(apiward("ca", "issue", "../evil", "--dir", d), "certificate name")
    refused(apiward("ca", "issue", "alice", "--san", "not a name", "--dir", d), "SAN")
    refused(apiward("ca", "issue", "alice", "--days", "4000", "--dir", d), "outlive the CA")
    ok(apiward("ca", "issue", "alice", "--dir", d))
    refused(apiward("ca", "issue", "alice", "--dir", d), "revoke it first",
            "pick another name")
    missing = str(tmp_path / "nowhere")
    for command in (["list"], ["issue", "x"], ["revoke", "x"], ["crl"]):
        refused(apiward("ca", *command, "--dir", missing), "no CA directory",
                "apiward ca init")
    (ca_dir / "ca.key").unlink()
    refused(apiward("ca", "list", "--dir", d), "ca.key: missing")
    assert not (tmp_path / "evil.key").exists()


def test_help_lists_the_commands() -> None:
    out = ok(apiward("ca", "--help"))
    for command in ("init", "issue", "list", "revoke", "crl"):
        assert command in out
    assert "APIWARD_CA_DIR" in ok(apiward("ca", "issue", "--help"))
