"""GetServiceGraph and GetTraceGraph: services, the edges between them, and their statistics.

The graph is the union of the traces' nodes and edges (see ``analysis``), rendered in the
shape of X-Ray's own output (the devguide's GetServiceGraph example):

- a ``client`` node (Type ``client``, State ``unknown``, named after the service it calls)
  precedes every root service and has one edge to it;
- instrumented services are ``active``, inferred downstreams ``unknown``; roots carry
  ``Root: true``; a service's Type is its segments' ``origin`` (``AWS::AppMesh::Proxy``
  for App Mesh's Envoy);
- ``SummaryStatistics`` count completed requests (OK, errors with throttles, faults,
  total, total response time); ``ResponseTimeHistogram``/``DurationHistogram`` count
  response times rounded to the millisecond;
- ``ReferenceId``: client nodes first, then services by name; an edge's ReferenceId is
  the service it leads to.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from appmesh_api.xray.analysis import Analysis, NodeKey, Observation


def statistics(observations: Iterable[Observation]) -> dict[str, Any]:
    """SummaryStatistics of the completed requests among ``observations``."""
    done = [seen for seen in observations if seen.end is not None]
    faults = sum(1 for seen in done if seen.outcome.fault)
    errors = [seen for seen in done if seen.outcome.error]
    throttles = sum(1 for seen in errors if seen.outcome.throttle)
    return {
        "OkCount": sum(1 for seen in done if seen.outcome.ok),
        "ErrorStatistics": {
            "ThrottleCount": throttles,
            "OtherCount": len(errors) - throttles,
            "TotalCount": len(errors),
        },
        "FaultStatistics": {"OtherCount": faults, "TotalCount": faults},
        "TotalCount": len(done),
        "TotalResponseTime": round(sum(seen.response_time or 0.0 for seen in done), 6),
    }


def histogram(observations: Iterable[Observation]) -> list[dict[str, Any]]:
    """Response times to the millisecond, with how often each occurred."""
    counts = Counter(
        round(seen.response_time, 3) for seen in observations if seen.response_time is not None
    )
    return [{"Value": value, "Count": count} for value, count in sorted(counts.items())]


def _span(observations: list[Observation]) -> dict[str, float]:
    starts = [seen.start for seen in observations]
    ends = [seen.end for seen in observations if seen.end is not None]
    span = {}
    if starts:
        span["StartTime"] = min(starts)
    if ends or starts:
        span["EndTime"] = max(ends or starts)
    return span


class GraphBuilder:
    """Accumulates traces, then renders the ``Services`` list."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.observations: dict[NodeKey, list[Observation]] = defaultdict(list)
        self.edges: dict[tuple[NodeKey, NodeKey], list[Observation]] = defaultdict(list)
        self.roots: set[NodeKey] = set()
        self.inferred: set[NodeKey] = set()

    def add(self, analysis: Analysis) -> None:
        for key, node in analysis.nodes.items():
            self.observations[key].extend(node.observations)
            if node.root:
                self.roots.add(key)
            if node.inferred:
                self.inferred.add(key)
        for pair, calls in analysis.edges.items():
            self.edges[pair].extend(calls)

    def services(self) -> list[dict[str, Any]]:
        keys = sorted(self.observations, key=lambda k: (not k.is_client, k.name, k.type or ""))
        reference = {key: index for index, key in enumerate(keys)}
        outgoing: dict[NodeKey, list[dict[str, Any]]] = defaultdict(list)
        for (source, destination), calls in sorted(
            self.edges.items(), key=lambda item: reference[item[0][1]]
        ):
            outgoing[source].append(self._edge(reference[destination], calls))
        return [self._service(key, reference[key], outgoing[key]) for key in keys]

    def _edge(self, reference: int, calls: list[Observation]) -> dict[str, Any]:
        return {
            "ReferenceId": reference,
            **_span(calls),
            "SummaryStatistics": statistics(calls),
            "ResponseTimeHistogram": histogram(calls),
            "Aliases": [],
        }

    def _service(self, key: NodeKey, reference: int, edges: list[dict]) -> dict[str, Any]:
        seen = self.observations[key]
        if key.is_client:
            calls = [c for (source, _), cs in self.edges.items() if source == key for c in cs]
            seen = calls
        service: dict[str, Any] = {"ReferenceId": reference, "Name": key.name, "Names": [key.name]}
        if key in self.roots:
            service["Root"] = True
        if not key.is_client and key not in self.inferred:
            service["AccountId"] = self.account
        if key.type:
            service["Type"] = key.type
        active = not key.is_client and key not in self.inferred
        service["State"] = "active" if active else "unknown"
        service.update(_span(seen))
        service["Edges"] = edges
        if not key.is_client:
            service["SummaryStatistics"] = statistics(seen)
            service["DurationHistogram"] = histogram(seen)
            service["ResponseTimeHistogram"] = histogram(seen)
        return service


def build_graph(analyses: Iterable[Analysis], account: str) -> list[dict[str, Any]]:
    """The ``Services`` of a service graph over ``analyses``."""
    builder = GraphBuilder(account)
    for analysis in analyses:
        builder.add(analysis)
    return builder.services()
