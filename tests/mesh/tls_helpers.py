"""What the TLS mesh tests share: virtual nodes with a TLS listener, and Python ``ssl``
clients talking to a sidecar's port directly, as an app outside the mesh would.

Every client here opens a new connection (so a rotated certificate or a changed listener
is seen at once), sends one ``GET`` with ``Connection: close`` and reads to the close. A
connection closed without a reply counts as refused, like one that fails with an error:
TLS 1.3 reports a refused client certificate only after the client's side of the
handshake is done, so the client sees the close, not an alert, on its first read.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any


def node_spec(
    port: int,
    hostname: str,
    tls: dict | None = None,
    check: dict | None = None,
    protocol: str = "http",
) -> dict:
    """A virtual node with one listener (its ``tls`` and ``healthCheck`` when given)."""
    listener: dict = {"portMapping": {"port": port, "protocol": protocol}}
    if tls:
        listener["tls"] = tls
    if check:
        listener["healthCheck"] = check
    return {"listeners": [listener], "serviceDiscovery": {"dns": {"hostname": hostname}}}


def create_nodes(appmesh: Any, mesh: str, specs: Mapping[str, dict], host: Callable[[str], str]):
    """Each of ``specs`` as a virtual node, with the virtual service ``host(name)`` it provides."""
    for name, spec in specs.items():
        appmesh.create_virtual_node(meshName=mesh, virtualNodeName=name, spec=spec)
        appmesh.create_virtual_service(
            meshName=mesh,
            virtualServiceName=host(name),
            spec={"provider": {"virtualNode": {"virtualNodeName": name}}},
        )


def exchange(
    port: int, context: ssl.SSLContext | None, host: str, path: str = "/color"
) -> tuple[dict, bytes]:
    """One GET over a new connection, TLS with ``context``, else plaintext: the certificate
    the server presented (empty in plaintext) and the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        conn = context.wrap_socket(raw) if context else raw
        certificate = (conn.getpeercert() or {}) if isinstance(conn, ssl.SSLSocket) else {}
        return certificate, get_on(conn, host, path)


def get_on(conn: socket.socket, host: str, path: str = "/color") -> bytes:
    """Send one ``GET`` on an open connection and read until the server closes it."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    reply = b""
    while chunk := conn.recv(65536):
        reply += chunk
    return reply


def reply_or_nothing(port: int, context: ssl.SSLContext | None, host: str) -> bytes:
    """:func:`exchange`'s reply, or ``b""`` when the connection or handshake failed."""
    try:
        return exchange(port, context, host)[1]
    except (ssl.SSLError, ConnectionError):
        return b""


def refused(port: int, context: ssl.SSLContext | None, host: str) -> bool:
    """Closed without a reply or failed: what a listener that refuses the client does."""
    return reply_or_nothing(port, context, host) == b""


def peer(port: int, context: ssl.SSLContext) -> dict:
    """The certificate a sidecar's port presents to a new TLS connection."""
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as conn:
        return conn.getpeercert() or {}


def subject(certificate: dict) -> dict[str, str]:
    """A peer certificate's subject as ``{"commonName": ..., ...}``."""
    return dict(pair[0] for pair in certificate["subject"])


def san(certificate: dict, kind: str) -> str:
    """A peer certificate's subject alternative name of ``kind`` (``DNS``, ``URI``; the last
    of that kind when it has several)."""
    return dict(certificate.get("subjectAltName", ())).get(kind, "")
