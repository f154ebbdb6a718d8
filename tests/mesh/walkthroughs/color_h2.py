"""Stand-ins for howto-http2's two Go programs (``color_server``, ``color_client``).

    python color_h2.py server     # env COLOR, PORT: HTTP/2 with prior knowledge (h2c)
    python color_h2.py client     # env COLOR_HOST, PORT: HTTP/1.1 front end, h2c behind

As the walkthrough's ``main.go`` files: the server answers ``/`` with COLOR (or, a
``rate`` of the time, the ``code`` set by ``/setFlake?code=C&rate=R``, which answers
the previous ``rate: R, code: C``) and ``/ping`` with nothing; the client answers
``/color`` and ``/setFlake`` by asking ``http://COLOR_HOST`` over one h2c connection,
as Go's ``http2.Transport`` with ``AllowHTTP`` does. The Go server's h2c handler also
took HTTP/1.1; this one speaks HTTP/2 only, which is all its sidecar sends it.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class Colors:
    def __init__(self, color: str) -> None:
        self.color, self.rate, self.code = color, 0.0, 200

    def answer(self, path: str) -> tuple[int, str]:
        url = urllib.parse.urlsplit(path)
        if url.path == "/ping":
            return 200, ""
        if url.path == "/setFlake":
            query = urllib.parse.parse_qs(url.query)
            old = f"rate: {self.rate:g}, code: {self.code}"
            self.rate, self.code = float(query["rate"][0]), int(query["code"][0])
            return 200, old
        if random.random() < self.rate:
            return self.code, "flaky server\n"
        return 200, self.color


async def serve_connection(
    colors: Colors, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    paths: dict[int, str] = {}
    while data := await reader.read(65536):
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                paths[event.stream_id] = dict(event.headers).get(b":path", b"/").decode()
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in paths:
                status, text = colors.answer(paths.pop(event.stream_id))
                body = text.encode()
                headers = [(":status", str(status)), ("content-length", str(len(body))),
                           ("content-type", "text/plain; charset=utf-8")]  # fmt: skip
                conn.send_headers(event.stream_id, headers, end_stream=not body)
                if body:
                    conn.send_data(event.stream_id, body, end_stream=True)
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        writer.write(conn.data_to_send())
        await writer.drain()
    writer.close()


async def serve() -> None:
    colors = Colors(os.environ["COLOR"])
    server = await asyncio.start_server(
        lambda r, w: serve_connection(colors, r, w), "0.0.0.0", int(os.environ["PORT"])
    )
    print(f"color_server {colors.color} on {os.environ['PORT']} (h2c)", flush=True)
    await server.serve_forever()


class H2Client:
    """One h2c connection to ``host:port``, one request at a time, re-opened when lost."""

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.conn: h2.connection.H2Connection | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        with self.lock:
            try:
                return self._get(path)
            except (OSError, h2.exceptions.ProtocolError):
                self._close()
                return self._get(path)  # a fresh connection, once

    def _open(self) -> tuple[socket.socket, h2.connection.H2Connection]:
        if self.sock is None or self.conn is None:
            host, _, port = self.authority.rpartition(":")
            self.sock = socket.create_connection((host, int(port or 80)), timeout=10)
            self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            self.conn.initiate_connection()
            self.sock.sendall(self.conn.data_to_send())
        return self.sock, self.conn

    def _get(self, path: str) -> tuple[int, bytes]:
        sock, conn = self._open()
        stream = conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", self.authority),
                   (":path", path)]  # fmt: skip
        conn.send_headers(stream, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = 0, b""
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the connection closed")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise ConnectionError(f"stream reset: {event.error_code}")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    sock.sendall(conn.data_to_send())
                    return status, body
            sock.sendall(conn.data_to_send())

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.conn = None


def front_end(upstream: H2Client) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path == "/ping":
                return self.reply(200, b"")
            try:
                status, body = upstream.get("/" if path == "/color" else self.path)
            except OSError as error:
                return self.reply(500, f"{error}\n".encode())
            self.reply(200 if path == "/color" else status, body)

        def do_POST(self) -> None:
            self.do_GET()

        def reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print(format % args, flush=True)

    return Handler


def client() -> None:
    upstream = H2Client(os.environ["COLOR_HOST"])
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), front_end(upstream))
    print(f"color_client to {upstream.authority} on {os.environ['PORT']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve()) if sys.argv[1] == "server" else client()
