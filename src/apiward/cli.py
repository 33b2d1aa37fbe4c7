"""The ``apiward`` command: parses flags, calls into the rest, turns errors into exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from apiward import __version__
from apiward.errors import ConfigError

err = Console(stderr=True, highlight=False, soft_wrap=True)  # one problem, one line


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="apiward[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(error: ConfigError, as_json: bool = False) -> None:
    """Print every problem, one per line, and exit 2 (no traceback)."""
    if as_json:
        click.echo(json.dumps({"ok": False, "problems": error.problems}))
    else:
        where = f" in {error.source}" if error.source else ""
        err.print(f"[bold red]error[/]: invalid configuration{where}", markup=True)
        for line in error.problems:
            err.print(f"  {line}", markup=False)
    sys.exit(error.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="apiward")
def main() -> None:
    """apiward: a fast, strict security gateway for HTTP APIs."""


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML config file (everything else comes from it).")
@click.option("--listen", help='Address to listen on, "host:port" [127.0.0.1:8080].')
@click.option("--upstream", help='The API\'s server, e.g. "http://127.0.0.1:9000".')
@click.option("--spec", type=click.Path(path_type=Path), help="The API's OpenAPI document.")
@click.option("--mode", type=click.Choice(["block", "log"]), help="block (default) or log.")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker processes [1].")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def run(config_path: Path | None, listen: str | None, upstream: str | None,
        spec: Path | None, mode: str | None, workers: int | None, verbose: bool) -> None:
    """Run the gateway in front of an API."""
    from apiward.server.workers import run as serve

    setup_logging(verbose)
    config = _config(config_path, listen, upstream, spec, mode, workers)
    _compile(config)  # once up front, so a config that cannot run fails here, clearly
    try:
        code = serve(config, config_path.resolve() if config_path else None)
    except ConfigError as error:  # what changed between the check above and the start
        fail(error)
    except OSError as error:
        err.print(f"[bold red]error[/]: cannot listen on {config.listen}: "
                  f"{error.strerror or error}", markup=True)
        sys.exit(1)
    sys.exit(code)


def _compile(config: Any, as_json: bool = False) -> None:
    """Build everything ``run`` would (specs, TLS context, key store, JWKS), then retire
    it: what ``check`` passes, ``run`` starts."""
    from apiward.runtime import Runtime

    try:
        Runtime(config).close()
    except ConfigError as error:
        fail(error, as_json)


def _config(config_path: Path | None, listen: str | None, upstream: str | None,
            spec: Path | None, mode: str | None, workers: int | None, as_json: bool = False):
    from apiward.config.loader import config_from_flags, load_config

    try:
        if config_path is not None:
            if upstream or spec or mode:
                raise ConfigError(
                    "--upstream, --spec and --mode describe a one-API setup; with --config "
                    "put them in the file (apis[].upstream.url, apis[].spec, apis[].mode)")
            config = load_config(config_path)
            overrides = {k: v for k, v in (("listen", listen), ("workers", workers)) if v}
            if overrides:
                config = config.model_copy(update=overrides)
            return config
        if not upstream:
            raise ConfigError("give --config FILE, or --upstream URL (and optionally "
                              "--listen, --spec, --mode, --workers)")
        return config_from_flags(
            listen=listen or "127.0.0.1:8080", upstream=upstream,
            spec=str(spec) if spec else None, mode=mode or "block", workers=workers or 1,
        )
    except ConfigError as error:
        fail(error, as_json)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="The YAML config file to validate (and the specs it names).")
@click.option("--spec", type=click.Path(path_type=Path),
              help="An OpenAPI document to lint: alone, or with --upstream as for run.")
@click.option("--listen", help="As for run.")
@click.option("--upstream", help="As for run.")
@click.option("--mode", type=click.Choice(["block", "log"]), help="As for run.")
@click.option("--workers", type=click.IntRange(1, 256), help="As for run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def check(config_path: Path | None, spec: Path | None, listen: str | None,
          upstream: str | None, mode: str | None, workers: int | None, as_json: bool) -> None:
    """Validate a config (or run's flags) and lint each API's spec, without starting.

    Prints the spec's warnings (pointer: message) and the body limits derived from its
    request schemas. Exit 0 when valid, warnings or not; 2 when anything is invalid.
    """
    if config_path is None and upstream is None:
        if spec is None:
            fail(ConfigError("give --config FILE, or --spec FILE (with --upstream URL to "
                             "check run's flags)"), as_json)
        report = _spec_report(spec, as_json)
        if as_json:
            click.echo(json.dumps({"ok": True, **report}))
        else:
            out = Console(highlight=False, soft_wrap=True)
            out.print(f"[green]ok[/]: {spec} is a valid OpenAPI {report['version']} "
                      "document", markup=True)
            _print_spec_report(out, report, "")
        return
    config = _config(config_path, listen, upstream, spec, mode, workers, as_json)
    _compile(config, as_json)
    apis = []
    for api in config.apis:
        apis.append({
            "name": api.name, "upstream": api.upstream.url,
            "spec": str(api.spec) if api.spec else None, "mode": api.mode,
            "checks": [name for name, value in api.checks if value is not None],
            **(_spec_report(api.spec, as_json) if api.spec else {}),
        })
    summary = {"ok": True, "listen": config.listen, "workers": config.workers, "apis": apis}
    if as_json:
        click.echo(json.dumps(summary))
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[green]ok[/]: {config_path or 'the flags'} "
              f"{'is' if config_path else 'are'} valid", markup=True)
    for api in apis:
        checks = ", ".join(api["checks"]) or "none"
        out.print(f"  api {api['name']}: -> {api['upstream']}  mode={api['mode']}  "
                  f"checks: {checks}", markup=False)
        if api["spec"]:
            out.print(f"    spec {api['spec']} (OpenAPI {api['version']})", markup=False)
            _print_spec_report(out, api, "    ")


def _spec_report(path: Path, as_json: bool) -> dict:
    """Load (and validate) one spec; its lint warnings and derived body limits."""
    from apiward.openapi.document import load_spec
    from apiward.openapi.limits import operation_limits
    from apiward.openapi.lint import lint

    try:
        spec = load_spec(path)
    except ConfigError as error:
        fail(error, as_json)
    return {
        "version": spec.version,
        "warnings": [{"pointer": w.pointer, "code": w.code, "message": w.message}
                     for w in lint(spec)],
        "limits": [{"method": b.method, "path": b.template, "media_type": b.media_type,
                    "pointer": b.pointer, "body_bytes": b.limits.body_bytes,
                    "json_depth": b.limits.json_depth, "unbounded": b.limits.unbounded}
                   for b in operation_limits(spec)],
    }


def _print_spec_report(out: Console, report: dict, indent: str) -> None:
    warnings, bodies = report["warnings"], report["limits"]
    if warnings:
        out.print(f"{indent}[yellow]{len(warnings)} warning"
                  f"{'' if len(warnings) == 1 else 's'}[/]:", markup=True)
    for w in warnings:
        out.print(f"{indent}  {w['pointer']}: {w['message']} [{w['code']}]", markup=False)
    bounded = [b for b in bodies if b["body_bytes"] is not None]
    if not bodies:
        return
    out.print(f"{indent}body limits derived from the request schemas: {len(bounded)} of "
              f"{len(bodies)} request bod{'y' if len(bodies) == 1 else 'ies'} bounded"
              f"{'' if len(bounded) == len(bodies) else ' (the others keep the global limits)'}",
              markup=False)
    per_operation = Counter((b["method"], b["path"]) for b in bodies)
    for b in bodies:
        several = per_operation[b["method"], b["path"]] > 1
        media = f" ({b['media_type']})" if several else ""
        if b["body_bytes"] is None:
            found = f"not derived: {b['unbounded']}"
        else:
            depth = "" if b["json_depth"] is None else f", JSON depth ≤ {b['json_depth']}"
            found = f"body ≤ {_size(b['body_bytes'])}{depth}"
        out.print(f"{indent}  {b['method']} {b['path']}{media}: {found}", markup=False)


def _size(n: int) -> str:
    """Bytes for people, rounded up: a limit is never shown below its value."""
    if n < 1024:
        return f"{n} B"
    for unit, scale in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)):
        if n < scale << 10 or unit == "GiB":
            return f"{-(-n * 10 // scale) / 10:g} {unit}"
    return f"{n} B"


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Gateway port (0: any free port).")
def demo(port: int) -> None:
    """Run the demo bookshop API with the gateway in front of it."""
    from apiward.demo.run import run_demo

    setup_logging()
    sys.exit(run_demo(port))


def _add_command_groups() -> None:
    """``apiward ca …``, ``apiward keys …`` and ``apiward block …`` live in their own
    modules (they import nothing heavy until a command runs)."""
    from apiward.cli_block import block
    from apiward.cli_ca import ca
    from apiward.cli_inventory import inventory
    from apiward.cli_keys import keys

    main.add_command(ca)
    main.add_command(keys)
    main.add_command(block)
    main.add_command(inventory)


_add_command_groups()
