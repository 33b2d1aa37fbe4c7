"""``apiward keys``: API keys in the state store (to be written)."""

from __future__ import annotations

import click


@click.group()
def keys() -> None:
    """API keys: create (shown once), list, revoke."""
