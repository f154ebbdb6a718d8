"""Settings the sidecar does not apply (HTTP/2, router...) are refused (NACKed), never ignored."""

from __future__ import annotations

from proxy_envoy import CLUSTER as CLUSTER_URL
from proxy_envoy import LISTENER as LISTENER_URL
from proxy_envoy import ROUTE_CONFIGURATION as ROUTES_URL
from proxy_envoy import ROUTER, cluster, http_listener, route, route_config, vhost

from proxy.config.unsupported import problem

OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def h2_cluster(settings: dict) -> dict:
    options = {"@type": "type.googleapis.com/" + OPTIONS,
               "explicit_http_config": {"http2_protocol_options": settings}}  # fmt: skip
    return cluster("c", [1], typed_extension_protocol_options={OPTIONS: options})


def test_plain_http2_clusters_are_served_and_tuned_ones_refused() -> None:
    assert problem(CLUSTER_URL, h2_cluster({})) is None
    reason = problem(CLUSTER_URL, h2_cluster({"max_concurrent_streams": 10}))
    assert reason is not None and "max_concurrent_streams" in reason
    legacy = cluster("c", [1], http2_protocol_options={"initial_stream_window_size": 65536})
    assert "initial_stream_window_size" in (problem(CLUSTER_URL, legacy) or "")


def test_an_hcm_with_http2_settings_is_refused() -> None:
    assert problem(LISTENER_URL, http_listener("l", [])) is None
    tuned = http_listener("l", [], http2_protocol_options={"max_concurrent_streams": 10})
    assert "http2_protocol_options" in (problem(LISTENER_URL, tuned) or "")


def test_allow_connect_is_served_and_upgrades_it_cannot_honour_are_refused() -> None:
    allow = http_listener("l", [], http2_protocol_options={"allow_connect": True})
    assert problem(LISTENER_URL, allow) is None
    websocket = http_listener("l", [], upgrade_configs=[{"upgrade_type": "websocket"}])
    assert problem(LISTENER_URL, websocket) is None
    connect = http_listener("l", [], upgrade_configs=[{"upgrade_type": "CONNECT"}])
    assert "CONNECT" in (problem(LISTENER_URL, connect) or "")
    chain = [{"upgrade_type": "websocket", "filters": [{"name": "envoy.filters.http.router"}]}]
    custom = http_listener("l", [], upgrade_configs=chain)
    assert "filter chain" in (problem(LISTENER_URL, custom) or "")


def test_grpc_health_checks_are_served_except_fields_not_applied() -> None:
    check = {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
             "healthy_threshold": 1, "grpc_health_check": {"service_name": "color"}}  # fmt: skip
    assert problem(CLUSTER_URL, h2_cluster_with_check(check)) is None
    check["grpc_health_check"] = {"initial_metadata": [{"header": {"key": "a", "value": "b"}}]}
    assert "initial_metadata" in (problem(CLUSTER_URL, h2_cluster_with_check(check)) or "")


def h2_cluster_with_check(check: dict) -> dict:
    return {**h2_cluster({}), "health_checks": [check]}


def test_a_buffer_limit_below_what_a_stream_may_hold_is_refused() -> None:
    """Envoy's default (1 MiB) and larger are kept (a stream holds less); smaller are not."""
    for limit, refused in ((1 << 20, False), (4 << 20, False), (32768, True)):
        listener = {**http_listener("l", []), "per_connection_buffer_limit_bytes": limit}
        assert (problem(LISTENER_URL, listener) is not None) == refused, limit
        small = cluster("c", [1], per_connection_buffer_limit_bytes={"value": limit})
        assert (problem(CLUSTER_URL, small) is not None) == refused, limit


def test_max_response_headers_kb_belongs_on_the_cluster_not_the_hcm() -> None:
    common = {"max_response_headers_kb": 100}
    hcm = http_listener("l", [], common_http_protocol_options=common)
    assert "http_connection_manager" in (problem(LISTENER_URL, hcm) or "")


def test_a_listener_wide_max_stream_duration_is_refused_not_ignored() -> None:
    hcm = http_listener("l", [], common_http_protocol_options={"max_stream_duration": "5s"})
    assert "max_stream_duration" in (problem(LISTENER_URL, hcm) or "")
    idle = http_listener("l", [], common_http_protocol_options={"idle_timeout": "300s"})
    assert problem(LISTENER_URL, idle) is None


def test_allow_connect_is_served_on_clusters_with_nothing_else() -> None:
    assert problem(CLUSTER_URL, h2_cluster({"allow_connect": True})) is None
    mixed = h2_cluster({"allow_connect": True, "max_concurrent_streams": 10})
    assert "max_concurrent_streams" in (problem(CLUSTER_URL, mixed) or "")


def test_internal_address_settings_are_refused_not_ignored() -> None:
    """Which requests are internal (x-envoy-* honoured) follows Envoy's default rule only."""
    hops = http_listener("l", [], xff_num_trusted_hops=1)
    assert "xff_num_trusted_hops" in (problem(LISTENER_URL, hops) or "")
    config = {"cidr_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}]}
    listed = http_listener("l", [], internal_address_config=config)
    assert "internal_address_config" in (problem(LISTENER_URL, listed) or "")


def router_listener(router: dict) -> dict:
    config = {"@type": ROUTER, **router}
    filters = [{"name": "envoy.filters.http.router", "typed_config": config}]
    return http_listener("l", [], http_filters=filters)


def test_router_settings_it_does_not_act_on_are_refused() -> None:
    assert problem(LISTENER_URL, router_listener({"respect_expected_rq_timeout": True})) is None
    assert problem(LISTENER_URL, router_listener({"dynamic_stats": True})) is None
    for setting in (
        {"suppress_envoy_headers": True},
        {"strict_check_headers": ["x-envoy-max-retries"]},
        {"start_child_span": True},
        {"dynamic_stats": False},
        {"upstream_http_filters": [{"name": "x"}]},
    ):
        name = next(iter(setting))
        assert name in (problem(LISTENER_URL, router_listener(setting)) or ""), setting


def test_route_actions_its_router_does_not_take_are_refused() -> None:
    """Mirroring, internal redirects and hedging beyond a per-try timeout would be
    dropped without a word; hedging on a per-try timeout is served."""
    plain = route_config("r", [vhost("v", ["*"], [route({"prefix": "/"}, "c", timeout="1s")])])
    assert problem(ROUTES_URL, plain) is None
    hedges = {"hedge_on_per_try_timeout": True, "initial_requests": 1}
    hedged_route = route({"prefix": "/"}, "c", hedge_policy=hedges)
    hedged = route_config("r", [vhost("v", ["*"], [hedged_route], hedge_policy=hedges)])
    assert problem(ROUTES_URL, hedged) is None
    asks = {
        "hedge_policy": {"additional_request_chance": {"numerator": 5}},
        "request_mirror_policies": [{"cluster": "shadow"}],
        "internal_redirect_policy": {"max_internal_redirects": 2},
    }
    for field, value in asks.items():
        routes = route_config(
            "r", [vhost("v", ["*"], [route({"prefix": "/"}, "c", **{field: value})])]
        )
        assert field in (problem(ROUTES_URL, routes) or ""), field
        inline = http_listener("l", routes["virtual_hosts"])
        assert field in (problem(LISTENER_URL, inline) or ""), field
    hedged_host = route_config("r", [vhost("v", ["*"], [], hedge_policy={"initial_requests": 2})])
    assert "hedge_policy" in (problem(ROUTES_URL, hedged_host) or "")


def test_balancing_it_does_not_do_is_refused_not_round_robin() -> None:
    for policy in ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"):
        assert problem(CLUSTER_URL, cluster("c", [1], lb_policy=policy)) is None
    for policy in ("RING_HASH", "MAGLEV"):
        assert policy in (problem(CLUSTER_URL, cluster("c", [1], lb_policy=policy)) or "")
    subsets = cluster("c", [1], lb_subset_config={"subset_selectors": [{"keys": ["v"]}]})
    assert "lb_subset_config" in (problem(CLUSTER_URL, subsets) or "")
