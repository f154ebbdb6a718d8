"""Upstream HTTP/2: one multiplexed client connection per host, many streams on it.

``Http2UpstreamConnection`` is an ``asyncio.Protocol`` around h2's client state machine.
The host pool keeps it while it lives and asks it for a stream per request
(``open_stream``) while it has capacity: the peer's ``MAX_CONCURRENT_STREAMS``, and the
cluster's ``max_requests_per_connection`` over the connection's life, as in Envoy. A
stream (``Http2UpstreamStream``) is what the router's attempt holds: it offers the
same calls as an HTTP/1.1 ``UpstreamConnection`` (``begin``, ``write``, ``set_reading``,
``abort``) and reports the same events, plus the response trailers gRPC needs.

Flow control: request bytes beyond the peer's window wait in the stream and the
router stops reading the downstream meanwhile; response DATA is acknowledged only while
the downstream can take it. A GOAWAY stops new streams on the connection; streams the
peer never processed (above its last stream id) are reported as a reset of an unused
connection, so the router retries them silently, as Envoy does.

Upgrades (WebSocket) go out as RFC 8441 extended CONNECT (``:protocol``), as Envoy's
HTTP/2 codec sends them, but only to a peer whose SETTINGS offered
``SETTINGS_ENABLE_CONNECT_PROTOCOL`` (RFC 8441 forbids ``:protocol`` otherwise): such a
stream waits for the peer's first SETTINGS, and without the setting its owner hears
``on_upstream_upgrade_refused`` (the router answers 503 with the reason). The peer's
``200`` is reported as the ``101`` it stands for; then DATA frames are the tunnel, and
the stream stays open until both sides sent END_STREAM (each one a half-close).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack

from proxy.config.retry import CONNECTION_TERMINATION
from proxy.upstream.h2_lean import LeanH2Connection
from proxy.upstream.http2_guards import OutboundFrames, protocol_error_stat
from proxy.upstream.stream_events import StreamEvents

if TYPE_CHECKING:
    from proxy.observe.stats import StatsScope

DEFAULT_MAX_STREAMS = 100  # until the peer's SETTINGS say otherwise (RFC 9113's advice)


def h2_configuration(client_side: bool) -> h2.config.H2Configuration:
    """Both sides' h2 settings: headers decoded as latin-1 (any byte passes through),
    inbound headers validated, outbound ones sent as built.

    h2 re-checks and re-normalises every header list it sends (lowercase names, no
    connection-specific fields, pseudo-headers first, no surrounding whitespace) in nine
    generator passes, a fifth of the cost of sending HEADERS. The lists this proxy sends
    are built that way already (router/headers.py; names lowercased and values trimmed by
    both HTTP/1.1 parsers, or validated by h2 on the way in), so that is off, and the one
    part that is not about well-formedness is kept: ``never_indexed``. Inbound validation
    is a security boundary and stays on."""
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding="latin-1",
        validate_inbound_headers=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


_SENSITIVE = frozenset(("authorization", "proxy-authorization"))


def never_indexed(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Mark credentials (and short cookies, which a dictionary attack could recover) as
    HPACK never-indexed, so they stay out of the compression context; h2 does this in
    the normalisation ``h2_configuration`` turns off (the rule Firefox and nghttp2 use)."""
    for index, (name, value) in enumerate(headers):
        if name in _SENSITIVE or (name == "cookie" and len(value) < 20):
            headers[index] = cast("tuple[str, str]", hpack.NeverIndexedHeaderTuple(name, value))
    return headers


def send_within_window(
    conn: h2.connection.H2Connection, stream_id: int, pending: bytearray, end: bool = False
) -> bool:
    """Send DATA frames from the front of ``pending`` while the stream's and the
    connection's flow-control windows allow; what is left waits for WINDOW_UPDATE.

    With ``end`` the last frame carries END_STREAM once all of ``pending`` fits (one frame,
    not DATA and then an empty DATA to end the stream); returns whether it did."""
    while pending:
        size = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if size <= 0:
            return False
        if size >= len(pending):
            chunk = bytes(pending)
            pending.clear()
        else:
            chunk = bytes(pending[:size])
            del pending[:size]
        if end and not pending:
            conn.send_data(stream_id, chunk, end_stream=True)
            return True
        conn.send_data(stream_id, chunk)
    return False


class Http2StreamOwner(StreamEvents, Protocol):
    """What a stream reports to (the router's attempt): the stream events HTTP/1.1
    reports too, and an extended CONNECT the peer's SETTINGS did not allow."""

    def on_upstream_upgrade_refused(self, detail: str) -> None: ...


class Http2Pool(Protocol):
    """The host pool, as a connection sees it."""

    def release(self, conn: Http2UpstreamConnection) -> None: ...
    def on_closed(self, conn: Http2UpstreamConnection) -> None: ...


class Http2UpstreamStream:
    """One request/response exchange on a multiplexed connection."""

    __slots__ = (
        "conn",
        "id",
        "is_head",
        "local_ended",
        "owner",
        "pending",
        "reading",
        "received_bytes",
        "remote_ended",
        "response_started",
        "reused",
        "tunnel",
        "unacked",
        "upgrade",
        "want_end",
    )  # fmt: skip

    def __init__(self, conn: Http2UpstreamConnection, stream_id: int, reused: bool) -> None:
        self.conn = conn
        self.id = stream_id
        self.owner: Http2StreamOwner | None = None
        self.pending = bytearray()
        self.want_end = False
        self.is_head = False
        self.reading = True
        self.unacked = 0
        self.received_bytes = 0
        self.response_started = False
        self.reused = reused
        self.upgrade = False  # an extended CONNECT
        self.tunnel = False  # the peer said 200 to it
        self.local_ended = self.remote_ended = False  # END_STREAM sent / received

    def release_unused(self) -> None:
        """Give the stream back without having used it (a stale attempt)."""
        self.conn.release(self)

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def begin(
        self,
        owner: Http2StreamOwner,
        head: list[tuple[str, str]],
        body: bytes,
        is_head: bool,
        complete: bool,
        upgrade: bool = False,
    ) -> None:
        """Send the request headers and whatever body is already here."""
        self.owner = owner
        self.is_head = is_head
        self.upgrade = upgrade
        ends_now = complete and not body
        self.conn.start(self, head, end=ends_now)
        if not ends_now and (body or complete):
            self.write(body, complete)

    def write(self, data: bytes, complete: bool = False) -> None:
        """Queue request bytes; they go out at the end of this loop turn (``schedule``)."""
        if data:
            self.pending += data
        if complete:
            self.want_end = True
        self.conn.schedule(self)

    def write_eof(self) -> None:
        """The request side is done (END_STREAM): what a half-close is on HTTP/2."""
        self.write(b"", complete=True)

    def set_reading(self, enabled: bool) -> None:
        self.reading = enabled
        if enabled and self.unacked:
            self.conn.acknowledge(self, self.unacked)
            self.unacked = 0

    def abort(self) -> None:
        """Cancel the stream (RST_STREAM CANCEL); the owner hears nothing more."""
        self.owner = None
        self.conn.cancel(self)

    def close(self) -> None:
        """Nothing to do for a finished exchange: the connection stays for others."""
        self.owner = None


class Http2UpstreamConnection(asyncio.Protocol):
    """One upstream HTTP/2 connection (h2c with prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, pool: Http2Pool, max_requests: int, stats: StatsScope) -> None:
        self.pool = pool
        self.stats = stats.counters  # the cluster's: ``http2.rx_reset`` and friends
        self.max_requests = max_requests  # over the connection's life; 0: unlimited
        self.h2 = LeanH2Connection(h2_configuration(client_side=True))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Http2UpstreamStream] = {}
        self.closed = False
        self.going_away = False
        self.requests = 0
        self.idle_since = time.monotonic()
        self._blocked: set[Http2UpstreamStream] = set()
        # Streams handed out but not started: their ids are taken only when their HEADERS
        # go out, since HTTP/2 requires new stream ids in increasing order on the wire.
        self._reserved: set[Http2UpstreamStream] = set()
        # Extended CONNECTs waiting for the peer's first SETTINGS (ENABLE_CONNECT_PROTOCOL?).
        self._settings_received = False
        self._awaiting_settings: dict[Http2UpstreamStream, tuple[list[tuple[str, str]], bool]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_pending = False
        # Streams with request bytes or END_STREAM queued this loop turn, sent by
        # ``_deferred_flush`` (a dict: insertion-ordered, each stream once).
        self._scheduled: dict[Http2UpstreamStream, None] = {}
        self._outbound = OutboundFrames()  # frames written, not yet taken by the kernel

    def outbound_active(self) -> tuple[int, int]:
        """Frames (all, control) written and still in the transport's buffer."""
        transport = self.transport
        buffered = 0 if transport is None or self.closed else transport.get_write_buffer_size()
        return self._outbound.active(buffered)

    # -- what the pool asks ---------------------------------------------------------------
    def has_capacity(self) -> bool:
        if self.closed or self.going_away:
            return False
        if self.max_requests and self.requests >= self.max_requests:
            return False
        limit = self.h2.remote_settings.max_concurrent_streams or DEFAULT_MAX_STREAMS
        return self.active < min(limit, 2**31 - 1)

    @property
    def active(self) -> int:
        return len(self.streams) + len(self._reserved)

    def open_stream(self) -> Http2UpstreamStream:
        """A stream for one request; its id is assigned when its HEADERS are sent."""
        self.requests += 1
        stream = Http2UpstreamStream(self, 0, reused=self.requests > 1)
        self._reserved.add(stream)
        return stream

    def release(self, stream: Http2UpstreamStream) -> None:
        """An attempt gave back a stream it never started."""
        if stream in self._reserved and stream.owner is None:
            self._reserved.discard(stream)
            self.pool.release(self)

    def close(self) -> None:
        """Close gracefully (GOAWAY) once idle; at once when nothing is in flight."""
        self.going_away = True
        if self.transport is None or self.closed:
            return
        if not self.active:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection()
                self.stats["http2.goaway_sent"] += 1
            self._flush()
            self.transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self.h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            stat = protocol_error_stat(exc)
            if stat is not None:
                self.stats[f"http2.{stat}"] += 1
            self.stats["http2.goaway_sent"] += 1  # h2 queued GOAWAY: the peer hears why
            self._flush()
            self._fail_all()
            return
        for event in events:
            self._dispatch(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        streams, self.streams = self.streams, {}
        waiting, self._awaiting_settings = list(self._awaiting_settings), {}
        for stream in [*streams.values(), *waiting]:
            owner, stream.owner = stream.owner, None
            if owner is not None and not owner.discarded:
                owner.on_upstream_reset(CONNECTION_TERMINATION)
        self.pool.on_closed(self)

    def pause_writing(self) -> None:
        for stream in list(self.streams.values()):
            if stream.owner is not None:
                stream.owner.on_upstream_writable(False)

    def resume_writing(self) -> None:
        for stream in list(self.streams.values()):
            if stream.owner is not None:
                stream.owner.on_upstream_writable(True)

    # -- events ----------------------------------------------------------------------------
    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._on_response(event.stream_id, event.headers or [])
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.TrailersReceived):
            self.stats["http2.trailers"] += 1
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.owner is not None:
                trailers = [(str(n), str(v)) for n, v in event.headers or ()]
                stream.owner.on_upstream_trailers(trailers)
        elif isinstance(event, h2.events.StreamEnded):
            self._on_end(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._count_reset(event)
            self._on_reset(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream in list(self._blocked):
                self.push(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event.last_stream_id or 0)
        elif isinstance(event, h2.events.RemoteSettingsChanged) and not self._settings_received:
            self._settings_received = True
            for stream, (head, end) in list(self._awaiting_settings.items()):
                self._awaiting_settings.pop(stream, None)
                self.start(stream, head, end)

    def _count_reset(self, event: h2.events.StreamReset) -> None:
        if not event.remote_reset:
            self.stats["http2.tx_reset"] += 1  # h2 reset a stream the peer got wrong
            return
        self.stats["http2.rx_reset"] += 1
        if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
            self.stats["http2.stream_refused_errors"] += 1

    def _on_response(self, stream_id: int, raw: Sequence[tuple[object, object]]) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.owner is None:
            return
        status = 0
        headers: list[tuple[str, str]] = []
        for name, value in raw:
            key, text = str(name), str(value)
            if key == ":status":
                status = int(text)
            elif key[0] != ":":
                headers.append((key, text))
        if 100 <= status < 200:
            return  # interim responses are not forwarded
        if stream.upgrade and status == 200:
            status = 101  # the extended CONNECT's success is the tunnel (Envoy: H2 to H1)
            stream.tunnel = True
        stream.response_started = True
        stream.owner.on_upstream_headers(status, headers, True)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if stream is None or stream.owner is None:
            if size:
                self._ack(event.stream_id, size)
            return
        stream.received_bytes += len(event.data or b"")
        if size:
            if stream.reading:
                self._ack(event.stream_id, size)
            else:
                stream.unacked += size
        if event.data and not stream.is_head:
            stream.owner.on_upstream_data(event.data)
        stream.owner.on_upstream_flush()

    def _on_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and stream.upgrade and not stream.local_ended:
            if stream.tunnel:
                # A tunnel's half-close: our direction stays open until the owner ends it.
                stream.remote_ended = True
                if stream.owner is not None and not stream.owner.discarded:
                    stream.owner.on_upstream_end()
                return
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.end_stream(stream_id)  # an upgrade answered otherwise: nothing to send
            stream.local_ended = True
        self._close_stream(stream_id, lambda owner: owner.on_upstream_end())

    def _on_reset(self, stream_id: int) -> None:
        self._close_stream(stream_id, lambda owner: owner.on_upstream_reset(CONNECTION_TERMINATION))

    def _close_stream(self, stream_id: int, report: Callable[[Http2StreamOwner], None]) -> None:
        """The peer ended or reset a stream: tell its owner once, then free its slot."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        self._blocked.discard(stream)
        owner, stream.owner = stream.owner, None
        if owner is not None and not owner.discarded:
            report(owner)
        self._stream_finished()

    def _on_goaway(self, last_stream_id: int) -> None:
        """No new streams; those the peer never saw are retried elsewhere (silently)."""
        self.going_away = True
        for stream_id in [s for s in self.streams if s > last_stream_id]:
            stream = self.streams.pop(stream_id)
            stream.reused, stream.received_bytes = True, 0
            owner, stream.owner = stream.owner, None
            if owner is not None and not owner.discarded:
                owner.on_upstream_reset(CONNECTION_TERMINATION)
        if not self.active and self.transport is not None:
            self.transport.close()

    # -- writing ---------------------------------------------------------------------------
    def start(self, stream: Http2UpstreamStream, head: list[tuple[str, str]], end: bool) -> None:
        if stream.upgrade and not self._settings_received and not self.closed:
            self._awaiting_settings[stream] = (head, end)
            return  # still counted in ``_reserved``: its slot is taken
        self._reserved.discard(stream)
        if self.closed:
            return self._fail_stream(stream)
        if stream.upgrade and self.h2.remote_settings.enable_connect_protocol != 1:
            return self._refuse_upgrade(stream)
        stream.id = self.h2.get_next_available_stream_id()
        self.streams[stream.id] = stream
        try:
            self.h2.send_headers(stream.id, never_indexed(head), end_stream=end)
        except h2.exceptions.ProtocolError:
            self._fail_stream(stream)
            return
        if end:
            stream.want_end = False
            stream.local_ended = True
        self._flush_soon()
        if stream.pending or stream.want_end:
            self.schedule(stream)  # body that came while it waited for the peer's SETTINGS

    def schedule(self, stream: Http2UpstreamStream) -> None:
        """Send the stream's queued body (and END_STREAM) once this loop turn's callbacks
        are done: a body and its end that one downstream read carried go out as one DATA
        frame with END_STREAM, and every stream's frames in one ``write``."""
        if self._loop is None:
            return self.push(stream, flush=True)
        self._scheduled[stream] = None
        self._flush_soon()

    def push(self, stream: Http2UpstreamStream, flush: bool = False) -> None:
        """Send the stream's pending body as far as the peer's window allows."""
        if self.closed or self.streams.get(stream.id) is not stream:
            return
        h2conn = self.h2
        try:
            ended = send_within_window(h2conn, stream.id, stream.pending, stream.want_end)
            if stream.pending:
                if stream not in self._blocked and stream.owner is not None:
                    stream.owner.on_upstream_writable(False)
                self._blocked.add(stream)
            else:
                if stream in self._blocked:
                    self._blocked.discard(stream)
                    if stream.owner is not None:
                        stream.owner.on_upstream_writable(True)
                if stream.want_end:
                    stream.want_end = False
                    stream.local_ended = True
                    if not ended:
                        h2conn.end_stream(stream.id)
                    if stream.remote_ended:  # a tunnel whose other side had ended
                        self._close_stream(stream.id, lambda owner: None)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._fail_stream(stream)
        if flush:
            self._flush()

    def acknowledge(self, stream: Http2UpstreamStream, size: int) -> None:
        """Reopen the stream's window (WINDOW_UPDATE), written at the end of the turn."""
        self._ack(stream.id, size)
        self._flush_soon()

    def cancel(self, stream: Http2UpstreamStream) -> None:
        if stream in self._reserved:
            self._reserved.discard(stream)
            self._awaiting_settings.pop(stream, None)
            return self._stream_finished()
        if self.streams.pop(stream.id, None) is None:
            return
        self._blocked.discard(stream)
        if not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                self.h2.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
                self.stats["http2.tx_reset"] += 1
            self._flush()
        self._stream_finished()

    # -- internals -------------------------------------------------------------------------
    def _ack(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self.h2.acknowledge_received_data(size, stream_id)

    def _stream_finished(self) -> None:
        self.idle_since = time.monotonic()
        if self.going_away and not self.active:
            self.close()
        elif not self.closed:
            self.pool.release(self)

    def _refuse_upgrade(self, stream: Http2UpstreamStream) -> None:
        """RFC 8441: no ``:protocol`` to a peer that did not offer extended CONNECT."""
        owner, stream.owner = stream.owner, None
        if owner is not None and not owner.discarded:
            owner.on_upstream_upgrade_refused(
                "the HTTP/2 upstream did not offer extended CONNECT"
                " (SETTINGS_ENABLE_CONNECT_PROTOCOL), so the upgrade cannot reach it"
            )
        self._stream_finished()

    def _fail_stream(self, stream: Http2UpstreamStream) -> None:
        self.streams.pop(stream.id, None)
        self._blocked.discard(stream)
        owner, stream.owner = stream.owner, None
        if owner is not None and not owner.discarded:
            owner.on_upstream_reset(CONNECTION_TERMINATION)

    def _fail_all(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _flush_soon(self) -> None:
        """Write what this loop turn queued (the HEADERS, bodies and WINDOW_UPDATEs of
        all the requests one downstream read carried) in one ``write`` once the turn's
        callbacks are done: one syscall instead of one per stream and frame."""
        if self._loop is None:
            return self._flush()
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        scheduled, self._scheduled = self._scheduled, {}
        for stream in scheduled:
            self.push(stream)
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
            # Counted for the gauges only: Envoy's outbound flood limits are applied to
            # downstream connections here, not (yet) to upstream ones.
            self._outbound.wrote(data, self.transport.get_write_buffer_size())
