"""The Check shape shared by every defence, and the base of every check's config."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import Verdict

Mode = Literal["block", "log"]


class CheckConfig(BaseModel):
    """Fields every check accepts. ``mode`` unset means: the API's mode. ``on_error``: what
    a call gets when the check itself fails (raises): refused with 500, or let through."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = None
    on_error: Literal["block", "allow"] = "block"


ResponseJudge = Callable[[Request, Context, int, list[bytes], bytes | None], Verdict]
AfterHook = Callable[[Request, Context, int, "str | None"], None]


@dataclass(frozen=True, slots=True)
class Deps:
    """What a check may be built against besides its own config: the API's compiled
    OpenAPI description (None without a spec)."""

    api_name: str = "default"
    spec: Any = None
    # Refresh jobs a check needs run now and then (key tables, JWKS), off the request
    # path: the gateway runs them every few seconds.
    periodic: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # What to close when the runtime retires (stores the check opened).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The node's shared limiter table (ratelimit/table.py); None: this process's own.
    table: Any = None


NO_DEPS = Deps()


def store_table(url: str, load: Callable[[Any], Awaitable[Any]], deps: Deps, key: str) -> Any:
    """A table a check keeps in memory from a state store (API keys, block lists): opened
    and loaded now (compile time, off the event loop), refreshed by the gateway every few
    seconds (``table.refresh``), its store closed with the runtime. A store that cannot
    be read is a ConfigError naming ``apis (<api>).checks.<key>`` (password hidden)."""
    from apiward.errors import ConfigError
    from apiward.state.store import StoreError, open_store, redact_url

    try:
        store = open_store(url)
        table = run_now(load(store))
    except (StoreError, OSError) as error:
        raise ConfigError([f"apis ({deps.api_name}).checks.{key} ({redact_url(url)}): "
                           f"{error}"]) from None
    deps.periodic.append(table.refresh)
    deps.closers.append(store.close)
    return table


def run_now(coroutine: Any) -> Any:
    """Await ``coroutine`` from compile time, which runs off the event loop (at start, or
    in the reload's thread); inside a running loop it gets a thread of its own."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled check: ``run(request, context) -> Verdict`` on the head.

    A check with ``run_body`` also judges the body, in the body stage: the server reads
    the body (within ``context.body_limit``) only when a head check asked for it.

    A head check whose verdict needs the state store over the network (Redis) returns
    ALLOW and leaves ``context.pending``: an awaitable of its Verdict, which the server
    awaits before the call goes upstream. It runs last among the head checks.
    """

    name: str
    mode: Mode
    run: Callable[[Request, Context], Verdict]
    run_body: Callable[[Request, Context], Verdict] | None = None
    on_error: Literal["block", "allow"] = "block"
    # Judges the upstream's answer (status, header lines, body or None when too large to
    # hold) before the client sees it; a denial in block mode becomes a 502.
    run_response: ResponseJudge | None = None
    response_mode: Mode = "log"
    # Told how the call ended, once its status is known: the status sent and the name of
    # the check that refused it (None when the upstream answered). Never changes the
    # answer; for what is decided after the fact (a cost by status, a refund).
    run_after: AfterHook | None = None
    # Leaves its verdict in ``context.pending`` (see above) instead of returning it.
    defers: bool = False
