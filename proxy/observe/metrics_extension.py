"""App Mesh's metrics extension (``APPMESH_METRIC_EXTENSION_VERSION=1``): mesh-aware metrics.

Inbound, per proxy (dimensions ``Mesh`` and ``VirtualNode`` or ``VirtualGateway``):
RequestCount, NewConnectionCount, ActiveConnectionCount, ProcessedBytes and
GrpcRequestCount. Outbound, per target (adding ``TargetVirtualNode`` and
``TargetVirtualService``, read from the ``aws.appmesh.aggregate_stats`` metadata App Mesh
put on clusters and routes): RequestCountPerTarget, HTTPCode_Target_{2,3,4,5}XX_Count,
TargetProcessedBytes and TargetResponseTime.

Cost: the inbound request and connection counts are read from the Envoy stats the data
path keeps anyway (``http.ingress*.downstream_rq_total``, ``downstream_cx_total``, the
open connections), only when someone reads them. Per request, one call when the request
ends adds a few ints to the target's counters, found by the (node, service) pair that
compiled config already holds. Nothing runs when the extension is off.

Two readings, as Envoy offers: cumulative values for ``/stats/prometheus``
(``envoy_appmesh_<Metric>{Mesh=...}``, TargetResponseTime a histogram with Envoy's default
buckets), and ``collect()`` for the periodic sinks (CloudWatch, DogStatsD): counter deltas
since the last collection, gauges, and the interval's response times.

Byte counts are HTTP body bytes (and every byte of TCP connections), the same measure as
this proxy's ``upstream_cx_rx/tx_bytes_total``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.config.observability import MeshIdentity
    from proxy.observe.stats import Stats
    from proxy.stream_info import StreamInfo

Dims = tuple[tuple[str, str], ...]
# Envoy's default histogram buckets (milliseconds).
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
           300000, 600000, 1800000, 3600000)  # fmt: skip
MAX_SAMPLES = 1000  # response times kept per target per interval, for the sinks
CODE_METRICS = tuple(f"HTTPCode_Target_{n}XX_Count" for n in range(2, 6))
UNITS = {"ProcessedBytes": "Bytes", "TargetProcessedBytes": "Bytes",
         "TargetResponseTime": "Milliseconds"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timing:
    """Response times of one interval: the statistics, and samples (bounded)."""

    count: int
    total: float
    minimum: float
    maximum: float
    samples: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value for the sinks: a counter delta, a gauge, or an interval's timing."""

    name: str
    dims: Dims
    kind: str  # counter, gauge or timing
    value: float
    timing: Timing | None = None

    @property
    def unit(self) -> str:
        return UNITS.get(self.name, "Count")


class TargetStats:
    """The outbound counters of one (target node, target service) pair."""

    __slots__ = ("buckets", "bytes", "codes", "dims", "interval", "requests", "rt_count",
                 "rt_sum")  # fmt: skip

    def __init__(self, dims: Dims) -> None:
        self.dims = dims
        self.requests = self.bytes = self.rt_count = 0
        self.rt_sum = 0.0
        self.codes = [0, 0, 0, 0, 0, 0]
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.interval: list[float] = []

    def record(self, info: StreamInfo) -> None:
        self.requests += 1
        code = info.response_code
        if code is not None and 200 <= code < 600:
            self.codes[code // 100] += 1
        self.bytes += info.bytes_received + info.bytes_sent
        sent, end = info.first_upstream_tx, info.end
        if sent is not None and end is not None:
            elapsed = (end - sent) * 1000
            self.rt_count += 1
            self.rt_sum += elapsed
            self.buckets[bisect.bisect_left(BUCKETS, elapsed)] += 1
            if len(self.interval) < MAX_SAMPLES:
                self.interval.append(elapsed)

    def counters(self) -> Iterator[tuple[str, int]]:
        yield "RequestCountPerTarget", self.requests
        for index, name in enumerate(CODE_METRICS, start=2):
            yield name, self.codes[index]
        yield "TargetProcessedBytes", self.bytes


def inbound(stat_prefix: str) -> bool:
    """Ingress listeners' stat prefixes: ``ingress`` or ``ingress.<protocol>.<port>``."""
    return stat_prefix == "ingress" or stat_prefix.startswith("ingress.")


class MetricsExtension:
    """The extension's counters for one proxy, and the ways to read them."""

    def __init__(self, identity: MeshIdentity, stats: Stats, connections: set[Any]) -> None:
        self.base: Dims = (("Mesh", identity.mesh), (identity.dimension, identity.name))
        self.stats = stats
        self.connections = connections
        self.targets: dict[tuple[str, str], TargetStats] = {}
        self.grpc_requests = 0
        self.inbound_bytes = 0
        self._reported: dict[tuple[str, Dims], float] = {}

    # -- the request path ---------------------------------------------------------------------
    def on_request(self, info: StreamInfo) -> None:
        """A request ended: inbound bytes and gRPC, then its target's counters."""
        if inbound(info.stat_prefix):
            self.inbound_bytes += info.bytes_received + info.bytes_sent
            if info.request_headers.get("content-type", "").startswith("application/grpc"):
                self.grpc_requests += 1
        if not info.attempt_count:
            return
        key = (info.target_virtual_node, info.target_virtual_service)
        target = self.targets.get(key)
        if target is None:
            if not key[0] and not key[1]:
                return  # not a mesh target (passthrough, the local app)
            dims = (*self.base, ("TargetVirtualNode", key[0]), ("TargetVirtualService", key[1]))
            target = self.targets[key] = TargetStats(dims)
        target.record(info)

    # -- readings -----------------------------------------------------------------------------
    def inbound_values(self) -> list[tuple[str, str, float]]:
        """``(metric, kind, cumulative value)`` of the inbound metrics, from Envoy's stats."""
        requests = connections = tcp_bytes = 0
        for scope in self.stats.scopes("http"):
            if inbound(scope.tag):
                requests += scope.counters.get("downstream_rq_total", 0)
                connections += scope.counters.get("downstream_cx_total", 0)
        for scope in self.stats.scopes("tcp"):
            if inbound(scope.tag):
                connections += scope.counters.get("downstream_cx_total", 0)
                tcp_bytes += scope.counters.get("downstream_cx_rx_bytes_total", 0)
                tcp_bytes += scope.counters.get("downstream_cx_tx_bytes_total", 0)
        return [
            ("RequestCount", "counter", requests),
            ("NewConnectionCount", "counter", connections),
            ("ActiveConnectionCount", "gauge", self._active_connections()),
            ("ProcessedBytes", "counter", self.inbound_bytes + tcp_bytes),
            ("GrpcRequestCount", "counter", self.grpc_requests),
        ]

    def _active_connections(self) -> int:
        count = 0
        for conn in list(self.connections):
            config = getattr(conn, "hcm", None) or getattr(conn, "config", None)
            if config is not None and inbound(getattr(config, "stat_prefix", "")):
                count += 1
        return count

    def collect(self) -> list[MetricPoint]:
        """What the sinks send now: counter deltas (zeros left out), gauges, and each
        target's response times since the last collection."""
        points: list[MetricPoint] = []
        for name, kind, value in self.inbound_values():
            points.extend(self._point(name, self.base, kind, value))
        for target in list(self.targets.values()):
            for name, value in target.counters():
                points.extend(self._point(name, target.dims, "counter", value))
            timing = self._drain(target)
            if timing is not None:
                points.append(MetricPoint("TargetResponseTime", target.dims, "timing",
                                          timing.total, timing))  # fmt: skip
        return points

    def _point(self, name: str, dims: Dims, kind: str, value: float) -> list[MetricPoint]:
        if kind == "gauge":
            return [MetricPoint(name, dims, kind, value)]
        key = (name, dims)
        delta = value - self._reported.get(key, 0)
        self._reported[key] = value
        return [MetricPoint(name, dims, kind, delta)] if delta else []

    def _drain(self, target: TargetStats) -> Timing | None:
        """The interval's response times: count and sum exact (deltas of the cumulative
        ones), minimum, maximum and samples from the first ``MAX_SAMPLES``."""
        samples, target.interval = target.interval, []
        key = ("TargetResponseTime", target.dims)
        count_key = ("TargetResponseTime#count", target.dims)
        total = target.rt_sum - self._reported.get(key, 0.0)
        count = target.rt_count - int(self._reported.get(count_key, 0))
        self._reported[key], self._reported[count_key] = target.rt_sum, target.rt_count
        if not count or not samples:
            return None
        return Timing(count, total, min(samples), max(samples), tuple(samples))

    def rows(self) -> Iterator[tuple[str, float]]:
        """Envoy's raw stat names and values, for ``/stats``."""
        for name, _kind, value in self.inbound_values():
            yield f"appmesh.{name}", value
        for (node, service), target in list(self.targets.items()):
            prefix = f"appmesh.TargetVirtualNode.{node}.TargetVirtualService.{service}."
            for name, value in target.counters():
                yield prefix + name, value

    def render_prometheus(self) -> str:
        """``envoy_appmesh_<Metric>{Mesh=...,VirtualNode=...[,TargetVirtualNode=...,
        TargetVirtualService=...]}`` families, after Envoy's own."""
        families: dict[str, tuple[str, list[str]]] = {}

        def add(name: str, kind: str, dims: Dims, value: float, suffix: str = "") -> None:
            metric = f"envoy_appmesh_{name}"
            samples = families.setdefault(metric, (kind, []))[1]
            samples.append(f"{metric}{suffix}{_labels(dims)} {_number(value)}")

        for name, kind, value in self.inbound_values():
            add(name, kind, self.base, value)
        for target in list(self.targets.values()):
            for name, value in target.counters():
                add(name, "counter", target.dims, value)
            _histogram(add, target)
        out: list[str] = []
        for metric in sorted(families):
            kind, samples = families[metric]
            out.append(f"# TYPE {metric} {kind}")
            out.extend(samples)
        return "\n".join(out) + "\n"


def _histogram(add: Any, target: TargetStats) -> None:
    """TargetResponseTime as a Prometheus histogram: cumulative buckets, sum, count."""
    cumulative = 0
    for bound, count in zip((*BUCKETS, "+Inf"), target.buckets, strict=True):
        cumulative += count
        dims = (*target.dims, ("le", str(bound)))
        add("TargetResponseTime", "histogram", dims, cumulative, "_bucket")
    add("TargetResponseTime", "histogram", target.dims, target.rt_sum, "_sum")
    add("TargetResponseTime", "histogram", target.dims, target.rt_count, "_count")


def _labels(dims: Dims) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in dims) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
