"""The pure parts of the sidecar's tracing and metrics: bootstrap, sampling, formats."""

from __future__ import annotations

import json

import pytest

from envoy_bootstrap.bootstrap import build_bootstrap
from proxy.config.bootstrap import compile_bootstrap
from proxy.config.observability import MeshIdentity, ObservabilityConfig
from proxy.observe.cloudwatch import metric_data
from proxy.observe.dogstatsd import extension_lines, pack
from proxy.observe.metrics_extension import MetricPoint, MetricsExtension, Timing
from proxy.observe.sampling import Sampler, SamplingRule, wildcard
from proxy.observe.stats import Stats
from proxy.observe.tracing import parse_trace_header
from proxy.observe.xray_segments import client_address, outcome
from proxy.stream_info import StreamInfo

NODE = "arn:aws:appmesh:us-east-1:123456789012:mesh/demo/virtualNode/front"


def config(**env: str) -> ObservabilityConfig:
    """What the proxy compiles from the bootstrap the image's environment builds."""
    bootstrap = build_bootstrap({"APPMESH_RESOURCE_ARN": NODE, **env}, "127.0.0.1:4567")
    return compile_bootstrap(bootstrap).observability


def test_environment_defaults_follow_the_envoy_image():
    off = config()
    assert off.tracing is None and not off.metrics.extension and off.metrics.dogstatsd is None
    on = config(ENABLE_ENVOY_XRAY_TRACING="1", APPMESH_METRIC_EXTENSION_VERSION="1")
    assert on.tracing is not None
    assert on.tracing.segment_name == "demo/front"
    assert on.tracing.daemon == ("127.0.0.1", 2000)
    assert on.tracing.manifest is None and on.tracing.manifest_path is None  # X-Ray's 5%
    assert on.metrics.flush_interval == 5.0
    assert on.metrics.cloudwatch is None  # no endpoint named: no CloudWatch
    assert on.identity == MeshIdentity("demo", "virtualNode", "front")


@pytest.mark.parametrize(
    ("env", "daemon"),
    [
        ({"XRAY_DAEMON_PORT": "2001"}, ("127.0.0.1", 2001)),
        ({"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.2:3000"}, ("127.0.0.2", 3000)),
        ({"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.3", "XRAY_DAEMON_PORT": "2002"}, ("127.0.0.3", 2002)),
    ],
)
def test_xray_daemon_address(env, daemon):
    assert config(ENABLE_ENVOY_XRAY_TRACING="true", **env).tracing.daemon == daemon


@pytest.mark.parametrize("address", ["tcp:127.0.0.1:2000 udp:127.0.0.3:2002", "localhost:2003"])
def test_xray_daemon_address_must_be_a_static_ip_as_in_the_image(address):
    """The image refuses an X-Ray SDK address form or a host name (its X-Ray extension
    cannot resolve one), so the sidecar refuses it too, with the image's message."""
    with pytest.raises(ValueError, match="static IPv4 or IPv6"):
        config(ENABLE_ENVOY_XRAY_TRACING="1", AWS_XRAY_DAEMON_ADDRESS=address)


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5.0), ("5000ms", 5.0), ("1m30s", 90.0)])
def test_flush_interval_is_a_go_duration(text, seconds):
    assert config(ENVOY_STATS_FLUSH_INTERVAL=text).metrics.flush_interval == seconds


@pytest.mark.parametrize(
    "env",
    [
        {"ENVOY_STATS_FLUSH_INTERVAL": "5"},
        {"ENABLE_ENVOY_XRAY_TRACING": "1", "XRAY_SAMPLING_RATE": "1.5"},
        {"ENABLE_ENVOY_XRAY_TRACING": "yes"},
    ],
)
def test_values_the_image_refuses_are_refused(env):
    with pytest.raises(ValueError):
        config(**env)


def test_cloudwatch_and_statsd_settings():
    metrics = config(
        APPMESH_METRIC_EXTENSION_VERSION="1",
        AWS_ENDPOINT_URL="http://127.0.0.1:4567",
        AWS_REGION="eu-west-1",
        ENABLE_ENVOY_DOG_STATSD="1",
        STATSD_PORT="9125",
    ).metrics
    assert metrics.cloudwatch is not None
    assert (metrics.cloudwatch.region, metrics.cloudwatch.namespace) == ("eu-west-1", "CWAgent")
    assert metrics.dogstatsd == ("127.0.0.1", 9125)
    path = config(ENABLE_ENVOY_DOG_STATSD="1", STATSD_SOCKET_PATH="/tmp/dsd.sock").metrics
    assert path.dogstatsd == "/tmp/dsd.sock"


def test_the_default_rule_takes_one_a_second_then_the_rate():
    rule = SamplingRule(fixed_target=1, rate=0.0)
    assert [rule.sample(100.2), rule.sample(100.5), rule.sample(101.0)] == [True, False, True]
    always = SamplingRule(fixed_target=0, rate=0.5)
    assert always.sample(0, draw=lambda: 0.4) and not always.sample(0, draw=lambda: 0.6)


def test_manifest_rules_match_with_wildcards_first_match_wins():
    sampler = Sampler.from_manifest(
        {
            "version": 2,
            "rules": [
                {"host": "*.local", "http_method": "POST", "url_path": "/api/*",
                 "fixed_target": 0, "rate": 1.0},
                {"host": "*", "http_method": "*", "url_path": "/health",
                 "fixed_target": 0, "rate": 0.0},
            ],
            "default": {"fixed_target": 0, "rate": 0.0},
        }
    )  # fmt: skip
    assert sampler.decide("b.local", "post", "/api/v1")
    assert not sampler.decide("b.local", "GET", "/api/v1")
    assert not sampler.decide("x", "GET", "/health")
    assert wildcard("a?c")("ABC") and not wildcard("a?c")("abbc")
    v1 = Sampler.from_manifest(
        {"version": 1, "rules": [{"service_name": "s*", "http_method": "*", "url_path": "*",
                                  "fixed_target": 0, "rate": 1}],
         "default": {"fixed_target": 0, "rate": 0}}
    )  # fmt: skip
    assert v1.decide("svc", "GET", "/") and not v1.decide("other", "GET", "/")


def test_a_bad_manifest_falls_back_to_the_default_rule(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"version": 3}))
    sampler = Sampler.from_settings(0.25, str(path))
    assert sampler.rules == [] and sampler.default.rate == 0.25


def test_trace_header_parsing():
    root = "1-5759e988-bd862e3fe1be46a994272793"
    assert parse_trace_header(f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1") == (
        root,
        "53995c3f42cd8ad8",
        True,
    )
    assert parse_trace_header(f"Root={root}; Sampled=0") == (root, None, False)
    assert parse_trace_header(f"Root={root};Sampled=?") == (root, None, None)
    assert parse_trace_header("Root=1-abc;Parent=xyz") == (None, None, None)


def test_outcome_flags_and_client_address():
    assert outcome(200) == {} and outcome(None) == {}
    assert outcome(404) == {"error": True}
    assert outcome(429) == {"error": True, "throttle": True}
    assert outcome(503) == {"fault": True}
    assert client_address({}, "10.0.0.1:5555") == ("10.0.0.1", False)
    assert client_address({"x-forwarded-for": "10.0.0.1"}, "10.0.0.1:5555") == ("10.0.0.1", False)
    forwarded = {"x-forwarded-for": "203.0.113.9, 10.0.0.1"}
    assert client_address(forwarded, "10.0.0.1:5555") == ("203.0.113.9", True)


def _request(stat_prefix: str, node: str, service: str, **fields) -> StreamInfo:
    """A finished request's record, as the router leaves it for the observers."""
    info = StreamInfo(0.0, "HTTP/1.1", "127.0.0.1:5000", "127.0.0.1:15001", 1)
    values = {"bytes_received": 2, "bytes_sent": 3, "attempt_count": 1, "response_code": 200,
              "first_upstream_tx": 1.0, "end": 1.004, "stat_prefix": stat_prefix,
              "target_virtual_node": node, "target_virtual_service": service}  # fmt: skip
    for name, value in {**values, **fields}.items():
        setattr(info, name, value)
    return info


def test_the_extension_counts_targets_and_reports_deltas():
    stats = Stats()
    stats.scope("http", "ingress", ("downstream_rq_total",)).counters["downstream_rq_total"] = 4
    extension = MetricsExtension(MeshIdentity("demo", "virtualNode", "front"), stats, set())
    for code in (200, 201, 503):
        extension.on_request(_request("egress", "b", "b.local", response_code=code))
    extension.on_request(_request("ingress", "", "", request_headers={
        "content-type": "application/grpc"}))  # fmt: skip
    first = {(p.name, p.dims[-1][1]): p for p in extension.collect()}
    assert first[("RequestCount", "front")].value == 4
    assert first[("GrpcRequestCount", "front")].value == 1
    assert first[("ProcessedBytes", "front")].value == 5
    assert first[("RequestCountPerTarget", "b.local")].value == 3
    assert first[("HTTPCode_Target_2XX_Count", "b.local")].value == 2
    assert first[("HTTPCode_Target_5XX_Count", "b.local")].value == 1
    assert ("HTTPCode_Target_3XX_Count", "b.local") not in first  # zero deltas are left out
    timing = first[("TargetResponseTime", "b.local")].timing
    assert timing is not None and timing.count == 3 and round(timing.maximum) == 4
    extension.on_request(_request("egress", "b", "b.local"))
    second = {(p.name, p.dims[-1][1]): p.value for p in extension.collect()}
    assert second[("RequestCountPerTarget", "b.local")] == 1
    assert ("RequestCount", "front") not in second
    assert "ActiveConnectionCount" in {name for name, _ in second}  # gauges always go out


def test_sink_formats():
    dims = (("Mesh", "demo"), ("VirtualNode", "front"))
    points = [
        MetricPoint("RequestCount", dims, "counter", 5),
        MetricPoint("ActiveConnectionCount", dims, "gauge", 2),
        MetricPoint(
            "TargetResponseTime", dims, "timing", 3.0, Timing(2, 3.0, 1.0, 2.0, (1.0, 2.0))
        ),
    ]
    lines = list(extension_lines(points, (("appmesh.mesh", "demo"), ("Mesh", "demo"))))
    assert lines == [
        "envoy.appmesh.RequestCount:5|c|#Mesh:demo,VirtualNode:front,appmesh.mesh:demo",
        "envoy.appmesh.ActiveConnectionCount:2|g|#Mesh:demo,VirtualNode:front,appmesh.mesh:demo",
        "envoy.appmesh.TargetResponseTime:1.000|ms|#Mesh:demo,VirtualNode:front,appmesh.mesh:demo",
        "envoy.appmesh.TargetResponseTime:2.000|ms|#Mesh:demo,VirtualNode:front,appmesh.mesh:demo",
    ]
    datagrams = list(pack(iter(["x" * 700] * 3), limit=1432))
    assert [len(d) for d in datagrams] == [1401, 700]
    data = metric_data(points, 1700000000.0)
    assert data[0]["MetricName"] == "envoy.appmesh.RequestCount" and data[0]["Value"] == 5.0
    assert data[0]["Dimensions"] == [{"Name": "Mesh", "Value": "demo"},
                                     {"Name": "VirtualNode", "Value": "front"}]  # fmt: skip
    assert data[2]["StatisticValues"] == {"SampleCount": 2, "Sum": 3.0, "Minimum": 1.0,
                                          "Maximum": 2.0}  # fmt: skip
    assert data[2]["Unit"] == "Milliseconds"
