"""The CLI's ``mesh describe`` and ``traces``: fetch with boto3, draw, and explain failures.

``cli.py`` only parses arguments; everything a user sees from these commands is decided
here, including the one-line errors (no server, no such mesh, a bad filter) that replace
botocore's tracebacks.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any, TextIO

from botocore.exceptions import ClientError

from appmesh_api.views import endpoint as endpoints
from appmesh_api.views import traces as trace_views
from appmesh_api.views.meshtree import mesh_tree
from appmesh_api.views.resources import fetch
from appmesh_api.views.tree import draw
from appmesh_api.views.waterfall import layout, milliseconds, render


def _guarded(what: str, url: str, action: Callable[[], int]) -> int:
    """Run ``action``, turning connection and API errors into one line on stderr."""
    try:
        return action()
    except endpoints.UNREACHABLE:
        print(f"appmesh-local {what}: {endpoints.unreachable(url)}", file=sys.stderr)
        return 1
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Error")
        message = error.response.get("Error", {}).get("Message") or str(error)
        print(f"appmesh-local {what}: {code}: {message}", file=sys.stderr)
        return 2 if code in ("InvalidRequestException", "BadRequestException") else 1


def mesh_describe(
    mesh: str, url: str, owner: str | None, as_json: bool, out: TextIO | None = None
) -> int:
    """Print a mesh's resource tree (or its JSON)."""
    out = out or sys.stdout

    def run() -> int:
        tree = mesh_tree(fetch(endpoints.client("appmesh", url), mesh, owner))
        print(json.dumps(tree, indent=2, default=str) if as_json else draw(tree), file=out)
        return 0

    return _guarded("mesh describe", url, run)


def trace_list(
    url: str, minutes: float, expression: str | None, as_json: bool, out: TextIO | None = None
) -> int:
    """Print the recent traces, newest first."""
    out = out or sys.stdout

    def run() -> int:
        rows = trace_views.recent(endpoints.client("xray", url), minutes, expression)
        if as_json:
            print(json.dumps(rows, indent=2), file=out)
        elif not rows:
            where = f" matching {expression!r}" if expression else ""
            print(f"no traces{where} in the last {minutes:g} minutes", file=out)
        else:
            print(trace_views.table(rows), file=out)
        return 0

    return _guarded("traces", url, run)


def _header(trace_id: str, waterfall: dict[str, Any]) -> str:
    rows = waterfall["rows"]
    root = rows[0] if rows else {}
    outcome = f"{root.get('status') or ''} {root.get('outcome', '')}".strip()
    request = f"  {root['request']} → {outcome}" if root.get("request") else f"  {outcome}"
    segments = sum(1 for row in rows if row["type"] == "segment")
    return f"trace {trace_id}  {milliseconds(waterfall['duration'])}  {segments} segments{request}"


def _colored(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR")


def trace_waterfall(url: str, trace_id: str, as_json: bool, out: TextIO | None = None) -> int:
    """Print one trace as a waterfall of its segments and subsegments."""
    out = out or sys.stdout

    def run() -> int:
        found = trace_views.documents(endpoints.client("xray", url), trace_id)
        if found is None:
            print(
                f"appmesh-local traces: no trace {trace_id} for this account and region "
                "(list recent ones with `appmesh-local traces`)",
                file=sys.stderr,
            )
            return 1
        waterfall = layout(found)
        if as_json:
            print(json.dumps({"id": trace_id, **waterfall}, indent=2), file=out)
            return 0
        width = shutil.get_terminal_size((110, 24)).columns
        print(_header(trace_id, waterfall), file=out)
        for line in render(waterfall, width, _colored(out)):
            print(line, file=out)
        return 0

    return _guarded("traces", url, run)
