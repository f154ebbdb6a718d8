"""The HTTP server under ``serve``: uvicorn, stopping the way a control plane should.

uvicorn waits for open requests before it runs the app's shutdown. A proxy's xDS
long-poll would hold that wait for up to 30 s and then be cancelled, with one traceback
per poll. ``StoppingServer`` first runs ``on_stop`` (closing the change feed, which
answers every long-poll at once) and only then lets uvicorn drain, so a stop takes
well under a second and prints nothing alarming. ``BoundedHeadProtocol`` bounds the
request head, which uvicorn's httptools protocol buffers without limit, and writes a
response's head and body in one send (``CorkedTransport``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appmesh_api.frontdoor.limits import HEAD_LIMIT


class StoppingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: hand the work to the loop rather than touch asyncio state here.
        asyncio.get_event_loop().call_soon_threadsafe(self._on_stop)
        super().handle_exit(sig, frame)


class CorkedTransport:
    """A transport that joins the writes made in one step of the event loop.

    uvicorn writes a response's head when the application starts the response and its
    body when it sends it: two sends, two TCP segments, two wake-ups of the client, for
    every one of the thousand long-polls a push answers. Here a write is held until a
    second write in the same step joins it, or until the loop runs its next callbacks
    (a head whose body comes later is not kept waiting for it); closing writes first.
    Everything else is the real transport's.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            asyncio.get_running_loop().call_soon(self.flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()  # an upgrade (websockets): the new protocol writes on its own
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request line plus headers.

    httptools hands over a head in pieces and uvicorn keeps them all, so without a bound
    one request can make the server hold a header of any size. Past ``HEAD_LIMIT`` the
    parse is stopped and the client gets ``431 Request Header Fields Too Large``.
    """

    head_limit = HEAD_LIMIT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport))  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._head_too_large = False
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.head_limit:
            self._head_too_large = True
            raise ValueError("request head over the limit")  # httptools stops parsing

    def send_400_response(self, msg: str) -> None:
        if not getattr(self, "_head_too_large", False):
            super().send_400_response(msg)
            return
        text = f"The request line and headers are over {self.head_limit} bytes.".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
        )
        self.transport.close()
