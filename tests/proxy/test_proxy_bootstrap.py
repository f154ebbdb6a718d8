"""The sidecar starts from an Envoy v3 bootstrap, and refuses what it cannot honour.

The bootstrap comes from ``envoy_bootstrap`` (the App Mesh image's environment), the
same one ``appmesh-local bootstrap`` prints for a real Envoy, so these tests build it
the way a task definition would and compile it the way ``appmesh-proxy`` starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from proxy_envoy import simple_proxy
from proxy_harness import backends, client, fetch_many, wait_until

from envoy_bootstrap.bootstrap import build_bootstrap
from proxy.config.bootstrap import compile_bootstrap, load_bootstrap
from proxy.config.protojson import ConfigError
from proxy.observe.stats import Stats
from proxy.server import ProxyServer
from proxy.xds.rest import XdsClient

NODE = "arn:aws:appmesh:us-east-1:123456789012:mesh/demo/virtualNode/front"
ROOT = Path(__file__).resolve().parents[2]


def bootstrap(**env: str) -> dict:
    return build_bootstrap({"APPMESH_RESOURCE_ARN": NODE, **env}, "127.0.0.1:4567")


def test_the_image_environment_compiles_into_the_proxys_settings():
    compiled = compile_bootstrap(bootstrap(ENVOY_ADMIN_ACCESS_PORT="9911"))
    assert compiled.node_id == NODE and compiled.node["cluster"] == NODE
    assert compiled.xds_endpoint == "http://127.0.0.1:4567"
    assert compiled.xds_endpoints == ("http://127.0.0.1:4567",)
    assert compiled.admin_address == ("127.0.0.1", 9911)
    assert compiled.admin_access_log == "/tmp/envoy_admin_access.log"
    assert compiled.outlier_event_log == "/dev/stdout"
    assert compiled.metadata("ingress_address") == "127.0.0.1:15000"
    observability = compiled.observability
    assert observability.tracing is None and not observability.metrics.extension
    names = [name for name, _ in observability.metrics.tags.regex]
    assert names == ["appmesh.listener_protocol", "appmesh.listener_port", "envoy_rds_route_config"]


def test_tracing_stats_sinks_and_tags_come_from_the_bootstrap():
    compiled = compile_bootstrap(
        bootstrap(
            ENABLE_ENVOY_XRAY_TRACING="1",
            XRAY_SAMPLING_RATE="0.5",
            ENABLE_ENVOY_STATS_TAGS="1",
            ENABLE_ENVOY_DOG_STATSD="1",
            STATSD_PORT="9125",
            ENVOY_STATS_FLUSH_INTERVAL="2s",
            APPMESH_METRIC_EXTENSION_VERSION="1",
        )
    )
    tracing = compiled.observability.tracing
    assert tracing is not None and tracing.daemon == ("127.0.0.1", 2000)
    assert tracing.segment_name == "demo/front"
    assert tracing.aws == {"app_mesh": {"mesh_name": "demo", "virtual_node_name": "front"}}
    assert tracing.manifest["default"] == {"fixed_target": 1, "rate": 0.5}
    metrics = compiled.observability.metrics
    assert metrics.extension and metrics.dogstatsd == ("127.0.0.1", 9125)
    assert metrics.flush_interval == 2.0
    assert metrics.tags.fixed == (
        ("appmesh.mesh", "demo"),
        ("appmesh.virtual_node", "front"),
        ("Mesh", "demo"),
        ("VirtualNode", "front"),
    )


def _second_sds_agent() -> dict:
    spec = bootstrap(APPMESH_SDS_SOCKET_PATH="/tmp/sds.sock")
    clusters = spec["static_resources"]["clusters"]
    clusters.append({**clusters[-1], "name": "another_agent"})
    return spec


def test_the_image_sds_socket_is_the_local_sds_agent() -> None:
    """``APPMESH_SDS_SOCKET_PATH`` makes the static pipe cluster the proxy's SDS agent."""
    config = compile_bootstrap(bootstrap(APPMESH_SDS_SOCKET_PATH="/run/spire/agent.sock"))
    assert config.sds_agent is not None
    assert config.sds_agent.cluster == "static_cluster_sds_unix_socket"
    assert config.sds_agent.socket_path == "/run/spire/agent.sock"
    assert compile_bootstrap(bootstrap()).sds_agent is None


def _with(section: str, value: object) -> dict:
    spec = bootstrap()
    spec[section] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (bootstrap(ENABLE_ENVOY_DATADOG_TRACING="1"), "tracer envoy.tracers.datadog"),
        (bootstrap(ENABLE_ENVOY_JAEGER_TRACING="1"), "tracer envoy.tracers.zipkin"),
        (_second_sds_agent(), "a second SDS agent"),
        (bootstrap(ENVOY_INITIAL_FETCH_TIMEOUT="5"), "initial_fetch_timeout"),
        (_with("overload_manager", {}), "overload_manager"),
        (_with("stats_sinks", [{"name": "envoy.stat_sinks.statsd"}]), "stats sink"),
        (_with("stats_config", {"stats_matcher": {}}), "stats_matcher"),
        (_with("layered_runtime", {"layers": [{"name": "d", "disk_layer": {}}]}), "layer d"),
        (
            _with("layered_runtime", {"layers": [{"name": "s", "static_layer": {"x.y": 1}}]}),
            "runtime key x.y",
        ),
        (
            _with(
                "dynamic_resources",
                {
                    "ads_config": {"api_type": "GRPC", "grpc_services": [{"google_grpc": {}}]},
                    "lds_config": {"ads": {}},
                    "cds_config": {"ads": {}},
                },
            ),
            "google_grpc",
        ),
    ],
)
def test_what_the_proxy_cannot_honour_is_refused_in_one_line(spec, reason):
    with pytest.raises(ConfigError) as refused:
        compile_bootstrap(spec)
    message = str(refused.value)
    assert reason in message and "\n" not in message and message.startswith("bootstrap:")


def test_a_static_listener_is_refused_rather_than_left_unbound():
    spec = bootstrap()
    spec["static_resources"]["listeners"] = [{"name": "static"}]
    with pytest.raises(ConfigError, match=r"static_resources\.listeners"):
        compile_bootstrap(spec)


def test_appmesh_proxy_refuses_to_start_on_a_bootstrap_it_cannot_honour(tmp_path):
    """From the command line as a task would run it: exit 2, one line naming the field."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "APPMESH_RESOURCE_ARN": NODE}
    env["ENABLE_ENVOY_DATADOG_TRACING"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "proxy.main"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "appmesh-proxy: bootstrap: tracer envoy.tracers.datadog is not supported by "
        "appmesh-proxy (X-Ray is)"
    ]
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(_with("watchdogs", {})))
    done = subprocess.run(
        [sys.executable, "-m", "proxy.main", "-c", str(path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "watchdogs is not supported" in done.stderr


def test_a_bootstrap_file_may_be_yaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(bootstrap()))
    assert compile_bootstrap(load_bootstrap(str(path))).node_id == NODE


async def test_admin_writes_its_access_log_and_dumps_the_bootstrap(tmp_path):
    log = tmp_path / "admin_access.log"
    compiled = compile_bootstrap(
        bootstrap(ENVOY_ADMIN_ACCESS_LOG_FILE=str(log), ENVOY_ADMIN_ACCESS_PORT="0")
    )
    server = ProxyServer(admin_address=("127.0.0.1", 0), bootstrap=compiled)
    await server.start()
    try:
        assert server.admin_address is not None
        url = f"http://127.0.0.1:{server.admin_address[1]}/config_dump"
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            dump = await reply.json()
        boot = dump["configs"][0]["bootstrap"]
        assert boot["node"]["id"] == NODE and "dynamic_resources" in boot
    finally:
        await server.stop()
    await asyncio.sleep(0)
    line = log.read_text()
    assert '"GET /config_dump HTTP/1.1" 200' in line


async def test_outlier_ejections_go_to_the_bootstraps_event_log(tmp_path):
    """``cluster_manager.outlier_detection.event_log_path``, always in the image's
    bootstrap: one Envoy ``OutlierDetectionEvent`` JSON line per ejection and return."""
    events = tmp_path / "outlier.log"
    compiled = compile_bootstrap(bootstrap(ENVOY_OUTLIER_DETECTION_EVENT_LOG_PATH=str(events)))
    state = {"failing": True}

    async def flaky(request: web.Request) -> web.Response:
        return web.Response(status=500 if state["failing"] else 200, text="flaky")

    async with backends("steady", ("flaky", flaky)) as started:
        outlier = {"consecutive_5xx": 3, "interval": "0.05s", "base_ejection_time": "0.1s"}
        resources = simple_proxy("two", [b.port for b in started], outlier_detection=outlier)
        server = ProxyServer(admin_address=None, bootstrap=compiled)
        await server.start()
        try:
            await server.apply(resources, "1")
            url = f"http://127.0.0.1:{server.listener_address('ingress')[1]}/"
            async with client() as session:
                await fetch_many(session, url, 12, concurrency=1)
                state["failing"] = False
                cluster = server.ctx.clusters.get("two")
                assert cluster is not None
                await wait_until(lambda: not any(h.ejected for h in cluster.hosts.values()))
        finally:
            await server.stop()
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    flaky_port = started[1].port
    assert [(e["action"], e["type"]) for e in lines] == [
        ("EJECT", "CONSECUTIVE_5XX"),
        ("UNEJECT", "CONSECUTIVE_5XX"),
    ]
    assert lines[0]["cluster_name"] == "two"
    assert lines[0]["upstream_url"] == f"127.0.0.1:{flaky_port}"
    assert lines[0]["num_ejections"] == 1 and lines[0]["enforced"] is True
    assert lines[0]["timestamp"].endswith("Z")


def test_the_images_listener_tags_are_cut_from_stat_names_as_envoy_does():
    """A node with several listeners has stat prefixes ``ingress.<protocol>.<port>``; the
    image's regex tags turn them into labels, as Envoy's tag producer does."""
    tags = compile_bootstrap(bootstrap(ENABLE_ENVOY_STATS_TAGS="1")).observability.metrics.tags
    stats = Stats()
    stats.scope("http", "ingress.http.8080", ("downstream_rq_total",)).counters[
        "downstream_rq_total"
    ] = 7
    stats.scope("http", "egress", ("downstream_rq_total",)).counters["downstream_rq_total"] = 2
    text = stats.render_prometheus(tags)
    assert (
        'envoy_http_downstream_rq_total{appmesh_mesh="demo",appmesh_virtual_node="front",'
        'envoy_http_conn_manager_prefix="ingress",appmesh_listener_protocol="http",'
        'appmesh_listener_port="8080"} 7'
    ) in text
    assert (
        'envoy_http_downstream_rq_total{appmesh_mesh="demo",appmesh_virtual_node="front",'
        'envoy_http_conn_manager_prefix="egress"} 2'
    ) in text


async def test_a_bootstrap_pointed_at_the_grpc_ads_port_says_so(caplog):
    """appmesh-local bootstrap's default xDS address is the gRPC ADS port a real Envoy
    needs; appmesh-proxy speaks REST xDS, and says which port to use instead."""
    grpc = pytest.importorskip("grpc")
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    xds = XdsClient(f"127.0.0.1:{port}", {"id": NODE}, lambda *_: asyncio.sleep(0))
    try:
        with caplog.at_level("WARNING", logger="proxy.xds"):
            await xds.start()
            await wait_until(lambda: "does not answer HTTP/1.1" in caplog.text)
    finally:
        await xds.stop()
        await server.stop(0)
    assert "main port (4567)" in caplog.text


def test_every_endpoint_of_the_ads_cluster_is_a_replica_to_fail_over_to():
    spec = build_bootstrap({"APPMESH_RESOURCE_ARN": NODE}, "127.0.0.1:4567,127.0.0.1:4568")
    assert compile_bootstrap(spec).xds_endpoints == (
        "http://127.0.0.1:4567",
        "http://127.0.0.1:4568",
    )
    cluster = spec["static_resources"]["clusters"][0]
    cluster["load_assignment"]["endpoints"].append(
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "::1", "port_value": 4569}}}}]}
    )  # fmt: skip
    assert compile_bootstrap(spec).xds_endpoints[-1] == "http://[::1]:4569"


def test_the_api_type_picks_the_transport_and_anything_else_is_refused():
    sotw = build_bootstrap({"APPMESH_RESOURCE_ARN": NODE}, "127.0.0.1:15010")
    assert sotw["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    assert not compile_bootstrap(sotw).xds_delta
    env = {"APPMESH_RESOURCE_ARN": NODE, "APPMESH_XDS_DELTA": "1"}
    delta = build_bootstrap(env, "127.0.0.1:15010")
    assert delta["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert compile_bootstrap(delta).xds_delta
    image = build_bootstrap(env, "127.0.0.1:15011", like_appmesh_image=True)
    assert image["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"  # as the image had
    for api_type in ("REST", "AGGREGATED_DELTA_GRPC"):
        delta["dynamic_resources"]["ads_config"]["api_type"] = api_type
        with pytest.raises(ConfigError, match=f"api_type {api_type} is not supported"):
            compile_bootstrap(delta)


def test_bootstrap_xds_delta_is_refused_with_like_appmesh_image():
    command = [sys.executable, "-m", "appmesh_api.cli", "bootstrap", "--resource-arn", NODE]
    printed = subprocess.run([*command, "--xds-delta"], capture_output=True, text=True, timeout=60)
    assert json.loads(printed.stdout)["dynamic_resources"]["ads_config"]["api_type"] == (
        "DELTA_GRPC"
    )
    both = [*command, "--xds-delta", "--like-appmesh-image"]
    refused = subprocess.run(both, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "State of the World" in refused.stderr


def test_the_ads_clusters_connection_keepalive_is_the_delta_clients():
    """The bootstrap names HTTP/2 PINGs for the ADS connection, as a real Envoy reads
    them; the sidecar honours the same field (jitter 15 % when unset, Envoy's default),
    an interval of 0 means none, and a field it does not know is refused."""
    spec = bootstrap(APPMESH_XDS_DELTA="1")
    cluster = spec["static_resources"]["clusters"][0]
    options = next(iter(cluster["typed_extension_protocol_options"].values()))
    h2 = options["explicit_http_config"]["http2_protocol_options"]
    assert h2["connection_keepalive"] == {"interval": "30s", "timeout": "10s"}
    assert compile_bootstrap(spec).xds_keepalive == (30.0, 10.0, 0.15)
    h2["connection_keepalive"] = {"interval": "0s", "timeout": "1s"}
    assert compile_bootstrap(spec).xds_keepalive == (0.0, 1.0, 0.15)
    h2["connection_keepalive"] = {"timeout": "2s", "interval_jitter": {"value": 0}}
    assert compile_bootstrap(spec).xds_keepalive == (0.0, 2.0, 0.0)
    h2["connection_keepalive"] = {"interval": "5s", "timeout": "1s", "loud": True}
    with pytest.raises(ConfigError, match="connection_keepalive"):
        compile_bootstrap(spec)
    del h2["connection_keepalive"]
    assert compile_bootstrap(spec).xds_keepalive is None
