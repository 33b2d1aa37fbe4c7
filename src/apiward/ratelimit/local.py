"""The node's limiter: GCRA decisions in the shared table every worker process inherited.

Exact for the machine: with ``--workers N`` a limit of 100/s is 100/s for the node, since
every worker reads and writes the same slots under the same locks.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from apiward.ratelimit.gcra import Decision, Rate, admit, charge
from apiward.ratelimit.table import SharedTable

_NODE_TABLE: SharedTable | None = None
_NODE_ID = ""
NODE_SLOTS = 1 << 17  # about 3 MiB; live keys beyond it evict the soonest to expire


def node_table() -> SharedTable:
    """This process's table, made on first use. The supervisor calls it before forking,
    so its workers share one; a reload keeps it (counters survive a reload)."""
    global _NODE_TABLE, _NODE_ID
    if _NODE_TABLE is None:
        _NODE_TABLE = SharedTable(NODE_SLOTS)
        _NODE_ID = f"{socket.gethostname()}:{os.getpid()}"
    return _NODE_TABLE


def node_id() -> str:
    """Who this gateway is among those sharing a Redis: one node per shared table (a
    supervisor and its workers), named by host and the pid that made the table."""
    node_table()
    return _NODE_ID


@dataclass(frozen=True, slots=True)
class BanRule:
    """A key refused ``after`` times, each within ``within`` seconds of the last, is
    refused outright for ``duration`` seconds."""

    after: int
    within: float
    duration: float


class LocalLimiter:
    """``admit`` and ``charge`` for one key's rates; ``names`` are the per-rate slots."""

    __slots__ = ("table",)

    def __init__(self, table: SharedTable | None = None) -> None:
        self.table = table if table is not None else node_table()

    def admit(self, key: str, names: tuple[str, ...], rates: tuple[Rate, ...], now: float,
              cost: float, ban: BanRule | None, peek: bool = False) -> Decision:
        """Decide a call of ``cost``; ``peek``: only whether it would be allowed (a cost
        known once the upstream answers is charged then), writing no TAT. Either way a
        refusal counts towards a ban."""
        table = self.table
        if ban is not None:
            until = table.get("ban|" + key, now)
            if until > now:
                return Decision(False, 0, 0.0, until - now, 0, True)
        if peek:
            decision = table.update(names, now,
                                    lambda tats: (admit(tats, rates, now, cost)[0], None))
        else:
            decision = table.update(names, now, lambda tats: admit(tats, rates, now, cost))
        if not decision.allowed and ban is not None:
            self._refused(key, now, ban)
        return decision

    def peek(self, names: tuple[str, ...], rates: tuple[Rate, ...], now: float,
             cost: float) -> Decision:
        """Would a call of ``cost`` be allowed? Writes nothing."""
        return self.table.update(names, now,
                                 lambda tats: (admit(tats, rates, now, cost)[0], None))

    def charge(self, names: tuple[str, ...], rates: tuple[Rate, ...], now: float,
               cost: float) -> None:
        self.table.update(names, now, lambda tats: (None, charge(tats, rates, now, cost)))

    def _refused(self, key: str, now: float, ban: BanRule) -> None:
        count = self.table.update(
            ("viol|" + key,), now,
            lambda values: (values[0] + 1, [(values[0] + 1, now + ban.within)]))
        if count >= ban.after:
            self.table.put("ban|" + key, now + ban.duration, now + ban.duration, now)
            self.table.delete("viol|" + key)

    def banned_until(self, key: str, now: float) -> float:
        return self.table.get("ban|" + key, now)

    def unban(self, key: str) -> None:
        self.table.delete("ban|" + key)
