"""``apiward block``: the manual block and allow lists — add, remove, list.

Only flag parsing and output live here; the work is in ``apiward.ratelimit.lists``.
Gateways whose ratelimit check names the same store in ``lists`` pick a change up at
their next refresh (seconds).
"""

from __future__ import annotations

import json

import click

from apiward.cli_ca import _fail, _say
from apiward.cli_keys import _existing, store_option
from apiward.cli_keys import run_on_store as _run

list_option = click.option("--allow", "kind", flag_value="allow",
                           help="The allow list (never limited nor banned) instead.")


@click.group()
def block() -> None:
    """Block (or allow) client addresses, networks and identities."""


@block.command()
@click.argument("target")
@click.option("--for", "duration", metavar="DURATION",
              help="How long the entry lasts: 30m, 12h, 1d. Default: until removed.")
@click.option("--reason", default="", help="Shown by `apiward block list`.")
@click.option("--block", "kind", flag_value="block", default=True, hidden=True)
@list_option
@store_option
def add(target: str, duration: str | None, reason: str, kind: str, store_url: str) -> None:
    """Add TARGET: an IP address, a CIDR network (203.0.113.0/24) or an identity
    (key:NAME, jwt:ISSUER#SUBJECT, cert:FINGERPRINT)."""
    from apiward.config.units import parse_duration
    from apiward.ratelimit import lists

    ttl = None
    if duration is not None:
        try:
            ttl = parse_duration(duration)
        except ValueError as error:
            _fail(f"--for: {error}")
        if ttl <= 0:
            _fail("--for: expected a duration > 0, like 30m")
    try:
        lists.parse_target(target)  # before the store is opened: no empty store on a typo
    except lists.ListError as error:
        _fail(str(error))
    entry = _run(store_url, lambda store: lists.add(store, kind, target, reason, ttl))
    until = f" for {duration}" if duration else ""
    click.echo(f"{kind}ed {entry.target.split(':', 1)[1]}{until}; gateways apply it from "
               "their next refresh, within seconds")


@block.command()
@click.argument("target")
@click.option("--block", "kind", flag_value="block", default=True, hidden=True)
@list_option
@store_option
def remove(target: str, kind: str, store_url: str) -> None:
    """Remove TARGET from the block list (or, with --allow, the allow list)."""
    from apiward.ratelimit import lists

    _existing(store_url)
    try:
        lists.parse_target(target)
    except lists.ListError as error:
        _fail(str(error))
    if _run(store_url, lambda store: lists.remove(store, kind, target)):
        click.echo(f"removed {target} from the {kind} list")
    else:
        _fail(f"{target} is not on the {kind} list")


@block.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per entry.")
@store_option
def list_(as_json: bool, store_url: str) -> None:
    """Show both lists."""
    import time

    from apiward.ratelimit import lists

    _existing(store_url)
    found = sorted(_run(store_url, lists.entries), key=lambda e: (e.kind, e.target))
    if as_json:
        click.echo(json.dumps([entry.public() for entry in found], indent=2))
        return
    if not found:
        _say(f"the block and allow lists in {store_url} are empty")
        return
    now = time.time()
    rows = [("LIST", "TARGET", "EXPIRES", "REASON")] + [
        (e.kind, e.target.split(":", 1)[1],
         "never" if e.expires is None else f"in {max(0, int(e.expires - now))} s",
         e.reason or "-") for e in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
