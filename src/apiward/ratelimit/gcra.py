"""GCRA, the generic cell rate algorithm: rate limits as one timestamp per key.

Why GCRA: a limit of N per period P is a steady emission interval T = P/N with a burst
tolerance, kept as one "theoretical arrival time" (TAT) per key. It is smooth (no
window-edge bursts, unlike fixed windows), exact (no sampling, unlike sliding-window
estimates), needs one number of state per key and limit (a sliding log needs one per
call), and a refused call changes nothing, so a client hammering a limit does not push
its own recovery further away. The same arithmetic runs in the Redis Lua script
(``redis_limiter.LUA``), so every backend decides alike.

A key idle long enough may make ``burst`` calls at once, then one per T. In any window
of length W it gets at most ``burst + W/T`` calls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` calls per ``period`` seconds, ``burst`` of them at once."""

    count: int
    period: float
    burst: int

    @property
    def interval(self) -> float:
        """T: the time one call's worth of quota takes to come back."""
        return self.period / self.count

    @property
    def tolerance(self) -> float:
        """How far ahead of now a key's TAT may run: ``burst`` intervals."""
        return self.burst * self.period / self.count

    @property
    def window(self) -> int:
        """The period in whole seconds, as RateLimit-Policy's ``w`` says it."""
        return max(1, round(self.period))


def parse_rate(text: str, burst: int | None = None) -> Rate:
    """``"100/s"``, ``"5/min"``, ``"10000/day"``, ``"30/10s"`` -> Rate; ValueError in
    plain words. ``burst`` defaults to the count: "5/min" allows 5 at once, then one
    every 12 s."""
    match = _RATE.match(text.lower()) if isinstance(text, str) else None
    unit = match.group(3) if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f'expected a rate like "100/s", "5/min", "30/10s" or "10000/day", '
                         f"got {text!r}")
    count = int(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[unit]
    if count < 1 or period <= 0:
        raise ValueError(f"a rate needs at least 1 call per a period > 0, got {text!r}")
    if burst is not None and burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst}")
    return Rate(count, period, burst or count)


class Decision:
    """What one limiter decision says: allowed or not; for the RateLimit header the
    tightest limit's index, the calls left on it and the seconds until it is whole again;
    for a refusal, the seconds until the call would be allowed (or the ban ends).

    A plain class: one is made per decision, and a frozen dataclass costs ~0.8 us to
    build where this costs ~0.2 us."""

    __slots__ = ("allowed", "banned", "remaining", "reset", "retry_after", "tightest")

    def __init__(self, allowed: bool, remaining: int, reset: float, retry_after: float,
                 tightest: int = 0, banned: bool = False) -> None:
        self.allowed = allowed
        self.remaining = remaining
        self.reset = reset
        self.retry_after = retry_after
        self.tightest = tightest
        self.banned = banned  # refused because the key is banned, not by a rate

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Decision({fields})"


def admit(tats: list[float], rates: tuple[Rate, ...], now: float,
          cost: float = 1.0) -> tuple[Decision, list[tuple[float, float]] | None]:
    """One call of ``cost`` against every rate (``tats[i]``: rate i's stored TAT, 0.0
    when none). Allowed only when every rate allows; then the writes are the new
    ``(tat, expires)`` per rate (an entry is worthless once its TAT has passed), else
    None: a refusal writes nothing."""
    if len(rates) == 1:  # the common case in straight lines
        rate = rates[0]
        interval = rate.period / rate.count
        tolerance = rate.burst * interval
        tat = tats[0]
        new_tat = (tat if tat > now else now) + cost * interval
        ahead = new_tat - now
        if ahead > tolerance + 1e-9:
            return Decision(False, 0, ahead, ahead - tolerance), None
        return (Decision(True, int((tolerance - ahead) / interval + 1e-9), ahead, 0.0),
                [(new_tat, new_tat)])
    allowed = True
    retry_after = 0.0
    remaining = -1
    reset = 0.0
    tightest = 0
    new_tats = []
    for index, rate in enumerate(rates):
        interval = rate.period / rate.count
        tolerance = rate.burst * interval
        tat = tats[index] if tats[index] > now else now
        new_tat = tat + cost * interval
        ahead = new_tat - now
        if ahead > tolerance + 1e-9:
            allowed = False
            wait = ahead - tolerance
            if wait > retry_after:
                retry_after = wait
        left = int((tolerance - ahead) / interval + 1e-9) if ahead <= tolerance else 0
        if remaining < 0 or left < remaining:
            remaining, reset, tightest = left, ahead, index
        new_tats.append(new_tat)
    if not allowed:
        return Decision(False, 0, reset, retry_after, tightest), None
    return (Decision(True, remaining, reset, 0.0, tightest),
            [(tat, tat) for tat in new_tats])


def charge(tats: list[float], rates: tuple[Rate, ...], now: float,
           cost: float) -> list[tuple[float, float]]:
    """Count ``cost`` whatever the limits say (a cost known only once the upstream has
    answered), or give it back (a negative cost: the call was refused further on). A
    TAT never goes below now: a refund cannot bank quota."""
    writes = []
    for index, rate in enumerate(rates):
        tat = tats[index] if tats[index] > now else now
        tat = max(now, tat + cost * rate.period / rate.count)
        writes.append((tat, tat))
    return writes


def seconds(value: float) -> int:
    """Whole seconds for Retry-After and RateLimit's ``t``: rounded up, at least 1 when
    anything is left to wait."""
    return max(1, math.ceil(value - 1e-9)) if value > 0 else 0
