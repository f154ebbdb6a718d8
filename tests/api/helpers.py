"""Small builders for App Mesh specs, so tests read as the behaviour they check."""

from __future__ import annotations

from typing import Any


def http_node_spec(port: int = 8080, hostname: str = "app.local", **extra: Any) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": hostname}},
        **extra,
    }


def router_spec(*ports: int, protocol: str = "http") -> dict:
    return {
        "listeners": [{"portMapping": {"port": p, "protocol": protocol}} for p in ports or (8080,)]
    }


def http_route_spec(*targets: tuple[str, int], prefix: str = "/", **match: Any) -> dict:
    return {
        "httpRoute": {
            "match": {"prefix": prefix, **match},
            "action": {
                "weightedTargets": [
                    {"virtualNode": node, "weight": weight} for node, weight in targets
                ]
            },
        }
    }


def gateway_spec(port: int = 8080) -> dict:
    return {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]}


def gateway_route_spec(service: str, prefix: str = "/") -> dict:
    return {
        "httpRoute": {
            "match": {"prefix": prefix},
            "action": {"target": {"virtualService": {"virtualServiceName": service}}},
        }
    }


def build_mesh(appmesh, mesh: str = "demo") -> dict[str, Any]:
    """A small complete mesh: node, router with a route, services, a gateway with a route."""
    appmesh.create_mesh(meshName=mesh)
    appmesh.create_virtual_node(meshName=mesh, virtualNodeName="blue", spec=http_node_spec())
    appmesh.create_virtual_router(meshName=mesh, virtualRouterName="router", spec=router_spec())
    appmesh.create_route(
        meshName=mesh,
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("blue", 1)),
    )
    appmesh.create_virtual_service(
        meshName=mesh,
        virtualServiceName="color.local",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "router"}}},
    )
    appmesh.create_virtual_gateway(meshName=mesh, virtualGatewayName="gw", spec=gateway_spec())
    appmesh.create_gateway_route(
        meshName=mesh,
        virtualGatewayName="gw",
        gatewayRouteName="gwr",
        spec=gateway_route_spec("color.local"),
    )
    return {"mesh": mesh}
