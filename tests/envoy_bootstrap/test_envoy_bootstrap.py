"""The bootstrap the App Mesh image generated, one environment variable at a time."""

import json

import pytest

from envoy_bootstrap.bootstrap import build_bootstrap
from envoy_bootstrap.validate import parse_bootstrap

NODE = "mesh/m/virtualNode/front"
ARN = "arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/front"


def _boot(xds: str = "127.0.0.1:15010", **env: str) -> dict:
    bootstrap = build_bootstrap({"APPMESH_RESOURCE_NAME": NODE, **env}, xds)
    parse_bootstrap(bootstrap)
    return bootstrap


def _tags(bootstrap: dict) -> dict:
    return {
        t["tag_name"]: t.get("fixed_value", t.get("regex"))
        for t in bootstrap["stats_config"]["stats_tags"]
    }


def test_node_id_prefers_arn_then_resource_name_then_virtual_node_name():
    env = {
        "APPMESH_RESOURCE_ARN": ARN,
        "APPMESH_RESOURCE_NAME": "mesh/m/virtualNode/x",
        "APPMESH_VIRTUAL_NODE_NAME": "y",
    }
    assert build_bootstrap(env, "h:1")["node"]["id"] == ARN
    del env["APPMESH_RESOURCE_ARN"]
    assert build_bootstrap(env, "h:1")["node"]["id"] == "mesh/m/virtualNode/x"
    assert build_bootstrap({"APPMESH_VIRTUAL_NODE_NAME": NODE}, "h:1")["node"]["id"] == NODE


def test_missing_or_malformed_node_id_is_refused():
    with pytest.raises(ValueError, match="APPMESH_RESOURCE_ARN"):
        build_bootstrap({}, "h:1")
    with pytest.raises(ValueError, match="Unrecognized"):
        build_bootstrap({"APPMESH_RESOURCE_NAME": "front"}, "h:1")


def test_node_cluster_defaults_to_id_and_follows_resource_cluster():
    assert _boot()["node"]["cluster"] == NODE
    assert _boot(APPMESH_RESOURCE_CLUSTER="front-svc")["node"]["cluster"] == "front-svc"
    assert _boot(APPMESH_VIRTUAL_NODE_CLUSTER="legacy")["node"]["cluster"] == "legacy"


def test_ads_over_grpc_to_the_xds_cluster():
    bootstrap = _boot()
    dynamic = bootstrap["dynamic_resources"]
    (service,) = dynamic["ads_config"].pop("grpc_services")
    assert dynamic["ads_config"] == {"api_type": "GRPC", "transport_api_version": "V3"}
    assert service["envoy_grpc"] == {"cluster_name": "xds_cluster"}
    # The node's account, stated for the control plane (envoy_bootstrap._account_claim).
    assert [m["key"] for m in service["initial_metadata"]] == ["authorization"]
    assert dynamic["lds_config"] == {
        "ads": {},
        "initial_fetch_timeout": "0s",
        "resource_api_version": "V3",
    }
    assert dynamic["cds_config"] == dynamic["lds_config"]
    xds = bootstrap["static_resources"]["clusters"][0]
    assert xds["name"] == "xds_cluster" and xds["type"] == "STATIC"
    assert xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "127.0.0.1", "port_value": 15010}
    }
    assert (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        in xds["typed_extension_protocol_options"]
    )


def test_xds_endpoint_forms():
    assert _boot("control-plane:8443")["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    tls = _boot("https://cp.example:443")["static_resources"]["clusters"][0]
    assert tls["transport_socket"]["typed_config"]["sni"] == "cp.example"
    pipe = _boot("unix:///var/run/xds.sock")["static_resources"]["clusters"][0]
    assert pipe["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "pipe": {"path": "/var/run/xds.sock"}
    }
    v6 = _boot("[::1]:15010")["static_resources"]["clusters"][0]
    assert (
        v6["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["address"]
        == "::1"
    )
    with pytest.raises(ValueError):
        build_bootstrap({"APPMESH_RESOURCE_NAME": NODE}, "no-port")


def test_several_xds_endpoints_are_one_lb_endpoint_each():
    """Replicas of one control plane: Envoy's ADS stream picks one and moves on when it
    goes away (parse_bootstrap: Envoy's own Bootstrap proto accepts the list)."""
    xds = _boot("127.0.0.1:15010, 127.0.0.1:15011,[::1]:15012")["static_resources"]["clusters"][0]
    assert xds["type"] == "STATIC"
    (locality,) = xds["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert addresses == [
        {"address": "127.0.0.1", "port_value": 15010},
        {"address": "127.0.0.1", "port_value": 15011},
        {"address": "::1", "port_value": 15012},
    ]
    named = _boot("cp-1:15010,10.0.0.2:15010")["static_resources"]["clusters"][0]
    assert named["type"] == "STRICT_DNS"
    tls = _boot("https://cp.example:443,https://cp.example:8443")["static_resources"]["clusters"]
    assert tls[0]["transport_socket"]["typed_config"]["sni"] == "cp.example"


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ("http://a:1,https://b:2", "mix schemes"),
        ("https://a:443,https://b:443", "one host name"),
        ("unix:///x.sock,a:1", "Unix-socket"),
        ("a:1,,b:2", "empty entry"),
        ("a:1,b", "host:port"),
    ],
)
def test_an_xds_endpoint_list_that_cannot_be_one_cluster_is_refused(endpoints, message):
    with pytest.raises(ValueError, match=message):
        build_bootstrap({"APPMESH_RESOURCE_NAME": NODE}, endpoints)


def test_initial_fetch_timeout():
    assert (
        _boot(ENVOY_INITIAL_FETCH_TIMEOUT="30")["dynamic_resources"]["cds_config"][
            "initial_fetch_timeout"
        ]
        == "30s"
    )
    with pytest.raises(ValueError, match="integer"):
        _boot(ENVOY_INITIAL_FETCH_TIMEOUT="soon")


def test_admin_port_address_and_access_log():
    admin = _boot()["admin"]  # loopback, where App Mesh's image bound 0.0.0.0
    assert admin["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}
    opened = _boot(ENVOY_ADMIN_ACCESS_ADDRESS="0.0.0.0")["admin"]["address"]["socket_address"]
    assert opened["address"] == "0.0.0.0"
    assert admin["access_log"][0]["typed_config"]["path"] == "/tmp/envoy_admin_access.log"
    custom = _boot(
        ENVOY_ADMIN_ACCESS_PORT="9902",
        ENVOY_ADMIN_ACCESS_LOG_FILE="/dev/null",
        ENVOY_ADMIN_ACCESS_ENABLE_IPV6="true",
    )["admin"]
    assert custom["address"]["socket_address"] == {"address": "::1", "port_value": 9902}
    assert custom["access_log"][0]["typed_config"]["path"] == "/dev/null"


def test_xray_tracing_defaults():
    tracing = _boot(ENABLE_ENVOY_XRAY_TRACING="1")["tracing"]["http"]
    assert tracing["name"] == "envoy.tracers.xray"
    config = tracing["typed_config"]
    assert config["segment_name"] == "m/front"
    assert config["daemon_endpoint"] == {
        "protocol": "UDP",
        "address": "127.0.0.1",
        "port_value": 2000,
    }
    assert config["segment_fields"] == {
        "origin": "AWS::AppMesh::Proxy",
        "aws": {"app_mesh": {"mesh_name": "m", "virtual_node_name": "front"}},
    }
    assert "sampling_rule_manifest" not in config


def test_xray_daemon_address_port_segment_name_and_sampling():
    config = _boot(
        ENABLE_ENVOY_XRAY_TRACING="true",
        XRAY_DAEMON_PORT="3000",
        XRAY_SEGMENT_NAME="custom",
        XRAY_SAMPLING_RATE="0.2",
    )["tracing"]["http"]["typed_config"]
    assert config["daemon_endpoint"]["port_value"] == 3000
    assert config["segment_name"] == "custom"
    manifest = json.loads(config["sampling_rule_manifest"]["inline_string"])
    assert manifest == {"version": 2, "default": {"fixed_target": 1, "rate": 0.2}, "rules": []}
    address = _boot(ENABLE_ENVOY_XRAY_TRACING="1", AWS_XRAY_DAEMON_ADDRESS="10.0.0.9:2500")[
        "tracing"
    ]["http"]["typed_config"]
    assert (
        address["daemon_endpoint"]["address"] == "10.0.0.9"
        and address["daemon_endpoint"]["port_value"] == 2500
    )
    with pytest.raises(ValueError, match="static IPv4"):
        _boot(ENABLE_ENVOY_XRAY_TRACING="1", AWS_XRAY_DAEMON_ADDRESS="xray-daemon:2000")


def test_xray_default_rate_writes_no_manifest_and_bad_rate_is_refused():
    config = _boot(ENABLE_ENVOY_XRAY_TRACING="1", XRAY_SAMPLING_RATE="0.05")["tracing"]["http"][
        "typed_config"
    ]
    assert "sampling_rule_manifest" not in config
    manifest = _boot(ENABLE_ENVOY_XRAY_TRACING="1", XRAY_SAMPLING_RULE_MANIFEST="/rules.json")
    assert manifest["tracing"]["http"]["typed_config"]["sampling_rule_manifest"] == {
        "filename": "/rules.json"
    }
    with pytest.raises(ValueError, match="XRAY_SAMPLING_RATE"):
        _boot(ENABLE_ENVOY_XRAY_TRACING="1", XRAY_SAMPLING_RATE="2")


def test_datadog_and_jaeger_tracers_add_their_collector_clusters():
    datadog = _boot(ENABLE_ENVOY_DATADOG_TRACING="1")
    assert datadog["tracing"]["http"]["typed_config"]["service_name"] == "envoy-m/front"
    assert [c["name"] for c in datadog["static_resources"]["clusters"]] == [
        "xds_cluster",
        "datadog_agent",
    ]
    jaeger = _boot(ENABLE_ENVOY_JAEGER_TRACING="1", JAEGER_TRACER_VERSION="JSON")
    assert jaeger["tracing"]["http"]["typed_config"]["collector_endpoint_version"] == "HTTP_JSON"
    with pytest.raises(ValueError, match="single envoy trace driver"):
        _boot(ENABLE_ENVOY_XRAY_TRACING="1", ENABLE_ENVOY_JAEGER_TRACING="1")


def test_tracing_config_file_replaces_generated_tracing():
    assert "tracing" not in _boot(ENABLE_ENVOY_XRAY_TRACING="1", ENVOY_TRACING_CFG_FILE="/t.yaml")


def test_stats_tags_name_mesh_and_resource():
    tags = _tags(_boot(ENABLE_ENVOY_STATS_TAGS="1"))
    assert tags["appmesh.mesh"] == "m"
    assert tags["appmesh.virtual_node"] == "front"
    gateway = _tags(
        build_bootstrap(
            {"APPMESH_RESOURCE_NAME": "mesh/m/virtualGateway/gw", "ENABLE_ENVOY_STATS_TAGS": "1"},
            "h:1",
        )
    )
    assert gateway["appmesh.virtual_gateway"] == "gw"


def test_listener_tags_are_always_present_and_mesh_tags_only_on_request():
    tags = _tags(_boot())
    assert set(tags) == {
        "appmesh.listener_protocol",
        "appmesh.listener_port",
        "envoy_rds_route_config",
    }
    assert "stats_config" not in _boot(ENVOY_STATS_CONFIG_FILE="/stats.yaml")


def test_metric_extension_adds_dimensions_and_node_metadata():
    bootstrap = _boot(APPMESH_METRIC_EXTENSION_VERSION="1")
    assert bootstrap["node"]["metadata"]["aws.appmesh.metric_filter"] == {"level": "1"}
    tags = _tags(bootstrap)
    assert tags["Mesh"] == "m" and tags["VirtualNode"] == "front"
    assert "TargetVirtualNode" in tags and "TargetVirtualService" in tags
    assert "aws.appmesh.metric_filter" not in _boot()["node"]["metadata"]
    cloudwatch = _boot(
        APPMESH_METRIC_EXTENSION_VERSION="1", AWS_ENDPOINT_URL="http://127.0.0.1:4567"
    )["node"]["metadata"]["appmesh_local.cloudwatch"]
    assert cloudwatch == {
        "endpoint": "http://127.0.0.1:4567", "region": "us-east-1", "namespace": "CWAgent"
    }  # fmt: skip


def test_node_metadata_says_where_the_proxy_listens_for_the_control_plane():
    """What appmesh-local's control plane registers a proxy by: any Envoy started from
    this bootstrap joins the mesh as appmesh-proxy does."""
    metadata = _boot()["node"]["metadata"]
    assert metadata == {
        "appmesh_local.ingress_port": 15000,
        "appmesh_local.egress_port": 15001,
        "appmesh_local.app_host": "127.0.0.1",
        "appmesh_local.listen_address": "0.0.0.0",
        "appmesh_local.ingress_address": "127.0.0.1:15000",
        "appmesh_local.region": "us-east-1",
    }
    custom = _boot(
        APPMESH_INGRESS_PORT="16000",
        APPMESH_INGRESS_ADDRESS="10.0.0.5:16000",
        APPMESH_LISTEN_ADDRESS="127.0.0.1",
        APPMESH_MESH_OWNER="111122223333",
        AWS_REGION="eu-west-1",
    )
    assert custom["node"]["metadata"]["appmesh_local.ingress_address"] == "10.0.0.5:16000"
    assert custom["node"]["metadata"]["appmesh_local.mesh_owner"] == "111122223333"
    assert custom["node"]["metadata"]["appmesh_local.region"] == "eu-west-1"
    assert custom["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    with pytest.raises(ValueError, match="APPMESH_INGRESS_PORT"):
        _boot(APPMESH_INGRESS_PORT="http")


def test_dog_statsd_sink_over_udp_or_unix_socket():
    sink = _boot(ENABLE_ENVOY_DOG_STATSD="1")["stats_sinks"][0]
    assert sink["name"] == "envoy.stat_sinks.dog_statsd"
    assert sink["typed_config"]["address"] == {
        "socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": 8125}
    }
    custom = _boot(ENABLE_ENVOY_DOG_STATSD="1", STATSD_PORT="9125", STATSD_ADDRESS="10.0.0.2")[
        "stats_sinks"
    ][0]
    assert custom["typed_config"]["address"]["socket_address"]["port_value"] == 9125
    pipe = _boot(ENABLE_ENVOY_DOG_STATSD="1", STATSD_SOCKET_PATH="/var/run/dsd.sock")[
        "stats_sinks"
    ][0]
    assert pipe["typed_config"]["address"] == {"pipe": {"path": "/var/run/dsd.sock"}}
    assert "stats_sinks" not in _boot()
    with pytest.raises(ValueError, match="boolean"):
        _boot(ENABLE_ENVOY_DOG_STATSD="yes")


def test_stats_flush_interval_is_a_go_duration():
    assert _boot(ENVOY_STATS_FLUSH_INTERVAL="5000ms")["stats_flush_interval"] == "5s"
    assert "stats_flush_interval" not in _boot()


def test_sds_socket_path_adds_the_static_sds_cluster():
    clusters = _boot(APPMESH_SDS_SOCKET_PATH="/run/spire/sockets/agent.sock")["static_resources"][
        "clusters"
    ]
    sds = clusters[1]
    assert sds["name"] == "static_cluster_sds_unix_socket"
    assert sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "pipe": {"path": "/run/spire/sockets/agent.sock"}
    }


def test_runtime_layer_and_outlier_event_log():
    bootstrap = _boot(APPMESH_SET_TRACING_DECISION="false")
    static = bootstrap["layered_runtime"]["layers"][0]["static_layer"]
    assert static["envoy.reloadable_features.http_set_tracing_decision_in_request_id"] is False
    assert static["re2.max_program_size.error_level"] == 1000
    assert bootstrap["cluster_manager"]["outlier_detection"]["event_log_path"] == "/dev/stdout"


def test_everything_at_once_parses():
    _boot(
        APPMESH_RESOURCE_ARN=ARN,
        ENABLE_ENVOY_XRAY_TRACING="1",
        XRAY_SAMPLING_RATE="0.5",
        ENABLE_ENVOY_STATS_TAGS="1",
        APPMESH_METRIC_EXTENSION_VERSION="1",
        ENABLE_ENVOY_DOG_STATSD="1",
        ENVOY_STATS_FLUSH_INTERVAL="1m",
        APPMESH_SDS_SOCKET_PATH="/tmp/sds.sock",
        ENVOY_INITIAL_FETCH_TIMEOUT="5",
    )
