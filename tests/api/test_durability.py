"""State survives a clean restart and a ``kill -9``; parallel writers never lose an update."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.api.helpers import build_mesh, http_node_spec, http_route_spec
from tests.conftest import make_client, new_account, start_server


def snapshot_of(appmesh, mesh: str) -> dict:
    """Everything a user can see of one mesh, for before/after comparisons."""
    nodes = appmesh.list_virtual_nodes(meshName=mesh)["virtualNodes"]
    return {
        "mesh": appmesh.describe_mesh(meshName=mesh)["mesh"],
        "nodes": [
            appmesh.describe_virtual_node(meshName=mesh, virtualNodeName=n["virtualNodeName"])
            for n in nodes
        ],
        "route": appmesh.describe_route(
            meshName=mesh, virtualRouterName="router", routeName="route"
        )["route"],
        "gateway_route": appmesh.describe_gateway_route(
            meshName=mesh, virtualGatewayName="gw", gatewayRouteName="gwr"
        )["gatewayRoute"],
        "tags": appmesh.list_tags_for_resource(
            resourceArn=appmesh.describe_mesh(meshName=mesh)["mesh"]["metadata"]["arn"]
        )["tags"],
    }


def strip_request_metadata(value):
    if isinstance(value, dict):
        return {k: strip_request_metadata(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [strip_request_metadata(v) for v in value]
    return value


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "kill-9"])
def test_committed_resources_survive_the_server_stopping(tmp_path, how):
    data_dir = tmp_path / "state"
    account = new_account()
    first = start_server(tmp_path, data_dir=data_dir)
    try:
        appmesh = make_client(first.endpoint, "appmesh", account)
        build_mesh(appmesh, "durable")
        arn = appmesh.describe_mesh(meshName="durable")["mesh"]["metadata"]["arn"]
        appmesh.tag_resource(resourceArn=arn, tags=[{"key": "kept", "value": "yes"}])
        appmesh.update_virtual_node(
            meshName="durable", virtualNodeName="blue", spec=http_node_spec(port=9090)
        )
        before = strip_request_metadata(snapshot_of(appmesh, "durable"))
    finally:
        first.stop(how)
    second = start_server(tmp_path, data_dir=data_dir)
    try:
        appmesh = make_client(second.endpoint, "appmesh", account)
        after = strip_request_metadata(snapshot_of(appmesh, "durable"))
        assert after == before
        assert after["nodes"][0]["virtualNode"]["metadata"]["version"] == 2
        with pytest.raises(ClientError) as duplicate:
            appmesh.create_mesh(meshName="durable")
        assert duplicate.value.response["Error"]["Code"] == "ConflictException"
    finally:
        second.stop()


def test_twenty_parallel_writers_never_lose_an_update(server, account):
    appmesh = make_client(server.endpoint, "appmesh", account)
    build_mesh(appmesh, "busy")
    appmesh.create_virtual_node(meshName="busy", virtualNodeName="green", spec=http_node_spec())

    def update(index: int) -> int:
        client = make_client(server.endpoint, "appmesh", account)
        successes = 0
        for round_ in range(5):
            weight = 1 + (index * 5 + round_) % 99
            spec = http_route_spec(("blue", weight), ("green", 100 - weight))
            client.update_route(
                meshName="busy", virtualRouterName="router", routeName="route", spec=spec
            )
            successes += 1
        return successes

    with ThreadPoolExecutor(max_workers=20) as pool:
        successes = sum(pool.map(update, range(20)))

    route = appmesh.describe_route(meshName="busy", virtualRouterName="router", routeName="route")
    assert successes == 100
    assert route["route"]["metadata"]["version"] == 1 + successes
    targets = route["route"]["spec"]["httpRoute"]["action"]["weightedTargets"]
    assert sum(t["weight"] for t in targets) == 100


def test_parallel_creates_of_one_name_make_exactly_one_resource(server, account):
    appmesh = make_client(server.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName="race")

    def create(_index: int) -> str:
        client = make_client(server.endpoint, "appmesh", account)
        try:
            client.create_virtual_node(
                meshName="race", virtualNodeName="only", spec=http_node_spec()
            )
            return "created"
        except ClientError as error:
            return error.response["Error"]["Code"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(create, range(10)))

    assert outcomes.count("created") == 1
    assert outcomes.count("ConflictException") == 9
    assert len(appmesh.list_virtual_nodes(meshName="race")["virtualNodes"]) == 1
