"""gRPC through a real mesh: grpcio apps, appmesh-proxy sidecars and the control plane.

A client app calls ``color.grpc.local`` through its sidecar's egress listener; a
virtual router with a ``grpc`` listener routes by service, method and metadata to the
``red`` and ``blue`` nodes (``grpc`` listeners, so every hop is HTTP/2), whose sidecars
hand the calls to grpcio servers. A gRPC retry policy on ``unavailable`` hides one
failing call. Nothing is mocked: the specs are App Mesh's, the traffic is grpcio's.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.conftest import make_client, new_account
from tests.mesh.harness import Mesh

MESH = "grpcmesh"
SERVICE = f"color.{MESH}.local"
GRPC_APP = str(Path(__file__).with_name("grpc_app.py"))
METHOD = "/color.ColorService/GetColor"


def grpc_node(port: int, name: str, backends: tuple[str, ...] = ()) -> dict:
    spec: dict = {
        "listeners": [{"portMapping": {"port": port, "protocol": "grpc"}}],
        "serviceDiscovery": {"dns": {"hostname": f"{name}.{MESH}.local"}},
    }
    if backends:
        spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    return spec


def grpc_route(target: str, metadata: list | None = None, retry: dict | None = None) -> dict:
    match: dict = {"serviceName": "color.ColorService", "methodName": "GetColor"}
    if metadata:
        match["metadata"] = metadata
    route: dict = {"match": match, "action": {"weightedTargets": [
        {"virtualNode": target, "weight": 1}]}}  # fmt: skip
    if retry:
        route["retryPolicy"] = retry
    return {"grpcRoute": route, "priority": 1 if metadata else 2}


@pytest.fixture(scope="module")
def grpc_mesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, MESH, tmp_path_factory.mktemp(MESH))
    try:
        appmesh.create_mesh(meshName=MESH)
        red = mesh.app("red", script=GRPC_APP)
        blue = mesh.app("blue", 1.0, script=GRPC_APP)  # its first call fails: UNAVAILABLE
        for name, port in (("red", red), ("blue", blue)):
            appmesh.create_virtual_node(
                meshName=MESH, virtualNodeName=name, spec=grpc_node(port, name)
            )
        appmesh.create_virtual_router(
            meshName=MESH,
            virtualRouterName="color",
            spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "grpc"}}]},
        )
        retry = {"grpcRetryEvents": ["unavailable"], "maxRetries": 2,
                 "perRetryTimeout": {"unit": "s", "value": 2}}  # fmt: skip
        team_blue = [{"name": "team", "match": {"exact": "blue"}}]
        routes = {"by-team": grpc_route("blue", team_blue, retry), "default": grpc_route("red")}
        for name, spec in routes.items():
            appmesh.create_route(
                meshName=MESH, virtualRouterName="color", routeName=name, spec=spec
            )
        appmesh.create_virtual_service(
            meshName=MESH,
            virtualServiceName=SERVICE,
            spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
        )
        client_port = mesh.app("client", script=GRPC_APP)
        appmesh.create_virtual_node(
            meshName=MESH,
            virtualNodeName="client",
            spec=grpc_node(client_port, "client", (SERVICE,)),
        )
        proxies = {name: mesh.proxy(name) for name in ("client", "red", "blue")}
        yield {"mesh": mesh, "proxies": proxies}
    finally:
        mesh.close()


def call(egress: int, team: str | None = None) -> bytes:
    """One unary call to color.grpc.local through the client's sidecar (explicit mode)."""
    options = [("grpc.default_authority", SERVICE)]
    with grpc.insecure_channel(f"127.0.0.1:{egress}", options=options) as channel:
        metadata = (("team", team),) if team else ()
        reply: bytes = channel.unary_unary(METHOD)(b"", timeout=10, metadata=metadata)
        return reply


def test_a_grpc_call_crosses_two_sidecars_over_http2(grpc_mesh):
    client, red = grpc_mesh["proxies"]["client"], grpc_mesh["proxies"]["red"]
    assert call(client.egress) == b"red"
    assert client.stat("http.egress.downstream_rq_http2_total") >= 1
    assert red.stat("http.ingress.downstream_rq_http2_total") >= 1
    assert red.stat("http.ingress.downstream_cx_http1_total") == 0


def test_metadata_routes_to_blue_and_the_retry_hides_its_unavailable(grpc_mesh):
    client = grpc_mesh["proxies"]["client"]
    assert call(client.egress, team="blue") == b"blue blue"  # blue's first call failed
    stats = client.admin_get("/stats")
    retried = [
        line for line in stats.splitlines() if "blue" in line and "upstream_rq_retry:" in line
    ]
    assert retried and int(retried[0].rsplit(" ", 1)[1]) == 1, retried


def test_an_unknown_method_is_unimplemented_not_a_protocol_error(grpc_mesh):
    client = grpc_mesh["proxies"]["client"]
    options = [("grpc.default_authority", SERVICE)]
    with (
        grpc.insecure_channel(f"127.0.0.1:{client.egress}", options=options) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        channel.unary_unary("/color.ColorService/Paint")(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
