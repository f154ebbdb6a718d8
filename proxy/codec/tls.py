"""Terminating TLS on a listener's filter chain.

The listener has already read a connection's first bytes (its TLS inspector decides
"tls" or "raw_buffer" from them, as Envoy's tls_inspector does from the ClientHello), so
``serve`` puts asyncio's own TLS protocol under the accepted socket and hands it those
bytes. When the handshake is done it checks what Envoy checks beyond OpenSSL's chain
verification (the subject alternative names) and counts Envoy's ``ssl.*`` stats in the
listener's scope (see ``proxy.upstream.tls`` for the names); only then does the filter
chain's HTTP or TCP protocol see the connection, through the TLS transport.
"""

from __future__ import annotations

import asyncio
from asyncio import sslproto
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config.tls import ServerTls, san_mismatch
from proxy.upstream.tls import count_session, failure_stat

if TYPE_CHECKING:
    from proxy.observe.stats import StatsScope

HANDSHAKE_TIMEOUT = 15  # Envoy's listener filter timeout bounds a stalled ClientHello too


class _ServerHandshake(asyncio.Protocol):
    """Stands in for the chain's protocol until the handshake and SAN checks pass."""

    def __init__(
        self, tls: ServerTls, stats: StatsScope, start: Callable[[], asyncio.Protocol]
    ) -> None:
        self.tls = tls
        self.stats = stats
        self.start = start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peercert = transport.get_extra_info("peercert") or {}
        if not peercert:
            self.stats.inc("ssl.no_certificate")
        elif san_mismatch(self.tls.sans, peercert):
            self.stats.inc("ssl.fail_verify_san")
            transport.close()  # a TLS transport: close sends close_notify, then goes
            return
        self.stats.inc("ssl.handshake")
        count_session(self.stats, transport)
        protocol = self.start()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def serve(
    transport: asyncio.Transport,
    first: bytes,
    tls: ServerTls,
    stats: StatsScope,
    start: Callable[[], asyncio.Protocol],
) -> None:
    """Terminate TLS on an accepted connection whose first bytes were already read;
    ``start`` builds the filter chain's protocol once the peer is accepted."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    waiter.add_done_callback(lambda done: _count_failure(stats, done))
    layer = sslproto.SSLProtocol(
        loop,
        _ServerHandshake(tls, stats, start),
        tls.context,
        waiter,
        server_side=True,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
    )
    transport.set_protocol(layer)
    layer.connection_made(transport)
    view = memoryview(first)
    while view and not transport.is_closing():
        buffer = layer.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        layer.buffer_updated(size)
        view = view[size:]


def _count_failure(stats: StatsScope, done: asyncio.Future[None]) -> None:
    if done.cancelled() or done.exception() is None:
        return
    stats.inc(failure_stat(done.exception() or Exception()))
