"""Context: per-call typed slots, each with exactly one writer."""

from __future__ import annotations

from typing import Any


class Context:
    """``api`` is set by the server (routing by host/prefix); ``endpoint`` by the route
    check; ``identity`` by the identity check; ``store`` is the state store; ``now`` one
    clock reading (wall time, seconds) for the whole call."""

    __slots__ = ("api", "endpoint", "identity", "now", "store")

    def __init__(self, api: Any, now: float, store: Any = None) -> None:
        self.api = api
        self.now = now
        self.store = store
        self.endpoint: Any = None
        self.identity: Any = None
