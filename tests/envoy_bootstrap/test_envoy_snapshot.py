"""Inputs and reachability: who a proxy reaches, what counts as live, unknown proxies."""

import pytest

from envoy_bootstrap import names
from envoy_bootstrap.durations import from_appmesh, parse_go_duration
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity, reachable_services
from envoy_bootstrap.translate import ResourceNotFound, translate

from .mesh_factory import Mesh, gateway_route, http_route, listener


def _mesh(egress: str = "DROP_ALL") -> Mesh:
    return (
        Mesh(egress)
        .node("client", backends=["a.local"])
        .node("a", listener(80))
        .node("b", listener(81))
        .service("a.local", node="a")
        .service("b.local", node="b")
    )


def test_drop_all_reaches_declared_backends_only():
    assert reachable_services(_mesh().build(), NodeIdentity("virtualNode", "client")) == (
        "a.local",
    )


def test_allow_all_with_backends_reaches_only_the_backends():
    snapshot = _mesh("ALLOW_ALL").build()
    assert reachable_services(snapshot, NodeIdentity("virtualNode", "client")) == ("a.local",)


def test_allow_all_without_backends_reaches_every_virtual_service():
    snapshot = _mesh("ALLOW_ALL").node("client", backends=[]).build()
    assert reachable_services(snapshot, NodeIdentity("virtualNode", "client")) == (
        "a.local",
        "b.local",
    )


def test_backend_naming_a_missing_service_is_skipped():
    mesh = _mesh().node("client", backends=["a.local", "ghost.local"])
    assert reachable_services(mesh.build(), NodeIdentity("virtualNode", "client")) == ("a.local",)


def test_gateway_reaches_the_targets_of_its_routes():
    mesh = (
        _mesh()
        .gateway("gw", listener(8088))
        .gateway_route("gw", "g", gateway_route({"prefix": "/"}, "b.local"))
    )
    assert reachable_services(mesh.build(), NodeIdentity("virtualGateway", "gw")) == ("b.local",)


def test_service_whose_provider_is_deleted_gets_no_routes():
    mesh = _mesh().node("a", listener(80), status="DELETED")
    resources = mesh.translate("client")
    assert [c["name"] for c in resources.route_configurations] == []


def test_unknown_or_deleted_proxy_is_not_found():
    snapshot = _mesh().node("gone", status="DELETED").build()
    for identity in (
        NodeIdentity("virtualNode", "nope"),
        NodeIdentity("virtualNode", "gone"),
        NodeIdentity("virtualGateway", "gw"),
    ):
        with pytest.raises(ResourceNotFound):
            translate(snapshot, identity)


def test_snapshot_defaults_are_empty_and_independent():
    first = MeshSnapshot({"meshName": "m"}, {}, {}, {}, {}, {}, {})
    second = MeshSnapshot({"meshName": "m"}, {}, {}, {}, {}, {}, {})
    assert first.registered_endpoints == {} and first.version == 0
    assert first.registered_endpoints is not second.registered_endpoints
    assert first.egress_filter == "DROP_ALL"


def test_translation_does_not_mutate_its_input():
    import copy

    mesh = (
        _mesh()
        .router("r", 82)
        .route("r", "x", http_route({"prefix": "/"}, ("b", 1)))
        .service("r.local", router="r")
    )
    mesh.node("client", backends=["a.local", "r.local"])
    snapshot = mesh.build()
    before = copy.deepcopy(snapshot)
    translate(snapshot, NodeIdentity("virtualNode", "client"))
    assert snapshot == before


def test_names_follow_app_mesh():
    assert names.listener("ingress", "0.0.0.0", 15000) == "lds_ingress_0.0.0.0_15000"
    assert names.ingress_route_config("http2", 8080) == "rds_ingress_http2_8080"
    assert names.egress_route_config(15001) == "rds_egress_http_15001"
    assert names.ingress_cluster("m", "n", "http", 8080) == "cds_ingress_m_n_http_8080"
    assert names.egress_cluster("m", "t", "grpc", 9090) == "cds_egress_m_t_grpc_9090"
    assert names.allow_all_cluster("m") == "cds_egress_m_mesh-allow-all"
    assert names.amazonaws_cluster("m") == "cds_egress_m_amazonaws"
    assert (
        names.self_redirect_cluster("m", "gw", "http", 15001, None)
        == "cds_ingress_m_gw_self_redirect_http_15001"
    )
    assert (
        names.self_redirect_cluster("m", "gw", "http", 15001, 8088)
        == "cds_ingress_m_gw_self_redirect_8088_http_15001"
    )
    assert names.ingress_stat_prefix("http", 8080, False) == "ingress"
    assert names.ingress_stat_prefix("http", 8080, True) == "ingress.http.8080"


def test_durations_match_protobuf_json():
    assert from_appmesh({"unit": "ms", "value": 250}) == "0.250s"
    assert from_appmesh({"unit": "s", "value": 15}) == "15s"
    assert from_appmesh({"value": 2}) == "2s"
    assert parse_go_duration("5000ms") == "5s"
    assert parse_go_duration("1m30s") == "90s"
    assert parse_go_duration("1.5s") == "1.500s"
    with pytest.raises(ValueError):
        parse_go_duration("5 seconds")
