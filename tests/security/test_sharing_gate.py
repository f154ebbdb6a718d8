"""A mesh is another account's to use only after a RAM share it accepted, as on App Mesh.

The stranger knows the owner's account id and mesh name (``meshOwner`` is all it takes
today's API to name them); without an accepted share every call is ``NotFoundException``,
so it can neither read the mesh nor fill the owner's quotas.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.api.helpers import expect_error, http_node_spec, share_mesh
from tests.conftest import make_client, new_account, start_server


@pytest.fixture
def owned(appmesh, account):
    appmesh.create_mesh(meshName="private")
    appmesh.create_virtual_node(meshName="private", virtualNodeName="n", spec=http_node_spec())
    return account


def _locked_out(client, owner: str) -> None:
    where = {"meshName": "private", "meshOwner": owner}
    assert all(ref["meshOwner"] != owner for ref in client.list_meshes()["meshes"])
    expect_error("NotFoundException", 404, client.describe_mesh, **where)
    expect_error("NotFoundException", 404, client.list_virtual_nodes, **where)
    expect_error(
        "NotFoundException", 404, client.describe_virtual_node, virtualNodeName="n", **where
    )
    expect_error(
        "NotFoundException",
        404,
        client.create_virtual_node,
        virtualNodeName="intruder",
        spec=http_node_spec(),
        **where,
    )


def test_an_unshared_mesh_is_not_found_for_another_account(client_for, owned) -> None:
    _locked_out(client_for("appmesh"), owned)


def test_a_stranger_cannot_fill_the_owners_quota(client_for, appmesh, owned) -> None:
    stranger = client_for("appmesh")
    for index in range(5):
        with pytest.raises(ClientError):
            stranger.create_virtual_node(
                meshName="private",
                meshOwner=owned,
                virtualNodeName=f"squat-{index}",
                spec=http_node_spec(),
            )
    names = [
        n["virtualNodeName"] for n in appmesh.list_virtual_nodes(meshName="private")["virtualNodes"]
    ]
    assert names == ["n"]


def test_a_pending_or_rejected_invitation_opens_nothing(client_for, owned) -> None:
    invited = new_account()
    ram = client_for("ram", account=owned)
    ram.create_resource_share(
        name="s",
        resourceArns=[f"arn:aws:appmesh:us-east-1:{owned}:mesh/private"],
        principals=[invited],
    )
    consumer = client_for("appmesh", account=invited)
    _locked_out(consumer, owned)
    received = client_for("ram", account=invited)
    (invitation,) = received.get_resource_share_invitations()["resourceShareInvitations"]
    received.reject_resource_share_invitation(
        resourceShareInvitationArn=invitation["resourceShareInvitationArn"]
    )
    _locked_out(consumer, owned)
    expect_error(
        "ResourceShareInvitationAlreadyRejectedException",
        400,
        received.accept_resource_share_invitation,
        resourceShareInvitationArn=invitation["resourceShareInvitationArn"],
    )


def test_only_the_invited_account_can_accept(client_for, owned) -> None:
    invited = new_account()
    ram = client_for("ram", account=owned)
    ram.create_resource_share(
        name="s",
        resourceArns=[f"arn:aws:appmesh:us-east-1:{owned}:mesh/private"],
        principals=[invited],
    )
    (invitation,) = client_for("ram", account=invited).get_resource_share_invitations()[
        "resourceShareInvitations"
    ]
    thief = client_for("ram")
    assert thief.get_resource_share_invitations()["resourceShareInvitations"] == []
    expect_error(
        "ResourceShareInvitationArnNotFoundException",
        400,
        thief.accept_resource_share_invitation,
        resourceShareInvitationArn=invitation["resourceShareInvitationArn"],
    )


def test_nobody_shares_a_mesh_they_do_not_own(client_for, owned) -> None:
    thief = client_for("ram")
    expect_error(
        "UnknownResourceException",
        400,
        thief.create_resource_share,
        name="stolen",
        resourceArns=[f"arn:aws:appmesh:us-east-1:{owned}:mesh/private"],
        principals=[new_account()],
    )


def test_an_accepted_share_opens_the_mesh_and_deleting_it_closes_it(client_for, owned) -> None:
    friend = new_account()
    share_arn = share_mesh(client_for, owned, "private", friend)
    consumer = client_for("appmesh", account=friend)
    assert consumer.describe_mesh(meshName="private", meshOwner=owned)["mesh"]
    assert [ref["meshOwner"] for ref in consumer.list_meshes()["meshes"]] == [owned]
    client_for("ram", account=owned).delete_resource_share(resourceShareArn=share_arn)
    _locked_out(consumer, owned)


def test_share_all_meshes_keeps_every_mesh_open(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--share-all-meshes")
    try:
        owner = new_account()
        make_client(running.endpoint, "appmesh", owner).create_mesh(meshName="open")
        stranger = make_client(running.endpoint, "appmesh", new_account())
        assert stranger.describe_mesh(meshName="open", meshOwner=owner)["mesh"]
    finally:
        running.stop()


def test_shares_survive_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(tmp_path, data_dir=data)
    owner, friend = new_account(), new_account()

    def client_for(service: str, account: str):
        return make_client(running.endpoint, service, account)

    make_client(running.endpoint, "appmesh", owner).create_mesh(meshName="kept")
    share_mesh(client_for, owner, "kept", friend)
    running.stop()
    running = start_server(tmp_path, data_dir=data, port=running.port)
    try:
        consumer = make_client(running.endpoint, "appmesh", friend)
        assert consumer.describe_mesh(meshName="kept", meshOwner=owner)["mesh"]
    finally:
        running.stop()
