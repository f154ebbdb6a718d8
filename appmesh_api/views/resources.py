"""One mesh's resources, as Describe returns them, from boto3 or from the server's store.

The CLI must work against any endpoint, so it lists and describes with boto3; the console
runs inside the server and reads the store (whose records hold exactly the Describe data).
Both produce a ``MeshResources``, so everything downstream is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appmesh_api.store import Key, MeshKey, Store

Data = dict[str, Any]


@dataclass
class MeshResources:
    """A mesh and everything in it, each resource as its Describe output's data."""

    mesh: Data
    gateways: list[Data] = field(default_factory=list)
    gateway_routes: dict[str, list[Data]] = field(default_factory=dict)  # by gateway
    services: list[Data] = field(default_factory=list)
    routers: list[Data] = field(default_factory=list)
    routes: dict[str, list[Data]] = field(default_factory=dict)  # by router
    nodes: list[Data] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.mesh["meshName"]

    @property
    def owner(self) -> str:
        return self.mesh["metadata"]["meshOwner"]


def _by_name(items: list[Data], key: str) -> list[Data]:
    return sorted(items, key=lambda item: item[key])


def from_store(store: Store, mesh: MeshKey) -> MeshResources | None:
    """Read a mesh from the server's store (the console's path); None if it does not exist."""
    record = store.get(_key(mesh, "mesh", mesh.mesh))
    if record is None:
        return None

    def data(kind: str, parent: str = "") -> list[Data]:
        return [child.data for child in store.children(mesh, kind, parent).values()]

    gateways = _by_name(data("virtualGateway"), "virtualGatewayName")
    routers = _by_name(data("virtualRouter"), "virtualRouterName")
    return MeshResources(
        mesh=record.data,
        gateways=gateways,
        gateway_routes={
            g["virtualGatewayName"]: _by_name(
                data("gatewayRoute", g["virtualGatewayName"]), "gatewayRouteName"
            )
            for g in gateways
        },
        services=_by_name(data("virtualService"), "virtualServiceName"),
        routers=routers,
        routes={
            r["virtualRouterName"]: _by_name(data("route", r["virtualRouterName"]), "routeName")
            for r in routers
        },
        nodes=_by_name(data("virtualNode"), "virtualNodeName"),
    )


def _key(mesh: MeshKey, kind: str, name: str, parent: str = "") -> Key:
    return Key(mesh.region, mesh.mesh_owner, mesh.mesh, kind, parent, name)


class Fetcher:
    """Lists and describes a mesh's resources with a boto3 ``appmesh`` client."""

    def __init__(self, client: Any, mesh: str, owner: str | None = None) -> None:
        self.client = client
        self.scope: Data = {"meshName": mesh, **({"meshOwner": owner} if owner else {})}

    def names(self, operation: str, member: str, name_key: str, **extra: str) -> list[str]:
        pages = self.client.get_paginator(operation).paginate(**self.scope, **extra)
        return sorted(ref[name_key] for page in pages for ref in page[member])

    def describe(self, operation: str, member: str, **names: str) -> Data:
        return getattr(self.client, operation)(**self.scope, **names)[member]

    def kind(self, api: str, member: str, name_key: str, **parent: str) -> list[Data]:
        """Every resource of one kind: ``kind("virtual_node", "virtualNode", ...)``."""
        names = self.names(f"list_{api}s", f"{member}s", name_key, **parent)
        return [self.describe(f"describe_{api}", member, **parent, **{name_key: n}) for n in names]


def fetch(client: Any, mesh: str, owner: str | None = None) -> MeshResources:
    """Everything in ``mesh`` through the App Mesh API (raises botocore's errors)."""
    fetcher = Fetcher(client, mesh, owner)
    found = MeshResources(mesh=fetcher.describe("describe_mesh", "mesh"))
    found.gateways = fetcher.kind("virtual_gateway", "virtualGateway", "virtualGatewayName")
    for gateway in found.gateways:
        name = gateway["virtualGatewayName"]
        found.gateway_routes[name] = fetcher.kind(
            "gateway_route", "gatewayRoute", "gatewayRouteName", virtualGatewayName=name
        )
    found.services = fetcher.kind("virtual_service", "virtualService", "virtualServiceName")
    found.routers = fetcher.kind("virtual_router", "virtualRouter", "virtualRouterName")
    for router in found.routers:
        name = router["virtualRouterName"]
        found.routes[name] = fetcher.kind("route", "route", "routeName", virtualRouterName=name)
    found.nodes = fetcher.kind("virtual_node", "virtualNode", "virtualNodeName")
    return found
