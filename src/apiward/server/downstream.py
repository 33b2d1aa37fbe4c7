"""One client connection: parse requests, judge them, forward them, stream answers back.

httptools calls back as bytes arrive. Each request becomes a ``Call``; calls are served
one at a time, in order (pipelined ones wait in ``queue`` with reading paused). A call is
either answered locally (a refusal, as problem+json) or forwarded over a pooled upstream
connection whose response callbacks land in ``response_*`` below.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from time import monotonic
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError, HttpRequestParser

from apiward.errors import WireError
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.verdict import Verdict, deny
from apiward.server.pool import UpstreamUnavailable, tune_socket
from apiward.wire.forwarded import client_ip, forwarded_chain
from apiward.wire.framing import CHUNKED, check_field, request_body_length
from apiward.wire.headers import Headers
from apiward.wire.problem import problem_response
from apiward.wire.target import normalise_target

if TYPE_CHECKING:
    from apiward.runtime import CompiledApi, Runtime
    from apiward.server.gateway import Gateway
    from apiward.server.upstream import UpstreamConnection

log = logging.getLogger("apiward.server")

# Deadline kinds, checked by the gateway's sweeper.
IDLE, HEADER, BODY, UPSTREAM = 1, 2, 3, 4

# Reasons to stop reading from the client; reading resumes when none is left.
PIPELINE, CONGESTED, CONNECTING = 1, 2, 4

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    }
)
# Request fields the gateway sets itself (or consumes) rather than passing on.
REQUEST_REPLACED = HOP_BY_HOP | {
    b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"forwarded",
}
RESPONSE_DROPPED = HOP_BY_HOP
# Request fields the head stage needs to look at.
NOTED = frozenset(
    {
        b"host", b"content-length", b"transfer-encoding", b"expect", b"connection",
        b"x-forwarded-for", b"forwarded", b"x-forwarded-proto",
    }
)
NO_BODY_STATUS = frozenset({204, 304})


class Call:
    """One request/response exchange on this connection."""

    __slots__ = (
        "api",
        "body_done",
        "body_length",
        "body_parts",
        "body_received",
        "close_after",
        "conn",
        "expect_continue",
        "head",
        "http10",
        "is_head",
        "keep_alive",
        "local",
        "request",
        "resp_chunked",
        "resp_close_delimited",
        "resp_started",
    )

    def __init__(self) -> None:
        self.api: CompiledApi | None = None
        self.request: Request | None = None
        self.local: bytes | None = None  # a complete response to send instead of forwarding
        self.head = b""  # the upstream request head
        self.keep_alive = True
        self.close_after = False
        self.is_head = False
        self.http10 = False
        self.expect_continue = False
        self.body_length = 0
        self.body_received = 0
        self.body_done = False
        self.body_parts: list[bytes] = []
        self.conn: UpstreamConnection | None = None
        self.resp_started = False
        self.resp_chunked = False
        self.resp_close_delimited = False


class Downstream(asyncio.Protocol):
    __slots__ = (
        "active",
        "blockers",
        "current",
        "dead",
        "deadline",
        "deadline_kind",
        "fields",
        "gateway",
        "head_bytes",
        "noted",
        "out",
        "parser",
        "peer_ip",
        "queue",
        "transport",
        "url",
    )

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.peer_ip = ""
        self.deadline = 0.0
        self.deadline_kind = 0
        self.url = b""
        self.fields: list[tuple[bytes, bytes, bytes]] = []
        self.noted: list[tuple[bytes, bytes]] = []
        self.head_bytes = -1  # -1: between requests; else bytes of the head read so far
        self.current: Call | None = None  # the call whose bytes are being parsed
        self.active: Call | None = None  # the call being answered
        self.queue: collections.deque[Call] = collections.deque()
        self.blockers = 0
        self.dead = False  # the parser hit an error: ignore anything more
        self.out: list[bytes] = []

    # -- connection lifecycle ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        tune_socket(transport.get_extra_info("socket"))
        gateway = self.gateway
        runtime = gateway.runtime
        if not gateway.admit(self):
            self.dead = True
            refusal = deny(503, "too_many_connections", "the gateway has too many connections")
            transport.write(problem_response(refusal, "connections", gateway.next_request_id(),
                                             request_id_header=runtime.request_id_header,
                                             close=True))
            transport.close()
            return
        self.deadline = monotonic() + runtime.header_timeout
        self.deadline_kind = HEADER

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.gateway.forget(self)
        call = self.active
        if call is not None and call.conn is not None:
            call.conn.abort()  # an exchange cut short leaves the upstream mid-message
            call.conn.pool.discard(call.conn)
            call.conn = None
        self.active = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        if self.head_bytes >= 0:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, WireError):
                self._reject(cause)
            else:
                log.exception("internal error while handling a request", exc_info=cause)
                self._reject(WireError(500, "internal_error", "the gateway failed on this request"))
            return
        except HttpParserError as exc:
            self._reject(_parser_error(exc))
            return
        runtime = self.gateway.runtime
        if self.head_bytes > runtime.header_size + runtime.target_length:
            # httptools buffers a field until it ends: refuse a head that only grows.
            self._reject(WireError(431, "header_section_too_large",
                                   "the request header section is too large"))
            return
        if self.out:
            self.flush()

    def eof_received(self) -> bool:
        # A client half-closing after its request still gets the answer, then the close.
        self.dead = True
        return self.active is not None or bool(self.queue)

    def pause_writing(self) -> None:
        call = self.active
        if call is not None and call.conn is not None and call.conn.transport is not None:
            call.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        call = self.active
        if call is not None and call.conn is not None and call.conn.transport is not None:
            call.conn.transport.resume_reading()

    # -- httptools callbacks: the request ---------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.fields = []
        self.noted = []
        if self.head_bytes < 0:
            self.head_bytes = 0
        if self.deadline_kind == IDLE or self.deadline_kind == 0:
            self.deadline = monotonic() + self.gateway.runtime.header_timeout
            self.deadline_kind = HEADER

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.gateway.runtime.target_length:
            raise WireError(414, "uri_too_long", "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        check_field(lname, value)
        fields = self.fields
        fields.append((lname, name, value))
        if len(fields) > self.gateway.runtime.header_count:
            raise WireError(431, "too_many_headers", "the request has too many header fields")
        if lname in NOTED:
            self.noted.append((lname, value))

    def on_headers_complete(self) -> None:
        self.head_bytes = -1
        call = self._judge_head()
        self.current = call
        if self.active is None:
            self._start(call)
        else:
            self.queue.append(call)
            self._block(PIPELINE)

    def on_body(self, body: bytes) -> None:
        call = self.current
        if call is None:
            return
        call.body_received += len(body)
        if call.body_received > self.gateway.runtime.body_size:
            raise WireError(413, "body_too_large", "the request body is larger than allowed")
        if call.local is not None:
            return  # refused already: the body is read and dropped
        conn = call.conn
        if conn is not None and conn.transport is not None:
            if call.body_length == CHUNKED:
                conn.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            else:
                conn.transport.write(body)
        else:
            call.body_parts.append(body)

    def on_message_complete(self) -> None:
        call = self.current
        if call is None:
            return
        self.current = None
        call.body_done = True
        conn = call.conn
        if conn is not None and call.body_length != 0 and call is self.active:
            if call.body_length == CHUNKED and conn.transport is not None:
                conn.transport.write(b"0\r\n\r\n")
            self._request_sent(call, conn)

    # -- judging a head ---------------------------------------------------------------
    def _judge_head(self) -> Call:
        """Framing, target, routing and head checks; returns the Call to serve."""
        gateway = self.gateway
        runtime = gateway.runtime
        parser = self.parser
        call = Call()
        call.keep_alive = parser.should_keep_alive()
        method = parser.get_method().decode("ascii")
        call.is_head = method == "HEAD"
        request_id = ""
        content_lengths: list[bytes] = []
        transfer_encodings: list[bytes] = []
        hosts: list[bytes] = []
        xff: list[str] = []
        forwarded: list[str] = []
        for lname, value in self.noted:
            if lname == b"host":
                hosts.append(value)
            elif lname == b"content-length":
                content_lengths.append(value)
            elif lname == b"transfer-encoding":
                transfer_encodings.append(value)
            elif lname == b"expect":
                call.expect_continue = value.lower() == b"100-continue"
            elif lname == b"x-forwarded-for":
                xff.append(value.decode("latin-1"))
            elif lname == b"forwarded":
                forwarded.append(value.decode("latin-1"))
        for lname, _, value in self.fields:
            if lname == runtime.request_id_lname:
                if gateway.valid_request_id(value):
                    request_id = value.decode("ascii")
                break
        if not request_id:
            request_id = gateway.next_request_id()
        version = parser.get_http_version()
        call.http10 = version == "1.0"
        try:
            call.body_length = request_body_length(content_lengths, transfer_encodings)
            call.body_done = call.body_length == 0
            if len(hosts) > 1:
                raise WireError(400, "multiple_host_headers", "the request has more than one Host")
            if not hosts and version == "1.1":
                raise WireError(400, "missing_host", "an HTTP/1.1 request needs a Host header")
            host = hosts[0].decode("latin-1").lower() if hosts else ""
            target = normalise_target(
                self.url,
                method,
                allow_non_ascii=runtime.allow_non_ascii,
                merge_empty_segments=runtime.merge_empty_segments,
            )
            if target.authority is not None:
                if hosts and target.authority.lower() != host:
                    raise WireError(400, "host_mismatch",
                                    "the absolute-form target names another host than Host")
                host = target.authority.lower()
        except WireError as error:
            return self._refused(call, error, request_id, "http", method, "")
        peer = self.peer_ip
        chain = forwarded_chain(xff, forwarded) if (xff or forwarded) else []
        ip = client_ip(peer, chain, runtime.is_trusted_proxy) if chain else peer
        host_name = _strip_port(host)
        request = Request(
            method, target.path, target.query, Headers(self.fields), ip, request_id,
            host=host_name, http_version=version,
        )
        call.request = request
        api = runtime.route(host_name, target.path)
        if api is None:
            verdict = deny(404, "no_api", "no API is served at this host and path")
            return self._blocked(call, verdict, "routing")
        call.api = api
        if call.body_length > runtime.body_size:
            verdict = deny(413, "body_too_large", "the request body is larger than allowed")
            return self._blocked(call, verdict, "limits")
        if api.head_checks:
            context = Context(api, monotonic())
            for check in api.head_checks:
                verdict = check.run(request, context)
                if not verdict.allowed:
                    if check.mode == "block":
                        return self._blocked(call, verdict, check.name)
                    self._event(request, check.name, "would_block", verdict)
        call.head = self._upstream_head(call, request, api, host, chain, runtime)
        return call

    def _upstream_head(self, call: Call, request: Request, api: CompiledApi, host: str,
                       chain: list[str], runtime: Runtime) -> bytes:
        """The request head sent upstream: what the checks judged, hop-by-hop removed."""
        target = api.base_path + request.path
        if request.query:
            target += "?" + request.query
        parts = [request.method.encode("ascii"), b" ", target.encode("ascii"), b" HTTP/1.1\r\n"]
        dropped = REQUEST_REPLACED
        noted = self.noted
        for lname, value in noted:
            if lname == b"connection":
                dropped = dropped | {t.strip() for t in value.lower().split(b",")}
        rid = runtime.request_id_lname
        for lname, name, value in self.fields:
            if lname in dropped or lname == rid or lname.startswith(b"proxy-"):
                continue
            parts += (name, b": ", value, b"\r\n")
        if api.preserve_host and host:
            parts += (b"Host: ", host.encode("latin-1"), b"\r\n")
        else:
            parts += (b"Host: ", api.upstream_host, b"\r\n")
        peer = self.peer_ip.encode("ascii")
        if chain and request.client_ip != self.peer_ip:  # a trusted proxy's chain, kept
            xff = ", ".join(chain).encode("ascii") + b", " + peer
            proto = next((v for n, v in noted if n == b"x-forwarded-proto"), b"http")
        else:
            xff, proto = peer, b"http"
        parts += (
            b"X-Forwarded-For: ", xff, b"\r\nX-Forwarded-Proto: ", proto, b"\r\n",
            runtime.request_id_header, b": ", request.request_id.encode("ascii"), b"\r\n",
        )
        if host:
            parts += (b"X-Forwarded-Host: ", host.encode("latin-1"), b"\r\n")
        if call.body_length == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        elif call.body_length > 0 or request.method in ("POST", "PUT", "PATCH"):
            parts.append(b"Content-Length: %d\r\n\r\n" % call.body_length)
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    def _blocked(self, call: Call, verdict: Verdict, check: str) -> Call:
        request = call.request
        assert request is not None
        self._event(request, check, "block", verdict)
        close = call.body_length != 0 or call.expect_continue or not call.keep_alive
        call.local = problem_response(
            verdict, check, request.request_id,
            request_id_header=self.gateway.runtime.request_id_header,
            close=close, head_only=call.is_head,
        )
        call.close_after = close
        return call

    def _refused(self, call: Call, error: WireError, request_id: str, check: str,
                 method: str, path: str) -> Call:
        verdict = deny(error.status, error.reason, error.detail)
        self.gateway.runtime.events.emit({
            "request_id": request_id, "client_ip": self.peer_ip, "method": method,
            "path": path, "check": check, "action": "block", "status": error.status,
            "reason": error.reason,
        })
        call.local = problem_response(
            verdict, check, request_id,
            request_id_header=self.gateway.runtime.request_id_header, close=True,
        )
        call.close_after = True
        self.dead = True  # framing can't be trusted any more: nothing after this is read
        return call

    def _event(self, request: Request, check: str, action: str, verdict: Verdict) -> None:
        self.gateway.runtime.events.emit({
            "request_id": request.request_id, "client_ip": request.client_ip,
            "method": request.method, "path": request.path, "check": check,
            "action": action, "status": verdict.status, "reason": verdict.reason,
        })

    def _reject(self, error: WireError) -> None:
        """A request broke the wire rules mid-parse: answer it in turn, then close."""
        self.head_bytes = -1
        self._block(PIPELINE)
        call, self.current = self.current, None
        refusal = self._refused(Call(), error, self.gateway.next_request_id(), "http",
                                self.parser_method(), "")
        if call is not None and call is self.active:
            if call.resp_started:
                self._abort()
                return
            if call.conn is not None:
                call.conn.abort()
                call.conn = None
            self.active = None
        elif call is not None and call in self.queue:
            self.queue.remove(call)
        if self.active is None:
            self._start(refusal)
        else:
            self.queue.append(refusal)

    def parser_method(self) -> str:
        try:
            return self.parser.get_method().decode("ascii", "replace")
        except HttpParserError:
            return ""

    # -- serving calls in order -------------------------------------------------------
    def _start(self, call: Call) -> None:
        self.active = call
        transport = self.transport
        if transport is None:
            return
        if call.local is not None:
            transport.write(call.local)
            self._finish(call)
            return
        if call.expect_continue and not call.body_done:
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        api = call.api
        assert api is not None
        conn = api.pool.take_idle()
        if conn is not None:
            self._attach(call, conn)
        else:
            self._block(CONNECTING)
            self.deadline_kind = 0
            asyncio.get_running_loop().create_task(self._connect(call, api))

    async def _connect(self, call: Call, api: CompiledApi) -> None:
        try:
            conn = await api.pool.connect()
        except UpstreamUnavailable as exc:
            self._unblock(CONNECTING)
            if self.active is call:
                self._upstream_error(call, exc.status, exc.reason, exc.detail)
            return
        self._unblock(CONNECTING)
        if self.active is not call or self.transport is None or self.transport.is_closing():
            api.pool.release(conn, monotonic())
            return
        self._attach(call, conn)

    def _attach(self, call: Call, conn: UpstreamConnection) -> None:
        call.conn = conn
        data = call.head
        if call.body_parts:
            if call.body_length == CHUNKED:
                data += b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in call.body_parts)
            else:
                data += b"".join(call.body_parts)
            call.body_parts = []
        if call.body_done and call.body_length == CHUNKED:
            data += b"0\r\n\r\n"
        conn.send(self, data, call.is_head)
        if call.body_done:
            self._request_sent(call, conn)
        else:
            self.deadline = monotonic() + self.gateway.runtime.body_timeout
            self.deadline_kind = BODY

    def _request_sent(self, call: Call, conn: UpstreamConnection) -> None:
        conn.request_sent = True
        api = call.api
        self.deadline = monotonic() + (api.response_timeout if api else 60.0)
        self.deadline_kind = UPSTREAM

    def _finish(self, call: Call) -> None:
        """The answer to ``call`` is fully written: next call, idle, or close."""
        self.active = None
        if self.out:
            self.flush()
        transport = self.transport
        if transport is None:
            return
        if call.close_after or not call.keep_alive or not call.body_done or self.gateway.draining:
            self._close()
            return
        if self.queue:
            call = self.queue.popleft()
            if not self.queue:
                self._unblock(PIPELINE)
            self._start(call)
            return
        if self.dead:
            self._close()
            return
        self._unblock(PIPELINE)
        if self.head_bytes < 0:
            self.deadline = monotonic() + self.gateway.runtime.keepalive_timeout
            self.deadline_kind = IDLE
        else:
            self.deadline = monotonic() + self.gateway.runtime.header_timeout
            self.deadline_kind = HEADER

    # -- the upstream's answer --------------------------------------------------------
    def response_head(self, status: int, reason: bytes,
                      fields: list[tuple[bytes, bytes, bytes]], tokens: bytes) -> None:
        call = self.active
        if call is None:
            return
        call.resp_started = True
        runtime = self.gateway.runtime
        dropped = RESPONSE_DROPPED
        if tokens:
            dropped = dropped | {t.strip() for t in tokens.split(b",")}
        rid = runtime.request_id_lname
        out = self.out
        out.append(b"HTTP/1.1 %d %b\r\n" % (status, reason))
        has_length = False
        for lname, name, value in fields:
            if lname in dropped or lname == rid:
                continue
            if lname == b"content-length":
                has_length = True
            out += (name, b": ", value, b"\r\n")
        out += (runtime.request_id_header, b": ",
                call.request.request_id.encode("ascii"), b"\r\n")  # type: ignore[union-attr]
        bodyless = call.is_head or status in NO_BODY_STATUS
        if not bodyless and not has_length:
            if not call.http10:
                call.resp_chunked = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                call.close_after = True
        if call.close_after or not call.keep_alive or self.gateway.draining:
            out.append(b"Connection: close\r\n\r\n")
        elif call.http10:
            out.append(b"Connection: keep-alive\r\n\r\n")
        else:
            out.append(b"\r\n")
        self.deadline = monotonic() + (call.api.response_timeout if call.api else 60.0)

    def response_body(self, body: bytes) -> None:
        call = self.active
        if call is None:
            return
        if call.resp_chunked:
            self.out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self.out.append(body)

    def response_complete(self) -> None:
        call = self.active
        if call is None:
            return
        call.conn = None
        if call.resp_chunked:
            self.out.append(b"0\r\n\r\n")
        self._finish(call)

    def flush(self) -> None:
        out = self.out
        if self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        out.clear()

    def upstream_congested(self, congested: bool) -> None:
        if congested:
            self._block(CONGESTED)
        else:
            self._unblock(CONGESTED)

    def upstream_lost(self, conn: UpstreamConnection) -> None:
        """The upstream closed while an exchange was on it."""
        call = self.active
        if call is None or call.conn is not conn:
            return
        call.conn = None
        self._unblock(CONGESTED)
        if not call.resp_started:
            if conn.reused and not conn.received and call.body_done and not call.body_parts \
                    and call.body_length == 0:
                self._start(call)  # a stale keep-alive connection: try a fresh one once
                return
            self._upstream_error(call, 502, "upstream_closed",
                                 "the upstream closed the connection without answering")
        elif not call.resp_chunked and not call.close_after:
            self._abort()  # a length-framed answer cut short: the client must see it broke
        else:
            self.response_complete()  # close-delimited: the end is the close

    def upstream_failed(self, conn: UpstreamConnection, reason: str, detail: str) -> None:
        call = self.active
        if call is None:
            return
        call.conn = None
        if call.resp_started:
            self._abort()
        else:
            self._upstream_error(call, 502, reason, detail)

    def _upstream_error(self, call: Call, status: int, reason: str, detail: str) -> None:
        request = call.request
        assert request is not None
        verdict = deny(status, reason, detail)
        self._event(request, "upstream", "error", verdict)
        if call.conn is not None:
            call.conn.abort()
            call.conn = None
        call.close_after = call.close_after or not call.body_done
        self.out.append(problem_response(
            verdict, "upstream", request.request_id,
            request_id_header=self.gateway.runtime.request_id_header,
            close=call.close_after or not call.keep_alive, head_only=call.is_head,
        ))
        self._finish(call)

    # -- timers, flow control, shutdown ----------------------------------------------
    def on_deadline(self) -> None:
        """Called by the sweeper when ``deadline`` has passed."""
        kind, self.deadline_kind, self.deadline = self.deadline_kind, 0, 0.0
        call = self.active
        if kind == IDLE and call is None:
            self._close()
        elif kind == HEADER:
            if self.head_bytes > 0:
                self._reject(WireError(408, "header_timeout", "the request head came too slowly"))
            else:
                self._close()
        elif kind == BODY and call is not None:
            if call.resp_started:
                self._abort()
            else:
                call.close_after = True
                self.current = None
                self.dead = True
                self._upstream_timeout(call, 408, "body_timeout",
                                       "the request body came too slowly")
        elif kind == UPSTREAM and call is not None:
            if call.resp_started:
                self._abort()
            else:
                self._upstream_timeout(call, 504, "upstream_timeout",
                                       "the upstream did not answer in time")

    def _upstream_timeout(self, call: Call, status: int, reason: str, detail: str) -> None:
        self._upstream_error(call, status, reason, detail)
        if self.out:
            self.flush()

    def drain(self) -> None:
        """Shutdown: an idle connection closes now, a busy one after its answer."""
        if self.active is None and not self.queue and self.head_bytes <= 0:
            self._close()

    def _block(self, reason: int) -> None:
        if not self.blockers and self.transport is not None:
            self.transport.pause_reading()
        self.blockers |= reason

    def _unblock(self, reason: int) -> None:
        if self.blockers & reason:
            self.blockers &= ~reason
            if not self.blockers and self.transport is not None and not self.dead:
                self.transport.resume_reading()

    def _close(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self.dead = True
        call = self.active
        if call is not None and call.conn is not None:
            call.conn.abort()
            call.conn = None
        if self.transport is not None:
            self.transport.abort()


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _parser_error(exc: HttpParserError) -> WireError:
    text = str(exc).lower()
    if "method" in text:
        return WireError(400, "invalid_method", "the request method is not valid")
    if "url" in text:
        return WireError(400, "invalid_target", "the request target is not valid")
    if "version" in text:
        return WireError(505, "http_version_not_supported", "only HTTP/1.0 and 1.1 are served")
    return WireError(400, "malformed_request", "the request is not valid HTTP/1.1")
