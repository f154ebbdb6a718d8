"""Stand-ins for howto-grpc's two Go programs (``color_server``, ``color_client``).

    python color_grpc.py server     # env COLOR, PORT: color.ColorService + grpc.health.v1
    python color_grpc.py client     # env COLOR_HOST, PORT: HTTP/1.1 front end of the above

They behave as the walkthrough's ``main.go`` files do, read the same environment
variables (the task definitions of its ``app.yaml`` set them) and speak the same
messages (``color.proto``), encoded by hand here so that no generated code is needed:
``/getColor``, ``/setColor`` (POST body a colour), ``/getFlakiness`` and
``/setFlakiness?code=C&rate=R`` on the client call the methods of the same names, an
``UNIMPLEMENTED`` status is a 404 and any other error a 500, as in the Go client.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

COLORS = ["NO_COLOR", "RED", "BLUE", "GREEN", "YELLOW", "ORANGE", "PURPLE", "PINK", "BLACK",
          "WHITE"]  # fmt: skip
SERVICE = "color.ColorService"


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(message: bytes) -> dict[int, object]:
    """The last value of each field of a protobuf message (varint, fixed32, bytes)."""
    found: dict[int, object] = {}
    at = 0
    while at < len(message):
        key, at = read_varint(message, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            found[number], at = read_varint(message, at)
        elif kind == 5:
            found[number], at = message[at : at + 4], at + 4
        elif kind == 2:
            size, at = read_varint(message, at)
            found[number], at = message[at : at + size], at + size
        else:
            raise ValueError(f"wire type {kind} is not used by color.proto")
    return found


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value, at, shift = value | (byte & 0x7F) << shift, at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def color_message(color: int) -> bytes:
    """GetColorResponse / SetColorRequest / SetColorResponse: ``Color color = 1``."""
    return b"\x08" + varint(color) if color else b""


def flakiness_message(rate: float, code: int) -> bytes:
    """``Flakiness { float rate = 1; int32 code = 2; }``, wrapped as field 1."""
    inner = (b"\x0d" + struct.pack("<f", rate) if rate else b"") + (
        b"\x10" + varint(code) if code else b""
    )
    return b"\x0a" + varint(len(inner)) + inner


def read_flakiness(message: bytes) -> tuple[float, int]:
    inner = fields(fields(message).get(1, b""))  # type: ignore[arg-type]
    rate = struct.unpack("<f", inner[1])[0] if 1 in inner else 0.0  # type: ignore[arg-type]
    return rate, int(inner.get(2, 0))  # type: ignore[call-overload]


class ColorServer:
    def __init__(self, color: str) -> None:
        self.color = COLORS.index(color.upper()) if color.upper() in COLORS else 0
        self.rate, self.code = 0.0, 0

    def get_color(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if random.random() < self.rate:
            code = next(c for c in grpc.StatusCode if c.value[0] == self.code)
            context.abort(code, code.name)
        return color_message(self.color)

    def set_color(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        old, self.color = self.color, int(fields(request).get(1, 0))  # type: ignore[call-overload]
        return color_message(old)

    def get_flakiness(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return flakiness_message(self.rate, self.code)

    def set_flakiness(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        old = flakiness_message(self.rate, self.code)
        self.rate, self.code = read_flakiness(request)
        return old

    def check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def serve() -> None:
    colors = ColorServer(os.environ["COLOR"])
    unary = grpc.unary_unary_rpc_method_handler
    methods = {
        "GetColor": colors.get_color,
        "SetColor": colors.set_color,
        "GetFlakiness": colors.get_flakiness,
        "SetFlakiness": colors.set_flakiness,
    }
    health = {"Check": unary(colors.check)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {k: unary(v) for k, v in methods.items()}
            ),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", health),
        )
    )
    server.add_insecure_port(f"0.0.0.0:{os.environ['PORT']}")
    server.start()
    print(f"color_server {os.environ['COLOR']!r} on {os.environ['PORT']}", flush=True)
    server.wait_for_termination()


def color_name(message: bytes) -> str:
    return COLORS[int(fields(message).get(1, 0))].lower()  # type: ignore[call-overload]


def flakiness_text(message: bytes) -> str:
    """Go's ``String()`` of GetFlakinessResponse / SetFlakinessResponse."""
    rate, code = read_flakiness(message)
    parts = ([f"rate:{rate:g}"] if rate else []) + ([f"code:{code}"] if code else [])
    return f"flakiness:<{' '.join(parts)}{' ' if parts else ''}>"


def front_end(channel: grpc.Channel) -> type[BaseHTTPRequestHandler]:
    def call(method: str, request: bytes) -> bytes:
        reply: bytes = channel.unary_unary(f"/{SERVICE}/{method}")(request, timeout=10)
        return reply

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.route()

        def do_POST(self) -> None:
            self.route()

        def route(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                text = self.answer(url.path, urllib.parse.parse_qs(url.query), body)
            except grpc.RpcError as error:
                status = 404 if error.code() == grpc.StatusCode.UNIMPLEMENTED else 500
                name = "".join(p.title() for p in error.code().name.split("_"))
                self.reply(status, f"rpc error: code = {name} desc = {error.details() or ''}\n")
                return
            self.reply(200, text)

        def answer(self, path: str, query: dict, body: bytes) -> str:
            if path == "/getColor":
                return color_name(call("GetColor", b""))
            if path == "/setColor":
                color = body.decode().strip().upper()
                index = COLORS.index(color) if color in COLORS else 0
                return color_name(call("SetColor", color_message(index)))
            if path == "/getFlakiness":
                return flakiness_text(call("GetFlakiness", b""))
            if path == "/setFlakiness":
                rate, code = float(query["rate"][0]), int(query["code"][0])
                return flakiness_text(call("SetFlakiness", flakiness_message(rate, code)))
            return ""  # /ping

        def reply(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            print(format % args, flush=True)

    return Handler


def client() -> None:
    channel = grpc.insecure_channel(os.environ["COLOR_HOST"])  # one persistent connection
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), front_end(channel))
    print(f"color_client to {os.environ['COLOR_HOST']} on {os.environ['PORT']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve() if sys.argv[1] == "server" else client()
