"""WebSocket peers for the proxy and mesh tests: an aiohttp echo server, an RFC 8441
client and an RFC 8441 echo server, both on bare h2 connections (no WebSocket library
speaks HTTP/2).

    python websocket_peers.py NAME PORT [FAILURE_RATE] [h2]

runs an echo server as a mesh app (FAILURE_RATE is ignored): aiohttp's, where ``/plain``
and any request without ``Upgrade`` answer 200 and everything else is a WebSocket echo;
with ``h2``, the HTTP/2 one (h2c prior knowledge, extended CONNECT only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

import aiohttp
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from aiohttp import web

MIB = 1 << 20


async def echo(request: web.Request) -> web.StreamResponse:
    """Echo every message; ``close-me`` makes the server start the close handshake."""
    if request.path == "/plain" or request.headers.get("upgrade", "").lower() != "websocket":
        return web.Response(text="plain")
    ws = web.WebSocketResponse(max_msg_size=4 * MIB)
    await ws.prepare(request)
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT and message.data == "close-me":
            await ws.close(code=4001, message=b"server says bye")
        elif message.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 5.2); payloads up to 64 KiB are enough here."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(data: bytes) -> tuple[int, bytes, bytes]:
    """``(opcode, payload, rest)`` of one unmasked server frame at the start of ``data``."""
    size, start = data[1] & 0x7F, 2
    if size == 126:
        size, start = int.from_bytes(data[2:4], "big"), 4
    elif size == 127:
        size, start = int.from_bytes(data[2:10], "big"), 10
    return data[0] & 0x0F, data[start : start + size], data[start + size :]


def ws_server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame (any size)."""
    size = len(payload)
    if size < 126:
        return bytes([0x80 | opcode, size]) + payload
    if size < 1 << 16:
        return bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big") + payload


def ws_take_client_frame(data: bytearray) -> tuple[int, bytes] | None:
    """Remove one complete masked client frame from the front of ``data``: its opcode
    and unmasked payload, or ``None`` while the frame is incomplete (FIN frames only:
    the clients here never fragment)."""
    if len(data) < 2:
        return None
    size, start = data[1] & 0x7F, 2
    if size == 126:
        size, start = int.from_bytes(data[2:4], "big"), 4
    elif size == 127:
        size, start = int.from_bytes(data[2:10], "big"), 10
    if len(data) < start + 4 + size:
        return None
    mask = bytes(data[start : start + 4])
    masked = bytes(data[start + 4 : start + 4 + size])
    opcode = data[0] & 0x0F
    del data[: start + 4 + size]
    repeated = (mask * (size // 4 + 1))[:size]
    payload = (int.from_bytes(masked, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return opcode, payload


class H2WebSocketServer:
    """An RFC 8441 WebSocket echo server on h2c: its SETTINGS offer extended CONNECT
    (unless ``offer_connect`` is false), a ``:protocol websocket`` CONNECT is answered
    200 and its frames echoed; a close frame is echoed and ends the stream. Anything
    else is answered 404. ``requests`` keeps each request's headers."""

    def __init__(self, offer_connect: bool = True) -> None:
        self.offer_connect = offer_connect
        self.requests: list[dict[str, str]] = []
        self.server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config)
        codes = h2.settings.SettingCodes
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={codes.ENABLE_CONNECT_PROTOCOL: int(self.offer_connect)},
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        buffers: dict[int, bytearray] = {}
        try:
            while chunk := await reader.read(65536):
                for event in conn.receive_data(chunk):
                    self._on_event(conn, event, buffers)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _send(conn: h2.connection.H2Connection, sid: int, data: bytes, end: bool) -> None:
        """In frames of the peer's size; echoes stay within the initial 64 KiB window."""
        size = conn.max_outbound_frame_size
        for start in range(0, len(data), size):
            last = start + size >= len(data)
            conn.send_data(sid, data[start : start + size], end_stream=end and last)

    def _on_event(
        self, conn: h2.connection.H2Connection, event: h2.events.Event, buffers: dict
    ) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {str(n): str(v) for n, v in event.headers or ()}
            self.requests.append(headers)
            sid = event.stream_id
            if headers.get(":method") == "CONNECT" and headers.get(":protocol") == "websocket":
                buffers[sid] = bytearray()
                conn.send_headers(sid, [(":status", "200")])
            else:
                conn.send_headers(sid, [(":status", "404"), ("content-length", "0")], True)
        elif isinstance(event, h2.events.DataReceived) and event.stream_id in buffers:
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            buffers[event.stream_id] += event.data or b""
            while (frame := ws_take_client_frame(buffers[event.stream_id])) is not None:
                opcode, payload = frame
                if opcode in (0x1, 0x2, 0x8):
                    self._send(
                        conn, event.stream_id, ws_server_frame(opcode, payload), opcode == 0x8
                    )
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in buffers:
            buffers.pop(event.stream_id)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                conn.end_stream(event.stream_id)


class H2WebSocket:
    """A bare h2 client speaking one RFC 8441 WebSocket on stream 1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        self.events: list[h2.events.Event] = []
        self.received = b""

    async def open(self, path: str, authority: str = "chat.local") -> h2.events.ResponseReceived:
        self.h2.initiate_connection()
        await self._send()
        await self._until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        self.h2.send_headers(1, [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":path", path), (":authority", authority), ("sec-websocket-version", "13"),
        ])  # fmt: skip
        await self._send()
        response = await self._until(lambda e: isinstance(e, h2.events.ResponseReceived))
        assert isinstance(response, h2.events.ResponseReceived)
        return response

    async def send(self, opcode: int, payload: bytes) -> None:
        frame = ws_frame(opcode, payload)  # within the initial 64 KiB window
        for start in range(0, len(frame), 16384):
            self.h2.send_data(1, frame[start : start + 16384])
        await self._send()

    async def receive(self) -> tuple[int, bytes]:
        while True:
            if len(self.received) >= 2:
                opcode, payload, rest = ws_parse(self.received)
                header = 2 + (2 if len(payload) >= 126 else 0)
                if len(self.received) >= header + len(payload):
                    self.received = rest
                    return opcode, payload
            await self._until(lambda e: isinstance(e, h2.events.DataReceived))

    def remote_connect_setting(self) -> int:
        return self.h2.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0)

    async def _until(self, wanted: Any) -> h2.events.Event:
        while True:
            for index, event in enumerate(self.events):
                if wanted(event):
                    return self.events.pop(index)
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "the proxy closed the connection"
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.received += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, 1)
                self.events.append(event)
            await self._send()

    async def _send(self) -> None:
        self.writer.write(self.h2.data_to_send())
        await self.writer.drain()


def main() -> None:
    port = int(sys.argv[2])
    if sys.argv[4:5] == ["h2"]:
        return asyncio.run(_serve_h2(port))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _serve_h2(port: int) -> None:
    server = H2WebSocketServer()
    await server.start(port)
    assert server.server is not None
    await server.server.serve_forever()


if __name__ == "__main__":
    main()
