"""The ``apiward`` command: parses flags, calls into the rest, turns errors into exit codes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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
    from apiward.runtime import Runtime
    from apiward.server.workers import run as serve

    setup_logging(verbose)
    config = _config(config_path, listen, upstream, spec, mode, workers)
    try:  # compile once up front, so a config that cannot run fails here, clearly
        Runtime(config).close()
    except ConfigError as error:
        fail(error)
    try:
        code = serve(config, config_path.resolve() if config_path else None)
    except OSError as error:
        err.print(f"[bold red]error[/]: cannot listen on {config.listen}: "
                  f"{error.strerror or error}", markup=True)
        sys.exit(1)
    sys.exit(code)


def _config(config_path: Path | None, listen: str | None, upstream: str | None,
            spec: Path | None, mode: str | None, workers: int | None):
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
        fail(error)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True,
              help="The YAML config file to validate.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def check(config_path: Path, as_json: bool) -> None:
    """Validate a config file (and the specs it names) without starting."""
    from apiward.config.loader import load_config

    try:
        config = load_config(config_path)
    except ConfigError as error:
        fail(error, as_json)
    summary = {
        "ok": True,
        "listen": config.listen,
        "workers": config.workers,
        "apis": [
            {"name": api.name, "upstream": api.upstream.url,
             "spec": str(api.spec) if api.spec else None, "mode": api.mode,
             "checks": [name for name, value in api.checks if value is not None]}
            for api in config.apis
        ],
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[green]ok[/]: {config_path} is valid", markup=True)
    for api in summary["apis"]:
        checks = ", ".join(api["checks"]) or "none"
        out.print(f"  api {api['name']}: -> {api['upstream']}  mode={api['mode']}  "
                  f"checks: {checks}", markup=False)


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Gateway port (0: any free port).")
def demo(port: int) -> None:
    """Run the demo bookshop API with the gateway in front of it."""
    from apiward.demo.run import run_demo

    setup_logging()
    sys.exit(run_demo(port))
