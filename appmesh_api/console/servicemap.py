"""The live service map: GetServiceGraph's services turned into boxes and measured edges.

X-Ray's graph carries raw counters (OK, errors, faults, total response time); an operator
wants rates. Each edge gets requests per minute over the window, its 4xx and 5xx shares and
its average latency; each service its own. Services are laid out left to right by their
distance from the clients that called the roots, which are drawn as one ``clients`` box.
"""

from __future__ import annotations

from typing import Any

Service = dict[str, Any]
CLIENTS = "clients"


def measures(statistics: dict[str, Any] | None, minutes: float) -> dict[str, Any]:
    """Requests, rate, 4xx/5xx counts and shares, average latency from SummaryStatistics."""
    stats = statistics or {}
    total = int(stats.get("TotalCount") or 0)
    errors = int((stats.get("ErrorStatistics") or {}).get("TotalCount") or 0)
    faults = int((stats.get("FaultStatistics") or {}).get("TotalCount") or 0)
    response = float(stats.get("TotalResponseTime") or 0.0)
    return {
        "requests": total,
        "perMinute": round(total / minutes, 2) if minutes > 0 else 0.0,
        "errors4xx": errors,
        "faults5xx": faults,
        "errorRate": round(errors / total, 4) if total else 0.0,
        "faultRate": round(faults / total, 4) if total else 0.0,
        "avgLatencyMs": round(1000 * response / total, 1) if total else None,
    }


def _columns(services: list[Service]) -> dict[int, int]:
    """ReferenceId -> column: the longest path from a client, cycles cut at the service count."""
    column = {s["ReferenceId"]: 0 for s in services}
    for _ in range(len(services)):
        changed = False
        for service in services:
            for edge in service.get("Edges") or ():
                target = edge["ReferenceId"]
                if target in column and column[target] < column[service["ReferenceId"]] + 1:
                    column[target] = column[service["ReferenceId"]] + 1
                    changed = True
        if not changed:
            break
    return column


def _kind(service: Service) -> str:
    kind = service.get("Type") or ""
    if kind == "client":
        return "client"
    return "proxy" if kind == "AWS::AppMesh::Proxy" else ("remote" if kind else "service")


def _client_ids(services: list[Service]) -> dict[int, int]:
    """ReferenceId of each client node -> the one id the merged ``clients`` box gets.

    X-Ray gives every root service a client node of its own, named after that service; they
    all stand for the same callers outside the traces, so the map draws them as one box.
    """
    clients = sorted(s["ReferenceId"] for s in services if s.get("Type") == "client")
    return {reference: clients[0] for reference in clients}


def _node(service: Service, column: int, row: int, minutes: float) -> dict[str, Any]:
    client = service.get("Type") == "client"
    return {
        "id": service["ReferenceId"],
        "name": CLIENTS if client else service["Name"],
        "type": service.get("Type"),
        "kind": _kind(service),
        "column": column,
        "row": row,
        "stats": None if client else measures(service.get("SummaryStatistics"), minutes),
    }


def service_map(services: list[Service], minutes: float) -> dict[str, Any]:
    """``{"nodes", "edges"}`` ready to draw; ids are X-Ray's ReferenceIds."""
    columns = _columns(services)
    merged = _client_ids(services)
    rows: dict[int, int] = {}
    nodes = []
    for service in sorted(services, key=lambda s: (columns[s["ReferenceId"]], s["Name"])):
        reference = service["ReferenceId"]
        if merged.get(reference, reference) != reference:
            continue
        column = columns[reference]
        rows[column] = rows.get(column, -1) + 1
        nodes.append(_node(service, column, rows[column], minutes))
    names = {s["ReferenceId"]: s["Name"] for s in services}
    edges = []
    for service in services:
        caller = CLIENTS if service.get("Type") == "client" else service["Name"]
        for edge in service.get("Edges") or ():
            edges.append(
                {
                    "from": merged.get(service["ReferenceId"], service["ReferenceId"]),
                    "to": edge["ReferenceId"],
                    "fromName": caller,
                    "toName": names.get(edge["ReferenceId"]),
                    "stats": measures(edge.get("SummaryStatistics"), minutes),
                }
            )
    return {"nodes": nodes, "edges": edges}
