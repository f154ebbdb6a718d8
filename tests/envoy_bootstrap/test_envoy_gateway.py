"""Virtual gateways: listeners, gateway routes, rewrites, hostnames, self-redirect."""

from .mesh_factory import (
    Mesh,
    gateway_route,
    http_route,
    listener,
    named,
    seconds,
    typed_config,
    vhost,
)


def _mesh(*routes: tuple[str, dict], gateway_listeners=None, **gateway_extra) -> Mesh:
    mesh = (
        Mesh()
        .node("blue", listener(8080))
        .node("green", listener(8080, "grpc"))
        .router("r", 80)
        .route("r", "all", http_route({"prefix": "/"}, ("blue", 1)))
        .service("color.local", router="r")
        .service("grpc.local", node="green")
        .gateway("gw", *(gateway_listeners or (listener(8088),)), **gateway_extra)
    )
    for name, spec in routes:
        mesh.gateway_route("gw", name, spec)
    return mesh


def _routes(
    mesh: Mesh, config: str = "rds_ingress_http_8088", host: str = "self_redirect"
) -> list[dict]:
    return vhost(mesh.translate("gw", "virtualGateway"), config, host)["routes"]


def test_gateway_listener_and_egress_listener_names():
    resources = _mesh().translate("gw", "virtualGateway")
    assert [r["name"] for r in resources.listeners] == [
        "lds_ingress_0.0.0.0_8088",
        "lds_egress_0.0.0.0_15001",
    ]
    ingress = resources.listeners[0]
    assert ingress["filter_chains"][0]["filter_chain_match"] == {"destination_port": 8088}
    hcm = typed_config(ingress["filter_chains"][0]["filters"][0])
    assert hcm["rds"]["route_config_name"] == "rds_ingress_http_8088"
    assert hcm["strip_any_host_port"] is True
    assert [f["name"] for f in ingress["listener_filters"]] == [
        "envoy.filters.listener.tls_inspector"
    ]


def test_default_prefix_rewrite_strips_the_prefix_with_and_without_slash():
    routes = _routes(_mesh(("g", gateway_route({"prefix": "/color/"}, "color.local"))))
    assert [(r["match"], r["route"]["prefix_rewrite"]) for r in routes] == [
        ({"prefix": "/color/"}, "/"),
        ({"prefix": "/color"}, "/"),
    ]
    assert routes[0]["route"]["cluster"] == "cds_ingress_m_gw_self_redirect_http_15001"
    assert routes[0]["route"]["host_rewrite_literal"] == "color.local"


def test_root_prefix_rewrites_to_root_once():
    routes = _routes(_mesh(("g", gateway_route({"prefix": "/"}, "color.local"))))
    assert [(r["match"], r["route"]["prefix_rewrite"]) for r in routes] == [({"prefix": "/"}, "/")]


def test_prefix_rewrite_value_and_disabled_default():
    value = gateway_route({"prefix": "/v1/"}, "color.local", rewrite={"prefix": {"value": "/api/"}})
    kept = gateway_route(
        {"prefix": "/hot/"}, "color.local", rewrite={"prefix": {"defaultPrefix": "DISABLED"}}
    )
    routes = _routes(_mesh(("value", value), ("kept", kept)))
    rewrites = {r["match"]["prefix"]: r["route"]["prefix_rewrite"] for r in routes}
    assert rewrites == {"/v1/": "/api/", "/hot/": "/hot/"}


def test_exact_path_has_no_default_rewrite_but_can_be_rewritten():
    plain = gateway_route({"path": {"exact": "/a"}}, "color.local")
    rewritten = gateway_route(
        {"path": {"exact": "/b"}}, "color.local", rewrite={"path": {"exact": "/new"}}
    )
    routes = {
        r["match"]["path"]: r["route"] for r in _routes(_mesh(("p", plain), ("r", rewritten)))
    }
    assert "prefix_rewrite" not in routes["/a"]
    assert routes["/b"]["prefix_rewrite"] == "/new"


def test_regex_path_rewrite_replaces_the_whole_path():
    spec = gateway_route(
        {"path": {"regex": "/x/.*"}}, "color.local", rewrite={"path": {"exact": "/y"}}
    )
    route = _routes(_mesh(("r", spec)))[0]
    assert route["route"]["regex_rewrite"] == {"pattern": {"regex": "^.*$"}, "substitution": "/y"}


def test_hostname_rewrite_disabled_keeps_host_and_names_the_service_in_a_header():
    spec = gateway_route(
        {"prefix": "/keep/"},
        "color.local",
        rewrite={"hostname": {"defaultTargetHostname": "DISABLED"}},
    )
    mesh = _mesh(("g", spec))
    route = _routes(mesh)[0]
    assert "host_rewrite_literal" not in route["route"]
    assert route["request_headers_to_add"][0]["header"] == {
        "key": "x-app-mesh-virtual-service",
        "value": "color.local",
    }
    backend = vhost(
        mesh.translate("gw", "virtualGateway"), "rds_egress_http_15001", "default_backend"
    )
    assert backend["domains"] == ["*"]
    headers = backend["routes"][0]["match"]["headers"]
    assert headers[-1] == {
        "name": "x-app-mesh-virtual-service",
        "string_match": {"exact": "color.local"},
    }
    assert backend["routes"][0]["request_headers_to_remove"] == ["x-app-mesh-virtual-service"]


def test_gateway_egress_serves_targets_on_the_egress_port():
    resources = _mesh(("g", gateway_route({"prefix": "/"}, "color.local"))).translate(
        "gw", "virtualGateway"
    )
    host = vhost(resources, "rds_egress_http_15001", "color.local")
    assert host["domains"] == ["color.local", "color.local:15001", "color.local:80"]
    assert (
        host["routes"][0]["route"]["weighted_clusters"]["clusters"][0]["name"]
        == "cds_egress_m_blue_http_8080"
    )
    assert "cds_egress_m_blue_http_8080" in [c["name"] for c in resources.clusters]


def test_gateway_route_timeout_is_the_longest_of_the_target_routes():
    mesh = _mesh(("g", gateway_route({"prefix": "/"}, "color.local")))
    mesh.route(
        "r",
        "slow",
        http_route({"prefix": "/slow"}, ("blue", 1), timeout={"perRequest": seconds(45)}),
    )
    assert _routes(mesh)[0]["route"]["timeout"] == "45s"


def test_gateway_route_to_a_service_without_routes_has_no_timeout():
    mesh = _mesh(("g", gateway_route({"prefix": "/"}, "color.local")))
    mesh.routes["r"] = {}
    assert "timeout" not in _routes(mesh)[0]["route"]


def test_target_port_is_part_of_the_rewritten_host():
    spec = gateway_route({"prefix": "/"}, "color.local", port=80)
    assert _routes(_mesh(("g", spec)))[0]["route"]["host_rewrite_literal"] == "color.local:80"


def test_hostname_matches_become_virtual_hosts_that_also_hold_generic_routes():
    exact = gateway_route({"prefix": "/", "hostname": {"exact": "www.example.com"}}, "color.local")
    suffix = gateway_route({"prefix": "/s/", "hostname": {"suffix": ".example.com"}}, "color.local")
    generic = gateway_route({"prefix": "/g/"}, "color.local")
    mesh = _mesh(("exact", exact), ("suffix", suffix), ("generic", generic))
    config = named(
        mesh.translate("gw", "virtualGateway").route_configurations, "rds_ingress_http_8088"
    )
    hosts = {
        h["name"]: (h["domains"], [r["name"] for r in h["routes"]]) for h in config["virtual_hosts"]
    }
    # Longest prefix first: /s/, /g/, /s, /g, then the exact host's "/".
    assert hosts["www.example.com"] == (
        ["www.example.com"],
        ["suffix", "generic", "suffix", "generic", "exact"],
    )
    assert hosts["*.example.com"] == (["*.example.com"], ["suffix", "generic", "suffix", "generic"])
    assert hosts["self_redirect"] == (["*"], ["generic", "generic"])


def test_gateway_priorities_order_routes():
    first = gateway_route({"prefix": "/"}, "color.local", priority=0)
    second = gateway_route({"prefix": "/longer/"}, "color.local", priority=1)
    names_ = [r["name"] for r in _routes(_mesh(("first", first), ("second", second)))]
    assert names_ == ["first", "second", "second"]


def test_grpc_gateway_route_matches_service_and_metadata():
    spec = gateway_route(
        {"serviceName": "pkg.Svc", "metadata": [{"name": "tenant", "match": {"exact": "a"}}]},
        "grpc.local",
        kind="grpcRoute",
    )
    mesh = _mesh(("g", spec), gateway_listeners=(listener(8090, "grpc"),))
    route = _routes(mesh, "rds_ingress_grpc_8090")[0]
    assert route["match"] == {
        "prefix": "/pkg.Svc/",
        "headers": [{"name": "tenant", "string_match": {"exact": "a"}}],
    }
    assert route["route"]["cluster"] == "cds_ingress_m_gw_self_redirect_grpc_15001"
    assert route["route"]["host_rewrite_literal"] == "grpc.local"


def test_several_listeners_name_self_redirects_by_listener_port():
    http = gateway_route({"prefix": "/"}, "color.local")
    grpc = gateway_route({}, "grpc.local", kind="grpcRoute")
    mesh = _mesh(
        ("h", http), ("g", grpc), gateway_listeners=(listener(8088), listener(8090, "grpc"))
    )
    resources = mesh.translate("gw", "virtualGateway")
    names_ = {c["name"] for c in resources.clusters}
    assert {
        "cds_ingress_m_gw_self_redirect_8088_http_15001",
        "cds_ingress_m_gw_self_redirect_8090_grpc_15001",
    } <= names_
    grpc_redirect = named(resources.clusters, "cds_ingress_m_gw_self_redirect_8090_grpc_15001")
    assert "typed_extension_protocol_options" in grpc_redirect
    http_routes = vhost(resources, "rds_ingress_http_8088", "self_redirect")["routes"]
    assert [r["name"] for r in http_routes] == ["h"]


def test_gateway_route_port_match_selects_the_listener():
    on_8088 = gateway_route({"prefix": "/", "port": 8088}, "color.local")
    on_8089 = gateway_route({"prefix": "/b/", "port": 8089}, "color.local")
    mesh = _mesh(("a", on_8088), ("b", on_8089), gateway_listeners=(listener(8088), listener(8089)))
    assert [r["name"] for r in _routes(mesh)] == ["a"]
    assert [r["name"] for r in _routes(mesh, "rds_ingress_http_8089")] == ["b", "b"]


def test_gateway_connection_pool_limits_the_self_redirect_cluster():
    gateway_listener = listener(
        8088, connectionPool={"http": {"maxConnections": 5, "maxPendingRequests": 5}}
    )
    resources = _mesh(gateway_listeners=(gateway_listener,)).translate("gw", "virtualGateway")
    cluster = named(resources.clusters, "cds_ingress_m_gw_self_redirect_http_15001")
    thresholds = cluster["circuit_breakers"]["thresholds"][0]
    assert (thresholds["max_connections"], thresholds["max_pending_requests"]) == (5, 5)
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"socket_address": {"address": "127.0.0.1", "port_value": 15001}}
    assert cluster["connect_timeout"] == "0.250s"


def test_gateway_listener_health_check_is_answered_by_the_gateway():
    check = {
        "healthyThreshold": 2,
        "unhealthyThreshold": 2,
        "intervalMillis": 5000,
        "timeoutMillis": 2000,
        "protocol": "http",
        "path": "/healthz",
    }
    resources = _mesh(gateway_listeners=(listener(8088, healthCheck=check),)).translate(
        "gw", "virtualGateway"
    )
    hcm = typed_config(resources.listeners[0]["filter_chains"][0]["filters"][0])
    health = typed_config(hcm["http_filters"][0])
    assert hcm["http_filters"][0]["name"] == "envoy.filters.http.health_check"
    assert health["headers"] == [{"name": ":path", "string_match": {"exact": "/healthz"}}]
    assert health["pass_through_mode"] is False


def test_gateway_backend_defaults_apply_to_its_clusters():
    policy = {"tls": {"validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}}}}
    mesh = _mesh(
        ("g", gateway_route({"prefix": "/"}, "color.local")),
        backendDefaults={"clientPolicy": policy},
    )
    cluster = named(mesh.translate("gw", "virtualGateway").clusters, "cds_egress_m_blue_http_8080")
    assert typed_config(cluster["transport_socket"])["common_tls_context"]["validation_context"][
        "trusted_ca"
    ] == {"filename": "/ca.pem"}
