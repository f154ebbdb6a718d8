"""A virtual gateway's ingress route configurations, built from its gateway routes.

The shape follows a published App Mesh gateway config dump: each gateway listener gets
``rds_ingress_<protocol>_<port>`` whose routes send everything to the gateway's
``self_redirect`` cluster (its own egress listener), after rewriting:
- Host becomes the target virtual service name unless ``defaultTargetHostname`` is
  DISABLED; then the Host is kept and ``x-app-mesh-virtual-service`` names the service,
  which the egress side routes on (``default_backend`` virtual host).
- A prefix match with the default prefix rewrite strips the matched prefix to ``/``;
  App Mesh emitted the prefix both with and without its trailing slash, so
  ``/chapter`` and ``/chapter/1`` both work (``/`` and ``/1``).
- A prefix ``value`` replaces the prefix; ``defaultPrefix: DISABLED`` keeps it.
- Exact and regex path matches are rewritten only by an explicit ``path`` rewrite.
- The route timeout is the longest per-request timeout of the target's routes, so the
  gateway never cuts a request its target route would still wait for (the dump shows
  15 s on routes whose target service has routes, and none where it has no routes).
Hostname matches become virtual hosts; the connection manager strips the port from Host.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from envoy_bootstrap import durations, matches, names
from envoy_bootstrap import envoy_types as types
from envoy_bootstrap.egress import EgressPlan
from envoy_bootstrap.routes import envoy_routes
from envoy_bootstrap.snapshot import (
    GATEWAY_ROUTE_KINDS,
    MeshSnapshot,
    NodeIdentity,
    PortMapping,
    Spec,
    port_mappings,
)

_FIFTEEN_SECONDS = 15 * 1_000_000_000


@dataclass(frozen=True)
class _Entry:
    """One Envoy route of a gateway, with what decides its virtual host and order."""

    order: tuple
    hostname: Spec
    route: dict[str, Any]


def gateway_route_configurations(
    snapshot: MeshSnapshot, identity: NodeIdentity, plan: EgressPlan
) -> list[dict[str, Any]]:
    """One ``rds_ingress_<protocol>_<port>`` per gateway listener."""
    mappings = port_mappings(snapshot.gateway_spec(identity.name).get("listeners"))
    return [
        _listener_route_configuration(snapshot, identity, plan, m, len(mappings) > 1)
        for m in mappings
    ]


def self_redirect_cluster_name(
    snapshot: MeshSnapshot, identity: NodeIdentity, mapping: PortMapping, several: bool
) -> str:
    listener_port = mapping.port if several else None
    return names.self_redirect_cluster(
        snapshot.mesh_name, identity.name, mapping.protocol, identity.egress_port, listener_port
    )


def default_backend_virtual_host(
    snapshot: MeshSnapshot, identity: NodeIdentity, plan: EgressPlan
) -> list[dict[str, Any]]:
    """The egress ``default_backend`` virtual host: routes of every service a gateway
    route reaches with its Host kept, selected by ``x-app-mesh-virtual-service``."""
    routes: list[dict[str, Any]] = []
    for service, port in _header_routed_targets(snapshot, identity):
        for entry in plan.http_services():
            if entry.service == service and port in (None, entry.port):
                header = (names.VIRTUAL_SERVICE_HEADER, _authority(service, port))
                routes.extend(envoy_routes(snapshot.mesh_name, entry, header))
                break
    if not routes:
        return []
    return [{"name": names.DEFAULT_BACKEND_VHOST, "domains": ["*"], "routes": routes}]


def _listener_route_configuration(
    snapshot: MeshSnapshot,
    identity: NodeIdentity,
    plan: EgressPlan,
    mapping: PortMapping,
    several: bool,
) -> dict[str, Any]:
    cluster = self_redirect_cluster_name(snapshot, identity, mapping, several)
    entries: list[_Entry] = []
    for name, spec in snapshot.gateway_route_specs(identity.name):
        body = _body_for(spec, mapping)
        if body is not None:
            entries.extend(
                _entries(name, spec.get("priority"), mapping.protocol, body, cluster, plan)
            )
    body = {
        "name": names.ingress_route_config(mapping.protocol, mapping.port),
        "virtual_hosts": _virtual_hosts(entries),
    }
    return types.typed(types.ROUTE_CONFIGURATION, body)


def _body_for(spec: Spec, mapping: PortMapping) -> Spec | None:
    """The gateway route body serving this listener: same protocol, matching port."""
    for kind, protocol in GATEWAY_ROUTE_KINDS.items():
        if kind in spec and protocol == mapping.protocol:
            port = (spec[kind].get("match") or {}).get("port")
            return spec[kind] if port in (None, mapping.port) else None
    return None


def _entries(
    name: str, priority: int | None, protocol: str, body: Spec, cluster: str, plan: EgressPlan
) -> list[_Entry]:
    match = body.get("match") or {}
    action = body.get("action") or {}
    base = _base_action(action, cluster, plan)
    entries = []
    for route_match, rewrite in _matches_and_rewrites(protocol, match, action.get("rewrite") or {}):
        route_action = {**base, **rewrite}
        route = {
            "name": name,
            "match": route_match,
            "route": route_action,
            **_host_handling(action),
        }
        order_match = {**match, "prefix": route_match.get("prefix", match.get("prefix"))}
        order = matches.sort_key(priority, protocol, order_match, name)
        entries.append(_Entry(order, match.get("hostname") or {}, route))
    return entries


def _base_action(action: Spec, cluster: str, plan: EgressPlan) -> dict[str, Any]:
    service, port = _target(action)
    route_action: dict[str, Any] = {"cluster": cluster}
    if not _keeps_host(action):
        route_action["host_rewrite_literal"] = _authority(service, port)
    timeout = _target_timeout(plan, service, port)
    if timeout is not None:
        route_action["timeout"] = timeout
    return route_action


def _host_handling(action: Spec) -> dict[str, Any]:
    """A route keeping the client's Host names its target in a header instead."""
    if not _keeps_host(action):
        return {}
    header = {"key": names.VIRTUAL_SERVICE_HEADER, "value": _authority(*_target(action))}
    return {
        "request_headers_to_add": [
            {"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ]
    }


def _matches_and_rewrites(protocol: str, match: Spec, rewrite: Spec) -> list[tuple[dict, dict]]:
    """Envoy matches of one gateway route, each with its path rewrite."""
    route_match = matches.route_match(protocol, match)
    if protocol == "grpc":
        return [(route_match, {})]
    path_rewrite = (rewrite.get("path") or {}).get("exact")
    if path_rewrite is not None:
        return [(route_match, _full_path_rewrite(route_match, path_rewrite))]
    if "prefix" not in route_match or (match.get("path") or {}):
        return [(route_match, {})]
    prefix = route_match["prefix"]
    prefix_rewrite = rewrite.get("prefix") or {}
    if "value" in prefix_rewrite:
        return [(route_match, {"prefix_rewrite": prefix_rewrite["value"]})]
    if prefix_rewrite.get("defaultPrefix") == "DISABLED":
        return [(route_match, {"prefix_rewrite": prefix})]
    stem = prefix.rstrip("/")
    if not stem:
        return [(route_match, {"prefix_rewrite": "/"})]
    twin = copy.deepcopy(route_match)
    return [
        ({**route_match, "prefix": stem + "/"}, {"prefix_rewrite": "/"}),
        ({**twin, "prefix": stem}, {"prefix_rewrite": "/"}),
    ]


def _full_path_rewrite(route_match: dict, path: str) -> dict[str, Any]:
    if "path" in route_match:
        return {"prefix_rewrite": path}
    return {"regex_rewrite": {"pattern": {"regex": "^.*$"}, "substitution": path}}


def _keeps_host(action: Spec) -> bool:
    hostname = (action.get("rewrite") or {}).get("hostname") or {}
    return hostname.get("defaultTargetHostname") == "DISABLED"


def _authority(service: str, port: int | None) -> str:
    """A target as a Host value: the service name, with the target port if one is set."""
    return f"{service}:{port}" if port else service


def _target(action: Spec) -> tuple[str, int | None]:
    target = action.get("target") or {}
    service = (target.get("virtualService") or {}).get("virtualServiceName", "")
    return str(service), target.get("port")


def _target_timeout(plan: EgressPlan, service: str, port: int | None) -> str | None:
    entries = [e for e in plan.http_services() if e.service == service and port in (None, e.port)]
    if not entries or not entries[0].routes:
        return None
    nanos = [_per_request_nanos(route.body) for route in entries[0].routes]
    return "0s" if 0 in nanos else durations.from_nanos(max(nanos))


def _per_request_nanos(body: Spec) -> int:
    per_request = (body.get("timeout") or {}).get("perRequest")
    return durations.appmesh_nanos(per_request) if per_request else _FIFTEEN_SECONDS


def _header_routed_targets(
    snapshot: MeshSnapshot, identity: NodeIdentity
) -> list[tuple[str, int | None]]:
    found: dict[tuple[str, int | None], None] = {}
    for _, spec in snapshot.gateway_route_specs(identity.name):
        for kind in GATEWAY_ROUTE_KINDS:
            action = (spec.get(kind) or {}).get("action") or {}
            if action and _keeps_host(action):
                found[_target(action)] = None
    return sorted(found, key=lambda t: (t[0], t[1] or 0))


def _virtual_hosts(entries: list[_Entry]) -> list[dict[str, Any]]:
    """Hostname-specific virtual hosts (exact, then suffix, longest first), each also
    holding the routes that would match its hosts anyway, then ``self_redirect``."""
    generic = [e for e in entries if not e.hostname]
    exact = sorted({e.hostname["exact"] for e in entries if "exact" in e.hostname})
    suffixes = sorted(
        {e.hostname["suffix"] for e in entries if "suffix" in e.hostname},
        key=lambda s: (-len(s), s),
    )
    vhosts = []
    for host in exact:
        chosen = [e for e in entries if e.hostname and _host_matches(e.hostname, host)]
        vhosts.append(_vhost(host, [host], chosen + generic))
    for suffix in suffixes:
        chosen = [
            e for e in entries if "suffix" in e.hostname and suffix.endswith(e.hostname["suffix"])
        ]
        vhosts.append(_vhost("*" + suffix, ["*" + suffix], chosen + generic))
    vhosts.append(_vhost(names.SELF_REDIRECT_VHOST, ["*"], generic))
    return vhosts


def _host_matches(hostname: Spec, host: str) -> bool:
    if "exact" in hostname:
        return hostname["exact"] == host
    return host.endswith(hostname.get("suffix", "\0"))


def _vhost(name: str, domains: list[str], entries: list[_Entry]) -> dict[str, Any]:
    ordered = sorted(entries, key=lambda e: e.order)
    # A route may sit in several virtual hosts; each gets its own copy.
    return {"name": name, "domains": domains, "routes": [copy.deepcopy(e.route) for e in ordered]}
