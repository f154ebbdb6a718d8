"""Retry policies: the user's, mapped event by event, and App Mesh's invisible default."""

from envoy_bootstrap import retries

from .mesh_factory import Mesh, http_route, listener, seconds, vhost


def _policy(route_spec: dict, protocol: str = "http") -> dict:
    mesh = (
        Mesh()
        .node("client", backends=["svc.local"])
        .node("blue", listener(8080, protocol))
        .router("r", (80, protocol))
        .service("svc.local", router="r")
        .route("r", "route", route_spec)
    )
    routes = vhost(mesh.translate("client"), "rds_egress_http_80", "svc.local")["routes"]
    return routes[0]["route"]["retry_policy"]


def test_retry_policy_sets_retry_on_num_retries_and_per_try_timeout():
    policy = {
        "maxRetries": 4,
        "perRetryTimeout": {"unit": "ms", "value": 1500},
        "httpRetryEvents": ["gateway-error", "client-error", "stream-error"],
        "tcpRetryEvents": ["connection-error"],
    }
    result = _policy(http_route({"prefix": "/"}, ("blue", 1), retryPolicy=policy))
    assert result["retry_on"] == "connect-failure,reset,refused-stream,retriable-status-codes"
    assert result["num_retries"] == 4
    assert result["per_try_timeout"] == "1.500s"
    assert result["retriable_status_codes"] == [502, 503, 504, 409]


def test_server_error_lists_the_documented_status_codes():
    result = retries.user_policy({"maxRetries": 1, "httpRetryEvents": ["server-error"]})
    assert result["retriable_status_codes"] == [
        500,
        501,
        502,
        503,
        504,
        505,
        506,
        507,
        508,
        510,
        511,
    ]
    assert result["retry_on"] == "retriable-status-codes"


def test_client_error_is_409_via_retriable_status_codes():
    result = retries.user_policy({"maxRetries": 1, "httpRetryEvents": ["client-error"]})
    assert result["retriable_status_codes"] == [409]


def test_grpc_events_keep_their_names():
    policy = {
        "maxRetries": 2,
        "perRetryTimeout": seconds(1),
        "grpcRetryEvents": [
            "cancelled",
            "deadline-exceeded",
            "internal",
            "resource-exhausted",
            "unavailable",
        ],
    }
    spec = http_route({"serviceName": "s"}, ("blue", 1), kind="grpcRoute", retryPolicy=policy)
    result = _policy(spec, protocol="grpc")
    assert (
        result["retry_on"] == "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable"
    )
    assert "retriable_status_codes" not in result


def test_user_policy_avoids_retrying_the_same_host():
    result = retries.user_policy({"maxRetries": 1, "httpRetryEvents": ["server-error"]})
    assert result["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    assert result["host_selection_retry_max_attempts"] == 5


def test_max_retries_zero_disables_retries():
    assert retries.user_policy({"maxRetries": 0, "perRetryTimeout": seconds(1)})["num_retries"] == 0


def test_route_without_policy_gets_app_mesh_default():
    result = _policy(http_route({"prefix": "/"}, ("blue", 1)))
    assert result == {
        "retry_on": "connect-failure,refused-stream,reset,retriable-status-codes",
        "num_retries": 2,
        "retriable_status_codes": [503],
    }


def test_default_policy_of_grpc_routes_retries_unavailable():
    result = _policy(http_route({}, ("blue", 1), kind="grpcRoute"), protocol="grpc")
    assert result["retry_on"].split(",")[0] == "unavailable"
    assert result["num_retries"] == 2


def test_virtual_node_provider_gets_the_default_policy():
    mesh = (
        Mesh()
        .node("client", backends=["svc.local"])
        .node("blue", listener(8080, "http2"))
        .service("svc.local", node="blue")
    )
    route = vhost(mesh.translate("client"), "rds_egress_http_8080", "svc.local")["routes"][0]
    assert route["route"]["retry_policy"] == retries.default_policy("http2")
    assert route["route"]["cluster"] == "cds_egress_m_blue_http2_8080"
