"""WebSocket peers for the proxy and mesh tests: an aiohttp echo server and an RFC 8441
client on a bare h2 connection (no WebSocket library speaks HTTP/2).

    python websocket_peers.py NAME PORT [FAILURE_RATE]

runs the echo server as a mesh app (FAILURE_RATE is ignored): ``/plain`` and any
request without ``Upgrade`` answer 200, everything else is a WebSocket echo.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp
import h2.config
import h2.connection
import h2.events
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
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
