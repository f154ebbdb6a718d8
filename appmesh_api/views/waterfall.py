"""One trace laid out on a time line: a row per segment and subsegment, indented by caller.

X-Ray hands back a trace as separate segment documents, linked by ``parent_id`` (a segment
points at the caller's subsegment that made the call). A person wants the call tree on one
time axis: when each hop started, how long it took, and where it failed. ``layout`` builds
those rows (the console draws them as SVG bars); ``render`` draws them in a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from appmesh_api.xray.analysis import outcome
from appmesh_api.xray.documents import walk

Document = dict[str, Any]
Children = dict[str | None, list[Document]]  # by entity id, which a bad document may lack
CALL_NAMESPACES = ("remote", "aws")
COLORS = {"ok": "32", "error": "33", "throttle": "33", "fault": "31", "pending": "36"}


def outcome_word(entity: Document) -> str:
    """``ok``, ``error``, ``throttle``, ``fault`` or ``pending`` (still in progress)."""
    if entity.get("end_time") is None:
        return "pending"
    found = outcome(entity)
    if found.fault:
        return "fault"
    if found.throttle:
        return "throttle"
    return "error" if found.error else "ok"


def _status(entity: Document) -> int | None:
    status = ((entity.get("http") or {}).get("response") or {}).get("status")
    return status if isinstance(status, int) else None


def _children(segments: list[Document]) -> tuple[list[Document], Children]:
    """Roots, and each entity's children: embedded subsegments plus the segments it called."""
    index = {e.get("id"): e for segment in segments for e in walk(segment)}
    children: Children = {}
    for entity in index.values():
        children[entity.get("id")] = list(entity.get("subsegments") or ())
    roots = []
    for segment in segments:
        parent = segment.get("parent_id")
        if parent in index and parent != segment.get("id"):
            children[parent].append(segment)
        else:
            roots.append(segment)
    for found in children.values():
        found.sort(key=lambda entity: float(entity.get("start_time") or 0))
    roots.sort(key=lambda entity: float(entity.get("start_time") or 0))
    return roots, children


def _request(entity: Document) -> str:
    request = (entity.get("http") or {}).get("request") or {}
    return " ".join(str(part) for part in (request.get("method"), request.get("url")) if part)


def _row(entity: Document, depth: int, origin: float, segment: bool) -> dict[str, Any]:
    start = float(entity.get("start_time") or origin)
    end = entity.get("end_time")
    return {
        "id": entity.get("id"),
        "name": str(entity.get("name")),
        "depth": depth,
        "type": "segment" if segment else "subsegment",
        "call": not segment and entity.get("namespace") in CALL_NAMESPACES,
        "origin": entity.get("origin"),
        "offset": round(start - origin, 6),
        "duration": None if end is None else round(float(end) - start, 6),
        "status": _status(entity),
        "request": _request(entity),
        "outcome": outcome_word(entity),
    }


def layout(segments: Iterable[Document]) -> dict[str, Any]:
    """``{"start", "duration", "rows"}``; offsets and durations are seconds from the start."""
    segments = [s for s in segments if s.get("type") != "subsegment" or s.get("parent_id")]
    if not segments:
        return {"start": None, "duration": 0.0, "rows": []}
    roots, children = _children(segments)
    origin = min(float(e.get("start_time") or 0) for s in segments for e in walk(s))
    top_ids = {id(s) for s in segments}
    rows: list[dict[str, Any]] = []

    def visit(entity: Document, depth: int) -> None:
        rows.append(_row(entity, depth, origin, id(entity) in top_ids))
        for child in children.get(entity.get("id"), ()):
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    ends = [row["offset"] + (row["duration"] or 0) for row in rows]
    return {"start": origin, "duration": round(max(ends), 6), "rows": rows}


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"


def _bar(offset: float, duration: float | None, total: float, width: int) -> str:
    scale = width / total if total > 0 else 0
    first = min(int(offset * scale), width - 1)
    last = math.ceil((offset + (duration or 0)) * scale) if duration is not None else width
    last = max(first + 1, min(last, width))
    fill = "█" if duration is not None else "▒"
    return " " * first + fill * (last - first) + " " * (width - last)


def _is_last(rows: list[dict[str, Any]], index: int) -> bool:
    """No later sibling: the next row at this depth or shallower is shallower (or absent)."""
    depth = rows[index]["depth"]
    following = (row["depth"] for row in rows[index + 1 :] if row["depth"] <= depth)
    return next(following, -1) < depth


def _names(rows: list[dict[str, Any]]) -> list[str]:
    """Row names with tree connectors, so the call tree reads at a glance."""
    names: list[str] = []
    open_levels: list[
        bool
    ] = []  # open_levels[d]: the last row seen at depth d has siblings to come
    for index, row in enumerate(rows):
        depth, last = row["depth"], _is_last(rows, index)
        prefix = "".join("│  " if open_levels[d] else "   " for d in range(1, depth))
        if depth:
            prefix += "└─ " if last else "├─ "
        open_levels = [*open_levels[:depth], not last]
        names.append(prefix + ("→ " if row["call"] else "") + row["name"])
    return names


def _status_word(row: dict[str, Any]) -> str:
    return f"{row['status']} {row['outcome']}" if row["status"] else row["outcome"]


def render(waterfall: dict[str, Any], width: int = 100, color: bool = False) -> Iterator[str]:
    """Terminal lines: name (indented), a bar proportional to time, duration and status."""
    rows, total = waterfall["rows"], waterfall["duration"]
    names = _names(rows)
    name_width = min(max((len(n) for n in names), default=4), 48)
    bar_width = max(width - name_width - 24, 20)
    axis = f"0 ms{milliseconds(total):>{bar_width - 4}}"
    yield f"{'':<{name_width}}  {axis}"
    for name, row in zip(names, rows, strict=True):
        bar = _bar(row["offset"], row["duration"], total, bar_width)
        if color:
            bar = f"\033[{COLORS[row['outcome']]}m{bar}\033[0m"
        shown = name if len(name) <= name_width else name[: name_width - 1] + "…"
        duration = milliseconds(row["duration"])
        yield f"{shown:<{name_width}}  {bar} {duration:>8}  {_status_word(row)}"
