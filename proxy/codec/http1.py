"""Downstream HTTP/1.1: a raw ``asyncio.Protocol`` with httptools, feeding the router.

The hot path is kept short: headers are lower-cased into one dict as they are parsed,
only the framing headers are inspected, the response head is built with one join and
written with one ``write()``, and body chunks go straight through (chunk-framed when the
upstream length is unknown). Backpressure runs both ways: the router pauses our reading
when the upstream cannot take the request body, and our ``pause_writing`` pauses the
upstream's reading.

Keep-alive follows HTTP/1.1 (``Connection: close``, HTTP/1.0 ``keep-alive``; HTTP/1.0 is
refused with 426 unless ``http_protocol_options.accept_http_10``, as in Envoy). Pipelined
requests queue behind the active one with their bodies buffered and reading paused, so
responses go out in order. HEAD, 1xx, 204 and 304 responses carry no body. An upgrade
(WebSocket) is routed like any request (the router applies ``upgrade_configs``); after
its head nothing more is parsed: every byte is the tunnel's, the ``101`` goes out with
``connection: upgrade``, and then the connection is a byte pipe with half-close both
ways until the router ends it. Any other answer to an upgrade closes the connection.
With ``codec_type`` AUTO (App Mesh's listeners) a connection that
opens with the HTTP/2 preface, or negotiated ``h2`` by ALPN, is handed to
``proxy.codec.http2``; with ``codec_type`` HTTP1 it is refused with GOAWAY.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

import httptools

from proxy import stream_info as flags
from proxy.codec.address import format_address
from proxy.observe.stats import HTTP_COUNTERS
from proxy.router.http_types import CHUNKED, CONTENT_LENGTH, NO_BODY, HttpRequest
from proxy.router.router import Router
from proxy.stream_info import StreamInfo

if TYPE_CHECKING:
    from proxy.config.compile import HttpConnectionManagerConfig
    from proxy.context import ProxyContext
    from proxy.timers import Timer

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})
_H2_PREFACE = b"PRI * HTTP/2.0\r\n"
_H2_HTTP_1_1_REQUIRED = 0xD
_H2_REFUSAL = b"appmesh-proxy does not speak HTTP/2 yet"

log = logging.getLogger(__name__)
_h2_refusals_logged: set[str] = set()
DELAYED_CLOSE_SECONDS = 1.0  # Envoy's delayed_close_timeout default


def h2_refusal() -> bytes:
    """An empty server SETTINGS frame, then GOAWAY(HTTP_1_1_REQUIRED) with a reason: what
    an HTTP/2 client needs to report "this server wants HTTP/1.1" instead of a parse error."""
    settings = struct.pack(">I", 0)[1:] + bytes([0x4, 0]) + struct.pack(">I", 0)
    payload = struct.pack(">II", 0, _H2_HTTP_1_1_REQUIRED) + _H2_REFUSAL
    goaway = struct.pack(">I", len(payload))[1:] + bytes([0x7, 0]) + struct.pack(">I", 0)
    return settings + goaway + payload


def status_line(status: int) -> str:
    return _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"


class _Stream:
    """Codec-side state of one request: its router, framing and buffered early body."""

    __slots__ = ("body_pending", "chunks", "ended", "head", "keep_alive", "rejection", "router",
                 "started", "upgrade", "version")  # fmt: skip

    def __init__(self, router: Router, keep_alive: bool, version: str, head: bool) -> None:
        self.router = router
        self.keep_alive = keep_alive
        self.version = version
        self.head = head
        self.started = False
        self.ended = False
        self.body_pending = True
        self.chunks: list[bytes] = []
        self.rejection: tuple[int, bytes, None, str] | None = None
        self.upgrade = ""  # the request's Upgrade header, as sent, when it asks for one


class ChainGroup(Protocol):
    """The open connections of this connection's filter chain, kept by the listener
    (above the codecs) to drain them together when an update takes the chain away."""

    def adopt(self, protocol: asyncio.Protocol) -> None:
        """Count a connection that changed codec among its chain's connections."""


class Http1Connection(asyncio.Protocol):
    """One downstream connection running an HTTP connection manager filter chain."""

    def __init__(
        self,
        ctx: ProxyContext,
        hcm: HttpConnectionManagerConfig,
        chain: ChainGroup | None = None,
        original_dst: tuple[str, int] | None = None,
    ) -> None:
        self.ctx = ctx
        self.hcm = hcm
        self.original_dst = original_dst  # where iptables' REDIRECT said it was going
        self._chain = chain
        self.http_stats = ctx.stats.scope("http", hcm.stat_prefix, HTTP_COUNTERS)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote_address = ""
        self.local_address = ""
        self.connection_id = 0
        self.draining = False
        self._close_idle = False  # draining: close as soon as no request is in flight
        self._url = b""
        self._headers: dict[str, str] = {}
        self._parsing: _Stream | None = None
        self._active: _Stream | None = None
        self._queue: deque[_Stream] = deque()
        self._router_paused = False
        self._reading = True
        self._out_chunked = False
        self._out_body = True
        self._idle: Timer | None = None
        self._idle_since = 0.0
        self._out: list[bytes] = []  # response bytes waiting for one write()
        self._closed = False
        self._in_head = False  # between a request's first byte and its last header
        self._head_raw = 0  # bytes received while the head was incomplete
        self._header_bytes = 0
        self._header_count = 0
        self._head_timer: Timer | None = None
        self._discarding = False
        self._duplicate_host = False
        self._upgraded: _Stream | None = None  # an upgrade's head was parsed: raw bytes now
        self._tunnel = False  # its 101 went out
        self._in_eof = self._out_eof = False  # the tunnel's half-closes

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
        counters["downstream_cx_http1_total"] += 1
        self._idle_since = self.ctx.loop.time()
        self._arm_idle()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._switch_to_http2(b"")

    def data_received(self, data: bytes) -> None:
        if self._discarding:  # a refused head: drop the rest until the delayed close
            return
        if self._upgraded is not None:
            return self._tunnel_data(data)
        if data.startswith(_H2_PREFACE) and self._parsing is None and self._active is None:
            if self.hcm.codec_type == "HTTP1":
                return self._refuse_http2()
            return self._switch_to_http2(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            stream = self._parsing
            if stream is None or not stream.upgrade:
                return self._close()
            self._upgraded = stream
            rest = data[upgrade.args[0] :]
            if rest:
                self._tunnel_data(rest)
            return
        except httptools.HttpParserError:
            self._protocol_error()
            return
        if self._in_head:  # httptools keeps a partial head whole: bound what it holds
            self._head_raw += len(data)
            if self._head_raw > self.hcm.max_request_headers_kb * 1024:
                self._refuse_head(431, "downstream_rq_too_large_headers")

    def eof_received(self) -> bool | None:
        """The client's FIN: the end of an upgrade's client direction (the tunnel stays
        open the other way); on a plain HTTP/1.1 connection, a close."""
        stream = self._upgraded
        if stream is None or stream is not self._active:
            return None
        self._in_eof = True
        stream.router.on_request_end()
        if self._out_eof:
            self._close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._head_timer is not None:
            self._head_timer.cancel()
        self.ctx.connections.discard(self)
        self.http_stats.counters["downstream_cx_destroy"] += 1
        if self._idle is not None:
            self._idle.cancel()
        active, self._active = self._active, None
        if active is not None:
            active.router.on_downstream_reset()
        self._queue.clear()

    def pause_writing(self) -> None:
        if self._active is not None:
            self._active.router.on_downstream_writable(False)

    def resume_writing(self) -> None:
        if self._active is not None:
            self._active.router.on_downstream_writable(True)

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._in_head = True
        self._duplicate_host = False
        self._head_raw = self._header_bytes = self._header_count = 0
        timeout = self.hcm.request_headers_timeout
        if timeout and self._head_timer is None:
            self._head_timer = self.ctx.timers.call_later(timeout, self._on_head_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        key = name.decode("latin-1").lower()
        if key == "host" and "host" in self._headers:
            self._duplicate_host = True
        text = value.decode("latin-1").strip(" \t")  # llhttp keeps trailing whitespace
        headers = self._headers
        if key in headers:
            text = f"{headers[key]}{'; ' if key == 'cookie' else ','}{text}"
        headers[key] = text

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        parser, headers = self.parser, self._headers
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        path = self._url.decode("latin-1")
        if not path.startswith("/") and "://" in path:  # absolute-form request target
            _, _, rest = path.partition("://")
            authority, slash, tail = rest.partition("/")
            headers.setdefault("host", authority)
            path = slash + tail or "/"
        headers[":method"] = method
        headers[":path"] = path
        host = headers.get("host")
        if host is None and version == "1.0":
            host = self.hcm.default_host_for_http_10
        headers[":authority"] = host or ""
        headers[":scheme"] = "http"
        framing, length = _framing(headers)
        upgrade = ""
        if parser.should_upgrade():
            upgrade = "connect" if method == "CONNECT" else headers.get("upgrade", "").strip()
            framing, length = NO_BODY, 0  # after the head, every byte is the tunnel's
        if headers.get("expect", "").lower() == "100-continue":
            del headers["expect"]
            if version == "1.1" and self._active is None and self.transport is not None:
                self.transport.write(_CONTINUE)  # Envoy answers 100-continue itself
        request = HttpRequest(method, path, version, headers, framing, length, upgrade.lower())
        loop_time = self.ctx.loop.time()
        info = StreamInfo(
            loop_time, f"HTTP/{version}", self.remote_address, self.local_address,
            self.connection_id, self.original_dst,
        )  # fmt: skip
        info.request_headers = headers
        info.stat_prefix = self.hcm.stat_prefix
        counters = self.http_stats.counters
        counters["downstream_rq_total"] += 1
        counters["downstream_rq_http1_total"] += 1
        router = Router(self.ctx, self, self.hcm, request, info, self.http_stats)
        stream = _Stream(router, parser.should_keep_alive(), version, method == "HEAD")
        stream.body_pending = framing == CHUNKED or (framing == CONTENT_LENGTH and length > 0)
        if upgrade:
            stream.upgrade = upgrade
            stream.keep_alive = False  # no HTTP/1.1 request can follow an upgrade
        self._parsing = stream
        stream.rejection = self._rejection(version, host)
        if stream.rejection is not None:
            stream.keep_alive = False
        if self._active is None:
            self._activate(stream)
        else:
            self._queue.append(stream)
            self._apply_reading()

    def on_body(self, body: bytes) -> None:
        stream = self._parsing
        if stream is None:
            return
        if stream.started:
            stream.router.on_request_data(body)
        else:
            stream.chunks.append(body)

    def on_message_complete(self) -> None:
        stream = self._parsing
        if stream is None or stream.upgrade:
            return  # an upgrade's request ends when the client half-closes, not here
        stream.ended = True
        stream.body_pending = False
        if stream.started:
            stream.router.on_request_end()
            if stream is not self._active and not stream.keep_alive:
                self._close()  # the response already went out; the request has now ended

    # -- Downstream interface (used by the router) --------------------------------------------
    def send_headers(
        self, status: int, headers: list[tuple[str, str]], content_length: int | None
    ) -> None:
        self._out.append(self._head(status, headers, content_length))

    def send_data(self, data: bytes) -> None:
        if self._tunnel:
            self._out.append(data)
        elif self._out_body:
            self._out.append(b"%x\r\n%b\r\n" % (len(data), data) if self._out_chunked else data)

    def send_trailers(self, trailers: list[tuple[str, str]]) -> None:
        """Dropped: Envoy's HTTP/1 codec forwards trailers only with ``enable_trailers``."""

    def end_response(self) -> None:
        if self._tunnel:
            return self._tunnel_half_close()
        if self._out_chunked:
            self._out.append(b"0\r\n\r\n")
        self.flush()
        self._stream_done()

    def send_local(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._out.append(self._head(status, headers, len(body)))
        if self._out_body and body:
            self._out.append(body)
        self.flush()
        self._stream_done()

    def flush(self) -> None:
        """One ``write()`` for everything produced since the last flush.

        The router flushes at the end of each upstream read, so a small response (head,
        body and chunk terminator) costs one syscall instead of three.
        """
        out = self._out
        if not out:
            return
        if self.transport is not None and not self._closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def abort(self) -> None:
        self._active = None
        self.flush()  # what the upstream did send still goes out before the reset
        if self.transport is not None and not self._closed:
            self.transport.abort()

    def set_reading(self, enabled: bool) -> None:
        self._router_paused = not enabled
        self._apply_reading()

    def drain(self, close_idle: bool = True) -> None:
        """Finish what is in flight, then close: the next response says
        ``connection: close``. With ``close_idle`` (listener removal, server stop) an idle
        connection closes now; without (its filter chain changed) it waits for that next
        request, so a client cannot lose a request it sends just as the close comes."""
        self.draining = True
        self._close_idle = self._close_idle or close_idle
        if self._close_idle and self._active is None and not self._queue:
            self._drain_close()

    # -- internals -------------------------------------------------------------------------
    def _rejection(self, version: str, host: str | None) -> tuple[int, bytes, None, str] | None:
        """Requests Envoy's HCM refuses before routing: too many or too large headers,
        HTTP/1.0, no Host. Upgrades are the router's to allow (``upgrade_configs``)."""
        hcm = self.hcm
        if (
            self._header_count > hcm.max_headers_count
            or self._header_bytes > hcm.max_request_headers_kb * 1024
        ):
            self.http_stats.counters["downstream_rq_too_large_headers"] += 1
            return 431, b"", None, "http1.headers_too_large"
        framing = _framing_problem(self._headers, self._duplicate_host)
        if framing is not None:
            return 400, b"", None, framing
        if version == "1.0" and not self.hcm.accept_http_10:
            return 426, b"", None, "low_version"
        if not host and version != "1.0":
            return 400, b"", None, "missing_host_header"
        return None

    def _activate(self, stream: _Stream) -> None:
        self._active = stream
        stream.started = True
        router = stream.router
        if stream.rejection is not None:
            router.local_reply(*stream.rejection)
        else:
            router.start()
        for chunk in stream.chunks:
            router.on_request_data(chunk)
        stream.chunks = []
        if stream.ended:
            router.on_request_end()

    def _head(self, status: int, headers: list[tuple[str, str]], length: int | None) -> bytes:
        """Status line, headers, framing and ``connection`` for the active stream."""
        stream = self._active
        assert stream is not None
        if status == 101 and stream.upgrade:
            return self._switching_head(stream, headers)
        keep_alive = stream.keep_alive and not stream.body_pending
        if keep_alive and self.draining:
            self.http_stats.counters["downstream_cx_drain_close"] += 1
            keep_alive = False
        no_body = stream.head or status in _NO_BODY_STATUS or status < 200
        parts = [status_line(status)]
        parts.extend(f"{name}: {value}\r\n" for name, value in headers)
        self._out_chunked = False
        self._out_body = not no_body
        if length is not None:
            if status not in _NO_BODY_STATUS:
                parts.append(f"content-length: {length}\r\n")
        elif not no_body:
            if stream.version == "1.1":
                parts.append("transfer-encoding: chunked\r\n")
                self._out_chunked = True
            else:
                keep_alive = False  # HTTP/1.0 without a length: the close ends the body
        if not keep_alive:
            parts.append("connection: close\r\n")
        elif stream.version == "1.0":
            parts.append("connection: keep-alive\r\n")
        stream.keep_alive = keep_alive
        parts.append("\r\n")
        return "".join(parts).encode("latin-1", "replace")

    def _switching_head(self, stream: _Stream, headers: list[tuple[str, str]]) -> bytes:
        """The upgrade's ``101``: the hop-by-hop pair that makes it one, no framing; what
        follows is the tunnel."""
        self._tunnel = True
        self._out_chunked = False
        self._out_body = True
        parts = [status_line(101)]
        parts.extend(f"{name}: {value}\r\n" for name, value in headers)
        parts.append(f"connection: upgrade\r\nupgrade: {stream.upgrade}\r\n\r\n")
        return "".join(parts).encode("latin-1", "replace")

    def _tunnel_data(self, data: bytes) -> None:
        """Bytes after an upgrade's head: the tunnel's, whether or not the 101 came yet."""
        stream = self._upgraded
        assert stream is not None
        if stream.started:
            stream.router.on_request_data(data)
        else:
            stream.chunks.append(data)

    def _tunnel_half_close(self) -> None:
        """The upstream ended its direction: FIN to the client; closed once both did
        (UNCONFIRMED: Envoy's HTTP/1 codec may close at the first end)."""
        self.flush()
        self._out_eof = True
        transport = self.transport
        if self._in_eof or transport is None or not transport.can_write_eof():
            return self._close()
        if not self._closed:
            transport.write_eof()

    def _stream_done(self) -> None:
        stream, self._active = self._active, None
        if stream is None:
            return
        self._idle_since = self.ctx.loop.time()
        if not stream.keep_alive:
            if not stream.body_pending:
                self._close()
            else:  # read (and drop) the rest of the request body, then close
                self._arm_idle()
            return
        if self._queue:
            upcoming = self._queue.popleft()
            self._apply_reading()
            self._activate(upcoming)
        elif self.draining and self._close_idle:
            self._drain_close()
        else:
            self._arm_idle()

    def _apply_reading(self) -> None:
        wanted = not self._router_paused and not self._queue
        if wanted != self._reading and self.transport is not None and not self._closed:
            self._reading = wanted
            if wanted:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _arm_idle(self, delay: float | None = None) -> None:
        """The connection idle timeout, lazily: one timer per connection, not per request.

        It fires at most once per ``idle_timeout`` and re-arms for the remainder if the
        connection was busy or became idle later than the timer assumed.
        """
        timeout = self.hcm.idle_timeout
        if timeout and self._idle is None and not self._closed:
            self._idle = self.ctx.timers.call_later(delay or timeout, self._on_idle_timeout)

    def _on_idle_timeout(self) -> None:
        self._idle = None
        timeout = self.hcm.idle_timeout
        assert timeout is not None
        if self._active is not None or self._queue:
            return self._arm_idle()
        idle_for = self.ctx.loop.time() - self._idle_since
        if idle_for < timeout:
            return self._arm_idle(timeout - idle_for)
        self.http_stats.counters["downstream_cx_idle_timeout"] += 1
        self._close()

    def _switch_to_http2(self, first: bytes) -> None:
        """Envoy's ``codec_type: AUTO``: the HTTP/2 preface (or ALPN ``h2``) hands the
        connection to the HTTP/2 codec before any HTTP/1.1 request was parsed."""
        transport = self.transport
        assert transport is not None
        counters = self.http_stats.counters
        counters["downstream_cx_total"] -= 1  # counted again, as HTTP/2, by the new codec
        counters["downstream_cx_http1_total"] -= 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._closed = True  # this object is done; the HTTP/2 codec owns the transport
        self.ctx.connections.discard(self)
        scheme = "https" if transport.get_extra_info("ssl_object") is not None else "http"
        from proxy.codec.http2 import Http2Connection  # h2 loads with the first one

        protocol = Http2Connection(self.ctx, self.hcm, self.original_dst, scheme)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if first:
            protocol.data_received(first)
        if self._chain is not None:
            self._chain.adopt(protocol)  # drains it at once if its chain is draining

    def _refuse_http2(self) -> None:
        """An HTTP/2 (prior knowledge) client: refuse it in HTTP/2's own words, loudly."""
        self.http_stats.counters["downstream_cx_protocol_error"] += 1
        prefix = self.hcm.stat_prefix
        if prefix not in _h2_refusals_logged:  # once per listener, not once per connection
            _h2_refusals_logged.add(prefix)
            log.warning(
                "%s: refused an HTTP/2 connection from %s: this proxy speaks HTTP/1.1 only "
                "(sent GOAWAY HTTP_1_1_REQUIRED)",
                prefix,
                self.remote_address,
            )
        if self.transport is not None and not self._closed:
            self.transport.write(h2_refusal())
        self._close()

    def _on_head_timeout(self) -> None:
        """``request_headers_timeout``: the head did not arrive in time (Envoy: 408)."""
        self._head_timer = None
        if self._in_head and not self._closed:
            self._refuse_head(408, "downstream_rq_header_timeout")

    def _refuse_head(self, status: int, counter: str) -> None:
        """Answer a request whose head never completed, and close, as Envoy's codec does."""
        self.http_stats.counters[counter] += 1
        self._in_head = False
        if self._active is None and self.transport is not None and not self._closed:
            body = HTTPStatus(status).phrase.encode()
            head = (
                f"{status_line(status)}content-length: {len(body)}\r\ncontent-type: text/plain\r\n"
                f"date: {self.ctx.dates.get()}\r\nserver: {self.hcm.server_name}\r\n"
                "connection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
            self._delayed_close()
            return
        self._close()

    def _delayed_close(self) -> None:
        """Envoy's ``delayed_close_timeout`` (1 s): half-close and stop reading, so the
        client can read the answer before the close resets the connection, and whatever
        it still sends costs neither memory nor CPU."""
        assert self.transport is not None
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.pause_reading()
        self.ctx.timers.call_later(DELAYED_CLOSE_SECONDS, self._close)

    def _protocol_error(self) -> None:
        self.http_stats.counters["downstream_cx_protocol_error"] += 1
        stream = self._active
        if stream is None and self.transport is not None and not self._closed:
            body = b"Bad Request"
            head = (
                f"{status_line(400)}content-length: {len(body)}\r\ncontent-type: text/plain\r\n"
                f"date: {self.ctx.dates.get()}\r\nserver: {self.hcm.server_name}\r\n"
                "connection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
        elif stream is not None and not stream.router.response_started:
            # A malformed body (bad chunk framing) before any response: Envoy answers 400.
            stream.keep_alive = False
            stream.router.local_reply(
                400, b"", flags.DOWNSTREAM_PROTOCOL_ERROR, "http1.codec_error"
            )
            return
        elif stream is not None:
            stream.router.info.add_flag(flags.DOWNSTREAM_PROTOCOL_ERROR)
        self._close()

    def _drain_close(self) -> None:
        if not self._closed:
            self.http_stats.counters["downstream_cx_drain_close"] += 1
        self._close()

    def _close(self) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()


def _framing_problem(headers: dict[str, str], duplicate_host: bool) -> str | None:
    """Heads Envoy's HTTP/1 codec refuses with 400: two Hosts, a transfer coding other
    than plain ``chunked`` (``identity, chunked`` smuggles a body past some parsers)."""
    if duplicate_host:
        return "http1.invalid_host"
    coding = headers.get("transfer-encoding")
    if coding is not None and coding.strip().lower() != "chunked":
        return "http1.invalid_transfer_encoding"
    return None


def _framing(headers: dict[str, str]) -> tuple[int, int]:
    """How the request body is framed: chunked wins over content-length, as RFC 9112 says."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return CHUNKED, 0
    length = headers.get("content-length")
    if length is not None:
        try:
            return CONTENT_LENGTH, int(length.split(",")[0])
        except ValueError:
            return NO_BODY, 0
    return NO_BODY, 0
