"""Recover where an intercepted connection was going (iptables REDIRECT).

After a nat REDIRECT the accepted socket's local address is the proxy's port;
the kernel keeps the original destination, readable with ``SO_ORIGINAL_DST``
(IPv4) or ``IP6T_SO_ORIGINAL_DST`` (IPv6), both option number 80.
"""

from __future__ import annotations

import socket
import struct

SO_ORIGINAL_DST = 80
SOL_IPV6 = 41


def original_destination(sock: socket.socket) -> tuple[str, int] | None:
    """``(address, port)`` the client dialled, or None when the connection was not redirected."""
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
            port = struct.unpack_from("!H", raw, 2)[0]
            address = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        else:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port = struct.unpack_from("!H", raw, 2)[0]
            address = socket.inet_ntoa(raw[4:8])
    except OSError:
        return None
    local = sock.getsockname()[:2]
    return None if (address, port) == tuple(local) else (address, port)
