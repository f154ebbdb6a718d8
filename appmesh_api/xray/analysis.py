"""What one trace says: its root, its services, the calls between them and their outcomes.

Everything the read side reports is derived here once per trace (and cached by the store):
the graph aggregates ``nodes`` and ``edges`` over traces, summaries read the root and the
facts, and filter expressions test both.

The rules follow X-Ray's documented model:
- a segment is one request served by a service, named by ``name`` and typed by ``origin``;
- a segment whose ``parent_id`` is an entity of another segment was called by that
  segment's service: an edge caller -> callee. The call is observed from the caller's
  subsegment when there is one (the client's view, as X-Ray's edge statistics are);
- a ``namespace`` ``remote`` or ``aws`` subsegment that no traced segment answered is a call
  to an uninstrumented downstream: an inferred service (``remote``, or ``AWS::<Service>``,
  with DynamoDB tables and SQS queues named by their resource as X-Ray does);
- a segment with no parent in the trace is a root: a ``client`` node calls it;
- outcomes: ``fault`` (or a 5xx) is a fault, ``throttle`` (or 429) a throttle and an error,
  ``error`` (or another 4xx) an error; anything else that completed is OK.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from appmesh_api.xray.documents import Assembled, Document, walk

REMOTE_NAMESPACES = ("remote", "aws")


@dataclass(frozen=True, order=True)
class NodeKey:
    """A service in the graph: X-Ray tells services apart by name and type."""

    name: str
    type: str | None = None

    @property
    def is_client(self) -> bool:
        return self.type == "client"


@dataclass(frozen=True)
class Outcome:
    fault: bool = False
    error: bool = False
    throttle: bool = False

    @property
    def ok(self) -> bool:
        return not (self.fault or self.error)


@dataclass(frozen=True)
class Observation:
    """One request as a service (or a caller, for an edge) saw it."""

    start: float
    end: float | None
    outcome: Outcome
    status: int | None = None

    @property
    def response_time(self) -> float | None:
        return None if self.end is None else _seconds(self.end - self.start)


@dataclass
class Node:
    key: NodeKey
    observations: list[Observation] = field(default_factory=list)
    root: bool = False
    inferred: bool = False


def _seconds(elapsed: float) -> float:
    """Elapsed time to the microsecond: epoch floats subtract with noise (0.59999990)."""
    return round(max(elapsed, 0.0), 6)


def _status(entity: Document) -> int | None:
    response = (entity.get("http") or {}).get("response") or {}
    status = response.get("status")
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def outcome(entity: Document) -> Outcome:
    """Fault, error and throttle from the flags, else from the HTTP status."""
    status = _status(entity) or 0
    throttle = entity.get("throttle") is True or status == 429
    fault = entity.get("fault") is True or 500 <= status < 600
    error = not fault and (entity.get("error") is True or throttle or 400 <= status < 500)
    return Outcome(fault=fault, error=error, throttle=throttle)


def observe(entity: Document) -> Observation:
    end = entity.get("end_time")
    finished = float(end) if isinstance(end, (int, float)) and not isinstance(end, bool) else None
    start = float(entity.get("start_time") or 0.0)
    return Observation(start, finished, outcome(entity), _status(entity))


def service_node(segment: Document) -> NodeKey:
    origin = segment.get("origin")
    return NodeKey(str(segment.get("name")), origin if isinstance(origin, str) else None)


def inferred_node(subsegment: Document) -> NodeKey:
    """The downstream an uninstrumented remote call reached."""
    name = str(subsegment.get("name"))
    if subsegment.get("namespace") != "aws":
        return NodeKey(name, "remote")
    aws = subsegment.get("aws") or {}
    if isinstance(aws.get("table_name"), str):
        return NodeKey(aws["table_name"], "AWS::DynamoDB::Table")
    if isinstance(aws.get("queue_url"), str):
        return NodeKey(aws["queue_url"].rstrip("/").rsplit("/", 1)[-1], "AWS::SQS::Queue")
    return NodeKey(name, f"AWS::{name}")


def trace_epoch(trace_id: str) -> float:
    """The request time encoded in a trace id (``1-<8 hex seconds>-<24 hex>``)."""
    try:
        return float(int(trace_id.split("-")[1], 16))
    except (IndexError, ValueError):
        return 0.0


@dataclass
class Analysis:
    """The derived view of one trace; see the module docstring for the rules."""

    trace_id: str
    assembled: Assembled
    nodes: dict[NodeKey, Node] = field(default_factory=dict)
    edges: dict[tuple[NodeKey, NodeKey], list[Observation]] = field(
        default_factory=lambda: defaultdict(list)
    )
    root: Document | None = None
    annotations: dict[str, list[tuple[Any, NodeKey]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    users: dict[str, set[NodeKey]] = field(default_factory=lambda: defaultdict(set))
    partial: bool = False
    has_throttle: bool = False

    @property
    def segments(self) -> list[Document]:
        return self.assembled.segments

    @property
    def start(self) -> float | None:
        return min((float(s["start_time"]) for s in self.segments), default=None)

    @property
    def end(self) -> float | None:
        ends = [observe(s).end for s in self.segments]
        return max((e for e in ends if e is not None), default=None)

    @property
    def duration(self) -> float | None:
        start, end = self.start, self.end
        return None if start is None or end is None else _seconds(end - start)

    @property
    def root_observation(self) -> Observation | None:
        return None if self.root is None else observe(self.root)

    def node(self, key: NodeKey) -> Node:
        if key not in self.nodes:
            self.nodes[key] = Node(key)
        return self.nodes[key]

    def service_nodes(self) -> list[NodeKey]:
        return sorted(key for key in self.nodes if not key.is_client)


def analyze(trace_id: str, assembled: Assembled) -> Analysis:
    """Derive nodes, edges, root and facts of one assembled trace."""
    result = Analysis(trace_id, assembled)
    owner = {e.get("id"): seg for seg in assembled.segments for e in walk(seg)}
    entities = {e.get("id"): e for seg in assembled.segments for e in walk(seg)}
    answered = {seg.get("parent_id") for seg in assembled.segments} - {None}
    roots = []
    for segment in assembled.segments:
        result.node(service_node(segment)).observations.append(observe(segment))
        caller = owner.get(segment.get("parent_id"))
        if caller is None or caller is segment:
            roots.append(segment)
        else:
            _link(result, caller, entities[segment["parent_id"]], segment)
        _infer(result, segment, answered)
        _collect_facts(result, segment)
    for segment in roots:
        _add_root(result, segment)
    result.root = min(roots, key=lambda s: float(s["start_time"]), default=None)
    return result


def _link(result: Analysis, caller: Document, call: Document, callee: Document) -> None:
    """An edge from the caller's service to the callee's, seen from the caller if possible."""
    seen = observe(callee) if call is caller else observe(call)
    result.edges[(service_node(caller), service_node(callee))].append(seen)


def _add_root(result: Analysis, segment: Document) -> None:
    key = service_node(segment)
    result.node(key).root = True
    client = NodeKey(key.name, "client")
    result.node(client)
    result.edges[(client, key)].append(observe(segment))


def _remote_calls(entity: Document) -> Iterator[Document]:
    """Outermost remote/aws subsegments under ``entity`` (nested ones are the same call)."""
    for child in entity.get("subsegments") or ():
        if not isinstance(child, dict):
            continue
        if child.get("namespace") in REMOTE_NAMESPACES:
            yield child
        else:
            yield from _remote_calls(child)


def _infer(result: Analysis, segment: Document, answered: set[Any]) -> None:
    """Remote calls that no traced segment answered become inferred downstream services."""
    for call in _remote_calls(segment):
        if any(e.get("id") in answered for e in walk(call)):
            continue
        key = inferred_node(call)
        node = result.node(key)
        node.inferred = True
        node.observations.append(observe(call))
        result.edges[(service_node(segment), key)].append(observe(call))


def _collect_facts(result: Analysis, segment: Document) -> None:
    key = service_node(segment)
    user = segment.get("user")
    if isinstance(user, str):
        result.users[user].add(key)
    for entity in walk(segment):
        if entity.get("in_progress") is True:
            result.partial = True
        if outcome(entity).throttle:
            result.has_throttle = True
        annotations = entity.get("annotations")
        if isinstance(annotations, dict):
            for name, value in annotations.items():
                if isinstance(value, (str, int, float, bool)):
                    result.annotations[name].append((value, key))
