"""The seven App Mesh resource kinds, described once.

Each kind's operations (Create/Describe/Update/Delete/List) share one generic
implementation in ``service.py``; what differs between kinds -- parameter names,
the parent container, ARN segments, quotas -- is data, kept here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """How one resource kind appears in the API, in ARNs and in the store."""

    api_name: str  # "VirtualNode": operation suffix and the Data/Ref/Status shape prefix
    key: str  # "virtualNode": the output payload member and the store's kind column
    name_param: str  # "virtualNodeName"
    arn_segment: str  # "virtualNode"
    quota: str  # name in Quotas
    parent: Kind | None = None  # virtualRouter for routes, virtualGateway for gateway routes

    @property
    def plural(self) -> str:
        """``Meshes``, ``VirtualNodes``: the List operation's suffix."""
        return f"{self.api_name}es" if self.api_name.endswith("h") else f"{self.api_name}s"

    @property
    def list_member(self) -> str:
        """``meshes``, ``virtualNodes``: the member of the List output that holds the refs."""
        return self.plural[0].lower() + self.plural[1:]


MESH = Kind("Mesh", "mesh", "meshName", "mesh", quota="meshes_per_account")
VIRTUAL_NODE = Kind(
    "VirtualNode", "virtualNode", "virtualNodeName", "virtualNode", quota="virtual_nodes_per_mesh"
)
VIRTUAL_ROUTER = Kind(
    "VirtualRouter",
    "virtualRouter",
    "virtualRouterName",
    "virtualRouter",
    quota="virtual_routers_per_mesh",
)
VIRTUAL_SERVICE = Kind(
    "VirtualService",
    "virtualService",
    "virtualServiceName",
    "virtualService",
    quota="virtual_services_per_mesh",
)
VIRTUAL_GATEWAY = Kind(
    "VirtualGateway",
    "virtualGateway",
    "virtualGatewayName",
    "virtualGateway",
    quota="virtual_gateways_per_mesh",
)
ROUTE = Kind(
    "Route", "route", "routeName", "route", parent=VIRTUAL_ROUTER, quota="routes_per_virtual_router"
)
GATEWAY_ROUTE = Kind(
    "GatewayRoute",
    "gatewayRoute",
    "gatewayRouteName",
    "gatewayRoute",
    parent=VIRTUAL_GATEWAY,
    quota="gateway_routes_per_virtual_gateway",
)

ALL_KINDS = (
    MESH,
    VIRTUAL_NODE,
    VIRTUAL_ROUTER,
    VIRTUAL_SERVICE,
    VIRTUAL_GATEWAY,
    ROUTE,
    GATEWAY_ROUTE,
)
BY_API_NAME = {kind.api_name: kind for kind in ALL_KINDS}
BY_PLURAL = {kind.plural: kind for kind in ALL_KINDS}
BY_KEY = {kind.key: kind for kind in ALL_KINDS}
BY_ARN_SEGMENT = {kind.arn_segment: kind for kind in ALL_KINDS}

VERBS = ("Create", "Describe", "Update", "Delete", "List")


def split_operation(operation: str) -> tuple[str, Kind] | None:
    """``"ListVirtualNodes"`` -> ``("List", VIRTUAL_NODE)``; None for the tag operations."""
    for verb in VERBS:
        if operation.startswith(verb):
            rest = operation[len(verb) :]
            table = BY_PLURAL if verb == "List" else BY_API_NAME
            kind = table.get(rest)
            if kind is not None:
                return verb, kind
    return None
