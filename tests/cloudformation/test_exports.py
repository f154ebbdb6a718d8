"""Cross-stack references: one stack exports App Mesh values, another imports them."""

from __future__ import annotations

import pytest

from tests.cloudformation.templates import body, colorapp
from tests.conftest import make_client


@pytest.fixture
def cfn(server, account):
    return make_client(server.endpoint, "cloudformation", account)


def exporting_mesh() -> dict:
    template = colorapp()
    template["Outputs"]["MeshName"] = {
        "Value": {"Fn::GetAtt": ["Mesh", "MeshName"]},
        "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-mesh"}},
    }
    return template


def importing_node() -> dict:
    return {
        "Resources": {
            "Green": {
                "Type": "AWS::AppMesh::VirtualNode",
                "Properties": {
                    "MeshName": {"Fn::ImportValue": "base-mesh"},
                    "VirtualNodeName": "green",
                    "Spec": {
                        "Listeners": [{"PortMapping": {"Port": 8080, "Protocol": "http"}}],
                        "ServiceDiscovery": {"DNS": {"Hostname": "green.color.local"}},
                    },
                },
            }
        }
    }


def status(cfn, name: str) -> dict:
    return cfn.describe_stacks(StackName=name)["Stacks"][0]


def test_an_imported_mesh_name_puts_the_node_in_the_exporting_stacks_mesh(cfn, appmesh):
    cfn.create_stack(StackName="base", TemplateBody=body(exporting_mesh()))
    exported = cfn.list_exports()["Exports"]
    assert [(e["Name"], e["Value"]) for e in exported] == [("base-mesh", "color")]
    cfn.create_stack(StackName="app", TemplateBody=body(importing_node()))
    assert status(cfn, "app")["StackStatus"] == "CREATE_COMPLETE"
    names = [
        n["virtualNodeName"] for n in appmesh.list_virtual_nodes(meshName="color")["virtualNodes"]
    ]
    assert sorted(names) == ["blue", "green"]


def test_an_export_in_use_blocks_the_delete_until_the_importer_is_gone(cfn, appmesh):
    cfn.create_stack(StackName="base", TemplateBody=body(exporting_mesh()))
    cfn.create_stack(StackName="app", TemplateBody=body(importing_node()))
    cfn.delete_stack(StackName="base")
    stack = status(cfn, "base")
    assert stack["StackStatus"] == "DELETE_FAILED"
    assert stack["StackStatusReason"] == "Export base-mesh cannot be deleted as it is in use by app"
    assert appmesh.describe_mesh(meshName="color")["mesh"]["status"]["status"] == "ACTIVE"
    cfn.delete_stack(StackName="app")
    cfn.delete_stack(StackName="base")
    assert appmesh.list_meshes()["meshes"] == []
    assert cfn.list_exports()["Exports"] == []


def test_an_import_of_a_missing_export_fails_the_resource(cfn, appmesh):
    cfn.create_stack(StackName="orphan", TemplateBody=body(importing_node()))
    assert status(cfn, "orphan")["StackStatus"] == "ROLLBACK_COMPLETE"
    reasons = [
        e.get("ResourceStatusReason")
        for e in cfn.describe_stack_events(StackName="orphan")["StackEvents"]
        if e["ResourceStatus"] == "CREATE_FAILED"
    ]
    assert reasons == ["No export named base-mesh found."]
