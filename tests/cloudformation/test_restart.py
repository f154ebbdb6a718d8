"""Stacks survive a restart of ``serve --data-dir`` together with the resources they made."""

from __future__ import annotations

import json

from tests.cloudformation.templates import body, colorapp
from tests.conftest import make_client, new_account, start_server


def with_ssm_parameter(template: dict) -> dict:
    """One of moto's types beside the App Mesh ones: it must come back after a restart too."""
    template["Resources"]["MeshArnParameter"] = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {"Name": "/color/mesh-arn", "Type": "String", "Value": {"Ref": "Mesh"}},
    }
    return template


def clients(server, account: str):
    return (
        make_client(server.endpoint, "cloudformation", account),
        make_client(server.endpoint, "appmesh", account),
    )


def test_a_stack_comes_back_after_a_restart_and_can_be_updated_and_deleted(tmp_path):
    data, account = tmp_path / "data", new_account()
    first = start_server(tmp_path, data_dir=data)
    try:
        cfn, _ = clients(first, account)
        cfn.create_stack(StackName="color", TemplateBody=body(with_ssm_parameter(colorapp())))
        events_before = cfn.describe_stack_events(StackName="color")["StackEvents"]
    finally:
        first.stop()
    second = start_server(tmp_path, data_dir=data)
    try:
        cfn, appmesh = clients(second, account)
        stack = cfn.describe_stacks(StackName="color")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        mesh_arn = appmesh.describe_mesh(meshName="color")["mesh"]["metadata"]["arn"]
        assert {"OutputKey": "MeshArn", "OutputValue": mesh_arn} in stack["Outputs"]
        events_after = cfn.describe_stack_events(StackName="color")["StackEvents"]
        assert [e["EventId"] for e in events_after] == [e["EventId"] for e in events_before]
        ssm = make_client(second.endpoint, "ssm", account)
        assert ssm.get_parameter(Name="/color/mesh-arn")["Parameter"]["Value"] == mesh_arn

        cfn.update_stack(
            StackName="color", TemplateBody=body(with_ssm_parameter(colorapp(port=9090)))
        )
        assert (
            cfn.describe_stacks(StackName="color")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
        )
        node = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")
        assert node["virtualNode"]["spec"]["listeners"][0]["portMapping"]["port"] == 9090
        cfn.delete_stack(StackName="color")
        assert appmesh.list_meshes()["meshes"] == []
    finally:
        second.stop()
    assert not list((data / "cloudformation").glob("*.json"))


def test_a_create_cut_short_by_a_stop_is_rolled_back_on_start(tmp_path):
    data, account = tmp_path / "data", new_account()
    first = start_server(tmp_path, data_dir=data)
    try:
        cfn, _ = clients(first, account)
        cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    finally:
        first.stop()
    # What the file holds when the server is killed while App Mesh creates the last resource:
    # the gateway route exists, the stack file does not know it yet.
    (saved,) = (data / "cloudformation").glob("*.json")
    entry = json.loads(saved.read_text())
    entry["status"] = "CREATE_IN_PROGRESS"
    del entry["resources"]["GatewayRoute"]
    steps = [(e["logical_resource_id"], e["resource_status"]) for e in entry["events"]]
    entry["events"] = entry["events"][: steps.index(("GatewayRoute", "CREATE_IN_PROGRESS")) + 1]
    saved.write_text(json.dumps(entry))
    second = start_server(tmp_path, data_dir=data)
    try:
        cfn, appmesh = clients(second, account)
        stack = cfn.describe_stacks(StackName="color")["Stacks"][0]
        assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
        assert (
            "appmesh-local stopped while the stack was CREATE_IN_PROGRESS"
            in (stack["StackStatusReason"])
        )
        assert appmesh.list_meshes()["meshes"] == []  # no orphaned mesh
    finally:
        second.stop()
