"""App Mesh stacks through the embedded CloudFormation, with boto3 and the real aws CLI.

Every check reads the result back through the App Mesh API: a stack that says
CREATE_COMPLETE must have made exactly what its template says.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.api.test_aws_cli import run_aws
from tests.cloudformation.templates import body, changed, colorapp
from tests.conftest import make_client


@pytest.fixture
def cfn(server, account):
    return make_client(server.endpoint, "cloudformation", account)


def stack_of(cfn, name: str) -> dict:
    return cfn.describe_stacks(StackName=name)["Stacks"][0]


def outputs(stack: dict) -> dict[str, str]:
    return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs") or []}


def events(cfn, name: str) -> list[tuple[str, str]]:
    """(logical id, status) oldest first, as ``aws cloudformation`` prints them reversed."""
    found = cfn.describe_stack_events(StackName=name)["StackEvents"]
    return [(event["LogicalResourceId"], event["ResourceStatus"]) for event in reversed(found)]


def reason_of(cfn, name: str, logical_id: str, status: str) -> str:
    for event in cfn.describe_stack_events(StackName=name)["StackEvents"]:
        if (event["LogicalResourceId"], event["ResourceStatus"]) == (logical_id, status):
            return event.get("ResourceStatusReason", "")
    raise AssertionError(f"no {status} event for {logical_id}: {events(cfn, name)}")


def test_a_stack_creates_all_seven_kinds_with_the_template_spec(cfn, appmesh):
    cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    stack = stack_of(cfn, "color")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    node = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")["virtualNode"]
    listener = node["spec"]["listeners"][0]
    assert listener["portMapping"] == {"port": 8080, "protocol": "http"}  # "8080" -> 8080
    assert listener["healthCheck"]["unhealthyThreshold"] == 3
    assert node["spec"]["serviceDiscovery"] == {"dns": {"hostname": "blue.color.local"}}
    route = appmesh.describe_route(
        meshName="color", virtualRouterName="color-router", routeName="color-route"
    )["route"]
    assert route["spec"]["httpRoute"]["retryPolicy"]["perRetryTimeout"] == {
        "unit": "ms",
        "value": 500,
    }
    service = appmesh.describe_virtual_service(
        meshName="color", virtualServiceName="color.color.local"
    )["virtualService"]
    assert service["spec"]["provider"] == {"virtualRouter": {"virtualRouterName": "color-router"}}
    assert appmesh.describe_gateway_route(
        meshName="color", virtualGatewayName="ingress", gatewayRouteName="to-color"
    )["gatewayRoute"]["spec"]["httpRoute"]["action"]["target"]["virtualService"] == {
        "virtualServiceName": "color.color.local"
    }
    mesh = appmesh.describe_mesh(meshName="color")["mesh"]
    tags = appmesh.list_tags_for_resource(resourceArn=mesh["metadata"]["arn"])["tags"]
    assert tags == [{"key": "team", "value": "color"}]
    values = outputs(stack)
    assert values["MeshArn"] == mesh["metadata"]["arn"]  # Ref is the ARN
    assert values["BlueUid"] == node["metadata"]["uid"]
    assert values["RouteOwner"] == route["metadata"]["resourceOwner"]
    assert values["GatewayRouteName"] == "to-color"
    created = [logical for logical, status in events(cfn, "color") if status == "CREATE_COMPLETE"]
    order = ["Mesh", "Blue", "Router", "Gateway", "Route", "Service", "GatewayRoute", "color"]
    assert created == order


def test_an_update_changes_the_spec_in_place(cfn, appmesh):
    cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    before = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")
    cfn.update_stack(StackName="color", TemplateBody=body(colorapp(port=9090)))
    assert stack_of(cfn, "color")["StackStatus"] == "UPDATE_COMPLETE"
    after = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")
    node = after["virtualNode"]
    assert node["spec"]["listeners"][0]["portMapping"]["port"] == 9090
    assert node["metadata"]["uid"] == before["virtualNode"]["metadata"]["uid"]
    assert node["metadata"]["version"] == before["virtualNode"]["metadata"]["version"] + 1
    updated = [e for e in events(cfn, "color") if e[1] == "UPDATE_COMPLETE"]
    assert updated == [("Blue", "UPDATE_COMPLETE"), ("color", "UPDATE_COMPLETE")]


def test_a_changed_name_replaces_the_resource_new_first(cfn, appmesh):
    cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    renamed = changed(colorapp(), "Blue", "VirtualNodeName", value="blue-v2")
    cfn.update_stack(StackName="color", TemplateBody=body(renamed))
    assert stack_of(cfn, "color")["StackStatus"] == "UPDATE_COMPLETE"
    nodes = appmesh.list_virtual_nodes(meshName="color")["virtualNodes"]
    assert [n["virtualNodeName"] for n in nodes] == ["blue-v2"]
    route = appmesh.describe_route(
        meshName="color", virtualRouterName="color-router", routeName="color-route"
    )["route"]
    # The route's GetAtt follows the replacement before the old node is deleted.
    targets = route["spec"]["httpRoute"]["action"]["weightedTargets"]
    assert targets == [{"virtualNode": "blue-v2", "weight": 1}]
    blue = [status for logical, status in events(cfn, "color") if logical == "Blue"]
    assert blue[-3:] == ["UPDATE_COMPLETE", "DELETE_IN_PROGRESS", "DELETE_COMPLETE"]


def test_a_failing_resource_rolls_the_stack_back_with_app_meshs_message(cfn, appmesh):
    broken = changed(
        colorapp(), "Router", "Spec", "Listeners", 0, "PortMapping", "Port", value=70000
    )
    cfn.create_stack(StackName="broken", TemplateBody=body(broken))
    stack = stack_of(cfn, "broken")
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "Outputs" not in stack
    reason = reason_of(cfn, "broken", "Router", "CREATE_FAILED")
    assert "Value '70000' at 'spec.listeners.1.member.portMapping.port'" in reason
    assert "(Service: AppMesh, Status Code: 400" in reason
    assert events(cfn, "broken") == [
        ("broken", "CREATE_IN_PROGRESS"),
        ("Mesh", "CREATE_IN_PROGRESS"),
        ("Mesh", "CREATE_COMPLETE"),
        ("Blue", "CREATE_IN_PROGRESS"),
        ("Blue", "CREATE_COMPLETE"),
        ("Router", "CREATE_IN_PROGRESS"),
        ("Router", "CREATE_FAILED"),
        ("broken", "ROLLBACK_IN_PROGRESS"),
        ("Blue", "DELETE_IN_PROGRESS"),
        ("Blue", "DELETE_COMPLETE"),
        ("Mesh", "DELETE_IN_PROGRESS"),
        ("Mesh", "DELETE_COMPLETE"),
        ("broken", "ROLLBACK_COMPLETE"),
    ]
    assert appmesh.list_meshes()["meshes"] == []
    # Describing the rolled-back stack again creates nothing.
    cfn.describe_stack_resources(StackName="broken")
    assert appmesh.list_meshes()["meshes"] == []


def test_a_duplicate_name_fails_with_app_meshs_conflict(cfn, appmesh):
    appmesh.create_mesh(meshName="color")
    cfn.create_stack(StackName="dup", TemplateBody=body(colorapp()))
    assert stack_of(cfn, "dup")["StackStatus"] == "ROLLBACK_COMPLETE"
    reason = reason_of(cfn, "dup", "Mesh", "CREATE_FAILED")
    assert "Mesh with name color already exists" in reason
    assert "HandlerErrorCode: AlreadyExists" in reason
    assert [m["meshName"] for m in appmesh.list_meshes()["meshes"]] == ["color"]


def test_a_failing_update_restores_the_previous_specs(cfn, appmesh):
    cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    bad = changed(
        colorapp(port=9090), "Router", "Spec", "Listeners", 0, "PortMapping", "Port", value=0
    )
    cfn.update_stack(StackName="color", TemplateBody=body(bad))
    assert stack_of(cfn, "color")["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    node = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")["virtualNode"]
    assert node["spec"]["listeners"][0]["portMapping"]["port"] == 8080  # 9090 was undone
    assert reason_of(cfn, "color", "Router", "UPDATE_FAILED").startswith(
        'Resource handler returned message: "1 validation error detected'
    )


def test_an_unknown_property_fails_the_resource(cfn, appmesh):
    bad = changed(colorapp(), "Blue", "Spec", "ServiceDiscovery", value={"Dns": {"Host": "x"}})
    cfn.create_stack(StackName="typo", TemplateBody=body(bad))
    assert stack_of(cfn, "typo")["StackStatus"] == "ROLLBACK_COMPLETE"
    reason = reason_of(cfn, "typo", "Blue", "CREATE_FAILED")
    assert reason == (
        "Properties validation failed for resource Blue with message: "
        "#/Spec/ServiceDiscovery/Dns: extraneous key [Host] is not permitted"
    )


def test_deleting_the_stack_deletes_its_resources(cfn, appmesh):
    cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    stack_id = stack_of(cfn, "color")["StackId"]
    cfn.delete_stack(StackName="color")
    assert stack_of(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert appmesh.list_meshes()["meshes"] == []
    deleted = [e for e in events(cfn, stack_id) if e[1] == "DELETE_COMPLETE"]
    assert [logical for logical, _ in deleted] == [
        "GatewayRoute",
        "Service",
        "Route",
        "Gateway",
        "Router",
        "Blue",
        "Mesh",
        "color",
    ]
    with pytest.raises(ClientError, match="does not exist"):
        cfn.describe_stacks(StackName="color")


def test_aws_cloudformation_deploy_creates_and_reports_failure(server, account, appmesh, tmp_path):
    template = tmp_path / "color.json"
    template.write_text(body(colorapp()))
    deployed = run_aws(
        server, account, "cloudformation", "deploy", "--stack-name", "cli-color",
        "--template-file", str(template),
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    assert appmesh.describe_mesh(meshName="color")["mesh"]["status"]["status"] == "ACTIVE"
    broken = changed(colorapp(mesh="other"), "Blue", "Spec", "Listeners", value="not-a-list")
    template.write_text(body(broken))
    failed = run_aws(
        server, account, "cloudformation", "deploy", "--stack-name", "cli-broken",
        "--template-file", str(template),
    )  # fmt: skip
    assert failed.returncode != 0
    listed = json.loads(run_aws(server, account, "appmesh", "list-meshes").stdout)["meshes"]
    assert [m["meshName"] for m in listed] == ["color"]


def test_unsupported_types_are_named_once_per_stack(server, cfn, appmesh):
    template = colorapp(mesh="with-extras")
    for index in range(3):
        template["Resources"][f"Thing{index}"] = {
            "Type": "AWS::AppRunner::Service",
            "Properties": {},
        }
    template["Resources"]["Metadata"] = {"Type": "AWS::CDK::Metadata", "Properties": {}}
    cfn.create_stack(StackName="extras", TemplateBody=body(template))
    assert stack_of(cfn, "extras")["StackStatus"] == "CREATE_COMPLETE"
    lines = [line for line in server.log().splitlines() if "stack extras: nothing creates" in line]
    assert len(lines) == 1
    assert "AWS::AppRunner::Service" in lines[0] and "CDK::Metadata" not in lines[0]


def test_a_stack_writes_in_the_account_its_access_key_maps_to(tmp_path):
    from tests.conftest import start_server

    server = start_server(tmp_path, "--account", "AKIDLOCALTEST=444455556666")
    try:
        cfn = make_client(server.endpoint, "cloudformation", "AKIDLOCALTEST")
        cfn.create_stack(StackName="mapped", TemplateBody=body(colorapp()))
        stack = cfn.describe_stacks(StackName="mapped")["Stacks"][0]
        assert ":444455556666:stack/mapped/" in stack["StackId"]
        appmesh = make_client(server.endpoint, "appmesh", "444455556666")
        mesh = appmesh.describe_mesh(meshName="color")["mesh"]
        assert mesh["metadata"]["meshOwner"] == "444455556666"
    finally:
        server.stop()


def test_aws_cloudformation_deploy_updates_a_template_without_a_format_version(
    server, account, appmesh, tmp_path
):
    template = tmp_path / "color.json"
    for port in (8080, 9090):  # the second deploy is an update (GetTemplateSummary first)
        template.write_text(body(colorapp(port=port)))
        deployed = run_aws(
            server, account, "cloudformation", "deploy", "--stack-name", "twice",
            "--template-file", str(template),
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
    node = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")["virtualNode"]
    assert node["spec"]["listeners"][0]["portMapping"]["port"] == 9090


def test_a_dotted_string_getatt_reads_the_named_attribute(cfn, appmesh):
    template = colorapp()
    template["Outputs"]["Dotted"] = {"Value": {"Fn::GetAtt": "Blue.VirtualNodeName"}}
    cfn.create_stack(StackName="dotted", TemplateBody=body(template))
    stack = stack_of(cfn, "dotted")
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(stack)["Dotted"] == "blue"


def test_stacks_created_at_the_same_time_all_complete(server):
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import new_account

    def deploy(index: int) -> str:
        cfn = make_client(server.endpoint, "cloudformation", new_account())
        cfn.create_stack(StackName=f"parallel-{index}", TemplateBody=body(colorapp()))
        return stack_of(cfn, f"parallel-{index}")["StackStatus"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(deploy, range(4))) == ["CREATE_COMPLETE"] * 4


def test_a_rolled_back_stack_must_be_deleted_before_it_is_deployed_again(
    server, account, cfn, tmp_path
):
    broken = changed(colorapp(), "Blue", "Spec", "Listeners", value="oops")
    cfn.create_stack(StackName="again", TemplateBody=body(broken))
    with pytest.raises(ClientError, match="is in ROLLBACK_COMPLETE state and can not be updated"):
        cfn.create_change_set(
            StackName="again", ChangeSetName="fix", TemplateBody=body(colorapp()),
            ChangeSetType="UPDATE",
        )  # fmt: skip
    cfn.delete_stack(StackName="again")
    template = tmp_path / "color.json"
    template.write_text(body(colorapp()))
    deployed = run_aws(
        server, account, "cloudformation", "deploy", "--stack-name", "again",
        "--template-file", str(template),
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
