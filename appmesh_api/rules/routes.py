"""Rules for routes and gateway routes, including how they bind to their router's or
gateway's listeners (and what a listener change may not break)."""

from __future__ import annotations

from collections.abc import Mapping

from appmesh_api.errors import BadRequestException
from appmesh_api.rules.common import (
    GATEWAY_ROUTE_KINDS,
    HTTP_RETRY_EVENTS,
    MAX_NAMES_LISTED,
    RESERVED_PREFIXES,
    ROUTE_KINDS,
    Spec,
    check_duration,
    check_timeout,
    fail,
    fields,
    item,
    present_fields,
)


def _route_kind(spec: Spec, kinds: Mapping[str, str]) -> str:
    """RouteSpec/GatewayRouteSpec are not model unions, yet "Specify one route type"."""
    found = present_fields(spec, kinds)
    if len(found) != 1:
        fail("spec", f"Specify exactly one of: {fields(kinds)} ({len(found)} specified).")
    return found[0]


def _kind_of(spec: Spec, kinds: Mapping[str, str]) -> str | None:
    return next((key for key in kinds if spec.get(key) is not None), None)


def _match_port(spec: Spec, kinds: Mapping[str, str]) -> int | None:
    kind = _kind_of(spec, kinds)
    return None if kind is None else (spec[kind].get("match") or {}).get("port")


def _bind_listener(
    kind: str, protocol: str, port: int | None, parent: Spec, label: str, where: str
) -> None:
    """Find the listener a route serves (by ``match.port``) and compare protocols.

    Choice (UNCONFIRMED): a parent without listeners (legal in the model for
    routers) accepts any route kind, since there is nothing to compare against.
    """
    listeners = parent.get("listeners") or []
    if not listeners:
        return
    if port is None:
        if len(listeners) > 1:
            fail(
                f"{where}.match.port",
                f"{label} has {len(listeners)} listeners, so the route must define a port match.",
            )
        listener = listeners[0]
    else:
        found = [item for item in listeners if item["portMapping"]["port"] == port]
        if not found:
            ports = [item["portMapping"]["port"] for item in listeners]
            fail(f"{where}.match.port", f"Port {port} is not a listener port of {label} {ports}.")
        listener = found[0]
    actual = listener["portMapping"]["protocol"]
    if actual != protocol:
        fail(
            where,
            f"Route type {kind} needs a listener with protocol {protocol}, but the listener "
            f"on port {listener['portMapping']['port']} of {label} uses {actual}.",
        )


def _check_against_routes(
    parent: Spec, routes: Mapping[str, Spec], kinds: Mapping[str, str], words: tuple[str, str, str]
) -> None:
    """Shared body of the two ``*_listeners_against_routes`` checks."""
    resource, parent_label, name_word = words
    listeners = parent.get("listeners") or []
    if len(listeners) > 1:
        missing = sorted(name for name, spec in routes.items() if _match_port(spec, kinds) is None)
        if missing:
            shown = ", ".join(missing[:MAX_NAMES_LISTED])
            raise BadRequestException(
                f"All {resource}s for this {parent_label} must define a port match before "
                f"adding multiple listeners to this {parent_label}. {len(missing)} {resource}(s) "
                f"are missing port. Listing up to {MAX_NAMES_LISTED} {name_word} names: [{shown}]"
            )
    # Choice (UNCONFIRMED): an update must also leave every existing route on a listener
    # of its own protocol, or the route would silently stop serving.
    for name, spec in sorted(routes.items()):
        kind = _kind_of(spec, kinds)
        if kind is not None:
            port = _match_port(spec, kinds)
            where = f"{resource} {name}: spec.{kind}"
            _bind_listener(kind, kinds[kind], port, parent, f"this {parent_label}", where)


def check_router_listeners_against_routes(router_spec: dict, routes: dict[str, dict]) -> None:
    """On UpdateVirtualRouter: the new listeners must still fit every existing route."""
    _check_against_routes(router_spec, routes, ROUTE_KINDS, ("Route", "Virtual Router", "route"))


def check_gateway_listeners_against_routes(gateway_spec: dict, routes: dict[str, dict]) -> None:
    """On UpdateVirtualGateway: the same rule for gateway routes [UG:gateway-routes]."""
    words = ("Gateway Route", "Virtual Gateway", "gateway route")
    _check_against_routes(gateway_spec, routes, GATEWAY_ROUTE_KINDS, words)


def _check_ranges(matchers: list[Spec] | None, where: str) -> None:
    """Header/metadata ranges are [start, end), so end must exceed start."""
    for index, matcher in enumerate(matchers or []):
        found = (matcher.get("match") or {}).get("range")
        if found is not None and found["end"] <= found["start"]:
            fail(
                f"{item(where, index)}.match.range",
                f"Range end ({found['end']}) must be greater than start ({found['start']}).",
            )


def _check_query_parameters(parameters: list[Spec] | None, where: str) -> None:
    for index, parameter in enumerate(parameters or []):
        if not parameter["name"]:
            fail(f"{item(where, index)}.name", "The query parameter name must not be empty.")


def _check_path_match(match: Spec, where: str, gateway: bool) -> None:
    """HTTP path matching: prefix XOR path for routes; path is exact XOR regex.

    Choice (UNCONFIRMED): at most one of prefix/path. A route with neither is
    accepted and routes as prefix ``/`` (``service.py`` fills it in), because
    App Mesh's backend did so and CDK relies on it (aws-cdk PR #15395) when a
    match names only headers. A gateway route may match on hostname alone.
    """
    chosen = present_fields(match, ("prefix", "path"))
    if len(chosen) > 1:
        fail(where, "Specify exactly one of prefix or path, not both.")
    prefix = match.get("prefix")
    if prefix is not None and not prefix.startswith("/"):
        fail(f"{where}.prefix", f"Prefix must start with '/', got '{prefix}'.")
    path = match.get("path")
    if path is not None:
        if len(present_fields(path, ("exact", "regex"))) != 1:
            fail(f"{where}.path", "Specify exactly one of exact or regex.")
        # Regexes are not compiled: Envoy uses RE2, whose syntax Python's re does not match.
        if path.get("exact") is not None and not path["exact"].startswith("/"):
            fail(f"{where}.path.exact", f"Exact path must start with '/', got '{path['exact']}'.")
    _check_ranges(match.get("headers"), f"{where}.headers")
    _check_query_parameters(match.get("queryParameters"), f"{where}.queryParameters")


def _check_service_name(match: Spec, where: str) -> None:
    """gRPC: a method is only meaningful inside a service; empty names match nothing."""
    if match.get("serviceName") == "":
        fail(f"{where}.serviceName", "The service name must not be empty.")
    if match.get("methodName") is not None and match.get("serviceName") is None:
        fail(f"{where}.methodName", "A methodName match requires a serviceName.")
    _check_ranges(match.get("metadata"), f"{where}.metadata")


def check_route_spec(spec: dict, router_spec: dict, router_name: str) -> None:
    """CreateRoute/UpdateRoute: one route kind that fits the router's listener."""
    kind = _route_kind(spec, ROUTE_KINDS)
    body = spec[kind]
    where = f"spec.{kind}"
    match = body.get("match") or {}
    label = f"Virtual Router {router_name}"
    _bind_listener(kind, ROUTE_KINDS[kind], match.get("port"), router_spec, label, where)
    if kind in ("httpRoute", "http2Route"):
        _check_path_match(match, f"{where}.match", gateway=False)
        if kind == "httpRoute" and match.get("scheme") is not None:
            # [M] scheme: "Applicable only for HTTP2 routes."
            fail(f"{where}.match.scheme", "A scheme match is only allowed on http2Route.")
    elif kind == "grpcRoute":
        _check_service_name(match, f"{where}.match")
    _check_weighted_targets(body["action"]["weightedTargets"], f"{where}.action.weightedTargets")
    _check_retry_policy(body.get("retryPolicy"), kind, f"{where}.retryPolicy")
    check_timeout(body.get("timeout"), f"{where}.timeout")


def _check_weighted_targets(targets: list[Spec], where: str) -> None:
    """Weights are relative and must sum to at most 100 [M].

    Choice (UNCONFIRMED): a zero total is rejected (one zero weight is fine, per
    roadmap#133) since such a route sends traffic nowhere and Envoy refuses weighted
    clusters whose weights sum to 0. The same node and port twice is rejected too.
    """
    total = sum(target["weight"] for target in targets)
    if total > 100:
        fail(where, f"The total weight of all targets must be at most 100, got {total}.")
    if total == 0:
        fail(where, "At least one target must have a weight greater than 0.")
    seen: set[tuple[str, int | None]] = set()
    for index, target in enumerate(targets):
        key = (target["virtualNode"], target.get("port"))
        if key in seen:
            fail(
                f"{item(where, index)}.virtualNode",
                f"Virtual node {key[0]} is targeted more than once on the same port.",
            )
        seen.add(key)


def _check_retry_policy(policy: Spec | None, kind: str, where: str) -> None:
    """[M]: "Specify at least one value for at least one of the types of RetryEvents"."""
    if policy is None:
        return
    kinds = ["httpRetryEvents", "tcpRetryEvents"]
    if kind == "grpcRoute":
        kinds.insert(0, "grpcRetryEvents")
    if not present_fields(policy, kinds):
        fail(where, f"Specify at least one of: {fields(kinds)}.")
    for index, event in enumerate(policy.get("httpRetryEvents") or []):
        if event not in HTTP_RETRY_EVENTS:
            fail(
                item(f"{where}.httpRetryEvents", index),
                f"'{event}' is not a valid HTTP retry event; "
                f"use one of [{fields(HTTP_RETRY_EVENTS)}].",
            )
    check_duration(policy["perRetryTimeout"], f"{where}.perRetryTimeout")


def check_gateway_route_spec(spec: dict, gateway_spec: dict, gateway_name: str) -> None:
    """CreateGatewayRoute/UpdateGatewayRoute: matches, rewrites and reserved names."""
    kind = _route_kind(spec, GATEWAY_ROUTE_KINDS)
    body = spec[kind]
    where = f"spec.{kind}"
    match = body["match"]
    label = f"Virtual Gateway {gateway_name}"
    _bind_listener(kind, GATEWAY_ROUTE_KINDS[kind], match.get("port"), gateway_spec, label, where)
    _check_hostname_match(match.get("hostname"), f"{where}.match.hostname")
    rewrite = body["action"].get("rewrite") or {}
    _check_hostname_rewrite(rewrite.get("hostname"), f"{where}.action.rewrite.hostname")
    if kind == "grpcRoute":
        _check_service_name(match, f"{where}.match")
        _check_reserved_service(match.get("serviceName"), f"{where}.match.serviceName")
        return
    _check_path_match(match, f"{where}.match", gateway=True)
    _check_reserved_path(match, f"{where}.match")
    _check_path_rewrite(rewrite, match, where)


def _check_hostname_match(hostname: Spec | None, where: str) -> None:
    if hostname is not None and len(present_fields(hostname, ("exact", "suffix"))) != 1:
        fail(where, "Specify exactly one of exact or suffix.")


def _check_hostname_rewrite(hostname: Spec | None, where: str) -> None:
    """Choice (UNCONFIRMED): an empty hostname rewrite says nothing, so it is rejected."""
    if hostname is not None and hostname.get("defaultTargetHostname") is None:
        fail(f"{where}.defaultTargetHostname", "Specify ENABLED or DISABLED.")


def _check_reserved_path(match: Spec, where: str) -> None:
    """[UG:gateway-routes] reserves /aws-appmesh* and /aws-app-mesh* for App Mesh.

    Choice: the UG names prefix matches only; exact paths are held to it as well.
    """
    candidates = (
        ("prefix", match.get("prefix")),
        ("path.exact", (match.get("path") or {}).get("exact")),
    )
    for field, value in candidates:
        if value is not None and value.startswith(RESERVED_PREFIXES):
            fail(
                f"{where}.{field}",
                f"'{value}' is reserved: paths starting with {fields(RESERVED_PREFIXES)} "
                "are reserved for App Mesh.",
            )


def _check_reserved_service(name: str | None, where: str) -> None:
    """[UG:gateway-routes] reserves gRPC service names aws.app-mesh* and aws.appmesh."""
    if name is not None and (name == "aws.appmesh" or name.startswith("aws.app-mesh")):
        fail(where, f"Service name '{name}' is reserved for App Mesh.")


def _check_path_rewrite(rewrite: Spec, match: Spec, where: str) -> None:
    """Prefix rewrites go with prefix matches, path rewrites with path matches [UG]."""
    where = f"{where}.action.rewrite"
    prefix = rewrite.get("prefix")
    if prefix is not None:
        if match.get("prefix") is None:
            fail(f"{where}.prefix", "A prefix rewrite requires a prefix match.")
        if len(present_fields(prefix, ("defaultPrefix", "value"))) != 1:
            fail(f"{where}.prefix", "Specify exactly one of defaultPrefix or value.")
        value = prefix.get("value")
        if value is not None and not (value.startswith("/") and value.endswith("/")):
            fail(
                f"{where}.prefix.value",
                f"Prefix rewrite must start and end with '/', got '{value}'.",
            )
    path = rewrite.get("path")
    if path is not None:
        if match.get("path") is None:
            fail(f"{where}.path", "A path rewrite requires a path match.")
        exact = path.get("exact")
        if exact is None or not exact.startswith("/"):
            fail(f"{where}.path.exact", f"Path rewrite must start with '/', got '{exact}'.")
