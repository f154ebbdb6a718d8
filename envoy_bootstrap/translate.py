"""The entry point: App Mesh resources in, Envoy v3 resources out, for one proxy."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from envoy_bootstrap import clusters as cluster_builders
from envoy_bootstrap import gateway_routes, listeners, names, routes, tls
from envoy_bootstrap.egress import EgressPlan, plan_egress
from envoy_bootstrap.snapshot import (
    HTTP_FAMILY,
    MeshSnapshot,
    NodeIdentity,
    listener_at,
    own_owner,
    port_mappings,
)

Resource = dict[str, Any]


class ResourceNotFound(LookupError):
    """The proxy names a virtual node or gateway the mesh does not have; App Mesh closed
    such streams with gRPC status 3 (NOT_FOUND)."""


@dataclass(frozen=True)
class EnvoyResources:
    """Everything one proxy receives, each resource an Envoy v3 JSON dict with ``@type``."""

    listeners: tuple[Resource, ...]
    route_configurations: tuple[Resource, ...]
    clusters: tuple[Resource, ...]
    endpoints: tuple[Resource, ...]
    secrets: tuple[Resource, ...]

    def all(self) -> tuple[Resource, ...]:
        return (
            self.listeners
            + self.route_configurations
            + self.clusters
            + self.endpoints
            + self.secrets
        )


def translate(snapshot: MeshSnapshot, node: NodeIdentity) -> EnvoyResources:
    """Translate the mesh for the virtual node or virtual gateway ``node``.

    The cycle collector is paused meanwhile. Translation allocates many small dicts that
    all stay alive, so the collector's full passes, each walking everything alive (the
    snapshot and all translated so far), ran more often as the output grew: that made
    an ALLOW_ALL node reaching 2,500 services cost twice its linear share (profiled with
    cProfile: under it, per-call time of trivial lookups grew 50x from 1,000 to 10,000 resources,
    and not with the collector off). Nothing here forms reference cycles."""
    with _collector_paused():
        return _translate(snapshot, node)


def _translate(snapshot: MeshSnapshot, node: NodeIdentity) -> EnvoyResources:
    if node.is_gateway:
        if not snapshot.gateway_spec(node.name):
            raise ResourceNotFound(
                f"virtual gateway {node.name!r} not found in {snapshot.mesh_name!r}"
            )
        return _gateway(snapshot, node)
    if not snapshot.has_node(node.name):
        raise ResourceNotFound(f"virtual node {node.name!r} not found in {snapshot.mesh_name!r}")
    return _virtual_node(snapshot, node)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _virtual_node(snapshot: MeshSnapshot, node: NodeIdentity) -> EnvoyResources:
    plan = plan_egress(snapshot, node)
    mesh = snapshot.mesh_name
    spec_listeners = snapshot.node_spec(node.name).get("listeners")
    mappings = port_mappings(spec_listeners)
    ingress = listeners.ingress_listener(snapshot, node)
    listener_list = ([ingress] if ingress else []) + [
        listeners.egress_listener(snapshot, node, plan)
    ]
    route_configs = [
        routes.ingress_route_configuration(mesh, node.name, m, listener_at(spec_listeners, m.port))
        for m in mappings
        if m.protocol in HTTP_FAMILY
    ]
    route_configs += [
        routes.port_route_configuration(mesh, plan, port, snapshot.egress_filter)
        for port in plan.http_ports()
    ]
    if plan.serves_proxy_port(node.egress_port):
        route_configs.append(routes.proxy_route_configuration(mesh, plan, node.egress_port, []))
    local = [cluster_builders.ingress_cluster(snapshot, node, m) for m in mappings]
    passthrough = (
        names.allow_all_cluster(mesh)
        if snapshot.egress_filter == "ALLOW_ALL"
        else names.amazonaws_cluster(mesh)
    )
    local.append(cluster_builders.passthrough_cluster(passthrough))
    return _assemble(snapshot, node, plan, listener_list, route_configs, local)


def _gateway(snapshot: MeshSnapshot, node: NodeIdentity) -> EnvoyResources:
    plan = plan_egress(snapshot, node)
    mesh = snapshot.mesh_name
    spec_listeners = snapshot.gateway_spec(node.name).get("listeners")
    mappings = port_mappings(spec_listeners)
    route_configs = gateway_routes.gateway_route_configurations(snapshot, node, plan)
    backend = gateway_routes.default_backend_virtual_host(snapshot, node, plan)
    route_configs.append(routes.proxy_route_configuration(mesh, plan, node.egress_port, backend))
    local = [
        cluster_builders.local_cluster(
            gateway_routes.self_redirect_cluster_name(snapshot, node, m, len(mappings) > 1),
            node.loopback,
            node.egress_port,
            m.protocol,
            listener_at(spec_listeners, m.port).get("connectionPool"),
        )
        for m in mappings
    ]
    listener_list = listeners.gateway_listeners(snapshot, node)
    return _assemble(snapshot, node, plan, listener_list, route_configs, local)


def _assemble(
    snapshot: MeshSnapshot,
    node: NodeIdentity,
    plan: EgressPlan,
    listener_list: list[Resource],
    route_configs: list[Resource],
    local_clusters: list[Resource],
) -> EnvoyResources:
    """Add the egress clusters and their endpoints, then the secrets everything cites."""
    egress_clusters: list[Resource] = []
    endpoints: list[Resource] = []
    for target, service in plan.targets().items():
        cluster, assignment = cluster_builders.egress_cluster(snapshot, node, target, service)
        egress_clusters.append(cluster)
        if assignment is not None:
            endpoints.append(assignment)
    all_clusters = sorted(local_clusters + egress_clusters, key=lambda c: c["name"])
    owner = own_owner(snapshot, node)
    secrets = tls.acm_secrets(listener_list + all_clusters, snapshot.certificates, owner)
    return EnvoyResources(
        listeners=tuple(listener_list),
        route_configurations=tuple(route_configs),
        clusters=tuple(all_clusters),
        endpoints=tuple(endpoints),
        secrets=secrets,
    )
