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
from http import HTTPStatus
from time import monotonic, time
from typing import TYPE_CHECKING, Any

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserInvalidURLError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from apiward.errors import WireError
from apiward.pipeline.context import Context
from apiward.pipeline.request import Request
from apiward.pipeline.runner import (
    CHECK_FAILED,
    run_body_checks,
    run_checks,
    run_response_checks,
)
from apiward.pipeline.verdict import ALLOW, Verdict, deny
from apiward.server.batch import write_now
from apiward.server.pool import UpstreamUnavailable
from apiward.server.shedding import PRIORITIES, priority_for
from apiward.server.tls import TlsFacts, handshake_facts
from apiward.wire.chunks import ChunkMeter
from apiward.wire.forwarded import client_ip
from apiward.wire.framing import CHUNKED, check_version, request_body_length
from apiward.wire.head import NotedFields, field_bytes, request_line, strip_port
from apiward.wire.headers import DROPPED, PASS, PLAIN_CONNECTION, Headers
from apiward.wire.problem import problem_response
from apiward.wire.target import is_valid_host, normalise_target

if TYPE_CHECKING:
    from apiward.runtime import CompiledApi, Runtime
    from apiward.server.gateway import Gateway
    from apiward.server.upstream import UpstreamConnection

log = logging.getLogger("apiward.server")

# Deadline kinds, checked by the gateway's sweeper.
# A deadline of 0.0 means "starts now": the sweeper sets it at its next tick, so the
# request path never reads the clock. Timeouts are kept within one tick.
IDLE, HEADER, BODY, UPSTREAM, SEND = 1, 2, 3, 4, 5

# Reasons to stop reading from the client; reading resumes when none is left.
PIPELINE, CONGESTED, CONNECTING = 1, 2, 4

NO_BODY_STATUS = frozenset({204, 304})
# Fields that carry credentials, for the inventory's "called without credentials".
CREDENTIAL_FIELDS = frozenset({b"authorization", b"x-api-key", b"api-key", b"cookie"})
LIMIT_STATUSES = frozenset({413, 414, 431})  # refusals for size, reported by check "limits"
STATUS_LINES = {s.value: b"HTTP/1.1 %d %b" % (s.value, s.phrase.encode()) for s in HTTPStatus}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
RESPONSE_HOLD_LIMIT = 8 << 20  # larger answers are judged by status and type, then stream
# Safe to send again when a reused connection closed before answering (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
METHOD_NAMES = {m.encode(): m for m in
                ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")}


class Call:
    """One request/response exchange on this connection."""

    __slots__ = (
        "api",
        "body_done",
        "body_length",
        "body_limit",
        "body_parts",
        "body_received",
        "body_started",
        "buffered",
        "close_after",
        "conn",
        "context",
        "deciding",
        "expect_continue",
        "head",
        "head_latency",
        "http10",
        "id_line",
        "is_head",
        "judge_body",
        "judge_response",
        "keep_alive",
        "local",
        "priority",
        "refused_by",
        "request",
        "resp_bytes",
        "resp_chunked",
        "resp_close_delimited",
        "resp_held",
        "resp_started",
        "sent_at",
        "shed",
        "started",
        "status",
    )

    def __init__(self, body_limit: int = 0) -> None:
        self.api: CompiledApi | None = None
        self.request: Request | None = None
        self.local: bytes | None = None  # a complete response to send instead of forwarding
        self.head = b""  # the upstream request head
        self.id_line = b""  # "X-Request-ID: ..." for both heads
        self.keep_alive = True
        self.close_after = False
        self.is_head = False
        self.http10 = False
        self.expect_continue = False
        self.body_length = 0
        self.body_received = 0
        self.body_done = False
        self.body_parts: list[bytes] = []
        self.body_limit = body_limit
        # The body is read whole before anything is sent (request buffering: a slow or
        # cut-short body ties up only the gateway), and judged by the body checks when
        # ``judge_body``.
        self.buffered = False
        self.judge_body = False
        self.body_started = 0.0  # when its body began (monotonic, set by the sweeper)
        self.context: Context | None = None
        self.conn: UpstreamConnection | None = None
        self.resp_started = False
        self.resp_chunked = False
        self.resp_close_delimited = False
        # The answer is held whole for the response checks before the client sees it.
        self.judge_response = False
        self.resp_held: HeldResponse | None = None
        # How the call ended, for the checks told afterwards: the status sent and the
        # check that refused it (None: the upstream answered).
        self.status = 0
        self.refused_by: str | None = None
        self.deciding = False  # a check's verdict is awaited from the store
        self.resp_bytes = 0  # body bytes of the answer sent on (for the inventory)
        # ``started``: when the head was judged (monotonic), set only while recording.
        # Load shedding: the Shedder that counted this call in flight (released once).
        # Only with shedding on: ``priority`` (set with the head), ``sent_at`` and
        # ``head_latency`` (set when counted): unset otherwise, as nothing reads them.
        self.shed: Any = None


class Downstream(asyncio.Protocol):
    __slots__ = (
        "active",
        "blockers",
        "body_out",
        "cert_lines",
        "chunks",
        "current",
        "dead",
        "deadline",
        "deadline_kind",
        "dropped",
        "field_table",
        "fields",
        "forwarded_lines",
        "gateway",
        "head_bytes",
        "host",
        "host_line",
        "host_name",
        "host_raw",
        "lines",
        "mid_chunk",
        "noted",
        "out",
        "packet",
        "parser",
        "peer_ip",
        "queue",
        "scheme",
        "tls",
        "transport",
        "url",
        "write_paused",
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
        self.dropped = 0  # fields of this head dropped (a name with "_")
        self.lines: list[bytes] = []
        self.field_table = gateway.runtime.request_fields
        self.host_raw = b""
        self.host = ""
        self.host_name = ""
        self.host_line = b""
        self.forwarded_lines = b""
        self.tls: TlsFacts | None = None  # the connection's handshake, when on TLS
        self.scheme = b"http"
        self.cert_lines = b""  # X-Client-Cert-* for the upstream: the verified certificate
        # Bytes received while a head was being read (whole chunks: an upper bound of the
        # head's size); back to 0 when a head completes.
        self.head_bytes = 0
        self.mid_chunk = False
        self.packet = b""  # the read being parsed, for the chunk callbacks
        self.chunks: ChunkMeter | None = None  # the chunked body being read, measured
        self.current: Call | None = None  # the call whose bytes are being parsed
        self.active: Call | None = None  # the call being answered
        self.queue: collections.deque[Call] = collections.deque()
        self.blockers = 0
        self.dead = False  # the parser hit an error: ignore anything more
        self.out: list[bytes] = []
        self.body_out: list[bytes] = []
        self.write_paused = False

    # -- connection lifecycle ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        gateway = self.gateway  # (uvloop sets TCP_NODELAY on accepted sockets itself)
        runtime = gateway.runtime
        if runtime.tls_context is not None and not self._handshake(
                transport.get_extra_info("ssl_object"), runtime):
            return
        self.forwarded_lines = (b"X-Forwarded-For: " + self.peer_ip.encode("ascii")
                                + b"\r\nX-Forwarded-Proto: " + self.scheme)
        if not gateway.admit(self):
            self.dead = True
            refusal = deny(503, "too_many_connections", "the gateway has too many connections")
            transport.write(problem_response(refusal, "connections", gateway.next_request_id(),
                                             request_id_header=runtime.request_id_header,
                                             close=True))
            transport.close()
            return
        self.deadline_kind = HEADER

    def _handshake(self, ssl_object: Any, runtime: Runtime) -> bool:
        """Read the finished handshake; False (connection dropped) for a revoked
        certificate where certificates are required: no certificate, no connection."""
        self.scheme = b"https"
        try:
            tls = self.tls = handshake_facts(ssl_object, runtime.client_cert)
        except Exception:  # a certificate OpenSSL took but we cannot read: no connection
            log.exception("reading the TLS handshake of %s failed", self.peer_ip)
            tls = None
        cert = tls.client if tls is not None else None
        if tls is None or (cert is not None and cert.revoked
                           and runtime.config.tls.client_certs == "required"):
            self.dead = True
            self.transport.abort()  # type: ignore[union-attr]
            return False
        if cert is not None and not cert.revoked:
            self.cert_lines = cert.header_lines
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.gateway.forget(self)
        call = self.active
        if call is not None and call.conn is not None:
            call.conn.abort()  # an exchange cut short leaves the upstream mid-message
            call.conn.pool.discard(call.conn)
            call.conn = None
        if call is not None and call.shed is not None:
            self._release(call)
        self.active = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        if self.current is None:  # no body in progress: these bytes are (part of) a head
            self.head_bytes += len(data)
        self.mid_chunk = False
        self.packet = data
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, StopParsing):
                return
            if isinstance(cause, WireError):
                self._reject(cause)
            else:
                log.exception("internal error while handling a request", exc_info=cause)
                self._reject(WireError(500, "internal_error", "the gateway failed on this request"))
            return
        except HttpParserUpgrade:
            # An Upgrade (or CONNECT) request: llhttp stops parsing after it. The request
            # was judged as a plain one (Upgrade is hop-by-hop, never forwarded); the
            # connection closes after its answer.
            self.dead = True
        except HttpParserError as exc:
            self._reject(_parser_error(exc))
            return
        self.packet = b""
        runtime = self.gateway.runtime
        if self.head_bytes > runtime.header_size + runtime.target_length and self.current is None:
            # httptools buffers a field until it ends: refuse a head that only grows.
            self._reject(WireError(431, "header_section_too_large",
                                   "the request header section is too large"))
            return
        call = self.current
        if call is not None and call.body_length == CHUNKED:  # the read ends in its body
            try:
                self._chunk_meter(call).read(data, call.body_received, False, self.mid_chunk)
            except WireError as error:
                self._reject(error)
                return
        if self.body_out:
            self._send_body()
        if self.out:
            self.flush()

    def _send_body(self) -> None:
        """Body bytes of this packet, forwarded now that all of the packet parsed cleanly
        (an error later in the same packet means the upstream sees none of it)."""
        data = b"".join(self.body_out)
        self.body_out.clear()
        call = self.active
        if call is not None and call.conn is not None and call.conn.transport is not None:
            write_now(call.conn.transport, data)

    def eof_received(self) -> bool:
        if self.current is not None and not self.dead:  # the body it announced never came
            self._reject(WireError(400, "incomplete_body",
                                   "the connection ended before the request body did"))
            return True
        # A client half-closing after its request still gets the answer, then the close.
        self.dead = True
        return self.active is not None or bool(self.queue)

    def pause_writing(self) -> None:
        """The client reads slower than its answers come: stop reading the upstream, serve
        no further pipelined call, and time the client (send_timeout) instead."""
        self.write_paused = True
        call = self.active
        if call is not None and call.conn is not None and call.conn.transport is not None:
            call.conn.transport.pause_reading()
        self.deadline_kind = SEND
        self.deadline = 0.0

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.dead and self.active is None and not self.queue:
            return  # closing: the close completes once the buffer drains
        call = self.active
        if call is not None:
            if call.conn is not None and call.conn.transport is not None:
                call.conn.transport.resume_reading()
            self.deadline_kind = UPSTREAM
            self.deadline = 0.0
        elif self.queue:
            self._next()
        else:
            self._await_head()

    # -- httptools callbacks: the request ---------------------------------------------
    def on_url(self, url: bytes) -> None:
        runtime = self.gateway.runtime
        if self.url:  # more of a target split across reads
            url = self.url + url
        else:  # a new message: its first callback (no on_message_begin, no helper: each
            if self.dead:  # is a Python call more per request)
                raise StopParsing  # the connection closes after what it owes: read no more
            if self.mid_chunk:  # a pipelined head began inside a chunk: its size is unknown
                self.head_bytes = runtime.header_size + 1  # so it gets measured
            self.fields = []
            self.noted = []
            self.dropped = 0
            self.lines = [b""]  # the request line goes first, once the target is judged
            self.field_table = runtime.request_fields
            if self.active is None and self.deadline_kind != HEADER:  # else the call in
                self.deadline_kind = HEADER  # flight keeps its own deadline
                self.deadline = 0.0
        self.url = url
        if len(url) > runtime.target_length:
            raise WireError(414, "uri_too_long", "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.current is not None:
            # A chunked body's trailer fields: judged by nobody, so never passed on (but a
            # name with "_" is refused all the same when headers.underscores says reject).
            if b"_" in name:
                self.field_table.classify(name)
            return
        entry = self.field_table.cache.get(name) or self.field_table.classify(name)
        kind, lname = entry
        if not kind:
            self.fields.append((lname, name, value))
            self.lines.append(name + b": " + value)
        elif kind != DROPPED:  # (a name with "_": neither judged nor passed on)
            self.fields.append((lname, name, value))
            self.noted.append((lname, value))
        else:  # dropped fields still count towards the limit on fields
            self.dropped += 1
            if self.dropped + len(self.fields) > self.gateway.runtime.header_count:
                raise WireError(431, "too_many_headers", "the request has too many header fields")

    def on_chunk_complete(self) -> None:
        """A chunk's data (or, for the last chunk, the trailer section) ended: noted for the
        chunk-size line measure, which walks the whole body before it is acted on."""
        call = self.current
        if call is None:
            return
        meter = self._chunk_meter(call)
        received = call.body_received
        if meter.chunk_end(received):  # the last chunk: the body is whole
            self.chunks = None
            meter.read(self.packet, received, True, self.mid_chunk)

    def _chunk_meter(self, call: Call) -> ChunkMeter:
        meter = self.chunks
        if meter is None or meter.owner is not call:
            runtime = self.gateway.runtime
            meter = self.chunks = ChunkMeter(call, runtime.chunk_line_size,
                                             runtime.chunk_extensions_size,
                                             runtime.header_size)
        return meter

    def on_headers_complete(self) -> None:
        received, self.head_bytes = self.head_bytes, 0
        call = self._judge_head(received)
        self.url = b""  # so the next on_url knows a new message begins
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
        if call.body_received > call.body_limit:
            raise WireError(413, "body_too_large", "the request body is larger than allowed")
        self.deadline = 0.0  # the body timeout is the longest pause between reads
        if call.local is not None:
            return  # refused already: the body is read and dropped
        if call.conn is not None:  # sent once the whole packet parsed without error
            self.body_out.append(_chunk(body) if call.body_length == CHUNKED else body)
        else:
            call.body_parts.append(body)

    def on_message_complete(self) -> None:
        call = self.current
        if call is None:
            return
        self.current = None
        self.mid_chunk = True
        call.body_done = True
        if call.buffered:
            self._judge_body(call)
            if call is self.active:
                self._start(call)
            return
        conn = call.conn
        if conn is not None and call.body_length != 0 and call is self.active:
            if call.body_length == CHUNKED:
                self.body_out.append(b"0\r\n\r\n")
            self._request_sent(conn)

    # -- judging a head ---------------------------------------------------------------
    def _judge_head(self, received: int) -> Call:
        """Framing, target, routing and head checks; returns the Call to serve.

        ``received`` bounds the head's size from above; only past the limit is it measured.
        """
        gateway = self.gateway
        runtime = gateway.runtime
        parser = self.parser
        call = Call(runtime.body_size)
        call.keep_alive = parser.should_keep_alive()
        raw_method = parser.get_method()
        method = METHOD_NAMES.get(raw_method) or raw_method.decode("ascii")
        call.is_head = method == "HEAD"
        version = parser.get_http_version()
        call.http10 = version == "1.0"
        noted = self.noted
        if len(noted) == 1 and noted[0][0] == b"host":  # the common case: only Host
            facts = None
            hosts = [noted[0][1]]
            request_id = gateway.next_request_id()
        else:
            facts = NotedFields(noted, runtime.request_id_lname)
            hosts = facts.hosts
            call.expect_continue = facts.expect_continue
            rid = facts.request_id
            request_id = (rid.decode("ascii") if rid is not None and gateway.valid_request_id(rid)
                          else gateway.next_request_id())
        try:
            if len(self.fields) > runtime.header_count:
                raise WireError(431, "too_many_headers", "the request has too many header fields")
            if received > runtime.header_size and field_bytes(self.fields) > runtime.header_size:
                raise WireError(431, "header_section_too_large",
                                "the request header section is too large")
            if facts is not None and (facts.content_lengths or facts.transfer_encodings):
                call.body_length = request_body_length(
                    facts.content_lengths, facts.transfer_encodings, http10=call.http10)
                call.body_done = call.body_length == 0
            else:
                call.body_done = True
            if len(hosts) > 1:
                raise WireError(400, "multiple_host_headers", "the request has more than one Host")
            if not hosts and not call.http10:
                raise WireError(400, "missing_host", "an HTTP/1.1 request needs a Host header")
            host = ("" if not hosts else self.host if hosts[0] == self.host_raw
                    else self._host(hosts[0]))
            if version != "1.1" and not call.http10:
                check_version(version)
            target = runtime.targets.get(self.url)  # hot targets are judged once
            if target is None or method == "CONNECT":
                target = normalise_target(self.url, method,
                                          allow_non_ascii=runtime.allow_non_ascii,
                                          merge_empty_segments=runtime.merge_empty_segments)
                runtime.remember_target(self.url, target)
            if target.authority is not None:
                authority = target.authority.lower()
                if hosts and authority != host:
                    raise WireError(400, "host_mismatch",
                                    "the absolute-form target names another host than Host")
                host = authority
        except WireError as error:
            error.request_id = request_id
            raise  # stops the parser: nothing after a broken head is read
        chain = facts.chain() if facts is not None else None
        ip = client_ip(self.peer_ip, chain, runtime.is_trusted_proxy) if chain else self.peer_ip
        host_name = self.host_name if host is self.host else strip_port(host)
        fields = self.fields
        if facts is not None and facts.connection_tokens - PLAIN_CONNECTION:
            # Fields the client's Connection header names are not forwarded, so the checks
            # must not see them either: judged and forwarded stay the same.
            named = facts.connection_tokens
            fields = [field for field in fields if field[0] not in named]
        request = Request(method, target.path, target.query, Headers(fields), ip,
                          request_id, host_name, version, self.tls, None, call.body_length != 0)
        call.request = request
        if runtime.recorder is not None:
            call.started = monotonic()
        api = runtime.only_api or runtime.route(host_name, target.path)
        if api is None:
            verdict = deny(404, "no_api", "no API is served at this host and path")
            return self._blocked(call, verdict, "routing")
        call.api = api
        if call.body_length > runtime.body_size:
            verdict = deny(413, "body_too_large", "the request body is larger than allowed")
            return self._blocked(call, verdict, "limits")
        if api.head_checks:
            context = call.context = Context(api, time())
            refusal = run_checks(api.head_checks, request, context, self._would_block)
            if refusal is not None:
                return self._blocked(call, refusal[1], refusal[0].name)
            limit = context.body_limit
            if limit is not None and call.body_length != 0:  # a body check will judge it
                limit = min(limit, call.body_limit)
                if call.body_length > limit:
                    verdict = deny(413, "body_too_large",
                                   "the request body is larger than this operation accepts")
                    return self._blocked(call, verdict, "limits")
                call.buffered = call.judge_body = True
                call.body_limit = limit
            if api.response_checks and context.endpoint is not None:
                call.judge_response = True
        if api.request_buffering and call.body_length != 0:
            call.buffered = True
        if api.priorities is not None:
            call.priority = _priority(api, request, call.context)
        if target.verbatim and not api.base_path:  # forwarded as received: no re-encoding
            line = raw_method + b" " + self.url + b" HTTP/1.1"
        else:
            line = request_line(raw_method, api.base_path, target.path, target.query)
        call.head = self._upstream_head(call, line, request, api, host, facts, runtime)
        return call

    def _host(self, raw: bytes) -> str:
        """The Host value, lower-cased; a connection usually repeats it, so it is cached."""
        if raw != self.host_raw:
            if not is_valid_host(raw):
                raise WireError(400, "invalid_host", "the Host header is not a valid host[:port]")
            self.host_raw = raw
            self.host = raw.decode("latin-1").lower()
            self.host_name = strip_port(self.host)
            self.host_line = b"Host: " + raw + b"\r\nX-Forwarded-Host: " + raw
        return self.host

    def _upstream_head(self, call: Call, line: bytes, request: Request, api: CompiledApi,
                       host: str, facts: NotedFields | None, runtime: Runtime) -> bytes:
        """The request head sent upstream: what the checks judged, hop-by-hop removed."""
        lines = self.lines
        lines[0] = line
        tokens = facts.connection_tokens - PLAIN_CONNECTION if facts is not None else None
        if tokens:  # fields the client's Connection header names are hop-by-hop too
            lines = [lines[0], *(
                name + b": " + value for lname, name, value in self.fields
                if lname not in tokens and self.field_table.classify(name)[0] == PASS
            )]
        if host and host is self.host:  # the Host as received (absolute-form: the authority)
            lines.append(self.host_line if api.preserve_host else
                         b"Host: " + api.upstream_host + b"\r\nX-Forwarded-Host: " + self.host_raw)
        elif host:
            raw = host.encode("latin-1")
            lines.append(b"Host: " + (raw if api.preserve_host else api.upstream_host))
            lines.append(b"X-Forwarded-Host: " + raw)
        else:
            lines.append(b"Host: " + api.upstream_host)
        if facts is not None and request.client_ip != self.peer_ip:  # a trusted proxy's chain
            chain = facts.chain()
            lines.append(b"X-Forwarded-For: " + ", ".join([*chain, self.peer_ip]).encode())
            lines.append(b"X-Forwarded-Proto: " + (facts.forwarded_proto or self.scheme))
        else:
            lines.append(self.forwarded_lines)
        if self.cert_lines:
            lines[-1] += self.cert_lines
        call.id_line = runtime.request_id_header + b": " + request.request_id.encode("ascii")
        lines.append(call.id_line)
        if call.buffered:  # framed once the body is read: Content-Length, never chunked
            return b"\r\n".join(lines)
        if call.body_length == CHUNKED:
            lines.append(b"Transfer-Encoding: chunked\r\n\r\n")
        elif call.body_length > 0 or request.method in BODY_METHODS:
            lines.append(b"Content-Length: %d\r\n\r\n" % call.body_length)
        else:
            lines.append(b"\r\n")
        return b"\r\n".join(lines)

    def _judge_body(self, call: Call) -> None:
        """The body stage: the whole body is here; the body checks judge it (when one
        asked to), then it is forwarded with a Content-Length (a chunked body is
        re-framed) or refused."""
        parts = call.body_parts
        body = b"".join(parts) if len(parts) != 1 else parts[0]
        call.body_parts = [body]
        call.body_length = len(body)
        if call.judge_body:
            request, api, context = call.request, call.api, call.context
            assert request is not None and api is not None and context is not None
            request.body = body
            refusal = run_body_checks(api.body_checks, request, context, self._would_block)
            if refusal is not None:
                self._blocked(call, refusal[1], refusal[0].name, body_read=True)
                return
        call.head += b"\r\nContent-Length: %d\r\n\r\n" % len(body)

    def _blocked(self, call: Call, verdict: Verdict, check: str, body_read: bool = False) -> Call:
        request = call.request
        assert request is not None
        self._event(request, check, "block", verdict, call.context)
        call.status = verdict.status
        call.refused_by = check
        close = ((not body_read and (call.body_length != 0 or call.expect_continue))
                 or not call.keep_alive)
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

    def _would_block(self, request: Request, context: Context, check: str,
                     verdict: Verdict) -> None:
        self._event(request, check, "would_block", verdict, context)

    def _event(self, request: Request, check: str, action: str, verdict: Verdict,
               context: Context | None = None) -> None:
        event = {
            "request_id": request.request_id, "client_ip": request.client_ip,
            "method": request.method, "path": request.path, "check": check,
            "action": action, "status": verdict.status, "reason": verdict.reason,
        }
        identity = context.identity if context is not None else None
        if identity is not None:
            event["identity"] = str(identity)
        self.gateway.runtime.events.emit(event)

    def _reject(self, error: WireError) -> None:
        """A request broke the wire rules mid-parse: answer it in turn, then close."""
        self.head_bytes = 0
        self.body_out.clear()  # none of a broken packet's body is forwarded
        self._block(PIPELINE)
        call, self.current = self.current, None
        check = "limits" if error.status in LIMIT_STATUSES else "http"
        refusal = self._refused(Call(), error, error.request_id or self.gateway.next_request_id(),
                                check, self.parser_method(), "")
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
        if call.deciding:
            return  # _decide goes on
        context = call.context
        if context is not None and context.pending is not None:
            call.deciding = True
            self.gateway.spawn(self._decide(call, context.pending))
            return
        if call.expect_continue and not call.body_done:
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if call.buffered and not call.body_done:  # on_message_complete goes on
            self.deadline_kind = BODY
            self.deadline = 0.0
            return
        api = call.api
        assert api is not None
        shedder = api.shedder
        if shedder is not None and call.shed is None and not self._admit(call, shedder):
            return
        conn = api.pool.take_idle()
        if conn is not None:
            self._attach(call, conn)
        else:
            self._block(CONNECTING)
            self.deadline_kind = 0
            self.gateway.spawn(self._connect(call, api))

    def _admit(self, call: Call, shedder: Any) -> bool:
        """Count the call in flight to its upstream, or refuse it at once (503) when the
        upstream is at its cap for the call's priority: no queue without bound."""
        if shedder.admit(call.priority):
            call.shed = shedder
            call.sent_at = monotonic()
            call.head_latency = -1.0
            return True
        verdict = deny(503, "load_shed", "the API is at capacity; retry shortly",
                       headers=(("Retry-After", str(shedder.retry_after)),))
        self._blocked(call, verdict, "shedding", body_read=call.body_done)
        self._start(call)
        return False

    def _release(self, call: Call) -> None:
        """The call no longer holds its upstream: its latency (to the answer's head) feeds
        the adaptive cap; no head at all is a failure."""
        shedder, call.shed = call.shed, None
        latency = call.head_latency
        failed = latency < 0 or call.refused_by is not None
        shedder.release(latency if latency >= 0 else monotonic() - call.sent_at, failed)

    async def _decide(self, call: Call, pending: Any) -> None:
        """Await the verdict a head check left pending (a store over the network), then
        serve the call or refuse it, as that check's mode says."""
        api = call.api
        assert api is not None and api.deferring is not None
        check = api.deferring
        try:
            verdict = await pending
        except Exception:
            log.exception("check %r failed", check.name)
            verdict = ALLOW if check.on_error == "allow" else CHECK_FAILED
        call.deciding = False
        call.context.pending = None  # type: ignore[union-attr]
        if self.active is not call or self.transport is None:
            return  # the client went away meanwhile
        request = call.request
        assert request is not None
        if not verdict.allowed:
            if check.mode == "block":
                call.body_parts = []
                self._blocked(call, verdict, check.name, body_read=call.body_done)
            else:
                self._would_block(request, call.context, check.name, verdict)  # type: ignore[arg-type]
        self._start(call)
        if self.out:
            self.flush()

    async def _connect(self, call: Call, api: CompiledApi) -> None:
        try:
            conn = await api.pool.connect()
        except UpstreamUnavailable as exc:
            self._unblock(CONNECTING)
            if self.active is call:
                self._upstream_error(call, exc.status, exc.reason, exc.detail)
            return
        except Exception:  # never leave the client waiting on a connect that failed oddly
            log.exception("connecting to the upstream of %r failed", api.name)
            self._unblock(CONNECTING)
            if self.active is call:
                self._upstream_error(call, 502, "upstream_unreachable",
                                     "the upstream could not be reached")
            return
        self._unblock(CONNECTING)
        if self.active is not call or self.transport is None or self.transport.is_closing():
            api.pool.release(conn)
            return
        self._attach(call, conn)

    def _attach(self, call: Call, conn: UpstreamConnection) -> None:
        call.conn = conn
        data = call.head
        if call.body_parts:
            if call.body_length == CHUNKED:
                data += b"".join(map(_chunk, call.body_parts))
            else:
                data += b"".join(call.body_parts)
            call.body_parts = []
        if call.body_done and call.body_length == CHUNKED:
            data += b"0\r\n\r\n"
        conn.send(self, data, call.is_head)
        if call.body_done:  # the whole request is upstream: its answer is timed
            conn.request_sent = True
            self.deadline_kind = UPSTREAM
            self.deadline = 0.0
        else:
            self.deadline_kind = BODY
            self.deadline = 0.0

    def _request_sent(self, conn: UpstreamConnection) -> None:
        """The whole request is upstream: now the upstream's answer is timed."""
        conn.request_sent = True
        self.deadline_kind = UPSTREAM
        self.deadline = 0.0

    def _finish(self, call: Call) -> None:
        """The answer to ``call`` is fully written: next call, idle, or close."""
        self.active = None
        if call.shed is not None:
            self._release(call)
        api = call.api
        if api is not None:
            if api.after_checks and call.context is not None:
                self._after(call, api)
            recorder = self.gateway.runtime.recorder
            if recorder is not None and call.request is not None:
                self._record(call, api, recorder)
        transport = self.transport
        if transport is None:
            self.out.clear()
            return
        out = self.out
        if out:  # flush(), inlined: this runs once per call
            transport.write(b"".join(out) if len(out) > 1 else out[0])
            out.clear()
        if call.close_after or not call.keep_alive or not call.body_done or self.gateway.draining:
            self._close()
            return
        if self.write_paused:  # the client is not reading: resume_writing goes on
            self.deadline_kind = SEND
            self.deadline = 0.0
            return
        if self.queue:
            self._next()
            return
        if self.dead:
            self._close()
            return
        if self.blockers:
            self._unblock(PIPELINE)
        self._await_head()

    def _after(self, call: Call, api: CompiledApi) -> None:
        """Tell the checks that asked how the call ended (its status, who refused it)."""
        request, context = call.request, call.context
        for check in api.after_checks:
            try:
                check.run_after(request, context, call.status, call.refused_by)  # type: ignore[misc]
            except Exception:
                log.exception("check %r failed after the call", check.name)

    def _record(self, call: Call, api: CompiledApi, recorder: Any) -> None:
        """The call, as the inventory keeps it: names and counts, never values."""
        request = call.request
        assert request is not None
        context = call.context
        endpoint = identity = None
        if context is not None:
            endpoint, identity = context.endpoint, context.identity
        refused = call.refused_by
        if identity is not None and identity.kind != "anonymous":
            kind, who, credentials = identity.kind, identity.id, True
        else:
            kind = who = None
            credentials = request.tls is not None and request.tls.fingerprint is not None
            if not credentials:
                for field in request.headers.fields:
                    if field[0] in CREDENTIAL_FIELDS:
                        credentials = True
                        break
        started = getattr(call, "started", None)
        recorder.record((
            api.name, request.method, request.host, request.path,
            endpoint.template if endpoint is not None else None, call.status,
            monotonic() - started if started is not None else 0.0, call.body_received,
            call.resp_bytes, kind, who, credentials,
            "allow" if refused is None else "error" if refused == "upstream" else "block",
            context.now if context is not None else time(),
        ))

    def _await_head(self) -> None:
        """Nothing to answer: time the next head (begun) or the idle keep-alive."""
        self.deadline_kind = HEADER if self.head_bytes else IDLE
        self.deadline = 0.0

    def _next(self) -> None:
        """Serve the next pipelined call."""
        call = self.queue.popleft()
        if not self.queue:
            self._unblock(PIPELINE)
        self._start(call)

    # -- the upstream's answer --------------------------------------------------------
    def response_head(self, status: int, lines: list[bytes], has_length: bool,
                      framed: bool) -> None:
        """The upstream's answer: ``lines[0]`` is free for the status line, the other
        lines are its fields, hop-by-hop ones already removed. Re-framed for this client."""
        call = self.active
        if call is None:
            return
        call.resp_started = True
        if call.shed is not None:
            call.head_latency = monotonic() - call.sent_at
        self.deadline = 0.0  # the upstream timeout now bounds each pause in the body
        if call.judge_response:  # held; once judged, _release_held sends it through here
            call.resp_held = HeldResponse(status, lines, has_length, framed)
            return
        lines[0] = STATUS_LINES.get(status) or b"HTTP/1.1 %d Status" % status
        lines.append(call.id_line)
        call.status = status
        context = call.context
        if context is not None and context.response_lines:
            lines.append(context.response_lines)
        bodyless = call.is_head or status in NO_BODY_STATUS
        call.resp_close_delimited = not (bodyless or framed)
        if not (bodyless or has_length):
            if call.http10:
                call.close_after = True  # no chunked for HTTP/1.0: the end is the close
            else:
                call.resp_chunked = True
                lines.append(b"Transfer-Encoding: chunked")
        if call.close_after or not call.keep_alive or self.gateway.draining:
            lines.append(b"Connection: close\r\n\r\n")
        elif call.http10:
            lines.append(b"Connection: keep-alive\r\n\r\n")
        else:
            lines.append(b"\r\n")
        self.out.append(b"\r\n".join(lines))

    def response_body(self, body: bytes) -> None:
        call = self.active
        if call is None:
            return
        self.deadline = 0.0
        held = call.resp_held
        if held is not None:
            held.parts.append(body)
            held.size += len(body)
            if held.size > RESPONSE_HOLD_LIMIT:
                self._release_held(call, too_large=True)
            return
        call.resp_bytes += len(body)
        if call.resp_chunked:
            self.out.append(_chunk(body))
        else:
            self.out.append(body)

    def response_complete(self) -> None:
        call = self.active
        if call is None:
            return
        call.conn = None
        if call.resp_held is not None:
            self._release_held(call)
            return
        if call.resp_chunked:
            self.out.append(b"0\r\n\r\n")
        self._finish(call)

    def _release_held(self, call: Call, too_large: bool = False) -> None:
        """The response stage: judge the held answer, then send it or a 502 instead.

        An answer too large to hold is judged by its status and type only and streams on.
        """
        held, call.resp_held = call.resp_held, None
        request, api, context = call.request, call.api, call.context
        assert held is not None and request is not None and api is not None
        body = b"".join(held.parts)
        refusal = run_response_checks(api.response_checks, request, context, held.status,
                                      held.lines, None if too_large else body,
                                      self._would_block)
        if refusal is not None:
            call.close_after = call.close_after or too_large
            self._upstream_error(call, 502, refusal[1].reason, refusal[1].detail,
                                 refusal[0].name, "block")
            return
        lines = held.lines
        if not (held.has_length or too_large or call.is_head
                or held.status in NO_BODY_STATUS):  # whole: framed by its length now
            lines.append(b"Content-Length: %d" % len(body))
        call.judge_response = False  # judged: response_head sends it now
        self.response_head(held.status, lines, held.has_length or not too_large,
                           held.framed or not too_large)
        if body:
            self.response_body(body)
        if not too_large:
            self._finish(call)

    def flush(self) -> None:
        """Write what ``out`` holds. Client writes are not batched: a client is not woken
        on our core, and a slow reader must pause the upstream at once (``pause_writing``)."""
        out = self.out
        if out and self.transport is not None:
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
            if conn.reused and not conn.received and call.body_length == 0 \
                    and call.request is not None and call.request.method in IDEMPOTENT:
                self._start(call)  # a stale keep-alive connection: try a fresh one once
                return
            self._upstream_error(call, 502, "upstream_closed",
                                 "the upstream closed the connection without answering")
        elif call.resp_close_delimited or (call.resp_held is not None
                                           and not call.resp_held.framed):
            self.response_complete()  # the end of a close-delimited answer is the close
        else:
            self._abort()  # a framed answer cut short: the client must see it broke

    def upstream_failed(self, conn: UpstreamConnection, reason: str, detail: str) -> None:
        call = self.active
        if call is None:
            return
        call.conn = None
        if call.resp_started:
            self._abort()
        else:
            self._upstream_error(call, 502, reason, detail)

    def _upstream_error(self, call: Call, status: int, reason: str, detail: str,
                        check: str = "upstream", action: str = "error") -> None:
        """Answer ``call`` with a problem of the gateway's own making (502, 504, 408)."""
        request = call.request
        assert request is not None
        verdict = deny(status, reason, detail)
        self._event(request, check, action, verdict, call.context)
        call.status = status
        call.refused_by = check
        if call.conn is not None:
            call.conn.abort()
            call.conn = None
        call.close_after = call.close_after or not call.body_done
        self.out.append(problem_response(
            verdict, check, request.request_id,
            request_id_header=self.gateway.runtime.request_id_header,
            close=call.close_after or not call.keep_alive, head_only=call.is_head,
        ))
        self._finish(call)

    # -- timers, flow control, shutdown ----------------------------------------------
    def timeout(self, kind: int) -> float:
        """How long the wait of ``kind`` may last (read by the sweeper)."""
        runtime = self.gateway.runtime
        if kind == UPSTREAM:
            api = self.active.api if self.active is not None else None
            return api.response_timeout if api is not None else runtime.header_timeout
        if kind == IDLE:
            return runtime.keepalive_timeout
        if kind == BODY:
            return runtime.body_timeout
        if kind == SEND:
            return runtime.send_timeout
        return runtime.header_timeout

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
                self._upstream_error(call, 408, "body_timeout",
                                     "the request body came too slowly", "http", "block")
        elif kind == UPSTREAM and call is not None:
            if call.resp_started:
                self._abort()
            else:
                self._upstream_error(call, 504, "upstream_timeout",
                                     "the upstream did not answer in time")
        elif kind == SEND:
            self._abort()  # the client stopped reading its answer

    def on_slow_body(self) -> None:
        """The body came in slower than limits.min_body_rate on average: 408, close."""
        call = self.active
        if call is not None and call is self.current:
            self.deadline_kind = BODY
            self.on_deadline()  # as a body timeout
        elif self.current is not None:  # a pipelined call's body, behind the active one
            self._reject(WireError(408, "body_too_slow", "the request body came too slowly"))

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
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size():  # closing waits for the client to read:
                self.deadline_kind = SEND  # at most send_timeout, then it is aborted
                self.deadline = 0.0
            transport.close()

    def _abort(self) -> None:
        self.dead = True
        call = self.active
        if call is not None and call.conn is not None:
            call.conn.abort()
            call.conn = None
        if self.transport is not None:
            self.transport.abort()


class HeldResponse:
    """An upstream answer held for the response checks."""

    __slots__ = ("framed", "has_length", "lines", "parts", "size", "status")

    def __init__(self, status: int, lines: list[bytes], has_length: bool, framed: bool) -> None:
        self.status = status
        self.lines = lines
        self.has_length = has_length
        self.framed = framed
        self.parts: list[bytes] = []
        self.size = 0


def _priority(api: CompiledApi, request: Request, context: Context | None) -> int:
    """The call's shedding priority: its operation's ``x-apiward-priority``, else the
    config's by endpoint template (or path, without a spec)."""
    endpoint = context.endpoint if context is not None else None
    if endpoint is not None:
        named = endpoint.extensions.get("x-apiward-priority") if endpoint.extensions else None
        if named in PRIORITIES:
            return PRIORITIES.index(named)
        return priority_for(api.priorities, request.method, endpoint.template)
    return priority_for(api.priorities, request.method, request.path)


def _chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class StopParsing(Exception):
    """Raised in a parser callback to make llhttp stop reading a connection."""


def _parser_error(exc: HttpParserError) -> WireError:
    if isinstance(exc, HttpParserInvalidMethodError):
        return WireError(400, "invalid_method", "the request method is not valid")
    if isinstance(exc, HttpParserInvalidURLError):
        return WireError(400, "invalid_target", "the request target is not valid")
    if str(exc) == "Invalid HTTP version":
        return WireError(505, "http_version_not_supported", "only HTTP/1.0 and 1.1 are served")
    return WireError(400, "malformed_request", "the request is not valid HTTP/1.1")
