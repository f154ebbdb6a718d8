"""Recent traces as a table a person scans: id, root service, status, duration, request.

GetTraceSummaries answers with deep JSON (service ids, annotations, histograms); to pick the
trace worth opening one wants the entry point, whether it failed, how long it took and what
was asked. ``row`` extracts that from a TraceSummary (boto3's or the server's own), so the
CLI table and the console list show the same thing.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from appmesh_api.views.waterfall import milliseconds

Summary = dict[str, Any]


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None


def status_word(summary: Summary) -> str:
    """``200 ok``, ``503 fault``, ``404 error``: the root's HTTP status and outcome."""
    if summary.get("HasFault"):
        word = "fault"
    elif summary.get("HasThrottle") and summary.get("HasError"):
        word = "throttle"
    elif summary.get("HasError"):
        word = "error"
    else:
        word = "partial" if summary.get("IsPartial") else "ok"
    status = (summary.get("Http") or {}).get("HttpStatus")
    return f"{status} {word}" if status else word


def row(summary: Summary) -> dict[str, Any]:
    """The facts of one trace the list shows."""
    http = summary.get("Http") or {}
    request = " ".join(str(p) for p in (http.get("HttpMethod"), http.get("HttpURL")) if p)
    entry = summary.get("EntryPoint") or {}
    outcome = status_word(summary).split()[-1]
    return {
        "id": summary["Id"],
        "start": _epoch(summary.get("StartTime")),
        "root": entry.get("Name") or "?",
        "status": status_word(summary),
        "outcome": outcome,
        "duration": summary.get("Duration"),
        "responseTime": summary.get("ResponseTime"),
        "http": request,
        "services": [service.get("Name") for service in summary.get("ServiceIds") or ()],
    }


def recent(client: Any, minutes: float, expression: str | None = None) -> list[dict[str, Any]]:
    """Rows for the traces of the last ``minutes``, newest first, via a boto3 xray client."""
    end = time.time()
    params: dict[str, Any] = {"StartTime": end - minutes * 60, "EndTime": end + 60}
    if expression:
        params["FilterExpression"] = expression
    pages = client.get_paginator("get_trace_summaries").paginate(**params)
    return [row(summary) for page in pages for summary in page["TraceSummaries"]]


def documents(client: Any, trace_id: str) -> list[dict[str, Any]] | None:
    """A trace's segment documents via BatchGetTraces; None when the trace is unknown."""
    reply = client.batch_get_traces(TraceIds=[trace_id])
    for trace in reply.get("Traces") or ():
        if trace.get("Id") == trace_id:
            return [json.loads(segment["Document"]) for segment in trace.get("Segments") or ()]
    return None


def _clock(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%H:%M:%S", time.localtime(epoch))


def table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table, columns sized to their content."""
    header = ("TRACE ID", "TIME", "ROOT", "STATUS", "DURATION", "HTTP")
    cells = [
        (
            r["id"],
            _clock(r["start"]),
            r["root"],
            r["status"],
            milliseconds(r["duration"]),
            r["http"],
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *cells]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *cells]:
        lead = "  ".join(
            f"{value:>{w}}" if i == 4 else f"{value:<{w}}"
            for i, (value, w) in enumerate(zip(line, widths, strict=False))
        )
        lines.append(f"{lead}  {line[-1]}".rstrip())
    return "\n".join(lines)
