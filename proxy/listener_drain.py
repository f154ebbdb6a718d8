"""Draining the connections of a filter chain that a listener update took away.

Envoy updates a listener whose filter chains alone changed in place: a chain whose
message is unchanged keeps its connections, and the connections of a chain that
changed or vanished are drained (a PERMISSIVE listener gone STRICT drains its plaintext
chain; a chain that starts requiring client certificates drains the connections made
without one). When anything else in the listener changed, every chain drains; so does
a removed listener. ``FilterChain.key`` says which chain is which across versions.

Draining is the codec's: HTTP/1.1 answers the next request with ``connection: close``
and closes after it (or at once when it was told to close idle connections: listener
removal, server stop), HTTP/2 sends GOAWAY and closes when its streams are done, and a
tcp_proxy connection carries on. After the drain time (Envoy's ``--drain-time-s``, App
Mesh's LISTENER_DRAIN_WAIT_TIME_S) what is still open is closed, as Envoy closes the
connections of the chains it drained when it destroys them. The drain starts at full
strength (Envoy's ``--drain-strategy immediate``): with Envoy's default gradual strategy
a connection may be served a while longer, never past the drain time.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from proxy.observe.stats import LISTENER_MANAGER_COUNTERS

if TYPE_CHECKING:
    from proxy.observe.stats import Stats


class ChainConnections:
    """The open connections of one filter chain (by key) of one listener.

    A connection that switches codec (HTTP/1.1 to HTTP/2) is ``adopt``-ed into its
    group, so it drains with it, even when the drain already began."""

    __slots__ = ("__weakref__", "connections", "draining")

    def __init__(self) -> None:
        # Weak: a closed connection simply disappears from the set.
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.draining = False

    def adopt(self, protocol: asyncio.Protocol) -> None:
        self.connections.add(protocol)
        if self.draining:
            protocol.drain(close_idle=False)  # type: ignore[attr-defined]


class _Drain:
    """One drain: the groups it covers, whether it is a whole listener's, its deadline."""

    __slots__ = ("groups", "timer", "whole_listener")

    def __init__(self, groups: list[ChainConnections], whole_listener: bool) -> None:
        self.groups = groups
        self.whole_listener = whole_listener
        self.timer: asyncio.TimerHandle | None = None


class ListenerDrains:
    """Drains in progress, their drain-time deadlines, and Envoy's listener manager
    gauges ``total_filter_chains_draining`` and ``total_listeners_draining``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats, drain_seconds: float) -> None:
        self.loop = loop
        self.drain_seconds = drain_seconds
        self.stats = stats.scope("listener_manager", "", LISTENER_MANAGER_COUNTERS)
        self._drains: set[_Drain] = set()
        self.stats.gauge_fn(
            "total_filter_chains_draining",
            lambda: sum(len(d.groups) for d in self._drains if not d.whole_listener),
        )
        self.stats.gauge_fn(
            "total_listeners_draining", lambda: sum(d.whole_listener for d in self._drains)
        )

    def start(self, groups: list[ChainConnections], whole_listener: bool, close_idle: bool) -> None:
        """Drain ``groups`` now; close what is left of them after the drain time."""
        for group in groups:
            group.draining = True
            for conn in list(group.connections):
                conn.drain(close_idle=close_idle)
        drain = _Drain(groups, whole_listener)
        drain.timer = self.loop.call_later(self.drain_seconds, self._expire, drain)
        self._drains.add(drain)

    def _expire(self, drain: _Drain) -> None:
        self._drains.discard(drain)
        for group in drain.groups:
            for conn in list(group.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()

    def close(self) -> None:
        """The server stopped (it closed every connection itself): forget the timers."""
        for drain in self._drains:
            if drain.timer is not None:
                drain.timer.cancel()
        self._drains.clear()
