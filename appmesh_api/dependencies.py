"""References between resources: what must exist, and what blocks a delete.

Reference §1.4 and §1.5: route targets, virtual service providers and gateway
route targets must exist when written (NotFoundException); a resource that
something else still points at cannot be deleted (ResourceInUseException).
Backends are deliberately *not* checked: App Mesh let a node name a virtual
service that does not exist yet (aws-app-mesh-examples#92).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from appmesh_api import kinds
from appmesh_api.errors import NotFoundException, ResourceInUseException
from appmesh_api.store import Key, MeshKey, Store, Tally

_ROUTE_KINDS = ("httpRoute", "http2Route", "grpcRoute", "tcpRoute")
_GATEWAY_ROUTE_KINDS = ("httpRoute", "http2Route", "grpcRoute")


def route_target_nodes(spec: dict[str, Any]) -> Iterator[str]:
    for route_kind in _ROUTE_KINDS:
        action = (spec.get(route_kind) or {}).get("action") or {}
        for target in action.get("weightedTargets") or ():
            yield target["virtualNode"]


def gateway_route_target_service(spec: dict[str, Any]) -> str | None:
    for route_kind in _GATEWAY_ROUTE_KINDS:
        action = (spec.get(route_kind) or {}).get("action") or {}
        service = (action.get("target") or {}).get("virtualService") or {}
        if service.get("virtualServiceName"):
            return service["virtualServiceName"]
    return None


def provider_of(spec: dict[str, Any]) -> tuple[str, str] | None:
    """``("virtualNode", name)`` or ``("virtualRouter", name)`` for a virtual service spec."""
    provider = spec.get("provider") or {}
    if "virtualNode" in provider:
        return "virtualNode", provider["virtualNode"]["virtualNodeName"]
    if "virtualRouter" in provider:
        return "virtualRouter", provider["virtualRouter"]["virtualRouterName"]
    return None


def referenced_keys(mesh: MeshKey, kind: kinds.Kind, spec: dict) -> set[Key]:
    """The resources ``spec`` points at, which may not be deleted while it does."""
    if kind is kinds.ROUTE:
        return {Key(*mesh, "virtualNode", "", node) for node in route_target_nodes(spec)}
    if kind is kinds.VIRTUAL_SERVICE:
        provider = provider_of(spec)
        return {Key(*mesh, provider[0], "", provider[1])} if provider else set()
    if kind is kinds.GATEWAY_ROUTE:
        service = gateway_route_target_service(spec)
        return {Key(*mesh, "virtualService", "", service)} if service else set()
    return set()


#: Kinds that other resources point at (route targets, providers, gateway route targets).
REFERABLE = frozenset({"virtualNode", "virtualRouter", "virtualService"})


def contents(key: Key) -> tuple[Tally, ...]:
    """What must be empty before ``key`` is deleted: a mesh's top-level resources, a
    router's routes, a gateway's gateway routes (the delete checks below, as tallies)."""
    if key.kind == "mesh":
        top = ("virtualService", "virtualRouter", "virtualNode", "virtualGateway")
        return tuple(Tally(*key.mesh_key, kind, "") for kind in top)
    if key.kind == "virtualRouter":
        return (Tally(*key.mesh_key, "route", key.name),)
    if key.kind == "virtualGateway":
        return (Tally(*key.mesh_key, "gatewayRoute", key.name),)
    return ()


def check_references(store: Store, mesh: MeshKey, kind: kinds.Kind, spec: dict) -> None:
    """Raise NotFoundException when ``spec`` points at a resource the mesh lacks."""
    if kind is kinds.ROUTE:
        for node in route_target_nodes(spec):
            if node not in store.children(mesh, "virtualNode"):
                raise NotFoundException(f"VirtualNode with name {node} is missing")
    elif kind is kinds.VIRTUAL_SERVICE:
        provider = provider_of(spec)
        if provider and provider[1] not in store.children(mesh, provider[0]):
            label = kinds.BY_KEY[provider[0]].api_name
            raise NotFoundException(
                f"{label} with name {provider[1]} is not present under mesh {mesh.mesh} "
                f"for account {mesh.mesh_owner}; create it before naming it as the provider"
            )
    elif kind is kinds.GATEWAY_ROUTE:
        service = gateway_route_target_service(spec)
        if service and service not in store.children(mesh, "virtualService"):
            raise NotFoundException(
                f"VirtualService with name {service} is not present under mesh {mesh.mesh} "
                f"for account {mesh.mesh_owner}; a gateway route must target an existing "
                "virtual service"
            )


def check_delete(store: Store, mesh: MeshKey, kind: kinds.Kind, name: str) -> None:
    """Raise ResourceInUseException when deleting ``name`` would orphan something."""
    checker = _DELETE_CHECKS.get(kind.key)
    if checker is not None:
        checker(store, mesh, name)


def _check_mesh_delete(store: Store, mesh: MeshKey, name: str) -> None:
    order = (kinds.VIRTUAL_SERVICE, kinds.VIRTUAL_ROUTER, kinds.VIRTUAL_NODE)
    for child in (*order, kinds.VIRTUAL_GATEWAY):
        if store.children(mesh, child.key):
            raise ResourceInUseException(
                f"Mesh {name} for account {mesh.mesh_owner} has active {child.plural}, "
                f"please delete {child.plural} before deleting the Mesh"
            )


def _check_node_delete(store: Store, mesh: MeshKey, name: str) -> None:
    for service in store.children(mesh, "virtualService").values():
        if provider_of(service.data["spec"]) == ("virtualNode", name):
            raise ResourceInUseException(
                f"VirtualNode with name {name} cannot be deleted because it is a VirtualService "
                f"provider (VirtualService {service.key.name})"
            )
    for router in store.children(mesh, "virtualRouter"):
        for route in store.children(mesh, "route", router).values():
            if name in route_target_nodes(route.data["spec"]):
                raise ResourceInUseException(
                    f"VirtualNode with name {name} cannot be deleted because it is the target "
                    "of one or more routes."
                )


def _check_router_delete(store: Store, mesh: MeshKey, name: str) -> None:
    routes = store.children(mesh, "route", name)
    if routes:
        raise ResourceInUseException(
            f"VirtualRouter with name {name} cannot be deleted because it has {len(routes)} "
            "Route(s), please delete its Routes before deleting the VirtualRouter"
        )
    for service in store.children(mesh, "virtualService").values():
        if provider_of(service.data["spec"]) == ("virtualRouter", name):
            raise ResourceInUseException(
                f"VirtualRouter with name {name} cannot be deleted because it is a VirtualService "
                f"provider (VirtualService {service.key.name})"
            )


def _check_gateway_delete(store: Store, mesh: MeshKey, name: str) -> None:
    routes = store.children(mesh, "gatewayRoute", name)
    if routes:
        raise ResourceInUseException(
            f"VirtualGateway with name {name} cannot be deleted because it has {len(routes)} "
            "GatewayRoute(s), please delete its GatewayRoutes before deleting the VirtualGateway"
        )


def _check_service_delete(store: Store, mesh: MeshKey, name: str) -> None:
    users = [
        f"{gateway}/{route.key.name}"
        for gateway in store.children(mesh, "virtualGateway")
        for route in store.children(mesh, "gatewayRoute", gateway).values()
        if gateway_route_target_service(route.data["spec"]) == name
    ]
    if users:
        raise ResourceInUseException(
            f"VirtualService {name} is being referenced in the following: "
            f"GATEWAY_ROUTE: [{', '.join(users)}]"
        )


_DELETE_CHECKS = {
    "mesh": _check_mesh_delete,
    "virtualNode": _check_node_delete,
    "virtualRouter": _check_router_delete,
    "virtualGateway": _check_gateway_delete,
    "virtualService": _check_service_delete,
}
