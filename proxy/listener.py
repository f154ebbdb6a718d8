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

A listener's config can change without rebinding: new connections get the new filter
chains at once; open connections of a chain the update kept go on untouched, and those
of a chain it changed or removed drain (``proxy.listener_drain``), as Envoy's in-place
filter chain update does. A connection still being inspected picks its chain from the
current config; one whose TLS handshake outlived its chain is closed when it completes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from proxy.codec import tls
from proxy.codec.http1 import Http1Connection
from proxy.codec.tcp import TcpProxyConnection
from proxy.config.compile import listener_frame
from proxy.interception.original_dst import original_destination
from proxy.listener_drain import ChainConnections, ListenerDrains
from proxy.observe.stats import LISTENER_COUNTERS, SSL_COUNTERS

LISTENER_FILTER_TIMEOUT = 15.0
TLS_HANDSHAKE_RECORD = b"\x16"

if TYPE_CHECKING:
    from proxy.config.compile import FilterChain, ListenerConfig
    from proxy.context import ProxyContext
    from proxy.observe.stats import StatsScope


class _Reject(asyncio.Protocol):
    """No filter chain matched: Envoy closes the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _TlsInspector(asyncio.Protocol):
    """Holds a new connection until its first bytes say TLS or plaintext."""

    def __init__(self, listener: ListenerHandle) -> None:
        self.listener = listener
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
        transport, config = self.transport, self.listener.config  # current: it may have changed
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
    """One listener's socket, its current config and the connections it accepted, by
    filter chain."""

    def __init__(self, ctx: ProxyContext, config: ListenerConfig, drains: ListenerDrains) -> None:
        self.ctx = ctx
        self.config = config
        self.drains = drains
        self.stats = self._scope(config.address)
        self.server: asyncio.AbstractServer | None = None
        self.bound: tuple[str, int] = config.address
        # FilterChain.key -> its open connections; a chain gone from here is draining.
        self.chains = {c.key: ChainConnections() for c in _chains(config)}
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
        """Swap in a new version of this listener: the connections of chains it keeps go
        on, those of chains it changed or removed drain (all of them when more than the
        chains changed). The same resource compiled again (new SDS secrets) drains none."""
        old, self.config = self.config, config
        self._show_ssl_stats(config)
        if config.raw == old.raw:
            return
        kept = {c.key: self.chains.get(c.key) or ChainConnections() for c in _chains(config)}
        gone = [group for key, group in self.chains.items() if key not in kept]
        self.chains = kept
        counters = self.drains.stats.counters
        counters["listener_modified"] += 1
        in_place = listener_frame(old.raw) == listener_frame(config.raw)
        if in_place:
            counters["listener_in_place_updated"] += 1
        if gone:
            self.drains.start(gone, whole_listener=not in_place, close_idle=False)

    def _show_ssl_stats(self, config: ListenerConfig) -> None:
        """Envoy lists a TLS listener's ``ssl.*`` counters from the start, zeros included."""
        if any(c.tls for c in _chains(config)):
            for name in SSL_COUNTERS:
                self.stats.counters.setdefault(name, 0)

    def close(self) -> None:
        """Stop accepting; accepted connections drain, idle ones close now."""
        if self.server is not None:
            self.server.close()
            self.server = None
        groups, self.chains = list(self.chains.values()), {}
        self.drains.start(groups, whole_listener=True, close_idle=True)

    def _accept(self) -> asyncio.Protocol:
        config = self.config
        self.stats.counters["downstream_cx_total"] += 1
        if config.inspects:
            return _TlsInspector(self)
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
        """The chain's protocol for one connection (``original_dst``: see the module doc);
        a chain no longer current (an update came during the TLS handshake) gets none."""
        protocol: asyncio.Protocol
        if chain is None:
            self.stats.counters["no_filter_chain_match"] += 1
            return _Reject()
        group = self.chains.get(chain.key)
        if group is None:
            return _Reject()
        if chain.http is not None and chain.http.codec_type == "HTTP2":
            from proxy.codec.http2 import Http2Connection  # h2 loads with the first one

            protocol = Http2Connection(self.ctx, chain.http, original_dst)
        elif chain.http is not None:
            protocol = Http1Connection(self.ctx, chain.http, group, original_dst)
        elif chain.tcp is not None:
            protocol = TcpProxyConnection(self.ctx, chain.tcp, original_dst)
        else:
            return _Reject()
        group.connections.add(protocol)
        return protocol


def _chains(config: ListenerConfig) -> Iterator[FilterChain]:
    """A listener's filter chains, its default chain included."""
    yield from config.filter_chains
    if config.default_chain is not None:
        yield config.default_chain


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
