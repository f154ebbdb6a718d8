"""One test per semantic rule in appmesh_api.rules: the valid case passes, the invalid
case raises BadRequestException naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appmesh_api import rules
from appmesh_api.errors import BadRequestException

HEALTH = {
    "healthyThreshold": 2,
    "intervalMillis": 5000,
    "protocol": "http",
    "path": "/ping",
    "timeoutMillis": 2000,
    "unhealthyThreshold": 2,
}
DNS = {"dns": {"hostname": "app.local"}}
ACM_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
PCA_ARN = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/abc"


def rejects(fn: Any, *args: Any, field: str) -> str:
    """Call ``fn`` expecting BadRequestException whose message names ``field``."""
    with pytest.raises(BadRequestException) as caught:
        fn(*args)
    assert field in caught.value.message, caught.value.message
    return caught.value.message


def listener(port: int = 8080, protocol: str = "http", **extra: Any) -> dict:
    return {"portMapping": {"port": port, "protocol": protocol}, **extra}


def node(*listeners: dict, **extra: Any) -> dict:
    spec: dict = {"listeners": list(listeners) or [listener()], "serviceDiscovery": DNS}
    spec.update(extra)
    return spec


def router(*listeners: dict) -> dict:
    return {"listeners": list(listeners) or [listener()]}


def targets(*weights: int) -> list[dict]:
    return [{"virtualNode": f"n{i}", "weight": w} for i, w in enumerate(weights)]


def http_route(kind: str = "httpRoute", **match: Any) -> dict:
    match = match or {"prefix": "/"}
    return {kind: {"match": match, "action": {"weightedTargets": targets(100)}}}


def grpc_route(**match: Any) -> dict:
    return {"grpcRoute": {"match": match, "action": {"weightedTargets": targets(100)}}}


def tcp_route(**match: Any) -> dict:
    body: dict = {"action": {"weightedTargets": targets(100)}}
    if match:
        body["match"] = match
    return {"tcpRoute": body}


def gw_route(kind: str = "httpRoute", rewrite: dict | None = None, **match: Any) -> dict:
    action: dict = {"target": {"virtualService": {"virtualServiceName": "svc"}}}
    if rewrite is not None:
        action["rewrite"] = rewrite
    return {kind: {"match": match or {"prefix": "/"}, "action": action}}


def gateway(*listeners: dict) -> dict:
    return {"listeners": list(listeners) or [listener()]}


def check_route(spec: dict, router_spec: dict | None = None) -> None:
    rules.check_route_spec(spec, router_spec or router(), "vr")


def check_gw_route(spec: dict, gateway_spec: dict | None = None) -> None:
    rules.check_gateway_route_spec(spec, gateway_spec or gateway(), "vg")


# --------------------------------------------------------------------------- mesh, service


def test_mesh_and_service_specs_have_no_extra_rules() -> None:
    rules.check_mesh_spec({"egressFilter": {"type": "ALLOW_ALL"}})
    rules.check_mesh_spec({})
    rules.check_virtual_service_spec({"provider": {"virtualNode": {"virtualNodeName": "n"}}})
    rules.check_virtual_service_spec({})


# --------------------------------------------------------------------------- virtual node


def test_node_listener_requires_service_discovery() -> None:
    rules.check_virtual_node_spec(node())
    rules.check_virtual_node_spec({"backends": []})
    rejects(rules.check_virtual_node_spec, {"listeners": [listener()]}, field="serviceDiscovery")


def test_node_duplicate_listener_ports() -> None:
    rules.check_virtual_node_spec(node(listener(8080), listener(8081, "grpc")))
    message = rejects(
        rules.check_virtual_node_spec,
        node(listener(8080), listener(8080, "tcp")),
        field="spec.listeners.2.member.portMapping.port",
    )
    assert "8080" in message


def test_node_health_check_port_must_equal_listener_port() -> None:
    rules.check_virtual_node_spec(node(listener(healthCheck={**HEALTH, "port": 8080})))
    rejects(
        rules.check_virtual_node_spec,
        node(listener(healthCheck={**HEALTH, "port": 9090})),
        field="spec.listeners.1.member.healthCheck.port",
    )


def test_node_http_health_check_needs_path_starting_with_slash() -> None:
    tcp_check = {**HEALTH, "protocol": "tcp"}
    del tcp_check["path"]
    rules.check_virtual_node_spec(node(listener(healthCheck=tcp_check)))
    no_path = {k: v for k, v in HEALTH.items() if k != "path"}
    field = "spec.listeners.1.member.healthCheck.path"
    rejects(rules.check_virtual_node_spec, node(listener(healthCheck=no_path)), field=field)
    bad = {**HEALTH, "path": "ping"}
    rejects(rules.check_virtual_node_spec, node(listener(healthCheck=bad)), field=field)


@pytest.mark.parametrize(
    ("protocol", "pool"),
    [
        ("tcp", {"tcp": {"maxConnections": 1}}),
        ("http", {"http": {"maxConnections": 1, "maxPendingRequests": 5}}),
        ("http2", {"http2": {"maxRequests": 1}}),
        ("grpc", {"grpc": {"maxRequests": 1}}),
    ],
)
def test_node_connection_pool_kind_must_equal_protocol(protocol: str, pool: dict) -> None:
    rules.check_virtual_node_spec(node(listener(protocol=protocol, connectionPool=pool)))
    other = "grpc" if protocol != "grpc" else "http"
    rejects(
        rules.check_virtual_node_spec,
        node(listener(protocol=other, connectionPool=pool)),
        field=f"spec.listeners.1.member.connectionPool.{protocol}",
    )


def test_node_timeout_kind_must_equal_protocol() -> None:
    timeout = {"http": {"perRequest": {"unit": "s", "value": 5}}}
    rules.check_virtual_node_spec(node(listener(timeout=timeout)))
    rejects(
        rules.check_virtual_node_spec,
        node(listener(protocol="grpc", timeout=timeout)),
        field="spec.listeners.1.member.timeout.http",
    )


def test_durations_need_unit_and_value() -> None:
    field = "spec.listeners.1.member.timeout.tcp.idle"
    rules.check_virtual_node_spec(
        node(listener(protocol="tcp", timeout={"tcp": {"idle": {"unit": "ms", "value": 0}}}))
    )
    half = listener(protocol="tcp", timeout={"tcp": {"idle": {"value": 5}}})
    rejects(rules.check_virtual_node_spec, node(half), field=field)
    outlier = {
        "baseEjectionDuration": {"unit": "s"},
        "interval": {"unit": "s", "value": 10},
        "maxEjectionPercent": 10,
        "maxServerErrors": 5,
    }
    rejects(
        rules.check_virtual_node_spec,
        node(listener(outlierDetection=outlier)),
        field="spec.listeners.1.member.outlierDetection.baseEjectionDuration",
    )


def test_node_duplicate_backends() -> None:
    backend = {"virtualService": {"virtualServiceName": "a.local"}}
    other = {"virtualService": {"virtualServiceName": "b.local"}}
    rules.check_virtual_node_spec({"backends": [backend, other]})
    rejects(
        rules.check_virtual_node_spec,
        {"backends": [backend, copy.deepcopy(backend)]},
        field="spec.backends.2.member.virtualService.virtualServiceName",
    )


def test_node_empty_names_rejected() -> None:
    rejects(
        rules.check_virtual_node_spec,
        {"backends": [{"virtualService": {"virtualServiceName": ""}}]},
        field="spec.backends.1.member.virtualService.virtualServiceName",
    )
    rejects(
        rules.check_virtual_node_spec,
        node(serviceDiscovery={"dns": {"hostname": ""}}),
        field="spec.serviceDiscovery.dns.hostname",
    )


def test_listener_tls_certificate_and_validation_sanity() -> None:
    good = {
        "mode": "STRICT",
        "certificate": {"acm": {"certificateArn": ACM_ARN}},
        "validation": {
            "trust": {"file": {"certificateChain": "/ca.pem"}},
            "subjectAlternativeNames": {"match": {"exact": ["a.local"]}},
        },
    }
    rules.check_virtual_node_spec(node(listener(tls=good)))
    bad_arn = {**good, "certificate": {"acm": {"certificateArn": "not-an-arn"}}}
    rejects(
        rules.check_virtual_node_spec,
        node(listener(tls=bad_arn)),
        field="spec.listeners.1.member.tls.certificate.acm.certificateArn",
    )
    no_sans = copy.deepcopy(good)
    no_sans["validation"]["subjectAlternativeNames"]["match"]["exact"] = []
    rejects(
        rules.check_virtual_node_spec,
        node(listener(tls=no_sans)),
        field="spec.listeners.1.member.tls.validation.subjectAlternativeNames.match.exact",
    )
    empty_sds = {**good, "certificate": {"sds": {"secretName": ""}}}
    rejects(
        rules.check_virtual_node_spec,
        node(listener(tls=empty_sds)),
        field="spec.listeners.1.member.tls.certificate.sds.secretName",
    )


def test_client_policy_ports_unique_and_trust_arns_valid() -> None:
    def policy(ports: list[int], arn: str = PCA_ARN) -> dict:
        trust = {"acm": {"certificateAuthorityArns": [arn]}}
        return {"clientPolicy": {"tls": {"ports": ports, "validation": {"trust": trust}}}}

    rules.check_virtual_node_spec({"backendDefaults": policy([443, 8443])})
    rejects(
        rules.check_virtual_node_spec,
        {"backendDefaults": policy([443, 443])},
        field="spec.backendDefaults.clientPolicy.tls.ports",
    )
    rejects(
        rules.check_virtual_node_spec,
        {"backendDefaults": policy([443], arn="ca")},
        field="spec.backendDefaults.clientPolicy.tls.validation.trust.acm"
        ".certificateAuthorityArns.1.member",
    )
    backend = {"virtualService": {"virtualServiceName": "a", **policy([80, 80])}}
    rejects(
        rules.check_virtual_node_spec,
        {"backends": [backend]},
        field="spec.backends.1.member.virtualService.clientPolicy.tls.ports",
    )


def test_json_log_format_keys_unique_and_present() -> None:
    def logging(entries: list[dict]) -> dict:
        return {"accessLog": {"file": {"path": "/dev/stdout", "format": {"json": entries}}}}

    entry = {"key": "status", "value": "%RESPONSE_CODE%"}
    rules.check_virtual_node_spec({"logging": logging([entry])})
    field = "spec.logging.accessLog.file.format.json"
    rejects(rules.check_virtual_node_spec, {"logging": logging([])}, field=field)
    rejects(rules.check_virtual_node_spec, {"logging": logging([entry, entry])}, field=field)


# --------------------------------------------------------------------------- router, gateway


def test_router_duplicate_listener_ports() -> None:
    rules.check_virtual_router_spec(router(listener(80), listener(81)))
    rules.check_virtual_router_spec({})
    rejects(
        rules.check_virtual_router_spec,
        router(listener(80), listener(80, "grpc")),
        field="spec.listeners.2.member.portMapping.port",
    )


def test_gateway_needs_listener_and_unique_ports() -> None:
    rules.check_virtual_gateway_spec(gateway(listener(80), listener(81, "grpc")))
    rejects(rules.check_virtual_gateway_spec, {"listeners": []}, field="spec.listeners")
    rejects(
        rules.check_virtual_gateway_spec,
        gateway(listener(80), listener(80)),
        field="spec.listeners.2.member.portMapping.port",
    )


def test_gateway_health_check_and_pool_match_listener() -> None:
    good = listener(
        healthCheck={**HEALTH, "port": 8080},
        connectionPool={"http": {"maxConnections": 10}},
    )
    rules.check_virtual_gateway_spec(gateway(good))
    bad_port = listener(healthCheck={**HEALTH, "port": 1})
    rejects(
        rules.check_virtual_gateway_spec,
        gateway(bad_port),
        field="spec.listeners.1.member.healthCheck.port",
    )
    bad_pool = listener(protocol="grpc", connectionPool={"http2": {"maxRequests": 1}})
    rejects(
        rules.check_virtual_gateway_spec,
        gateway(bad_pool),
        field="spec.listeners.1.member.connectionPool.http2",
    )


# --------------------------------------------------------------------------- routes


def test_route_needs_exactly_one_kind() -> None:
    check_route(http_route())
    rejects(check_route, {"priority": 1}, field="spec")
    both = {**http_route(), **tcp_route()}
    rejects(check_route, both, field="spec")


@pytest.mark.parametrize(
    ("spec", "protocol"),
    [
        (http_route(), "http"),
        (http_route("http2Route"), "http2"),
        (grpc_route(serviceName="svc"), "grpc"),
        (tcp_route(), "tcp"),
    ],
)
def test_route_kind_must_match_listener_protocol(spec: dict, protocol: str) -> None:
    check_route(spec, router(listener(protocol=protocol)))
    other = "tcp" if protocol != "tcp" else "http"
    kind = next(iter(spec))
    message = rejects(check_route, spec, router(listener(protocol=other)), field=f"spec.{kind}")
    assert protocol in message and other in message


def test_route_listener_chosen_by_port() -> None:
    two = router(listener(80, "http"), listener(90, "grpc"))
    check_route(http_route(prefix="/", port=80), two)
    check_route(grpc_route(port=90), two)
    rejects(check_route, http_route(prefix="/", port=90), two, field="spec.httpRoute")


def test_route_port_must_name_a_listener() -> None:
    check_route(http_route(prefix="/", port=8080))
    rejects(check_route, http_route(prefix="/", port=9999), field="spec.httpRoute.match.port")


def test_route_needs_port_when_router_has_several_listeners() -> None:
    two = router(listener(80), listener(81))
    check_route(http_route(prefix="/", port=81), two)
    rejects(check_route, http_route(), two, field="spec.httpRoute.match.port")
    rejects(
        check_route,
        tcp_route(),
        router(listener(1, "tcp"), listener(2, "tcp")),
        field="spec.tcpRoute.match.port",
    )


def test_route_without_router_listeners_accepts_any_kind() -> None:
    rules.check_route_spec(grpc_route(), {}, "vr")


def test_http_match_at_most_one_of_prefix_or_path() -> None:
    check_route(http_route(path={"exact": "/a"}))
    check_route(http_route(path={"regex": "^/a.*"}))
    both = http_route(prefix="/", path={"exact": "/a"})
    rejects(check_route, both, field="spec.httpRoute.match")
    check_route(http_route(method="GET"))  # neither: routes as prefix "/" (CDK relies on it)


def test_http_path_exact_xor_regex() -> None:
    spec = http_route(path={"exact": "/a", "regex": "/a"})
    rejects(check_route, spec, field="spec.httpRoute.match.path")
    rejects(check_route, http_route(path={}), field="spec.httpRoute.match.path")


def test_prefix_and_exact_path_start_with_slash() -> None:
    rejects(check_route, http_route(prefix="api"), field="spec.httpRoute.match.prefix")
    spec = http_route("http2Route", path={"exact": "a"})
    rejects(check_route, spec, router(listener(protocol="http2")), field="match.path.exact")


def test_header_range_end_after_start() -> None:
    def header(start: int, end: int) -> list[dict]:
        return [{"name": "x-v", "match": {"range": {"start": start, "end": end}}}]

    check_route(http_route(prefix="/", headers=header(1, 2)))
    rejects(
        check_route,
        http_route(prefix="/", headers=header(5, 5)),
        field="spec.httpRoute.match.headers.1.member.match.range",
    )


def test_query_parameter_name_not_empty() -> None:
    check_route(http_route(prefix="/", queryParameters=[{"name": "v", "match": {"exact": "1"}}]))
    rejects(
        check_route,
        http_route(prefix="/", queryParameters=[{"name": ""}]),
        field="spec.httpRoute.match.queryParameters.1.member.name",
    )


def test_scheme_only_on_http2_routes() -> None:
    check_route(http_route("http2Route", prefix="/", scheme="https"), router(listener(80, "http2")))
    rejects(check_route, http_route(prefix="/", scheme="https"), field="httpRoute.match.scheme")


def test_grpc_method_requires_service() -> None:
    grpc = router(listener(protocol="grpc"))
    check_route(grpc_route(serviceName="pkg.Svc", methodName="Get"), grpc)
    check_route(grpc_route(), grpc)
    rejects(check_route, grpc_route(methodName="Get"), grpc, field="grpcRoute.match.methodName")
    rejects(check_route, grpc_route(serviceName=""), grpc, field="grpcRoute.match.serviceName")


def test_grpc_metadata_range() -> None:
    grpc = router(listener(protocol="grpc"))
    metadata = [{"name": "v", "match": {"range": {"start": 10, "end": 1}}}]
    rejects(
        check_route,
        grpc_route(metadata=metadata),
        grpc,
        field="spec.grpcRoute.match.metadata.1.member.match.range",
    )


def test_weighted_targets_total_at_most_100() -> None:
    def with_targets(*weights: int) -> dict:
        spec = http_route()
        spec["httpRoute"]["action"]["weightedTargets"] = targets(*weights)
        return spec

    check_route(with_targets(50, 50))
    check_route(with_targets(1, 0))
    check_route(with_targets(3, 7))
    field = "spec.httpRoute.action.weightedTargets"
    assert "101" in rejects(check_route, with_targets(60, 41), field=field)
    rejects(check_route, with_targets(0, 0), field=field)


def test_weighted_targets_no_duplicate_node_and_port() -> None:
    spec = http_route()
    same = {"virtualNode": "a", "weight": 10}
    spec["httpRoute"]["action"]["weightedTargets"] = [same, {**same, "port": 81}]
    check_route(spec)
    spec["httpRoute"]["action"]["weightedTargets"] = [same, dict(same)]
    rejects(check_route, spec, field="spec.httpRoute.action.weightedTargets.2.member.virtualNode")


def test_retry_policy_needs_an_event() -> None:
    timeout = {"unit": "s", "value": 1}
    spec = http_route()
    spec["httpRoute"]["retryPolicy"] = {"maxRetries": 2, "perRetryTimeout": timeout}
    rejects(check_route, spec, field="spec.httpRoute.retryPolicy")
    spec["httpRoute"]["retryPolicy"]["tcpRetryEvents"] = ["connection-error"]
    check_route(spec)
    grpc = grpc_route()
    grpc["grpcRoute"]["retryPolicy"] = {
        "maxRetries": 0,
        "perRetryTimeout": timeout,
        "grpcRetryEvents": ["unavailable"],
    }
    check_route(grpc, router(listener(protocol="grpc")))


def test_http_retry_event_values() -> None:
    spec = http_route()
    spec["httpRoute"]["retryPolicy"] = {
        "maxRetries": 1,
        "perRetryTimeout": {"unit": "ms", "value": 100},
        "httpRetryEvents": ["server-error", "gateway-error", "client-error", "stream-error"],
    }
    check_route(spec)
    spec["httpRoute"]["retryPolicy"]["httpRetryEvents"] = ["server-error", "5xx"]
    message = rejects(check_route, spec, field="retryPolicy.httpRetryEvents.2.member")
    assert "5xx" in message


def test_route_timeout_durations() -> None:
    spec = http_route()
    spec["httpRoute"]["timeout"] = {"perRequest": {"unit": "s", "value": 30}}
    check_route(spec)
    spec["httpRoute"]["timeout"] = {"idle": {"unit": "s"}}
    rejects(check_route, spec, field="spec.httpRoute.timeout.idle")


# --------------------------------------------------------------------------- listener updates


def test_router_listeners_against_routes_aws_message() -> None:
    routes = {"conor-grpc": grpc_route(), "ok": grpc_route(port=80)}
    rules.check_router_listeners_against_routes(router(listener(80, "grpc")), routes)
    two = router(listener(80, "grpc"), listener(81, "grpc"))
    with pytest.raises(BadRequestException) as caught:
        rules.check_router_listeners_against_routes(two, routes)
    assert caught.value.message == (
        "All Routes for this Virtual Router must define a port match before adding multiple "
        "listeners to this Virtual Router. 1 Route(s) are missing port. "
        "Listing up to 5 route names: [conor-grpc]"
    )


def test_router_listeners_lists_at_most_five_names() -> None:
    routes = {f"r{i}": http_route() for i in range(7)}
    with pytest.raises(BadRequestException) as caught:
        rules.check_router_listeners_against_routes(router(listener(1), listener(2)), routes)
    assert "7 Route(s) are missing port" in caught.value.message
    assert caught.value.message.endswith("[r0, r1, r2, r3, r4]")


def test_router_listener_change_must_keep_routes_served() -> None:
    routes = {"web": http_route(prefix="/", port=80)}
    rules.check_router_listeners_against_routes(router(listener(80)), routes)
    rejects(
        rules.check_router_listeners_against_routes,
        router(listener(90)),
        routes,
        field="Route web: spec.httpRoute.match.port",
    )
    rejects(
        rules.check_router_listeners_against_routes,
        router(listener(80, "grpc")),
        routes,
        field="Route web: spec.httpRoute",
    )


def test_gateway_listeners_against_routes() -> None:
    routes = {"gr": gw_route()}
    rules.check_gateway_listeners_against_routes(gateway(listener(80)), routes)
    with pytest.raises(BadRequestException) as caught:
        rules.check_gateway_listeners_against_routes(gateway(listener(80), listener(81)), routes)
    assert caught.value.message == (
        "All Gateway Routes for this Virtual Gateway must define a port match before adding "
        "multiple listeners to this Virtual Gateway. 1 Gateway Route(s) are missing port. "
        "Listing up to 5 gateway route names: [gr]"
    )


# --------------------------------------------------------------------------- gateway routes


def test_gateway_route_kind_and_listener() -> None:
    check_gw_route(gw_route())
    check_gw_route(gw_route("grpcRoute", serviceName="pkg.Svc"), gateway(listener(protocol="grpc")))
    rejects(check_gw_route, {}, field="spec")
    rejects(check_gw_route, gw_route("http2Route"), field="spec.http2Route")
    two = gateway(listener(80), listener(81))
    check_gw_route(gw_route(prefix="/", port=81), two)
    rejects(check_gw_route, gw_route(), two, field="spec.httpRoute.match.port")
    rejects(check_gw_route, gw_route(prefix="/", port=82), two, field="httpRoute.match.port")


def test_gateway_route_hostname_exact_xor_suffix() -> None:
    check_gw_route(gw_route(hostname={"suffix": ".example.com"}))
    check_gw_route(gw_route(prefix="/", hostname={"exact": "a.example.com"}))
    both = {"exact": "a.example.com", "suffix": ".example.com"}
    rejects(check_gw_route, gw_route(hostname=both), field="spec.httpRoute.match.hostname")
    grpc = gateway(listener(protocol="grpc"))
    rejects(check_gw_route, gw_route("grpcRoute", hostname={}), grpc, field="match.hostname")


def test_gateway_route_match_prefix_path_or_hostname() -> None:
    check_gw_route(gw_route(path={"regex": "/v[0-9]+"}))
    both = gw_route(prefix="/", path={"exact": "/a"})
    rejects(check_gw_route, both, field="spec.httpRoute.match")
    check_gw_route(gw_route(method="GET"))
    rejects(check_gw_route, gw_route(prefix="a/"), field="spec.httpRoute.match.prefix")


def test_gateway_route_reserved_prefixes() -> None:
    check_gw_route(gw_route(prefix="/aws"))
    rejects(check_gw_route, gw_route(prefix="/aws-appmesh/x"), field="spec.httpRoute.match.prefix")
    rejects(check_gw_route, gw_route(prefix="/aws-app-mesh"), field="spec.httpRoute.match.prefix")
    rejects(check_gw_route, gw_route(path={"exact": "/aws-appmesh"}), field="match.path.exact")


def test_gateway_route_reserved_grpc_service_names() -> None:
    grpc = gateway(listener(protocol="grpc"))
    check_gw_route(gw_route("grpcRoute", serviceName="aws.appmesh.like"), grpc)
    field = "spec.grpcRoute.match.serviceName"
    rejects(check_gw_route, gw_route("grpcRoute", serviceName="aws.appmesh"), grpc, field=field)
    spec = gw_route("grpcRoute", serviceName="aws.app-mesh.Envoy")
    rejects(check_gw_route, spec, grpc, field=field)


def test_gateway_route_prefix_rewrite() -> None:
    check_gw_route(gw_route(rewrite={"prefix": {"defaultPrefix": "DISABLED"}}, prefix="/a"))
    check_gw_route(gw_route(rewrite={"prefix": {"value": "/b/"}}, prefix="/a/"))
    field = "spec.httpRoute.action.rewrite.prefix"
    both = {"prefix": {"defaultPrefix": "ENABLED", "value": "/b/"}}
    rejects(check_gw_route, gw_route(rewrite=both, prefix="/"), field=field)
    rejects(check_gw_route, gw_route(rewrite={"prefix": {}}, prefix="/"), field=field)
    for value in ("b/", "/b"):
        rewrite = {"prefix": {"value": value}}
        rejects(check_gw_route, gw_route(rewrite=rewrite, prefix="/a/"), field=f"{field}.value")
    on_path = gw_route(rewrite={"prefix": {"value": "/b/"}}, path={"exact": "/a"})
    rejects(check_gw_route, on_path, field=field)


def test_gateway_route_path_rewrite() -> None:
    check_gw_route(gw_route(rewrite={"path": {"exact": "/new"}}, path={"exact": "/old"}))
    field = "spec.httpRoute.action.rewrite.path"
    rejects(
        check_gw_route,
        gw_route(rewrite={"path": {"exact": "new"}}, path={"exact": "/o"}),
        field=f"{field}.exact",
    )
    rejects(check_gw_route, gw_route(rewrite={"path": {}}, path={"exact": "/o"}), field=field)
    rejects(check_gw_route, gw_route(rewrite={"path": {"exact": "/n"}}, prefix="/"), field=field)


def test_gateway_route_hostname_rewrite() -> None:
    check_gw_route(gw_route(rewrite={"hostname": {"defaultTargetHostname": "DISABLED"}}))
    grpc = gateway(listener(protocol="grpc"))
    spec = gw_route("grpcRoute", rewrite={"hostname": {}}, serviceName="s")
    rejects(check_gw_route, spec, grpc, field="grpcRoute.action.rewrite.hostname")


def test_gateway_route_header_range() -> None:
    headers = [{"name": "x", "match": {"range": {"start": 9, "end": 3}}}]
    rejects(
        check_gw_route,
        gw_route(prefix="/", headers=headers),
        field="spec.httpRoute.match.headers.1.member.match.range",
    )
