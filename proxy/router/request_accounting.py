"""Closing the books on one HTTP request, once, when the router is done with it.

Envoy's per-request stats (downstream completions by status class, upstream body bytes)
and access logs first; then, only when the environment turned them on, the X-Ray tracer
(which queues the request's segment) and App Mesh's metrics extension (which counts it
for its target). Kept apart from the router so the data path's state machine stays about
moving bytes, and so everything that observes a request sits in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config.access_log import AccessLogConfig
    from proxy.context import ProxyContext
    from proxy.observe.stats import StatsScope
    from proxy.stream_info import StreamInfo
    from proxy.upstream.cluster_manager import Cluster


def request_finished(
    ctx: ProxyContext,
    info: StreamInfo,
    http_stats: StatsScope,
    access_logs: tuple[AccessLogConfig, ...],
    cluster: Cluster | None,
) -> None:
    """Stats, access logs, tracing and metrics for a request that has just ended; the
    observers read only ``info``, never the router."""
    if cluster is not None and info.attempt_count:
        upstream = cluster.stats.counters
        upstream["upstream_cx_rx_bytes_total"] += info.bytes_sent
        upstream["upstream_cx_tx_bytes_total"] += info.bytes_received
    counters = http_stats.counters
    counters["downstream_rq_completed"] += 1
    if info.response_code:
        key = f"downstream_rq_{info.response_code // 100}xx"
        counters[key] = counters.get(key, 0) + 1
    if access_logs:
        ctx.access_logs.log(access_logs, info)
    if ctx.tracer is not None:
        ctx.tracer.finish(info)
    if ctx.metrics is not None:
        ctx.metrics.on_request(info)
