"""Clusters: discovery, endpoints, circuit breakers, outlier detection, health checks."""

from envoy_bootstrap.resilience import UNLIMITED

from .mesh_factory import Mesh, dns, listener, named, seconds

UNLIMITED_THRESHOLDS = {
    "max_connections": UNLIMITED,
    "max_pending_requests": UNLIMITED,
    "max_requests": UNLIMITED,
    "max_retries": UNLIMITED,
}


def _client_of(
    target_listener: dict, discovery: dict | None = None, mesh: Mesh | None = None, **build
):
    mesh = mesh or Mesh()
    mesh.node("client", backends=["svc.local"]).node("t", target_listener, discovery=discovery)
    mesh.service("svc.local", node="t")
    return mesh.translate("client", **build)


def _cluster(resources, port: int = 8080, protocol: str = "http") -> dict:
    return named(resources.clusters, f"cds_egress_m_t_{protocol}_{port}")


def test_egress_cluster_per_target_listener_with_app_mesh_defaults():
    cluster = _cluster(_client_of(listener(8080)))
    assert cluster["connect_timeout"] == "1s"
    assert cluster["circuit_breakers"] == {"thresholds": [UNLIMITED_THRESHOLDS]}
    config = cluster["metadata"]["filter_metadata"]["aws.appmesh.aggregate_stats"]["config"]
    assert config == '{"tags":[{"key":"TargetVirtualNode","value":"t"}]}'


def test_dns_load_balancer_response_type_is_logical_dns():
    cluster = _cluster(_client_of(listener(8080), dns("t.apps.local")))
    assert cluster["type"] == "LOGICAL_DNS"
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"socket_address": {"address": "t.apps.local", "port_value": 8080}}
    assert "dns_lookup_family" not in cluster


def test_dns_endpoints_response_type_is_strict_dns():
    cluster = _cluster(_client_of(listener(8080), dns("t.local", responseType="ENDPOINTS")))
    assert cluster["type"] == "STRICT_DNS"


def test_ip_preference_of_mesh_and_node_choose_the_lookup_family():
    mesh_pref = _cluster(_client_of(listener(8080), mesh=Mesh(ip_preference="IPv6_ONLY")))
    assert mesh_pref["dns_lookup_family"] == "V6_ONLY"
    overridden = _cluster(
        _client_of(
            listener(8080),
            dns("t.local", ipPreference="IPv4_PREFERRED"),
            mesh=Mesh(ip_preference="IPv6_ONLY"),
        )
    )
    assert overridden["dns_lookup_family"] == "V4_PREFERRED"
    assert (
        _cluster(_client_of(listener(8080), dns("t", ipPreference="IPv6_PREFERRED")))[
            "dns_lookup_family"
        ]
        == "AUTO"
    )
    assert (
        _cluster(_client_of(listener(8080), dns("t", ipPreference="IPv4_ONLY")))[
            "dns_lookup_family"
        ]
        == "V4_ONLY"
    )


def test_cloud_map_uses_eds_with_an_assignment_the_control_plane_fills():
    discovery = {"awsCloudMap": {"namespaceName": "apps.local", "serviceName": "t"}}
    resources = _client_of(listener(8080), discovery)
    cluster = _cluster(resources)
    assert cluster["type"] == "EDS"
    assert cluster["eds_cluster_config"] == {
        "eds_config": {"ads": {}, "resource_api_version": "V3"}
    }
    assert resources.endpoints == (
        {
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": "cds_egress_m_t_http_8080",
        },
    )


def test_registered_endpoints_win_over_dns_and_fill_the_assignment():
    registered = {"t": (("10.0.0.5", 15000), ("10.0.0.6", 15000))}
    resources = _client_of(listener(8080), dns("t.local"), registered_endpoints=registered)
    assert _cluster(resources)["type"] == "EDS"
    endpoints = resources.endpoints[0]["endpoints"][0]["lb_endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in endpoints]
    assert addresses == [
        {"address": "10.0.0.5", "port_value": 15000},
        {"address": "10.0.0.6", "port_value": 15000},
    ]


def test_node_without_service_discovery_is_an_empty_eds_cluster():
    resources = _client_of(listener(8080), {})
    assert _cluster(resources)["type"] == "EDS"
    assert "endpoints" not in resources.endpoints[0]


def test_outlier_detection_of_the_target_listener_applies_to_clients():
    detection = {
        "maxServerErrors": 5,
        "interval": seconds(10),
        "baseEjectionDuration": {"unit": "ms", "value": 30000},
        "maxEjectionPercent": 50,
    }
    cluster = _cluster(_client_of(listener(8080, outlierDetection=detection)))
    assert cluster["outlier_detection"] == {
        "consecutive_5xx": 5,
        "interval": "10s",
        "base_ejection_time": "30s",
        "max_ejection_percent": 50,
        "enforcing_consecutive_5xx": 100,
        "enforcing_success_rate": 0,
        "always_eject_one_host": True,
    }


def _health(protocol: str, **extra) -> dict:
    check = {
        "healthyThreshold": 2,
        "unhealthyThreshold": 3,
        "intervalMillis": 5000,
        "timeoutMillis": 2000,
        "protocol": protocol,
        **extra,
    }
    port_protocol = protocol if protocol != "tcp" else "tcp"
    resources = _client_of(listener(8080, port_protocol, healthCheck=check))
    return _cluster(resources, protocol=port_protocol)["health_checks"][0]


def test_http_health_check_uses_path_and_thresholds():
    assert _health("http", path="/ping") == {
        "timeout": "2s",
        "interval": "5s",
        "unhealthy_threshold": 3,
        "healthy_threshold": 2,
        "http_health_check": {"path": "/ping", "codec_client_type": "HTTP1"},
    }


def test_http2_grpc_and_tcp_health_checks():
    assert _health("http2")["http_health_check"] == {"path": "/", "codec_client_type": "HTTP2"}
    assert _health("grpc", path="/ignored")["grpc_health_check"] == {}
    assert _health("tcp")["tcp_health_check"] == {}


def test_no_health_check_or_outlier_detection_by_default():
    cluster = _cluster(_client_of(listener(8080)))
    assert "health_checks" not in cluster and "outlier_detection" not in cluster


def test_http2_and_grpc_targets_speak_http2_upstream():
    for protocol in ("http2", "grpc"):
        cluster = _cluster(_client_of(listener(8080, protocol)), protocol=protocol)
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        # allow_connect (beyond App Mesh): WebSockets cross HTTP/2 hops as extended CONNECT.
        h2 = {"http2_protocol_options": {"allow_connect": True}}
        assert options["explicit_http_config"] == h2
    assert "typed_extension_protocol_options" not in _cluster(_client_of(listener(8080)))


def test_the_ingress_cluster_of_an_http2_listener_allows_connect_too():
    resources = Mesh().node("n", listener(8080, "http2")).translate("n")
    cluster = named(resources.clusters, "cds_ingress_m_n_http2_8080")
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["explicit_http_config"]["http2_protocol_options"] == {"allow_connect": True}


def test_ingress_cluster_points_at_the_app_with_unlimited_breakers():
    resources = Mesh().node("n", listener(8080)).translate("n")
    cluster = named(resources.clusters, "cds_ingress_m_n_http_8080")
    assert cluster["type"] == "STATIC"
    assert cluster["circuit_breakers"] == {"thresholds": [UNLIMITED_THRESHOLDS]}
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}


def test_listener_connection_pool_limits_the_ingress_cluster():
    pools = {
        "http": (
            {"http": {"maxConnections": 10, "maxPendingRequests": 5}},
            {"max_connections": 10, "max_pending_requests": 5},
        ),
        "http2": ({"http2": {"maxRequests": 7}}, {"max_requests": 7}),
        "grpc": ({"grpc": {"maxRequests": 8}}, {"max_requests": 8}),
        "tcp": ({"tcp": {"maxConnections": 3}}, {"max_connections": 3}),
    }
    for protocol, (pool, expected) in pools.items():
        resources = Mesh().node("n", listener(8080, protocol, connectionPool=pool)).translate("n")
        cluster = named(resources.clusters, f"cds_ingress_m_n_{protocol}_8080")
        assert cluster["circuit_breakers"]["thresholds"][0] == {**UNLIMITED_THRESHOLDS, **expected}


def test_http_pool_without_pending_limit_keeps_it_unlimited():
    pool = {"http": {"maxConnections": 10}}
    resources = Mesh().node("n", listener(8080, connectionPool=pool)).translate("n")
    thresholds = named(resources.clusters, "cds_ingress_m_n_http_8080")["circuit_breakers"][
        "thresholds"
    ][0]
    assert thresholds["max_pending_requests"] == UNLIMITED


def test_app_host_name_is_resolved_by_dns():
    from envoy_bootstrap.snapshot import NodeIdentity
    from envoy_bootstrap.translate import translate

    snapshot = Mesh().node("n", listener(8080)).build()
    resources = translate(snapshot, NodeIdentity("virtualNode", "n", app_host="app"))
    assert named(resources.clusters, "cds_ingress_m_n_http_8080")["type"] == "STRICT_DNS"


def test_passthrough_clusters_follow_the_egress_filter():
    drop = [c["name"] for c in Mesh().node("n").translate("n").clusters]
    allow = named(
        Mesh(egress="ALLOW_ALL").node("n").translate("n").clusters, "cds_egress_m_mesh-allow-all"
    )
    assert drop == ["cds_egress_m_amazonaws"]
    assert allow["type"] == "ORIGINAL_DST" and allow["lb_policy"] == "CLUSTER_PROVIDED"


def test_allow_all_reaches_every_mesh_service_without_backends():
    mesh = (
        Mesh(egress="ALLOW_ALL")
        .node("client")
        .node("t", listener(8080))
        .service("svc.local", node="t")
    )
    assert "cds_egress_m_t_http_8080" in [c["name"] for c in mesh.translate("client").clusters]


def test_drop_all_reaches_backends_only():
    mesh = Mesh().node("client").node("t", listener(8080)).service("svc.local", node="t")
    assert [c["name"] for c in mesh.translate("client").clusters] == ["cds_egress_m_amazonaws"]
