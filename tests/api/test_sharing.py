"""Shared meshes: one account owns the mesh, another works in it with ``meshOwner``.

As on App Mesh, the other account gets in only after the owner shares the mesh through a
RAM resource share and the other account accepts the invitation (``share`` below).
"""

from __future__ import annotations

import pytest

from tests.api.helpers import (
    expect_error,
    gateway_route_spec,
    gateway_spec,
    http_node_spec,
    http_route_spec,
    router_spec,
    share_mesh,
)
from tests.conftest import make_client, new_account


@pytest.fixture
def owner(appmesh, account):
    """Account A's client, owning mesh ``shared`` with a node, a router and a gateway."""
    appmesh.create_mesh(meshName="shared")
    appmesh.create_virtual_node(meshName="shared", virtualNodeName="a-node", spec=http_node_spec())
    appmesh.create_virtual_router(
        meshName="shared", virtualRouterName="a-router", spec=router_spec()
    )
    appmesh.create_virtual_service(meshName="shared", virtualServiceName="a.local", spec={})
    appmesh.create_virtual_gateway(
        meshName="shared", virtualGatewayName="a-gw", spec=gateway_spec()
    )
    return appmesh


@pytest.fixture
def consumer_account() -> str:
    return new_account()


@pytest.fixture
def consumer(client_for, owner, account, consumer_account):
    """Account B's client; A has shared mesh ``shared`` with B and B accepted."""
    share_mesh(client_for, account, "shared", consumer_account)
    return client_for("appmesh", account=consumer_account)


@pytest.fixture
def b_node(owner, consumer, account):
    """A node account B created in A's mesh."""
    return consumer.create_virtual_node(
        meshName="shared", meshOwner=account, virtualNodeName="b-node", spec=http_node_spec()
    )["virtualNode"]


def test_a_consumer_creates_in_the_owners_mesh(b_node, account, consumer_account):
    metadata = b_node["metadata"]
    assert metadata["arn"] == (
        f"arn:aws:appmesh:us-east-1:{consumer_account}:mesh/shared/virtualNode/b-node"
    )
    assert metadata["meshOwner"] == account
    assert metadata["resourceOwner"] == consumer_account


def test_both_accounts_see_the_mesh_and_everything_in_it(
    owner, consumer, b_node, account, consumer_account
):
    mesh = consumer.describe_mesh(meshName="shared", meshOwner=account)["mesh"]
    assert mesh["metadata"]["resourceOwner"] == account
    for client, params in ((consumer, {"meshOwner": account}), (owner, {})):
        refs = client.list_virtual_nodes(meshName="shared", **params)["virtualNodes"]
        owners = {ref["virtualNodeName"]: (ref["meshOwner"], ref["resourceOwner"]) for ref in refs}
        assert owners == {
            "a-node": (account, account),
            "b-node": (account, consumer_account),
        }
        described = client.describe_virtual_node(
            meshName="shared", virtualNodeName="b-node", **params
        )["virtualNode"]
        assert described == b_node
    a_node = consumer.describe_virtual_node(
        meshName="shared", meshOwner=account, virtualNodeName="a-node"
    )["virtualNode"]
    assert a_node["metadata"]["resourceOwner"] == account
    assert consumer.list_virtual_routers(meshName="shared", meshOwner=account)["virtualRouters"]


def test_without_mesh_owner_the_consumer_looks_in_its_own_account(
    consumer, b_node, consumer_account
):
    message = expect_error("NotFoundException", 404, consumer.describe_mesh, meshName="shared")
    assert message == f"Mesh with name shared is not present for account {consumer_account}"


def test_list_meshes_shows_the_consumer_the_shared_mesh_with_its_owner(
    owner, consumer, account, consumer_account
):
    """MeshRef's meshOwner is "the account that shared the mesh with your account" when it
    is not yours: a consumer's ListMeshes lists its own meshes and the shared ones, paged."""
    for name in ("shared", "b-own", "z-own"):  # one of the consumer's own is named alike
        consumer.create_mesh(meshName=name)
    pages = consumer.get_paginator("list_meshes").paginate(PaginationConfig={"PageSize": 1})
    listed = [
        (r["meshName"], r["meshOwner"], r["resourceOwner"]) for p in pages for r in p["meshes"]
    ]
    assert sorted(listed) == sorted(
        [
            ("shared", account, account),
            ("b-own", consumer_account, consumer_account),
            ("shared", consumer_account, consumer_account),
            ("z-own", consumer_account, consumer_account),
        ]
    )
    assert len(set(listed)) == 4  # no page repeats or skips an entry
    assert [r["meshName"] for r in owner.list_meshes()["meshes"]] == ["shared"]


def test_a_consumer_cannot_change_the_owners_resources(owner, consumer, account, consumer_account):
    node = owner.describe_virtual_node(meshName="shared", virtualNodeName="a-node")["virtualNode"]
    message = expect_error(
        "ForbiddenException",
        403,
        consumer.update_virtual_node,
        meshName="shared",
        meshOwner=account,
        virtualNodeName="a-node",
        spec=http_node_spec(port=9090),
    )
    assert message.startswith(f"Account {consumer_account} cannot update {node['metadata']['arn']}")
    expect_error(
        "ForbiddenException",
        403,
        consumer.delete_virtual_node,
        meshName="shared",
        meshOwner=account,
        virtualNodeName="a-node",
    )
    expect_error(
        "ForbiddenException",
        403,
        consumer.update_virtual_router,
        meshName="shared",
        meshOwner=account,
        virtualRouterName="a-router",
        spec=router_spec(9090),
    )
    assert (
        owner.describe_virtual_node(meshName="shared", virtualNodeName="a-node")["virtualNode"]
        == node
    )


def test_the_owner_cannot_update_but_can_delete_a_consumers_resource(
    owner, consumer, b_node, account
):
    expect_error(
        "ForbiddenException",
        403,
        owner.update_virtual_node,
        meshName="shared",
        virtualNodeName="b-node",
        spec=http_node_spec(port=9090),
    )
    deleted = owner.delete_virtual_node(meshName="shared", virtualNodeName="b-node")
    assert deleted["virtualNode"]["status"]["status"] == "DELETED"
    assert (
        deleted["virtualNode"]["metadata"]["resourceOwner"] == b_node["metadata"]["resourceOwner"]
    )
    expect_error(
        "NotFoundException",
        404,
        consumer.describe_virtual_node,
        meshName="shared",
        meshOwner=account,
        virtualNodeName="b-node",
    )


def test_a_consumer_updates_and_deletes_its_own_resources(consumer, b_node, account):
    updated = consumer.update_virtual_node(
        meshName="shared", meshOwner=account, virtualNodeName="b-node", spec=http_node_spec(port=1)
    )["virtualNode"]
    assert updated["metadata"]["version"] == 2
    assert updated["metadata"]["arn"] == b_node["metadata"]["arn"]
    deleted = consumer.delete_virtual_node(
        meshName="shared", meshOwner=account, virtualNodeName="b-node"
    )
    assert deleted["virtualNode"]["status"]["status"] == "DELETED"


def test_only_a_routers_owner_creates_its_routes(owner, consumer, b_node, account):
    message = expect_error(
        "ForbiddenException",
        403,
        consumer.create_route,
        meshName="shared",
        meshOwner=account,
        virtualRouterName="a-router",
        routeName="r",
        spec=http_route_spec(("b-node", 1)),
    )
    assert "a-router" in message and account in message
    assert owner.list_routes(meshName="shared", virtualRouterName="a-router")["routes"] == []
    # The router's owner may route to the consumer's node, and the consumer to its own router.
    owner.create_route(
        meshName="shared",
        virtualRouterName="a-router",
        routeName="r",
        spec=http_route_spec(("b-node", 1)),
    )
    consumer.create_virtual_router(
        meshName="shared", meshOwner=account, virtualRouterName="b-router", spec=router_spec()
    )
    route = consumer.create_route(
        meshName="shared",
        meshOwner=account,
        virtualRouterName="b-router",
        routeName="r",
        spec=http_route_spec(("a-node", 1)),
    )["route"]
    assert route["metadata"]["resourceOwner"] != account
    assert route["metadata"]["meshOwner"] == account


def test_only_a_gateways_owner_creates_its_gateway_routes(owner, consumer, account):
    expect_error(
        "ForbiddenException",
        403,
        consumer.create_gateway_route,
        meshName="shared",
        meshOwner=account,
        virtualGatewayName="a-gw",
        gatewayRouteName="g",
        spec=gateway_route_spec("a.local"),
    )


def test_tags_are_managed_only_by_the_resource_owner(owner, consumer, b_node, account):
    a_arn = owner.describe_virtual_node(meshName="shared", virtualNodeName="a-node")["virtualNode"][
        "metadata"
    ]["arn"]
    b_arn = b_node["metadata"]["arn"]
    tags = [{"key": "team", "value": "b"}]
    for client, arn in ((consumer, a_arn), (owner, b_arn)):
        expect_error("ForbiddenException", 403, client.tag_resource, resourceArn=arn, tags=tags)
        expect_error(
            "ForbiddenException", 403, client.untag_resource, resourceArn=arn, tagKeys=["team"]
        )
        expect_error("ForbiddenException", 403, client.list_tags_for_resource, resourceArn=arn)
    consumer.tag_resource(resourceArn=b_arn, tags=tags)
    assert consumer.list_tags_for_resource(resourceArn=b_arn)["tags"] == tags
    owner.tag_resource(resourceArn=a_arn, tags=tags)
    assert owner.list_tags_for_resource(resourceArn=a_arn)["tags"] == tags


def test_a_consumers_resource_keeps_the_mesh_in_use(owner, consumer, account):
    owner.delete_virtual_node(meshName="shared", virtualNodeName="a-node")
    owner.delete_virtual_service(meshName="shared", virtualServiceName="a.local")
    owner.delete_virtual_router(meshName="shared", virtualRouterName="a-router")
    owner.delete_virtual_gateway(meshName="shared", virtualGatewayName="a-gw")
    consumer.create_virtual_service(
        meshName="shared", meshOwner=account, virtualServiceName="b.local", spec={}
    )
    expect_error("ResourceInUseException", 409, owner.delete_mesh, meshName="shared")
    owner.delete_virtual_service(meshName="shared", virtualServiceName="b.local")
    assert owner.delete_mesh(meshName="shared")["mesh"]["status"]["status"] == "DELETED"


def test_a_mesh_owner_without_that_mesh_is_not_found(consumer, account):
    message = expect_error(
        "NotFoundException",
        404,
        consumer.create_virtual_node,
        meshName="nowhere",
        meshOwner=account,
        virtualNodeName="n",
        spec=http_node_spec(),
    )
    assert message == f"Mesh with name nowhere is not present for account {account}"


def test_an_access_key_that_is_not_12_digits_is_the_default_account(server):
    client = make_client(server.endpoint, "appmesh", "AKIAIOSFODNN7EXAMPLE")
    name = f"default-{new_account()}"
    try:
        metadata = client.create_mesh(meshName=name)["mesh"]["metadata"]
        assert metadata["arn"] == f"arn:aws:appmesh:us-east-1:123456789012:mesh/{name}"
        assert metadata["meshOwner"] == metadata["resourceOwner"] == "123456789012"
        # The same account, reached by its own id as the key.
        same = make_client(server.endpoint, "appmesh", "123456789012")
        assert same.describe_mesh(meshName=name)["mesh"]["metadata"] == metadata
        # Any other non-numeric key lands there too.
        other = make_client(server.endpoint, "appmesh", "local")
        assert other.describe_mesh(meshName=name)["mesh"]["metadata"]["uid"] == metadata["uid"]
    finally:
        client.delete_mesh(meshName=name)
