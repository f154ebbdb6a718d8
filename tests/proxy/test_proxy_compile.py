"""Compiling Envoy resources: defaults, tolerance of unknown fields, what gets NACKed."""

from __future__ import annotations

import pytest
from proxy_envoy import CLUSTER, cluster, http_listener, route, route_config, tcp_listener, vhost

from proxy.config.compile import compile_resources
from proxy.config.protojson import ConfigError, duration
from proxy.config.retry import (
    CONNECT_FAILURE,
    CONNECTION_TERMINATION,
    OVERFLOW,
    PER_TRY_TIMEOUT,
    compile_retry_policy,
)
from proxy.config.routing import RequestView, compile_route_configuration


def _view(path: str, **headers: str) -> RequestView:
    return RequestView(path, {":path": path, **headers})


def test_durations_in_both_json_forms() -> None:
    assert duration("1.5s") == 1.5
    assert duration({"seconds": 2, "nanos": 500_000_000}) == 2.5
    assert duration(None, 15.0) == 15.0
    with pytest.raises(ConfigError):
        duration("15")


def test_unknown_fields_and_types_are_ignored() -> None:
    resources = [
        {**cluster("c", [80]), "future_field": {"x": 1}, "transport_socket_matches": []},
        {"@type": "type.googleapis.com/envoy.config.core.v3.Unknown", "name": "u"},
        http_listener("l", [vhost("v", ["*"], [route({"prefix": "/"}, "c")])],
                      some_new_hcm_option=True),
    ]  # fmt: skip
    compiled = compile_resources(resources, "7")
    assert set(compiled.clusters) == {"c"}
    assert set(compiled.listeners) == {"l"}
    assert compiled.version == "7"


def test_envoy_defaults_are_filled_in() -> None:
    compiled = compile_resources(
        [cluster("c", [80], outlier_detection={}), http_listener("l", [])], "1"
    )
    config = compiled.clusters["c"]
    assert config.thresholds.max_connections == 1024
    assert config.thresholds.max_retries == 3
    assert config.outlier is not None
    assert (config.outlier.consecutive_5xx, config.outlier.max_ejection_percent) == (5, 10.0)
    assert config.panic_threshold == 50.0
    hcm = compiled.listeners["l"].filter_chains[0].http
    assert hcm is not None and hcm.server_name == "envoy" and hcm.generate_request_id


@pytest.mark.parametrize(
    "resource, message",
    [
        ({"@type": CLUSTER}, "without name"),
        (http_listener("l", [vhost("v", [], [])]), "no domains"),
        (http_listener("l", [vhost("a", ["x"], []), vhost("b", ["x"], [])]), "duplicate domain"),
        (http_listener("l", [vhost("v", ["*"], [{"match": {"prefix": "/"}, "route": {}}])]),
         "without cluster"),
        (tcp_listener("t"), "no cluster"),
        ({**cluster("c", [80]), "connect_timeout": "soon"}, "invalid duration"),
    ],
)  # fmt: skip
def test_invalid_resources_are_refused_with_the_reason(resource: dict, message: str) -> None:
    """A resource without a name fails the whole set; a listener or cluster that does not
    compile is left out on its own, with its reason, as Envoy loads each one apart."""
    try:
        compiled = compile_resources([resource], "1")
    except ConfigError as whole:
        reasons = [str(whole)]
    else:
        reasons = [why for names in compiled.refused.values() for why in names.values()]
        assert not compiled.listeners and not compiled.clusters
    assert len(reasons) == 1 and message in reasons[0], reasons


def test_route_timeouts_default_to_15s_and_zero_disables() -> None:
    table = compile_route_configuration(
        route_config("r", [vhost("v", ["*"], [
            route({"prefix": "/default"}, "c"),
            route({"prefix": "/off"}, "c", timeout="0s"),
            route({"prefix": "/short"}, "c", timeout="0.25s"),
        ])])
    )  # fmt: skip
    timeouts = [table.route("x", _view(p)).action.timeout for p in ("/default", "/off", "/short")]
    assert timeouts == [15.0, None, 0.25]


def test_header_matcher_edge_cases() -> None:
    routes = [
        route({"prefix": "/", "headers": [{"name": "x", "exact_match": "a", "invert_match": True}]},
              "not-a"),
        route({"prefix": "/"}, "fallback"),
    ]  # fmt: skip
    table = compile_route_configuration(route_config("r", [vhost("v", ["*"], routes)]))
    # An inverted value match never matches a missing header (Envoy semantics).
    assert table.route("h", _view("/")).action.cluster == "fallback"
    assert table.route("h", _view("/", x="b")).action.cluster == "not-a"
    assert table.route("h", _view("/", x="a")).action.cluster == "fallback"


def test_vhost_and_route_level_retry_policies() -> None:
    vh = vhost("v", ["*"], [route({"prefix": "/own"}, "c", retry_policy={"retry_on": "reset"}),
                            route({"prefix": "/"}, "c")],
               retry_policy={"retry_on": "5xx", "num_retries": 4})  # fmt: skip
    table = compile_route_configuration(route_config("r", [vh]))
    inherited = table.route("h", _view("/x")).action.retry_policy
    own = table.route("h", _view("/own")).action.retry_policy
    assert inherited.num_retries == 4 and inherited.retriable_response(503, {})
    assert own.num_retries == 1 and not own.retriable_response(503, {})


def test_retry_on_semantics_follow_envoy() -> None:
    def policy(retry_on: str, **extra):
        return compile_retry_policy({"retry_on": retry_on, **extra})

    assert policy("5xx").retriable_reset(CONNECTION_TERMINATION)
    assert policy("5xx").retriable_reset(PER_TRY_TIMEOUT)
    assert policy("gateway-error").retriable_response(504, {})
    assert not policy("gateway-error").retriable_response(500, {})
    assert policy("connect-failure").retriable_reset(CONNECT_FAILURE)
    assert not policy("connect-failure").retriable_reset(CONNECTION_TERMINATION)
    assert not policy("5xx,reset,connect-failure").retriable_reset(OVERFLOW)
    assert policy("retriable-4xx").retriable_response(409, {})
    assert policy("unavailable").retriable_response(200, {"grpc-status": "14"})
    headers = [{"name": "x-retry", "present_match": True}]
    assert policy("retriable-headers", retriable_headers=headers).retriable_response(
        200, {"x-retry": "1"}
    )
    assert not policy("refused-stream").retriable_response(503, {})
