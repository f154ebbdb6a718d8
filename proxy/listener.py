"""Bound listeners: accept connections and hand each to its filter chain's protocol.

A listener with one unconditional filter chain (the usual case) builds the chain's
protocol directly in the accept callback. Otherwise a tiny selector protocol looks at
the connection's addresses, picks the filter chain as Envoy would, and swaps itself out
with ``transport.set_protocol``.

A listener whose chains terminate TLS or match on ``transport_protocol`` waits for a
connection's first bytes instead (``_TlsInspector``): with the tls_inspector listener
filter, a TLS handshake record (0x16) makes the connection "tls" and anything else
"raw_buffer", as Envoy's inspector decides from the ClientHello; that picks the chain
(STRICT has only a TLS chain, so plaintext finds none and is closed; PERMISSIVE has
both), and a chain with a TLS context gets the bytes through ``proxy.codec.tls``.
Like Envoy's listener filter timeout (15 s), a client that sends nothing is closed.

A listener with the original_dst listener filter (App Mesh's ingress and egress
listeners, behind iptables) always goes through the selector: it asks the kernel where
the connection was going (``SO_ORIGINAL_DST``), matches filter chains on that address,
and hands it to the chain's protocol for ORIGINAL_DST clusters and access logs. Only
such listeners pay for the extra ``getsockopt``.

A listener's config can change without rebinding and without dropping connections:
new connections get the new filter chains at once, and open HTTP connections switch to
their chain's new settings at their next request (an in-flight request finishes under
the version it started with). Only a removed or moved listener drains its connections.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from typing import TYPE_CHECKING, Any

from proxy.codec import tls
from proxy.codec.http1 import Http1Connection
from proxy.codec.tcp import TcpProxyConnection
from proxy.interception.original_dst import original_destination
from proxy.observe.stats import LISTENER_COUNTERS, SSL_COUNTERS

LISTENER_FILTER_TIMEOUT = 15.0
TLS_HANDSHAKE_RECORD = b"\x16"

if TYPE_CHECKING:
    from proxy.config.compile import FilterChain, HttpConnectionManagerConfig, ListenerConfig
    from proxy.context import ProxyContext
    from proxy.observe.stats import StatsScope


class _Reject(asyncio.Protocol):
    """No filter chain matched: Envoy closes the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _TlsInspector(asyncio.Protocol):
    """Holds a new connection until its first bytes say TLS or plaintext."""

    def __init__(self, listener: ListenerHandle, config: ListenerConfig) -> None:
        self.listener = listener
        self.config = config
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        loop = self.listener.ctx.loop
        self.timer = loop.call_later(LISTENER_FILTER_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
        transport, config = self.transport, self.config
        is_tls = config.tls_inspector and data[:1] == TLS_HANDSHAKE_RECORD
        local = transport.get_extra_info("sockname") or ("", 0)
        remote = transport.get_extra_info("peername") or ("", 0)
        original = _original_destination(transport) if config.original_dst else None
        chain = config.select_chain(
            original or tuple(local[:2]), tuple(remote[:2]), "tls" if is_tls else "raw_buffer"
        )
        self.listener.start(transport, chain, original, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class _ChainSelector(asyncio.Protocol):
    def __init__(self, listener: ListenerHandle, config: ListenerConfig) -> None:
        self.listener = listener
        self.config = config

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        local = transport.get_extra_info("sockname") or ("", 0)
        remote = transport.get_extra_info("peername") or ("", 0)
        original = _original_destination(transport) if self.config.original_dst else None
        chain = self.config.select_chain(original or tuple(local[:2]), tuple(remote[:2]))
        protocol = self.listener.protocol_for(chain, original)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def _original_destination(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    """The pre-REDIRECT destination, or None when the connection came straight here."""
    sock = transport.get_extra_info("socket")
    return None if sock is None else original_destination(sock)


class ListenerHandle:
    """One listener's socket, its current config and the connections it accepted."""

    def __init__(self, ctx: ProxyContext, config: ListenerConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.stats = self._scope(config.address)
        self.server: asyncio.AbstractServer | None = None
        self.bound: tuple[str, int] = config.address
        # Weak: a closed connection simply disappears from the set.
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.generation = 0  # bumped when the config changes; connections compare it
        self._show_ssl_stats(config)

    async def open(self) -> None:
        """Bind and listen; raises ``OSError`` when the address is taken."""
        host, port = self.config.address
        self.server = await self.ctx.loop.create_server(
            self._accept,
            host,
            port,
            reuse_address=True,
            reuse_port=self.ctx.reuse_port or None,
            backlog=1024,
            family=_family(host),
        )
        sockname = self.server.sockets[0].getsockname()
        self.bound = (sockname[0], sockname[1])
        if port == 0:  # an ephemeral port: name the stats after the real one
            self.stats = self._scope(self.bound)
            self._show_ssl_stats(self.config)

    def _scope(self, address: tuple[str, int]) -> StatsScope:
        """Envoy's ``listener.<address>_<port>.`` stats scope."""
        return self.ctx.stats.scope("listener", f"{address[0]}_{address[1]}", LISTENER_COUNTERS)

    def update(self, config: ListenerConfig) -> None:
        """Swap in a new version of this listener; open connections follow lazily."""
        if config.raw != self.config.raw:
            self.generation += 1
        self.config = config
        self._show_ssl_stats(config)

    def _show_ssl_stats(self, config: ListenerConfig) -> None:
        """Envoy lists a TLS listener's ``ssl.*`` counters from the start, zeros included."""
        if any(c is not None and c.tls for c in (*config.filter_chains, config.default_chain)):
            for name in SSL_COUNTERS:
                self.stats.counters.setdefault(name, 0)

    def http_config(self, chain_name: str) -> HttpConnectionManagerConfig | None:
        """The current HCM settings of the chain named ``chain_name``, if it still exists."""
        config = self.config
        for chain in (*config.filter_chains, config.default_chain):
            if chain is not None and chain.name == chain_name:
                return chain.http
        return None

    def adopt(self, protocol: asyncio.Protocol) -> None:
        """A connection switched codec (HTTP/1.1 → HTTP/2): drain it with the others."""
        self.connections.add(protocol)

    def close(self) -> None:
        """Stop accepting; accepted connections drain."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.drain()

    def _accept(self) -> asyncio.Protocol:
        config = self.config
        self.stats.counters["downstream_cx_total"] += 1
        if config.inspects:
            return _TlsInspector(self, config)
        chain = config.single_chain
        if chain is not None and not config.original_dst:
            return self.protocol_for(chain)
        return _ChainSelector(self, config)

    def start(
        self,
        transport: asyncio.Transport,
        chain: FilterChain | None,
        original_dst: tuple[str, int] | None,
        first: bytes,
    ) -> None:
        """Hand an inspected connection and the bytes already read to its chain."""
        if chain is not None and chain.tls is not None:
            tls.serve(
                transport,
                first,
                chain.tls,
                self.stats,
                lambda: self.protocol_for(chain, original_dst),
            )
            return
        protocol = self.protocol_for(chain, original_dst)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if not transport.is_closing():
            protocol.data_received(first)

    def protocol_for(
        self, chain: FilterChain | None, original_dst: tuple[str, int] | None = None
    ) -> asyncio.Protocol:
        """The chain's protocol for one connection (``original_dst``: see the module doc)."""
        protocol: asyncio.Protocol
        if chain is None:
            self.stats.counters["no_filter_chain_match"] += 1
            return _Reject()
        if chain.http is not None and chain.http.codec_type == "HTTP2":
            from proxy.codec.http2 import Http2Connection  # h2 loads with the first one

            protocol = Http2Connection(self.ctx, chain.http, original_dst)
        elif chain.http is not None:
            protocol = Http1Connection(self.ctx, chain.http, self, chain.name, original_dst)
        elif chain.tcp is not None:
            protocol = TcpProxyConnection(self.ctx, chain.tcp, original_dst)
        else:
            return _Reject()
        self.connections.add(protocol)
        return protocol


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
