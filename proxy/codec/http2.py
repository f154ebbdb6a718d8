"""Downstream HTTP/2: an ``asyncio.Protocol`` around the h2 state machine, feeding routers.

Each HTTP/2 stream gets its own ``Router``, exactly as an HTTP/1.1 request does: the
stream object (``_Stream``) is the router's ``Downstream``. The request head becomes the
same ``HttpRequest`` (pseudo-headers included); a body without ``content-length`` is
marked chunked so an HTTP/1.1 upstream gets it chunk-framed, while an HTTP/2 upstream
ignores the framing. Response trailers (gRPC's ``grpc-status``) pass through.

Flow control runs both ways. Request DATA is acknowledged (the window reopened) only
while the router reads, so a slow upstream makes the client wait instead of this proxy
buffering. Response DATA beyond the client's window waits in the stream's queue, and
while it waits the router pauses reading from the upstream. Connection settings follow
the HCM: ``max_request_headers_kb`` bounds the header list, and at most
``MAX_CONCURRENT_STREAMS`` streams run at once (more are refused by the client's
library, as the SETTINGS frame says). A drain (its filter chain changed, listener
removal, stop) sends GOAWAY and closes once the open streams finish.

WebSockets over HTTP/2 (RFC 8441): with ``http2_protocol_options.allow_connect`` the
SETTINGS frame offers ``SETTINGS_ENABLE_CONNECT_PROTOCOL``, and an extended CONNECT
(``:protocol websocket``) is handed to the router in HTTP/1.1's form, a GET with
``upgrade: websocket``, as Envoy's codec does, so routes and ``upgrade_configs`` apply
alike. The upstream's ``101`` goes out as ``:status 200``; then DATA frames carry the
tunnel, END_STREAM is its half-close, and the stream lives until both sides ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from proxy.codec.address import format_address
from proxy.observe.stats import HTTP2_DOWNSTREAM_COUNTERS, HTTP_COUNTERS
from proxy.router.http_types import CHUNKED, CONTENT_LENGTH, NO_BODY, HttpRequest
from proxy.router.router import Router
from proxy.stream_info import StreamInfo
from proxy.upstream.h2_lean import LeanH2Connection
from proxy.upstream.http2 import h2_configuration, never_indexed, send_within_window
from proxy.upstream.http2_guards import InboundFloods, OutboundFrames, protocol_error_stat

if TYPE_CHECKING:
    from collections.abc import Iterator

    from proxy.config.compile import HttpConnectionManagerConfig
    from proxy.context import ProxyContext
    from proxy.observe.stats import StatsScope

log = logging.getLogger(__name__)

MAX_CONCURRENT_STREAMS = 1024  # UNCONFIRMED: Envoy defaults to 2**31 - 1
_CONNECTION_SPECIFIC = frozenset(  # and ``te``, a request header only (RFC 9113 8.2.2)
    ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te")
)


class _Stream:
    """One HTTP/2 stream as the router sees its downstream."""

    __slots__ = (
        "client_ended",
        "conn",
        "ended",
        "extended_connect",
        "head",
        "head_out",
        "id",
        "pending",
        "reading",
        "remote_address",
        "router",
        "tunnel",
        "unacked",
        "want_end",
        "want_trailers",
    )  # fmt: skip

    def __init__(self, conn: Http2Connection, stream_id: int, head: bool) -> None:
        self.conn = conn
        self.remote_address = conn.remote_address
        self.id = stream_id
        self.head = head
        self.router: Router | None = None
        self.pending = bytearray()  # response bytes waiting for flow-control window
        self.want_end = False
        self.head_out: list[tuple[str, str]] | None = None
        self.want_trailers: list[tuple[str, str]] | None = None
        self.ended = False  # the response is complete on the wire (or the stream reset)
        self.reading = True
        self.unacked = 0  # request bytes received while the router was not reading
        self.extended_connect = False  # RFC 8441: answered 200 where HTTP/1.1 says 101
        self.tunnel = False  # its 200 went out: kept until the client ends it too
        self.client_ended = False

    # -- Downstream interface -----------------------------------------------------------
    def send_headers(
        self, status: int, headers: list[tuple[str, str]], content_length: int | None
    ) -> None:
        if status == 101 and self.extended_connect:
            status = 200  # RFC 8441: an extended CONNECT succeeds with 200
            self.tunnel = True
        out = [(":status", str(status))]
        out.extend((n, v) for n, v in headers if n not in _CONNECTION_SPECIFIC)
        if content_length is not None and status not in (204, 304):
            out.append(("content-length", str(content_length)))
        self.head_out = out  # sent with the first DATA, or alone with END_STREAM

    def send_data(self, data: bytes) -> None:
        if not self.ended and not self.head:
            self.pending += data
            self.conn.push(self)

    def send_trailers(self, trailers: list[tuple[str, str]]) -> None:
        self.want_trailers = trailers

    def flush(self) -> None:
        self.conn.push(self)

    def end_response(self) -> None:
        self.want_end = True
        self.conn.push(self)

    def send_local(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        out = [(":status", str(status))]
        out.extend((n, v) for n, v in headers if n not in _CONNECTION_SPECIFIC)
        if not body or self.head:
            out.append(("content-length", str(len(body))))
            self.conn.send_headers(self, out, end=True)
        else:
            out.append(("content-length", str(len(body))))
            self.conn.send_headers(self, out, end=False)
            self.pending += body
            self.want_end = True
            self.conn.push(self)
        self.conn.flush()

    def abort(self) -> None:
        self.conn.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)

    def set_reading(self, enabled: bool) -> None:
        self.reading = enabled
        if enabled and self.unacked:
            self.conn.acknowledge(self, self.unacked)
            self.unacked = 0
            # Called from the upstream's events, not this connection's: nothing else
            # would write the WINDOW_UPDATE, and the client waits for it (a stall).
            self.conn._flush_soon()


class Http2Connection(asyncio.Protocol):
    """One downstream HTTP/2 connection (h2c prior knowledge or TLS with ALPN ``h2``)."""

    def __init__(
        self,
        ctx: ProxyContext,
        hcm: HttpConnectionManagerConfig,
        original_dst: tuple[str, int] | None = None,
        scheme: str = "http",
    ) -> None:
        self.ctx = ctx
        self.hcm = hcm
        self.original_dst = original_dst
        self.scheme = scheme
        self.http_stats = ctx.stats.scope("http", hcm.stat_prefix, HTTP_COUNTERS)
        self.h2_stats = ctx.stats.scope("http2", "", HTTP2_DOWNSTREAM_COUNTERS)
        if "streams_active" not in self.h2_stats.gauge_fns:
            _register_gauges(self.h2_stats, ctx.connections)
        self.h2 = LeanH2Connection(h2_configuration(client_side=False))
        self.transport: asyncio.Transport | None = None
        self.remote_address = ""
        self.local_address = ""
        self.connection_id = 0
        self.draining = False
        self.streams: dict[int, _Stream] = {}
        self._blocked: set[_Stream] = set()  # streams waiting for send window
        self._closed = False
        self._writable = True
        self._flush_pending = False  # a flush is scheduled for the end of this loop turn
        self._floods = InboundFloods()
        self._outbound = OutboundFrames()

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.remote_address = format_address(transport.get_extra_info("peername"))
        local = self.original_dst or transport.get_extra_info("sockname")
        self.local_address = format_address(local)
        self.connection_id = next(self.ctx.connection_ids)
        self.ctx.connections.add(self)
        counters = self.http_stats.counters
        counters["downstream_cx_total"] += 1
        counters["downstream_cx_http2_total"] += 1
        codes = h2.settings.SettingCodes
        initial = {
            codes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            codes.MAX_HEADER_LIST_SIZE: self.hcm.max_request_headers_kb * 1024,
        }
        if self.hcm.allow_connect:
            initial[codes.ENABLE_CONNECT_PROTOCOL] = 1
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=initial)
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.http_stats.counters["downstream_cx_protocol_error"] += 1
            h2_counters = self.h2_stats.counters
            h2_counters["goaway_sent"] += 1  # h2 answers a connection error with GOAWAY
            stat = protocol_error_stat(exc)
            if stat is not None:
                h2_counters[stat] += 1
            log.info("%s: HTTP/2 protocol error from %s: %s", self.hcm.stat_prefix,
                     self.remote_address, exc)  # fmt: skip
            self.flush()
            self._close()
            return
        floods = self._floods
        for event in events:
            flood = floods.check(event)
            if flood is not None:
                return self._inbound_flood(flood)
            self._dispatch(event)
        self.flush()

    def _inbound_flood(self, stat: str) -> None:
        """Envoy's answer to a frame flood: GOAWAY (ENHANCE_YOUR_CALM) and close."""
        self.h2_stats.counters[stat] += 1
        log.info("%s: HTTP/2 %s from %s", self.hcm.stat_prefix, stat, self.remote_address)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            self.h2_stats.counters["goaway_sent"] += 1
        self.flush()
        self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.ctx.connections.discard(self)
        self.http_stats.counters["downstream_cx_destroy"] += 1
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if stream.router is not None and not stream.router.done:
                stream.router.on_downstream_reset()
            stream.router = None

    def pause_writing(self) -> None:
        self._writable = False
        for stream in self.streams.values():
            if stream.router is not None:
                stream.router.on_downstream_writable(False)

    def resume_writing(self) -> None:
        self._writable = True
        for stream in list(self.streams.values()):
            if stream.router is not None:
                stream.router.on_downstream_writable(True)

    # -- h2 events ----------------------------------------------------------------------------
    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            # A HEADERS frame with END_STREAM also arrives as RequestReceived.stream_ended,
            # already handled there; the router ignores the second report.
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._client_ended(stream)
        elif isinstance(event, h2.events.StreamReset):
            self.h2_stats.counters["rx_reset" if event.remote_reset else "tx_reset"] += 1
            self._on_reset(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream in list(self._blocked):
                self.push(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.draining = True
            if not self.streams:
                self._close()
        elif isinstance(event, h2.events.TrailersReceived):
            self.h2_stats.counters["trailers"] += 1
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.router is not None:
                stream.router.on_request_end()

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        headers: dict[str, str] = {}
        count = 0
        for name, value in event.headers or ():
            key, text = str(name), str(value)
            count += 1
            if key in headers:
                text = f"{headers[key]}{'; ' if key == 'cookie' else ','}{text}"
            headers[key] = text
        method = headers.get(":method", "GET")
        path = headers.get(":path", "/")
        headers.setdefault(":scheme", self.scheme)
        authority = headers.get(":authority") or headers.get("host", "")
        headers[":authority"] = authority
        headers.pop("host", None)
        upgrade = ""
        if method == "CONNECT":
            method, upgrade = _as_http1_upgrade(headers)
        ended = event.stream_ended is not None
        length = headers.get("content-length")
        if ended or upgrade:
            framing, size = NO_BODY, 0  # an upgrade's DATA is the tunnel, not a body
        elif length is not None and length.isdigit():
            framing, size = CONTENT_LENGTH, int(length)
        else:
            framing, size = CHUNKED, 0
        request = HttpRequest(method, path, "2", headers, framing, size, upgrade)
        info = StreamInfo(
            self.ctx.loop.time(), "HTTP/2", self.remote_address, self.local_address,
            self.connection_id, self.original_dst,
        )  # fmt: skip
        info.request_headers = headers
        info.stat_prefix = self.hcm.stat_prefix
        counters = self.http_stats.counters
        counters["downstream_rq_total"] += 1
        counters["downstream_rq_http2_total"] += 1
        stream = _Stream(self, stream_id, method == "HEAD")
        stream.extended_connect = bool(upgrade)
        self.streams[stream_id] = stream
        router = stream.router = Router(self.ctx, stream, self.hcm, request, info, self.http_stats)
        if count > self.hcm.max_headers_count:
            self.http_stats.counters["downstream_rq_too_large_headers"] += 1
            router.local_reply(431, b"", None, "http2.too_many_headers")
        elif not authority:
            router.local_reply(400, b"", None, "missing_host_header")
        else:
            router.start()
        if ended and not router.done:
            router.on_request_end()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if stream is None or stream.router is None:
            if size:
                self.h2.acknowledge_received_data(size, event.stream_id)
            return
        if size:
            if stream.reading:
                self.acknowledge(stream, size)
            else:
                stream.unacked += size
        if event.data:
            stream.router.on_request_data(event.data)

    def _on_reset(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        stream.ended = True
        self._blocked.discard(stream)
        if stream.router is not None and not stream.router.done:
            stream.router.on_downstream_reset()  # counts downstream_rq_rx_reset itself
        else:
            self.http_stats.counters["downstream_rq_rx_reset"] += 1
        stream.router = None
        self._maybe_finish_drain()

    # -- writing ------------------------------------------------------------------------------
    def send_headers(self, stream: _Stream, headers: list[tuple[str, str]], end: bool) -> None:
        if stream.ended or self._closed:
            return
        try:
            self.h2.send_headers(stream.id, never_indexed(headers), end_stream=end)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            return self._stream_gone(stream)
        if end:
            self._stream_gone(stream)

    def push(self, stream: _Stream) -> None:
        """Send what the stream's window allows; the rest waits for WINDOW_UPDATE."""
        if stream.ended or self._closed:
            return
        h2conn = self.h2
        head = stream.head_out
        if head is not None:
            # A response with no body and no trailers (gRPC's trailers-only) is one
            # HEADERS frame with END_STREAM, as Envoy forwards it.
            stream.head_out = None
            alone = stream.want_end and not stream.pending and not stream.want_trailers
            self.send_headers(stream, head, end=alone)
            if alone:
                return self.flush()
        try:
            end = stream.want_end and not stream.want_trailers  # END_STREAM on the last DATA
            before = len(stream.pending)
            ended = send_within_window(h2conn, stream.id, stream.pending, end)
            if before:  # all frames but the last are full-size: their count, for the floods
                sent = before - len(stream.pending)
                self._floods.data_frames += -(-sent // h2conn.max_outbound_frame_size)
            if stream.pending:
                self._blocked.add(stream)
                if stream.router is not None:
                    stream.router.on_downstream_writable(False)
                return
            if stream in self._blocked:
                self._blocked.discard(stream)
                if stream.router is not None:
                    stream.router.on_downstream_writable(self._writable)
            if stream.want_end:
                if stream.want_trailers:
                    h2conn.send_headers(stream.id, stream.want_trailers, end_stream=True)
                elif not ended:
                    h2conn.end_stream(stream.id)
                self._stream_gone(stream)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._stream_gone(stream)
        self._flush_soon()

    def acknowledge(self, stream: _Stream, size: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self.h2.acknowledge_received_data(size, stream.id)

    def reset(self, stream: _Stream, code: h2.errors.ErrorCodes) -> None:
        stream.client_ended = True  # a reset stream is over in both directions
        if not stream.ended and not self._closed:
            with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                self.h2.reset_stream(stream.id, code)
                self.h2_stats.counters["tx_reset"] += 1
        self._stream_gone(stream)
        self.flush()

    def _flush_soon(self) -> None:
        """Write h2's output once this loop turn's callbacks are done: the responses of
        every stream an upstream read completed go out in one ``write`` (one syscall)
        instead of one per stream, which cost more than the framing under load."""
        if not self._flush_pending and not self._closed:
            self._flush_pending = True
            self.ctx.loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and not self._closed:
            transport.write(data)
            flood = self._outbound.wrote(data, transport.get_write_buffer_size())
            if flood is not None:
                self._outbound_flood(flood)

    def outbound_active(self) -> tuple[int, int]:
        """Frames (all, control) written and still in the transport's buffer."""
        transport = self.transport
        buffered = 0 if transport is None or self._closed else transport.get_write_buffer_size()
        return self._outbound.active(buffered)

    def _outbound_flood(self, stat: str) -> None:
        """The peer stopped reading while it keeps the proxy answering: Envoy's outbound
        frame limits end the connection (nothing more can be written to it)."""
        self.h2_stats.counters[stat] += 1
        log.info("%s: HTTP/2 %s to %s", self.hcm.stat_prefix, stat, self.remote_address)
        self._closed = True
        if self.transport is not None:
            self.transport.abort()

    def drain(self, close_idle: bool = True) -> None:
        """GOAWAY, then close once the open streams are done (its filter chain changed,
        listener removal, stop): after a GOAWAY no client sends another request, so an
        idle connection closes at once whatever ``close_idle`` says."""
        if self.draining:
            return
        self.draining = True
        if not self._closed:
            self.h2.close_connection()
            self.h2_stats.counters["goaway_sent"] += 1
            self.http_stats.counters["downstream_cx_drain_close"] += 1
            self.flush()
        self._maybe_finish_drain()

    # -- internals -----------------------------------------------------------------------------
    def _client_ended(self, stream: _Stream) -> None:
        """END_STREAM from the client: the request is complete (a tunnel's half-close)."""
        stream.client_ended = True
        if stream.router is not None:
            stream.router.on_request_end()
        if stream.tunnel and stream.ended:
            self._forget(stream)
            self._maybe_finish_drain()

    def _stream_gone(self, stream: _Stream) -> None:
        stream.ended = True
        stream.pending.clear()
        self._blocked.discard(stream)
        if stream.tunnel and not stream.client_ended and not self._closed:
            return  # our half is closed; the client may still send until its END_STREAM
        self._forget(stream)
        self._maybe_finish_drain()

    def _forget(self, stream: _Stream) -> None:
        """Drop a finished stream, and its link to its router: the two point at each
        other, so without the cut each stream waited for the cyclic garbage collector."""
        self.streams.pop(stream.id, None)
        stream.router = None

    def _maybe_finish_drain(self) -> None:
        if self.draining and not self.streams:
            self.flush()
            self._close()

    def _close(self) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()


def _register_gauges(scope: StatsScope, connections: set[object]) -> None:
    """``http2.streams_active``, ``http2.pending_send_bytes`` and the outbound frame
    gauges over the live HTTP/2 connections, read only when the stats are (nothing to
    keep in step per frame)."""

    def h2_connections() -> Iterator[Http2Connection]:
        return (c for c in list(connections) if isinstance(c, Http2Connection))

    scope.gauge_fn("streams_active", lambda: sum(len(c.streams) for c in h2_connections()))
    scope.gauge_fn(
        "pending_send_bytes",
        lambda: sum(len(s.pending) for c in h2_connections() for s in c.streams.values()),
    )
    scope.gauge_fn(
        "outbound_frames_active", lambda: sum(c.outbound_active()[0] for c in h2_connections())
    )
    scope.gauge_fn(
        "outbound_control_frames_active",
        lambda: sum(c.outbound_active()[1] for c in h2_connections()),
    )


def _as_http1_upgrade(headers: dict[str, str]) -> tuple[str, str]:
    """An extended CONNECT (``:protocol``) rewritten as an HTTP/1.1 upgrade GET, as
    Envoy's codec rewrites it; a plain CONNECT stays CONNECT (upgrade type ``connect``,
    which App Mesh's HCMs do not enable: 403)."""
    protocol = headers.pop(":protocol", "")
    if not protocol:
        return "CONNECT", "connect"
    headers[":method"] = "GET"
    headers["upgrade"] = protocol
    return "GET", protocol.lower()
