"""App Mesh's default quotas, and lowering them with ``--quota NAME=N`` on a second server."""

from __future__ import annotations

import pytest

from tests.api.helpers import (
    expect_error,
    gateway_route_spec,
    gateway_spec,
    http_node_spec,
    http_route_spec,
    router_spec,
)
from tests.conftest import make_client, new_account, start_server


def test_15_meshes_per_account(appmesh, client_for):
    for i in range(15):
        appmesh.create_mesh(meshName=f"m{i:02}")
    message = expect_error("LimitExceededException", 400, appmesh.create_mesh, meshName="m15")
    assert "(15)" in message and "L-AC861A39" in message
    assert "--quota meshes-per-account=N" in message
    assert len(appmesh.list_meshes()["meshes"]) == 15
    # Another account has its own quota.
    client_for("appmesh").create_mesh(meshName="m15")
    # Deleting one frees a slot.
    appmesh.delete_mesh(meshName="m00")
    appmesh.create_mesh(meshName="m15")


def test_3_virtual_gateways_per_mesh(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_mesh(meshName="n")
    for name in ("a", "b", "c"):
        appmesh.create_virtual_gateway(meshName="m", virtualGatewayName=name, spec=gateway_spec())
    message = expect_error(
        "LimitExceededException",
        400,
        appmesh.create_virtual_gateway,
        meshName="m",
        virtualGatewayName="d",
        spec=gateway_spec(),
    )
    assert message.startswith(
        "The maximum number of VirtualGateways in mesh m (3) has been reached"
    )
    assert "--quota virtual-gateways-per-mesh=N" in message
    # The quota is per mesh.
    appmesh.create_virtual_gateway(meshName="n", virtualGatewayName="d", spec=gateway_spec())
    # An update is not a create and is not counted.
    appmesh.update_virtual_gateway(meshName="m", virtualGatewayName="a", spec=gateway_spec(9090))


def test_10_gateway_routes_per_virtual_gateway(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_service(meshName="m", virtualServiceName="s.local", spec={})
    for gateway in ("g1", "g2"):
        appmesh.create_virtual_gateway(
            meshName="m", virtualGatewayName=gateway, spec=gateway_spec()
        )
    for i in range(10):
        appmesh.create_gateway_route(
            meshName="m",
            virtualGatewayName="g1",
            gatewayRouteName=f"r{i}",
            spec=gateway_route_spec("s.local", prefix=f"/p{i}/"),
        )
    message = expect_error(
        "LimitExceededException",
        400,
        appmesh.create_gateway_route,
        meshName="m",
        virtualGatewayName="g1",
        gatewayRouteName="r10",
        spec=gateway_route_spec("s.local", prefix="/p10/"),
    )
    assert "GatewayRoutes in VirtualGateway g1 (10)" in message
    assert "L-F6F26D09" in message
    routes = appmesh.list_gateway_routes(meshName="m", virtualGatewayName="g1")["gatewayRoutes"]
    assert len(routes) == 10
    # The quota is per gateway.
    appmesh.create_gateway_route(
        meshName="m",
        virtualGatewayName="g2",
        gatewayRouteName="r10",
        spec=gateway_route_spec("s.local"),
    )


def test_a_duplicate_at_the_limit_is_still_a_conflict(appmesh):
    appmesh.create_mesh(meshName="m")
    for name in ("a", "b", "c"):
        appmesh.create_virtual_gateway(meshName="m", virtualGatewayName=name, spec=gateway_spec())
    expect_error(
        "ConflictException",
        409,
        appmesh.create_virtual_gateway,
        meshName="m",
        virtualGatewayName="a",
        spec=gateway_spec(),
    )


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    """A second server whose quotas are lowered on the command line."""
    running = start_server(
        tmp_path_factory.mktemp("quotas"),
        "--quota",
        "virtual-nodes-per-mesh=3",
        "--quota",
        "routes-per-virtual-router=2",
        "--quota",
        "backends-per-virtual-node=2",
    )
    yield running
    running.stop()


@pytest.fixture
def small(lowered):
    return make_client(lowered.endpoint, "appmesh", new_account())


def test_lowered_virtual_nodes_per_mesh(small):
    small.create_mesh(meshName="m")
    small.create_mesh(meshName="n")
    for name in ("a", "b", "c"):
        small.create_virtual_node(meshName="m", virtualNodeName=name, spec=http_node_spec())
    message = expect_error(
        "LimitExceededException",
        400,
        small.create_virtual_node,
        meshName="m",
        virtualNodeName="d",
        spec=http_node_spec(),
    )
    assert message == (
        "The maximum number of VirtualNodes in mesh m (3) has been reached (quota L-E043DFB4). "
        "Delete unused VirtualNodes, or start appmesh-local with --quota virtual-nodes-per-mesh=N."
    )
    assert len(small.list_virtual_nodes(meshName="m")["virtualNodes"]) == 3
    small.create_virtual_node(meshName="n", virtualNodeName="d", spec=http_node_spec())
    small.delete_virtual_node(meshName="m", virtualNodeName="a")
    small.create_virtual_node(meshName="m", virtualNodeName="d", spec=http_node_spec())


def test_lowered_routes_per_virtual_router(small):
    small.create_mesh(meshName="m")
    small.create_virtual_node(meshName="m", virtualNodeName="a", spec=http_node_spec())
    for router in ("r1", "r2"):
        small.create_virtual_router(meshName="m", virtualRouterName=router, spec=router_spec())
    for name in ("x", "y"):
        small.create_route(
            meshName="m",
            virtualRouterName="r1",
            routeName=name,
            spec=http_route_spec(("a", 1), prefix=f"/{name}"),
        )
    message = expect_error(
        "LimitExceededException",
        400,
        small.create_route,
        meshName="m",
        virtualRouterName="r1",
        routeName="z",
        spec=http_route_spec(("a", 1), prefix="/z"),
    )
    assert "Routes in VirtualRouter r1 (2)" in message
    assert "--quota routes-per-virtual-router=N" in message
    small.create_route(
        meshName="m", virtualRouterName="r2", routeName="z", spec=http_route_spec(("a", 1))
    )


def test_lowered_backends_per_virtual_node(small):
    small.create_mesh(meshName="m")
    backends = [{"virtualService": {"virtualServiceName": f"s{i}.local"}} for i in range(3)]
    message = expect_error(
        "LimitExceededException",
        400,
        small.create_virtual_node,
        meshName="m",
        virtualNodeName="n",
        spec=http_node_spec(backends=backends),
    )
    assert "at most 2 backends" in message
    assert "--quota backends-per-virtual-node=N" in message
    small.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(backends=backends[:2])
    )
    expect_error(
        "LimitExceededException",
        400,
        small.update_virtual_node,
        meshName="m",
        virtualNodeName="n",
        spec=http_node_spec(backends=backends),
    )
    described = small.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]
    assert described["metadata"]["version"] == 1


def test_quotas_not_overridden_keep_aws_defaults(small):
    small.create_mesh(meshName="m")
    for name in ("a", "b", "c"):
        small.create_virtual_gateway(meshName="m", virtualGatewayName=name, spec=gateway_spec())
    expect_error(
        "LimitExceededException",
        400,
        small.create_virtual_gateway,
        meshName="m",
        virtualGatewayName="d",
        spec=gateway_spec(),
    )


def test_an_unknown_quota_name_stops_the_server(tmp_path):
    with pytest.raises(RuntimeError, match="unknown quota 'nodes'"):
        start_server(tmp_path, "--quota", "nodes=3")
