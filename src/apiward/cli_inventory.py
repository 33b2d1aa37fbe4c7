"""``apiward inventory``: the endpoints the gateways have seen, from the inventory store.

Only flag parsing and output live here; the work is in ``apiward.inventory``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from apiward.cli_ca import _fail, _say


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), metavar="FILE",
              help="The gateway's config: its inventory store, and its specs (to flag "
                   "shadow and zombie endpoints).")
@click.option("--store", "store_url", metavar="PATH|URL",
              help="The inventory store itself (without --config: no spec to compare).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per endpoint.")
@click.option("--zombie-after", default="30d", show_default=True, metavar="DURATION",
              help="A spec endpoint with no call for this long is a zombie.")
@click.option("--suggest-limits", is_flag=True,
              help="Print rate limits from the observed per-client rates, as config "
                   "for each API's ratelimit check.")
def inventory(config_path: Path | None, store_url: str | None, as_json: bool,
              zombie_after: str, suggest_limits: bool) -> None:
    """Every endpoint seen: in the spec or discovered, calls, error rates, latency, the
    share of calls without credentials, last seen; shadow, zombie and unauthenticated
    endpoints flagged."""
    from apiward.config.units import parse_duration
    from apiward.inventory import report

    try:
        zombie = parse_duration(_days(zombie_after))
    except ValueError as error:
        _fail(f"--zombie-after: {error}")
    specs, secured, store_url = _from_config(config_path, store_url)
    found = _load(store_url, specs)
    if suggest_limits:
        suggestions = report.rate_suggestions(found)
        for api in sorted({s.api for s in suggestions}):
            click.echo(report.as_config(suggestions, api=api), nl=False)
        if not suggestions:
            _say("not enough traffic per client yet to suggest limits (a few minutes of "
                 "calls by identified clients are needed)")
        return
    rows = report.rows(found, now=time.time(), zombie_after=zombie, secured=secured)
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    if not rows:
        _say(f"no calls recorded in {store_url} yet")
        return
    table = [("API", "METHOD", "ENDPOINT", "SOURCE", "CALLS", "5XX", "4XX", "P50 MS",
              "P99 MS", "NO CREDS", "LAST SEEN", "FLAGS")]
    for row in rows:
        table.append((row.api, row.method, row.template, row.source, str(row.calls),
                      _share(row.error_rate), _share(row.client_error_rate),
                      _ms(row.p50_ms), _ms(row.p99_ms), _share(row.unauthenticated_share),
                      _ago(row.last_seen), ",".join(row.flags) or "-"))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _days(text: str) -> str:
    """Durations here may be in days too: ``30d``."""
    text = text.strip()
    if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit():
        return str(float(text[:-1]) * 86400)
    return text


def _share(value: float) -> str:
    return f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ago(moment: float | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int(time.time() - moment))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _from_config(config_path: Path | None, store_url: str | None
                 ) -> tuple[Any, Any, str]:
    """The specs' operations and secured operations per API, and the store to read."""
    if config_path is None:
        if store_url is None:
            _fail("give --config FILE (the gateway's config) or --store PATH|URL")
        return None, None, store_url
    from apiward.config.loader import load_config
    from apiward.errors import ApiwardError
    from apiward.runtime import load_compiled_spec

    try:
        config = load_config(config_path)
        specs: dict[str, set[tuple[str, str]]] = {}
        secured: dict[str, set[tuple[str, str]]] = {}
        for api in config.apis:
            if api.spec is None:
                continue
            schema = api.checks.schema
            strict = schema is not None and schema.undeclared_query == "block"
            spec = load_compiled_spec(api.name, api.spec, strict)
            specs[api.name] = {(m, e.template) for e in spec.entries.values()
                               for m in e.operations}
            secured[api.name] = {(m, e.template) for e in spec.entries.values()
                                 for m, op in e.operations.items() if op.security}
    except ApiwardError as error:
        _fail("; ".join(getattr(error, "problems", None) or [str(error)]))
    if store_url is None:
        if config.inventory is None:
            _fail(f"{config_path} records no inventory: add an `inventory:` section "
                  "(e.g. `inventory: {store: apiward.db}`)")
        store_url = str(config.inventory.store)
    return specs, secured, store_url


def _load(store_url: str, specs: Any) -> Any:
    from apiward.cli_keys import run_on_store
    from apiward.inventory.persist import load
    from apiward.state.store import StoreError, store_path

    try:
        path = store_path(store_url)
    except StoreError as error:
        _fail(str(error))
    if path is not None and not path.exists():  # a wrong path, not an empty inventory
        _fail(f"no inventory store at {path}: has a gateway with this inventory.store "
              "run yet?")
    return run_on_store(store_url, lambda store: load(store, spec_templates=specs))
