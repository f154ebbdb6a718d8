"""aws-app-mesh-examples' howto-grpc-ingress-gateway, run as its README runs it.

``deploy.sh``'s three stacks (``infra.yaml``, ``mesh.yaml``, ``app.yaml``, unmodified,
in ``tests/cloudformation/walkthroughs/howto-grpc-ingress-gateway/``) go through our
CloudFormation with the aws CLI. The ``color_server`` task definition runs with
``appmesh-local ecs run-task`` (awsvpc), ``walkthroughs/color_grpc.py`` playing the Go
image. Then the README's two ``grpc_cli`` calls, made with a grpcio client to the
gateway's port 8080 (the network load balancer's target): ``SetColor 'color: RED'``
answers the previous colour, ``GetColor`` then answers ``RED``, through the virtual
gateway's ``grpc`` listener, its gateway route on ``color.ColorService``, and the
server's sidecar.

``color_gateway``'s task definition has no ``proxyConfiguration``: App Mesh's Envoy
image is its ``app`` container, its ``APPMESH_RESOURCE_ARN`` the virtual gateway, and
``ecs run-task`` runs it as the gateway's proxy in a task of its own (awsvpc, no
iptables rules), listening on the walkthrough's 8080 at the task's address.
"""

from __future__ import annotations

import grpc
import pytest

from appmesh_api.ecs.network import missing_tools
from tests.mesh.walkthrough_tasks import Walk, python, until
from tests.mesh.walkthroughs.color_grpc import color_message, color_name

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"awsvpc mode needs {', '.join(missing_tools())}"
)
PROJECT = "howto-grpc-ingress-gateway"


@pytest.fixture(scope="module")
def walk(server, tmp_path_factory):
    walk = Walk(server, PROJECT, tmp_path_factory.mktemp(PROJECT))
    walk.deploy()
    try:
        server_task = walk.start("color_server", app=python("color_grpc.py", "server"))
        server_task.wait_for("envoy is HEALTHY")
        gateway = walk.start("color_gateway")  # no command: its one container is the proxy
        gateway.wait_for("app is HEALTHY")
        yield {"walk": walk, "address": gateway.address, "gateway": gateway}
    finally:
        walk.stop()


def test_the_gateway_task_runs_its_envoy_container_as_the_gateway_proxy(walk):
    output = walk["gateway"].output
    assert "started app (appmesh-proxy, virtual gateway" in output, output


def call(address: str, method: str, request: bytes) -> bytes:
    """``grpc_cli call $NLB_ENDPOINT METHOD ...``: one call to the gateway's 8080."""
    with grpc.insecure_channel(f"{address}:8080") as channel:
        reply: bytes = channel.unary_unary(f"/color.ColorService/{method}")(request, timeout=10)
        return reply


def test_set_color_then_get_color_through_the_ingress_gateway(walk):
    address = walk["address"]
    # wait for the gateway with GetColor (SetColor is not idempotent): no colour yet
    first = until(lambda: call_or_none(address, "GetColor", b""), timeout=45)
    assert first is not None and color_name(first) == "no_color", first
    # README step 3: SetColor 'color: RED' (the answer is the previous colour)
    assert color_name(call(address, "SetColor", color_message(1))) == "no_color"
    assert color_name(call(address, "GetColor", b"")) == "red"  # README step 4


def call_or_none(address: str, method: str, request: bytes) -> bytes | None:
    try:
        return call(address, method, request)
    except grpc.RpcError:
        return None


def test_a_method_of_another_service_finds_no_gateway_route(walk):
    """The gateway route matches ``serviceName: color.ColorService`` only."""
    with (
        grpc.insecure_channel(f"{walk['address']}:8080") as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        channel.unary_unary("/other.Service/GetColor")(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
