"""Per-try and route timeouts: short (milliseconds), with hung upstreams, no clock asserts."""

from __future__ import annotations

import asyncio
import itertools

from aiohttp import web
from proxy_envoy import ROUTER, cluster, http_listener, route, simple_proxy, vhost
from proxy_harness import backends, client, fetch, raw_connection, running_proxy


def _hang_first(count: int):
    """Hang the first ``count`` requests forever (until cancelled), answer the rest."""
    counter = itertools.count()

    async def handler(request: web.Request) -> web.Response:
        if next(counter) < count:
            await asyncio.Event().wait()
        return web.Response(text="ok")

    return handler


async def test_per_try_timeout_retries_a_hung_attempt() -> None:
    policy = {"retry_on": "5xx", "num_retries": 2, "per_try_timeout": "0.05s"}
    async with backends(("slow", _hang_first(1))) as (slow,):
        resources = simple_proxy("slow", [slow.port], route_extra={"retry_policy": policy})
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[::2] == (200, "ok")
        assert proxy.stat("cluster.slow.upstream_rq_per_try_timeout") == 1
        assert proxy.stat("cluster.slow.upstream_rq_retry") == 1
        assert proxy.stat("cluster.slow.upstream_rq_retry_success") == 1


async def test_route_timeout_is_504_upstream_request_timeout() -> None:
    async with backends(("hung", _hang_first(1))) as (hung,):
        resources = simple_proxy("hung", [hung.port], route_extra={"timeout": "0.1s"})
        async with running_proxy(resources) as proxy, client() as session:
            status, headers, body = await fetch(session, proxy.url("/"))
            assert (status, body) == (504, "upstream request timeout")
            assert headers["server"] == "envoy"
            assert proxy.stat("cluster.hung.upstream_rq_timeout") == 1
            # The connection to the hung upstream was dropped, the next request is fine.
            assert (await fetch(session, proxy.url("/")))[0] == 200


async def test_route_timeout_covers_all_retries() -> None:
    policy = {"retry_on": "5xx", "num_retries": 1000, "per_try_timeout": "0.05s"}
    async with backends(("hung", _hang_first(10**9))) as (hung,):
        resources = simple_proxy(
            "hung",
            [hung.port],
            route_extra={"retry_policy": policy, "timeout": "0.3s"},
            circuit_breakers={"thresholds": [{"max_retries": 10000}]},
        )
        async with running_proxy(resources) as proxy, client() as session:
            status, _, body = await fetch(session, proxy.url("/"))
        assert (status, body) == (504, "upstream request timeout")
        assert proxy.stat("cluster.hung.upstream_rq_timeout") == 1
        assert 1 <= proxy.stat("cluster.hung.upstream_rq_retry") < 1000


async def test_exhausted_per_try_timeouts_give_504() -> None:
    policy = {"retry_on": "gateway-error", "num_retries": 1, "per_try_timeout": "0.05s"}
    async with backends(("hung", _hang_first(10**9))) as (hung,):
        resources = simple_proxy("hung", [hung.port], route_extra={"retry_policy": policy})
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[0] == 504
        assert proxy.stat("cluster.hung.upstream_rq_per_try_timeout") == 2
        assert proxy.stat("cluster.hung.upstream_rq_retry_limit_exceeded") == 1


async def test_the_timeout_header_tells_the_upstream_its_budget() -> None:
    policy = {"retry_on": "5xx", "per_try_timeout": "0.25s"}
    async with backends("fast") as (fast,):
        resources = simple_proxy("fast", [fast.port], route_extra={"retry_policy": policy})
        async with running_proxy(resources) as proxy, client() as session:
            await fetch(session, proxy.url("/"))
        assert fast.requests[0].headers["x-envoy-expected-rq-timeout-ms"] == "250"


async def test_route_idle_timeout_is_408_stream_timeout() -> None:
    async with backends(("hung", _hang_first(1))) as (hung,):
        extra = {"idle_timeout": "0.05s", "timeout": "10s"}
        resources = simple_proxy("hung", [hung.port], route_extra=extra)
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[::2] == (408, "stream timeout")
            assert proxy.stat("http.ingress.downstream_rq_idle_timeout") == 1


async def test_idle_timeout_after_headers_resets_the_stream() -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"started")
        await asyncio.Event().wait()
        return response

    async with backends(("stalls", stalls)) as (stalling,):
        resources = simple_proxy("stalls", [stalling.port], route_extra={"idle_timeout": "0.05s"})
        async with running_proxy(resources) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                received = await reader.read()  # ends when the proxy gives up
            assert received.startswith(b"HTTP/1.1 200 OK")
            assert b"started" in received and not received.endswith(b"0\r\n\r\n")


async def test_a_disabled_stream_idle_timeout_with_a_route_timeout_still_serves() -> None:
    # stream_idle_timeout 0s disables the HCM's idle timer; a bodiless request under a route
    # timeout and no route idle_timeout must then run without one (it once compared to None).
    async with backends("fast") as (fast,):
        routes = [route({"prefix": "/"}, "fast", timeout="10s")]
        resources = [
            cluster("fast", [fast.port]),
            http_listener("ingress", [vhost("all", ["*"], routes)], stream_idle_timeout="0s"),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[0] == 200


# -- the router's respect_expected_rq_timeout ---------------------------------------------------
INTERNAL = {"x-forwarded-for": "10.1.2.3"}  # one internal address: Envoy's internal request


def _expected_timeout_proxy(port: int, respect: bool) -> list[dict]:
    """Route timeout 10 s; the router filter's ``respect_expected_rq_timeout`` as given."""
    router = {"@type": ROUTER, "respect_expected_rq_timeout": respect}
    routes = [route({"prefix": "/"}, "hung", timeout="10s")]
    return [
        cluster("hung", [port]),
        http_listener(
            "ingress",
            [vhost("all", ["*"], routes)],
            http_filters=[{"name": "envoy.filters.http.router", "typed_config": router}],
        ),
    ]


async def _once(respect: bool, headers: dict[str, str], handler=None) -> tuple:
    """(status, body, upstream request headers, route timeouts counted) for one request."""
    async with (
        backends(("b", handler) if handler else "b") as (backend,),
        running_proxy(_expected_timeout_proxy(backend.port, respect)) as proxy,
        client() as session,
    ):
        status, _, body = await fetch(session, proxy.url("/"), headers=headers)
        timeouts = proxy.stat("cluster.hung.upstream_rq_timeout")
    return status, body, backend.requests[0].headers, timeouts


async def test_respect_expected_rq_timeout_makes_the_callers_budget_the_timeout() -> None:
    """The calling proxy said 200 ms: the route's 10 s gives way, the answer is 504, and
    the upstream is told the same budget."""
    headers = {**INTERNAL, "x-envoy-expected-rq-timeout-ms": "200"}
    status, body, seen, timeouts = await _once(True, headers, _hang_first(1))
    assert (status, body, timeouts) == (504, "upstream request timeout", 1)
    assert seen["x-envoy-expected-rq-timeout-ms"] == "200"


async def test_without_respect_expected_rq_timeout_the_header_is_overwritten() -> None:
    """Envoy's default: the incoming budget is not read, the route's 10 s is sent on."""
    headers = {**INTERNAL, "x-envoy-expected-rq-timeout-ms": "200"}
    status, _, seen, _ = await _once(False, headers)
    assert status == 200 and seen["x-envoy-expected-rq-timeout-ms"] == "10000"


async def test_the_expected_timeout_wins_over_the_upstream_rq_timeout_header() -> None:
    """With both headers, Envoy reads the expected one and leaves the other untouched
    (an egress proxy would have consumed it), so it goes on upstream."""
    headers = {
        **INTERNAL,
        "x-envoy-expected-rq-timeout-ms": "300",
        "x-envoy-upstream-rq-timeout-ms": "5",
    }
    status, _, seen, _ = await _once(True, headers)
    assert status == 200
    assert seen["x-envoy-expected-rq-timeout-ms"] == "300"
    assert seen["x-envoy-upstream-rq-timeout-ms"] == "5"


async def test_an_external_request_cannot_set_the_expected_timeout() -> None:
    """No ``x-forwarded-for``: the HCM strips the header, the route's 10 s stays."""
    status, _, seen, _ = await _once(True, {"x-envoy-expected-rq-timeout-ms": "200"})
    assert status == 200 and seen["x-envoy-expected-rq-timeout-ms"] == "10000"
