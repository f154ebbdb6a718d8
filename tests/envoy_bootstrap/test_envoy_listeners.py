"""Listeners: ingress filter chains, TLS modes, egress chains, passthroughs, logs."""

from .mesh_factory import Mesh, chain, listener, millis, named, typed_config

TLS_FILE = {"file": {"certificateChain": "/certs/chain.pem", "privateKey": "/certs/key.pem"}}


def _ingress(*listeners: dict, **extra) -> dict:
    resources = Mesh().node("n", *listeners, **extra).translate("n")
    return named(resources.listeners, "lds_ingress_0.0.0.0_15000")


def _egress(mesh: Mesh, node: str = "client") -> dict:
    return named(mesh.translate(node).listeners, "lds_egress_0.0.0.0_15001")


def test_node_without_listeners_has_no_ingress_listener():
    names = [r["name"] for r in Mesh().node("n").translate("n").listeners]
    assert names == ["lds_egress_0.0.0.0_15001"]


def test_ingress_listener_binds_the_ingress_port_and_matches_node_ports():
    ingress = _ingress(listener(8080), listener(9090, "grpc"))
    assert ingress["address"] == {"socket_address": {"address": "0.0.0.0", "port_value": 15000}}
    assert ingress["traffic_direction"] == "INBOUND"
    matches = [c["filter_chain_match"] for c in ingress["filter_chains"]]
    assert matches == [{"destination_port": 8080}, {"destination_port": 9090}]


def test_listener_filters_restore_original_destination_and_inspect_tls():
    ingress = _ingress(listener(8080))
    names = [f["name"] for f in ingress["listener_filters"]]
    assert names == ["envoy.filters.listener.original_dst", "envoy.filters.listener.tls_inspector"]


def test_http_chain_is_a_connection_manager_reading_its_route_config_over_ads():
    hcm = typed_config(chain(_ingress(listener(8080)), "ingress_http_8080")["filters"][0])
    assert hcm["stat_prefix"] == "ingress"
    assert hcm["rds"] == {
        "config_source": {"ads": {}, "resource_api_version": "V3"},
        "route_config_name": "rds_ingress_http_8080",
    }
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.router"]
    assert hcm["normalize_path"] and hcm["merge_slashes"]
    assert hcm["upgrade_configs"] == [{"upgrade_type": "websocket", "enabled": True}]
    assert hcm["http2_protocol_options"] == {"allow_connect": True}  # beyond App Mesh


def test_several_listeners_get_protocol_and_port_stat_prefixes():
    ingress = _ingress(listener(8080), listener(8081, "http2"))
    prefixes = [typed_config(c["filters"][0])["stat_prefix"] for c in ingress["filter_chains"]]
    assert prefixes == ["ingress.http.8080", "ingress.http2.8081"]


def test_listener_idle_timeout_bounds_streams():
    ingress = _ingress(listener(8080, timeout={"http": {"idle": millis(1500)}}))
    hcm = typed_config(ingress["filter_chains"][0]["filters"][0])
    assert hcm["stream_idle_timeout"] == "1.500s"


def test_tcp_listener_proxies_to_the_local_app_with_idle_timeout():
    ingress = _ingress(listener(5432, "tcp", timeout={"tcp": {"idle": millis(60000)}}))
    proxy = typed_config(chain(ingress, "ingress_tcp_5432")["filters"][0])
    assert proxy == {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "ingress",
        "cluster": "cds_ingress_m_n_tcp_5432",
        "idle_timeout": "60s",
    }


def test_strict_tls_accepts_only_tls():
    ingress = _ingress(listener(8080, tls={"mode": "STRICT", "certificate": TLS_FILE}))
    assert [c["name"] for c in ingress["filter_chains"]] == ["ingress_http_8080_tls"]
    secure = ingress["filter_chains"][0]
    assert secure["filter_chain_match"] == {"destination_port": 8080, "transport_protocol": "tls"}
    context = typed_config(secure["transport_socket"])
    assert context["common_tls_context"]["tls_certificates"] == [
        {
            "certificate_chain": {"filename": "/certs/chain.pem"},
            "private_key": {"filename": "/certs/key.pem"},
        }
    ]
    assert "require_client_certificate" not in context


def test_permissive_tls_accepts_tls_and_plaintext():
    ingress = _ingress(listener(8080, tls={"mode": "PERMISSIVE", "certificate": TLS_FILE}))
    matches = [c["filter_chain_match"] for c in ingress["filter_chains"]]
    assert matches == [
        {"destination_port": 8080, "transport_protocol": "tls"},
        {"destination_port": 8080, "transport_protocol": "raw_buffer"},
        {"transport_protocol": "tls"},  # unredirected TLS (explicit mode)
    ]
    assert "transport_socket" not in ingress["filter_chains"][1]
    assert "transport_socket" in ingress["filter_chains"][2]
    # Unredirected plaintext falls to the default chain, which stays plaintext.
    assert "transport_socket" not in ingress["default_filter_chain"]


def test_strict_tls_default_chain_is_tls_too():
    ingress = _ingress(listener(8080, tls={"mode": "STRICT", "certificate": TLS_FILE}))
    assert len(ingress["filter_chains"]) == 1
    assert "transport_socket" in ingress["default_filter_chain"]


def test_disabled_tls_is_plaintext_only():
    ingress = _ingress(listener(8080, tls={"mode": "DISABLED", "certificate": TLS_FILE}))
    assert [c["filter_chain_match"] for c in ingress["filter_chains"]] == [
        {"destination_port": 8080}
    ]
    assert "transport_socket" not in ingress["filter_chains"][0]


def test_listener_validation_requires_and_checks_client_certificates():
    tls = {
        "mode": "STRICT",
        "certificate": {"sds": {"secretName": "spiffe://mesh/server"}},
        "validation": {
            "trust": {"file": {"certificateChain": "/ca.pem"}},
            "subjectAlternativeNames": {
                "match": {"exact": ["spiffe://mesh/client", "client.local"]}
            },
        },
    }
    context = typed_config(
        _ingress(listener(8080, tls=tls))["filter_chains"][0]["transport_socket"]
    )
    assert context["require_client_certificate"] is True
    common = context["common_tls_context"]
    assert common["validation_context"] == {
        "trusted_ca": {"filename": "/ca.pem"},
        "match_typed_subject_alt_names": [
            {"san_type": "URI", "matcher": {"exact": "spiffe://mesh/client"}},
            {"san_type": "DNS", "matcher": {"exact": "client.local"}},
        ],
    }
    assert common["tls_certificate_sds_secret_configs"][0]["name"] == "spiffe://mesh/server"
    assert common["alpn_protocols"] == ["h2", "http/1.1"]


def test_default_chain_serves_the_first_listener_for_unredirected_connections():
    ingress = _ingress(listener(8080), listener(9090))
    default = ingress["default_filter_chain"]
    assert default["name"] == "ingress_http_8080_default"
    assert (
        typed_config(default["filters"][0])["rds"]["route_config_name"] == "rds_ingress_http_8080"
    )


def test_access_log_text_format_on_every_filter():
    logging = {
        "accessLog": {
            "file": {"path": "/dev/stdout", "format": {"text": "%START_TIME% %PROTOCOL%"}}
        }
    }
    resources = Mesh().node("n", listener(8080), logging=logging).translate("n")
    for resource in resources.listeners:
        for filter_chain in resource["filter_chains"]:
            log = typed_config(filter_chain["filters"][0])["access_log"][0]
            assert log["name"] == "envoy.access_loggers.file"
            assert typed_config(log)["path"] == "/dev/stdout"
            assert typed_config(log)["log_format"] == {
                "text_format_source": {"inline_string": "%START_TIME% %PROTOCOL%\n"}
            }


def test_access_log_json_format_maps_keys_to_format_strings():
    logging = {
        "accessLog": {
            "file": {
                "path": "/tmp/a.log",
                "format": {"json": [{"key": "code", "value": "%RESPONSE_CODE%"}]},
            }
        }
    }
    ingress = _ingress(listener(8080), logging=logging)
    log = typed_config(typed_config(ingress["filter_chains"][0]["filters"][0])["access_log"][0])
    assert log["log_format"] == {"json_format": {"code": "%RESPONSE_CODE%"}}


def test_egress_listener_has_a_chain_per_backend_port():
    mesh = (
        Mesh()
        .node("client", backends=["a.local", "b.local"])
        .node("a", listener(8080))
        .node("b", listener(9090, "grpc"))
        .service("a.local", node="a")
        .service("b.local", node="b")
    )
    egress = _egress(mesh)
    assert egress["traffic_direction"] == "OUTBOUND"
    rds = {
        c["name"]: typed_config(c["filters"][0])["rds"]["route_config_name"]
        for c in egress["filter_chains"]
        if c["name"].startswith("egress_http")
    }
    assert rds == {
        "egress_http_8080": "rds_egress_http_8080",
        "egress_http_9090": "rds_egress_http_9090",
        "egress_http_15001": "rds_egress_http_15001",
    }
    assert typed_config(chain(egress, "egress_http_8080")["filters"][0])["stat_prefix"] == "egress"


def test_drop_all_lets_tls_to_amazonaws_through_by_sni():
    egress = _egress(Mesh().node("client"))
    amazonaws = chain(egress, "egress_amazonaws")
    assert amazonaws["filter_chain_match"] == {
        "server_names": ["*.amazonaws.com"],
        "transport_protocol": "tls",
    }
    assert typed_config(amazonaws["filters"][0])["cluster"] == "cds_egress_m_amazonaws"
    assert "default_filter_chain" not in egress


def test_allow_all_passes_unmatched_connections_to_their_original_destination():
    egress = _egress(Mesh(egress="ALLOW_ALL").node("client"))
    default = egress["default_filter_chain"]
    assert typed_config(default["filters"][0])["cluster"] == "cds_egress_m_mesh-allow-all"
    assert all(c["name"] != "egress_amazonaws" for c in egress["filter_chains"])


def test_listen_address_and_ports_come_from_the_identity():
    from envoy_bootstrap.snapshot import NodeIdentity
    from envoy_bootstrap.translate import translate

    snapshot = Mesh().node("n", listener(8080)).build()
    identity = NodeIdentity(
        "virtualNode", "n", ingress_port=25000, egress_port=25001, listen_address="127.0.0.1"
    )
    names = [r["name"] for r in translate(snapshot, identity).listeners]
    assert names == ["lds_ingress_127.0.0.1_25000", "lds_egress_127.0.0.1_25001"]
