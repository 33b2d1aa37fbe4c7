"""What ``apiward inventory [--json]`` shows: one row per endpoint, flagged; and rate-limit
suggestions printed as ratelimit config a user can paste.

Flags (``Row.flags``):

- ``shadow``: discovered from traffic, not in the API's spec; only for an API that has a
  spec (without one every endpoint is discovered and none is a shadow).
- ``zombie``: in the spec and no call for ``zombie_after`` seconds (30 days). A spec
  operation never called is a row with 0 calls; it is a zombie once the inventory has
  watched its API (since the API's first recorded call) for ``zombie_after``.
- ``unauthenticated``: calls without credentials got through (allowed, or would have been
  blocked in log mode) on an endpoint where most calls have credentials, above
  ``unauth_threshold`` of its calls; or any such call on a spec operation that declares
  security (``secured``). Calls refused for the missing credentials (a 401 in block mode)
  do not raise the flag: that is the gateway doing its job.
- ``overflow``: the endpoint that counts what the bounds kept out (``/{...}``).

Rate suggestions: per endpoint, the calls per client per 1-minute window (each window a
client called in; closed windows of every client, evicted ones too, and the open ones of
the clients still tracked): p50, p99, the busiest, and a limit of ``max(2 x p99, floor)``
rounded up to 1, 2, 3 or 5 x 10^n per minute. Windows are counted per writer (a worker):
a client whose calls are spread over N workers shows about 1/N of its rate in the windows
that closed on each (the open ones merge exactly), so the report says how many writers
fed it and the user should read the limits as a starting point for log mode.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import yaml

from apiward.inventory.aggregates import (
    OVERFLOW_TEMPLATE,
    EndpointStats,
    Inventory,
    window_bucket,
    window_value,
)

__all__ = ["Row", "Suggestion", "as_config", "nice_limit", "rate_suggestions", "rows"]

ZOMBIE_AFTER = 30 * 86400.0
_RULE_NAME = re.compile(r"[^A-Za-z0-9_.]+")  # runs of anything else (and -) -> one -
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_MATCHABLE = re.compile(r"/[\x21-\x7e]*")  # what a rule's match can name


@dataclass(frozen=True, slots=True)
class Row:
    """One endpoint of the report. Shares are 0..1; latencies in milliseconds (None
    without calls); ``last_seen`` wall clock seconds (None: never called)."""

    api: str
    method: str
    template: str
    source: str  # "spec" | "discovered"
    calls: int
    error_rate: float  # 5xx share
    client_error_rate: float  # 4xx share
    p50_ms: float | None
    p99_ms: float | None
    unauthenticated_share: float  # calls without credentials, whatever the gateway did
    last_seen: float | None
    flags: tuple[str, ...]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data


def rows(inventory: Inventory, *, now: float, zombie_after: float = ZOMBIE_AFTER,
         unauth_threshold: float = 0.01,
         secured: dict[str, set[tuple[str, str]]] | None = None) -> list[Row]:
    """The report's rows: every endpoint seen and every spec operation never called,
    sorted by API, template and method. ``secured``: per API, the ``(METHOD, template)``
    operations whose spec declares security."""
    spec = inventory.spec_templates
    secured = secured or {}
    endpoints = inventory.endpoints()
    since: dict[str, float] = {}
    for ep in endpoints:
        if ep.calls:
            since[ep.api] = min(since.get(ep.api, math.inf), ep.first_seen)
    found: list[Row] = []
    seen: set[tuple[str, str, str]] = set()
    for ep in endpoints:
        seen.add((ep.api, ep.method, ep.template))
        found.append(_row(ep, now, zombie_after, unauth_threshold, spec,
                          secured.get(ep.api, set()), since.get(ep.api)))
    for api, ops in spec.items():
        for method, template in ops:
            if (api, method, template) in seen:
                continue
            watched = since.get(api)
            zombie = watched is not None and now - watched > zombie_after
            found.append(Row(api, method, template, "spec", 0, 0.0, 0.0, None, None, 0.0,
                             None, ("zombie",) if zombie else ()))
    found.sort(key=lambda row: (row.api, row.template, row.method))
    return found


def _row(ep: EndpointStats, now: float, zombie_after: float, threshold: float,
         spec: dict[str, set[tuple[str, str]]], secured: set[tuple[str, str]],
         since: float | None) -> Row:
    calls = ep.calls
    in_spec = ep.in_spec
    flags = []
    if not in_spec and ep.api in spec:
        flags.append("shadow")
    if in_spec:
        last = ep.last_seen if calls else since
        if last is not None and now - last > zombie_after:
            flags.append("zombie")
    if calls:
        passed = ep.unauthenticated_passed
        with_credentials = calls - ep.unauthenticated
        if passed and (((ep.method, ep.template) in secured and in_spec)
                       or (with_credentials * 2 > calls and passed > threshold * calls)):
            flags.append("unauthenticated")
    if ep.template == OVERFLOW_TEMPLATE:
        flags.append("overflow")
    p50, p99 = ep.p50(), ep.p99()
    return Row(
        api=ep.api, method=ep.method, template=ep.template,
        source="spec" if in_spec else "discovered", calls=calls,
        error_rate=ep.by_class.get("5xx", 0) / calls if calls else 0.0,
        client_error_rate=ep.by_class.get("4xx", 0) / calls if calls else 0.0,
        p50_ms=round(p50 * 1000, 3) if p50 is not None else None,
        p99_ms=round(p99 * 1000, 3) if p99 is not None else None,
        unauthenticated_share=ep.unauthenticated / calls if calls else 0.0,
        last_seen=ep.last_seen if calls else None, flags=tuple(flags))


# -- rate-limit suggestions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suggestion:
    """Observed calls per client per minute on one endpoint, and a limit to start from.
    ``windows``: the 1-minute windows with calls (client x minute); p50/p99 are the
    largest count of their window bucket (exact up to 32, else within ~9% above)."""

    api: str
    method: str
    template: str
    clients: int  # tracked now (evicted ones still count in the windows)
    windows: int
    p50: int
    p99: int
    max: int
    limit: int  # calls per minute

    @property
    def rate(self) -> str:
        return f"{self.limit}/min"


def nice_limit(value: float) -> int:
    """The smallest of 1, 2, 3, 5 x 10^n that is at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    scale = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 3, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale  # pragma: no cover - the loop ends at 10


def rate_suggestions(inventory: Inventory, *, floor: int = 10, factor: float = 2.0,
                     min_windows: int = 5) -> list[Suggestion]:
    """One suggestion per endpoint with at least ``min_windows`` client windows (the
    overflow endpoints, ``OTHER`` methods and templates a rule's ``match`` cannot name,
    with spaces or control characters, left out): ``limit`` = ``factor`` x p99,
    at least ``floor``, rounded up by ``nice_limit``."""
    found = []
    for ep in inventory.endpoints():
        if (ep.template == OVERFLOW_TEMPLATE or ep.method == "OTHER"
                or not _MATCHABLE.fullmatch(ep.template)):
            continue
        windows = dict(ep.windows)
        busiest = ep.window_peak
        for client in ep.clients.values():
            if client.current:
                bucket = window_bucket(client.current)
                windows[bucket] = windows.get(bucket, 0) + 1
                busiest = max(busiest, client.current)
        total = sum(windows.values())
        if total < max(1, min_windows):
            continue
        p50, p99 = _quantile(windows, total, 0.50), _quantile(windows, total, 0.99)
        found.append(Suggestion(ep.api, ep.method, ep.template, len(ep.clients), total,
                                p50, p99, busiest, nice_limit(max(p99 * factor, floor))))
    return found


def _quantile(windows: dict[int, int], total: int, q: float) -> int:
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(windows):
        seen += windows[bucket]
        if seen >= rank:
            return window_value(bucket)
    return window_value(max(windows))  # pragma: no cover - the ranks add up


def as_config(suggestions: list[Suggestion], *, api: str | None = None) -> str:
    """The ``ratelimit`` check's config for one API's suggestions, as YAML to paste under
    ``apis[].checks.ratelimit``: one rule per endpoint (``key: identity``, ``match:
    "METHOD /template"``, ``limits: ["N/min"]``). ``api`` picks the API; without it the
    suggestions must all be of one. ValueError when there is nothing to write."""
    chosen = [s for s in suggestions if api is None or s.api == api]
    apis = sorted({s.api for s in chosen})
    if len(apis) != 1:
        raise ValueError("no suggestions for that API" if not apis else
                         "suggestions of several APIs; pick one with api= "
                         f"({', '.join(apis)})")
    used: set[str] = set()
    lines = [f"# ratelimit for API {_comment(apis[0])}: suggested from the calls per client",
             "# per minute seen; try it in mode: log first.",
             "mode: log",
             "rules:"]
    for s in chosen:
        lines.append(f"  # {_comment(s.method)} {_comment(s.template)}: {s.clients} clients, "
                     f"{s.windows} one-minute windows, p50 {s.p50}, p99 {s.p99}, "
                     f"max {s.max} calls/min")
        rule = {"name": _rule_name(s.method, s.template, used), "key": "identity",
                "match": f"{s.method} {s.template}", "limits": [s.rate]}
        dumped = yaml.safe_dump([rule], default_flow_style=False, sort_keys=False,
                                allow_unicode=False, width=1000)
        lines.extend("  " + line for line in dumped.splitlines())
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return _PRINTABLE.sub("?", text)


def _rule_name(method: str, template: str, used: set[str]) -> str:
    base = _RULE_NAME.sub("-", f"{method}-{template}".lower()).strip("-")[:58] or "rule"
    name, suffix = base, 2
    while name in used:
        name, suffix = f"{base}-{suffix}", suffix + 1
    used.add(name)
    return name
