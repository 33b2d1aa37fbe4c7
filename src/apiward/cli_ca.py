"""``apiward ca``: the built-in certificate authority (to be written)."""

from __future__ import annotations

import click


@click.group()
def ca() -> None:
    """A small CA for mutual TLS: init, issue, list, revoke."""
