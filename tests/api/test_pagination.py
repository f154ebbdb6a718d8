"""List pagination: limit, opaque nextToken, boto3 paginators, and tokens bound to their listing."""

from __future__ import annotations

import pytest

from tests.api.helpers import expect_error, http_node_spec, router_spec

NAMES = [f"node-{i:02}" for i in range(25)]


@pytest.fixture
def nodes(appmesh) -> list[str]:
    """A mesh ``m`` with 25 nodes, created out of order."""
    appmesh.create_mesh(meshName="m")
    for name in reversed(NAMES):
        appmesh.create_virtual_node(meshName="m", virtualNodeName=name, spec=http_node_spec())
    return NAMES


def collect(appmesh, limit: int | None, **params) -> tuple[list[str], list[int]]:
    """Page through ListVirtualNodes by hand; returns the names and each page's size."""
    names: list[str] = []
    sizes: list[int] = []
    token = None
    while True:
        extra = {"limit": limit} if limit is not None else {}
        if token is not None:
            extra["nextToken"] = token
        page = appmesh.list_virtual_nodes(meshName="m", **params, **extra)
        names += [ref["virtualNodeName"] for ref in page["virtualNodes"]]
        sizes.append(len(page["virtualNodes"]))
        token = page.get("nextToken")
        if token is None:
            return names, sizes
        assert isinstance(token, str) and token
        assert not any(name in token for name in NAMES), "the token should be opaque"
        assert len(sizes) <= 30


@pytest.mark.parametrize(
    ("limit", "sizes"),
    [
        (7, [7, 7, 7, 4]),
        (1, [1] * 25),
        (5, [5] * 5),
        (24, [24, 1]),
        (25, [25]),
        (100, [25]),
        (None, [25]),
    ],
)
def test_pages_hold_every_name_once_in_order(appmesh, nodes, limit, sizes):
    names, seen_sizes = collect(appmesh, limit)
    assert names == nodes
    assert seen_sizes == sizes


def test_the_last_page_has_no_next_token(appmesh, nodes):
    page = appmesh.list_virtual_nodes(meshName="m", limit=25)
    assert "nextToken" not in page or page["nextToken"] is None
    empty = appmesh.list_virtual_routers(meshName="m")
    assert empty["virtualRouters"] == []
    assert empty.get("nextToken") is None


def test_boto3_paginator_with_page_size(appmesh, nodes):
    paginator = appmesh.get_paginator("list_virtual_nodes")
    pages = list(paginator.paginate(meshName="m", PaginationConfig={"PageSize": 7}))
    assert [len(page["virtualNodes"]) for page in pages] == [7, 7, 7, 4]
    assert [ref["virtualNodeName"] for page in pages for ref in page["virtualNodes"]] == nodes


def test_boto3_paginator_build_full_result_with_max_items(appmesh, nodes):
    paginator = appmesh.get_paginator("list_virtual_nodes")
    first = paginator.paginate(
        meshName="m", PaginationConfig={"PageSize": 4, "MaxItems": 10}
    ).build_full_result()
    assert [ref["virtualNodeName"] for ref in first["virtualNodes"]] == nodes[:10]
    rest = paginator.paginate(
        meshName="m", PaginationConfig={"PageSize": 4, "StartingToken": first["NextToken"]}
    ).build_full_result()
    assert [ref["virtualNodeName"] for ref in rest["virtualNodes"]] == nodes[10:]


def test_list_meshes_paginates(appmesh):
    for name in ("c", "a", "b"):
        appmesh.create_mesh(meshName=name)
    paginator = appmesh.get_paginator("list_meshes")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    assert [[ref["meshName"] for ref in page["meshes"]] for page in pages] == [["a", "b"], ["c"]]


def test_a_page_boundary_survives_inserts_and_deletes(appmesh, nodes):
    first = appmesh.list_virtual_nodes(meshName="m", limit=5)
    assert [ref["virtualNodeName"] for ref in first["virtualNodes"]] == nodes[:5]
    appmesh.delete_virtual_node(meshName="m", virtualNodeName="node-04")  # the last one served
    appmesh.delete_virtual_node(meshName="m", virtualNodeName="node-05")  # the next one due
    appmesh.create_virtual_node(meshName="m", virtualNodeName="node-00a", spec=http_node_spec())
    appmesh.create_virtual_node(meshName="m", virtualNodeName="node-05a", spec=http_node_spec())
    second = appmesh.list_virtual_nodes(meshName="m", limit=3, nextToken=first["nextToken"])
    names = [ref["virtualNodeName"] for ref in second["virtualNodes"]]
    assert names == ["node-05a", "node-06", "node-07"]


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_limits_outside_1_to_100_are_rejected(appmesh, client_for, account, nodes, limit):
    loose = client_for("appmesh", account=account, parameter_validation=False)
    message = expect_error(
        "BadRequestException", 400, loose.list_virtual_nodes, meshName="m", limit=limit
    )
    assert f"Value '{limit}' at 'limit' failed to satisfy constraint" in message


def test_limit_101_passes_boto3_but_not_the_server(appmesh):
    appmesh.create_mesh(meshName="m")
    for operation, params in [
        (appmesh.list_meshes, {}),
        (appmesh.list_virtual_nodes, {"meshName": "m"}),
        (appmesh.list_virtual_services, {"meshName": "m"}),
        (appmesh.list_virtual_routers, {"meshName": "m"}),
        (appmesh.list_virtual_gateways, {"meshName": "m"}),
    ]:
        message = expect_error("BadRequestException", 400, operation, limit=101, **params)
        assert "less than or equal to 100" in message
        assert operation(limit=100, **params)


def test_list_tags_for_resource_pages_with_limits_1_to_50(appmesh):
    tags = [{"key": f"k{i:02}", "value": str(i)} for i in range(50)]
    arn = appmesh.create_mesh(meshName="m", tags=tags)["mesh"]["metadata"]["arn"]
    assert appmesh.list_tags_for_resource(resourceArn=arn, limit=50)["tags"] == tags
    assert len(appmesh.list_tags_for_resource(resourceArn=arn)["tags"]) == 50
    paginator = appmesh.get_paginator("list_tags_for_resource")
    pages = list(paginator.paginate(resourceArn=arn, PaginationConfig={"PageSize": 20}))
    assert [len(page["tags"]) for page in pages] == [20, 20, 10]
    assert [tag for page in pages for tag in page["tags"]] == tags
    message = expect_error(
        "BadRequestException", 400, appmesh.list_tags_for_resource, resourceArn=arn, limit=51
    )
    assert "less than or equal to 50" in message


def test_a_token_from_one_listing_is_refused_by_another(appmesh, client_for):
    appmesh.create_mesh(meshName="m")
    appmesh.create_mesh(meshName="other")
    for mesh in ("m", "other"):
        for name in ("a", "b", "c"):
            appmesh.create_virtual_node(meshName=mesh, virtualNodeName=name, spec=http_node_spec())
            appmesh.create_virtual_router(meshName=mesh, virtualRouterName=name, spec=router_spec())
    token = appmesh.list_virtual_nodes(meshName="m", limit=1)["nextToken"]
    refusals = [
        (appmesh.list_virtual_routers, {"meshName": "m"}),  # another kind
        (appmesh.list_virtual_nodes, {"meshName": "other"}),  # another mesh
        (appmesh.list_meshes, {}),
        (appmesh.list_routes, {"meshName": "m", "virtualRouterName": "a"}),
    ]
    for operation, params in refusals:
        message = expect_error("BadRequestException", 400, operation, nextToken=token, **params)
        assert "nextToken" in message
    # The same token still works where it came from.
    assert appmesh.list_virtual_nodes(meshName="m", nextToken=token)["virtualNodes"]

    mesh_token = appmesh.list_meshes(limit=1)["nextToken"]
    stranger = client_for("appmesh")
    stranger.create_mesh(meshName="x")
    stranger.create_mesh(meshName="y")
    expect_error("BadRequestException", 400, stranger.list_meshes, nextToken=mesh_token)

    arn = appmesh.describe_mesh(meshName="m")["mesh"]["metadata"]["arn"]
    other_arn = appmesh.describe_mesh(meshName="other")["mesh"]["metadata"]["arn"]
    for target in (arn, other_arn):
        appmesh.tag_resource(
            resourceArn=target, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
        )
    tag_token = appmesh.list_tags_for_resource(resourceArn=arn, limit=1)["nextToken"]
    expect_error(
        "BadRequestException",
        400,
        appmesh.list_tags_for_resource,
        resourceArn=other_arn,
        nextToken=tag_token,
    )
    expect_error("BadRequestException", 400, appmesh.list_meshes, nextToken=tag_token)


@pytest.mark.parametrize("token", ["garbage", "e30", "!!!", "eyJzIjoibWVzaCJ9"])
def test_nonsense_tokens_are_rejected(appmesh, token):
    message = expect_error("BadRequestException", 400, appmesh.list_meshes, nextToken=token)
    assert message.startswith("The nextToken is invalid.")
