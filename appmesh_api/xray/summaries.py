"""GetTraceSummaries' TraceSummary: what X-Ray reports about a trace without its documents.

Unlike moto's, Duration and ResponseTime are real (fractional seconds): Duration runs from
the earliest segment start to the latest segment end, ResponseTime is the root segment's.
HasFault and HasError describe the root segment, HasThrottle and IsPartial any segment (the
model's own definitions). Http is the root segment's request and response.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from appmesh_api.xray.analysis import Analysis, NodeKey, service_node
from appmesh_api.xray.store import TraceRecord


def service_id(key: NodeKey, account: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {"Name": key.name, "Names": [key.name]}
    if account:
        found["AccountId"] = account
    if key.type:
        found["Type"] = key.type
    return found


def annotation_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BooleanValue": value}
    if isinstance(value, (int, float)):
        return {"NumberValue": float(value)}
    return {"StringValue": str(value)}


def _http(analysis: Analysis) -> dict[str, Any]:
    http = (analysis.root or {}).get("http") or {}
    request, response = http.get("request") or {}, http.get("response") or {}
    found = {
        "HttpURL": request.get("url"),
        "HttpStatus": response.get("status"),
        "HttpMethod": request.get("method"),
        "UserAgent": request.get("user_agent"),
        "ClientIp": request.get("client_ip"),
    }
    return {key: value for key, value in found.items() if value is not None}


def _annotations(analysis: Analysis, ids: dict[NodeKey, dict]) -> dict[str, list[dict]]:
    grouped: dict[str, dict[Any, list[NodeKey]]] = defaultdict(dict)
    for name, values in analysis.annotations.items():
        for value, node in values:
            holders = grouped[name].setdefault((type(value).__name__, value), [])
            if node not in holders:
                holders.append(node)
    return {
        name: [
            {"AnnotationValue": annotation_value(value), "ServiceIds": [ids[n] for n in nodes]}
            for (_kind, value), nodes in by_value.items()
        ]
        for name, by_value in grouped.items()
    }


def _resources(analysis: Analysis) -> dict[str, list[dict]]:
    arns: list[str] = []
    instances: list[str] = []
    zones: list[str] = []
    for segment in analysis.segments:
        ec2 = (segment.get("aws") or {}).get("ec2") or {}
        for value, bucket in (
            (segment.get("resource_arn"), arns),
            (ec2.get("instance_id"), instances),
            (ec2.get("availability_zone"), zones),
        ):
            if isinstance(value, str) and value not in bucket:
                bucket.append(value)
    return {
        "ResourceARNs": [{"ARN": arn} for arn in arns],
        "InstanceIds": [{"Id": instance} for instance in instances],
        "AvailabilityZones": [{"Name": zone} for zone in zones],
    }


def summarize(record: TraceRecord, account: str) -> dict[str, Any]:
    """One TraceSummary for a stored trace."""
    analysis = record.analysis
    root = analysis.root_observation
    ids = {
        key: service_id(key, None if node.inferred else account)
        for key, node in analysis.nodes.items()
        if not key.is_client
    }
    summary: dict[str, Any] = {
        "Id": record.trace_id,
        "StartTime": analysis.start,
        "Duration": analysis.duration,
        "ResponseTime": None if root is None else root.response_time,
        "HasFault": bool(root and root.outcome.fault),
        "HasError": bool(root and root.outcome.error),
        "HasThrottle": analysis.has_throttle,
        "IsPartial": analysis.partial,
        "Http": _http(analysis),
        "Annotations": _annotations(analysis, ids),
        "Users": [
            {"UserName": user, "ServiceIds": [ids[n] for n in sorted(nodes)]}
            for user, nodes in analysis.users.items()
        ],
        "ServiceIds": [ids[key] for key in analysis.service_nodes()],
        **_resources(analysis),
        "Revision": record.revision,
    }
    if analysis.root is not None:
        summary["EntryPoint"] = ids[service_node(analysis.root)]
    return summary
