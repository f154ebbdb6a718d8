"""A virtual gateway's sidecar: gateway routes, hostname matches, rewrites (reference §6)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import free_port, make_client, new_account
from tests.mesh.harness import Mesh, get


@pytest.fixture(scope="module")
def gateway_mesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, "gw", tmp_path_factory.mktemp("gw"))
    try:
        appmesh.create_mesh(meshName="gw")
        for color in ("red", "blue"):
            port = mesh.app(color)
            appmesh.create_virtual_node(
                meshName="gw",
                virtualNodeName=color,
                spec={
                    "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                    "serviceDiscovery": {"dns": {"hostname": f"{color}.gw.local"}},
                },
            )
            appmesh.create_virtual_service(
                meshName="gw",
                virtualServiceName=f"{color}.gw.local",
                spec={"provider": {"virtualNode": {"virtualNodeName": color}}},
            )
        gateway_port = (
            free_port()
        )  # a gateway listens on its listener's own port, as App Mesh's did
        appmesh.create_virtual_gateway(
            meshName="gw",
            virtualGatewayName="ingress",
            spec={
                "listeners": [
                    {
                        "portMapping": {"port": gateway_port, "protocol": "http"},
                        "healthCheck": {
                            "protocol": "http",
                            "path": "/ping",
                            "healthyThreshold": 2,
                            "unhealthyThreshold": 2,
                            "intervalMillis": 5000,
                            "timeoutMillis": 2000,
                        },
                    }
                ]
            },
        )

        def gateway_route(name: str, service: str, match: dict, rewrite: dict | None = None):
            action = {"target": {"virtualService": {"virtualServiceName": service}}}
            if rewrite:
                action["rewrite"] = rewrite
            appmesh.create_gateway_route(
                meshName="gw",
                virtualGatewayName="ingress",
                gatewayRouteName=name,
                spec={"httpRoute": {"match": match, "action": action}},
            )

        gateway_route("red", "red.gw.local", {"prefix": "/red/"})
        gateway_route("blue", "blue.gw.local", {"prefix": "/blue/"})
        gateway_route(
            "keep",
            "red.gw.local",
            {"prefix": "/keep/"},
            {"prefix": {"defaultPrefix": "DISABLED"}},
        )
        gateway_route(
            "maroon",
            "red.gw.local",
            {
                "prefix": "/maroon/",
                "queryParameters": [{"name": "fishes", "match": {"exact": "nemo"}}],
            },
            {"prefix": {"value": "/red/"}},
        )
        gateway_route(
            "by-host",
            "blue.gw.local",
            {"prefix": "/host/", "hostname": {"exact": "www.example.com"}},
        )
        proxies = {name: mesh.proxy(name) for name in ("red", "blue")}
        proxies["ingress"] = mesh.proxy("ingress", kind="virtualGateway")
        proxies["gateway_port"] = gateway_port
        yield proxies
    finally:
        mesh.close()


def through_gateway(proxies, path: str, host: str = "gateway.example.com"):
    """Clients (a load balancer, curl) reach a gateway on its listener's port."""
    return get(proxies["gateway_port"], path, host)


def test_gateway_routes_send_each_prefix_to_its_service_and_strip_the_prefix(gateway_mesh):
    status, _, body = through_gateway(gateway_mesh, "/red/headers")
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body).items()}
    assert seen["host"].startswith("red.gw.local")  # default hostname rewrite
    assert through_gateway(gateway_mesh, "/blue/color")[2] == "blue"


def test_default_prefix_rewrite_disabled_keeps_the_path(gateway_mesh):
    status, _, body = through_gateway(gateway_mesh, "/keep/color")
    assert (status, body) == (200, "red")  # the app answers any path with its colour


def test_prefix_rewrite_and_query_match(gateway_mesh):
    assert through_gateway(gateway_mesh, "/maroon/color?fishes=nemo")[2] == "red"
    assert through_gateway(gateway_mesh, "/maroon/color?fishes=dory")[0] == 404


def test_hostname_match(gateway_mesh):
    assert through_gateway(gateway_mesh, "/host/color", "www.example.com")[2] == "blue"
    assert through_gateway(gateway_mesh, "/host/color", "other.example.com")[0] == 404


def test_the_gateway_answers_its_listener_health_check_itself(gateway_mesh):
    """Envoy's health_check filter: the gateway replies 200 at the listener's healthCheck
    path without routing (no gateway route matches /ping, so routing would give 404)."""
    status, headers, body = get(gateway_mesh["gateway_port"], "/ping", "gateway.example.com")
    assert (status, body) == (200, "")
    assert headers.get("server") == "envoy"
    status, _, _ = get(gateway_mesh["gateway_port"], "/pong", "gateway.example.com")
    assert status == 404
