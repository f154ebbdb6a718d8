"""DogStatsD (``ENABLE_ENVOY_DOG_STATSD=1``): Envoy's stats sink to a local agent.

Every stats flush sends, as Envoy's ``envoy.stat_sinks.dog_statsd`` did to 127.0.0.1:8125
(``STATSD_ADDRESS``/``STATSD_PORT``, or ``STATSD_SOCKET_PATH``): each Envoy counter's
increase since the last flush (``envoy.cluster.upstream_rq_total:3|c|#envoy.cluster_name:
...``), each gauge (``|g``), and with the metrics extension its metrics
(``envoy.appmesh.RequestCount:5|c|#Mesh:demo,VirtualNode:front``), response times as
``|ms`` samples. The bootstrap's stats tags apply as on ``/stats/prometheus``: fixed
tags (``appmesh.mesh``... with ``ENABLE_ENVOY_STATS_TAGS``) on every line, regex tags
cut from the names they match. Lines are packed into datagrams of at most ``MAX_DATAGRAM`` bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from proxy.observe.stats import extract_tags, tag_name

if TYPE_CHECKING:
    from proxy.config.observability import StatsTags
    from proxy.observe.datagrams import DatagramSender
    from proxy.observe.metrics_extension import MetricPoint
    from proxy.observe.stats import Stats

MAX_DATAGRAM = 1432  # Envoy's default for UDP statsd: one Ethernet MTU of payload
_TYPES = {"counter": "c", "gauge": "g"}


def tags_text(tags: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """``|#k:v,k2:v2`` (empty values left out), or nothing without tags."""
    parts = [f"{k}:{v}" for k, v in tags if v]
    return "|#" + ",".join(parts) if parts else ""


def extension_lines(points: list[MetricPoint], fixed: tuple[tuple[str, str], ...]) -> Iterator[str]:
    """The metrics extension's points as DogStatsD lines."""
    for point in points:
        named = {key for key, _ in point.dims}
        tags = tags_text((*point.dims, *(tag for tag in fixed if tag[0] not in named)))
        name = f"envoy.appmesh.{point.name}"
        if point.timing is not None:
            for sample in point.timing.samples:
                yield f"{name}:{sample:.3f}|ms{tags}"
        else:
            yield f"{name}:{_number(point.value)}|{_TYPES[point.kind]}{tags}"


def pack(lines: Iterator[str], limit: int = MAX_DATAGRAM) -> Iterator[bytes]:
    """Newline-joined lines, as many as fit in each datagram."""
    batch: list[str] = []
    size = 0
    for line in lines:
        if batch and size + len(line) + 1 > limit:
            yield "\n".join(batch).encode()
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield "\n".join(batch).encode()


class DogStatsdExporter:
    """Envoy's stats and the extension's metrics, to a DogStatsD agent each flush."""

    def __init__(self, sender: DatagramSender, stats: Stats, tags: StatsTags) -> None:
        self.sender = sender
        self.stats = stats
        self.tags = tags
        self.fixed = tags.fixed
        self._last: dict[tuple[str, str, str], int] = {}

    def export(self, points: list[MetricPoint]) -> None:
        lines = [*self._envoy_lines(), *extension_lines(points, self.fixed)]
        for datagram in pack(iter(lines)):
            self.sender.send(datagram)
        self.sender.flush()

    def _envoy_lines(self) -> Iterator[str]:
        """Counter increases (none when unchanged) and gauges of every stats scope."""
        last = self._last
        for scope in self.stats.scopes():
            tag_key = tag_name(scope.kind)
            prefix = f"envoy.{scope.kind}."
            for full, value, is_counter in scope.items():
                tag, name, extracted = extract_tags(scope, full, self.tags)
                scope_tag = [(tag_key, tag)] if tag_key else []
                tags = tags_text([*scope_tag, *extracted, *self.fixed])
                if not is_counter:
                    yield f"{prefix}{name}:{value}|g{tags}"
                    continue
                key = (scope.kind, scope.tag, full)
                delta = value - last.get(key, 0)
                last[key] = value
                if delta:
                    yield f"{prefix}{name}:{delta}|c{tags}"

    def close(self) -> None:
        self.sender.close()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
