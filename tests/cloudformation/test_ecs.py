"""App Mesh's ECS task definitions keep their proxy configuration through CloudFormation."""

from __future__ import annotations

from appmesh_api.ecs.commands import fetch_registered
from tests.cloudformation.templates import body
from tests.conftest import make_client

ENVOY_TASK = {
    "Resources": {
        "ColorTeller": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": "colorteller",
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "Cpu": 256,
                "Memory": "512",
                "ExecutionRoleArn": "arn:aws:iam::123456789012:role/exec",
                "ProxyConfiguration": {
                    "Type": "APPMESH",
                    "ContainerName": "envoy",
                    "ProxyConfigurationProperties": [
                        {"Name": "IgnoredUID", "Value": "1337"},
                        {"Name": "ProxyIngressPort", "Value": "15000"},
                        {"Name": "ProxyEgressPort", "Value": "15001"},
                        {"Name": "AppPorts", "Value": "9080"},
                        {"Name": "EgressIgnoredIPs", "Value": "169.254.170.2,169.254.169.254"},
                    ],
                },
                "ContainerDefinitions": [
                    {
                        "Name": "app",
                        "Image": "colorteller",
                        "PortMappings": [{"ContainerPort": 9080}],
                        "DependsOn": [{"ContainerName": "envoy", "Condition": "HEALTHY"}],
                    },
                    {
                        "Name": "envoy",
                        "Image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.12.1-prod",
                        "User": "1337",
                        "Environment": [
                            {
                                "Name": "APPMESH_RESOURCE_ARN",
                                "Value": "mesh/color/virtualNode/blue",
                            }
                        ],
                    },
                ],
            },
        }
    },
    "Outputs": {"TaskArn": {"Value": {"Ref": "ColorTeller"}}},
}


def test_a_task_definition_keeps_its_proxy_configuration(server, account):
    cfn = make_client(server.endpoint, "cloudformation", account)
    cfn.create_stack(StackName="ecs", TemplateBody=body(ENVOY_TASK))
    stack = cfn.describe_stacks(StackName="ecs")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    ecs = make_client(server.endpoint, "ecs", account)
    task = ecs.describe_task_definition(taskDefinition="colorteller")["taskDefinition"]
    assert task["proxyConfiguration"] == {
        "type": "APPMESH",
        "containerName": "envoy",
        "properties": [
            {"name": "IgnoredUID", "value": "1337"},
            {"name": "ProxyIngressPort", "value": "15000"},
            {"name": "ProxyEgressPort", "value": "15001"},
            {"name": "AppPorts", "value": "9080"},
            {"name": "EgressIgnoredIPs", "value": "169.254.170.2,169.254.169.254"},
        ],
    }
    assert (task["networkMode"], task["cpu"], task["memory"]) == ("awsvpc", "256", "512")
    assert task["executionRoleArn"] == "arn:aws:iam::123456789012:role/exec"
    envoy = task["containerDefinitions"][1]
    assert envoy["user"] == "1337"
    assert envoy["environment"] == [
        {"name": "APPMESH_RESOURCE_ARN", "value": "mesh/color/virtualNode/blue"}
    ]


def test_a_template_task_definition_runs_by_family(server, account, monkeypatch):
    """What ``appmesh-local ecs run-task --task-definition colorteller`` reads back: the
    registered revision, with its proxy configuration and containers as the template
    wrote them (PascalCase become the ECS API's camelCase)."""
    cfn = make_client(server.endpoint, "cloudformation", account)
    cfn.create_stack(StackName="ecs-run", TemplateBody=body(ENVOY_TASK))
    for key, value in (("AWS_ACCESS_KEY_ID", account), ("AWS_SECRET_ACCESS_KEY", "local"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(key, value)
    task = fetch_registered("colorteller", server.endpoint)
    assert (task.family, task.proxy_container) == ("colorteller", "envoy")
    assert task.proxy_properties["AppPorts"] == "9080"
    assert task.proxy_properties["IgnoredUID"] == "1337"
    app, envoy = task.containers
    assert app.depends_on == [("envoy", "HEALTHY")] and app.ports == [(9080, "tcp")]
    assert envoy.user == "1337"
    assert envoy.environment == {"APPMESH_RESOURCE_ARN": "mesh/color/virtualNode/blue"}
    assert "task cpu 256: not enforced (the containers are processes of this machine)" in (
        task.not_applied
    )
