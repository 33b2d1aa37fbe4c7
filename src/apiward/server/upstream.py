"""One keep-alive connection to an upstream: writes requests, parses responses.

Responses are parsed with httptools and handed, callback by callback, to the downstream
connection that owns the current exchange. Completion is acted on after ``feed_data``
returns, so the connection is back in its pool before the next exchange can take it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from apiward.server.batch import batch
from apiward.server.pool import UpstreamPool, tune_socket
from apiward.wire.headers import CONNECTION, CONTENT_LENGTH, PASS, PLAIN_CONNECTION

log = logging.getLogger("apiward.upstream")

if TYPE_CHECKING:
    from apiward.server.downstream import Downstream


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "chunked",
        "counted",
        "done",
        "exchange",
        "has_length",
        "head_only",
        "idle_since",
        "interim",
        "keep_alive",
        "kinds",
        "lines",
        "parser",
        "pool",
        "prefixes",
        "received",
        "request_sent",
        "reused",
        "table",
        "tokens",
        "transport",
        "usable",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.exchange: Downstream | None = None
        self.usable = True
        self.counted = True
        self.idle_since = 0.0
        self.head_only = False
        self.reused = False
        self.received = False
        self.request_sent = False
        self.done = False
        self.interim = False
        self.keep_alive = True
        self.table = pool.response_fields
        self.kinds = self.table.kinds
        self.prefixes = self.table.prefixes
        self.lines: list[bytes] = [b""]
        self.tokens: list[bytes] = []
        self.has_length = False
        self.chunked = False

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        tune_socket(transport.get_extra_info("socket"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self.pool.discard(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.upstream_lost(self)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: this connection can't be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Surplus):
                self.usable = False  # it answered more than it was asked: never trusted again
            else:
                log.error("internal error on an upstream answer", exc_info=exc.__context__)
                self._fail(exchange)
                return
        except (HttpParserError, HttpParserUpgrade):  # Upgrade: a 101 nobody asked for
            self._fail(exchange)
            return
        if self.done:
            self._complete(exchange)
        else:
            exchange.flush()

    def _fail(self, exchange: Downstream) -> None:
        self.close()
        self.exchange = None
        exchange.upstream_failed(
            self, "upstream_bad_response", "the upstream sent an invalid HTTP response"
        )

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_congested(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_congested(False)

    # -- httptools callbacks ----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        prefix = self.prefixes.get(name)  # a field passed on as is, seen before
        if prefix is not None:
            self.lines.append(prefix + value)
            return
        kind = self.kinds.get(name)
        if kind is None:
            kind = self.table.classify(name)[0]
        if kind == PASS:
            self.lines.append(name + b": " + value)
        elif kind == CONTENT_LENGTH:
            self.has_length = True
            self.lines.append(name + b": " + value)
        elif kind == CONNECTION:
            if value in PLAIN_CONNECTION:  # "keep-alive" or "close", as peers mostly send it
                self.tokens.append(value)
            else:
                self.tokens.extend(t.strip() for t in value.lower().split(b","))
        elif name.lower() == b"transfer-encoding":  # chunked last, or the close ends it
            self.chunked = value.rstrip(b" \t").lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        if self.done:  # a second response in the same read: bytes nobody asked for
            raise _Surplus
        status = self.parser.get_status_code()
        lines, self.lines = self.lines, [b""]
        tokens, self.tokens = self.tokens, []
        has_length, self.has_length = self.has_length, False
        chunked, self.chunked = self.chunked, False
        if status < 200:  # 1xx interim answers are consumed here, never forwarded
            self.interim = True
            return
        if tokens and not PLAIN_CONNECTION.issuperset(tokens):  # it names more hop-by-hop fields
            named = set(tokens)
            lines = [line for line in lines if line.split(b":", 1)[0].lower() not in named]
        self.keep_alive = self.parser.should_keep_alive()
        self.exchange.response_head(  # type: ignore[union-attr]
            status, lines, has_length, has_length or chunked)
        if self.head_only:
            self.done = True

    def on_body(self, body: bytes) -> None:
        if self.done:  # a body after the head of a HEAD answer: dropped, and so is the
            self.usable = False  # connection, whose framing can no longer be trusted
            return
        self.exchange.response_body(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.done = True

    # -- used by the downstream side --------------------------------------------------
    def send(self, exchange: Downstream, data: bytes, head_only: bool) -> None:
        """Start an exchange: ``data`` is the request head (and any body already read)."""
        self.exchange = exchange
        self.head_only = head_only
        self.received = False
        self.request_sent = False
        batch.write(self.transport, data)  # type: ignore[arg-type]

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (an exchange that can't finish cleanly)."""
        self.usable = False
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()

    def _complete(self, exchange: Downstream) -> None:
        self.done = False
        self.exchange = None
        if self.head_only:  # the parser still waits for a body a HEAD answer never has
            self.parser = HttpResponseParser(self)
            self.head_only = False
        if self.keep_alive and self.request_sent and self.usable:
            self.reused = True
            self.pool.release(self)
        else:
            self.close()
        exchange.response_complete()


class _Surplus(Exception):
    """Raised in a parser callback to stop reading what the upstream was not asked for."""
