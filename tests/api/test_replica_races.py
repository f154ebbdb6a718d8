"""Rules that read other resources hold exactly across three replicas racing on one table.

Three ``serve`` processes share one DynamoDB (moto's server, serving one request at a
time as DynamoDB applies a transaction atomically). Each replica's index lags the
others' writes by a nudge and a poll's round trip, so every check made against it
alone -- a quota, a reference, a delete refused while something depends on it -- could
be passed by two replicas at once. These tests fire the racing requests together, from
threads behind a barrier, on different replicas, and count what the table ends up
holding.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from appmesh_api.dependencies import referenced_keys
from appmesh_api.kinds import BY_KEY
from appmesh_api.store import Key
from tests.api.conftest import dynamodb_store
from tests.api.helpers import (
    gateway_route_spec,
    gateway_spec,
    http_node_spec,
    http_route_spec,
    router_spec,
)
from tests.api.test_replicas import eventually
from tests.conftest import Server, make_client, start_server

ROUNDS = 8  # reference races per pair of operations; each round is one real race
CATCH_UP = 30.0  # seconds a replica may take to poll a write in (a nudge, or a 1 s poll)


@pytest.fixture(scope="module")
def store(dynamodb_endpoint: str) -> str:
    return dynamodb_store(dynamodb_endpoint)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, store: str) -> Iterator[list[Server]]:
    """Three replicas with quotas lowered so a race for the last slot is cheap."""
    quotas = ["--quota", "virtual-nodes-per-mesh=5", "--quota", "meshes-per-account=3"]
    servers: list[Server] = []
    for name in ("a", "b", "c"):
        tmp: Path = tmp_path_factory.mktemp(f"replica-{name}")
        servers.append(start_server(tmp, "--store", store, "--create-table", *quotas))
    yield servers
    for server in servers:
        server.stop()


def clients(trio: list[Server], account: str) -> list:
    return [make_client(server.endpoint, "appmesh", account) for server in trio]


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
        return "ok"
    except ClientError as error:
        return error.response["Error"]["Code"]


def together(*calls: Callable[[], object]) -> list[str]:
    """Run the calls at the same instant (one thread each, behind a barrier)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> str:
        barrier.wait(timeout=30)
        return outcome(call)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def seen_everywhere(replicas: list, describe: Callable[[object], object]) -> None:
    for client in replicas:
        eventually(lambda c=client: describe(c), timeout=CATCH_UP)


def test_racing_creates_on_three_replicas_never_pass_the_node_quota(trio, account):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="quota")
    seen_everywhere(replicas, lambda c: c.describe_mesh(meshName="quota"))
    for round_ in range(3):
        names = [f"r{round_}-n{index}" for index in range(12)]
        calls = [
            lambda name=name, client=replicas[index % 3]: client.create_virtual_node(
                meshName="quota", virtualNodeName=name, spec=http_node_spec()
            )
            for index, name in enumerate(names)
        ]
        results = together(*calls)
        assert results.count("ok") == 5, results
        assert results.count("LimitExceededException") == 7, results
        for client in replicas:
            listed = eventually(lambda c=client: _nodes(c, "quota", 5), timeout=CATCH_UP)
            assert len(listed) == 5
        # The refusal is App Mesh's, whichever replica gives it.
        with pytest.raises(ClientError) as refused:
            replicas[round_ % 3].create_virtual_node(
                meshName="quota", virtualNodeName="extra", spec=http_node_spec()
            )
        message = refused.value.response["Error"]["Message"]
        assert message.startswith("The maximum number of VirtualNodes in mesh quota (5)")
        # Deletes on every replica give the slots back, counted as exactly.
        created = _nodes(replicas[0], "quota", 5)
        together(
            *(
                lambda name=name, client=replicas[index % 3]: client.delete_virtual_node(
                    meshName="quota", virtualNodeName=name
                )
                for index, name in enumerate(created)
            )
        )
        for client in replicas:
            eventually(lambda c=client: _nodes(c, "quota", 0), timeout=CATCH_UP)


def _nodes(client, mesh: str, expected: int) -> list[str]:
    names = [n["virtualNodeName"] for n in client.list_virtual_nodes(meshName=mesh)["virtualNodes"]]
    assert len(names) == expected, names
    return names


def test_racing_mesh_creates_on_three_replicas_keep_the_account_quota(trio, account):
    replicas = clients(trio, account)
    results = together(
        *(
            lambda index=index: replicas[index % 3].create_mesh(meshName=f"acct-{index}")
            for index in range(9)
        )
    )
    assert results.count("ok") == 3, results
    assert results.count("LimitExceededException") == 6, results
    for client in replicas:
        eventually(lambda c=client: _meshes(c, 3), timeout=CATCH_UP)


def _meshes(client, expected: int) -> None:
    assert len(client.list_meshes()["meshes"]) == expected


def test_one_client_token_on_three_replicas_at_once_makes_one_resource(trio, account):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="tokens")
    seen_everywhere(replicas, lambda c: c.describe_mesh(meshName="tokens"))
    answers: list[dict] = []

    def create(client) -> None:
        answers.append(
            client.create_virtual_node(
                meshName="tokens",
                virtualNodeName="once",
                spec=http_node_spec(),
                clientToken="retried-everywhere",
            )["virtualNode"]
        )

    results = together(*(lambda c=replicas[index % 3]: create(c) for index in range(9)))
    assert results == ["ok"] * 9
    assert len({answer["metadata"]["uid"] for answer in answers}) == 1
    # The same token with another request is App Mesh's conflict, on every replica.
    for client in replicas:
        with pytest.raises(ClientError) as other:
            client.create_virtual_node(
                meshName="tokens",
                virtualNodeName="other",
                spec=http_node_spec(),
                clientToken="retried-everywhere",
            )
        assert other.value.response["Error"]["Code"] == "ConflictException"
        assert "different specifications" in other.value.response["Error"]["Message"]


def race_rounds(
    replicas: list, store: str, mesh: str, prepare: Callable, refer: Callable, remove: Callable
) -> tuple[list[str], set[tuple[str, ...]]]:
    """``ROUNDS`` times: ``prepare`` on replica 1 (and wait until all see it), then
    ``refer`` on replica 2 and ``remove`` on replica 3 at the same instant. Exactly one
    of the two must win each time; the table is audited for dangling references."""
    outcomes: set[tuple[str, ...]] = set()
    for round_ in range(ROUNDS):
        describe = prepare(replicas[0], round_)
        seen_everywhere(replicas, describe)
        results = together(
            lambda r=round_: refer(replicas[1], r), lambda r=round_: remove(replicas[2], r)
        )
        outcomes.add(tuple(results))
    problems = dangling(store, mesh)
    assert problems == [], (problems, outcomes)
    assert all(results.count("ok") == 1 for results in outcomes), outcomes
    return problems, outcomes


def test_a_node_deleted_while_another_replica_names_it_a_provider_leaves_nothing_dangling(
    trio, store, account
):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="provider")

    def prepare(client, round_: int):
        client.create_virtual_node(
            meshName="provider", virtualNodeName=f"n{round_}", spec=http_node_spec()
        )
        return lambda c: c.describe_virtual_node(meshName="provider", virtualNodeName=f"n{round_}")

    def refer(client, round_: int) -> None:
        provider = {"provider": {"virtualNode": {"virtualNodeName": f"n{round_}"}}}
        client.create_virtual_service(
            meshName="provider", virtualServiceName=f"s{round_}.local", spec=provider
        )

    def remove(client, round_: int) -> None:
        client.delete_virtual_node(meshName="provider", virtualNodeName=f"n{round_}")

    problems, outcomes = race_rounds(replicas, store, "provider", prepare, refer, remove)
    assert problems == [], outcomes


def test_a_router_deleted_while_another_replica_adds_a_route_leaves_no_orphan(trio, store, account):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="routers")
    replicas[0].create_virtual_node(
        meshName="routers", virtualNodeName="target", spec=http_node_spec()
    )

    def prepare(client, round_: int):
        router = f"r{round_}"
        client.create_virtual_router(
            meshName="routers", virtualRouterName=router, spec=router_spec()
        )
        return lambda c: c.describe_virtual_router(meshName="routers", virtualRouterName=router)

    def refer(client, round_: int) -> None:
        client.create_route(
            meshName="routers",
            virtualRouterName=f"r{round_}",
            routeName="route",
            spec=http_route_spec(("target", 1)),
        )

    def remove(client, round_: int) -> None:
        client.delete_virtual_router(meshName="routers", virtualRouterName=f"r{round_}")

    problems, outcomes = race_rounds(replicas, store, "routers", prepare, refer, remove)
    assert problems == [], outcomes


def test_a_node_deleted_while_another_replica_routes_to_it_is_never_a_dangling_target(
    trio, store, account
):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="targets")
    replicas[0].create_virtual_router(
        meshName="targets", virtualRouterName="router", spec=router_spec()
    )

    def prepare(client, round_: int):
        client.create_virtual_node(
            meshName="targets", virtualNodeName=f"n{round_}", spec=http_node_spec()
        )
        return lambda c: c.describe_virtual_node(meshName="targets", virtualNodeName=f"n{round_}")

    def refer(client, round_: int) -> None:
        client.create_route(
            meshName="targets",
            virtualRouterName="router",
            routeName=f"to-n{round_}",
            spec=http_route_spec((f"n{round_}", 1)),
        )

    def remove(client, round_: int) -> None:
        client.delete_virtual_node(meshName="targets", virtualNodeName=f"n{round_}")

    problems, outcomes = race_rounds(replicas, store, "targets", prepare, refer, remove)
    assert problems == [], outcomes


def test_a_mesh_deleted_while_another_replica_creates_in_it_leaves_no_orphan(trio, store, account):
    replicas = clients(trio, account)

    def prepare(client, round_: int):
        client.create_mesh(meshName=f"m{round_}")
        return lambda c: c.describe_mesh(meshName=f"m{round_}")

    def refer(client, round_: int) -> None:
        client.create_virtual_node(
            meshName=f"m{round_}", virtualNodeName="n", spec=http_node_spec()
        )

    def remove(client, round_: int) -> None:
        client.delete_mesh(meshName=f"m{round_}")

    # Lower quota of 3 meshes per account: rounds clean up after themselves.
    outcomes: set[tuple[str, ...]] = set()
    for round_ in range(ROUNDS):
        seen_everywhere(replicas, prepare(replicas[0], round_))
        results = together(
            lambda r=round_: refer(replicas[1], r), lambda r=round_: remove(replicas[2], r)
        )
        outcomes.add(tuple(results))
        assert results.count("ok") == 1, results
        problems = dangling(store, f"m{round_}")
        assert problems == [], (problems, results)
        if results[1] != "ok":  # the node won: empty the mesh, then it can go
            replicas[0].delete_virtual_node(meshName=f"m{round_}", virtualNodeName="n")
            eventually(lambda r=round_: replicas[0].delete_mesh(meshName=f"m{r}"))
        for client in replicas:
            eventually(lambda c=client: _meshes(c, 0), timeout=CATCH_UP)


def test_a_gateway_deleted_while_another_replica_adds_a_gateway_route_leaves_no_orphan(
    trio, store, account
):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="gateways")
    replicas[0].create_virtual_service(meshName="gateways", virtualServiceName="s.local", spec={})

    def prepare(client, round_: int):
        client.create_virtual_gateway(
            meshName="gateways", virtualGatewayName=f"g{round_}", spec=gateway_spec()
        )
        return lambda c: c.describe_virtual_gateway(
            meshName="gateways", virtualGatewayName=f"g{round_}"
        )

    def refer(client, round_: int) -> None:
        client.create_gateway_route(
            meshName="gateways",
            virtualGatewayName=f"g{round_}",
            gatewayRouteName="to-s",
            spec=gateway_route_spec("s.local"),
        )

    def remove(client, round_: int) -> None:
        client.delete_virtual_gateway(meshName="gateways", virtualGatewayName=f"g{round_}")

    problems, outcomes = race_rounds(replicas, store, "gateways", prepare, refer, remove)
    assert problems == [], outcomes


def test_a_service_deleted_while_another_replica_routes_a_gateway_to_it_never_dangles(
    trio, store, account
):
    replicas = clients(trio, account)
    replicas[0].create_mesh(meshName="edges")
    replicas[0].create_virtual_gateway(
        meshName="edges", virtualGatewayName="gateway", spec=gateway_spec()
    )

    def prepare(client, round_: int):
        client.create_virtual_service(
            meshName="edges", virtualServiceName=f"s{round_}.local", spec={}
        )
        return lambda c: c.describe_virtual_service(
            meshName="edges", virtualServiceName=f"s{round_}.local"
        )

    def refer(client, round_: int) -> None:
        client.create_gateway_route(
            meshName="edges",
            virtualGatewayName="gateway",
            gatewayRouteName=f"to-s{round_}",
            spec=gateway_route_spec(f"s{round_}.local", prefix=f"/s{round_}"),
        )

    def remove(client, round_: int) -> None:
        client.delete_virtual_service(meshName="edges", virtualServiceName=f"s{round_}.local")

    problems, outcomes = race_rounds(replicas, store, "edges", prepare, refer, remove)
    assert problems == [], outcomes


def dangling(store: str, mesh: str) -> list[str]:
    """Read the table itself (not a replica): every resource of ``mesh`` whose container
    or whose referenced resource is missing."""
    table, rest = store[len("dynamodb://") :].split("?", 1)
    endpoint = rest.split("endpoint=")[1].split("&")[0]
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    found: dict[Key, dict] = {}
    for item in (item for page in pages for item in page["Items"]):
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        if not pk.startswith("res|") or pk.split("|", 3)[3] != mesh:
            continue
        region, owner, name = pk[4:].split("|", 2)
        found[Key(region, owner, name, *json.loads(sk))] = json.loads(item["data"]["S"])
    problems = []
    for key, data in found.items():
        kind = BY_KEY[key.kind]
        needed = referenced_keys(key.mesh_key, kind, data["spec"])
        if kind.parent is not None:
            needed.add(Key(*key.mesh_key, kind.parent.key, "", key.parent))
        if key.kind != "mesh":
            needed.add(Key(*key.mesh_key, "mesh", "", key.mesh))
        problems += [f"{key.name} -> {missing.name}" for missing in needed - set(found)]
    return problems
