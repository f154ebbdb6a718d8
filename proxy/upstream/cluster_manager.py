"""Live clusters: hosts, load balancing, panic routing, and their circuit breakers.

A ``Cluster`` outlives config versions: when a new version changes its settings or its
endpoints, the same object is updated in place and hosts are matched by address, so
pooled connections, outlier state and health-check results survive a config push.

Host choice is precomputed: every health, ejection or membership change rebuilds the
candidate list (healthy hosts of the best priority level, or all of them in panic when
the healthy share drops under ``healthy_panic_threshold``), so picking a host is a
counter increment, a random draw or a power-of-two-choices comparison.

An ORIGINAL_DST cluster (App Mesh's ``mesh-allow-all`` and ``amazonaws`` passthroughs)
has no endpoints: its host is wherever the downstream connection was going, created on
first use and forgotten after a ``cleanup_interval`` without use, as in Envoy.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING

from proxy.config.cluster import ClusterConfig, Endpoint, LoadAssignment
from proxy.observe.stats import (
    CLUSTER_COUNTERS,
    HEALTH_CHECK_COUNTERS,
    HTTP2_UPSTREAM_COUNTERS,
    SSL_COUNTERS,
    Stats,
)
from proxy.upstream.health_check import HealthChecker
from proxy.upstream.host import Host
from proxy.upstream.outlier import EventLog, OutlierDetector
from proxy.upstream.resource_manager import ResourceManager

if TYPE_CHECKING:
    from proxy.config.compile import CompiledConfig
    from proxy.upstream.http2 import Http2UpstreamConnection


class Cluster:
    """A live cluster: the hosts, the balancer and the circuit breakers (``resources``)."""

    def __init__(
        self,
        stats: Stats,
        config: ClusterConfig,
        assignment: LoadAssignment | None,
        events: EventLog | None = None,
    ):
        self.name = config.name
        self.events = events
        self.config = config
        self.stats = stats.scope("cluster", config.name, CLUSTER_COUNTERS)
        self.hosts: dict[str, Host] = {}
        self.assignment: LoadAssignment | None = None
        self.resources = ResourceManager(config.thresholds)
        self.removed = False
        self.original_dst = False  # hosts come from connections (see original_dst_host)
        self._cleaned_at = 0.0
        self._candidates: list[Host] = []
        self._cumulative: list[int] | None = None
        self._panic = False
        self._rr = itertools.count()
        self.outlier: OutlierDetector | None = None
        self.health_checker: HealthChecker | None = None
        self._register_gauges()
        self._configure(config)
        self.set_endpoints(assignment)

    def _register_gauges(self) -> None:
        scope, resources = self.stats, self.resources
        scope.gauge_fn("upstream_cx_active", lambda: resources.connections.count)
        scope.gauge_fn("upstream_rq_active", lambda: resources.requests.count)
        scope.gauge_fn("upstream_rq_pending_active", lambda: resources.pending_requests.count)
        scope.gauge_fn("membership_total", lambda: len(self.hosts))
        scope.gauge_fn("membership_healthy", lambda: sum(h.healthy for h in self.hosts.values()))
        scope.gauge_fn("membership_degraded", lambda: 0)
        scope.gauge_fn(
            "outlier_detection.ejections_active",
            lambda: sum(h.ejected for h in self.hosts.values()),
        )
        breakers = "circuit_breakers.default."
        scope.gauge_fn(breakers + "cx_open", lambda: int(resources.connections.open))
        scope.gauge_fn(breakers + "rq_pending_open", lambda: int(resources.pending_requests.open))
        scope.gauge_fn(breakers + "rq_open", lambda: int(resources.requests.open))
        scope.gauge_fn(breakers + "rq_retry_open", lambda: int(resources.retries.open))

    def _register_http2_stats(self) -> None:
        """Envoy's upstream codec stats, ``cluster.<name>.http2.*``, zeros included."""
        scope = self.stats
        for name in HTTP2_UPSTREAM_COUNTERS:
            scope.counters.setdefault(name, 0)

        def connections() -> Iterator[Http2UpstreamConnection]:
            return (c for h in list(self.hosts.values()) for c in h.pool.multiplexed)

        scope.gauge_fn("http2.streams_active", lambda: sum(len(c.streams) for c in connections()))
        scope.gauge_fn(
            "http2.pending_send_bytes",
            lambda: sum(len(s.pending) for c in connections() for s in c.streams.values()),
        )
        scope.gauge_fn(
            "http2.outbound_frames_active",
            lambda: sum(c.outbound_active()[0] for c in connections()),
        )
        scope.gauge_fn(
            "http2.outbound_control_frames_active",
            lambda: sum(c.outbound_active()[1] for c in connections()),
        )

    # -- configuration ---------------------------------------------------------------------
    def update(self, config: ClusterConfig, assignment: LoadAssignment | None) -> None:
        """Apply a new version of this cluster, keeping hosts that stay."""
        if config.raw != self.config.raw:
            self._configure(config)
        elif config.tls is not None:
            # Same cluster, but its certificate files were re-read or an SDS secret it
            # names changed: new connections use the new context, open ones keep theirs.
            self.config = config
        self.set_endpoints(assignment)

    def _configure(self, config: ClusterConfig) -> None:
        previous = self.config
        self.config = config
        if config.tls is not None:  # Envoy lists a TLS cluster's ssl.* counters, zeros too
            for name in SSL_COUNTERS:
                self.stats.counters.setdefault(name, 0)
        if config.http2:
            self._register_http2_stats()
        if previous.raw.get("transport_socket") != config.raw.get("transport_socket"):
            # Idle connections were made under the old TLS terms (trust, SANs, SNI, or
            # plaintext): like Envoy's drained pools, they carry no new request.
            for host in self.hosts.values():
                host.pool.close_idle()
        self.resources.update(config.thresholds)
        if self.original_dst != (config.discovery == "ORIGINAL_DST"):
            self.original_dst = not self.original_dst
            self.assignment = None  # endpoint hosts and destination hosts do not mix
            self._replace_hosts({})
        if self.outlier is None or config.outlier != previous.outlier:
            if self.outlier is not None:
                self.outlier.stop()
            self.outlier = (
                OutlierDetector(self, config.outlier, self.events) if config.outlier else None
            )
        if self.health_checker is None or config.health_checks != previous.health_checks:
            if self.health_checker is not None:
                self.health_checker.stop()
                for host in self.hosts.values():  # verdicts of the old checks no longer hold
                    host.hc_failed = host.hc_initial = False
                    host.hc_streak = 0
                self.refresh()
            self.health_checker = None
            if config.health_checks:
                for name in HEALTH_CHECK_COUNTERS:
                    self.stats.counters.setdefault(name, 0)
                self.health_checker = HealthChecker(self, config.health_checks[0])

    def set_endpoints(self, assignment: LoadAssignment | None) -> None:
        """Reconcile hosts with a load assignment (``None``: no endpoints known yet)."""
        if self.original_dst or (assignment == self.assignment and assignment is not None):
            return
        self.assignment = assignment
        fresh: dict[str, Host] = {}
        checking = self.health_checker is not None
        for endpoint in assignment.endpoints if assignment else ():
            host = self.hosts.get(endpoint.key) or fresh.get(endpoint.key)
            if host is None:
                host = Host(endpoint, self, hc_pending=checking)
            host.endpoint = endpoint
            host.eds_healthy = endpoint.healthy
            fresh[endpoint.key] = host
        self._replace_hosts(fresh)

    def _replace_hosts(self, fresh: dict[str, Host]) -> None:
        """Adopt ``fresh``; hosts left out stop pooling (busy connections finish first)."""
        for key, host in self.hosts.items():
            if key not in fresh:
                host.pool.close()
        self.hosts = fresh
        self.refresh()

    # -- ORIGINAL_DST -------------------------------------------------------------------------
    def original_dst_host(self, destination: tuple[str, int] | None) -> Host | None:
        """The host of an ORIGINAL_DST cluster: the downstream's original destination.

        ``None`` (no healthy upstream) when the connection was not redirected, as Envoy's
        CLUSTER_PROVIDED balancer answers; connecting to the proxy itself would loop.
        """
        if destination is None:
            return None
        key = f"{destination[0]}:{destination[1]}"
        host = self.hosts.get(key)
        if host is None:
            host = self.hosts[key] = Host(Endpoint(*destination), self, hc_pending=False)
        host.used = True
        return host

    def _forget_unused_hosts(self, now: float) -> None:
        """Envoy's ``cleanup_interval`` sweep: drop destinations not used since the last one."""
        self._cleaned_at = now
        kept = {key: host for key, host in self.hosts.items() if host.used or host.rq_active}
        for host in kept.values():
            host.used = False
        if len(kept) != len(self.hosts):
            self._replace_hosts(kept)

    # -- load balancing --------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute the host candidates after any health or membership change."""
        hosts = list(self.hosts.values())
        self._panic = False
        if not hosts:
            self._set_candidates([])
            return
        levels = sorted({h.endpoint.priority for h in hosts})
        for level in levels:
            members = [h for h in hosts if h.endpoint.priority == level]
            healthy = [h for h in members if h.healthy]
            if healthy:
                if len(healthy) * 100 < self.config.panic_threshold * len(members):
                    self._panic = True
                    self._set_candidates(members)
                else:
                    self._set_candidates(healthy)
                return
        # Nothing healthy anywhere: panic over the first level unless panic is disabled.
        if self.config.panic_threshold > 0:
            self._panic = True
            self._set_candidates([h for h in hosts if h.endpoint.priority == levels[0]])
        else:
            self._set_candidates([])

    def _set_candidates(self, hosts: list[Host]) -> None:
        self._candidates = hosts
        weights = [h.endpoint.weight for h in hosts]
        if weights and min(weights) != max(weights):
            self._cumulative = list(itertools.accumulate(weights))
        else:
            self._cumulative = None

    def choose_host(self, exclude: set[Host] | None = None, attempts: int = 1) -> Host | None:
        """Pick a host per ``lb_policy``; ``None`` means no healthy upstream (UH)."""
        candidates = self._candidates
        if not candidates:
            return None
        if self._panic:
            self.stats.counters["lb_healthy_panic"] += 1
        host = self._pick(candidates)
        while exclude and host in exclude and attempts > 1 and len(candidates) > 1:
            attempts -= 1
            host = self._pick(candidates)
        return host

    def _pick(self, candidates: list[Host]) -> Host:
        cumulative = self._cumulative
        if cumulative is not None:
            index = bisect.bisect_right(cumulative, random.randrange(cumulative[-1]))
            return candidates[index]
        policy = self.config.lb_policy
        if policy == "LEAST_REQUEST" and len(candidates) > 1:
            first, second = random.sample(candidates, 2)
            return first if first.rq_active <= second.rq_active else second
        if policy == "RANDOM":
            return random.choice(candidates)
        return candidates[next(self._rr) % len(candidates)]

    # -- pools -------------------------------------------------------------------------------
    def on_connection_freed(self) -> None:
        """A connection slot freed up: let a host with waiting requests open one."""
        for host in self.hosts.values():
            if host.pool.waiters and host.pool.maybe_connect():
                return

    def sweep_idle(self, now: float) -> None:
        if self.original_dst and now - self._cleaned_at >= self.config.cleanup_interval:
            self._forget_unused_hosts(now)
        timeout = self.config.idle_timeout
        if timeout is None:
            return
        for host in self.hosts.values():
            closed = host.pool.close_idle(older_than=now - timeout)
            if closed:
                self.stats.counters["upstream_cx_idle_timeout"] += closed

    def warming(self) -> Awaitable[None] | None:
        """The first health-check round, which a new cluster waits for (Envoy's warming)."""
        return self.health_checker.first_round if self.health_checker else None

    def close(self) -> None:
        self.removed = True
        if self.outlier is not None:
            self.outlier.stop()
        if self.health_checker is not None:
            self.health_checker.stop()
        for host in self.hosts.values():
            host.pool.close()


class ClusterManager:
    """All live clusters by name; updated from each compiled config version."""

    SWEEP_INTERVAL = 1.0

    def __init__(self, stats: Stats, events: EventLog | None = None) -> None:
        self.stats = stats
        self.events = events  # outlier ejection events, one JSON line each
        self.clusters: dict[str, Cluster] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def get(self, name: str) -> Cluster | None:
        return self.clusters.get(name)

    def update(self, config: CompiledConfig) -> list[Awaitable[None]]:
        """Create, update and remove clusters; returns the warm-ups new clusters wait on."""
        warming: list[Awaitable[None]] = []
        current: dict[str, Cluster] = {}
        for name, cluster_config in config.clusters.items():
            assignment = config.endpoints_for(cluster_config)
            cluster = self.clusters.get(name)
            if cluster is None:
                cluster = Cluster(self.stats, cluster_config, assignment, self.events)
                if (pending := cluster.warming()) is not None:
                    warming.append(pending)
            else:
                cluster.update(cluster_config, assignment)
            current[name] = cluster
        for name, cluster in self.clusters.items():
            if name not in current:
                cluster.close()
                self.stats.drop_gauges("cluster", name)
        self.clusters = current
        self._arm_sweeper()
        return warming

    def _arm_sweeper(self) -> None:
        if self._sweeper is None and self.clusters:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for cluster in self.clusters.values():
            cluster.sweep_idle(now)
        self._arm_sweeper()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for cluster in self.clusters.values():
            cluster.close()
        self.clusters = {}
