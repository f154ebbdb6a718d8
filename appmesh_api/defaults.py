"""Defaults App Mesh filled into specs it stored.

Kept apart from validation (``rules.py``): rules judge a spec, this completes it.
"""

from __future__ import annotations

import copy

from appmesh_api import kinds

_HTTP_KINDS = ("httpRoute", "http2Route")


def complete_spec(kind: kinds.Kind, spec: dict) -> dict:
    """Return ``spec`` with App Mesh's defaults filled in (the input is not modified).

    An HTTP route whose match names neither prefix nor path routes everything, as
    prefix ``/`` (App Mesh's backend did this; CDK emits such matches when a route
    matches only on headers). A gateway route with no prefix, path or hostname
    match likewise matches prefix ``/``.
    """
    if kind not in (kinds.ROUTE, kinds.GATEWAY_ROUTE):
        return spec
    completed = copy.deepcopy(spec)
    for route_kind in _HTTP_KINDS:
        match = (completed.get(route_kind) or {}).get("match")
        if match is None:
            continue
        named = ("prefix", "path") if kind is kinds.ROUTE else ("prefix", "path", "hostname")
        if not any(match.get(field) is not None for field in named):
            match["prefix"] = "/"
    return completed
