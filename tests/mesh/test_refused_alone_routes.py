"""A route configuration that does not compile, and a listener that cannot bind, are each
refused on their own; the sidecar goes LIVE and serves the rest.

The front's ingress port is taken before its sidecar starts (another process holds it):
Envoy fails that one listener with "cannot bind" and ``listener_create_failure``, NACKs
LDS with the reason and serves its egress listener. Then a route with a path regex RE2
does not take (App Mesh does not compile regexes; Envoy does) is added to the router the
front calls: Envoy NACKs that RDS resource and keeps serving its last accepted version.
"""

from __future__ import annotations

import socket

import pytest

from envoy_bootstrap.envoy_types import LISTENER, ROUTE_CONFIGURATION
from tests.conftest import make_client, new_account
from tests.mesh import tls_helpers
from tests.mesh.harness import Mesh, get, wait_for
from tests.signing import proxies_of

MESH = "alone-routes"
SERVICE = f"color.{MESH}.local"


def rejected(server, account: str, kind: str) -> dict | None:
    """What ``/_appmesh/proxies`` says the front NACKed of type ``kind``, if anything."""
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/{MESH}/virtualNode/front"
    found = [p for p in proxies_of(server.endpoint, account) if p["nodeId"] == arn]
    return found[0]["rejected"].get(kind) if found else None


@pytest.fixture(scope="module")
def front(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, MESH, tmp_path_factory.mktemp(MESH))
    holder = socket.socket()
    try:
        appmesh.create_mesh(meshName=MESH)
        blue = tls_helpers.node_spec(mesh.app("blue"), f"blue.{MESH}.local")
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="blue", spec=blue)
        listener = {"portMapping": {"port": 8080, "protocol": "http"}}
        appmesh.create_virtual_router(
            meshName=MESH, virtualRouterName="color", spec={"listeners": [listener]}
        )
        action = {"weightedTargets": [{"virtualNode": "blue", "weight": 1}]}
        appmesh.create_route(
            meshName=MESH,
            virtualRouterName="color",
            routeName="main",
            spec={"httpRoute": {"match": {"prefix": "/"}, "action": action}},
        )
        provider = {"virtualRouter": {"virtualRouterName": "color"}}
        appmesh.create_virtual_service(
            meshName=MESH, virtualServiceName=SERVICE, spec={"provider": provider}
        )
        spec = tls_helpers.node_spec(mesh.app("front"), f"front.{MESH}.local")
        spec["backends"] = [{"virtualService": {"virtualServiceName": SERVICE}}]
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="front", spec=spec)
        mesh.proxy("blue")
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        proxy = mesh.proxy("front", env={"APPMESH_INGRESS_PORT": str(taken)})  # LIVE, or raises
        yield appmesh, mesh, proxy, taken
    finally:
        holder.close()
        mesh.close()


def test_the_listener_that_cannot_bind_is_nacked_and_the_egress_serves(server, front) -> None:
    _, mesh, proxy, taken = front
    status, _, body = get(proxy.egress, "/", f"{SERVICE}:8080")
    assert status == 200 and "blue" in body
    assert proxy.stat("listener_manager.listener_create_failure") >= 1
    reason = wait_for(lambda: rejected(server, mesh.account, LISTENER))
    assert reason and f"cannot bind '127.0.0.1:{taken}'" in reason["message"], reason


def test_a_route_that_does_not_compile_keeps_the_last_accepted_routes(server, front) -> None:
    appmesh, mesh, proxy, _ = front
    action = {"weightedTargets": [{"virtualNode": "blue", "weight": 1}]}
    appmesh.create_route(
        meshName=MESH,
        virtualRouterName="color",
        routeName="bad",
        spec={"priority": 0, "httpRoute": {"match": {"path": {"regex": "(unclosed"}},
                                           "action": action}},
    )  # fmt: skip
    reason = wait_for(lambda: rejected(server, mesh.account, ROUTE_CONFIGURATION))
    assert reason and "regex" in reason["message"], reason
    status, _, body = get(proxy.egress, "/", f"{SERVICE}:8080")
    assert status == 200 and "blue" in body
    appmesh.delete_route(meshName=MESH, virtualRouterName="color", routeName="bad")
    assert wait_for(lambda: rejected(server, mesh.account, ROUTE_CONFIGURATION) is None)
