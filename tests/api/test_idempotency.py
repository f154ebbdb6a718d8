"""clientToken: a replay returns the original result; the same token with other input conflicts."""

from __future__ import annotations

import json
import uuid

from tests.api.helpers import expect_error, http_node_spec, http_route_spec, router_spec


def test_a_create_replay_returns_the_original_resource(appmesh):
    appmesh.create_mesh(meshName="m")
    token = str(uuid.uuid4())
    first = appmesh.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(), clientToken=token
    )["virtualNode"]
    again = appmesh.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(), clientToken=token
    )["virtualNode"]
    assert again == first
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["metadata"]["version"] == 1
    assert len(appmesh.list_virtual_nodes(meshName="m")["virtualNodes"]) == 1


def test_a_create_mesh_replay(appmesh):
    first = appmesh.create_mesh(meshName="m", clientToken="mesh-token_1")["mesh"]
    again = appmesh.create_mesh(meshName="m", clientToken="mesh-token_1")["mesh"]
    assert again["metadata"] == first["metadata"]
    assert [ref["meshName"] for ref in appmesh.list_meshes()["meshes"]] == ["m"]
    # Without the token the same call is a duplicate name.
    expect_error("ConflictException", 409, appmesh.create_mesh, meshName="m")


def test_the_same_token_with_different_input_is_a_conflict(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(), clientToken="t1"
    )
    for changed in (
        {"virtualNodeName": "n", "spec": http_node_spec(port=9090)},
        {"virtualNodeName": "other", "spec": http_node_spec()},
        {"virtualNodeName": "n", "spec": http_node_spec(), "tags": [{"key": "k", "value": "v"}]},
    ):
        message = expect_error(
            "ConflictException",
            409,
            appmesh.create_virtual_node,
            meshName="m",
            clientToken="t1",
            **changed,
        )
        assert "t1" in message and "different" in message
    refs = appmesh.list_virtual_nodes(meshName="m")["virtualNodes"]
    assert [(ref["virtualNodeName"], ref["version"]) for ref in refs] == [("n", 1)]
    spec = appmesh.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]["spec"]
    assert spec == http_node_spec()


def test_an_update_replay_does_not_bump_the_version(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_node(meshName="m", virtualNodeName="n", spec=http_node_spec())
    params = {"meshName": "m", "virtualNodeName": "n", "spec": http_node_spec(port=9090)}
    first = appmesh.update_virtual_node(clientToken="u1", **params)["virtualNode"]
    assert first["metadata"]["version"] == 2
    for _ in range(3):
        again = appmesh.update_virtual_node(clientToken="u1", **params)["virtualNode"]
        assert again == first
    described = appmesh.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]
    assert described["metadata"]["version"] == 2
    assert described["metadata"]["lastUpdatedAt"] == first["metadata"]["lastUpdatedAt"]
    # A different update under the same token is refused and changes nothing.
    expect_error(
        "ConflictException",
        409,
        appmesh.update_virtual_node,
        clientToken="u1",
        **{**params, "spec": http_node_spec(port=7070)},
    )
    assert appmesh.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"] == (
        described
    )
    # A new token is a new update.
    bumped = appmesh.update_virtual_node(clientToken="u2", **params)["virtualNode"]
    assert bumped["metadata"]["version"] == 3


def test_route_update_replay(appmesh):
    appmesh.create_mesh(meshName="m")
    appmesh.create_virtual_node(meshName="m", virtualNodeName="a", spec=http_node_spec())
    appmesh.create_virtual_node(meshName="m", virtualNodeName="b", spec=http_node_spec())
    appmesh.create_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec())
    base = {"meshName": "m", "virtualRouterName": "r", "routeName": "rt"}
    appmesh.create_route(spec=http_route_spec(("a", 1)), clientToken="c", **base)
    canary = http_route_spec(("a", 90), ("b", 10))
    first = appmesh.update_route(spec=canary, clientToken="c", **base)["route"]
    again = appmesh.update_route(spec=canary, clientToken="c", **base)["route"]
    assert first == again and first["metadata"]["version"] == 2


def test_tokens_belong_to_one_operation_and_one_account(appmesh, client_for):
    appmesh.create_mesh(meshName="m", clientToken="shared")
    # The same token on another operation is a separate request.
    appmesh.create_virtual_router(
        meshName="m", virtualRouterName="r", spec=router_spec(), clientToken="shared"
    )
    appmesh.update_mesh(meshName="m", spec={}, clientToken="shared")
    # ...and in another account it is that account's own token.
    other = client_for("appmesh")
    created = other.create_mesh(meshName="elsewhere", clientToken="shared")["mesh"]
    assert created["meshName"] == "elsewhere"


def test_boto3_fills_in_a_fresh_token_for_every_call(appmesh):
    sent: list[dict] = []

    def capture(params, **_):
        sent.append(json.loads(params["body"] or b"{}"))

    appmesh.meta.events.register("before-call.app-mesh.CreateVirtualNode", capture)
    appmesh.create_mesh(meshName="m")
    a = appmesh.create_virtual_node(meshName="m", virtualNodeName="a", spec=http_node_spec())
    b = appmesh.create_virtual_node(meshName="m", virtualNodeName="b", spec=http_node_spec())
    tokens = [body["clientToken"] for body in sent]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert all(uuid.UUID(token) for token in tokens)
    assert a["virtualNode"]["metadata"]["uid"] != b["virtualNode"]["metadata"]["uid"]
    names = [
        ref["virtualNodeName"] for ref in appmesh.list_virtual_nodes(meshName="m")["virtualNodes"]
    ]
    assert names == ["a", "b"]
    # Without an explicit token a repeated create is not a replay: it is a duplicate.
    expect_error(
        "ConflictException",
        409,
        appmesh.create_virtual_node,
        meshName="m",
        virtualNodeName="a",
        spec=http_node_spec(),
    )
    # Two updates without a token are two updates.
    for version in (2, 3):
        updated = appmesh.update_virtual_node(
            meshName="m", virtualNodeName="a", spec=http_node_spec()
        )
        assert updated["virtualNode"]["metadata"]["version"] == version


def test_a_replay_survives_the_resource_changing_since(appmesh):
    """The token answers for the original request, whatever has happened since."""
    appmesh.create_mesh(meshName="m")
    first = appmesh.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(), clientToken="k"
    )["virtualNode"]
    appmesh.update_virtual_node(meshName="m", virtualNodeName="n", spec=http_node_spec(port=1234))
    again = appmesh.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(), clientToken="k"
    )["virtualNode"]
    assert again == first
    current = appmesh.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]
    assert current["metadata"]["version"] == 2
