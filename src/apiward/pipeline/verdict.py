"""Verdict: what every check returns. A denial is data, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, located in the request (e.g. ``body.items[2].price``)."""

    location: str
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Allow, or deny with an HTTP status, a stable reason code and a human detail."""

    allowed: bool
    status: int = 200
    reason: str = ""
    title: str = ""
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    violations: tuple[Violation, ...] = field(default=())


ALLOW = Verdict(True)
"""The one allow instance: the allow path allocates nothing."""


def deny(
    status: int,
    reason: str,
    detail: str,
    *,
    title: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    violations: tuple[Violation, ...] = (),
) -> Verdict:
    """A denial; ``title`` defaults to the status' standard phrase."""
    return Verdict(False, status, reason, title, detail, headers, violations)
