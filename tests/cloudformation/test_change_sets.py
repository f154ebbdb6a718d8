"""Change sets as the CDK CLI drives them, and the stack views it reads afterwards."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.cloudformation.templates import body, colorapp
from tests.conftest import make_client


@pytest.fixture
def cfn(server, account):
    return make_client(server.endpoint, "cloudformation", account)


@pytest.fixture
def s3(server, account):
    client = make_client(server.endpoint, "s3", account)
    client.create_bucket(Bucket=f"cdk-assets-{account}")  # bucket names are global
    return client


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_change_set_from_a_template_url_creates_then_updates(
    server, account, cfn, s3, appmesh, host
):
    s3.put_object(Bucket=f"cdk-assets-{account}", Key="v1.json", Body=body(colorapp()))
    url = f"http://{host}:{server.port}/cdk-assets-{account}/v1.json"
    cfn.create_change_set(
        StackName="cdk", ChangeSetName="cdk-deploy-change-set", TemplateURL=url,
        ChangeSetType="CREATE",
    )  # fmt: skip
    described = cfn.describe_change_set(StackName="cdk", ChangeSetName="cdk-deploy-change-set")
    assert described["Status"] == "CREATE_COMPLETE"
    assert len(described["Changes"]) == 7
    cfn.execute_change_set(StackName="cdk", ChangeSetName="cdk-deploy-change-set")
    stack = cfn.describe_stacks(StackName="cdk")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    mesh_arn = appmesh.describe_mesh(meshName="color")["mesh"]["metadata"]["arn"]
    assert {"OutputKey": "MeshArn", "OutputValue": mesh_arn} in stack["Outputs"]

    # The CDK CLI deletes its previous change set by name before each deploy.
    cfn.delete_change_set(StackName="cdk", ChangeSetName="cdk-deploy-change-set")
    with pytest.raises(ClientError) as missing:
        cfn.describe_change_set(StackName="cdk", ChangeSetName="cdk-deploy-change-set")
    assert missing.value.response["Error"]["Code"] == "ChangeSetNotFound"
    cfn.delete_change_set(StackName="cdk", ChangeSetName="cdk-deploy-change-set")

    s3.put_object(Bucket=f"cdk-assets-{account}", Key="v2.json", Body=body(colorapp(port=9090)))
    cfn.create_change_set(
        StackName="cdk", ChangeSetName="cdk-deploy-change-set",
        TemplateURL=url.replace("v1.json", "v2.json"), ChangeSetType="UPDATE",
    )  # fmt: skip
    cfn.execute_change_set(StackName="cdk", ChangeSetName="cdk-deploy-change-set")
    assert cfn.describe_stacks(StackName="cdk")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    node = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")["virtualNode"]
    assert node["spec"]["listeners"][0]["portMapping"]["port"] == 9090


def test_executing_a_missing_change_set_is_change_set_not_found(cfn):
    with pytest.raises(ClientError) as missing:
        cfn.execute_change_set(StackName="none", ChangeSetName="nope")
    assert missing.value.response["Error"]["Code"] == "ChangeSetNotFound"


def test_resources_report_their_own_status(cfn):
    cfn.create_stack(StackName="color", TemplateBody=body(colorapp()))
    summaries = cfn.list_stack_resources(StackName="color")["StackResourceSummaries"]
    assert {s["LogicalResourceId"]: s["ResourceStatus"] for s in summaries}["Blue"] == (
        "CREATE_COMPLETE"
    )
    cfn.update_stack(StackName="color", TemplateBody=body(colorapp(port=9090)))
    resources = cfn.describe_stack_resources(StackName="color")["StackResources"]
    statuses = {r["LogicalResourceId"]: r["ResourceStatus"] for r in resources}
    assert statuses["Blue"] == "UPDATE_COMPLETE"
    assert statuses["Mesh"] == "CREATE_COMPLETE"


def test_an_output_nothing_can_compute_is_left_out_not_a_500(server, cfn, appmesh):
    template = colorapp()
    template["Resources"]["Runner"] = {"Type": "AWS::AppRunner::Service", "Properties": {}}
    template["Outputs"]["RunnerArn"] = {"Value": {"Fn::GetAtt": ["Runner", "ServiceArn"]}}
    cfn.create_stack(StackName="partial", TemplateBody=body(template))
    stack = cfn.describe_stacks(StackName="partial")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    keys = {output["OutputKey"] for output in stack["Outputs"]}
    assert "RunnerArn" not in keys and "MeshArn" in keys
    assert "stack partial: output RunnerArn left out" in server.log()


def test_a_rolled_back_stack_says_why(cfn):
    template = colorapp()
    template["Resources"]["Blue"]["Properties"]["Spec"]["Listeners"] = "oops"
    cfn.create_stack(StackName="why", TemplateBody=body(template))
    stack = cfn.describe_stacks(StackName="why")["Stacks"][0]
    assert stack["StackStatusReason"] == (
        "The following resource(s) failed to create: [Blue]. Rollback requested by user."
    )


def cdk_like(port: int | str = "8080") -> dict:
    """The parameter and rule every CDK-synthesized template carries."""
    template = colorapp(port=port)
    template["Parameters"] = {
        "BootstrapVersion": {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": "/cdk-bootstrap/hnb659fds/version",
        }
    }
    template["Rules"] = {
        "CheckBootstrapVersion": {
            "Assertions": [
                {
                    "Assert": {
                        "Fn::Not": [{"Fn::Contains": [["1", "2"], {"Ref": "BootstrapVersion"}]}]
                    },
                    "AssertDescription": "CDK bootstrap stack version 6 required.",
                }
            ]
        }
    }
    template["Resources"]["Metadata"] = {"Type": "AWS::CDK::Metadata", "Properties": {}}
    return template


def test_use_previous_value_on_an_ssm_parameter_survives_an_update(server, account, cfn, appmesh):
    ssm = make_client(server.endpoint, "ssm", account)
    ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="27", Type="String")
    cfn.create_change_set(
        StackName="cdk", ChangeSetName="first", TemplateBody=body(cdk_like()),
        ChangeSetType="CREATE",
    )  # fmt: skip
    cfn.execute_change_set(StackName="cdk", ChangeSetName="first")
    cfn.create_change_set(
        StackName="cdk", ChangeSetName="second", TemplateBody=body(cdk_like(port=9090)),
        ChangeSetType="UPDATE",
        Parameters=[{"ParameterKey": "BootstrapVersion", "UsePreviousValue": True}],
    )  # fmt: skip
    cfn.execute_change_set(StackName="cdk", ChangeSetName="second")
    stack = cfn.describe_stacks(StackName="cdk")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    node = appmesh.describe_virtual_node(meshName="color", virtualNodeName="blue")["virtualNode"]
    assert node["spec"]["listeners"][0]["portMapping"]["port"] == 9090


def test_a_create_change_set_for_an_existing_stack_is_already_exists(cfn):
    cfn.create_stack(StackName="taken", TemplateBody=body(colorapp()))
    with pytest.raises(ClientError) as taken:
        cfn.create_change_set(
            StackName="taken", ChangeSetName="again", TemplateBody=body(colorapp()),
            ChangeSetType="CREATE",
        )  # fmt: skip
    assert taken.value.response["Error"]["Code"] == "AlreadyExistsException"
