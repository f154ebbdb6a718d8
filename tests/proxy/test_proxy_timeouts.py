"""Per-try and route timeouts: short (milliseconds), with hung upstreams, no clock asserts."""

from __future__ import annotations

import asyncio
import itertools

from aiohttp import web
from proxy_envoy import cluster, http_listener, route, simple_proxy, vhost
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
