"""Replicas nudge each other after a write, and prune old change items.

Replicas here poll the table every 30 s (``poll=30``) unless said otherwise, so a
write seen on another replica within seconds was delivered by a nudge.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from appmesh_api.localports import free_port
from appmesh_api.peers import NUDGE_PATH, TOKEN_HEADER
from tests.api.conftest import dynamodb_store, table_client, table_of
from tests.api.helpers import http_node_spec
from tests.api.test_replicas import eventually, start_replica
from tests.api.test_replicas import (
    test_a_proxy_connected_to_one_replica_is_an_endpoint_on_the_other as _proxy_shared,
)
from tests.conftest import Server, make_client, start_server


def replica_items(dynamodb_endpoint: str, store: str) -> list[dict]:
    answer = table_client(dynamodb_endpoint).query(
        TableName=table_of(store),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "replica"}},
        ConsistentRead=True,
    )
    return answer["Items"]


def nudge(server: Server, token: str | None, body: bytes = b"") -> int:
    headers = {TOKEN_HEADER: token} if token is not None else {}
    request = urllib.request.Request(
        server.endpoint + NUDGE_PATH, data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def slow_store(dynamodb_endpoint: str) -> str:
    return dynamodb_store(dynamodb_endpoint) + "&poll=30"


@pytest.fixture
def pair(tmp_path: Path, slow_store: str) -> Iterator[tuple[Server, Server]]:
    first = start_replica(tmp_path / "a", slow_store)
    second = start_replica(tmp_path / "b", slow_store)
    yield first, second
    first.stop()
    second.stop()


def test_a_nudge_needs_the_replicas_token_from_the_table(pair, dynamodb_endpoint, slow_store):
    first, _ = pair
    items = eventually(lambda: _two(replica_items(dynamodb_endpoint, slow_store)))
    url = f"http://127.0.0.1:{first.port}"
    token = next(item["token"]["S"] for item in items if item["url"]["S"] == url)
    assert nudge(first, None) == 403
    assert nudge(first, "0" * len(token)) == 403
    other = next(item["token"]["S"] for item in items if item["url"]["S"] != url)
    assert nudge(first, other) == 403, "another replica's token is not this one's"
    assert nudge(first, token) == 204


def _two(items: list[dict]) -> list[dict]:
    assert len(items) == 2
    return items


def test_a_server_on_sqlite_has_no_nudge(tmp_path: Path):
    server = start_server(tmp_path, data_dir=tmp_path / "data")
    try:
        assert nudge(server, "anything") == 404
    finally:
        server.stop()


def test_a_write_reaches_a_slowly_polling_replica_by_its_nudge(pair, account):
    first, second = pair
    a = make_client(first.endpoint, "appmesh", account)
    b = make_client(second.endpoint, "appmesh", account)
    time.sleep(2.5)  # both have read the other's replica item (every 2 s)
    a.create_mesh(meshName="nudged")
    found = eventually(lambda: b.describe_mesh(meshName="nudged"), timeout=10)
    assert found["mesh"]["metadata"]["version"] == 1
    a.create_virtual_node(meshName="nudged", virtualNodeName="n", spec=http_node_spec())
    eventually(lambda: b.describe_virtual_node(meshName="nudged", virtualNodeName="n"), 10)


def test_a_replica_with_a_wrong_address_converges_by_polling(
    tmp_path: Path, dynamodb_endpoint: str, account
):
    """A peer listed at an address nobody answers on loses its nudges: it still sees
    the write by its own poll, and the other peer's nudge is not held up by it."""
    store = dynamodb_store(dynamodb_endpoint)
    writer = start_replica(tmp_path / "a", store + "&poll=30")
    (tmp_path / "b").mkdir()
    wrong = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    lost = start_server(
        tmp_path / "b", "--store", store, "--replica-url", wrong, data_dir=tmp_path / "b" / "data"
    )
    nudged = start_replica(tmp_path / "c", store + "&poll=30")
    try:
        time.sleep(2.5)
        a = make_client(writer.endpoint, "appmesh", account)
        for index in range(3):
            a.create_mesh(meshName=f"m{index}")
            for server in (lost, nudged):
                client = make_client(server.endpoint, "appmesh", account)
                eventually(lambda c=client, i=index: c.describe_mesh(meshName=f"m{i}"), 10)
        assert "could not nudge replica" in writer.log()
    finally:
        for server in (writer, lost, nudged):
            server.stop()


def change_items(dynamodb_endpoint: str, store: str) -> list[dict]:
    answer = table_client(dynamodb_endpoint).query(
        TableName=table_of(store),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "chg"}},
        ConsistentRead=True,
    )
    return answer["Items"]


def test_old_change_items_are_pruned_and_a_replica_behind_reloads(
    tmp_path: Path, dynamodb_endpoint: str, account
):
    """retention=1: change items older than a second are deleted. A replica stopped
    meanwhile (SIGSTOP) missed changes it can no longer read: it reloads the table."""
    store = dynamodb_store(dynamodb_endpoint) + "&retention=1"
    first = start_replica(tmp_path / "a", store)
    second = start_replica(tmp_path / "b", store)
    try:
        a = make_client(first.endpoint, "appmesh", account)
        b = make_client(second.endpoint, "appmesh", account)
        a.create_mesh(meshName="kept")
        a.create_virtual_node(meshName="kept", virtualNodeName="old", spec=http_node_spec())
        eventually(lambda: b.describe_virtual_node(meshName="kept", virtualNodeName="old"))
        second.process.send_signal(signal.SIGSTOP)
        try:
            a.create_virtual_node(meshName="kept", virtualNodeName="new", spec=http_node_spec())
            a.delete_virtual_node(meshName="kept", virtualNodeName="old")
            eventually(lambda: _pruned(dynamodb_endpoint, store), timeout=15)
        finally:
            second.process.send_signal(signal.SIGCONT)
        eventually(lambda: b.describe_virtual_node(meshName="kept", virtualNodeName="new"), 10)
        eventually(lambda: _absent(b), 10)
        assert "fell behind the change retention" in second.log()
    finally:
        first.stop()
        second.stop()


def _pruned(dynamodb_endpoint: str, store: str) -> None:
    items = change_items(dynamodb_endpoint, store)
    marks = [item for item in items if item["sk"]["S"] == "~pruned"]
    assert marks and int(marks[0]["value"]["N"]) >= 4  # the mesh, 3 node writes
    assert [item for item in items if item["sk"]["S"] != "~pruned"] == []


def _absent(b) -> None:
    names = [n["virtualNodeName"] for n in b.list_virtual_nodes(meshName="kept")["virtualNodes"]]
    assert names == ["new"], json.dumps(names)


def _node_item(dynamodb_endpoint: str, store: str, account: str, mesh: str, name: str) -> dict:
    answer = table_client(dynamodb_endpoint).get_item(
        TableName=table_of(store),
        Key={
            "pk": {"S": f"res|us-east-1|{account}|{mesh}"},
            "sk": {"S": json.dumps(["virtualNode", "", name])},
        },
        ConsistentRead=True,
    )
    return answer["Item"]


def _hand_written_change(dynamodb_endpoint: str, store: str, account: str, content: dict) -> int:
    """A change of node ``n`` of mesh ``carry`` put in the table by hand, as a replica's
    write puts it (a sequence from the counter, then the change item)."""
    change = _change_item(dynamodb_endpoint, store, account, content)
    table_client(dynamodb_endpoint).put_item(TableName=table_of(store), Item=change)
    return int(change["sk"]["S"])


def _change_item(dynamodb_endpoint: str, store: str, account: str, content: dict) -> dict:
    """A change item of node ``n`` of mesh ``carry`` with the next sequence from the
    table's counter, not put in the table."""
    table = table_client(dynamodb_endpoint)
    sequence = int(
        table.update_item(
            TableName=table_of(store),
            Key={"pk": {"S": "seq"}, "sk": {"S": "seq"}},
            UpdateExpression="ADD #v :one",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )["Attributes"]["value"]["N"]
    )
    change = {
        "pk": {"S": "chg"},
        "sk": {"S": f"{sequence:020d}"},
        "key": {"S": json.dumps(["us-east-1", account, "carry", "virtualNode", "", "n"])},
        "at": {"N": str(round(time.time(), 3))},
        "by": {"S": "a-test"},
        **content,
    }
    return change


def _port_of(client, mesh: str, name: str) -> int:
    node = client.describe_virtual_node(meshName=mesh, virtualNodeName=name)["virtualNode"]
    return node["spec"]["listeners"][0]["portMapping"]["port"]


def _with_port(data: str, port: int) -> str:
    record = json.loads(data)
    record["spec"]["listeners"][0]["portMapping"]["port"] = port
    return json.dumps(record)


def _nudge_second(pair, dynamodb_endpoint: str, store: str, body: bytes = b"") -> None:
    _, second = pair
    url = f"http://127.0.0.1:{second.port}"
    items = replica_items(dynamodb_endpoint, store)
    token = next(i["token"]["S"] for i in items if i["url"]["S"] == url)
    assert nudge(second, token, body) == 204


@pytest.fixture
def carry(pair, account):
    """Node ``n`` of mesh ``carry``, written on the first replica, seen by the second."""
    first, second = pair
    a = make_client(first.endpoint, "appmesh", account)
    b = make_client(second.endpoint, "appmesh", account)
    time.sleep(2.5)  # both have read the other's replica item (every 2 s)
    a.create_mesh(meshName="carry")
    a.create_virtual_node(meshName="carry", virtualNodeName="n", spec=http_node_spec())
    eventually(lambda: b.describe_virtual_node(meshName="carry", virtualNodeName="n"), 40)
    return b


def test_a_peer_applies_a_change_from_the_content_its_change_item_carries(
    pair, carry, dynamodb_endpoint, slow_store, account
):
    """The change item alone says the port is 9090 (the resource item still says
    otherwise): the nudged peer applies it without reading the resource item."""
    item = _node_item(dynamodb_endpoint, slow_store, account, "carry", "n")
    content = {"data": {"S": _with_port(item["data"]["S"], 9090)}, "tags": item["tags"]}
    _hand_written_change(dynamodb_endpoint, slow_store, account, content)
    _nudge_second(pair, dynamodb_endpoint, slow_store)
    eventually(lambda: _assert_port(carry, 9090), timeout=10)


def test_a_change_item_without_content_makes_the_peer_read_the_resource(
    pair, carry, dynamodb_endpoint, slow_store, account
):
    """Change items of replicas from before they carried content name the key only:
    the peer reads the resource item, as it always did."""
    item = _node_item(dynamodb_endpoint, slow_store, account, "carry", "n")
    sequence = _hand_written_change(dynamodb_endpoint, slow_store, account, {})
    item = {**item, "data": {"S": _with_port(item["data"]["S"], 9191)}, "rev": {"N": str(sequence)}}
    table_client(dynamodb_endpoint).put_item(TableName=table_of(slow_store), Item=item)
    _nudge_second(pair, dynamodb_endpoint, slow_store)
    eventually(lambda: _assert_port(carry, 9191), timeout=10)


def _assert_port(client, port: int) -> None:
    assert _port_of(client, "carry", "n") == port


def _ported(dynamodb_endpoint: str, store: str, account: str, port: int) -> dict:
    """Content for a change of node ``n`` of mesh ``carry`` to listen on ``port``."""
    item = _node_item(dynamodb_endpoint, store, account, "carry", "n")
    return {"data": {"S": _with_port(item["data"]["S"], port)}, "tags": item["tags"]}


def _carrying(*changes: dict) -> bytes:
    return json.dumps({"changes": list(changes)}).encode()


def test_a_nudge_carrying_the_change_item_is_applied_without_reading_the_table(
    pair, carry, dynamodb_endpoint, slow_store, account
):
    """The change item is only in the nudge, never in the table (which a poll would
    read): the peer applied it from the nudge."""
    content = _ported(dynamodb_endpoint, slow_store, account, 9292)
    change = _change_item(dynamodb_endpoint, slow_store, account, content)
    _nudge_second(pair, dynamodb_endpoint, slow_store, _carrying(change))
    eventually(lambda: _assert_port(carry, 9292), timeout=10)


def test_a_nudge_after_a_gap_reads_the_table_and_keeps_the_sequence_order(
    pair, carry, dynamodb_endpoint, slow_store, account
):
    """Change s1 is in the table only (its nudge was lost), s2 in a nudge only. The
    peer must not apply s2 before s1: it reads the table instead, applies s1 and
    leaves s2 (were s2 applied first, s1 would be refused as older and 9302 stay).
    Once s1 is applied, s2 carried again follows the cursor and is applied."""
    _hand_written_change(
        dynamodb_endpoint,
        slow_store,
        account,
        _ported(dynamodb_endpoint, slow_store, account, 9301),
    )
    later = _change_item(
        dynamodb_endpoint,
        slow_store,
        account,
        _ported(dynamodb_endpoint, slow_store, account, 9302),
    )
    _nudge_second(pair, dynamodb_endpoint, slow_store, _carrying(later))
    eventually(lambda: _assert_port(carry, 9301), timeout=10)
    _nudge_second(pair, dynamodb_endpoint, slow_store, _carrying(later))
    eventually(lambda: _assert_port(carry, 9302), timeout=10)


def test_a_nudge_carrying_what_the_replica_cannot_read_makes_it_read_the_table(
    pair, carry, dynamodb_endpoint, slow_store, account
):
    """A body that is not change items (or items without their content) is no reason
    to ignore the nudge: the peer reads the table, as for an empty one."""
    content = _ported(dynamodb_endpoint, slow_store, account, 9401)
    _hand_written_change(dynamodb_endpoint, slow_store, account, content)
    _nudge_second(pair, dynamodb_endpoint, slow_store, b"not json")
    eventually(lambda: _assert_port(carry, 9401), timeout=10)
    content = _ported(dynamodb_endpoint, slow_store, account, 9402)
    change = _change_item(dynamodb_endpoint, slow_store, account, content)
    table_client(dynamodb_endpoint).put_item(TableName=table_of(slow_store), Item=change)
    bare = {name: value for name, value in change.items() if name not in content}
    _nudge_second(pair, dynamodb_endpoint, slow_store, _carrying(bare))  # no content
    eventually(lambda: _assert_port(carry, 9402), timeout=10)


def test_a_proxy_registration_reaches_a_slowly_polling_replica_by_its_nudge(pair, account):
    """poll=30: the other replicas' registrations are read every 30 s unless a nudge
    says they changed, and the held long-poll on the second replica waits 20 s, so the
    endpoint it answers with came by the nudge of the replica the proxy registered on."""
    time.sleep(2.5)  # both have read the other's replica item (every 2 s)
    _proxy_shared(pair, account)
