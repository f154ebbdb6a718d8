"""Small parts on their own: the timer wheel, stats rendering, access-log operators,
and the xDS client's reference following (pure functions, no control plane)."""

from __future__ import annotations

import asyncio

from proxy_envoy import cluster, eds_cluster, http_listener

from proxy.config.access_log import compile_json_format, compile_text_format
from proxy.observe.stats import Stats
from proxy.stream_info import StreamInfo
from proxy.timers import TimerWheel
from proxy.xds.state import eds_names, route_names, secret_names


async def test_timer_wheel_fires_in_order_never_early_and_cancels() -> None:
    loop = asyncio.get_running_loop()
    wheel = TimerWheel(loop)
    fired: list[tuple[str, float]] = []
    start = loop.time()
    for name, delay in (("late", 0.03), ("early", 0.01), ("cancelled", 0.02)):
        timer = wheel.call_later(delay, lambda n=name, d=delay: fired.append((n, d)))
        if name == "cancelled":
            timer.cancel()
    while len(fired) < 2:
        await asyncio.sleep(0.005)
    assert [name for name, _ in fired] == ["early", "late"]
    assert loop.time() - start >= 0.03 - 1e-9  # never before it is due (float slack only)
    assert len(wheel) == 0


def test_stats_text_and_prometheus() -> None:
    stats = Stats()
    scope = stats.scope("cluster", "svc", ("upstream_rq_total",))
    scope.counters["upstream_rq_total"] += 3
    scope.inc("upstream_rq_503")
    scope.gauge_fn("upstream_cx_active", lambda: 2)
    assert stats.render_text() == (
        "cluster.svc.upstream_cx_active: 2\n"
        "cluster.svc.upstream_rq_503: 1\n"
        "cluster.svc.upstream_rq_total: 3\n"
    )
    prom = stats.render_prometheus()
    assert 'envoy_cluster_upstream_rq{envoy_cluster_name="svc",envoy_response_code="503"} 1' in prom
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in prom


def _info() -> StreamInfo:
    info = StreamInfo(10.0, "HTTP/1.1", "10.0.0.9:5555", "10.0.0.1:15000", 7)
    info.start_time = 1_700_000_000.123
    info.end = 10.25
    info.request_headers = {":method": "GET", ":path": "/p", "x-thing": "abcdef"}
    info.response_headers = [("x-envoy-upstream-service-time", "4")]
    info.response_code = 503
    info.add_flag("UH")
    return info


def test_access_log_operators() -> None:
    render = compile_text_format(
        "%START_TIME% %START_TIME(%s.%3f)% %REQ(X-THING):3% %REQ(X-MISSING?:PATH)% "
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %DURATION% %RESPONSE_FLAGS% "
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %CONNECTION_ID% %UPSTREAM_HOST% %NOT_AN_OP%"
    )
    assert render(_info()) == (
        "2023-11-14T22:13:20.123Z 1700000000.123 abc /p 4 250 UH 10.0.0.9 7 - -\n"
    )
    as_json = compile_json_format({"code": "%RESPONSE_CODE%", "host": "%UPSTREAM_HOST%"})
    assert as_json(_info()) == '{"code":503,"host":null}\n'


def test_xds_client_follows_references_to_routes_endpoints_and_secrets() -> None:
    listener = http_listener("l", rds="rds-a")
    sds = {"name": "cert", "sds_config": {"ads": {}}}
    agent = {"name": "spiffe://td", "sds_config": {"api_config_source": {"api_type": "GRPC"}}}
    clusters = [
        eds_cluster("e1"),
        eds_cluster("e2", eds_cluster_config={"service_name": "svc-2"}),
        cluster("static", [80], transport_socket={"typed_config": {
            "common_tls_context": {"tls_certificate_sds_secret_configs": [sds, agent]}}}),
    ]  # fmt: skip
    assert list(route_names([listener])) == ["rds-a"]
    assert list(eds_names(clusters)) == ["e1", "svc-2"]
    assert list(secret_names(clusters)) == ["cert"]  # the agent's are not the xDS server's


def test_a_clusters_breakers_count_in_one_place_and_follow_new_limits():
    """Envoy's ResourceManager: can_create / inc / dec, and a config version that lowers
    a limit opens the breaker over what is already in flight (nothing is forgotten)."""
    from proxy.config.cluster import Thresholds
    from proxy.upstream.resource_manager import ResourceManager

    resources = ResourceManager(Thresholds(max_connections=2))
    connections = resources.connections
    assert connections.can_create()
    connections.inc()
    connections.inc()
    assert not connections.can_create() and connections.open
    resources.update(Thresholds(max_connections=1))
    connections.dec()
    assert connections.count == 1 and connections.open
    resources.update(Thresholds(max_connections=3))
    assert connections.can_create() and not connections.open
    assert resources.retries.max == 3  # Envoy's default max_retries
