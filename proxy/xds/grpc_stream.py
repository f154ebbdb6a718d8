"""One bidirectional gRPC call over HTTP/2, spoken with the ``h2`` library, not grpcio.

The proxy's two gRPC clients use it: the local SDS agent client (``proxy.sds_client``,
``StreamSecrets`` on a Unix socket) and the Delta ADS client (``proxy.xds.delta``,
``DeltaAggregatedResources`` over TCP, TLS or not, signed). grpcio's import, its C core
and its threads cost a sidecar 9 to 12 MB; a call is little more than HTTP/2 with a
5-byte prefix on each message and the status in trailers, so it is done here:

* ``open_unix`` / ``open_tcp`` connect (TLS with ALPN ``h2`` when given a context), wait
  for the server's SETTINGS (an HTTP/2 server that never sends them is not a server: the
  connect timeout covers it, as grpcio's ``channel_ready`` did), then send the call's
  headers with any metadata (the SigV4 signature of an ADS stream);
* ``send`` frames one message (uncompressed) in DATA frames within the flow-control
  window; ``read`` returns each whole message, ``None`` when the call ends with
  ``grpc-status: 0``, and raises ``GrpcError`` for any other status, a reset, a GOAWAY
  or a broken connection;
* ``keepalive(interval, timeout)``: after ``interval`` seconds with nothing received, an
  HTTP/2 PING; when nothing (not even its ACK) arrives within ``timeout``, the
  connection is dropped and ``read`` raises, so a peer that went silent without a TCP
  reset (a stopped process, a dropped route) is noticed in ``interval + timeout``.

``h2`` is imported when the first call opens, not with this module, so a sidecar that
never opens one (REST xDS, no local SDS) never loads it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

_GRPC_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
UNAVAILABLE, INTERNAL = 14, 13
#: What this side lets the server send ahead of the reads (stream and connection): a big
#: mesh's first clusters run to MBs, and 64 KiB windows would make that many round trips.
RECEIVE_WINDOW = 4 * 1024 * 1024
_pings = itertools.count(1)


class GrpcError(Exception):
    """A gRPC call that ended with a ``grpc-status`` other than OK, or broke off."""

    def __init__(self, code: int, message: str) -> None:
        name = _GRPC_CODES[code] if 0 <= code < len(_GRPC_CODES) else str(code)
        super().__init__(f"{name}: {message}" if message else name)
        self.code = code


class GrpcStream:
    """One client-and-server streaming call on its own HTTP/2 connection (prior
    knowledge in plaintext, ALPN ``h2`` over TLS); ``peer`` names the server in errors."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str):
        import h2.config
        import h2.connection
        import h2.settings

        self._reader, self._writer, self.peer = reader, writer, peer
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config)
        self._h2.initiate_connection()
        self._h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW})
        self._h2.increment_flow_control_window(RECEIVE_WINDOW - 65535)
        self._flush()
        self._id = self._h2.get_next_available_stream_id()
        self._buffer = bytearray()
        self._ended = False
        self._settled = False  # the server's first SETTINGS arrived
        self._failure: Exception | None = None
        self._window = asyncio.Event()
        self._last_received = asyncio.get_running_loop().time()
        self._heard = asyncio.Event()  # something arrived since the last PING went out
        self._keepalive: asyncio.Task[None] | None = None
        self.pings_answered = 0

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    async def open_unix(cls, socket_path: str, method: str, timeout: float = 5.0) -> GrpcStream:
        """A call to an agent on a Unix socket (``:authority`` ``localhost``)."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            return await cls(reader, writer, "the agent")._call(method, "http", "localhost", ())

    @classmethod
    async def open_tcp(
        cls,
        host: str,
        port: int,
        method: str,
        *,
        authority: str,
        tls: ssl.SSLContext | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float = 5.0,
    ) -> GrpcStream:
        """A call to ``host:port``, over TLS when ``tls`` is given (its ALPN set to h2
        here; the certificate checked against ``host``)."""
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls is not None else None
            )
            peer = f"{host}:{port}"
            if tls is not None:
                alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                if alpn not in (None, "h2"):
                    writer.close()
                    raise GrpcError(UNAVAILABLE, f"{peer} chose ALPN {alpn!r}, not h2")
            scheme = "https" if tls is not None else "http"
            return await cls(reader, writer, peer)._call(method, scheme, authority, metadata)

    async def _call(
        self, method: str, scheme: str, authority: str, metadata: Sequence[tuple[str, str]]
    ) -> GrpcStream:
        try:
            while not self._settled:
                await self._pump()
        except BaseException:
            self.close()
            raise
        headers = [(b":method", b"POST"), (b":scheme", scheme.encode()),
                   (b":path", method.encode()), (b":authority", authority.encode()),
                   (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                   (b"user-agent", b"appmesh-proxy")]  # fmt: skip
        headers += [(name.encode(), value.encode()) for name, value in metadata]
        self._h2.send_headers(self._id, headers)
        self._flush()
        return self

    # -- messages ---------------------------------------------------------------------------
    async def send(self, message: bytes) -> None:
        """One message, waiting for window when the server has not granted enough."""
        import h2.exceptions

        data = b"\0" + len(message).to_bytes(4, "big") + message
        while data:
            self._raise_if_failed()
            allowed = min(
                self._h2.local_flow_control_window(self._id), self._h2.max_outbound_frame_size
            )
            if allowed <= 0:
                self._window.clear()
                await self._window.wait()
                continue
            try:
                self._h2.send_data(self._id, data[:allowed])
            except h2.exceptions.ProtocolError as exc:  # the stream or connection is closed
                raise GrpcError(UNAVAILABLE, f"the call to {self.peer} is closed") from exc
            data = data[allowed:]
            self._flush()

    async def read(self) -> bytes | None:
        """The next whole message, or ``None`` when the call ended with OK."""
        while True:
            message = self._message()
            if message is not None:
                return message
            if self._ended:
                return None
            await self._pump()

    # -- liveness ---------------------------------------------------------------------------
    def keepalive(self, interval: float, timeout: float, jitter: float = 0.0) -> None:
        """PING after ``interval`` s of silence (plus up to ``jitter`` of it at random,
        as Envoy's ``interval_jitter``); drop the connection when ``timeout`` s pass with
        nothing received. ``interval`` 0: no PINGs. Needs a reader: ``read`` takes the
        ACK in."""
        if interval > 0:
            ping = self._ping(interval, timeout, jitter)
            self._keepalive = asyncio.get_running_loop().create_task(ping)

    async def _ping(self, interval: float, timeout: float, jitter: float) -> None:
        import h2.exceptions

        loop = asyncio.get_running_loop()
        while True:
            wait = interval * (1 + random.uniform(0, jitter))
            silent = loop.time() - self._last_received
            while silent < wait:
                await asyncio.sleep(wait - silent)
                silent = loop.time() - self._last_received
            self._heard.clear()
            try:
                self._h2.ping(next(_pings).to_bytes(8, "big"))
            except h2.exceptions.ProtocolError as exc:  # the connection closed meanwhile
                self.abort(GrpcError(UNAVAILABLE, f"{self.peer}: {exc}"))
                return
            self._flush()
            try:
                await asyncio.wait_for(self._heard.wait(), timeout)
            except TimeoutError:
                self.abort(
                    GrpcError(UNAVAILABLE, f"{self.peer} left a PING unanswered {timeout:g} s")
                )
                return

    def abort(self, failure: Exception) -> None:
        """End the call and its connection now; ``read`` and ``send`` raise ``failure``."""
        if self._failure is None:
            self._failure = failure
        self._window.set()
        self._writer.transport.abort()

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._writer.close()

    # -- the connection ---------------------------------------------------------------------
    async def _pump(self) -> None:
        """Read what the socket has and hand it to h2."""
        self._raise_if_failed()
        try:
            chunk = await self._reader.read(65536)
        except OSError as exc:
            self._raise_if_failed()
            raise ConnectionError(f"{self.peer}: {exc}") from exc
        self._raise_if_failed()
        if not chunk:
            raise ConnectionError(f"{self.peer} closed the connection")
        self._last_received = asyncio.get_running_loop().time()
        self._heard.set()
        self._receive(chunk)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _message(self) -> bytes | None:
        if len(self._buffer) < 5:
            return None
        if self._buffer[0] != 0:
            raise GrpcError(INTERNAL, "a compressed message, though none was offered")
        size = int.from_bytes(self._buffer[1:5], "big")
        if len(self._buffer) < 5 + size:
            return None
        message = bytes(self._buffer[5 : 5 + size])
        del self._buffer[: 5 + size]
        return message

    def _receive(self, chunk: bytes) -> None:
        import h2.events
        import h2.exceptions

        try:
            events = self._h2.receive_data(chunk)
        except h2.exceptions.ProtocolError as exc:
            raise GrpcError(INTERNAL, f"HTTP/2 protocol error: {exc}") from exc
        for event in events:
            self._event(event, h2.events)
        self._flush()

    def _event(self, event: Any, events: Any) -> None:
        mine = getattr(event, "stream_id", self._id) == self._id
        if isinstance(event, events.DataReceived) and mine:
            self._buffer += event.data
            self._h2.acknowledge_received_data(event.flow_controlled_length, self._id)
        elif isinstance(event, (events.ResponseReceived, events.TrailersReceived)):
            trailers = isinstance(event, events.TrailersReceived)
            self._status(dict(event.headers), trailers=trailers)
        elif isinstance(event, events.StreamReset) and mine:
            raise GrpcError(1, f"stream reset by {self.peer} (HTTP/2 error {event.error_code})")
        elif isinstance(event, events.ConnectionTerminated):
            why = (
                f" {event.additional_data.decode(errors='replace')}"
                if event.additional_data
                else ""
            )
            raise GrpcError(
                UNAVAILABLE, f"GOAWAY from {self.peer} (HTTP/2 error {event.error_code}){why}"
            )
        elif isinstance(event, events.WindowUpdated):
            self._window.set()
        elif isinstance(event, events.PingAckReceived):
            self.pings_answered += 1
        elif isinstance(event, events.RemoteSettingsChanged):
            self._settled = True
            self._window.set()  # its initial window may have grown
        elif isinstance(event, events.StreamEnded) and mine:
            self._ended = True

    def _status(self, headers: dict[bytes, bytes], trailers: bool) -> None:
        """Check the response headers, and the call's status in its trailers (or in a
        trailers-only response)."""
        status = headers.get(b":status")
        if status is not None and status != b"200":
            raise GrpcError(UNAVAILABLE, f"HTTP status {status.decode()} from {self.peer}")
        code = headers.get(b"grpc-status")
        if code is None:
            if trailers:
                raise GrpcError(2, "trailers without grpc-status")
            return
        if code != b"0":
            message = unquote(headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
            raise GrpcError(int(code) if code.isdigit() else 2, message)
        self._ended = True

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)
