"""Every App Mesh error type, through boto3 and on the raw wire: code, HTTP status, wording."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api.helpers import (
    build_mesh,
    expect_error,
    gateway_route_spec,
    gateway_spec,
    http_node_spec,
    http_route_spec,
    raw_request,
    router_spec,
    share_mesh,
)
from tests.conftest import new_account

# (operation, parameters, message with {account}) for resources that are not there.
NOT_FOUND = [
    ("describe_mesh", {"meshName": "nope"}, "Mesh with name nope is not present for account"),
    (
        "describe_virtual_node",
        {"meshName": "nope", "virtualNodeName": "blue"},
        "Mesh with name nope is not present for account",
    ),
    (
        "describe_virtual_node",
        {"meshName": "demo", "virtualNodeName": "nope"},
        "VirtualNode with name nope is not present under mesh demo for account",
    ),
    (
        "update_virtual_node",
        {"meshName": "demo", "virtualNodeName": "nope", "spec": http_node_spec()},
        "VirtualNode with name nope is not present under mesh demo for account",
    ),
    (
        "delete_virtual_node",
        {"meshName": "demo", "virtualNodeName": "nope"},
        "VirtualNode with name nope is not present under mesh demo for account",
    ),
    (
        "describe_virtual_router",
        {"meshName": "demo", "virtualRouterName": "nope"},
        "VirtualRouter with name nope is not present under mesh demo for account",
    ),
    (
        "describe_virtual_service",
        {"meshName": "demo", "virtualServiceName": "nope.local"},
        "VirtualService with name nope.local is not present under mesh demo for account",
    ),
    (
        "describe_virtual_gateway",
        {"meshName": "demo", "virtualGatewayName": "nope"},
        "VirtualGateway with name nope is not present under mesh demo for account",
    ),
    (
        "describe_route",
        {"meshName": "demo", "virtualRouterName": "router", "routeName": "nope"},
        "Route with name nope is not present under VirtualRouter router in mesh demo for account",
    ),
    (
        "describe_route",
        {"meshName": "demo", "virtualRouterName": "nope", "routeName": "route"},
        "VirtualRouter with name nope is not present under mesh demo for account",
    ),
    (
        "list_routes",
        {"meshName": "demo", "virtualRouterName": "nope"},
        "VirtualRouter with name nope is not present under mesh demo for account",
    ),
    (
        "describe_gateway_route",
        {"meshName": "demo", "virtualGatewayName": "gw", "gatewayRouteName": "nope"},
        "GatewayRoute with name nope is not present under VirtualGateway gw in mesh demo",
    ),
    (
        "create_gateway_route",
        {
            "meshName": "demo",
            "virtualGatewayName": "nope",
            "gatewayRouteName": "g",
            "spec": gateway_route_spec("color.local"),
        },
        "VirtualGateway with name nope is not present under mesh demo for account",
    ),
    (
        "create_virtual_node",
        {"meshName": "nope", "virtualNodeName": "n", "spec": http_node_spec()},
        "Mesh with name nope is not present for account",
    ),
    ("list_virtual_nodes", {"meshName": "nope"}, "Mesh with name nope is not present"),
    ("delete_mesh", {"meshName": "nope"}, "Mesh with name nope is not present for account"),
]


@pytest.mark.parametrize(("operation", "params", "message"), NOT_FOUND)
def test_missing_resources_are_404_not_found(appmesh, account, operation, params, message):
    build_mesh(appmesh)
    text = expect_error("NotFoundException", 404, getattr(appmesh, operation), **params)
    assert text.startswith(message), text
    assert text.endswith(account), text


def test_tagging_a_resource_that_does_not_exist_is_404(appmesh, account):
    build_mesh(appmesh)
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/demo/virtualNode/nope"
    message = expect_error(
        "NotFoundException", 404, appmesh.list_tags_for_resource, resourceArn=arn
    )
    assert message == f"The resource {arn} does not exist for account {account}"
    tags = [{"key": "k", "value": "v"}]
    expect_error("NotFoundException", 404, appmesh.tag_resource, resourceArn=arn, tags=tags)
    expect_error("NotFoundException", 404, appmesh.untag_resource, resourceArn=arn, tagKeys=["k"])


def test_not_found_is_the_modelled_boto3_exception_class(appmesh):
    with pytest.raises(appmesh.exceptions.NotFoundException):
        appmesh.describe_mesh(meshName="nope")


def test_a_route_target_that_does_not_exist_is_missing(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "NotFoundException",
        404,
        appmesh.update_route,
        meshName="demo",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("product-v2-vn", 1)),
    )
    assert message == "VirtualNode with name product-v2-vn is missing"


def test_a_duplicate_name_is_a_409_conflict_for_every_kind(appmesh, account):
    build_mesh(appmesh)
    duplicates = [
        (appmesh.create_mesh, {"meshName": "demo"}, "Mesh with name demo"),
        (
            appmesh.create_virtual_node,
            {"meshName": "demo", "virtualNodeName": "blue", "spec": http_node_spec()},
            "VirtualNode with name blue",
        ),
        (
            appmesh.create_virtual_router,
            {"meshName": "demo", "virtualRouterName": "router", "spec": router_spec()},
            "VirtualRouter with name router",
        ),
        (
            appmesh.create_route,
            {
                "meshName": "demo",
                "virtualRouterName": "router",
                "routeName": "route",
                "spec": http_route_spec(("blue", 1)),
            },
            "Route with name route",
        ),
        (
            appmesh.create_virtual_service,
            {"meshName": "demo", "virtualServiceName": "color.local", "spec": {}},
            "VirtualService with name color.local",
        ),
        (
            appmesh.create_virtual_gateway,
            {"meshName": "demo", "virtualGatewayName": "gw", "spec": gateway_spec()},
            "VirtualGateway with name gw",
        ),
        (
            appmesh.create_gateway_route,
            {
                "meshName": "demo",
                "virtualGatewayName": "gw",
                "gatewayRouteName": "gwr",
                "spec": gateway_route_spec("color.local"),
            },
            "GatewayRoute with name gwr",
        ),
    ]
    for create, params, subject in duplicates:
        message = expect_error("ConflictException", 409, create, **params)
        assert message.startswith(f"{subject} already exists"), message
        assert account in message


def test_deleting_a_mesh_in_use_is_a_409_resource_in_use(appmesh, account):
    build_mesh(appmesh)
    message = expect_error("ResourceInUseException", 409, appmesh.delete_mesh, meshName="demo")
    assert message == (
        f"Mesh demo for account {account} has active VirtualServices, "
        "please delete VirtualServices before deleting the Mesh"
    )


def test_deleting_a_route_target_uses_aws_wording(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_node,
        meshName="demo",
        virtualNodeName="blue",
    )
    assert message == (
        "VirtualNode with name blue cannot be deleted because it is the target "
        "of one or more routes."
    )


def test_deleting_a_provider_router_and_a_gateway_route_target(appmesh):
    build_mesh(appmesh)
    appmesh.delete_route(meshName="demo", virtualRouterName="router", routeName="route")
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_router,
        meshName="demo",
        virtualRouterName="router",
    )
    assert message.startswith(
        "VirtualRouter with name router cannot be deleted because it is a VirtualService provider"
    )
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_service,
        meshName="demo",
        virtualServiceName="color.local",
    )
    assert message.startswith(
        "VirtualService color.local is being referenced in the following: GATEWAY_ROUTE: ["
    )
    assert "gwr" in message


def test_bad_request_is_400(appmesh):
    message = expect_error("BadRequestException", 400, appmesh.list_meshes, limit=101)
    assert message == (
        "1 validation error detected: Value '101' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 100"
    )


def test_limit_exceeded_is_400(appmesh):
    appmesh.create_mesh(meshName="m")
    for name in ("g1", "g2", "g3"):
        appmesh.create_virtual_gateway(meshName="m", virtualGatewayName=name, spec=gateway_spec())
    message = expect_error(
        "LimitExceededException",
        400,
        appmesh.create_virtual_gateway,
        meshName="m",
        virtualGatewayName="g4",
        spec=gateway_spec(),
    )
    assert "VirtualGateways" in message and "(3)" in message


def test_too_many_tags_is_400_and_applies_none(appmesh):
    tags = [{"key": f"k{i:02}", "value": "v"} for i in range(50)]
    arn = appmesh.create_mesh(meshName="m", tags=tags)["mesh"]["metadata"]["arn"]
    message = expect_error(
        "TooManyTagsException",
        400,
        appmesh.tag_resource,
        resourceArn=arn,
        tags=[{"key": "k00", "value": "changed"}, {"key": "one-more", "value": "v"}],
    )
    assert message.startswith("None of the tags in this request were applied")
    listed = appmesh.list_tags_for_resource(resourceArn=arn)["tags"]
    assert sorted(tag["key"] for tag in listed) == [tag["key"] for tag in tags]
    assert {tag["value"] for tag in listed} == {"v"}
    # Replacing an existing key does not add a tag, so it is still allowed at 50.
    appmesh.tag_resource(resourceArn=arn, tags=[{"key": "k00", "value": "changed"}])


def test_forbidden_is_403_in_a_shared_mesh(appmesh, account, client_for):
    appmesh.create_mesh(meshName="shared")
    appmesh.create_virtual_node(meshName="shared", virtualNodeName="a", spec=http_node_spec())
    consumer_account = new_account()
    share_mesh(client_for, account, "shared", consumer_account)
    consumer = client_for("appmesh", account=consumer_account)
    message = expect_error(
        "ForbiddenException",
        403,
        consumer.update_virtual_node,
        meshName="shared",
        meshOwner=account,
        virtualNodeName="a",
        spec=http_node_spec(port=9090),
    )
    assert f"owned by account {account}" in message
    expect_error(
        "ForbiddenException",
        403,
        consumer.delete_virtual_node,
        meshName="shared",
        meshOwner=account,
        virtualNodeName="a",
    )


def test_error_responses_on_the_wire(server, account):
    response = raw_request(server.endpoint, "GET", "/v20190125/meshes/nope", account=account)
    assert response.status == 404
    assert response.headers["x-amzn-errortype"] == "NotFoundException"
    assert uuid.UUID(response.headers["x-amzn-requestid"])
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "message": f"Mesh with name nope is not present for account {account}"
    }


def test_every_response_has_its_own_request_id(server, account):
    ids = set()
    for path in ("/v20190125/meshes", "/v20190125/meshes/nope", "/v20190125/meshes"):
        response = raw_request(server.endpoint, "GET", path, account=account)
        ids.add(response.headers["x-amzn-requestid"])
    assert len(ids) == 3
    ok = raw_request(server.endpoint, "GET", "/v20190125/meshes", account=account)
    assert ok.status == 200
    assert ok.headers["content-type"] == "application/json"
    assert "x-amzn-errortype" not in ok.headers
    assert ok.json() == {"meshes": []}


def test_a_bad_request_on_the_wire(server, account):
    response = raw_request(
        server.endpoint, "PUT", "/v20190125/meshes", body=json.dumps({}), account=account
    )
    assert response.status == 400
    assert response.headers["x-amzn-errortype"] == "BadRequestException"
    assert response.json() == {
        "message": "1 validation error detected: Value null at 'meshName' failed to satisfy "
        "constraint: Member must not be null"
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v20190125/nonsense"),
        ("GET", "/v20190125/meshes/m/virtualNodes/n/extra"),
        ("POST", "/v20190125/meshes"),
        ("DELETE", "/v20190125/meshes"),
        ("GET", "/v20190125/meshes/m/virtualRouters/r/routes"),  # routes use .../virtualRouter/
    ],
)
def test_unknown_paths_are_404_unknown_operation(server, method, path):
    response = raw_request(server.endpoint, method, path)
    assert response.status == 404
    assert response.headers["x-amzn-errortype"] == "UnknownOperationException"
    assert response.headers["x-amzn-requestid"]
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"message"}
    assert path in response.json()["message"]
