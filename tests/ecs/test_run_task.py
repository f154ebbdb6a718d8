"""``appmesh-local ecs run-task``: App Mesh task definitions run as local processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from appmesh_api.ecs.commands import fetch_registered
from appmesh_api.ecs.taskdef import parse
from appmesh_api.localports import wait_for_port
from tests.conftest import free_port, make_client, new_account

MESH = "ecs"
APP = [sys.executable, "-m", "appmesh_api.examples.colorapp_app"]


def task_definition(family: str, account: str, node: str, app_port: int, ports: dict) -> dict:
    """The shape of App Mesh's ECS walkthrough task definitions, with local ports."""
    admin = ports["admin"]
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/{MESH}/virtualNode/{node}"
    return {
        "family": family,
        "networkMode": "awsvpc",
        "proxyConfiguration": {
            "type": "APPMESH",
            "containerName": "envoy",
            "properties": [
                {"name": "AppPorts", "value": str(app_port)},
                {"name": "ProxyIngressPort", "value": str(ports["ingress"])},
                {"name": "ProxyEgressPort", "value": str(ports["egress"])},
                {"name": "IgnoredUID", "value": "1337"},
                {"name": "EgressIgnoredIPs", "value": "169.254.170.2,169.254.169.254"},
            ],
        },
        "containerDefinitions": [
            {
                "name": "app",
                "image": "example/colorteller",
                "memory": 128,
                "essential": True,
                "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}],
            },
            {
                "name": "envoy",
                "image": "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.29",
                "essential": True,
                "user": "1337",
                "memory": 128,
                "environment": [
                    {
                        "name": "APPMESH_RESOURCE_ARN",
                        "value": arn,
                    },
                    {"name": "ENVOY_ADMIN_ACCESS_PORT", "value": str(admin)},
                    {"name": "LISTENER_DRAIN_WAIT_TIME_S", "value": "0"},
                ],
                "healthCheck": {
                    "command": [
                        "CMD-SHELL",
                        f"curl -s http://localhost:{admin}/server_info | grep state | grep -q LIVE",
                    ],
                    "interval": 5,
                    "timeout": 2,
                    "retries": 3,
                    "startPeriod": 1,
                },
            },
        ],
    }


def gateway_task_definition(family: str, account: str, gateway: str, env: dict) -> dict:
    """The shape of App Mesh's gateway task definitions (howto-ingress-gateway,
    howto-grpc-ingress-gateway): Envoy is the task's one container, named ``app``, its
    ``APPMESH_RESOURCE_ARN`` a virtual gateway, and there is no ``proxyConfiguration``."""
    admin = env["ENVOY_ADMIN_ACCESS_PORT"]
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "containerDefinitions": [
            {
                "name": "app",
                "image": "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.29",
                "essential": True,
                "user": "1337",
                "environment": [
                    {
                        "name": "APPMESH_RESOURCE_ARN",
                        "value": f"mesh/{MESH}/virtualGateway/{gateway}",
                    },
                    *({"name": k, "value": str(v)} for k, v in env.items()),
                ],
                "healthCheck": {
                    "command": [
                        "CMD-SHELL",
                        f"curl -s http://localhost:{admin}/server_info | grep state | grep -q LIVE",
                    ],
                    "interval": 5,
                    "timeout": 2,
                    "retries": 3,
                },
            }
        ],
    }


def run_task(
    server,
    account: str,
    path: Path,
    command: str | None,
    logs: Path,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.Popen(
        [
            sys.executable, "-m", "appmesh_api.cli", "ecs", "run-task",
            "--task-definition", str(path),
            *(["--container", f"app={command}"] if command is not None else []),
            "--logs", str(logs), *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def test_two_tasks_carry_traffic_through_both_proxies_in_ecs_order(server, tmp_path):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName=MESH)
    teller_port, gateway_port = free_port(), free_port()
    ports = {
        name: {"ingress": free_port(), "egress": free_port(), "admin": free_port()}
        for name in ("teller", "gateway")
    }
    appmesh.create_virtual_node(
        meshName=MESH,
        virtualNodeName="teller",
        spec={
            "listeners": [{"portMapping": {"port": teller_port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "teller.ecs.local"}},
        },
    )
    appmesh.create_virtual_service(
        meshName=MESH,
        virtualServiceName="teller.ecs.local",
        spec={"provider": {"virtualNode": {"virtualNodeName": "teller"}}},
    )
    appmesh.create_virtual_node(
        meshName=MESH,
        virtualNodeName="gateway",
        spec={
            "listeners": [{"portMapping": {"port": gateway_port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "gateway.ecs.local"}},
            "backends": [{"virtualService": {"virtualServiceName": "teller.ecs.local"}}],
        },
    )
    tasks = []
    try:
        for name, node, port, command in (
            ("teller", "teller", teller_port, f"{' '.join(APP)} teller blue {teller_port}"),
            (
                "gateway",
                "gateway",
                gateway_port,
                f"{' '.join(APP)} gateway {gateway_port} http://teller.ecs.local:{teller_port}/",
            ),
        ):
            path = tmp_path / f"{name}.json"
            definition = task_definition(name, account, node, port, ports[name])
            path.write_text(json.dumps(definition))
            explicit = ("--network-mode", "explicit")
            tasks.append(run_task(server, account, path, command, tmp_path / name, explicit))
        wait_for_port(gateway_port, tasks[1], timeout=60)
        url = f"http://127.0.0.1:{ports['gateway']['ingress']}/color"
        deadline, answer = time.monotonic() + 30, None
        while answer is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    answer = json.loads(reply.read())
            except OSError:
                time.sleep(0.2)
        assert answer and answer["color"] == "blue"
    finally:
        outputs = []
        for task in tasks:
            task.send_signal(signal.SIGINT)
        for task in tasks:
            outputs.append(task.communicate(timeout=60)[0])
    for output in outputs:
        # The app started only once its proxy was healthy, and stopped before it.
        assert output.index("envoy is HEALTHY") < output.index("started app"), output
        assert output.index("stopped app") < output.index("stopped envoy"), output


def test_a_container_without_a_command_is_refused_with_what_to_do(server, tmp_path):
    definition = task_definition("lonely", "123456789012", "x", 8080, {"admin": 9901,
                                 "ingress": 15000, "egress": 15001})  # fmt: skip
    path = tmp_path / "lonely.json"
    path.write_text(json.dumps(definition))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "appmesh_api.cli",
            "ecs",
            "run-task",
            "--task-definition",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "container app: its image cannot run here" in result.stderr
    assert "--container app='COMMAND'" in result.stderr


def test_a_registered_family_keeps_its_proxy_configuration(server, monkeypatch):
    account = new_account()
    ecs = make_client(server.endpoint, "ecs", account)
    definition = task_definition("registered", account, "x", 8080, {"admin": 9901,
                                 "ingress": 15000, "egress": 15001})  # fmt: skip
    ecs.register_task_definition(**definition)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", account)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    task = fetch_registered("registered:1", server.endpoint)
    assert task.proxy_container == "envoy"
    assert task.proxy_properties["ProxyIngressPort"] == "15000"
    assert task.container("app").depends_on == [("envoy", "HEALTHY")]


TELLER = "teller.ecs.local"


def build_teller(appmesh, teller_port: int) -> None:
    appmesh.create_mesh(meshName=MESH)
    appmesh.create_virtual_node(
        meshName=MESH,
        virtualNodeName="teller",
        spec={
            "listeners": [{"portMapping": {"port": teller_port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "teller.ecs.local"}},
        },
    )
    appmesh.create_virtual_service(
        meshName=MESH,
        virtualServiceName="teller.ecs.local",
        spec={"provider": {"virtualNode": {"virtualNodeName": "teller"}}},
    )


def build_gateway(appmesh, gateway_port: int) -> None:
    appmesh.create_virtual_gateway(
        meshName=MESH,
        virtualGatewayName="gw",
        spec={"listeners": [{"portMapping": {"port": gateway_port, "protocol": "http"}}]},
    )
    appmesh.create_gateway_route(
        meshName=MESH,
        virtualGatewayName="gw",
        gatewayRouteName="to-teller",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"target": {"virtualService": {"virtualServiceName": TELLER}}},
            }
        },
    )


def get_text(url: str, timeout: float = 30.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return str(reply.read().decode())
        except OSError:
            time.sleep(0.2)
    return None


def test_a_virtual_gateway_task_without_proxy_configuration_runs_its_envoy(server, tmp_path):
    """App Mesh's gateway task: no ``proxyConfiguration``, Envoy as the task's ``app``
    container, its ARN a virtual gateway. ``run-task`` runs it as the gateway's proxy,
    with no command given, and requests to the gateway's listener reach the teller
    task's app through the teller's sidecar."""
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    teller_port, gateway_port = free_port(), free_port()
    build_teller(appmesh, teller_port)
    build_gateway(appmesh, gateway_port)
    teller_ports = {"ingress": free_port(), "egress": free_port(), "admin": free_port()}
    gateway_env = {"ENVOY_ADMIN_ACCESS_PORT": free_port(), "APPMESH_EGRESS_PORT": free_port()}
    explicit = ("--network-mode", "explicit")
    tasks = []
    try:
        path = tmp_path / "teller.json"
        path.write_text(json.dumps(task_definition("teller", account, "teller", teller_port,
                                                   teller_ports)))  # fmt: skip
        teller = f"{' '.join(APP)} teller blue {teller_port}"
        tasks.append(run_task(server, account, path, teller, tmp_path / "teller", explicit))
        path = tmp_path / "gw.json"
        path.write_text(json.dumps(gateway_task_definition("gw", account, "gw", gateway_env)))
        tasks.append(run_task(server, account, path, None, tmp_path / "gw", explicit))
        answer = get_text(f"http://127.0.0.1:{gateway_port}/color", timeout=60)
        assert answer == "blue", answer
    finally:
        for task in tasks:
            task.send_signal(signal.SIGINT)
        outputs = [task.communicate(timeout=60)[0] for task in tasks]
    gateway = outputs[1]
    assert "started app (appmesh-proxy, virtual gateway" in gateway, gateway
    assert "app is HEALTHY" in gateway and "stopped app" in gateway, gateway
    assert "network: explicit mode (the gateway listens on 127.0.0.1" in gateway, gateway


def test_a_gateway_task_is_recognised_and_takes_no_command_for_its_proxy(tmp_path):
    admin = {"ENVOY_ADMIN_ACCESS_PORT": 9901}
    definition = gateway_task_definition("gw", "123456789012", "gw", admin)
    task = parse(definition)
    assert (task.proxy_container, task.gateway, task.intercepted) == ("app", True, False)
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(definition))
    result = subprocess.run(
        [sys.executable, "-m", "appmesh_api.cli", "ecs", "run-task", "--task-definition",
         str(path), "--container", "app=sleep 1", "--network-mode", "explicit"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "container app is the task's proxy" in result.stderr


def test_a_virtual_node_arn_without_proxy_configuration_is_no_gateway() -> None:
    """Only a virtual gateway runs without ``proxyConfiguration``: a node's Envoy image
    in such a task stays an image that needs a command, as before."""
    definition = gateway_task_definition("n", "123456789012", "gw", {"ENVOY_ADMIN_ACCESS_PORT": 1})
    env = definition["containerDefinitions"][0]["environment"]
    env[0]["value"] = f"mesh/{MESH}/virtualNode/teller"
    assert parse(definition).proxy_container is None
