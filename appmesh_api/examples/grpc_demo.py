"""``appmesh-local up --example grpc``: gRPC across the mesh, HTTP/2 on every hop.

Two color servers (``color-red``, ``color-blue``) with ``grpc`` listeners sit behind a
virtual router whose gRPC routes match the service and method, and send callers with
``team: blue`` metadata to blue (with a retry on ``unavailable``); everyone else gets
red. A ``grpc-client`` node has the virtual service as its backend; its sidecar is
where the printed ``call`` command connects. Built from the same parts as colorapp
(``appmesh_api.up``): the control plane, the App Mesh API, one sidecar per node.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import grpc

from appmesh_api.localports import free_port, wait_for_port
from appmesh_api.up import (
    ControlPlane,
    Processes,
    appmesh_client,
    run_example_mesh,
    start_sidecar,
)

MESH = "appmesh-local-grpc"
SERVICE = "color.grpc.local"
SERVERS = ("red", "blue")
APP = [sys.executable, "-m", "appmesh_api.examples.grpc_app"]


def _node(port: int | None, name: str, backends: tuple[str, ...] = ()) -> dict:
    spec: dict = {"serviceDiscovery": {"dns": {"hostname": f"{name}.grpc.local"}}}
    if port is not None:
        spec["listeners"] = [{"portMapping": {"port": port, "protocol": "grpc"}}]
    if backends:
        spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    return spec


def create_grpc_mesh(appmesh, ports: dict[str, int]) -> None:
    appmesh.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "DROP_ALL"}})
    for color in SERVERS:
        appmesh.create_virtual_node(
            meshName=MESH, virtualNodeName=f"color-{color}", spec=_node(ports[color], color)
        )
    router = {"listeners": [{"portMapping": {"port": 9080, "protocol": "grpc"}}]}
    appmesh.create_virtual_router(meshName=MESH, virtualRouterName="color", spec=router)
    method = {"serviceName": "color.ColorService", "methodName": "GetColor"}
    team_blue = {**method, "metadata": [{"name": "team", "match": {"exact": "blue"}}]}
    retry = {"grpcRetryEvents": ["unavailable"], "maxRetries": 2,
             "perRetryTimeout": {"unit": "s", "value": 2}}  # fmt: skip
    for name, match, target, priority in (
        ("team-blue", team_blue, "color-blue", 1),
        ("everyone-else", method, "color-red", 2),
    ):
        action = {"weightedTargets": [{"virtualNode": target, "weight": 1}]}
        appmesh.create_route(
            meshName=MESH,
            virtualRouterName="color",
            routeName=name,
            spec={"priority": priority,
                  "grpcRoute": {"match": match, "action": action, "retryPolicy": retry}},
        )  # fmt: skip
    appmesh.create_virtual_service(
        meshName=MESH,
        virtualServiceName=SERVICE,
        spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
    )
    appmesh.create_virtual_node(
        meshName=MESH, virtualNodeName="grpc-client", spec=_node(None, "client", (SERVICE,))
    )


def wait_for_call(egress: int, timeout: float = 30) -> str:
    """The first GetColor answer through the client's sidecar."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        options = [("grpc.default_authority", SERVICE)]
        try:
            with grpc.insecure_channel(f"127.0.0.1:{egress}", options=options) as channel:
                stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                    "/color.ColorService/GetColor"
                )
                return stub(b"", timeout=5).decode()
        except grpc.RpcError as error:
            last = f"{error.code().name}: {error.details()}"
            time.sleep(0.2)
    raise RuntimeError(f"no gRPC answer through the mesh within {timeout:.0f} s ({last})")


def run_grpc(
    port: int,
    endpoint: str | None,
    say: Callable[[str], None],
    stop_after: float | None = None,
    replicas: int = 1,
) -> int:
    def build(plane: ControlPlane, processes: Processes) -> None:
        ports = {color: free_port() for color in SERVERS}
        say(f"[2/4] creating mesh {MESH} through the App Mesh API")
        create_grpc_mesh(appmesh_client(plane.endpoint), ports)
        say("[3/4] starting 2 gRPC servers and 3 appmesh-proxy sidecars")
        for color in SERVERS:
            server = processes.start(f"color-{color}", [*APP, "serve", color, str(ports[color])])
            wait_for_port(ports[color], server, f"color-{color}")
            start_sidecar(processes, plane, f"color-{color}", MESH)
        client = start_sidecar(processes, plane, "grpc-client", MESH)
        say("[4/4] waiting for the first gRPC call to cross the mesh")
        first = wait_for_call(client["egress"])
        call = f"python -m appmesh_api.examples.grpc_app call 127.0.0.1:{client['egress']}"
        call += f" {SERVICE}"
        say(f"\nThe gRPC mesh is up (first answer: {first}). Try:\n")
        say(f"  {call}")
        say(f"  {call} --team blue")
        say(f"  curl -s http://127.0.0.1:{client['admin']}/stats | grep http2")
        say(f"  appmesh-local mesh describe {MESH} --endpoint {plane.endpoint}")
        say("\nEvery hop is HTTP/2 (the sidecars' downstream_rq_http2_total counts it). Press")
        say("Ctrl-C to stop everything.")

    return run_example_mesh(MESH, port, endpoint, say, build, stop_after, replicas)
