"""Load shedding: a cap on one API's calls in flight to its upstream, moved by its latency.

Sans-I/O and per worker process. The server asks ``admit(priority)`` before it forwards a
call (False: answer 503 with ``Retry-After: retry_after`` at once, nothing queues) and
calls ``release(latency, failed)`` exactly once for every admitted call when it has ended.
Both are a few attribute operations; the statistics are recomputed only when a window of
samples closes, and that is the only time the clock is read.

The cap (``limit``) is a gradient limiter, like Envoy's adaptive concurrency filter and
Netflix's concurrency-limits (Gradient2), made small:

- A window is ``window`` released calls: the current limit, kept within 16..256, so that a
  window spans about one round of the calls in flight when the upstream is busy.
- Its latency is the median (p50) of the window's successful calls.
- The baseline is the smallest window p50 seen in the current and the previous period of
  30 s (a windowed minimum, as BBR keeps its min RTT). So it falls at once to a faster
  upstream, and rises within 30-60 s after a lasting change (a slower upstream release)
  rather than pinning the cap low for ever. It is never taken below 1 ms.
- ``target = baseline * (1 + tolerance)``; ``gradient = clamp(target / p50, 0.5, 1.0)``;
  ``new = limit * gradient + sqrt(limit)`` (the headroom that lets it grow back);
  ``limit += 0.5 * (new - limit)`` (smoothing); then clamped to [min_inflight,
  max_inflight]. At a gradient of 0.5 the limit falls by about a quarter a window, towards
  4; at 1.0 it grows by sqrt(limit) / 2 a window, to max_inflight.
- Failures (AIMD-style): ``release(..., failed=True)`` marks a call that got no usable
  answer (refused or reset connection, timeout). A failed call is never a latency sample
  (a refused connection fails fast and must not look like a fast upstream; a timeout
  measures the timeout). A window in which a tenth or more of the calls failed cuts the
  limit multiplicatively, ``limit *= 0.75``, instead of the gradient step.
- The limit starts at max_inflight, so a restarted gateway does not refuse a busy API's
  traffic while it learns. With ``adaptive: false`` it stays at max_inflight.

Priorities: a call of priority ``p`` is admitted only while all the calls in flight (of
every priority) are fewer than ``SHARES[p]`` percent of the limit, rounded down, and at
least one: low 50%, normal 80%, high 90%, critical 100%. So as calls pile up, low ones are
refused first and critical ones (health checks, logins) last.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from apiward.config.models import LoadShedding

PRIORITIES = ("low", "normal", "high", "critical")
NORMAL = PRIORITIES.index("normal")
SHARES = (50, 80, 90, 100)  # percent of the limit each priority may fill, by index
WINDOW_MIN, WINDOW_MAX = 16, 256  # samples in a window: the limit, within these
SMOOTHING = 0.5  # how far one window moves the limit towards its new value
FAILURE_SHARE = 0.1  # a window with this share of failed calls or more ...
BACKOFF = 0.75  # ... multiplies the limit by this
BASELINE_PERIOD = 30.0  # seconds; the baseline is the least p50 of this period and the last
LATENCY_FLOOR = 0.001  # seconds; a baseline below this is taken as this
_FAILED = math.inf  # a failed call's place in the window: sorted after every latency


class Shedder:
    """The in-flight cap of one API's upstream in one worker; see the module's docstring."""

    __slots__ = ("_adaptive", "_caps", "_clock", "_estimate", "_max", "_min", "_n",
                 "_period_min", "_period_start", "_previous_min", "_samples", "_tolerance",
                 "inflight", "retry_after", "window")

    def __init__(self, config: LoadShedding, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.inflight = 0
        self.retry_after = math.ceil(config.retry_after)
        self._adaptive = config.adaptive
        self._tolerance = config.tolerance
        self._min = config.min_inflight
        self._max = config.max_inflight
        self._clock = clock
        self._samples: list[float] = [0.0] * WINDOW_MAX
        self._n = 0
        self._period_start = clock()
        self._period_min = self._previous_min = math.inf
        self._set(float(self._max))

    def admit(self, priority: int) -> bool:
        """Count one call of ``priority`` (an index into PRIORITIES) in flight, if the cap
        leaves it room; False: refuse the call now."""
        if self.inflight < self._caps[priority]:
            self.inflight += 1
            return True
        return False

    def release(self, latency: float, failed: bool = False) -> None:
        """One admitted call ended after ``latency`` seconds; ``failed``: it got no usable
        answer from the upstream. A release with nothing in flight is ignored."""
        inflight = self.inflight
        if inflight <= 0:
            return
        self.inflight = inflight - 1
        n = self._n
        self._samples[n] = _FAILED if failed else latency
        n += 1
        if n < self.window:
            self._n = n
        else:
            self._close_window(n)

    @property
    def limit(self) -> int:
        """The current cap on calls in flight (the critical priority's share)."""
        return self._caps[-1]

    @property
    def baseline(self) -> float | None:
        """The baseline latency in seconds (None before the first successful window)."""
        least = min(self._period_min, self._previous_min)
        return None if least == math.inf else least

    def _close_window(self, n: int) -> None:
        self._n = 0
        if not self._adaptive:
            return
        window = self._samples[:n]
        window.sort()
        ok = bisect_left(window, _FAILED)
        now = self._clock()
        elapsed = now - self._period_start
        if elapsed >= BASELINE_PERIOD:  # a new period; one with no traffic is forgotten
            self._previous_min = self._period_min if elapsed < 2 * BASELINE_PERIOD else math.inf
            self._period_min = math.inf
            self._period_start = now
        limit = self._estimate
        if n - ok >= n * FAILURE_SHARE:
            limit *= BACKOFF
        else:
            sample = window[ok // 2]
            if sample < self._period_min:
                self._period_min = sample
            baseline = min(self._period_min, self._previous_min)
            target = max(baseline, LATENCY_FLOOR) * (1.0 + self._tolerance)
            gradient = 1.0 if sample <= target else max(0.5, target / sample)
            limit += SMOOTHING * (limit * gradient + math.sqrt(limit) - limit)
        self._set(min(max(limit, float(self._min)), float(self._max)))

    def _set(self, estimate: float) -> None:
        self._estimate = estimate
        cap = int(estimate)
        self._caps = tuple(max(1, cap * share // 100) for share in SHARES)
        self.window = min(WINDOW_MAX, max(WINDOW_MIN, cap))


@dataclass(frozen=True, slots=True)
class Priorities:
    """``priorities`` compiled: template or path -> {METHOD: index, "": any other method}."""

    paths: dict[str, dict[str, int]]
    default: int = NORMAL


def compile_priorities(config: LoadShedding) -> Priorities:
    """The config's ``priorities`` as a table for ``priority_for``. A method's own entry
    wins over the path's any-method entry, which wins over ``"*"``, then ``normal``."""
    default = NORMAL
    any_method: dict[str, int] = {}
    by_method: dict[str, dict[str, int]] = {}
    for key, name in config.priorities.items():  # keys checked by the model
        index = PRIORITIES.index(name)
        if key == "*":
            default = index
        elif key.startswith("/"):
            any_method[key] = index
        else:
            method, _, path = key.partition(" ")
            by_method.setdefault(path, {})[method] = index
    paths = {path: {**by_method.get(path, {}), "": any_method.get(path, default)}
             for path in any_method.keys() | by_method.keys()}
    return Priorities(paths, default)


def priority_for(priorities: Priorities, method: str, template_or_path: str) -> int:
    """The priority index of a call: ``template_or_path`` is the matched path template as
    the spec writes it (``/users/{id}``), or the request's path when there is no spec."""
    table = priorities.paths.get(template_or_path)
    if table is None:
        return priorities.default
    index = table.get(method)
    return table[""] if index is None else index
