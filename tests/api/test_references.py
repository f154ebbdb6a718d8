"""References between resources: what must exist when written, and what blocks a delete."""

from __future__ import annotations

import pytest

from tests.api.helpers import (
    build_mesh,
    expect_error,
    gateway_route_spec,
    gateway_spec,
    http_node_spec,
    http_route_spec,
    router_spec,
)


def node_provider(name: str) -> dict:
    return {"provider": {"virtualNode": {"virtualNodeName": name}}}


def router_provider(name: str) -> dict:
    return {"provider": {"virtualRouter": {"virtualRouterName": name}}}


# -- what must exist -----------------------------------------------------------------------


def test_a_route_target_must_exist_on_create_and_update(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "NotFoundException",
        404,
        appmesh.create_route,
        meshName="demo",
        virtualRouterName="router",
        routeName="new",
        spec=http_route_spec(("blue", 50), ("ghost", 50)),
    )
    assert message == "VirtualNode with name ghost is missing"
    assert [
        r["routeName"]
        for r in appmesh.list_routes(meshName="demo", virtualRouterName="router")["routes"]
    ] == ["route"]
    message = expect_error(
        "NotFoundException",
        404,
        appmesh.update_route,
        meshName="demo",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("ghost", 1)),
    )
    assert message == "VirtualNode with name ghost is missing"
    described = appmesh.describe_route(
        meshName="demo", virtualRouterName="router", routeName="route"
    )
    assert described["route"]["metadata"]["version"] == 1


def test_a_route_target_must_be_in_the_same_mesh(appmesh):
    build_mesh(appmesh, "one")
    appmesh.create_mesh(meshName="two")
    appmesh.create_virtual_router(meshName="two", virtualRouterName="r", spec=router_spec())
    message = expect_error(
        "NotFoundException",
        404,
        appmesh.create_route,
        meshName="two",
        virtualRouterName="r",
        routeName="x",
        spec=http_route_spec(("blue", 1)),
    )
    assert message == "VirtualNode with name blue is missing"


@pytest.mark.parametrize(
    ("spec", "missing"),
    [
        (node_provider("ghost"), "VirtualNode with name ghost is not present under mesh demo"),
        (router_provider("ghost"), "VirtualRouter with name ghost is not present under mesh demo"),
    ],
)
def test_a_virtual_service_provider_must_exist(appmesh, spec, missing):
    build_mesh(appmesh)
    message = expect_error(
        "NotFoundException",
        404,
        appmesh.create_virtual_service,
        meshName="demo",
        virtualServiceName="new.local",
        spec=spec,
    )
    assert message.startswith(missing)
    expect_error(
        "NotFoundException",
        404,
        appmesh.update_virtual_service,
        meshName="demo",
        virtualServiceName="color.local",
        spec=spec,
    )
    names = [
        s["virtualServiceName"]
        for s in appmesh.list_virtual_services(meshName="demo")["virtualServices"]
    ]
    assert names == ["color.local"]


def test_a_gateway_route_target_must_exist(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "NotFoundException",
        404,
        appmesh.create_gateway_route,
        meshName="demo",
        virtualGatewayName="gw",
        gatewayRouteName="new",
        spec=gateway_route_spec("ghost.local", prefix="/ghost/"),
    )
    assert message.startswith("VirtualService with name ghost.local is not present under mesh demo")


def test_backends_may_name_a_service_that_does_not_exist_yet(appmesh):
    appmesh.create_mesh(meshName="m")
    spec = http_node_spec(backends=[{"virtualService": {"virtualServiceName": "later.local"}}])
    node = appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=spec)
    assert node["virtualNode"]["spec"]["backends"] == spec["backends"]
    # ...and a service a backend names can be deleted: backends do not hold it.
    appmesh.create_virtual_service(meshName="m", virtualServiceName="later.local", spec={})
    deleted = appmesh.delete_virtual_service(meshName="m", virtualServiceName="later.local")
    assert deleted["virtualService"]["status"]["status"] == "DELETED"


# -- what blocks a delete ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "create", "remove"),
    [
        (
            "VirtualServices",
            lambda c: c.create_virtual_service(meshName="m", virtualServiceName="s.local", spec={}),
            lambda c: c.delete_virtual_service(meshName="m", virtualServiceName="s.local"),
        ),
        (
            "VirtualRouters",
            lambda c: c.create_virtual_router(
                meshName="m", virtualRouterName="r", spec=router_spec()
            ),
            lambda c: c.delete_virtual_router(meshName="m", virtualRouterName="r"),
        ),
        (
            "VirtualNodes",
            lambda c: c.create_virtual_node(
                meshName="m", virtualNodeName="n", spec=http_node_spec()
            ),
            lambda c: c.delete_virtual_node(meshName="m", virtualNodeName="n"),
        ),
        (
            "VirtualGateways",
            lambda c: c.create_virtual_gateway(
                meshName="m", virtualGatewayName="g", spec=gateway_spec()
            ),
            lambda c: c.delete_virtual_gateway(meshName="m", virtualGatewayName="g"),
        ),
    ],
)
def test_a_mesh_with_children_cannot_be_deleted(appmesh, account, child, create, remove):
    appmesh.create_mesh(meshName="m")
    create(appmesh)
    message = expect_error("ResourceInUseException", 409, appmesh.delete_mesh, meshName="m")
    assert message == (
        f"Mesh m for account {account} has active {child}, "
        f"please delete {child} before deleting the Mesh"
    )
    assert appmesh.describe_mesh(meshName="m")["mesh"]["status"]["status"] == "ACTIVE"
    remove(appmesh)
    deleted = appmesh.delete_mesh(meshName="m")["mesh"]
    assert deleted["status"]["status"] == "DELETED"
    assert deleted["meshName"] == "m"
    expect_error("NotFoundException", 404, appmesh.describe_mesh, meshName="m")


def test_a_provider_node_cannot_be_deleted(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=http_node_spec())
    appmesh.create_virtual_service(
        meshName="m", virtualServiceName="s.local", spec=node_provider("n")
    )
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_node,
        meshName="m",
        virtualNodeName="n",
    )
    assert message.startswith(
        "VirtualNode with name n cannot be deleted because it is a VirtualService provider"
    )
    # Switching the provider away frees the node.
    appmesh.update_virtual_service(meshName="m", virtualServiceName="s.local", spec={})
    deleted = appmesh.delete_virtual_node(meshName="m", virtualNodeName="n")
    assert deleted["virtualNode"]["status"]["status"] == "DELETED"


def test_a_route_target_node_cannot_be_deleted(appmesh):
    build_mesh(appmesh)
    appmesh.create_virtual_node(meshName="demo", virtualNodeName="green", spec=http_node_spec())
    appmesh.update_route(
        meshName="demo",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("blue", 50), ("green", 50)),
    )
    for name in ("blue", "green"):
        message = expect_error(
            "ResourceInUseException",
            409,
            appmesh.delete_virtual_node,
            meshName="demo",
            virtualNodeName=name,
        )
        assert message == (
            f"VirtualNode with name {name} cannot be deleted because it is the target "
            "of one or more routes."
        )
    appmesh.update_route(
        meshName="demo",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("blue", 1)),
    )
    appmesh.delete_virtual_node(meshName="demo", virtualNodeName="green")
    appmesh.delete_route(meshName="demo", virtualRouterName="router", routeName="route")
    deleted = appmesh.delete_virtual_node(meshName="demo", virtualNodeName="blue")
    assert deleted["virtualNode"]["status"]["status"] == "DELETED"


def test_a_router_with_routes_or_a_service_cannot_be_deleted(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_router,
        meshName="demo",
        virtualRouterName="router",
    )
    assert "has 1 Route(s)" in message
    deleted = appmesh.delete_route(meshName="demo", virtualRouterName="router", routeName="route")
    assert deleted["route"]["status"]["status"] == "DELETED"
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
    appmesh.update_virtual_service(
        meshName="demo", virtualServiceName="color.local", spec=node_provider("blue")
    )
    deleted = appmesh.delete_virtual_router(meshName="demo", virtualRouterName="router")
    assert deleted["virtualRouter"]["status"]["status"] == "DELETED"


def test_a_gateway_with_gateway_routes_cannot_be_deleted(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_gateway,
        meshName="demo",
        virtualGatewayName="gw",
    )
    assert "has 1 GatewayRoute(s)" in message
    gone = appmesh.delete_gateway_route(
        meshName="demo", virtualGatewayName="gw", gatewayRouteName="gwr"
    )
    assert gone["gatewayRoute"]["status"]["status"] == "DELETED"
    deleted = appmesh.delete_virtual_gateway(meshName="demo", virtualGatewayName="gw")
    assert deleted["virtualGateway"]["status"]["status"] == "DELETED"


def test_a_service_targeted_by_a_gateway_route_cannot_be_deleted(appmesh):
    build_mesh(appmesh)
    message = expect_error(
        "ResourceInUseException",
        409,
        appmesh.delete_virtual_service,
        meshName="demo",
        virtualServiceName="color.local",
    )
    assert message == (
        "VirtualService color.local is being referenced in the following: GATEWAY_ROUTE: [gw/gwr]"
    )
    appmesh.create_virtual_service(meshName="demo", virtualServiceName="other.local", spec={})
    appmesh.update_gateway_route(
        meshName="demo",
        virtualGatewayName="gw",
        gatewayRouteName="gwr",
        spec=gateway_route_spec("other.local"),
    )
    deleted = appmesh.delete_virtual_service(meshName="demo", virtualServiceName="color.local")
    assert deleted["virtualService"]["status"]["status"] == "DELETED"


def test_a_whole_mesh_can_be_torn_down_in_dependency_order(appmesh):
    build_mesh(appmesh)
    appmesh.delete_gateway_route(meshName="demo", virtualGatewayName="gw", gatewayRouteName="gwr")
    appmesh.delete_virtual_gateway(meshName="demo", virtualGatewayName="gw")
    appmesh.delete_virtual_service(meshName="demo", virtualServiceName="color.local")
    appmesh.delete_route(meshName="demo", virtualRouterName="router", routeName="route")
    appmesh.delete_virtual_router(meshName="demo", virtualRouterName="router")
    appmesh.delete_virtual_node(meshName="demo", virtualNodeName="blue")
    assert appmesh.delete_mesh(meshName="demo")["mesh"]["status"]["status"] == "DELETED"
    assert appmesh.list_meshes()["meshes"] == []


def test_a_deleted_name_can_be_reused_and_gets_a_new_uid(appmesh):
    appmesh.create_mesh(meshName="m")
    first = appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=http_node_spec())
    appmesh.delete_virtual_node(meshName="m", virtualNodeName="n")
    second = appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=http_node_spec())
    assert second["virtualNode"]["metadata"]["uid"] != first["virtualNode"]["metadata"]["uid"]
    assert second["virtualNode"]["metadata"]["version"] == 1
