"""Route configurations of a proxy: ingress (to the local app) and egress (to services).

Egress has two kinds of route configuration:
- ``rds_egress_http_<port>`` per service port, for connections the proxy intercepted on
  their way to ``<service>:<port>`` (matched by original destination port). Domains are
  the service name with and without the port.
- ``rds_egress_http_<egress port>`` for connections made to the egress listener itself:
  a gateway's self-redirect (as in App Mesh's gateway dump) or an application using the
  proxy directly. Domains carry every service port, and the bare name (plus
  ``name:<egress port>``) goes to the service's first port.

Defaults: per-request timeout 15 s (``0`` disables), idle timeout 300 s (UG), App Mesh's
default retry policy when a route has none.
"""

from __future__ import annotations

from typing import Any

from envoy_bootstrap import durations, matches, names, retries
from envoy_bootstrap import envoy_types as types
from envoy_bootstrap.egress import EgressPlan, ServicePort, ServiceRoute
from envoy_bootstrap.snapshot import PortMapping, Spec

DEFAULT_REQUEST_TIMEOUT = "15s"
DEFAULT_IDLE_TIMEOUT = "300s"
PASSTHROUGH_TIMEOUT = "0s"  # UNCONFIRMED: passthrough traffic is not a mesh route; no cap


def route_timeouts(timeout: Spec | None) -> dict[str, str]:
    """``timeout`` and ``idle_timeout`` of a route action from an App Mesh timeout.

    gRPC routes get the same two and no ``max_grpc_timeout`` or ``max_stream_duration``
    (UNCONFIRMED: App Mesh documents only ``perRequest`` and ``idle``, and tells users to
    raise ``perRequest`` for long calls), so a client's ``grpc-timeout`` travels to the
    server, which enforces it, but does not shorten the proxy's route timeout."""
    timeout = timeout or {}
    per_request = timeout.get("perRequest")
    idle = timeout.get("idle")
    return {
        "timeout": durations.from_appmesh(per_request) if per_request else DEFAULT_REQUEST_TIMEOUT,
        "idle_timeout": durations.from_appmesh(idle) if idle else DEFAULT_IDLE_TIMEOUT,
    }


def idle_timeout(timeout: Spec | None) -> str:
    idle = (timeout or {}).get("idle")
    return durations.from_appmesh(idle) if idle else DEFAULT_IDLE_TIMEOUT


def ingress_route_configuration(
    mesh: str, node: str, mapping: PortMapping, listener: Spec
) -> dict[str, Any]:
    """``rds_ingress_<protocol>_<port>``: everything to the local app, with the
    listener's timeouts (App Mesh requires raising them on node and route together)."""
    cluster = names.ingress_cluster(mesh, node, mapping.protocol, mapping.port)
    timeout = (listener.get("timeout") or {}).get(mapping.protocol)
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster, **route_timeouts(timeout)}}
    vhost = {
        "name": names.ingress_virtual_host(mapping.protocol, mapping.port),
        "domains": ["*"],
        "routes": [route],
    }
    body = {
        "name": names.ingress_route_config(mapping.protocol, mapping.port),
        "virtual_hosts": [vhost],
    }
    return types.typed(types.ROUTE_CONFIGURATION, body)


def port_route_configuration(
    mesh: str, plan: EgressPlan, port: int, egress_filter: str
) -> dict[str, Any]:
    """``rds_egress_http_<port>`` for traffic intercepted toward a service port."""
    vhosts = [
        {
            "name": entry.service,
            "domains": [entry.service, f"{entry.service}:{port}"],
            "routes": envoy_routes(mesh, entry),
        }
        for entry in plan.http_services(port)
    ]
    vhosts.extend(passthrough_virtual_hosts(mesh, port, egress_filter))
    body = {"name": names.egress_route_config(port), "virtual_hosts": vhosts}
    return types.typed(types.ROUTE_CONFIGURATION, body)


def proxy_route_configuration(
    mesh: str, plan: EgressPlan, egress_port: int, extra_vhosts: list[dict[str, Any]]
) -> dict[str, Any]:
    """``rds_egress_http_<egress port>`` for connections made to the egress port itself."""
    vhosts: list[dict[str, Any]] = []
    taken: set[str] = set()
    for entry in plan.http_services():
        domains = [d for d in _proxy_domains(plan, entry, egress_port) if d not in taken]
        taken.update(domains)
        if domains:
            name = names.service_virtual_host(entry.service, entry.port, entry.several_ports)
            vhosts.append({"name": name, "domains": domains, "routes": envoy_routes(mesh, entry)})
    vhosts.extend(extra_vhosts)
    body = {"name": names.egress_route_config(egress_port), "virtual_hosts": vhosts}
    return types.typed(types.ROUTE_CONFIGURATION, body)


def passthrough_virtual_hosts(mesh: str, port: int, egress_filter: str) -> list[dict[str, Any]]:
    """Under DROP_ALL, ``*.amazonaws.com`` still passes; under ALLOW_ALL, everything."""
    if egress_filter == "ALLOW_ALL":
        return [_passthrough(names.ALLOW_ALL_VHOST, ["*"], names.allow_all_cluster(mesh))]
    domains = [names.AMAZONAWS_DOMAIN, f"{names.AMAZONAWS_DOMAIN}:{port}"]
    return [_passthrough(names.AMAZONAWS_VHOST, domains, names.amazonaws_cluster(mesh))]


def envoy_routes(
    mesh: str, entry: ServicePort, header: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """A service port's routes in App Mesh order. ``header`` adds a required header (the
    gateway's ``x-app-mesh-virtual-service``) and strips it before the upstream."""
    ordered = sorted(entry.routes, key=_route_order)
    return [_envoy_route(mesh, entry.service, route, header) for route in ordered]


def tcp_proxy_target(mesh: str, entry: ServicePort) -> dict[str, Any] | None:
    """The ``cluster``/``weighted_clusters`` and idle timeout of a TCP service port: its
    first route in App Mesh order. TCP weights must be positive in Envoy, so weight-0
    targets are dropped; a route whose weights are all 0 keeps its first target
    (UNCONFIRMED: App Mesh's handling of that case is unknown). None when the service
    port has no route with a target."""
    route = sorted(entry.routes, key=_route_order)[0] if entry.routes else None
    if route is None or not route.targets:
        return None
    weights = _cluster_weights(mesh, route)
    positive = [c for c in weights if c["weight"] > 0] or weights[:1]
    result: dict[str, Any] = (
        {"cluster": positive[0]["name"]}
        if len(positive) == 1
        else {"weighted_clusters": {"clusters": positive}}
    )
    result["idle_timeout"] = idle_timeout(route.body.get("timeout"))
    return result


def _route_order(route: ServiceRoute) -> tuple:
    match = route.body.get("match") or {}
    return matches.sort_key(route.priority, route.protocol, match, route.name)


def _envoy_route(
    mesh: str, service: str, route: ServiceRoute, header: tuple[str, str] | None
) -> dict[str, Any]:
    envoy_route: dict[str, Any] = {}
    if route.name:
        envoy_route["name"] = route.name
    envoy_route["match"] = matches.route_match(route.protocol, route.body.get("match") or {})
    if header:
        envoy_route["match"].setdefault("headers", []).append(
            matches.header_matcher(header[0], {"exact": header[1]})
        )
    envoy_route.update(_route_action(mesh, route))
    envoy_route["metadata"] = names.aggregate_stats("TargetVirtualService", service)
    if header:
        envoy_route["request_headers_to_remove"] = [header[0]]
    return envoy_route


def _route_action(mesh: str, route: ServiceRoute) -> dict[str, Any]:
    """Weighted clusters for router routes (weight-0 targets stay, as App Mesh sent them),
    a plain cluster for a virtual-node provider. Envoy rejects weights summing to 0, so
    such a route answers 503 like a service with no healthy upstream (UNCONFIRMED)."""
    weights = _cluster_weights(mesh, route)
    total = sum(c["weight"] for c in weights)
    if total == 0:
        return {"direct_response": {"status": 503}}
    action: dict[str, Any]
    if route.name:
        action = {"weighted_clusters": {"clusters": weights, "total_weight": total}}
    else:
        action = {"cluster": weights[0]["name"]}
    action.update(route_timeouts(route.body.get("timeout")))
    action["retry_policy"] = retries.retry_policy(route.protocol, route.body.get("retryPolicy"))
    return {"route": action}


def _cluster_weights(mesh: str, route: ServiceRoute) -> list[dict[str, Any]]:
    """One entry per target cluster; targets naming the same listener add up."""
    merged: dict[str, int] = {}
    for target, weight in route.targets:
        name = names.egress_cluster(mesh, target.node, target.protocol, target.port)
        merged[name] = merged.get(name, 0) + weight
    return [{"name": name, "weight": weight} for name, weight in merged.items()]


def _proxy_domains(plan: EgressPlan, entry: ServicePort, egress_port: int) -> list[str]:
    first_port = plan.first_http_port(entry.service)
    domains = [entry.service, f"{entry.service}:{egress_port}"] if entry.port == first_port else []
    domains.append(f"{entry.service}:{entry.port}")
    return list(dict.fromkeys(domains))


def _passthrough(name: str, domains: list[str], cluster: str) -> dict[str, Any]:
    action = {"cluster": cluster, "timeout": PASSTHROUGH_TIMEOUT}
    return {
        "name": name,
        "domains": domains,
        "routes": [{"match": {"prefix": "/"}, "route": action}],
    }
