"""Circuit breakers: one cluster's counted resources and their limits, as Envoy's.

Envoy's ``ResourceManager`` holds, per cluster and priority, four ``ResourceLimit``s:
connections, pending requests, requests and retries. Whoever takes one asks
``can_create()``, then ``inc()``s it and ``dec()``s it when done; the ``open`` state is
what ``circuit_breakers.default.*_open`` gauges report. The counts live here and only
here, so the host pools, the router, attempts and ``tcp_proxy`` cannot drift apart,
and a config version that changes ``circuit_breakers.thresholds`` moves the limits
under the counts in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config.cluster import Thresholds


class ResourceLimit:
    """One counted resource (Envoy's ``ResourceLimit``)."""

    __slots__ = ("count", "max")

    def __init__(self, maximum: int) -> None:
        self.count = 0
        self.max = maximum

    def can_create(self) -> bool:
        return self.count < self.max

    def inc(self) -> None:
        self.count += 1

    def dec(self) -> None:
        self.count -= 1

    @property
    def open(self) -> bool:
        """The breaker is open: the next one would be refused."""
        return self.count >= self.max


class ResourceManager:
    """The DEFAULT priority's breakers of one cluster."""

    __slots__ = ("connections", "pending_requests", "requests", "retries")

    def __init__(self, thresholds: Thresholds) -> None:
        self.connections = ResourceLimit(thresholds.max_connections)
        self.pending_requests = ResourceLimit(thresholds.max_pending_requests)
        self.requests = ResourceLimit(thresholds.max_requests)
        self.retries = ResourceLimit(thresholds.max_retries)

    def update(self, thresholds: Thresholds) -> None:
        """New limits from a new config version; what is in flight stays counted."""
        self.connections.max = thresholds.max_connections
        self.pending_requests.max = thresholds.max_pending_requests
        self.requests.max = thresholds.max_requests
        self.retries.max = thresholds.max_retries
