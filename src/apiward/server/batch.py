"""Requests to upstreams are gathered during one event-loop iteration and sent at its end.

Sending at once wakes the upstream once per request, and an upstream on the same core then
preempts the gateway each time; sending after the iteration's I/O callbacks lets it find
many requests ready per wake-up (measured: ~0.8 -> ~0.4 context switches per request, and
~15% less upstream CPU per request beside nginx). Client writes are not batched. Anything
written to an upstream connection goes through here or through ``write_now``, which sends
what is queued first, so the order per connection holds.
"""

from __future__ import annotations

import asyncio


class WriteBatch:
    __slots__ = ("pending", "scheduled")

    def __init__(self) -> None:
        self.pending: list[tuple[asyncio.WriteTransport, bytes]] = []
        self.scheduled = False

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.append((transport, data))

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, []
        for transport, data in pending:
            if not transport.is_closing():  # aborted since: its request is void
                transport.write(data)


batch = WriteBatch()
"""The one batch of this process (a process runs one gateway event loop)."""


def write_now(transport: asyncio.WriteTransport, data: bytes) -> None:
    """Write at once (streamed bodies: flow control must see it), after what is queued."""
    if batch.pending:
        batch.flush()
    transport.write(data)
