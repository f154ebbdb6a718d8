"""Route matches and App Mesh's route order, through whole translations."""

from envoy_bootstrap import matches

from .mesh_factory import Mesh, http_route, listener, vhost


def _egress_routes(*routes: tuple[str, dict], protocol: str = "http") -> list[dict]:
    mesh = (
        Mesh()
        .node("client", backends=["svc.local"])
        .node("blue", listener(8080, protocol))
        .router("r", (80, protocol))
        .service("svc.local", router="r")
    )
    for name, spec in routes:
        mesh.route("r", name, spec)
    return vhost(mesh.translate("client"), "rds_egress_http_80", "svc.local")["routes"]


def _match(match: dict) -> dict:
    return _egress_routes(("only", http_route(match, ("blue", 1))))[0]["match"]


def test_prefix_match_is_an_envoy_prefix():
    assert _match({"prefix": "/metrics"}) == {"prefix": "/metrics"}


def test_exact_path_match_is_an_envoy_path():
    assert _match({"path": {"exact": "/a/b"}}) == {"path": "/a/b"}


def test_regex_path_match_is_a_safe_regex():
    assert _match({"path": {"regex": "/v[0-9]+/.*"}}) == {"safe_regex": {"regex": "/v[0-9]+/.*"}}


def test_header_range_match_becomes_half_open_range_match():
    match = _match(
        {"prefix": "/", "headers": [{"name": "x-n", "match": {"range": {"start": 1, "end": 100}}}]}
    )
    assert match["headers"] == [{"name": "x-n", "range_match": {"start": 1, "end": 100}}]


def test_each_header_match_method_maps_to_a_string_match():
    methods = {
        "exact": {"exact": "a"},
        "prefix": {"prefix": "a"},
        "suffix": {"suffix": "a"},
        "regex": {"safe_regex": {"regex": "a.*"}},
    }
    for method, expected in methods.items():
        value = "a.*" if method == "regex" else "a"
        header = matches.header_matcher("h", {method: value})
        assert header == {"name": "h", "string_match": expected}


def test_inverted_header_match_sets_invert_match():
    header = matches.header_matcher("h", {"exact": "x"}, invert=True)
    assert header == {"name": "h", "string_match": {"exact": "x"}, "invert_match": True}


def test_header_without_match_method_must_be_present():
    assert matches.header_matcher("h", None) == {"name": "h", "present_match": True}


def test_method_and_scheme_match_pseudo_headers():
    match = _match({"prefix": "/", "method": "POST", "scheme": "https"})
    assert match["headers"] == [
        {"name": ":method", "string_match": {"exact": "POST"}},
        {"name": ":scheme", "string_match": {"exact": "https"}},
    ]


def test_query_parameters_match_exactly_or_by_presence():
    match = _match(
        {"prefix": "/", "queryParameters": [{"name": "a", "match": {"exact": "1"}}, {"name": "b"}]}
    )
    assert match["query_parameters"] == [
        {"name": "a", "string_match": {"exact": "1"}},
        {"name": "b", "present_match": True},
    ]


def test_route_port_match_is_not_an_envoy_field():
    assert _match({"prefix": "/", "port": 80}) == {"prefix": "/"}


def test_grpc_service_and_method_match_the_full_path():
    spec = http_route(
        {"serviceName": "pkg.Svc", "methodName": "Get"}, ("blue", 1), kind="grpcRoute"
    )
    route = _egress_routes(("g", spec), protocol="grpc")[0]
    assert route["match"] == {"path": "/pkg.Svc/Get"}


def test_grpc_service_alone_matches_its_prefix_and_nothing_matches_all():
    assert matches.grpc_match({"serviceName": "pkg.Svc"}) == {"prefix": "/pkg.Svc/"}
    assert matches.grpc_match({}) == {"prefix": "/"}


def test_grpc_metadata_matches_headers():
    match = matches.grpc_match(
        {"metadata": [{"name": "region", "invert": True, "match": {"suffix": "-1"}}]}
    )
    assert match["headers"] == [
        {"name": "region", "string_match": {"suffix": "-1"}, "invert_match": True}
    ]


def test_priority_zero_comes_first():
    routes = _egress_routes(
        ("low", http_route({"prefix": "/a"}, ("blue", 1), priority=10)),
        ("high", http_route({"prefix": "/"}, ("blue", 1), priority=0)),
    )
    assert [r["name"] for r in routes] == ["high", "low"]


def test_unprioritised_routes_follow_prioritised_ones_longest_prefix_first():
    routes = _egress_routes(
        ("short", http_route({"prefix": "/"}, ("blue", 1))),
        ("long", http_route({"prefix": "/longer/path"}, ("blue", 1))),
        ("mid", http_route({"prefix": "/longer"}, ("blue", 1))),
        ("prio", http_route({"prefix": "/"}, ("blue", 1), priority=999)),
    )
    assert [r["name"] for r in routes] == ["prio", "long", "mid", "short"]


def test_equal_prefixes_put_the_route_with_more_conditions_first():
    with_header = {"prefix": "/", "headers": [{"name": "canary", "match": {"exact": "1"}}]}
    routes = _egress_routes(
        ("a-plain", http_route({"prefix": "/"}, ("blue", 1))),
        ("b-header", http_route(with_header, ("blue", 1))),
    )
    assert [r["name"] for r in routes] == ["b-header", "a-plain"]


def test_sort_key_prefers_exact_path_over_regex_over_prefix_of_equal_length():
    keys = sorted(
        [
            matches.sort_key(None, "http", {"prefix": "/ab"}, "p"),
            matches.sort_key(None, "http", {"path": {"regex": "/ab"}}, "r"),
            matches.sort_key(None, "http", {"path": {"exact": "/ab"}}, "e"),
        ]
    )
    assert [k[-1] for k in keys] == ["e", "r", "p"]
