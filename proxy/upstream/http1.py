"""Upstream HTTP/1.1: the client codec on one connection.

``UpstreamConnection`` is a raw ``asyncio.Protocol`` with an httptools response parser.
It carries one request at a time and reports to an ``UpstreamStream`` (the router's
attempt): headers, body chunks, end, reset, and write backpressure. When the response
ends and the request was fully sent on a keep-alive connection, it goes back to its
pool (``ConnectionPool``: ``upstream.host.HostPool``, which also applies the cluster's
circuit breakers to new connections and pending requests).

An upgrade request (WebSocket) answered ``101`` turns the connection into a tunnel: no
more parsing, bytes go to the stream raw, the upstream's FIN is reported as the end of
the response (a half-close: the other direction goes on), and the connection never
returns to the pool. Any other answer to an upgrade is a normal response, after which
the connection closes (the upstream saw ``connection: upgrade``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httptools

from proxy.config.retry import CONNECTION_TERMINATION, PROTOCOL_ERROR
from proxy.upstream.stream_events import StreamEvents

if TYPE_CHECKING:
    from proxy.upstream.http2 import Http2UpstreamStream


class UpstreamStream(StreamEvents, Protocol):
    """What an upstream connection reports to (the router's current attempt): the
    stream events, and the pool's answer to its request for a connection."""

    def on_pool_ready(self, conn: UpstreamConnection | Http2UpstreamStream) -> None: ...
    def on_pool_failure(self, reason: str, detail: str) -> None: ...


class ConnectionPool(Protocol):
    """Where a connection goes back after a request, or reports that it closed."""

    def release(self, conn: UpstreamConnection) -> None: ...
    def on_closed(self, conn: UpstreamConnection) -> None: ...


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """How much response head the connection holds (Envoy's HTTP/1 client codec: 80 KiB,
    100 headers). Past either, the response is a protocol error: a 502 for the client."""

    max_bytes: int = 80 * 1024
    max_count: int = 100


class _HeadTooLarge(Exception):
    """Raised inside httptools' callback, which wraps it as a parser error."""


class UpstreamConnection(asyncio.Protocol):
    """One upstream HTTP/1.1 connection; at most one request in flight."""

    __slots__ = (
        "_close_delimited",
        "_head_bytes",
        "_head_raw",
        "_headers",
        "_in_head",
        "_interim",
        "_is_head",
        "_keep_alive",
        "_limits",
        "_request_done",
        "_response_done",
        "_tunnel",
        "closed",
        "idle_since",
        "parser",
        "pool",
        "received_bytes",
        "requests",
        "response_started",
        "stream",
        "transport",
        "upgrading",
    )

    def __init__(self, pool: ConnectionPool, limits: HeadLimits = HeadLimits()) -> None:
        self.pool = pool
        self._limits = limits
        self._in_head = False  # a response head is being parsed
        self._head_bytes = 0  # its header names and values so far
        self._head_raw = 0  # bytes received while it was incomplete
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.stream: UpstreamStream | None = None
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self.received_bytes = 0
        self.response_started = False
        self._headers: list[tuple[str, str]] = []
        self._is_head = False
        self._interim = False
        self._keep_alive = True
        self._close_delimited = False
        self._request_done = False
        self._response_done = False
        self.upgrading = False  # the request in flight asks for an upgrade
        self._tunnel = False  # it got its 101: bytes pass through unparsed

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        if stream is None:
            self.abort()  # bytes on an idle connection: the upstream broke framing
            return
        self.received_bytes += len(data)
        if self._tunnel:
            stream.on_upstream_data(data)
            stream.on_upstream_flush()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if not self._tunnel:
                self._reset(CONNECTION_TERMINATION)
                return
            rest = data[upgrade.args[0] :]
            if rest and self.stream is not None:
                self.stream.on_upstream_data(rest)
        except httptools.HttpParserError as error:
            too_large = isinstance(error.__context__, _HeadTooLarge)
            self._reset(PROTOCOL_ERROR if too_large else CONNECTION_TERMINATION)
            return
        if self._in_head:  # httptools keeps a partial head whole: bound what it holds
            self._head_raw += len(data)
            if self._head_raw > self._limits.max_bytes:
                self._reset(PROTOCOL_ERROR)
                return
        stream = self.stream
        if stream is not None:
            if stream.discarded:
                self.abort()  # a retried attempt whose response did not end within one read
            else:
                stream.on_upstream_flush()

    def eof_received(self) -> bool | None:
        """A tunnel's upstream ended its direction: the client hears it as a half-close
        while its own direction stays open. Otherwise the connection closes as before."""
        if not self._tunnel or self.stream is None:
            return None
        self.stream.on_upstream_end()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        stream = self.stream
        if stream is not None:
            if self.response_started and self._close_delimited and not self._response_done:
                self._complete()
            else:
                self.stream = None
                stream.on_upstream_reset(CONNECTION_TERMINATION)
        self.pool.on_closed(self)

    def pause_writing(self) -> None:
        if self.stream is not None:
            self.stream.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.stream is not None:
            self.stream.on_upstream_writable(True)

    # -- driven by the router -----------------------------------------------------------
    def begin(
        self,
        stream: UpstreamStream,
        head: bytes,
        body: bytes,
        is_head: bool,
        complete: bool,
        upgrade: bool = False,
    ) -> None:
        """Start a request: its head plus any body already available, in one write."""
        self.stream = stream
        self.upgrading = upgrade
        self.requests += 1
        self.received_bytes = 0
        self.response_started = False
        self._is_head = is_head
        self._request_done = complete
        self._response_done = False
        assert self.transport is not None
        self.transport.write(head + body if body else head)

    def write(self, data: bytes, complete: bool = False) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
        if complete:
            self._request_done = True

    def write_eof(self) -> None:
        """Half-close a tunnel: the client ended its direction."""
        if self.transport is not None and not self.closed and self.transport.can_write_eof():
            self.transport.write_eof()

    def set_reading(self, enabled: bool) -> None:
        if self.transport is not None and not self.closed:
            if enabled:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def abort(self) -> None:
        """Drop the connection now (mid-request); the stream hears nothing more."""
        self.stream = None
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        """Close gracefully after a finished exchange."""
        self.stream = None
        if self.transport is not None and not self.closed:
            self.transport.close()

    def release_unused(self) -> None:
        """Give the connection back without having used it (a stale attempt)."""
        self.pool.release(self)

    @property
    def reused(self) -> bool:
        return self.requests > 1

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []
        self._in_head = True
        self._head_bytes = self._head_raw = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        # Trimmed: llhttp keeps a value's trailing whitespace, which HTTP/2 forbids.
        headers.append((name.decode("latin-1").lower(), value.decode("latin-1").strip(" \t")))
        self._head_bytes += len(name) + len(value)
        if len(headers) > self._limits.max_count or self._head_bytes > self._limits.max_bytes:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue and friends are not forwarded
            return
        headers = self._headers
        self.response_started = True
        if self.upgrading:
            self._tunnel = status == 101
            self._keep_alive = False
            if self._tunnel:
                self._close_delimited = False
                if self.stream is not None:
                    self.stream.on_upstream_headers(status, headers, False)
                return
        else:
            self._keep_alive = parser.should_keep_alive()
        self._close_delimited = (
            not self._is_head
            and status not in (204, 304)
            and not any(n == "content-length" or n == "transfer-encoding" for n, _ in headers)
        )
        stream = self.stream
        if stream is not None:
            stream.on_upstream_headers(status, headers, self._keep_alive)
        if self._is_head and self.stream is stream:
            # httptools cannot be told the request was HEAD: end here, fresh parser next.
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        stream = self.stream
        if stream is not None and not stream.discarded:
            stream.on_upstream_data(body)

    def on_message_complete(self) -> None:
        if self._tunnel:
            return  # the 101 ends the HTTP part, not the stream
        if self._interim:
            self._interim = False
            return
        if not self._response_done:
            self._complete()

    # -- internals ------------------------------------------------------------------------
    def _complete(self) -> None:
        self._response_done = True
        stream, self.stream = self.stream, None
        if stream is not None and not stream.discarded:
            stream.on_upstream_end()
        if self.closed:
            return
        if self._keep_alive and self._request_done and not self._close_delimited:
            self.set_reading(True)  # paused for a slow client: idle, it must see a close
            self.pool.release(self)
        else:
            self.close()

    def _reset(self, reason: str) -> None:
        stream, self.stream = self.stream, None
        if self.transport is not None and not self.closed:
            self.transport.abort()
        if stream is not None and not stream.discarded:
            stream.on_upstream_reset(reason)
