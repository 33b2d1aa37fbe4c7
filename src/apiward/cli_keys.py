"""``apiward keys``: API keys in the state store — create (shown once), list, revoke.

Only flag parsing and output live here; the work is in ``apiward.identity.apikeys``.
Gateways reading the same store pick up a change at their next refresh (seconds).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import click

from apiward.cli_ca import _fail, _say, _when

DEFAULT_STORE = "apiward.db"

store_option = click.option(
    "--store", "store_url", envvar="APIWARD_STORE", default=DEFAULT_STORE,
    show_default=True, show_envvar=True, metavar="PATH|URL",
    help="The state store: a SQLite file (or sqlite:///path), as the gateway's config "
         "names it.")


@click.group()
def keys() -> None:
    """API keys: create (shown once), list, revoke."""


@keys.command()
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, metavar="S",
              help="A scope the key grants; repeat for several.")
@click.option("--expires", metavar="WHEN",
              help="When the key stops working: 30d, 12h, 2w from now, a date "
                   "(2027-01-31, midnight UTC) or an ISO 8601 time. Default: never.")
@store_option
def create(name: str, scopes: tuple[str, ...], expires: str | None, store_url: str) -> None:
    """Make a key called NAME and print it, once: only its hash is kept."""
    from datetime import UTC, datetime

    from apiward.identity import apikeys

    now = datetime.now(UTC)
    expiry = None
    if expires is not None:
        try:
            expiry = apikeys.parse_expiry(expires, now)
        except ValueError as error:
            _fail(f"--expires: {error}")
    try:  # before the store is opened: a refused name must not leave a new empty store
        apikeys.check_name(name)
        apikeys.check_scopes(scopes)
    except apikeys.ApiKeyError as error:
        _fail(str(error))
    record, key = _run(store_url,
                       lambda store: apikeys.create(store, name, scopes, expiry, now=now))
    click.echo(key)
    _say(f"created API key {record.name!r} (id {record.id}, scopes: "
         f"{' '.join(sorted(record.scopes)) or 'none'}, expires: "
         f"{_when(record.expires)})")
    _say("[bold yellow]warning[/]: this is the only time the key is shown; store it now "
         "(apiward keeps only its hash)", markup=True)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per key.")
@store_option
def list_(as_json: bool, store_url: str) -> None:
    """Show every key (revoked and expired ones too); never a secret or a hash."""
    import time

    from apiward.identity import apikeys

    _existing(store_url)
    records = _run(store_url, apikeys.list_keys)
    now = time.time()
    if as_json:
        click.echo(json.dumps([r.public(now) for r in records], indent=2))
        return
    if not records:
        _say(f"no API keys in {store_url}")
        return
    rows = [("NAME", "ID", "STATUS", "SCOPES", "CREATED", "EXPIRES")] + [
        (r.name, r.id, r.status(now), ",".join(sorted(r.scopes)) or "-",
         _when(r.created), _when(r.expires))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@keys.command()
@click.argument("name")
@store_option
def revoke(name: str, store_url: str) -> None:
    """Revoke the key called NAME; its name can then be used again."""
    from apiward.identity import apikeys

    _existing(store_url)
    record = _run(store_url, lambda store: apikeys.revoke(store, name))
    if record is None:
        _say(f"no key was stored under {name!r} (an interrupted create); the name is free")
    else:
        click.echo(f"revoked API key {record.name!r} (id {record.id}); gateways refuse it "
                   "from their next refresh, within seconds")


def _run(store_url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from apiward.identity.apikeys import ApiKeyError

    return run_on_store(store_url, work, ApiKeyError)


def run_on_store(store_url: str, work: Callable[[Any], Awaitable[Any]],
                 *errors: type[Exception]) -> Any:
    """Open the store, await ``work(store)``, close it; a store error (or one of
    ``errors``) ends the command with its one line. Shared by ``apiward keys``, ``block``
    and ``inventory``."""
    import asyncio

    from apiward.state.store import StoreError, open_store

    async def main() -> Any:
        store = open_store(store_url)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (StoreError, *errors) as error:
        _fail(str(error))


def _existing(store_url: str) -> None:
    """Listing or revoking in a store that does not exist is a wrong path, not an empty
    store: say so rather than create one."""
    from apiward.state.store import StoreError, store_path

    try:
        path = store_path(store_url)
    except StoreError as error:
        _fail(str(error))
    if path is not None and not path.exists():
        _fail(f"no state store at {path}: pass --store PATH or set APIWARD_STORE "
              "(keys are kept where `apiward keys create` put them)")
