"""An upstream host and its connection pool, as the cluster's balancer hands them out.

A ``Host`` carries its health flags, outlier state and per-host counters; its
``HostPool`` keeps idle keep-alive connections (reused newest-first, so the ones the
upstream most likely closed age out through the idle sweep) and the requests waiting
for one. The pool applies the cluster's breakers the way Envoy's HTTP/1 pool does: a
request that finds no idle connection is *pending* (``pending_requests``, overflow →
``upstream_rq_pending_overflow``), and a connection is opened for it unless
``connections`` is full (→ ``upstream_cx_overflow``; it waits for one to free up). Both
reach their cluster through ``ClusterView``, the few things health checks, outlier
detection and pools need from it, so the cluster manager above can own them all without
an import circle.

For an HTTP/2 cluster the pool is Envoy's HTTP/2 pool instead: one multiplexed
connection per host (a second only when the first is out of streams or going away),
each request a stream on it; ``pending_requests`` still bounds the requests waiting
for the connection to come up.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from proxy.config.retry import CONNECT_FAILURE
from proxy.upstream import tls
from proxy.upstream.http1 import HeadLimits, UpstreamConnection, UpstreamStream

if TYPE_CHECKING:
    from proxy.config.cluster import ClusterConfig, Endpoint
    from proxy.observe.stats import StatsScope
    from proxy.upstream.http2 import Http2UpstreamConnection
    from proxy.upstream.resource_manager import ResourceManager


class ClusterView(Protocol):
    """What a host, its pool, its health checker and its outlier detector see of the cluster."""

    name: str
    config: ClusterConfig
    stats: StatsScope
    hosts: dict[str, Host]
    resources: ResourceManager

    def refresh(self) -> None:
        """Recompute host candidates after a health or membership change."""

    def on_connection_freed(self) -> None:
        """A connection slot freed up somewhere in the cluster."""


class Host:
    """One upstream endpoint with its pool, health flags and outlier state."""

    __slots__ = (
        "consecutive_5xx",
        "consecutive_gateway",
        "cx_active",
        "cx_connect_fail",
        "cx_total",
        "eds_healthy",
        "ejected",
        "ejected_at",
        "ejection_count",
        "endpoint",
        "hc_failed",
        "hc_initial",
        "hc_streak",
        "host",
        "key",
        "pool",
        "port",
        "rq_active",
        "rq_error",
        "rq_success",
        "rq_total",
        "used",
    )

    def __init__(self, endpoint: Endpoint, cluster: ClusterView, hc_pending: bool) -> None:
        self.endpoint = endpoint
        self.host = endpoint.host
        self.port = endpoint.port
        self.key = endpoint.key
        self.eds_healthy = endpoint.healthy
        # Envoy: with active health checking a new host is unhealthy until its first pass.
        self.hc_failed = hc_pending
        self.hc_initial = hc_pending  # one pass suffices before the first verdict
        self.hc_streak = 0  # >0 consecutive passes, <0 consecutive failures
        self.ejected = False
        self.ejected_at = 0.0
        self.ejection_count = 0
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.pool = HostPool(self, cluster)
        self.cx_active = self.cx_total = self.cx_connect_fail = 0
        self.rq_active = self.rq_total = self.rq_success = self.rq_error = 0
        self.used = True  # ORIGINAL_DST: picked since the last cleanup

    @property
    def healthy(self) -> bool:
        return self.eds_healthy and not self.hc_failed and not self.ejected

    @property
    def health_flags(self) -> str:
        """Envoy's ``/clusters`` health_flags text."""
        flags = []
        if self.hc_failed:
            flags.append("/failed_active_hc")
        if self.ejected:
            flags.append("/failed_outlier_check")
        if not self.eds_healthy:
            flags.append("/failed_eds_health")
        return "".join(flags) or "healthy"


def _connect_detail(exc: BaseException) -> str:
    """Envoy's transport failure reason wording, as far as a socket error tells it."""
    if isinstance(exc, TimeoutError):
        return "connect timeout"
    if isinstance(exc, ssl.SSLError):
        return tls.failure_detail(exc)
    code = getattr(exc, "errno", None)
    return f"delayed connect error: {code}" if code else (str(exc) or type(exc).__name__)


class HostPool:
    """Idle keep-alive connections and pending requests for one upstream host."""

    __slots__ = ("_tasks", "closing", "cluster", "connecting", "host", "idle", "multiplexed",
                 "waiters")  # fmt: skip

    def __init__(self, host: Host, cluster: ClusterView) -> None:
        self.host = host
        self.cluster = cluster
        self.idle: list[UpstreamConnection] = []
        self.multiplexed: list[Http2UpstreamConnection] = []  # HTTP/2 clusters only
        self.waiters: deque[UpstreamStream] = deque()
        self.connecting = 0
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    def acquire(self, stream: UpstreamStream) -> bool:
        """Hand ``stream`` a connection now or later; ``False`` means pending overflow."""
        for shared in self.multiplexed:
            if shared.has_capacity():
                stream.on_pool_ready(shared.open_stream())
                return True
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                stream.on_pool_ready(conn)
                return True
        cluster = self.cluster
        pending = cluster.resources.pending_requests
        if not pending.can_create():
            cluster.stats.counters["upstream_rq_pending_overflow"] += 1
            return False
        pending.inc()
        cluster.stats.counters["upstream_rq_pending_total"] += 1
        self.waiters.append(stream)
        self.maybe_connect()
        return True

    def cancel(self, stream: UpstreamStream) -> None:
        """Forget a pending request (timeout, downstream gone)."""
        try:
            self.waiters.remove(stream)
        except ValueError:
            return
        self.cluster.resources.pending_requests.dec()

    def maybe_connect(self) -> bool:
        """Open a connection if waiters outnumber connects in progress and the breaker allows."""
        if self.connecting >= len(self.waiters) or self.closing:
            return False
        if self.cluster.config.http2 and self.connecting:
            return False  # one HTTP/2 connection carries them all
        cluster = self.cluster
        connections = cluster.resources.connections
        if not connections.can_create():
            cluster.stats.counters["upstream_cx_overflow"] += 1
            return False
        connections.inc()
        self.host.cx_active += 1
        self.connecting += 1
        cluster.stats.counters["upstream_cx_total"] += 1
        self.host.cx_total += 1
        task = asyncio.get_running_loop().create_task(self._open())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        host, cluster = self.host, self.cluster
        secure = cluster.config.tls
        factory = self._protocol_factory()
        try:
            if secure is None:
                connecting = loop.create_connection(factory, host.host, host.port)
            else:
                connecting = tls.connect(factory, host.host, host.port, secure, cluster.stats)
            _, conn = await asyncio.wait_for(connecting, cluster.config.connect_timeout)
        except (OSError, TimeoutError, asyncio.CancelledError) as exc:
            self._connect_failed(exc)
            return
        self.connecting -= 1
        self._assign(conn)

    def _protocol_factory(self) -> Callable[[], UpstreamConnection | Http2UpstreamConnection]:
        config = self.cluster.config
        if config.http2:
            from proxy.upstream.http2 import Http2UpstreamConnection  # h2: HTTP/2 clusters only

            limit = config.max_requests_per_connection
            stats = self.cluster.stats
            return lambda: Http2UpstreamConnection(self, limit, stats)
        kib, count = config.max_response_headers_kb, config.max_response_headers_count
        limits = HeadLimits(kib * 1024, count)
        return lambda: UpstreamConnection(self, limits)

    def _connect_failed(self, exc: BaseException) -> None:
        self.connecting -= 1
        self.cluster.resources.connections.dec()
        self.host.cx_active -= 1
        counters = self.cluster.stats.counters
        counters["upstream_cx_connect_fail"] += 1
        if isinstance(exc, TimeoutError):
            counters["upstream_cx_connect_timeout"] += 1
        self.host.cx_connect_fail += 1
        stream = self._pop_waiter()
        if stream is not None:
            stream.on_pool_failure(CONNECT_FAILURE, _connect_detail(exc))
        self.maybe_connect()

    def _pop_waiter(self) -> UpstreamStream | None:
        if not self.waiters:
            return None
        self.cluster.resources.pending_requests.dec()
        return self.waiters.popleft()

    def _assign(self, conn: UpstreamConnection | Http2UpstreamConnection) -> None:
        """A connection became free: the oldest waiter gets it, else it idles."""
        if conn.closed:
            return
        if not isinstance(conn, UpstreamConnection):
            return self._assign_streams(conn)
        stream = self._pop_waiter()
        if stream is not None:
            stream.on_pool_ready(conn)
        elif self.closing:
            conn.close()
        else:
            conn.idle_since = time.monotonic()  # the loop's clock; no getpid() per request
            self.idle.append(conn)

    def _assign_streams(self, conn: Http2UpstreamConnection) -> None:
        """An HTTP/2 connection is up or has streams free: waiters get streams on it."""
        if conn not in self.multiplexed:
            self.multiplexed.append(conn)
        while self.waiters and conn.has_capacity():
            stream = self._pop_waiter()
            assert stream is not None
            stream.on_pool_ready(conn.open_stream())
        if self.closing and not conn.active:
            conn.close()
        elif self.waiters:
            self.maybe_connect()  # out of streams: another connection for the rest

    def release(self, conn: UpstreamConnection | Http2UpstreamConnection) -> None:
        """The connection finished a request and may carry another."""
        if not isinstance(conn, UpstreamConnection):
            return self._assign_streams(conn)
        limit = self.cluster.config.max_requests_per_connection
        if limit and conn.requests >= limit:
            conn.close()
            return
        self._assign(conn)

    def on_closed(self, conn: UpstreamConnection | Http2UpstreamConnection) -> None:
        if not isinstance(conn, UpstreamConnection):
            if conn in self.multiplexed:
                self.multiplexed.remove(conn)
        elif conn in self.idle:
            self.idle.remove(conn)
        self.cluster.resources.connections.dec()
        self.host.cx_active -= 1
        self.cluster.stats.counters["upstream_cx_destroy"] += 1
        if not self.maybe_connect():
            self.cluster.on_connection_freed()

    def close_idle(self, older_than: float | None = None) -> int:
        """Close idle connections (all, or those idle since before ``older_than``)."""
        keep: list[UpstreamConnection] = []
        drop: list[UpstreamConnection] = []
        for conn in self.idle:
            (drop if older_than is None or conn.idle_since < older_than else keep).append(conn)
        self.idle = keep
        for conn in drop:
            conn.close()
        idle_shared = [
            c for c in self.multiplexed
            if not c.active and (older_than is None or c.idle_since < older_than)
        ]  # fmt: skip
        for shared in idle_shared:
            shared.close()
        return len(drop) + len(idle_shared)

    def close(self) -> None:
        """Stop pooling: idle connections close now, busy ones when their request ends."""
        self.closing = True
        self.close_idle()
        for task in list(self._tasks):
            task.cancel()
