"""Ingress and egress route configurations: names, domains, targets, timeouts."""

from envoy_bootstrap import routes

from .mesh_factory import Mesh, chain, http_route, listener, millis, named, seconds, vhost


def _router_mesh(*route_specs: tuple[str, dict], ports=(80,), protocol: str = "http") -> Mesh:
    mesh = (
        Mesh()
        .node("client", listener(3000), backends=["svc.local"])
        .node("blue", listener(8080, protocol))
        .node("green", listener(8080, protocol), listener(9090, protocol))
        .router("r", *[(p, protocol) for p in ports])
        .service("svc.local", router="r")
    )
    for name, spec in route_specs:
        mesh.route("r", name, spec)
    return mesh


def _action(mesh: Mesh, config: str = "rds_egress_http_80", index: int = 0) -> dict:
    return vhost(mesh.translate("client"), config, "svc.local")["routes"][index]["route"]


def test_ingress_route_configuration_sends_everything_to_the_local_app():
    resources = Mesh().node("n", listener(8080)).translate("n")
    config = named(resources.route_configurations, "rds_ingress_http_8080")
    route = config["virtual_hosts"][0]["routes"][0]
    assert config["virtual_hosts"][0]["domains"] == ["*"]
    assert route["route"] == {
        "cluster": "cds_ingress_m_n_http_8080",
        "timeout": "15s",
        "idle_timeout": "300s",
    }


def test_ingress_route_uses_the_listener_timeouts():
    timeout = {"http2": {"perRequest": seconds(60), "idle": millis(500)}}
    resources = Mesh().node("n", listener(8080, "http2", timeout=timeout)).translate("n")
    route = named(resources.route_configurations, "rds_ingress_http2_8080")["virtual_hosts"][0]
    assert route["routes"][0]["route"]["timeout"] == "60s"
    assert route["routes"][0]["route"]["idle_timeout"] == "0.500s"


def test_tcp_listener_has_no_ingress_route_configuration():
    resources = Mesh().node("n", listener(5432, "tcp")).translate("n")
    assert [c["name"] for c in resources.route_configurations] == []


def test_egress_virtual_host_domains_are_the_name_with_and_without_port():
    resources = _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 1)))).translate("client")
    host = vhost(resources, "rds_egress_http_80", "svc.local")
    assert host["domains"] == ["svc.local", "svc.local:80"]


def test_weighted_targets_become_weighted_clusters_with_their_total():
    mesh = _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 3), ("green", 1, 9090))))
    assert _action(mesh)["weighted_clusters"] == {
        "clusters": [
            {"name": "cds_egress_m_blue_http_8080", "weight": 3},
            {"name": "cds_egress_m_green_http_9090", "weight": 1},
        ],
        "total_weight": 4,
    }


def test_weight_zero_targets_stay_in_the_list():
    mesh = _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 0), ("green", 100, 8080))))
    clusters = _action(mesh)["weighted_clusters"]["clusters"]
    assert clusters[0] == {"name": "cds_egress_m_blue_http_8080", "weight": 0}
    assert _action(mesh)["weighted_clusters"]["total_weight"] == 100


def test_targets_naming_one_listener_add_up():
    mesh = _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 30), ("blue", 20))))
    assert _action(mesh)["weighted_clusters"]["clusters"] == [
        {"name": "cds_egress_m_blue_http_8080", "weight": 50}
    ]


def test_route_whose_weights_are_all_zero_answers_503():
    mesh = _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 0))))
    route = vhost(mesh.translate("client"), "rds_egress_http_80", "svc.local")["routes"][0]
    assert route["direct_response"] == {"status": 503}
    assert "route" not in route


def test_target_without_port_on_a_multi_listener_node_takes_its_first_listener():
    mesh = _router_mesh(("a", http_route({"prefix": "/"}, ("green", 1))))
    assert (
        _action(mesh)["weighted_clusters"]["clusters"][0]["name"] == "cds_egress_m_green_http_8080"
    )


def test_default_timeouts_are_15s_per_request_and_300s_idle():
    action = _action(_router_mesh(("a", http_route({"prefix": "/"}, ("blue", 1)))))
    assert (action["timeout"], action["idle_timeout"]) == ("15s", "300s")


def test_route_timeouts_override_defaults_and_zero_disables():
    timeout = {"perRequest": seconds(0), "idle": millis(2500)}
    action = _action(_router_mesh(("a", http_route({"prefix": "/"}, ("blue", 1), timeout=timeout))))
    assert (action["timeout"], action["idle_timeout"]) == ("0s", "2.500s")


def test_route_timeout_helper_reads_app_mesh_units():
    assert routes.route_timeouts({"perRequest": millis(250)}) == {
        "timeout": "0.250s",
        "idle_timeout": "300s",
    }


def test_router_with_two_listeners_gives_each_port_its_own_routes():
    mesh = _router_mesh(
        ("on80", http_route({"prefix": "/", "port": 80}, ("blue", 1))),
        ("on81", http_route({"prefix": "/", "port": 81}, ("green", 1, 9090))),
        ports=(80, 81),
    )
    resources = mesh.translate("client")
    assert [r["name"] for r in vhost(resources, "rds_egress_http_80", "svc.local")["routes"]] == [
        "on80"
    ]
    assert [r["name"] for r in vhost(resources, "rds_egress_http_81", "svc.local")["routes"]] == [
        "on81"
    ]


def test_route_of_another_protocol_is_ignored_on_a_listener():
    mesh = _router_mesh(
        ("h", http_route({"prefix": "/"}, ("blue", 1))),
        ("h2", http_route({"prefix": "/"}, ("blue", 1), kind="http2Route")),
    )
    routes_ = vhost(mesh.translate("client"), "rds_egress_http_80", "svc.local")["routes"]
    assert [r["name"] for r in routes_] == ["h"]


def test_deleted_route_is_ignored():
    mesh = _router_mesh(("live", http_route({"prefix": "/"}, ("blue", 1))))
    mesh.route("r", "gone", http_route({"prefix": "/x"}, ("blue", 1)), status="DELETED")
    routes_ = vhost(mesh.translate("client"), "rds_egress_http_80", "svc.local")["routes"]
    assert [r["name"] for r in routes_] == ["live"]


def test_router_without_routes_keeps_an_empty_virtual_host():
    resources = _router_mesh().translate("client")
    assert vhost(resources, "rds_egress_http_80", "svc.local")["routes"] == []


def test_egress_routes_carry_target_virtual_service_stats_metadata():
    route = vhost(
        _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 1)))).translate("client"),
        "rds_egress_http_80",
        "svc.local",
    )["routes"][0]
    stats = route["metadata"]["filter_metadata"]["aws.appmesh.aggregate_stats"]["config"]
    assert stats == '{"tags":[{"key":"TargetVirtualService","value":"svc.local"}]}'


def test_node_provider_route_uses_the_target_listener_timeouts():
    timeout = {"http": {"perRequest": seconds(30)}}
    mesh = (
        Mesh()
        .node("client", backends=["svc.local"])
        .node("blue", listener(8080, timeout=timeout))
        .service("svc.local", node="blue")
    )
    action = vhost(mesh.translate("client"), "rds_egress_http_8080", "svc.local")["routes"][0]
    assert action["route"]["timeout"] == "30s"
    assert action["match"] == {"prefix": "/"}


def test_proxy_route_configuration_covers_every_port_and_the_bare_name():
    mesh = _router_mesh(
        ("a", http_route({"prefix": "/", "port": 80}, ("blue", 1))),
        ("b", http_route({"prefix": "/", "port": 81}, ("blue", 1))),
        ports=(80, 81),
    )
    config = named(mesh.translate("client").route_configurations, "rds_egress_http_15001")
    hosts = {h["name"]: h["domains"] for h in config["virtual_hosts"]}
    assert hosts["svc.local:80"] == ["svc.local", "svc.local:15001", "svc.local:80"]
    assert hosts["svc.local:81"] == ["svc.local:81"]


def test_drop_all_adds_an_amazonaws_passthrough_virtual_host():
    resources = _router_mesh(("a", http_route({"prefix": "/"}, ("blue", 1)))).translate("client")
    host = vhost(resources, "rds_egress_http_80", "amazonaws")
    assert host["domains"] == ["*.amazonaws.com", "*.amazonaws.com:80"]
    assert host["routes"][0]["route"]["cluster"] == "cds_egress_m_amazonaws"


def test_allow_all_adds_a_catch_all_passthrough_virtual_host():
    mesh = (
        Mesh(egress="ALLOW_ALL")
        .node("client")
        .node("blue", listener(8080))
        .service("svc.local", node="blue")
    )
    host = vhost(mesh.translate("client"), "rds_egress_http_8080", "mesh-allow-all")
    assert host["domains"] == ["*"]
    assert host["routes"][0]["route"]["cluster"] == "cds_egress_m_mesh-allow-all"


def test_tcp_route_becomes_tcp_proxy_weighted_clusters_without_zero_weights():
    mesh = (
        Mesh()
        .node("client", backends=["db.local"])
        .node("a", listener(5432, "tcp"))
        .node("b", listener(5432, "tcp"))
        .node("c", listener(5432, "tcp"))
        .router("r", (5432, "tcp"))
        .service("db.local", router="r")
        .route(
            "r",
            "t",
            http_route(
                None, ("a", 2), ("b", 1), ("c", 0), kind="tcpRoute", timeout={"idle": seconds(60)}
            ),
        )
    )
    resources = mesh.translate("client")
    egress = named(resources.listeners, "lds_egress_0.0.0.0_15001")
    proxy = chain(egress, "egress_tcp_5432")["filters"][0]["typed_config"]
    assert proxy["weighted_clusters"]["clusters"] == [
        {"name": "cds_egress_m_a_tcp_5432", "weight": 2},
        {"name": "cds_egress_m_b_tcp_5432", "weight": 1},
    ]
    assert proxy["idle_timeout"] == "60s"


def test_single_tcp_target_is_a_plain_cluster_with_default_idle():
    mesh = (
        Mesh()
        .node("client", backends=["db.local"])
        .node("a", listener(5432, "tcp"))
        .service("db.local", node="a")
    )
    egress = named(mesh.translate("client").listeners, "lds_egress_0.0.0.0_15001")
    proxy = chain(egress, "egress_tcp_5432")["filters"][0]["typed_config"]
    assert proxy["cluster"] == "cds_egress_m_a_tcp_5432"
    assert proxy["idle_timeout"] == "300s"
