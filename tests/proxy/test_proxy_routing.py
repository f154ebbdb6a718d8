"""Route matching end to end: requests through a real proxy to real backends."""

from __future__ import annotations

from collections import Counter

from proxy_envoy import cluster, http_listener, route, vhost, weighted
from proxy_harness import (
    backends,
    client,
    fetch,
    fetch_many,
    raw_connection,
    read_response,
    running_proxy,
)


def _listener(*routes: dict, domains: list[str] | None = None, **vhost_extra) -> dict:
    return http_listener("ingress", [vhost("vh", domains or ["*"], list(routes), **vhost_extra)])


async def test_prefix_routes_match_first_in_order() -> None:
    async with backends("red", "blue") as (red, blue):
        resources = [
            cluster("red", [red.port]),
            cluster("blue", [blue.port]),
            _listener(
                route({"prefix": "/color/red"}, "red"),
                route({"prefix": "/color"}, "blue"),
                route({"prefix": "/color/red/never"}, "blue"),
            ),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/color/red/never")))[2] == "red"
            assert (await fetch(session, proxy.url("/color/green")))[2] == "blue"
            assert (await fetch(session, proxy.url("/colorful")))[2] == "blue"


async def test_exact_path_match_ignores_the_query_string() -> None:
    async with backends("exact", "other") as (exact, other):
        resources = [
            cluster("exact", [exact.port]),
            cluster("other", [other.port]),
            _listener(route({"path": "/tell"}, "exact"), route({"prefix": "/"}, "other")),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/tell?x=1")))[2] == "exact"
            assert (await fetch(session, proxy.url("/tell/more")))[2] == "other"


async def test_safe_regex_must_match_the_whole_path() -> None:
    async with backends("regex", "other") as (rx, other):
        resources = [
            cluster("regex", [rx.port]),
            cluster("other", [other.port]),
            _listener(
                route({"safe_regex": {"google_re2": {}, "regex": "/item/[0-9]+"}}, "regex"),
                route({"prefix": "/"}, "other"),
            ),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/item/42?q=1")))[2] == "regex"
            assert (await fetch(session, proxy.url("/item/42/x")))[2] == "other"
            assert (await fetch(session, proxy.url("/x/item/42")))[2] == "other"


async def test_header_routing_as_in_the_app_mesh_color_walkthrough() -> None:
    """absent → purple, [100,150) → blue, regex redor.* → green, prefix → red, else yellow."""
    names = ["purple", "blue", "green", "red", "yellow", "white"]
    async with backends(*names) as started:
        by_name = {b.name: b for b in started}
        hdr = "color_header"
        routes = [
            route(
                {"prefix": "/", "headers": [{"name": hdr, "present_match": True,
                                             "invert_match": True}]},
                "purple",
            ),
            route(
                {"prefix": "/", "headers": [{"name": hdr, "range_match": {"start": 100,
                                                                          "end": 150}}]},
                "blue",
            ),
            route(
                {"prefix": "/", "headers": [{"name": hdr, "string_match": {
                    "safe_regex": {"regex": "redor.*"}}}]},
                "green",
            ),
            route(
                {"prefix": "/", "headers": [{"name": hdr, "string_match": {
                    "prefix": "redorgreen"}}]},
                "red",
            ),
            route({"prefix": "/", "headers": [{"name": ":method", "exact_match": "POST"}]},
                  "white"),
            route({"prefix": "/"}, "yellow"),
        ]  # fmt: skip
        resources = [cluster(n, [b.port]) for n, b in by_name.items()] + [_listener(*routes)]
        async with running_proxy(resources) as proxy, client() as session:

            async def color(value: str | None, method: str = "GET") -> str:
                headers = {hdr: value} if value is not None else {}
                return (await fetch(session, proxy.url("/"), method, headers=headers))[2]

            assert await color(None) == "purple"
            assert await color("100") == "blue"
            assert await color("149") == "blue"
            assert await color("150") == "yellow"  # the range is half-open
            assert await color("redorange") == "green"
            assert await color("redorgreencolor") == "green"  # first match wins
            assert await color("xredorgreen") == "yellow"
            assert await color("anything", "POST") == "white"


async def test_query_parameter_and_case_insensitive_matches() -> None:
    async with backends("nemo", "other") as (nemo, other):
        resources = [
            cluster("nemo", [nemo.port]),
            cluster("other", [other.port]),
            _listener(
                route(
                    {"prefix": "/tell", "query_parameters": [
                        {"name": "fishes", "string_match": {"exact": "nemo"}}]},
                    "nemo",
                ),
                route({"path": "/CASE", "case_sensitive": False}, "nemo"),
                route({"prefix": "/"}, "other"),
            ),
        ]  # fmt: skip
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/tell?a=1&fishes=nemo")))[2] == "nemo"
            assert (await fetch(session, proxy.url("/tell?fishes=dory")))[2] == "other"
            assert (await fetch(session, proxy.url("/case")))[2] == "nemo"


async def test_virtual_hosts_match_exact_then_suffix_then_prefix_then_star() -> None:
    async with backends("exact", "suffix", "prefix", "star") as started:
        ports = {b.name: b.port for b in started}
        vhosts = [
            vhost("star", ["*"], [route({"prefix": "/"}, "star")]),
            vhost("prefix", ["api.*"], [route({"prefix": "/"}, "prefix")]),
            vhost("suffix", ["*.example.com"], [route({"prefix": "/"}, "suffix")]),
            vhost("exact", ["svc.local", "svc.local:8080"], [route({"prefix": "/"}, "exact")]),
        ]
        resources = [cluster(n, [p]) for n, p in ports.items()]
        resources.append(http_listener("ingress", vhosts))
        async with running_proxy(resources) as proxy, client() as session:

            async def via(host: str) -> str:
                return (await fetch(session, proxy.url("/"), headers={"Host": host}))[2]

            assert await via("svc.local") == "exact"
            assert await via("SVC.local:8080") == "exact"
            assert await via("svc.local:9090") == "star"  # ports are part of the domain
            assert await via("api.example.com") == "suffix"  # suffix beats prefix
            assert await via("api.internal") == "prefix"
            assert await via("other") == "star"


async def test_no_matching_route_is_404_with_flag_nr() -> None:
    async with backends("only") as (only,):
        resources = [
            cluster("only", [only.port]),
            http_listener("ingress", [vhost("vh", ["svc"], [route({"prefix": "/a"}, "only")])]),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            status, headers, body = await fetch(session, proxy.url("/b"), headers={"Host": "svc"})
            assert (status, body, headers["server"]) == (404, "", "envoy")
            status, _, _ = await fetch(session, proxy.url("/a"), headers={"Host": "elsewhere"})
            assert status == 404
            assert proxy.stat("http.ingress.no_route") == 2
            assert only.requests == []


async def test_cluster_without_endpoints_is_503_no_healthy_upstream() -> None:
    resources = [
        cluster("empty", []),
        _listener(route({"prefix": "/missing"}, "nowhere"), route({"prefix": "/"}, "empty")),
    ]
    async with running_proxy(resources) as proxy, client() as session:
        status, headers, body = await fetch(session, proxy.url("/"))
        assert (status, body) == (503, "no healthy upstream")
        assert headers["content-type"] == "text/plain"
        assert proxy.stat("cluster.empty.upstream_cx_none_healthy") == 1
        status, _, _ = await fetch(session, proxy.url("/missing"))
        assert status == 503  # unknown cluster: Envoy's NC
        assert proxy.stat("http.ingress.no_cluster") == 1


async def test_weighted_clusters_split_within_a_few_percent() -> None:
    async with backends("black", "blue", "red") as started:
        resources = [cluster(b.name, [b.port]) for b in started]
        resources.append(
            _listener(route({"prefix": "/"}, weighted_clusters=weighted(black=60, blue=30, red=10)))
        )
        async with running_proxy(resources) as proxy, client() as session:
            results = await fetch_many(session, proxy.url("/color"), 2000, concurrency=32)
        counts = Counter(body for status, body in results if status == 200)
        assert sum(counts.values()) == 2000
        # Binomial standard deviations are about 1.1%, 1.0% and 0.7% here.
        assert abs(counts["black"] / 2000 - 0.60) < 0.05
        assert abs(counts["blue"] / 2000 - 0.30) < 0.05
        assert abs(counts["red"] / 2000 - 0.10) < 0.03


async def test_prefix_rewrite_host_rewrite_and_direct_response() -> None:
    async with backends("red") as (red,):
        resources = [
            cluster("red", [red.port]),
            _listener(
                route({"prefix": "/maroon/"}, "red", prefix_rewrite="/red/",
                      host_rewrite_literal="red.svc.local"),
                {"match": {"path": "/health"},
                 "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
                {"match": {"prefix": "/old"},
                 "redirect": {"path_redirect": "/new", "response_code": "FOUND"}},
            ),
        ]  # fmt: skip
        async with running_proxy(resources) as proxy, client() as session:
            status, _, _ = await fetch(session, proxy.url("/maroon/tell?fishes=nemo"))
            assert status == 200
            seen = red.requests[-1]
            assert seen.path_qs == "/red/tell?fishes=nemo"
            assert seen.headers["Host"] == "red.svc.local"
            assert seen.headers["x-envoy-original-path"] == "/maroon/tell?fishes=nemo"
            assert (await fetch(session, proxy.url("/health")))[::2] == (200, "ok")
            status, headers, _ = await fetch(session, proxy.url("/old"), allow_redirects=False)
            assert status == 302
            assert headers["location"].endswith("/new")


async def test_path_normalization_and_slash_merging_before_routing() -> None:
    async with backends("app") as (app,):
        routes = [route({"path": "/a/c"}, "app")]
        resources = [
            cluster("app", [app.port]),
            http_listener(
                "ingress", [vhost("vh", ["*"], routes)], normalize_path=True, merge_slashes=True
            ),
        ]
        async with running_proxy(resources) as proxy, raw_connection(proxy.port()) as (r, w):
            w.write(b"GET /a//b/../c?x=/../ HTTP/1.1\r\nhost: x\r\n\r\n")
            assert (await read_response(r))[0] == 200
            assert app.requests[-1].path_qs == "/a/c?x=/../"
