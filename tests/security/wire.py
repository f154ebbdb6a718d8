"""Raw HTTP over a socket, for requests no well-behaved client would send."""

from __future__ import annotations

import contextlib
import http.client
import socket
from dataclasses import dataclass


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes


def send_raw(port: int, head: bytes, body: bytes = b"", timeout: float = 10.0) -> RawReply:
    """Send ``head`` (and ``body``) as they are, then read one HTTP response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer and close before the rest arrives.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        return read_reply(sock)


def read_reply(sock: socket.socket) -> RawReply:
    response = http.client.HTTPResponse(sock)
    response.begin()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return RawReply(response.status, headers, response.read())


def request_head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")
