"""A table written before quota tallies and ``refs`` existed gets them at load.

The tally items (``pk=cnt|...``, see ``appmesh_api.dynamo``) are what makes quotas and
"the mesh still has contents" exact across replicas. A table from an older version has
resources but no tallies; until a tally exists, a container's delete passes the
emptiness check in the transaction, and a node's delete passes its "nothing refers to
me" check (the ``refs`` set) while a service still names it. A replica that loads such
a table writes both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.api.conftest import dynamodb_store, table_client, table_of
from tests.api.helpers import http_node_spec
from tests.conftest import Server, make_client, new_account, start_server


def _refs(endpoint: str, table: str) -> dict[str, set[str]]:
    pages = table_client(endpoint).get_paginator("scan").paginate(TableName=table)
    found = {}
    for page in pages:
        for item in page["Items"]:
            if item["pk"]["S"].startswith("res|") and "refs" in item:
                found[item["sk"]["S"]] = set(item["refs"]["SS"])
    return found


def _tallies(endpoint: str, table: str) -> dict[tuple, int]:
    pages = table_client(endpoint).get_paginator("scan").paginate(TableName=table)
    found = {}
    for page in pages:
        for item in page["Items"]:
            if item["pk"]["S"].startswith("cnt|"):
                where = (*json.loads(item["pk"]["S"][4:]), *json.loads(item["sk"]["S"]))
                found[where] = int(item["n"]["N"])
    return found


@pytest.fixture
def store(dynamodb_endpoint: str) -> str:
    return dynamodb_store(dynamodb_endpoint)


@pytest.fixture
def replica(tmp_path: Path, store: str) -> Iterator[Callable[[], Server]]:
    started: list[Server] = []

    def start() -> Server:
        server = start_server(tmp_path, "--store", store, "--create-table")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_a_replica_loading_a_table_without_tallies_writes_them(
    dynamodb_endpoint: str, store: str, replica: Callable[[], Server]
) -> None:
    account = new_account()
    first = replica()
    appmesh = make_client(first.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName="old")
    for name in ("a", "b", "c"):
        appmesh.create_virtual_node(meshName="old", virtualNodeName=name, spec=http_node_spec())
    provider = {"provider": {"virtualNode": {"virtualNodeName": "a"}}}
    appmesh.create_virtual_service(meshName="old", virtualServiceName="a.local", spec=provider)
    table = table_of(store)
    written, referred = _tallies(dynamodb_endpoint, table), _refs(dynamodb_endpoint, table)
    assert referred == {'["virtualNode", "", "a"]': {'["virtualService", "", "a.local"]'}}
    assert written[("us-east-1", account, "old", "virtualNode", "")] == 3
    first.stop()

    client = table_client(dynamodb_endpoint)
    for where in written:  # as a table from before tallies holds them: not at all
        pk, sk = "cnt|" + json.dumps(list(where[:3])), json.dumps(list(where[3:]))
        client.delete_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    node_a = json.dumps(["virtualNode", "", "a"])
    pk = f"res|us-east-1|{account}|old"
    client.update_item(
        TableName=table,
        Key={"pk": {"S": pk}, "sk": {"S": node_a}},
        UpdateExpression="REMOVE #refs",
        ExpressionAttributeNames={"#refs": "refs"},
    )
    assert _tallies(dynamodb_endpoint, table) == {} and _refs(dynamodb_endpoint, table) == {}

    second = replica()
    assert _tallies(dynamodb_endpoint, table) == written
    assert _refs(dynamodb_endpoint, table) == referred
    assert "quota tallies the table lacked" in second.log()
    assert "recorded 1 references the table lacked" in second.log()
    again = make_client(second.endpoint, "appmesh", account)
    with pytest.raises(again.exceptions.ResourceInUseException):
        again.delete_mesh(meshName="old")
