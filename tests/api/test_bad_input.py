"""Bad input of every kind: a BadRequestException that names the field, and nothing changed.

Most cases go through a boto3 client with ``parameter_validation=False`` (boto3
checks minima and types itself; the server must check everything else); the
ones boto3 cannot even serialize (malformed JSON, unknown fields) go over raw HTTP.
After each bad request the whole mesh is described again and must be identical:
same specs, same versions, same listings, same tags.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.helpers import (
    build_mesh,
    expect_error,
    gateway_route_spec,
    http_node_spec,
    http_route_spec,
    mesh_state,
    raw_request,
    router_spec,
)

MESH_ARN = "arn:aws:appmesh:us-east-1:{account}:mesh/demo"
HEALTH_CHECK = {
    "healthyThreshold": 2,
    "intervalMillis": 5000,
    "path": "/ping",
    "protocol": "http",
    "timeoutMillis": 2000,
    "unhealthyThreshold": 2,
}


@pytest.fixture
def loose(client_for, account):
    """The test's account, through a client that sends whatever it is given."""
    return client_for("appmesh", account=account, parameter_validation=False)


@pytest.fixture
def before(appmesh) -> dict[str, Any]:
    """The demo mesh plus a second node and a gRPC gateway; returns its full state."""
    build_mesh(appmesh)
    appmesh.create_virtual_node(meshName="demo", virtualNodeName="green", spec=http_node_spec())
    appmesh.create_virtual_gateway(
        meshName="demo",
        virtualGatewayName="grpc-gw",
        spec={"listeners": [{"portMapping": {"port": 9090, "protocol": "grpc"}}]},
    )
    return mesh_state(appmesh)


def node(listener: dict | None = None, **spec: Any) -> dict:
    """A node spec whose only listener is the default one merged with ``listener``."""
    base = http_node_spec()
    base["listeners"][0].update(listener or {})
    base.update(spec)
    return base


def port(value: Any) -> dict:
    return {"portMapping": {"port": value, "protocol": "http"}}


def update_node(spec: dict) -> tuple[str, dict]:
    return "update_virtual_node", {"meshName": "demo", "virtualNodeName": "blue", "spec": spec}


def update_route(spec: dict) -> tuple[str, dict]:
    return "update_route", {
        "meshName": "demo",
        "virtualRouterName": "router",
        "routeName": "route",
        "spec": spec,
    }


def route(**extra: Any) -> dict:
    """The demo route's spec with ``extra`` merged into its httpRoute."""
    spec = http_route_spec(("blue", 1))
    spec["httpRoute"].update(extra)
    return spec


def update_gateway_route(spec: dict, gateway: str = "gw") -> tuple[str, dict]:
    return "update_gateway_route", {
        "meshName": "demo",
        "virtualGatewayName": gateway,
        "gatewayRouteName": "gwr",
        "spec": spec,
    }


def gateway_route(match: dict | None = None, rewrite: dict | None = None) -> dict:
    spec = gateway_route_spec("color.local")
    spec["httpRoute"]["match"] = match or {"prefix": "/"}
    if rewrite is not None:
        spec["httpRoute"]["action"]["rewrite"] = rewrite
    return spec


def retry(**events: Any) -> dict:
    return {"maxRetries": 2, "perRetryTimeout": {"unit": "ms", "value": 100}, **events}


# (id, (operation, params), a field the message must name)
CASES = [
    # wrong types
    ("port-as-string", update_node(node(port("8080"))), "spec.listeners.1.member.portMapping.port"),
    ("weight-as-float", update_route(http_route_spec(("blue", 1.5))), "weightedTargets.1.member"),
    # oversized values
    (
        "name-256",
        ("create_virtual_node", {"meshName": "demo", "virtualNodeName": "n" * 256, "spec": {}}),
        "'virtualNodeName'",
    ),
    ("mesh-name-256", ("create_mesh", {"meshName": "m" * 256}), "'meshName'"),
    (
        "name-with-slash",
        ("create_virtual_node", {"meshName": "demo", "virtualNodeName": "a/b", "spec": {}}),
        "'virtualNodeName'",
    ),
    (
        "mesh-name-like-an-arn-path",
        ("create_mesh", {"meshName": "demo/virtualNode/blue"}),
        "'meshName'",
    ),
    (
        "header-name-51",
        update_route(route(match={"prefix": "/", "headers": [{"name": "h" * 51}]})),
        "spec.httpRoute.match.headers.1.member.name",
    ),
    (
        "tags-51-on-create",
        (
            "create_virtual_node",
            {
                "meshName": "demo",
                "virtualNodeName": "new",
                "spec": http_node_spec(),
                "tags": [{"key": f"k{i}", "value": "v"} for i in range(51)],
            },
        ),
        "'tags'",
    ),
    (
        "tag-key-129",
        (
            "tag_resource",
            {"resourceArn": MESH_ARN, "tags": [{"key": "k" * 129, "value": "v"}]},
        ),
        "tags.1.member.key",
    ),
    # out-of-range values
    ("port-0", update_node(node(port(0))), "spec.listeners.1.member.portMapping.port"),
    ("port-65536", update_node(node(port(65536))), "spec.listeners.1.member.portMapping.port"),
    (
        "weight-101",
        update_route(http_route_spec(("blue", 101))),
        "spec.httpRoute.action.weightedTargets.1.member.weight",
    ),
    ("priority-1001", update_route({**route(), "priority": 1001}), "spec.priority"),
    (
        "healthy-threshold-1",
        update_node(node({"healthCheck": {**HEALTH_CHECK, "healthyThreshold": 1}})),
        "spec.listeners.1.member.healthCheck.healthyThreshold",
    ),
    (
        "unhealthy-threshold-11",
        update_node(node({"healthCheck": {**HEALTH_CHECK, "unhealthyThreshold": 11}})),
        "spec.listeners.1.member.healthCheck.unhealthyThreshold",
    ),
    (
        "interval-too-short",
        update_node(node({"healthCheck": {**HEALTH_CHECK, "intervalMillis": 4999}})),
        "spec.listeners.1.member.healthCheck.intervalMillis",
    ),
    ("limit-101", ("list_virtual_nodes", {"meshName": "demo", "limit": 101}), "'limit'"),
    ("limit-0", ("list_virtual_nodes", {"meshName": "demo", "limit": 0}), "'limit'"),
    ("tags-limit-51", ("list_tags_for_resource", {"resourceArn": MESH_ARN, "limit": 51}), "limit"),
    # enums
    (
        "protocol-udp",
        update_node(node({"portMapping": {"port": 8080, "protocol": "udp"}})),
        "spec.listeners.1.member.portMapping.protocol",
    ),
    (
        "egress-filter",
        ("update_mesh", {"meshName": "demo", "spec": {"egressFilter": {"type": "BLOCK"}}}),
        "spec.egressFilter.type",
    ),
    (
        "http-method",
        update_route(route(match={"prefix": "/", "method": "FETCH"})),
        "spec.httpRoute.match.method",
    ),
    # unions
    (
        "provider-with-two-members",
        (
            "update_virtual_service",
            {
                "meshName": "demo",
                "virtualServiceName": "color.local",
                "spec": {
                    "provider": {
                        "virtualNode": {"virtualNodeName": "blue"},
                        "virtualRouter": {"virtualRouterName": "router"},
                    }
                },
            },
        ),
        "spec.provider",
    ),
    (
        "service-discovery-with-two-members",
        update_node(
            node(
                serviceDiscovery={
                    "dns": {"hostname": "a.local"},
                    "awsCloudMap": {"namespaceName": "ns", "serviceName": "s"},
                }
            )
        ),
        "spec.serviceDiscovery",
    ),
    # identifiers and tokens
    ("mesh-owner-short", ("describe_mesh", {"meshName": "demo", "meshOwner": "123"}), "meshOwner"),
    (
        "next-token-garbage",
        ("list_virtual_nodes", {"meshName": "demo", "nextToken": "garbage!"}),
        "nextToken",
    ),
    (
        "client-token-nonsense",
        ("update_mesh", {"meshName": "demo", "spec": {}, "clientToken": "not a token! " * 5}),
        "clientToken",
    ),
    (
        "client-token-37-chars",
        ("update_mesh", {"meshName": "demo", "spec": {}, "clientToken": "a" * 37}),
        "clientToken",
    ),
    # semantic rules
    (
        "missing-spec",
        ("update_virtual_node", {"meshName": "demo", "virtualNodeName": "blue"}),
        "spec",
    ),
    (
        "listener-without-service-discovery",
        update_node({"listeners": [port(8080)]}),
        "spec.serviceDiscovery",
    ),
    (
        "health-check-port",
        update_node(node({"healthCheck": {**HEALTH_CHECK, "port": 9999}})),
        "spec.listeners.1.member.healthCheck.port",
    ),
    (
        "pool-type-not-protocol",
        update_node(node({"connectionPool": {"tcp": {"maxConnections": 1}}})),
        "spec.listeners.1.member.connectionPool.tcp",
    ),
    (
        "route-type-not-listener-protocol",
        update_route(
            {"tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "blue", "weight": 1}]}}}
        ),
        "spec.tcpRoute",
    ),
    ("two-route-types", update_route({**route(), "http2Route": route()["httpRoute"]}), "spec"),
    (
        "weights-over-100",
        update_route(http_route_spec(("blue", 60), ("green", 60))),
        "spec.httpRoute.action.weightedTargets",
    ),
    (
        "eleven-targets",
        update_route(http_route_spec(*[("blue", 1)] * 11)),
        "spec.httpRoute.action.weightedTargets",
    ),
    (
        "tcp-retry-event",
        update_route(route(retryPolicy=retry(tcpRetryEvents=["server-error"]))),
        "spec.httpRoute.retryPolicy.tcpRetryEvents.1.member",
    ),
    (
        "http-retry-event",
        update_route(route(retryPolicy=retry(httpRetryEvents=["sometimes"]))),
        "spec.httpRoute.retryPolicy.httpRetryEvents.1.member",
    ),
    (
        "retry-without-events",
        update_route(route(retryPolicy=retry())),
        "spec.httpRoute.retryPolicy",
    ),
    (
        "prefix-without-slash",
        update_route(route(match={"prefix": "api"})),
        "spec.httpRoute.match.prefix",
    ),
    (
        "prefix-and-path",
        update_route(route(match={"prefix": "/", "path": {"exact": "/a"}})),
        "spec.httpRoute.match",
    ),
    (
        "match-port-not-a-listener",
        update_route(route(match={"prefix": "/", "port": 9999})),
        "spec.httpRoute.match.port",
    ),
    (
        "duplicate-router-ports",
        (
            "update_virtual_router",
            {"meshName": "demo", "virtualRouterName": "router", "spec": router_spec(8080, 8080)},
        ),
        "spec.listeners.2.member.portMapping.port",
    ),
    (
        "gateway-rewrite-without-slashes",
        update_gateway_route(gateway_route({"prefix": "/a/"}, {"prefix": {"value": "b"}})),
        "spec.httpRoute.action.rewrite.prefix.value",
    ),
    (
        "gateway-rewrite-default-and-value",
        update_gateway_route(
            gateway_route(
                {"prefix": "/a/"}, {"prefix": {"defaultPrefix": "DISABLED", "value": "/b/"}}
            )
        ),
        "spec.httpRoute.action.rewrite.prefix",
    ),
    (
        "gateway-prefix-rewrite-on-path-match",
        update_gateway_route(
            gateway_route({"path": {"exact": "/a"}}, {"prefix": {"value": "/b/"}})
        ),
        "spec.httpRoute.action.rewrite.prefix",
    ),
    (
        "gateway-hostname-exact-and-suffix",
        update_gateway_route(
            gateway_route({"hostname": {"exact": "a.example.com", "suffix": "example.com"}})
        ),
        "spec.httpRoute.match.hostname",
    ),
    (
        "reserved-prefix-aws-appmesh",
        update_gateway_route(gateway_route({"prefix": "/aws-appmesh/stats"})),
        "spec.httpRoute.match.prefix",
    ),
    (
        "reserved-prefix-aws-app-mesh",
        update_gateway_route(gateway_route({"prefix": "/aws-app-mesh"})),
        "spec.httpRoute.match.prefix",
    ),
    (
        "reserved-grpc-service",
        (
            "create_gateway_route",
            {
                "meshName": "demo",
                "virtualGatewayName": "grpc-gw",
                "gatewayRouteName": "g",
                "spec": {
                    "grpcRoute": {
                        "match": {"serviceName": "aws.appmesh"},
                        "action": {
                            "target": {"virtualService": {"virtualServiceName": "color.local"}}
                        },
                    }
                },
            },
        ),
        "spec.grpcRoute.match.serviceName",
    ),
    (
        "gateway-route-type-not-listener-protocol",
        (
            "create_gateway_route",
            {
                "meshName": "demo",
                "virtualGatewayName": "grpc-gw",
                "gatewayRouteName": "g",
                "spec": gateway_route(),
            },
        ),
        "spec.httpRoute",
    ),
]

BAD_ARNS = [
    "not-an-arn",
    "arn:aws:appmesh:us-east-1:1234:mesh/demo",
    "arn:aws:s3:::bucket",
    "arn:aws:appmesh:us-east-1:{account}:mesh/",
    "arn:aws:appmesh:us-east-1:{account}:mesh/demo/virtualNode",
    "arn:aws:appmesh:us-east-1:{account}:mesh/demo/virtualNode/blue/extra",
    "arn:aws:appmesh:us-east-1:{account}:mesh/demo/virtualRouter/router/gatewayRoute/x",
    "arn:aws:appmesh:us-east-1:{account}:mesh/demo/route/route",
    "arn:aws:appmesh:us-east-1:{account}:mesh/demo//virtualNode/blue",
]


def fill(value: Any, account: str) -> Any:
    """Put the test's account into every ``{account}`` placeholder."""
    return json.loads(json.dumps(value).replace("{account}", account))


@pytest.mark.parametrize(
    ("operation", "params", "field"), [c[1] + (c[2],) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_rejected_naming_the_field(
    appmesh, loose, account, before, operation, params, field
):
    message = expect_error(
        "BadRequestException", 400, getattr(loose, operation), **fill(params, account)
    )
    assert field in message, message
    assert mesh_state(appmesh) == before


@pytest.mark.parametrize("arn", BAD_ARNS)
@pytest.mark.parametrize("operation", ["tag_resource", "untag_resource", "list_tags_for_resource"])
def test_bad_resource_arns_for_tag_operations(appmesh, loose, account, before, operation, arn):
    params: dict[str, Any] = {"resourceArn": arn.replace("{account}", account)}
    if operation == "tag_resource":
        params["tags"] = [{"key": "k", "value": "v"}]
    elif operation == "untag_resource":
        params["tagKeys"] = ["team"]
    message = expect_error("BadRequestException", 400, getattr(loose, operation), **params)
    assert "resourceArn" in message
    assert mesh_state(appmesh) == before


RAW_BODIES = [
    ("malformed", b'{"spec": {', "not valid JSON"),
    ("not-utf8", b"\xff\xfe{}", "not valid JSON"),
    ("huge-integer", b'{"spec": {"port": 1' + b"0" * 5000 + b"}}", "not valid JSON"),
    ("list", json.dumps([{"spec": {}}]), "must be a JSON object"),
    ("string", json.dumps("spec"), "must be a JSON object"),
    ("unknown-top-level", json.dumps({"spec": http_node_spec(), "colour": "blue"}), "'colour'"),
    (
        "unknown-nested",
        json.dumps({"spec": node({"colour": "blue"})}),
        "'colour' at 'spec.listeners.1.member'",
    ),
    (
        "unknown-in-spec",
        json.dumps({"spec": {**http_node_spec(), "listener": []}}),
        "'listener' at 'spec'",
    ),
    ("string-port", json.dumps({"spec": node(port("8080"))}), "portMapping.port"),
    ("bool-port", json.dumps({"spec": node(port(True))}), "portMapping.port"),
    ("null-spec", json.dumps({"spec": None}), "'spec'"),
    ("list-spec", json.dumps({"spec": [1, 2]}), "'spec'"),
    ("deeply-nested", b'{"spec": ' * 100_000 + b"{}" + b"}" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in RAW_BODIES], ids=[c[0] for c in RAW_BODIES]
)
def test_raw_bodies_are_rejected(server, appmesh, account, before, body, expected):
    response = raw_request(
        server.endpoint,
        "PUT",
        "/v20190125/meshes/demo/virtualNodes/blue",
        body=body,
        account=account,
    )
    assert response.status == 400, response.body
    assert response.headers["x-amzn-errortype"] == "BadRequestException"
    assert expected in response.json()["message"]
    assert mesh_state(appmesh) == before


def test_a_create_with_a_bad_body_creates_nothing(server, appmesh, account, before):
    body = json.dumps({"virtualNodeName": "new", "spec": node({"colour": 1})})
    response = raw_request(
        server.endpoint, "PUT", "/v20190125/meshes/demo/virtualNodes", body=body, account=account
    )
    assert response.status == 400
    assert mesh_state(appmesh) == before


def test_all_violations_are_named_at_once(loose):
    spec = {
        "listeners": [{"portMapping": {"port": 0, "protocol": "udp"}}],
        "serviceDiscovery": {"dns": {"hostname": "a.local"}},
    }
    loose.create_mesh(meshName="m")
    message = expect_error(
        "BadRequestException",
        400,
        loose.create_virtual_node,
        meshName="m",
        virtualNodeName="n",
        spec=spec,
    )
    assert message.startswith("2 validation errors detected: ")
    assert "portMapping.port" in message and "portMapping.protocol" in message


def test_a_second_router_listener_needs_port_matches_on_every_route(appmesh, before):
    message = expect_error(
        "BadRequestException",
        400,
        appmesh.update_virtual_router,
        meshName="demo",
        virtualRouterName="router",
        spec=router_spec(8080, 8081),
    )
    assert message == (
        "All Routes for this Virtual Router must define a port match before adding multiple "
        "listeners to this Virtual Router. 1 Route(s) are missing port. "
        "Listing up to 5 route names: [route]"
    )
    assert mesh_state(appmesh) == before
    appmesh.update_route(**update_route(route(match={"prefix": "/", "port": 8080}))[1])
    appmesh.update_virtual_router(
        meshName="demo", virtualRouterName="router", spec=router_spec(8080, 8081)
    )


def test_a_token_on_a_rejected_request_is_not_used_up(appmesh, loose):
    """A request that failed validation recorded nothing, so its token can be reused."""
    loose.create_mesh(meshName="m")
    expect_error(
        "BadRequestException",
        400,
        loose.create_virtual_node,
        meshName="m",
        virtualNodeName="n",
        spec=node(port(0)),
        clientToken="token-1",
    )
    created = appmesh.create_virtual_node(
        meshName="m", virtualNodeName="n", spec=http_node_spec(), clientToken="token-1"
    )
    assert created["virtualNode"]["metadata"]["version"] == 1


def test_the_server_still_answers_after_bad_input(server, appmesh, loose):
    for body in (b"{", b"[]", b"\x00" * 100, b'{"spec": ' * 1000):
        raw_request(server.endpoint, "PUT", "/v20190125/meshes/x/virtualNodes/y", body=body)
    assert server.process.poll() is None
    assert appmesh.list_meshes()["meshes"] == []
    health = raw_request(server.endpoint, "GET", "/_appmesh/health")
    assert health.status == 200
