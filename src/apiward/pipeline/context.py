"""Context: per-call typed slots, each with exactly one writer."""

from __future__ import annotations

from typing import Any


class Context:
    """``api`` is set by the server (routing by host/prefix); ``endpoint`` (the matched
    operation) and ``path_params`` (its raw template values) by the route check;
    ``identity`` by the identity check; ``store`` is the state store; ``now`` one clock
    reading (wall time, seconds) for the whole call. ``body_limit`` is set by a head check
    that wants to judge the body: the server then reads at most that many bytes before the
    body checks run; None means the body streams through unread.

    The ratelimit check writes the rest: ``pending`` (its verdict still to come from the
    store: an awaitable the server awaits before forwarding), ``response_lines`` (header
    lines for the answer, e.g. ``RateLimit``) and ``limited`` (what it charged, so a call
    refused later is given back)."""

    __slots__ = ("api", "body_limit", "endpoint", "identity", "limited", "now", "path_params",
                 "pending", "response_lines", "store")

    def __init__(self, api: Any, now: float, store: Any = None) -> None:
        self.api = api
        self.now = now
        self.store = store
        self.endpoint: Any = None
        self.path_params: dict[str, str] = {}
        self.identity: Any = None
        self.body_limit: int | None = None
        self.pending: Any = None
        self.response_lines: bytes = b""
        self.limited: Any = None
