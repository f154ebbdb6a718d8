"""The runtime services every connection shares, in one object passed explicitly.

No module-level state: a ``ProxyServer`` owns one ``ProxyContext`` and hands it to the
listeners it opens, so several proxies can live in one process (the tests do this).
``config`` is replaced wholesale on each version; a request reads it once when it starts
and keeps that snapshot, so a swap never changes a request mid-flight.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

from proxy.config.compile import EMPTY_CONFIG, CompiledConfig
from proxy.observe.access_log import AccessLogSinks
from proxy.observe.stats import Stats
from proxy.timers import DateCache, TimerWheel
from proxy.upstream.cluster_manager import ClusterManager

if TYPE_CHECKING:
    from proxy.observe.metrics_extension import MetricsExtension
    from proxy.observe.tracing import Tracer


class ProxyContext:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        reuse_port: bool = False,
        outlier_event_log: str | None = None,
    ) -> None:
        self.loop = loop
        # Several worker processes share each listening port (SO_REUSEPORT), ENVOY_CONCURRENCY.
        self.reuse_port = reuse_port
        self.stats = Stats()
        self.timers = TimerWheel(loop)
        self.dates = DateCache()
        self.access_logs = AccessLogSinks(loop)
        events = self.access_logs.sink(outlier_event_log).write if outlier_event_log else None
        self.clusters = ClusterManager(self.stats, events)
        self.config: CompiledConfig = EMPTY_CONFIG
        self.connection_ids = itertools.count(1)
        # Open downstream connections (HTTP and TCP), for draining on stop.
        self.connections: set[Any] = set()
        # X-Ray tracing and App Mesh's metrics extension, when the environment asks.
        self.tracer: Tracer | None = None
        self.metrics: MetricsExtension | None = None
