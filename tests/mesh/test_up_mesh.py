"""``appmesh-local up --mesh NAME``: sidecars for a mesh deployed some other way.

The mesh is made through the App Mesh API with boto3 (as ``cdk deploy`` or ``aws
cloudformation deploy`` would leave it), in an account of its own; ``up --mesh`` then
runs a real ``appmesh-proxy`` per virtual node and gateway, the control plane's
``/_appmesh/proxies`` lists each one holding config, a request through the gateway
crosses two of them to a real app, and Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port, make_client, new_account, start_server
from tests.mesh.harness import get
from tests.signing import proxies_of

UP = [sys.executable, "-m", "appmesh_api.cli", "up"]


@pytest.fixture
def control(tmp_path):
    server = start_server(tmp_path)
    yield server
    server.stop()


def create_shop(appmesh, blue_port: int, gateway_port: int) -> None:
    mesh = {"meshName": "shop"}
    appmesh.create_mesh(**mesh)
    for name, port in (("blue", blue_port), ("red", free_port())):
        appmesh.create_virtual_node(
            **mesh,
            virtualNodeName=name,
            spec={
                "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": f"{name}.shop.local"}},
            },
        )
    listener = [{"portMapping": {"port": 8080, "protocol": "http"}}]
    appmesh.create_virtual_router(**mesh, virtualRouterName="color", spec={"listeners": listener})
    appmesh.create_route(
        **mesh,
        virtualRouterName="color",
        routeName="to-blue",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"weightedTargets": [{"virtualNode": "blue", "weight": 1}]},
            }
        },
    )
    appmesh.create_virtual_service(
        **mesh,
        virtualServiceName="color.shop.local",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
    )
    appmesh.create_virtual_gateway(
        **mesh,
        virtualGatewayName="ingress",
        spec={"listeners": [{"portMapping": {"port": gateway_port, "protocol": "http"}}]},
    )
    appmesh.create_gateway_route(
        **mesh,
        virtualGatewayName="ingress",
        gatewayRouteName="all",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {
                    "target": {"virtualService": {"virtualServiceName": "color.shop.local"}}
                },
            }
        },
    )


def environment(endpoint: str, account: str) -> dict[str, str]:
    """A shell with the README's exports, as after ``cdk deploy``."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }


def start_up_mesh(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, list[str]]:
    """``up --mesh`` until it says every sidecar holds the config."""
    up = subprocess.Popen(
        [*UP, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            up.kill()
            raise AssertionError("up --mesh exited early:\n" + "".join(lines))
        lines.append(line)
        if "sidecars hold mesh" in line:
            return up, lines
    up.kill()
    raise AssertionError("up --mesh never said its sidecars were ready:\n" + "".join(lines))


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_up_mesh_runs_a_sidecar_for_every_node_and_gateway_and_ctrl_c_stops_them(control):
    account = new_account()
    blue_port, gateway_port = free_port(), free_port()
    create_shop(make_client(control.endpoint, "appmesh", account), blue_port, gateway_port)
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appmesh_api.examples.colorapp_app",
            "teller",
            "blue",
            str(blue_port),
        ]
    )
    try:
        up, lines = start_up_mesh(environment(control.endpoint, account), "--mesh", "shop")
        try:
            said = "".join(lines)
            assert "an appmesh-proxy for each of its 3 virtual nodes and gateways" in said, said
            assert f"virtual node blue: your app listens on 127.0.0.1:{blue_port}" in said, said
            assert (
                f"virtual gateway ingress: clients reach the gateway on 127.0.0.1:{gateway_port}"
                in said
            )
            arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/shop/virtualGateway/ingress"
            assert re.search(
                rf"APPMESH_RESOURCE_ARN={re.escape(arn)} .* appmesh-proxy$", said, re.M
            )
            proxies = proxies_of(control.endpoint, account)
            held = {
                (p["resourceKind"], p["resourceName"]) for p in proxies if p["acceptedVersions"]
            }
            assert held == {
                ("virtualNode", "blue"),
                ("virtualNode", "red"),
                ("virtualGateway", "ingress"),
            }, proxies
            # Client -> the gateway's sidecar -> blue's sidecar -> the app.
            status, _, body = get(gateway_port, "/color", "color.shop.local")
            assert (status, body) == (200, "blue")
        finally:
            up.send_signal(signal.SIGINT)
            output, _ = up.communicate(timeout=60)
        assert up.returncode == 0, output
        assert "stopped." in output
        assert refused(gateway_port), "a sidecar outlived up --mesh"
    finally:
        app.terminate()
        app.wait(timeout=10)


def test_up_mesh_refuses_a_mesh_that_does_not_exist(control):
    account = new_account()
    env = environment(control.endpoint, account)
    done = subprocess.run(
        [*UP, "--mesh", "nothing-here"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert f"Mesh with name nothing-here is not present for account {account}" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "appmesh-proxy" not in done.stdout


def test_up_mesh_refuses_when_no_control_plane_answers():
    env = environment(f"http://127.0.0.1:{free_port()}", "123456789012")
    done = subprocess.run(
        [*UP, "--mesh", "shop"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "no appmesh-local answers at" in done.stdout, done.stdout + done.stderr
