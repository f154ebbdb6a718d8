"""The aws-app-mesh-examples walkthroughs' CloudFormation templates, deployed unmodified.

Each walkthrough runs as its ``deploy.sh`` (or README) runs it: the real aws CLI's
``aws cloudformation deploy`` (in this process, see ``run_aws_in_process``: 40 deploys)
with the same stack names and ``--parameter-overrides``,
stacks in the walkthrough's order, a later version of a template as an update of the
same stack. After every deploy, each App Mesh resource the template declares is read
back through the App Mesh API and its spec compared, field for field, with the
template's (worked out by ``cfn_yaml``, not by the code under test); every other
resource must be in the stack, complete. Deleting the stacks must leave no App Mesh
resource and no Cloud Map namespace behind. The templates are in ``walkthroughs/``
(see its README for their source and licence).
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_aws_cli import run_aws_in_process
from tests.cloudformation.cfn_yaml import Resolver, Stack, load
from tests.conftest import REGION, make_client, new_account, start_server
from tests.ecs.registered import check_task_definitions

TEMPLATES = Path(__file__).parent / "walkthroughs"
ENVOY_IMAGE = "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.29.12.1-prod"


@dataclass(frozen=True)
class Step:
    """One ``aws cloudformation deploy``; ``${VAR}`` is the script's shell variable."""

    stack: str
    template: str
    parameters: dict[str, str]
    before: str | None = None  # a README step to run first (see PREPARATIONS)


@dataclass(frozen=True)
class Walkthrough:
    name: str
    steps: tuple[Step, ...]
    variables: dict[str, str] = field(default_factory=dict)  # the README's exports
    prepare: tuple[str, ...] = ()  # README steps before the first stack


def images(*names: str) -> dict[str, str]:
    return {parameter: f"${{ECR}}/${{PROJECT_NAME}}/{image}" for parameter, image in pairs(names)}


def pairs(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return list(zip(names[::2], names[1::2], strict=True))


def infra_app(app_images: dict[str, str]) -> tuple[Step, ...]:
    """howto-http-retries and howto-http-headers: infra, then app (mesh included)."""
    project = {"ProjectName": "${PROJECT_NAME}"}
    return (
        Step("${PROJECT_NAME}-infra", "infra.yaml", project),
        Step(
            "${PROJECT_NAME}-app", "app.yaml", {**project, "EnvoyImage": ENVOY_IMAGE, **app_images}
        ),
    )


def infra_mesh_app() -> tuple[Step, ...]:
    """howto-http2 and howto-grpc: infra (a bastion with a key pair), mesh, app."""
    project = {"ProjectName": "${PROJECT_NAME}"}
    app = images("ColorClientImage", "color_client", "ColorServerImage", "color_server")
    return (
        Step("${PROJECT_NAME}-infra", "infra.yaml", {**project, "KeyPair": "${KEY_PAIR}"}),
        Step("${PROJECT_NAME}-mesh", "mesh.yaml", project),
        Step("${PROJECT_NAME}-app", "app.yaml", {**project, "EnvoyImage": ENVOY_IMAGE, **app}),
    )


def stages(stack: str, names: list[str], parameters: dict[str, str]) -> tuple[Step, ...]:
    """howto-ecs-basics and howto-metrics-extension-ecs: each stage updates one stack."""
    return tuple(Step(stack, f"deploy/{name}.yaml", parameters) for name in names)


def project(name: str, **more: str) -> dict[str, str]:
    return {"PROJECT_NAME": name, **more}


ENV = {"EnvironmentName": "${ENVIRONMENT_NAME}"}
CLUSTER = {**ENV, "KeyName": "${KEY_PAIR}", "ECSServicesDomain": "${SERVICES_DOMAIN}"}
SERVICE = {**ENV, "ECSServicesDomain": "${SERVICES_DOMAIN}", "AppMeshMeshName": "${MESH_NAME}"}
VPC = Step("${ENVIRONMENT_NAME}-vpc", "infrastructure/vpc.yaml", ENV)
ECS_CLUSTER = Step("${ENVIRONMENT_NAME}-ecs-cluster", "infrastructure/ecs-cluster.yaml", CLUSTER)
ECR_REPOSITORIES = "${ENVIRONMENT_NAME}-ecr-repositories"
COLOR_IMAGES = images("ColorAppImage", "colorapp", "FrontAppImage", "feapp")
OUTLIER = {"ProjectName": "${PROJECT_NAME}"}
COLORAPP_TASKS = ("Gateway", "TellerWhite", "TellerRed", "TellerBlue", "TellerBlack")

WALKTHROUGHS = (
    Walkthrough("howto-http-retries", infra_app(COLOR_IMAGES), project("howto-http-retries")),
    Walkthrough("howto-http-headers", infra_app(COLOR_IMAGES), project("howto-http-headers")),
    Walkthrough("howto-http2", infra_mesh_app(), project("howto-http2"), ("key_pair",)),
    Walkthrough("howto-grpc", infra_mesh_app(), project("howto-grpc"), ("key_pair",)),
    Walkthrough(
        "howto-grpc-ingress-gateway",
        (
            *infra_mesh_app()[:2],
            Step(
                "${PROJECT_NAME}-app",
                "app.yaml",
                {
                    "ProjectName": "${PROJECT_NAME}",
                    "EnvoyImage": ENVOY_IMAGE,
                    **images("ColorServerImage", "color_server"),
                },
            ),
        ),
        project("howto-grpc-ingress-gateway"),
        ("key_pair",),
    ),
    Walkthrough(
        "howto-outlier-detection",
        (
            Step("${PROJECT_NAME}-infra", "infrastructure.yaml", OUTLIER),
            # the README's mesh.sh makes this mesh with API calls before deploy.sh runs;
            # mesh/mesh.yaml declares the same mesh as a stack
            Step("${PROJECT_NAME}-mesh", "mesh/mesh.yaml", OUTLIER),
            Step(
                "${PROJECT_NAME}-app",
                "application.yaml",
                {
                    **OUTLIER,
                    "EnvoyImage": ENVOY_IMAGE,
                    **images("ColorAppImage", "color-app", "FrontAppImage", "frontend-app"),
                    "ColorNodeName": "mesh/${PROJECT_NAME}/virtualNode/color-node",
                    "FrontNodeName": "mesh/${PROJECT_NAME}/virtualNode/front-node",
                    "BastionKeyName": "${KEY_PAIR}",
                },
            ),
        ),
        project("howto-outlier-detection"),
        ("key_pair",),
    ),
    Walkthrough(
        "howto-timeout-policy",
        (
            VPC,
            ECS_CLUSTER,
            Step(
                ECR_REPOSITORIES,
                "infrastructure/ecr-repositories.yaml",
                {
                    "GatewayImageName": "${COLOR_GATEWAY_IMAGE_NAME}",
                    "ColorTellerImageName": "${COLOR_TELLER_IMAGE_NAME}",
                },
            ),
            # mesh/mesh.sh makes the mesh with API calls; mesh/mesh.yaml declares it
            Step(
                "${ENVIRONMENT_NAME}-mesh",
                "mesh/mesh.yaml",
                {
                    "MeshName": "${MESH_NAME}",
                    "ServicesDomain": "${SERVICES_DOMAIN}",
                    "CertificateAuthorityArn": "${ROOT_CA_ARN}",
                    "CertificateArn": "${CERTIFICATE_ARN}",
                },
            ),
            Step(
                "${ENVIRONMENT_NAME}-ecs-service",
                "infrastructure/ecs-service.yaml",
                {
                    **SERVICE,
                    "EnvoyImage": ENVOY_IMAGE,
                    "ColorGatewayImageName": "${COLOR_GATEWAY_IMAGE_NAME}",
                    "ColorTellerImageName": "${COLOR_TELLER_IMAGE_NAME}",
                },
            ),
        ),
        {
            "ENVIRONMENT_NAME": "AppMeshTimeoutExample",
            "MESH_NAME": "ColorApp-Timeout",
            "SERVICES_DOMAIN": "default.svc.cluster.local",
            "COLOR_GATEWAY_IMAGE_NAME": "colorgateway",
            "COLOR_TELLER_IMAGE_NAME": "colorteller",
        },
        ("key_pair", "certificate"),
    ),
    Walkthrough(
        "howto-ingress-gateway",
        (
            VPC,
            ECS_CLUSTER,
            Step(
                ECR_REPOSITORIES,
                "infrastructure/ecr-repositories.yaml",
                {"ColorTellerImageName": "${COLOR_TELLER_IMAGE_NAME}"},
            ),
            Step(
                "${ENVIRONMENT_NAME}-ecs-service",
                "infrastructure/ecs-service.yaml",
                {
                    **SERVICE,
                    "EnvoyImage": ENVOY_IMAGE,
                    "ColorTellerImageName": "${COLOR_TELLER_IMAGE_NAME}",
                    "LoadBalancerCertificateArn": "${CERTIFICATE_ARN}",
                },
            ),
        ),
        {
            "ENVIRONMENT_NAME": "AppMeshIngressExample",
            "MESH_NAME": "ColorApp-Ingress",
            "SERVICES_DOMAIN": "default.svc.cluster.local",
            "COLOR_TELLER_IMAGE_NAME": "howto-ingress/colorteller",
        },
        ("key_pair", "certificate"),
    ),
    Walkthrough(
        "howto-metrics-extension-ecs",
        stages(
            "appmesh-${PROJECT_NAME}",
            [f"djapp-v{version}" for version in range(1, 6)],
            {
                "ProjectName": "${PROJECT_NAME}",
                "EnvoyImage": ENVOY_IMAGE,
                **images("CloudWatchAgentImage", "cwagent", "DJAppImage", "djapp"),
            },
        ),
        project("howto-metrics-extension"),
    ),
    Walkthrough(
        "howto-ecs-basics",
        stages(
            "appmesh-${PROJECT_NAME}",
            ["0-prelude", "1-servicediscovery", "2-meshify", "3-routing"],
            {
                "ProjectName": "${PROJECT_NAME}",
                "EnvoyImage": ENVOY_IMAGE,
                # deploy.sh tags each image with the last commit of its source folder
                **{
                    parameter: f"${{ECR}}/${{PROJECT_NAME}}/{image}:8c5e3f1"
                    for parameter, image in pairs(
                        (
                            "CloudWatchAgentImage",
                            "cwagent",
                            "ColorAppImage",
                            "colorapp",
                            "FrontAppImage",
                            "feapp",
                        )
                    )
                },
            },
        ),
        project("howto-ecs-basics"),
    ),
    Walkthrough(
        "colorapp",  # examples/apps/colorapp/README.md, in its order
        (
            VPC,
            Step(
                "${ENVIRONMENT_NAME}-appmesh-mesh",
                "infrastructure/appmesh-mesh.yaml",
                {**ENV, "AppMeshMeshName": "${MESH_NAME}"},
            ),
            Step(
                "${ENVIRONMENT_NAME}-ecs-cluster",
                "infrastructure/ecs-cluster.yaml",
                {**CLUSTER, "ClusterSize": "5"},
            ),
            Step(
                "${ENVIRONMENT_NAME}-appmesh-colorapp",
                "servicemesh/appmesh-colorapp.yaml",
                {**ENV, "ServicesDomain": "${SERVICES_DOMAIN}", "AppMeshMeshName": "${MESH_NAME}"},
            ),
            Step(
                "${ENVIRONMENT_NAME}-ecs-colorapp",
                "ecs/ecs-colorapp.yaml",
                {
                    **SERVICE,
                    **{
                        f"Color{part}TaskDefinition": f"${{TASK_{part.upper()}}}"
                        for part in COLORAPP_TASKS
                    },
                    "DeployTester": "false",
                },
                before="colorapp_task_definitions",  # ecs-colorapp.sh runs create-task-defs.sh
            ),
        ),
        {"ENVIRONMENT_NAME": "DEMO", "MESH_NAME": "appmesh-mesh", "SERVICES_DOMAIN": "demo.local"},
        ("key_pair",),
    ),
)


class Run:
    """One walkthrough in an account of its own: its clients, variables and stacks."""

    def __init__(self, server, walkthrough: Walkthrough) -> None:
        self.server, self.walkthrough = server, walkthrough
        self.account = new_account()
        self.variables = {
            "AWS_ACCOUNT_ID": self.account,
            "ECR": f"{self.account}.dkr.ecr.{REGION}.amazonaws.com",
            **walkthrough.variables,
        }
        self.deployed: dict[str, Stack] = {}  # by stack name, in first-deploy order
        self.seconds: list[tuple[str, float]] = []
        self.clients: dict[str, Any] = {}

    def client(self, service: str):
        if service not in self.clients:
            self.clients[service] = make_client(self.server.endpoint, service, self.account)
        return self.clients[service]

    def expand(self, text: str) -> str:
        return string.Template(text).substitute(self.variables)

    def deploy(self, step: Step) -> Stack:
        name, path = self.expand(step.stack), TEMPLATES / self.walkthrough.name / step.template
        parameters = {key: self.expand(value) for key, value in step.parameters.items()}
        started = time.monotonic()
        result = run_aws_in_process(
            self.server, self.account, "cloudformation", "deploy", "--no-fail-on-empty-changeset",
            "--stack-name", name, "--template-file", str(path), "--capabilities", "CAPABILITY_IAM",
            "--parameter-overrides", *(f"{key}={value}" for key, value in parameters.items()),
        )  # fmt: skip
        self.seconds.append((f"{name} ({step.template})", time.monotonic() - started))
        assert result.returncode == 0, f"{name}: {result.stderr}\n{self.failures(name)}"
        stack = Stack(
            name, self.account, REGION, load(path), parameters, self.physical_ids(name),
            self.service_attribute,
        )  # fmt: skip
        self.deployed[name] = stack
        return stack

    def failures(self, name: str) -> list[str]:
        cfn = self.client("cloudformation")
        return [
            f"{item['LogicalResourceId']} {item['ResourceStatus']}: "
            f"{item.get('ResourceStatusReason')}"
            for item in cfn.describe_stack_events(StackName=name)["StackEvents"]
            if item["ResourceStatus"].endswith("FAILED")
        ]

    def physical_ids(self, name: str) -> dict[str, str]:
        return {
            item["LogicalResourceId"]: item["PhysicalResourceId"] for item in self.resources(name)
        }

    def resources(self, name: str) -> list[dict[str, Any]]:
        pages = self.client("cloudformation").get_paginator("list_stack_resources")
        return [
            item
            for page in pages.paginate(StackName=name)
            for item in page["StackResourceSummaries"]
        ]

    def service_attribute(self, logical_id: str, physical_id: str, attribute: str) -> str:
        if attribute == "DNSName":
            elbv2 = self.client("elbv2")
            (found,) = elbv2.describe_load_balancers(LoadBalancerArns=[physical_id])[
                "LoadBalancers"
            ]
            return found["DNSName"]
        raise NotImplementedError(f"GetAtt {logical_id}.{attribute}")


def prepare_key_pair(run: Run) -> dict[str, str]:
    """The READMEs' KEY_PAIR_NAME: an EC2 key pair the bastion and cluster instances use."""
    run.client("ec2").create_key_pair(KeyName="color-app")
    return {"KEY_PAIR": "color-app"}


def prepare_certificate(run: Run) -> dict[str, str]:
    """howto-ingress-gateway's step 3: a private root CA, and a certificate it issues."""
    authority = run.client("acm-pca").create_certificate_authority(
        CertificateAuthorityType="ROOT",
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {
                "Organization": "App Mesh Examples",
                "CommonName": run.expand("${SERVICES_DOMAIN}"),
            },
        },
    )["CertificateAuthorityArn"]
    certificate = run.client("acm").request_certificate(
        DomainName=run.expand("*.${SERVICES_DOMAIN}"), CertificateAuthorityArn=authority
    )["CertificateArn"]
    return {"ROOT_CA_ARN": authority, "CERTIFICATE_ARN": certificate}


def prepare_colorapp_task_definitions(run: Run) -> dict[str, str]:
    """ecs/create-task-defs.sh: a task definition per app, with the cluster stack's roles."""
    (cluster,) = run.client("cloudformation").describe_stacks(
        StackName=run.expand("${ENVIRONMENT_NAME}-ecs-cluster")
    )["Stacks"]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in cluster["Outputs"]}
    found = {}
    for part in COLORAPP_TASKS:
        node = part.lower().replace("teller", "teller-")
        registered = run.client("ecs").register_task_definition(
            family=run.expand(f"${{ENVIRONMENT_NAME}}-Color{part}"),
            taskRoleArn=outputs["TaskIamRoleArn"],
            executionRoleArn=outputs["TaskExecutionIamRoleArn"],
            networkMode="awsvpc",
            proxyConfiguration={
                "type": "APPMESH",
                "containerName": "envoy",
                "properties": [
                    {"name": "AppPorts", "value": "9080"},
                    {"name": "IgnoredUID", "value": "1337"},
                ],
            },
            containerDefinitions=[
                {"name": "app", "image": "colorteller", "essential": True, "memory": 128},
                {
                    "name": "envoy",
                    "image": ENVOY_IMAGE,
                    "user": "1337",
                    "memory": 256,
                    "environment": [
                        {
                            "name": "APPMESH_VIRTUAL_NODE_NAME",
                            "value": run.expand(f"mesh/${{MESH_NAME}}/virtualNode/color{node}-vn"),
                        }
                    ],
                },
            ],
        )
        found[f"TASK_{part.upper()}"] = registered["taskDefinition"]["taskDefinitionArn"]
    return found


PREPARATIONS: dict[str, Callable[[Run], dict[str, str]]] = {
    "key_pair": prepare_key_pair,
    "certificate": prepare_certificate,
    "colorapp_task_definitions": prepare_colorapp_task_definitions,
}


@dataclass(frozen=True)
class Declared:
    """An App Mesh resource as the template declares it, resolved."""

    kind: str  # VirtualNode, ...
    identity: tuple[tuple[str, str], ...]  # describe-call arguments: (("meshName", "x"), ...)
    spec: Any
    arn: str


def lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def declared_app_mesh(stack: Stack) -> dict[str, Declared]:
    resolver = Resolver(stack)
    found = {}
    for logical_id, resource in stack.template["Resources"].items():
        kind = resource["Type"].removeprefix("AWS::AppMesh::")
        if kind == resource["Type"] or not resolver.condition(resource.get("Condition")):
            continue
        properties = resolver.value(resource["Properties"])
        identity = tuple(
            (lower_first(key), value)
            for key, value in sorted(properties.items())
            if key.endswith("Name")
        )
        found[logical_id] = Declared(
            kind, identity, properties.get("Spec", {}), stack.physical_ids[logical_id]
        )
    return found


def describe(run: Run, declared: Declared) -> dict[str, Any]:
    operation = "describe_" + re.sub(r"(?<!^)([A-Z])", r"_\1", declared.kind).lower()
    answer = getattr(run.client("appmesh"), operation)(**dict(declared.identity))
    return answer[lower_first(declared.kind)]


def comparable(value: Any) -> Any:
    """Keys without case (``DNS``/``dns``, ``HTTP2``/``http2``), scalars as CloudFormation
    passes them (``8080`` and ``"8080"``, ``true`` and ``"true"`` are one value)."""
    if isinstance(value, dict):
        return {key.lower(): comparable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_stack(run: Run, stack: Stack) -> None:
    """Complete, and holding every resource its template declares (none left out)."""
    resolver = Resolver(stack)
    (described,) = run.client("cloudformation").describe_stacks(StackName=stack.name)["Stacks"]
    assert described["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), described
    wanted = {
        logical_id: resource["Type"]
        for logical_id, resource in stack.template["Resources"].items()
        if resolver.condition(resource.get("Condition"))
    }
    held = run.resources(stack.name)
    assert {item["LogicalResourceId"]: item["ResourceType"] for item in held} == wanted
    statuses = {item["LogicalResourceId"]: item["ResourceStatus"] for item in held}
    assert set(statuses.values()) <= {"CREATE_COMPLETE", "UPDATE_COMPLETE"}, statuses


def check_app_mesh(run: Run, declared: dict[str, Declared]) -> None:
    for logical_id, resource in declared.items():
        held = describe(run, resource)
        assert held["metadata"]["arn"] == resource.arn, logical_id
        assert held["status"]["status"] == "ACTIVE", logical_id
        assert comparable(held["spec"]) == comparable(resource.spec), logical_id


def dropped(previous: Stack, current: dict[str, Declared]) -> list[Declared]:
    kept = {resource.arn for resource in current.values()}
    return [
        resource for resource in declared_app_mesh(previous).values() if resource.arn not in kept
    ]


def check_gone(run: Run, declared: list[Declared]) -> None:
    for resource in declared:
        with pytest.raises(ClientError) as raised:
            describe(run, resource)
        assert raised.value.response["Error"]["Code"] == "NotFoundException", resource


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory):
    """One server for all the walkthroughs, in memory: the session's server saves every
    moto write to its data directory (a VPC stack's delete took 1.5 s instead of 10 ms),
    and what a restart keeps is test_restart.py's subject, not this module's."""
    running = start_server(tmp_path_factory.mktemp("walkthroughs"))
    yield running
    running.stop()


@pytest.mark.parametrize("walkthrough", WALKTHROUGHS, ids=lambda walkthrough: walkthrough.name)
def test_a_walkthrough_deploys_in_order_matches_its_templates_and_deletes(
    memory_server, walkthrough
):
    run = Run(memory_server, walkthrough)
    for name in walkthrough.prepare:
        run.variables.update(PREPARATIONS[name](run))
    ever: dict[str, Declared] = {}
    tasks: set[str] = set()
    for step in walkthrough.steps:
        if step.before:
            run.variables.update(PREPARATIONS[step.before](run))
        previous = run.deployed.get(run.expand(step.stack))
        stack = run.deploy(step)
        check_stack(run, stack)
        # its task definitions are ones `appmesh-local ecs run-task FAMILY` runs as they are
        tasks.update(check_task_definitions(run.server.endpoint, run.account, run.client("ecs")))
        declared = declared_app_mesh(stack)
        check_app_mesh(run, declared)
        if previous is not None:  # an update: what the new version dropped is gone
            check_gone(run, dropped(previous, declared))
        ever.update({f"{stack.name}/{key}": value for key, value in declared.items()})
    cfn = run.client("cloudformation")
    for name in reversed(run.deployed):  # as each walkthrough's delete step does
        cfn.delete_stack(StackName=name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig={"Delay": 1})
    check_gone(run, list(ever.values()))
    assert run.client("appmesh").list_meshes()["meshes"] == []
    assert run.client("servicediscovery").list_namespaces()["Namespaces"] == []
    print(f"\n{walkthrough.name}: task definitions run-task accepts: {sorted(tasks)}")
    print(
        f"\n{walkthrough.name}: "
        + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in run.seconds)
    )
