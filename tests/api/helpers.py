"""Small builders for App Mesh specs, so tests read as the behaviour they check."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError


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


def expect_error(code: str, status: int, call: Callable[..., Any], **params: Any) -> str:
    """Call ``call(**params)``, check the AWS error code and HTTP status; return the message."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    assert response["Error"]["Code"] == code, response["Error"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response["Error"]
    return response["Error"]["Message"]


def auth_header(account: str) -> str:
    """A SigV4-shaped Authorization header: appmesh-local reads the account, checks nothing."""
    return (
        f"AWS4-HMAC-SHA256 Credential={account}/20250101/us-east-1/appmesh/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    endpoint: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    account: str | None = None,
) -> RawResponse:
    """One plain HTTP request (unsigned unless ``account`` is given)."""
    host, port = endpoint.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json"}
    if account is not None:
        headers["Authorization"] = auth_header(account)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return RawResponse(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


def mesh_state(appmesh, mesh: str = "demo") -> dict[str, Any]:
    """Everything a client can see of a mesh: each resource's description and the mesh's tags."""
    state: dict[str, Any] = {"mesh": appmesh.describe_mesh(meshName=mesh)["mesh"]}
    state["meshes"] = appmesh.list_meshes()["meshes"]
    arn = state["mesh"]["metadata"]["arn"]
    state["tags"] = appmesh.list_tags_for_resource(resourceArn=arn)["tags"]
    for plural, describe, name in (
        ("virtualNodes", appmesh.describe_virtual_node, "virtualNodeName"),
        ("virtualRouters", appmesh.describe_virtual_router, "virtualRouterName"),
        ("virtualServices", appmesh.describe_virtual_service, "virtualServiceName"),
        ("virtualGateways", appmesh.describe_virtual_gateway, "virtualGatewayName"),
    ):
        lister = getattr(appmesh, "list_" + re.sub(r"(?=[A-Z])", "_", plural).lower())
        refs = lister(meshName=mesh)[plural]
        state[plural] = [describe(meshName=mesh, **{name: ref[name]})[plural[:-1]] for ref in refs]
    for ref in appmesh.list_virtual_routers(meshName=mesh)["virtualRouters"]:
        router = ref["virtualRouterName"]
        for route in appmesh.list_routes(meshName=mesh, virtualRouterName=router)["routes"]:
            state.setdefault("routes", []).append(
                appmesh.describe_route(
                    meshName=mesh, virtualRouterName=router, routeName=route["routeName"]
                )["route"]
            )
    for ref in appmesh.list_virtual_gateways(meshName=mesh)["virtualGateways"]:
        gateway = ref["virtualGatewayName"]
        listed = appmesh.list_gateway_routes(meshName=mesh, virtualGatewayName=gateway)
        for route in listed["gatewayRoutes"]:
            state.setdefault("gatewayRoutes", []).append(
                appmesh.describe_gateway_route(
                    meshName=mesh,
                    virtualGatewayName=gateway,
                    gatewayRouteName=route["gatewayRouteName"],
                )["gatewayRoute"]
            )
    return state


def share_mesh(client_for, owner_account: str, mesh: str, consumer_account: str) -> str:
    """Share ``mesh`` with ``consumer_account`` through RAM and accept it; the share's ARN."""
    ram = client_for("ram", account=owner_account)
    arn = f"arn:aws:appmesh:us-east-1:{owner_account}:mesh/{mesh}"
    share = ram.create_resource_share(
        name=f"{mesh}-share", resourceArns=[arn], principals=[consumer_account]
    )["resourceShare"]
    received = client_for("ram", account=consumer_account)
    invitations = received.get_resource_share_invitations()["resourceShareInvitations"]
    (invitation,) = [i for i in invitations if i["resourceShareArn"] == share["resourceShareArn"]]
    assert invitation["status"] == "PENDING"
    received.accept_resource_share_invitation(
        resourceShareInvitationArn=invitation["resourceShareInvitationArn"]
    )
    return str(share["resourceShareArn"])
