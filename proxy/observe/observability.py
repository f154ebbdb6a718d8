"""The sidecar's tracing and metrics, assembled from its bootstrap and run off the data path.

``Observability`` builds what ``ObservabilityConfig`` asks for: the X-Ray tracer, the
metrics extension, and the periodic sinks (CloudWatch, DogStatsD) flushed every
``stats_flush_interval``. The server publishes the tracer and the extension on the
``ProxyContext``, where the router finds them (``None`` when off, so a proxy without
them pays one attribute test per request). The admin endpoint reads the Prometheus and
``/stats`` renderings through it, with the bootstrap's ``stats_tags``: fixed tags on
every Envoy stat (``appmesh.mesh``, ``appmesh.virtual_node`` with
``ENABLE_ENVOY_STATS_TAGS``; ``Mesh``, ``VirtualNode`` with the extension) and the
image's regex tags (``appmesh.listener_protocol``, ``appmesh.listener_port``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from proxy.config.observability import OFF, ObservabilityConfig
from proxy.observe.cloudwatch import CloudWatchExporter
from proxy.observe.datagrams import DatagramSender
from proxy.observe.dogstatsd import DogStatsdExporter
from proxy.observe.metrics_extension import MetricsExtension
from proxy.observe.sampling import Sampler
from proxy.observe.tracing import Tracer

if TYPE_CHECKING:
    from proxy.observe.stats import Stats

log = logging.getLogger("appmesh_proxy.observability")


class Observability:
    """Tracer, metrics extension and sinks of one proxy, and their periodic flush."""

    def __init__(
        self,
        config: ObservabilityConfig | None,
        loop: asyncio.AbstractEventLoop,
        stats: Stats,
        connections: set[Any],
    ) -> None:
        self.config = config = config or OFF
        self.loop, self.stats = loop, stats
        self.tags = config.metrics.tags
        self.tracer: Tracer | None = None
        self.metrics: MetricsExtension | None = None
        self.cloudwatch: CloudWatchExporter | None = None
        self.dogstatsd: DogStatsdExporter | None = None
        self._timer: asyncio.TimerHandle | None = None
        if config.tracing is not None:
            tracing = config.tracing
            sampler = Sampler.from_config(tracing)
            sender = DatagramSender(loop, tracing.daemon)
            self.tracer = Tracer(loop, tracing, config.identity, sampler, sender)
        metrics = config.metrics
        if metrics.extension and config.identity is not None:
            self.metrics = MetricsExtension(config.identity, stats, connections)
            if metrics.cloudwatch is not None:
                self.cloudwatch = CloudWatchExporter(metrics.cloudwatch)
        if metrics.dogstatsd is not None:
            sender = DatagramSender(loop, metrics.dogstatsd)
            self.dogstatsd = DogStatsdExporter(sender, stats, self.tags)

    def start(self) -> None:
        """Arm the periodic flush when a sink wants one."""
        if self.cloudwatch is not None or self.dogstatsd is not None:
            self._arm()

    def _arm(self) -> None:
        self._timer = self.loop.call_later(self.config.metrics.flush_interval, self._tick)

    def _tick(self) -> None:
        self._arm()
        self.flush()

    def flush(self) -> None:
        """One stats flush: collect once, hand the same points to every sink."""
        points = self.metrics.collect() if self.metrics is not None else []
        try:
            if self.cloudwatch is not None:
                self.cloudwatch.export(points)
            if self.dogstatsd is not None:
                self.dogstatsd.export(points)
        except Exception:  # a sink's bug must not stop the flushes or touch traffic
            log.exception("stats flush failed")

    async def stop(self) -> None:
        """A last flush (what the final requests did is not lost), then close the sinks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.flush()
        if self.tracer is not None:
            self.tracer.close()
        if self.dogstatsd is not None:
            self.dogstatsd.close()
        if self.cloudwatch is not None:
            with contextlib.suppress(Exception):
                await self.cloudwatch.close()

    # -- admin readings -----------------------------------------------------------------------
    def render_prometheus(self) -> str:
        text = self.stats.render_prometheus(self.tags)
        if self.metrics is not None:
            text += self.metrics.render_prometheus()
        return text

    def stat_rows(self) -> Iterator[tuple[str, float]]:
        """The extension's raw stats, for ``/stats`` next to Envoy's."""
        if self.metrics is not None:
            yield from self.metrics.rows()
