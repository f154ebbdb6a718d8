"""The ``tcp_proxy`` network filter: one downstream connection piped to one upstream host.

The cluster is picked per connection (weighted clusters by one random draw), then a host
by the cluster's balancer, bounded by the ``max_connections`` breaker. Downstream reading
stays paused until the upstream is connected (up to ``max_connect_attempts`` tries).
Bytes flow in both directions with pause/resume backpressure and half-close; the
``idle_timeout`` is checked lazily from the coarse timer wheel, so moving data never
touches a timer.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from typing import TYPE_CHECKING

from proxy import stream_info as flags
from proxy.codec.address import format_address
from proxy.observe.stats import TCP_COUNTERS
from proxy.stream_info import StreamInfo
from proxy.upstream import tls

if TYPE_CHECKING:
    from proxy.config.compile import TcpProxyConfig
    from proxy.context import ProxyContext
    from proxy.timers import Timer
    from proxy.upstream.cluster_manager import Cluster
    from proxy.upstream.host import Host


class _UpstreamSide(asyncio.Protocol):
    """The upstream half: forwards to the downstream connection that owns it."""

    def __init__(self, owner: TcpProxyConnection) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner.from_upstream(data)

    def eof_received(self) -> bool:
        self.owner.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.upstream_closed()

    def pause_writing(self) -> None:
        self.owner.set_downstream_reading(False)

    def resume_writing(self) -> None:
        self.owner.set_downstream_reading(True)


class TcpProxyConnection(asyncio.Protocol):
    """One downstream connection of a ``tcp_proxy`` filter chain."""

    def __init__(
        self,
        ctx: ProxyContext,
        config: TcpProxyConfig,
        original_dst: tuple[str, int] | None = None,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.original_dst = original_dst  # where iptables' REDIRECT said it was going
        self.stats = ctx.stats.scope("tcp", config.stat_prefix, TCP_COUNTERS)
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.cluster: Cluster | None = None
        self.host: Host | None = None
        self.info: StreamInfo | None = None
        self.last_activity = 0.0
        self._idle: Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self._counted = False
        self._early: list[bytes] = []  # bytes that arrived before the upstream connected
        self._half_closed = 0  # directions that saw EOF; at 2 the connection is over

    # -- downstream --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]
        self.ctx.connections.add(self)
        self.stats.counters["downstream_cx_total"] += 1
        self.info = StreamInfo(
            self.ctx.loop.time(),
            "",
            format_address(transport.get_extra_info("peername")),
            format_address(self.original_dst or transport.get_extra_info("sockname")),
            next(self.ctx.connection_ids),
            self.original_dst,
        )
        self.info.stat_prefix = self.config.stat_prefix
        self._task = self.ctx.loop.create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        assert self.info is not None
        self.info.bytes_received += len(data)
        self.last_activity = self.ctx.loop.time()
        if self.upstream is not None:
            self.upstream.write(data)
        else:
            # uvloop starts reading after connection_made even if it paused: hold the bytes.
            self._early.append(data)
            self.set_downstream_reading(False)

    def eof_received(self) -> bool:
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
            self._one_side_done()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.upstream is not None:
            self.upstream.close()
        self._finish()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def drain(self, close_idle: bool = True) -> None:
        """TCP has no request boundary: draining lets the connection run until it ends
        (or the listener's drain time does, as for Envoy's tcp_proxy)."""

    # -- upstream ---------------------------------------------------------------------------
    def from_upstream(self, data: bytes) -> None:
        assert self.info is not None
        self.info.bytes_sent += len(data)
        self.last_activity = self.ctx.loop.time()
        if self.transport is not None:
            self.transport.write(data)

    def upstream_eof(self) -> None:
        if self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()
        self._one_side_done()

    def _one_side_done(self) -> None:
        """Half-close passes through; once both directions ended, close (Envoy does), or
        the connection would linger until the idle timeout, unlogged."""
        self._half_closed += 1
        if self._half_closed == 2 and self.transport is not None:
            self.transport.close()  # flushes first; connection_lost closes the upstream

    def upstream_closed(self) -> None:
        self._release_upstream()
        if self.transport is not None:
            self.transport.close()

    def set_downstream_reading(self, enabled: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if enabled:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    async def _connect(self) -> None:
        info = self.info
        assert info is not None and self.transport is not None
        cluster = self._pick_cluster()
        if cluster is None:
            self.stats.counters["downstream_cx_no_route"] += 1
            return self._reject(flags.NO_CLUSTER_FOUND)
        self.cluster = cluster
        info.upstream_cluster = cluster.name
        for _ in range(self.config.max_connect_attempts):
            if cluster.original_dst:
                host = cluster.original_dst_host(info.original_destination)
            else:
                host = cluster.choose_host()
            if host is None:
                cluster.stats.counters["upstream_cx_none_healthy"] += 1
                return self._reject(flags.NO_HEALTHY_UPSTREAM)
            if not cluster.resources.connections.can_create():
                cluster.stats.counters["upstream_cx_overflow"] += 1
                return self._reject(flags.UPSTREAM_OVERFLOW)
            info.upstream_host = host.key
            if await self._open(cluster, host):
                break
        else:
            return self._reject(flags.UPSTREAM_CONNECTION_FAILURE)
        self.last_activity = self.ctx.loop.time()
        self._arm_idle(self.config.idle_timeout)
        if self._early:
            assert self.upstream is not None
            self.upstream.write(b"".join(self._early))
            self._early = []
        self.transport.resume_reading()

    async def _open(self, cluster: Cluster, host: Host) -> bool:
        counters = cluster.stats.counters
        counters["upstream_cx_total"] += 1
        cluster.resources.connections.inc()
        host.cx_active += 1
        host.cx_total += 1
        self._counted = True
        self.host = host
        try:
            secure = cluster.config.tls
            if secure is None:
                connecting = self.ctx.loop.create_connection(
                    lambda: _UpstreamSide(self), host.host, host.port
                )
            else:
                connecting = tls.connect(
                    lambda: _UpstreamSide(self), host.host, host.port, secure, cluster.stats
                )
            transport, _ = await asyncio.wait_for(connecting, cluster.config.connect_timeout)
        except (OSError, TimeoutError) as exc:
            counters["upstream_cx_connect_fail"] += 1
            if isinstance(exc, TimeoutError):
                counters["upstream_cx_connect_timeout"] += 1
            host.cx_connect_fail += 1
            if cluster.outlier is not None:
                cluster.outlier.report(host, 503)
            self._release_upstream()
            return False
        if cluster.outlier is not None:
            cluster.outlier.report(host, 200)
        self.upstream = transport
        return True

    def _pick_cluster(self) -> Cluster | None:
        config = self.config
        name = config.cluster
        if config.weighted:
            names = [n for n, _ in config.weighted]
            cumulative = list(itertools.accumulate(w for _, w in config.weighted))
            name = names[bisect.bisect_right(cumulative, random.randrange(cumulative[-1]))]
        return self.ctx.clusters.get(name) if name else None

    def _reject(self, flag: str) -> None:
        assert self.info is not None and self.transport is not None
        self.info.add_flag(flag)
        self.transport.close()

    def _release_upstream(self) -> None:
        if self._counted and self.cluster is not None and self.host is not None:
            self._counted = False
            self.cluster.resources.connections.dec()
            self.host.cx_active -= 1
            self.cluster.stats.counters["upstream_cx_destroy"] += 1

    # -- idle timeout ------------------------------------------------------------------------
    def _arm_idle(self, delay: float | None) -> None:
        if delay:
            self._idle = self.ctx.timers.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._idle = None
        timeout = self.config.idle_timeout
        if self._done or not timeout:
            return
        idle_for = self.ctx.loop.time() - self.last_activity
        if idle_for >= timeout:
            self.stats.counters["idle_timeout"] += 1
            if self.transport is not None:
                self.transport.close()
        else:
            self._arm_idle(timeout - idle_for)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._idle is not None:
            self._idle.cancel()
        info = self.info
        if info is None:
            return
        info.end = self.ctx.loop.time()
        self.stats.counters["downstream_cx_rx_bytes_total"] += info.bytes_received
        self.stats.counters["downstream_cx_tx_bytes_total"] += info.bytes_sent
        if self.cluster is not None:
            counters = self.cluster.stats.counters
            counters["upstream_cx_rx_bytes_total"] += info.bytes_sent
            counters["upstream_cx_tx_bytes_total"] += info.bytes_received
        if self.config.access_logs:
            self.ctx.access_logs.log(self.config.access_logs, info)
