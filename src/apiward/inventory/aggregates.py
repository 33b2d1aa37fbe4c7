"""What one worker accumulates about its endpoints from batches of call records, bounded.

The server builds one ``CallRecord`` per call (no body, no query, no token: names and
counts only) and hands them over in batches, off the request path; ``Inventory.add`` turns
them into per-endpoint aggregates:

- an endpoint is ``(api, method, template)``: the spec operation's template when the call
  matched one, else the template learned from the paths (one ``TemplateLearner`` per API);
- per endpoint: calls, calls by status class, blocked / would-block / error actions, calls
  without credentials (and those of them the gateway let through), first and last seen, a
  latency histogram (``LATENCY_BUCKETS`` fixed log-spaced buckets, 1.25x apart from 0.1 ms
  to 65 s, so merging is adding and a percentile is within a bucket of the true one),
  request and response bytes;
- per (endpoint, client): calls, first and last seen, and calls per 1-minute window (the
  open window, the busiest one, a small histogram of the closed ones), for rate-limit
  suggestions. A client is the identity (kind and id: a key's name, a JWT subject, a
  certificate subject, as the gateway's events print them); anonymous calls and calls
  without an identity count for the endpoint only.

Bounds (whatever the traffic):

- at most ``max_endpoints`` endpoints, plus one overflow endpoint ``/{...}`` per API and
  method (the learner's own overflow templates, ``/x/{...}``, count there too). When a
  new endpoint finds the table full, the least active quarter (spec operations kept
  first, then by calls, then by last seen) is folded into the overflow endpoints, so a
  flood of one-off templates cannot lock out a real endpoint that shows up during or
  after it: what is busy stays, what is folded keeps its counts in ``/{...}``. Learned
  endpoints of a method outside ``METHODS`` count as ``OTHER``;
- at most ``max_clients_per_endpoint`` clients per endpoint: when a new one comes to a full
  table, the least active quarter (fewest calls, then least recently seen) is evicted and
  its calls are tallied in ``other_clients``, so the heavy hitters stay (a top-k table
  with batched eviction: a flood of one-off clients costs one sort per quarter table of
  newcomers, not a scan per record);
- the learners hold at most ``learner_nodes`` trie nodes each; an identity id longer than
  ``MAX_ID`` characters is kept as a hash.

Template drift: what the learner says about a path changes as it learns (early
``/articles/how-to-x`` is a literal, later the siblings collapse into
``/articles/{article_id}``). Records are counted under the template the learner gives at
add time, and ``_rekey`` (run by ``endpoints()``, ``to_dict()``, ``merge()`` and when the
cap is reached) asks the learner again for every learned endpoint, with each ``{param}``
segment replaced by an id-shaped value, and merges an endpoint into the one its template
now maps to. The reverse direction (a word promoted back to a literal, ``/users/me`` after
``/users/{user_id}`` collapsed) cannot be split after the fact: calls counted before the
promotion stay with the param, as the learner's own counts do.

State: ``to_dict``/``from_dict`` give JSON-able data, and ``merge`` adds another
inventory's (several workers and gateways, see ``persist.py``). Per-minute windows merge
exactly while they are open (same client, same minute: the counts add); closed windows
are in each writer's own histogram, so a client whose calls are spread over N writers
shows about 1/N of its rate there (see the report's suggestions).

Cost: ``add`` does a few dict and attribute operations per record; a path that did not
match a spec operation also costs the learner's ``observe`` and, for a path whose
id-shaped segments (numbers, UUIDs, long hex) have not been seen in that shape, one
``template`` lookup (a bounded cache keyed by the path with those segments replaced).
Measured in tests/unit/inventory/test_aggregates.py (CPython 3.11, a 2-core VM; 50
endpoints, 200 clients): ``add`` ~1.9 us per record with spec templates, ~3.3 us learned
(``observe`` is ~1.1 of it); a flood of random paths and clients ~6.5 us per record.
``to_dict`` + ``orjson.dumps``: ~4 ms and ~160 KB for that traffic, ~140 ms and 9.1 MiB
for the largest state (every bound full: 2000 endpoints x 100 clients), ~40 ms with a
full learner (10k nodes). It runs where ``add`` runs (the state is not thread-safe).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from apiward.inventory.templates import OVERFLOW, TemplateLearner

__all__ = [
    "LATENCY_BUCKETS",
    "METHODS",
    "OVERFLOW_TEMPLATE",
    "CallRecord",
    "ClientStats",
    "EndpointStats",
    "Inventory",
    "latency_bounds",
    "latency_bucket",
    "window_bucket",
    "window_value",
]

_FORMAT = 1
OVERFLOW_TEMPLATE = "/" + OVERFLOW  # the one endpoint per API and method for what overflows
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                     "CONNECT", "QUERY"})
MAX_ID = 128  # identity ids longer than this are kept as a hash
CACHE_SIZE = 4096  # normalised paths -> template, per API; cleared when full
REKEY_EVERY = 4  # at the cap: one re-key per this many shrinks

# Latency histogram: bucket 0 is below LAT_LOW, bucket i in 1..LATENCY_BUCKETS-2 is
# [LAT_LOW * R^(i-1), LAT_LOW * R^i), the last one is everything above.
LAT_LOW = 1e-4
LAT_RATIO = 1.25
LAT_HIGH = 60.0
_STEPS = math.ceil(math.log(LAT_HIGH / LAT_LOW) / math.log(LAT_RATIO))  # 60
LATENCY_BUCKETS = _STEPS + 2
_TOP = LATENCY_BUCKETS - 1
_INV_LOW = 1 / LAT_LOW
_INV_LOG_RATIO = 1 / math.log(LAT_RATIO)
_HUGE = LAT_LOW * LAT_RATIO ** (_TOP - 1)  # at and above: the last bucket (inf too)

_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

# Segments whose template is their kind's whatever the value: numbers that are not
# year-like (4 digits), UUIDs, long one-case hex. Replaced by "0" to key the cache.
_IDS = re.compile(
    r"/(?:[0-9]{1,3}|[0-9]{5,}|[0-9a-f]{16,}|[0-9A-F]{16,}"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?=/|\Z)")
_PARAM = re.compile(r"/\{[^/{}]*\}(?=/|\Z)")


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency (seconds)."""
    if not seconds >= LAT_LOW:  # also NaN
        return 0
    if seconds >= _HUGE:
        return _TOP
    index = int(math.log(seconds * _INV_LOW) * _INV_LOG_RATIO) + 1
    return index if index < _TOP else _TOP


def latency_bounds(index: int) -> tuple[float, float]:
    """The ``[low, high)`` seconds of a latency bucket (the last one's high is inf)."""
    if index <= 0:
        return 0.0, LAT_LOW
    if index >= _TOP:
        return _HUGE, math.inf
    return LAT_LOW * LAT_RATIO ** (index - 1), LAT_LOW * LAT_RATIO ** index


def window_bucket(count: int) -> int:
    """The bucket of a 1-minute window's call count: exact up to 32, then 8 per doubling
    (each about 9% wide)."""
    if count <= 32:
        return count
    return 33 + int(8 * math.log2(count / 32))


def window_value(bucket: int) -> int:
    """The largest count in a window bucket (a conservative value for its windows)."""
    if bucket <= 32:
        return bucket
    return math.ceil(32 * 2 ** ((bucket - 32) / 8)) - 1


class CallRecord(NamedTuple):
    """One call, as the server saw it: names and counts, never a body, a query or a
    secret. A named tuple: the server records plain tuples of these fields in this
    order, and ``Inventory.add`` takes either without building an object per call.
    ``path`` is the normalised path (no query); ``template`` the spec operation's
    template when the call matched one (else None: learned here); ``latency`` in seconds;
    ``identity_kind`` "key"/"jwt"/"cert"/"anonymous"/None and ``identity_id`` a name or
    subject; ``credentials``: some were presented (valid or not); ``action`` "allow",
    "block", "would_block" or "error"; ``time`` wall clock seconds."""

    api: str
    method: str
    host: str
    path: str
    template: str | None
    status: int
    latency: float
    request_bytes: int
    response_bytes: int
    identity_kind: str | None
    identity_id: str | None
    credentials: bool
    action: str
    time: float


@dataclass(slots=True)
class ClientStats:
    """One client of one endpoint: its calls, and its open 1-minute window (``minute`` is
    ``last_seen // 60``, ``current`` its calls so far) and busiest closed one (``peak``).
    Closed windows are counted in the endpoint's ``windows``."""

    calls: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    minute: float = 0.0  # time // 60 (a whole number)
    current: int = 0
    peak: int = 0

    def close(self, minute: float, ep: EndpointStats) -> None:
        """Close the open window into ``ep``'s histogram and open ``minute``'s (empty)."""
        current = self.current
        if current:
            bucket = window_bucket(current)
            ep.windows[bucket] = ep.windows.get(bucket, 0) + 1
            if current > self.peak:
                self.peak = current
            if current > ep.window_peak:
                ep.window_peak = current
        self.minute = minute
        self.current = 0

    def busiest(self) -> int:
        """The most calls in one window, the open one included."""
        return max(self.peak, self.current)


@dataclass(slots=True)
class EndpointStats:
    """The aggregates of one endpoint. ``learned``: the template came from the learner
    (not from the spec); ``in_spec`` is set by ``Inventory.endpoints()`` from the spec's
    templates. ``latency``: counts per ``latency_bucket``. ``unauthenticated``: calls
    without credentials; ``unauthenticated_passed``: those the gateway let through (allow
    or would_block). ``clients`` by (identity kind, id); ``other_clients``: calls of
    clients evicted from the table. ``windows``: the closed 1-minute windows of every
    client (evicted ones too) by ``window_bucket``; ``window_peak``: the busiest."""

    api: str
    method: str
    template: str
    learned: bool = False
    in_spec: bool = False
    calls: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    blocked: int = 0
    would_block: int = 0
    errors: int = 0
    unauthenticated: int = 0
    unauthenticated_passed: int = 0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)
    request_bytes: int = 0
    response_bytes: int = 0
    clients: dict[tuple[str, str], ClientStats] = field(default_factory=dict)
    other_clients: int = 0
    windows: dict[int, int] = field(default_factory=dict)
    window_peak: int = 0

    @property
    def overflow(self) -> bool:
        return self.template == OVERFLOW_TEMPLATE

    def percentile(self, q: float) -> float | None:
        """The latency (seconds) at quantile ``q`` (nearest rank), as the geometric middle
        of its bucket: within a bucket (x1.25) of the true value; None without calls."""
        total = sum(self.latency)
        if not total:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index, count in enumerate(self.latency):
            seen += count
            if seen >= rank:
                low, high = latency_bounds(index)
                if index == 0:
                    return LAT_LOW / 2
                if math.isinf(high):
                    return low
                return math.sqrt(low * high)
        return None  # pragma: no cover - the ranks add up

    def p50(self) -> float | None:
        return self.percentile(0.50)

    def p95(self) -> float | None:
        return self.percentile(0.95)

    def p99(self) -> float | None:
        return self.percentile(0.99)


class _Api:
    """One API's learner and its cache of normalised path -> template."""

    __slots__ = ("cache", "learner", "nodes")

    def __init__(self, learner: TemplateLearner) -> None:
        self.learner = learner
        self.cache: dict[str, str] = {}
        self.nodes = learner.memory_nodes()

    def resolve(self, normalised: str) -> str:
        cache = self.cache
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        template = self.learner.template(normalised)
        if OVERFLOW in template:
            template = OVERFLOW_TEMPLATE
        if "?" not in normalised:  # a record is never given a query; if one is, keep none
            cache[normalised] = template
        return template


def _client_key(kind: str | None, ident: str) -> tuple[str, str]:
    if len(ident) > MAX_ID:
        digest = hashlib.blake2b(ident.encode("utf-8", "surrogateescape"), digest_size=16)
        ident = "#" + digest.hexdigest()
    return (kind or "", ident)


class Inventory:
    """The endpoints one worker saw, bounded; JSON-able and mergeable."""

    def __init__(self, *, spec_templates: dict[str, set[tuple[str, str]]] | None = None,
                 max_endpoints: int = 2000, max_clients_per_endpoint: int = 100,
                 learner_nodes: int = 10_000) -> None:
        if max_endpoints < 1 or max_clients_per_endpoint < 4 or learner_nodes < 2:
            raise ValueError("max_endpoints >= 1, max_clients_per_endpoint >= 4 and "
                             "learner_nodes >= 2")
        self.max_endpoints = max_endpoints
        self.max_clients_per_endpoint = max_clients_per_endpoint
        self.learner_nodes = learner_nodes
        self.spec_templates: dict[str, set[tuple[str, str]]] = {
            api: {(m.upper(), t) for m, t in ops} for api, ops in (spec_templates or {}).items()}
        self._eps: dict[tuple[str, str, str], EndpointStats] = {}
        self._apis: dict[str, _Api] = {}
        self._capped = 0  # endpoints that count towards max_endpoints (not overflow ones)
        self._full = 0  # times a new endpoint found the table full

    # -- feeding ---------------------------------------------------------------------------

    def add(self, records: Iterable[CallRecord]) -> None:
        """Count a batch of calls."""
        eps = self._eps
        apis = self._apis
        ids_sub = _IDS.sub
        log = math.log
        classes = _CLASSES
        for (api, method, _host, path, template, status, latency, request_bytes,
             response_bytes, kind, ident, credentials, action, t) in records:
            learned = template is None
            if learned:
                state = apis.get(api)
                if state is None:
                    state = self._api(api)
                learner = state.learner
                learner.observe(method, path)
                nodes = learner.memory_nodes()
                if nodes != state.nodes:  # the trie changed: a word may be a literal now
                    state.nodes = nodes
                    state.cache.clear()
                cache = state.cache
                template = cache.get(path)  # a path without ids is its own key
                if template is None:
                    normalised = ids_sub("/0", path)
                    template = cache.get(normalised)
                    if template is None:
                        template = state.resolve(normalised)
            ep = eps.get((api, method, template))
            if ep is None:
                ep = self._endpoint(api, method, template, learned)
            ep.calls += 1
            cls = classes[status // 100] if 99 < status < 600 else "other"
            by_class = ep.by_class
            by_class[cls] = by_class.get(cls, 0) + 1
            if action != "allow":
                if action == "block":
                    ep.blocked += 1
                elif action == "would_block":
                    ep.would_block += 1
                elif action == "error":
                    ep.errors += 1
            if not credentials:
                ep.unauthenticated += 1
                if action == "allow" or action == "would_block":
                    ep.unauthenticated_passed += 1
            if t > ep.last_seen:
                ep.last_seen = t
            if t < ep.first_seen:
                ep.first_seen = t
            if LAT_LOW <= latency < _HUGE:
                index = int(log(latency * _INV_LOW) * _INV_LOG_RATIO) + 1
                ep.latency[index if index < _TOP else _TOP] += 1
            else:  # below the first bucket, NaN, or above the last (inf too)
                ep.latency[_TOP if latency >= _HUGE else 0] += 1
            ep.request_bytes += request_bytes
            ep.response_bytes += response_bytes
            if ident is not None and kind != "anonymous":
                client = ep.clients.get((kind or "", ident))
                if client is None:
                    client = self._client(ep, kind, ident, t)
                client.calls += 1
                if t > client.last_seen:
                    client.last_seen = t
                minute = t // 60
                if minute > client.minute:
                    client.close(minute, ep)
                client.current += 1  # a late record counts in the open window

    def _api(self, api: str) -> _Api:
        state = _Api(TemplateLearner(max_nodes=self.learner_nodes))
        self._apis[api] = state
        return state

    def _endpoint(self, api: str, method: str, template: str, learned: bool) -> EndpointStats:
        """The endpoint a record with no stored endpoint goes to: created (making room at
        the cap), or the overflow endpoint of its API and method."""
        eps = self._eps
        if learned and method not in METHODS:
            method = "OTHER"
            found = eps.get((api, method, template))
            if found is not None:
                return found
        if template != OVERFLOW_TEMPLATE:
            if self._capped >= self.max_endpoints:
                self._make_room()
                found = eps.get((api, method, template))  # re-keying may have made it
                if found is not None:
                    return found
            if self._capped < self.max_endpoints:
                self._capped += 1
                ep = eps[(api, method, template)] = EndpointStats(api, method, template,
                                                                  learned)
                return ep
        return self._overflow(api, method)

    def _overflow(self, api: str, method: str) -> EndpointStats:
        key = (api, method, OVERFLOW_TEMPLATE)
        ep = self._eps.get(key)
        if ep is None:
            ep = self._eps[key] = EndpointStats(api, method, OVERFLOW_TEMPLATE, True)
        return ep

    def _make_room(self) -> None:
        """At the cap: every ``REKEY_EVERY``-th time re-key (drifted endpoints merge), then
        fold the least active quarter of the endpoints into the overflow endpoints, so a
        flood of one-off templates cannot keep a real endpoint that shows up later out."""
        self._full += 1
        if self._full % REKEY_EVERY == 1:
            self._rekey()
        if self._capped >= self.max_endpoints:
            self._shrink(self.max_endpoints - max(1, self.max_endpoints // 4))

    def _shrink(self, keep: int) -> None:
        """Fold all but the ``keep`` busiest endpoints (spec operations first, then by
        calls, then by last seen) into their API's and method's overflow endpoint."""
        spec = self.spec_templates
        ranked = sorted(
            (ep for ep in self._eps.values() if ep.template != OVERFLOW_TEMPLATE),
            key=lambda e: (not (e.api in spec and (e.method, e.template) in spec[e.api]),
                           -e.calls, -e.last_seen, e.api, e.template, e.method))
        for ep in ranked[keep:]:
            del self._eps[(ep.api, ep.method, ep.template)]
            self._capped -= 1
            method = ep.method if ep.method in METHODS else "OTHER"
            self._absorb(self._overflow(ep.api, method), ep)

    def _client(self, ep: EndpointStats, kind: str | None, ident: str,
                t: float) -> ClientStats:
        key = _client_key(kind, ident)
        clients = ep.clients
        client = clients.get(key)
        if client is None:
            if len(clients) >= self.max_clients_per_endpoint:
                self._evict(ep, self.max_clients_per_endpoint * 3 // 4)
            client = clients[key] = ClientStats(0, t, t, t // 60, 0, 0)
        return client

    def _evict(self, ep: EndpointStats, keep: int) -> None:
        """Keep the ``keep`` most active clients; the others' calls go to other_clients and
        their open windows are closed into the endpoint's (a client evicted and back in one
        minute shows as two smaller windows there)."""
        ranked = sorted(ep.clients.items(), key=lambda kv: (-kv[1].calls, -kv[1].last_seen,
                                                            kv[0]))
        for key, client in ranked[keep:]:
            ep.other_clients += client.calls
            client.close(client.minute, ep)
            del ep.clients[key]

    # -- reading ---------------------------------------------------------------------------

    def endpoints(self) -> list[EndpointStats]:
        """Every endpoint (re-keyed to the learners' current templates), sorted by API,
        template and method; ``in_spec`` set from the spec's templates. The objects are the
        inventory's own: read them, do not change them."""
        self._rekey()
        spec = self.spec_templates
        found = sorted(self._eps.values(), key=lambda e: (e.api, e.template, e.method))
        for ep in found:
            ops = spec.get(ep.api)
            ep.in_spec = ops is not None and (ep.method, ep.template) in ops
        return found

    def learner(self, api: str) -> TemplateLearner | None:
        """The API's template learner (None before its first unmatched call)."""
        state = self._apis.get(api)
        return state.learner if state is not None else None

    def _rekey(self) -> None:
        """Move every learned endpoint to the template its learner gives it now (see the
        module docstring: template drift), then apply the endpoint cap."""
        moves: list[tuple[tuple[str, str, str], str]] = []
        for key, ep in self._eps.items():
            if not ep.learned or ep.template == OVERFLOW_TEMPLATE:
                continue
            state = self._apis.get(ep.api)
            if state is None:
                continue
            now = state.learner.template(_PARAM.sub("/0", ep.template))
            if OVERFLOW in now:
                now = OVERFLOW_TEMPLATE
            if now != ep.template:
                moves.append((key, now))
        for key, template in moves:
            ep = self._eps.pop(key)
            self._capped -= 1
            ep.template = template
            target = self._eps.get((ep.api, ep.method, template))
            if target is not None:
                self._absorb(target, ep)
            else:
                self._eps[(ep.api, ep.method, template)] = ep
                if template != OVERFLOW_TEMPLATE:
                    self._capped += 1
        if self._capped > self.max_endpoints:  # after a merge
            self._shrink(self.max_endpoints)

    # -- state -----------------------------------------------------------------------------

    def _absorb(self, into: EndpointStats, src: EndpointStats) -> None:
        """Add ``src``'s counts to ``into`` (``src`` is left unchanged)."""
        if into.template != OVERFLOW_TEMPLATE:
            into.learned = into.learned and src.learned
        into.calls += src.calls
        for cls, count in src.by_class.items():
            into.by_class[cls] = into.by_class.get(cls, 0) + count
        into.blocked += src.blocked
        into.would_block += src.would_block
        into.errors += src.errors
        into.unauthenticated += src.unauthenticated
        into.unauthenticated_passed += src.unauthenticated_passed
        into.first_seen = min(into.first_seen, src.first_seen)
        into.last_seen = max(into.last_seen, src.last_seen)
        for index, count in enumerate(src.latency):
            if count:
                into.latency[index] += count
        into.request_bytes += src.request_bytes
        into.response_bytes += src.response_bytes
        into.other_clients += src.other_clients
        for bucket, count in src.windows.items():
            into.windows[bucket] = into.windows.get(bucket, 0) + count
        into.window_peak = max(into.window_peak, src.window_peak)
        for key, theirs in src.clients.items():
            mine = into.clients.get(key)
            if mine is None:
                into.clients[key] = ClientStats(theirs.calls, theirs.first_seen,
                                                theirs.last_seen, theirs.minute,
                                                theirs.current, theirs.peak)
                continue
            mine.calls += theirs.calls
            mine.first_seen = min(mine.first_seen, theirs.first_seen)
            mine.last_seen = max(mine.last_seen, theirs.last_seen)
            mine.peak = max(mine.peak, theirs.peak)
            if theirs.minute == mine.minute:
                mine.current += theirs.current  # one window, counted on two sides
            elif theirs.minute > mine.minute:
                mine.close(theirs.minute, into)
                mine.current = theirs.current
            elif theirs.current:  # their open window is older: it is closed now
                bucket = window_bucket(theirs.current)
                into.windows[bucket] = into.windows.get(bucket, 0) + 1
                mine.peak = max(mine.peak, theirs.current)
                into.window_peak = max(into.window_peak, theirs.current)
        if len(into.clients) > self.max_clients_per_endpoint:
            self._evict(into, self.max_clients_per_endpoint)

    def merge(self, other: Inventory) -> None:
        """Add ``other``'s calls (``other`` is left unchanged), as if this inventory had seen
        them too; the result keeps this inventory's bounds."""
        if other is self:
            other = Inventory.from_dict(self.to_dict())
        for api, ops in other.spec_templates.items():
            self.spec_templates.setdefault(api, set()).update(ops)
        for api, theirs in other._apis.items():
            mine = self._apis.get(api)
            if mine is None:
                mine = self._api(api)
            mine.learner.merge(theirs.learner)
            mine.cache.clear()
            mine.nodes = mine.learner.memory_nodes()
        for key, ep in other._eps.items():
            target = self._eps.get(key)
            if target is None:
                target = self._eps[key] = EndpointStats(ep.api, ep.method, ep.template,
                                                        ep.learned)
                if not target.overflow:
                    self._capped += 1
            self._absorb(target, ep)
        self._rekey()

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-able data; ``from_dict`` reads it. No path, body, query
        or secret is in it: templates, learned literal segments, identity names, counts."""
        self._rekey()
        return {
            "format": _FORMAT,
            "max_endpoints": self.max_endpoints,
            "max_clients_per_endpoint": self.max_clients_per_endpoint,
            "learner_nodes": self.learner_nodes,
            "spec": {api: sorted([m, t] for m, t in ops)
                     for api, ops in sorted(self.spec_templates.items())},
            "learners": {api: state.learner.to_dict()
                         for api, state in sorted(self._apis.items())},
            "endpoints": [_dump(ep) for ep in self._eps.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inventory:
        """An inventory from ``to_dict``'s data; ValueError for data of another format or
        damaged data."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"not an inventory state of format {_FORMAT}")
        try:
            inventory = cls(
                spec_templates={str(api): {(str(m), str(t)) for m, t in ops}
                                for api, ops in data["spec"].items()},
                max_endpoints=int(data["max_endpoints"]),
                max_clients_per_endpoint=int(data["max_clients_per_endpoint"]),
                learner_nodes=int(data["learner_nodes"]))
            for api, learner in data["learners"].items():
                inventory._apis[str(api)] = _Api(TemplateLearner.from_dict(learner))
            for item in data["endpoints"]:
                ep = _load(item)
                key = (ep.api, ep.method, ep.template)
                if key in inventory._eps:
                    inventory._absorb(inventory._eps[key], ep)
                    continue
                inventory._eps[key] = ep
                if not ep.overflow:
                    inventory._capped += 1
                if len(ep.clients) > inventory.max_clients_per_endpoint:
                    inventory._evict(ep, inventory.max_clients_per_endpoint)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"a damaged inventory state: {exc!r}") from exc
        inventory._rekey()
        return inventory


def _dump(ep: EndpointStats) -> dict[str, Any]:
    latency = ep.latency
    low = next((i for i, c in enumerate(latency) if c), 0)
    high = max((i for i, c in enumerate(latency) if c), default=-1) + 1
    data: dict[str, Any] = {
        "api": ep.api, "method": ep.method, "template": ep.template, "calls": ep.calls,
        "classes": ep.by_class, "first": ep.first_seen, "last": ep.last_seen,
        "lat": [low, latency[low:high]], "req": ep.request_bytes, "resp": ep.response_bytes}
    if ep.learned:
        data["learned"] = True
    for name, value in (("blocked", ep.blocked), ("would_block", ep.would_block),
                        ("errors", ep.errors), ("unauth", ep.unauthenticated),
                        ("unauth_passed", ep.unauthenticated_passed),
                        ("other_clients", ep.other_clients)):
        if value:
            data[name] = value
    if ep.windows:
        data["windows"] = {str(b): n for b, n in ep.windows.items()}
        data["window_peak"] = ep.window_peak
    if ep.clients:
        # By kind, one flat list of 6 items per client: id, calls, last seen, seconds since
        # first seen, the open window's calls, peak (times in whole seconds; the open
        # window is the last seen one's). Flat: no container per client, so a big state
        # costs the garbage collector nothing.
        clients: dict[str, list[Any]] = {}
        flat: list[Any] = []
        flat_kind = None
        for (kind, ident), c in ep.clients.items():
            if kind != flat_kind:
                flat = clients.setdefault(kind, [])
                flat_kind = kind
            last = int(c.last_seen // 1)
            flat += (ident, c.calls, last, last - int(c.first_seen // 1), c.current, c.peak)
        data["clients"] = clients
    return data


def _load(data: dict[str, Any]) -> EndpointStats:
    if data["calls"] and (data["first"] is None or data["last"] is None):
        raise TypeError("first and last seen missing")
    low, counts = data["lat"]
    latency = [0] * LATENCY_BUCKETS
    for offset, count in enumerate(counts):
        latency[min(int(low) + offset, _TOP)] += int(count)
    ep = EndpointStats(
        api=str(data["api"]), method=str(data["method"]), template=str(data["template"]),
        learned=bool(data.get("learned", False)), calls=int(data["calls"]),
        by_class={str(k): int(v) for k, v in data["classes"].items()},
        blocked=int(data.get("blocked", 0)), would_block=int(data.get("would_block", 0)),
        errors=int(data.get("errors", 0)), unauthenticated=int(data.get("unauth", 0)),
        unauthenticated_passed=int(data.get("unauth_passed", 0)),
        first_seen=float(data["first"]) if data["first"] is not None else math.inf,
        last_seen=float(data["last"]) if data["last"] is not None else -math.inf,
        latency=latency, request_bytes=int(data["req"]), response_bytes=int(data["resp"]),
        other_clients=int(data.get("other_clients", 0)))
    ep.windows = {int(b): int(n) for b, n in data.get("windows", {}).items()}
    ep.window_peak = int(data.get("window_peak", 0))
    for kind, flat in data.get("clients", {}).items():
        if len(flat) % 6:
            raise TypeError("client lists hold 6 items per client")
        for at in range(0, len(flat), 6):
            ident, calls, last, age, current, peak = flat[at:at + 6]
            last = int(last)
            ep.clients[(str(kind), str(ident))] = ClientStats(
                int(calls), float(last - int(age)), float(last), float(last // 60), int(current),
                int(peak))
    return ep
