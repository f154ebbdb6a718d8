"""Every one of the 38 App Mesh operations, called through boto3 against the live server."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path

import boto3
import botocore.session
import pytest

from tests.api.helpers import (
    build_mesh,
    gateway_route_spec,
    gateway_spec,
    http_node_spec,
    http_route_spec,
    router_spec,
)

ARN = re.compile(r"arn:aws:appmesh:us-east-1:\d{12}:mesh/.+")


def test_the_model_has_38_operations_and_all_are_exercised_here():
    names = botocore.session.get_session().get_service_model("appmesh").operation_names
    source = Path(__file__).read_text()
    snake = [re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() for name in names]
    assert len(names) == 38
    assert [name for name in snake if f".{name}(" not in source] == []


def check_metadata(metadata: dict, account: str, version: int = 1) -> None:
    assert ARN.fullmatch(metadata["arn"])
    assert uuid.UUID(metadata["uid"]).version == 4
    assert str(uuid.UUID(metadata["uid"])) == metadata["uid"]
    assert metadata["meshOwner"] == metadata["resourceOwner"] == account
    assert metadata["version"] == version
    assert isinstance(metadata["createdAt"], datetime)
    assert metadata["lastUpdatedAt"] >= metadata["createdAt"]


def test_mesh_lifecycle(appmesh, account):
    created = appmesh.create_mesh(meshName="m", spec={"egressFilter": {"type": "ALLOW_ALL"}})
    mesh = created["mesh"]
    assert mesh["meshName"] == "m"
    assert mesh["status"] == {"status": "ACTIVE"}
    assert mesh["metadata"]["arn"] == f"arn:aws:appmesh:us-east-1:{account}:mesh/m"
    check_metadata(mesh["metadata"], account)

    described = appmesh.describe_mesh(meshName="m")["mesh"]
    assert described == mesh

    updated = appmesh.update_mesh(meshName="m", spec={"egressFilter": {"type": "DROP_ALL"}})
    assert updated["mesh"]["spec"] == {"egressFilter": {"type": "DROP_ALL"}}
    check_metadata(updated["mesh"]["metadata"], account, version=2)
    assert updated["mesh"]["metadata"]["uid"] == mesh["metadata"]["uid"]

    listed = appmesh.list_meshes()["meshes"]
    assert [ref["meshName"] for ref in listed] == ["m"]
    assert listed[0]["version"] == 2 and listed[0]["arn"] == mesh["metadata"]["arn"]

    deleted = appmesh.delete_mesh(meshName="m")["mesh"]
    assert deleted["status"] == {"status": "DELETED"}
    assert appmesh.list_meshes()["meshes"] == []


def test_mesh_without_spec_describes_an_empty_spec(appmesh):
    assert appmesh.create_mesh(meshName="bare")["mesh"]["spec"] == {}


def test_virtual_node_lifecycle(appmesh, account):
    appmesh.create_mesh(meshName="m")
    spec = http_node_spec(backends=[{"virtualService": {"virtualServiceName": "later.local"}}])
    node = appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=spec)["virtualNode"]
    assert node["spec"] == spec and node["virtualNodeName"] == "n" and node["meshName"] == "m"
    assert node["metadata"]["arn"].endswith(":mesh/m/virtualNode/n")
    check_metadata(node["metadata"], account)
    assert appmesh.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"] == node
    new_spec = http_node_spec(port=9090)
    updated = appmesh.update_virtual_node(meshName="m", virtualNodeName="n", spec=new_spec)
    assert updated["virtualNode"]["spec"] == new_spec
    assert updated["virtualNode"]["metadata"]["version"] == 2
    refs = appmesh.list_virtual_nodes(meshName="m")["virtualNodes"]
    assert [(r["virtualNodeName"], r["meshName"], r["version"]) for r in refs] == [("n", "m", 2)]
    deleted = appmesh.delete_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]
    assert deleted["status"]["status"] == "DELETED"
    assert appmesh.list_virtual_nodes(meshName="m")["virtualNodes"] == []


def test_virtual_router_and_route_lifecycle(appmesh, account):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_node(meshName="m", virtualNodeName="a", spec=http_node_spec())
    appmesh.create_virtual_node(meshName="m", virtualNodeName="b", spec=http_node_spec())
    router = appmesh.create_virtual_router(
        meshName="m", virtualRouterName="r", spec=router_spec(8080)
    )["virtualRouter"]
    assert router["metadata"]["arn"].endswith(":mesh/m/virtualRouter/r")
    assert appmesh.describe_virtual_router(meshName="m", virtualRouterName="r")["virtualRouter"]
    route = appmesh.create_route(
        meshName="m", virtualRouterName="r", routeName="rt", spec=http_route_spec(("a", 1))
    )["route"]
    assert route["metadata"]["arn"].endswith(":mesh/m/virtualRouter/r/route/rt")
    assert route["virtualRouterName"] == "r" and route["routeName"] == "rt"
    check_metadata(route["metadata"], account)
    canary = http_route_spec(("a", 80), ("b", 20))
    updated = appmesh.update_route(meshName="m", virtualRouterName="r", routeName="rt", spec=canary)
    assert updated["route"]["spec"]["httpRoute"]["action"]["weightedTargets"][1]["weight"] == 20
    described = appmesh.describe_route(meshName="m", virtualRouterName="r", routeName="rt")
    assert described["route"]["metadata"]["version"] == 2
    refs = appmesh.list_routes(meshName="m", virtualRouterName="r")["routes"]
    assert [(r["routeName"], r["virtualRouterName"]) for r in refs] == [("rt", "r")]
    appmesh.update_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec(9090))
    assert appmesh.list_virtual_routers(meshName="m")["virtualRouters"][0]["version"] == 2
    appmesh.delete_route(meshName="m", virtualRouterName="r", routeName="rt")
    gone = appmesh.delete_virtual_router(meshName="m", virtualRouterName="r")
    assert gone["virtualRouter"]["status"]["status"] == "DELETED"


def test_virtual_service_lifecycle(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=http_node_spec())
    provider = {"provider": {"virtualNode": {"virtualNodeName": "n"}}}
    service = appmesh.create_virtual_service(
        meshName="m", virtualServiceName="svc.m.local", spec=provider
    )["virtualService"]
    assert service["metadata"]["arn"].endswith(":mesh/m/virtualService/svc.m.local")
    assert (
        appmesh.describe_virtual_service(meshName="m", virtualServiceName="svc.m.local")[
            "virtualService"
        ]
        == service
    )
    updated = appmesh.update_virtual_service(
        meshName="m", virtualServiceName="svc.m.local", spec={}
    )
    assert updated["virtualService"]["spec"] == {}
    names = [
        r["virtualServiceName"]
        for r in appmesh.list_virtual_services(meshName="m")["virtualServices"]
    ]
    assert names == ["svc.m.local"]
    appmesh.delete_virtual_service(meshName="m", virtualServiceName="svc.m.local")
    assert appmesh.list_virtual_services(meshName="m")["virtualServices"] == []


def test_virtual_gateway_and_gateway_route_lifecycle(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_service(meshName="m", virtualServiceName="a.local", spec={})
    appmesh.create_virtual_service(meshName="m", virtualServiceName="b.local", spec={})
    gateway = appmesh.create_virtual_gateway(
        meshName="m", virtualGatewayName="gw", spec=gateway_spec()
    )["virtualGateway"]
    assert gateway["metadata"]["arn"].endswith(":mesh/m/virtualGateway/gw")
    assert appmesh.describe_virtual_gateway(meshName="m", virtualGatewayName="gw")
    route = appmesh.create_gateway_route(
        meshName="m",
        virtualGatewayName="gw",
        gatewayRouteName="gr",
        spec=gateway_route_spec("a.local", prefix="/a/"),
    )["gatewayRoute"]
    assert route["metadata"]["arn"].endswith(":mesh/m/virtualGateway/gw/gatewayRoute/gr")
    assert route["virtualGatewayName"] == "gw"
    appmesh.update_gateway_route(
        meshName="m",
        virtualGatewayName="gw",
        gatewayRouteName="gr",
        spec=gateway_route_spec("b.local", prefix="/b/"),
    )
    described = appmesh.describe_gateway_route(
        meshName="m", virtualGatewayName="gw", gatewayRouteName="gr"
    )["gatewayRoute"]
    target = described["spec"]["httpRoute"]["action"]["target"]["virtualService"]
    assert target["virtualServiceName"] == "b.local"
    refs = appmesh.list_gateway_routes(meshName="m", virtualGatewayName="gw")["gatewayRoutes"]
    assert [(r["gatewayRouteName"], r["version"]) for r in refs] == [("gr", 2)]
    appmesh.update_virtual_gateway(meshName="m", virtualGatewayName="gw", spec=gateway_spec(9090))
    assert appmesh.list_virtual_gateways(meshName="m")["virtualGateways"][0]["version"] == 2
    appmesh.delete_gateway_route(meshName="m", virtualGatewayName="gw", gatewayRouteName="gr")
    appmesh.delete_virtual_gateway(meshName="m", virtualGatewayName="gw")
    assert appmesh.list_virtual_gateways(meshName="m")["virtualGateways"] == []


def test_tags_add_replace_remove_and_list(appmesh):
    arn = appmesh.create_mesh(meshName="m", tags=[{"key": "team", "value": "a"}])["mesh"][
        "metadata"
    ]["arn"]
    appmesh.tag_resource(
        resourceArn=arn, tags=[{"key": "env", "value": "dev"}, {"key": "team", "value": "b"}]
    )
    tags = appmesh.list_tags_for_resource(resourceArn=arn)["tags"]
    assert sorted((t["key"], t["value"]) for t in tags) == [("env", "dev"), ("team", "b")]
    appmesh.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert appmesh.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "env", "value": "dev"}
    ]
    assert appmesh.describe_mesh(meshName="m")["mesh"]["metadata"]["version"] == 1


def test_tags_are_deleted_with_their_resource(appmesh):
    arn = appmesh.create_mesh(meshName="m", tags=[{"key": "k", "value": "v"}])["mesh"]["metadata"][
        "arn"
    ]
    appmesh.delete_mesh(meshName="m")
    appmesh.create_mesh(meshName="m")
    assert appmesh.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_a_complete_mesh_lists_every_kind(appmesh):
    build_mesh(appmesh, "full")
    assert len(appmesh.list_virtual_nodes(meshName="full")["virtualNodes"]) == 1
    assert len(appmesh.list_virtual_services(meshName="full")["virtualServices"]) == 1
    assert (
        len(appmesh.list_gateway_routes(meshName="full", virtualGatewayName="gw")["gatewayRoutes"])
        == 1
    )


def test_resources_are_regional(server, account):
    from tests.conftest import make_client

    east = make_client(server.endpoint, "appmesh", account)
    arn = east.create_mesh(meshName="regional")["mesh"]["metadata"]["arn"]
    west = boto3.client(
        "appmesh",
        endpoint_url=server.endpoint,
        region_name="eu-west-1",
        aws_access_key_id=account,
        aws_secret_access_key="local",
    )
    assert west.list_meshes()["meshes"] == []
    with pytest.raises(west.exceptions.NotFoundException):
        west.describe_mesh(meshName="regional")
    with pytest.raises(west.exceptions.NotFoundException):
        west.list_tags_for_resource(resourceArn=arn)
    west_mesh = west.create_mesh(meshName="regional")["mesh"]
    assert west_mesh["metadata"]["arn"] == f"arn:aws:appmesh:eu-west-1:{account}:mesh/regional"
