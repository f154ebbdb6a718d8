"""App Mesh route matches as Envoy ``RouteMatch`` objects, and App Mesh's route order.

Envoy takes the first route that matches, so the order of routes is part of the match.
App Mesh documents that priority 0 is the highest, and (roadmap#77) that routes without
priorities are sorted by match length, longest first. Where unprioritised routes go among
prioritised ones is UNCONFIRMED: we put them after every prioritised route, which keeps a
user's explicit priorities in charge.
"""

from __future__ import annotations

from typing import Any

from envoy_bootstrap.snapshot import Spec


def header_matcher(name: str, method: Spec | None, invert: bool = False) -> dict[str, Any]:
    """One App Mesh header (or gRPC metadata) match as an Envoy ``HeaderMatcher``.

    A header with no match method matches when present. ``range`` is half-open
    ``[start, end)`` in both App Mesh and Envoy. Regexes are RE2 and, as in Envoy's
    ``safe_regex``, must match the whole value (the model's "must include" wording is
    UNCONFIRMED as substring semantics; App Mesh handed the regex to Envoy).
    """
    matcher: dict[str, Any] = {"name": name}
    method = method or {}
    if "exact" in method:
        matcher["string_match"] = {"exact": method["exact"]}
    elif "prefix" in method:
        matcher["string_match"] = {"prefix": method["prefix"]}
    elif "suffix" in method:
        matcher["string_match"] = {"suffix": method["suffix"]}
    elif "regex" in method:
        matcher["string_match"] = {"safe_regex": {"regex": method["regex"]}}
    elif "range" in method:
        bounds = method["range"]
        matcher["range_match"] = {"start": int(bounds["start"]), "end": int(bounds["end"])}
    else:
        matcher["present_match"] = True
    if invert:
        matcher["invert_match"] = True
    return matcher


def http_match(match: Spec) -> dict[str, Any]:
    """An ``HttpRouteMatch`` (route or gateway route) as an Envoy ``RouteMatch``.

    ``port`` selects which listener the route serves and ``hostname`` selects the virtual
    host, so neither appears here.
    """
    route_match = _path_match(match)
    headers = _pseudo_headers(match) + [
        header_matcher(h["name"], h.get("match"), bool(h.get("invert")))
        for h in match.get("headers") or ()
    ]
    if headers:
        route_match["headers"] = headers
    queries = [_query_matcher(q) for q in match.get("queryParameters") or ()]
    if queries:
        route_match["query_parameters"] = queries
    return route_match


def grpc_match(match: Spec) -> dict[str, Any]:
    """A ``GrpcRouteMatch`` as an Envoy ``RouteMatch``: gRPC calls are HTTP/2 POSTs to
    ``/<service>/<method>``, and metadata travels as headers."""
    service, method = match.get("serviceName"), match.get("methodName")
    if service and method:
        route_match: dict[str, Any] = {"path": f"/{service}/{method}"}
    elif service:
        route_match = {"prefix": f"/{service}/"}
    else:
        route_match = {"prefix": "/"}
    headers = [
        header_matcher(m["name"], m.get("match"), bool(m.get("invert")))
        for m in match.get("metadata") or ()
    ]
    if headers:
        route_match["headers"] = headers
    return route_match


def route_match(protocol: str, match: Spec) -> dict[str, Any]:
    return grpc_match(match) if protocol == "grpc" else http_match(match)


def sort_key(priority: int | None, protocol: str, match: Spec, name: str) -> tuple:
    """App Mesh's route order: prioritised routes by priority (0 first), then the rest by
    match length, longest first. Ties go to the route with more conditions (a header
    match is narrower), then to an exact path over a regex over a prefix, then by name so
    the output is stable."""
    return (
        priority is None,
        priority if priority is not None else 0,
        -match_length(protocol, match),
        -condition_count(match),
        _path_kind_rank(match),
        name,
    )


def match_length(protocol: str, match: Spec) -> int:
    if protocol == "grpc":
        return len(match.get("serviceName") or "") + len(match.get("methodName") or "")
    path = match.get("path") or {}
    return len(path.get("exact") or path.get("regex") or match.get("prefix") or "")


def condition_count(match: Spec) -> int:
    lists = ("headers", "queryParameters", "metadata")
    singles = ("method", "scheme", "hostname")
    return sum(len(match.get(key) or ()) for key in lists) + sum(key in match for key in singles)


def _path_kind_rank(match: Spec) -> int:
    path = match.get("path") or {}
    return 0 if "exact" in path else 1 if "regex" in path else 2


def _path_match(match: Spec) -> dict[str, Any]:
    path = match.get("path") or {}
    if "exact" in path:
        return {"path": path["exact"]}
    if "regex" in path:
        return {"safe_regex": {"regex": path["regex"]}}
    return {"prefix": match.get("prefix") or "/"}


def _pseudo_headers(match: Spec) -> list[dict[str, Any]]:
    headers = []
    if match.get("method"):
        headers.append({"name": ":method", "string_match": {"exact": match["method"]}})
    if match.get("scheme"):
        headers.append({"name": ":scheme", "string_match": {"exact": match["scheme"]}})
    return headers


def _query_matcher(query: Spec) -> dict[str, Any]:
    """Query parameters support ``exact`` only; without it the parameter must be present."""
    exact = (query.get("match") or {}).get("exact")
    if exact is None:
        return {"name": query["name"], "present_match": True}
    return {"name": query["name"], "string_match": {"exact": exact}}
