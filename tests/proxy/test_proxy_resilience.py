"""Outlier detection, panic routing, circuit breakers and active health checks."""

from __future__ import annotations

import asyncio

from aiohttp import web
from proxy_envoy import simple_proxy
from proxy_harness import (
    backends,
    client,
    fetch,
    fetch_many,
    running_proxy,
    wait_until,
)

from appmesh_api.localports import free_port

OVERFLOW = "upstream connect error or disconnect/reset before headers. reset reason: overflow"


def _failing(state: dict[str, bool] | None = None):
    async def handler(request: web.Request) -> web.Response:
        if state is None or state["failing"]:
            return web.Response(status=500, text="degraded")
        return web.Response(text="recovered")

    return handler


def _outlier(**overrides: object) -> dict[str, object]:
    return {
        "consecutive_5xx": 5,
        "interval": "10s",
        "base_ejection_time": "30s",
        "max_ejection_percent": 100,
        **overrides,
    }


async def test_outlier_detection_ejects_a_degraded_host() -> None:
    async with backends("a", "b", "c", ("bad", _failing())) as started:
        resources = simple_proxy("four", [b.port for b in started], outlier_detection=_outlier())
        async with running_proxy(resources) as proxy, client() as session:
            results = await fetch_many(session, proxy.url("/"), 200, concurrency=1)
            failures = [r for r in results if r[0] == 500]
            assert len(failures) == 5  # ejected on the fifth consecutive 5xx
            assert all(status == 200 for status, _ in results[-100:])
            assert proxy.stat("cluster.four.outlier_detection.ejections_active") == 1
            assert proxy.stat("cluster.four.outlier_detection.ejections_enforced_consecutive_5xx")
            async with session.get(proxy.admin("/clusters")) as response:
                assert "::health_flags::/failed_outlier_check" in await response.text()


async def test_panic_routing_when_too_many_hosts_are_ejected() -> None:
    specs = ["good", ("bad1", _failing()), ("bad2", _failing()), ("bad3", _failing())]
    async with backends(*specs) as started:
        resources = simple_proxy("four", [b.port for b in started], outlier_detection=_outlier())
        async with running_proxy(resources) as proxy, client() as session:
            results = await fetch_many(session, proxy.url("/"), 200, concurrency=1)
            assert proxy.stat("cluster.four.outlier_detection.ejections_active") == 3
            assert proxy.stat("cluster.four.lb_healthy_panic") > 0
            tail = [status for status, _ in results[-100:]]
            # Healthy share 25% < 50% panic threshold: traffic spreads over all hosts again.
            assert 10 < tail.count(200) < 40


async def test_max_ejection_percent_limits_ejections() -> None:
    specs = ["good", ("bad1", _failing()), ("bad2", _failing()), ("bad3", _failing())]
    async with backends(*specs) as started:
        outlier = _outlier(max_ejection_percent=10)
        resources = simple_proxy("four", [b.port for b in started], outlier_detection=outlier)
        async with running_proxy(resources) as proxy, client() as session:
            await fetch_many(session, proxy.url("/"), 100, concurrency=1)
            assert proxy.stat("cluster.four.outlier_detection.ejections_active") == 1
            assert proxy.stat("cluster.four.outlier_detection.ejections_overflow") > 0


async def test_an_ejected_host_returns_after_base_ejection_time() -> None:
    state = {"failing": True}
    async with backends("steady", ("flaky", _failing(state))) as started:
        outlier = _outlier(consecutive_5xx=3, interval="0.05s", base_ejection_time="0.1s")
        resources = simple_proxy("two", [b.port for b in started], outlier_detection=outlier)
        async with running_proxy(resources) as proxy, client() as session:
            await fetch_many(session, proxy.url("/"), 12, concurrency=1)
            assert proxy.stat("cluster.two.outlier_detection.ejections_enforced_total") == 1
            state["failing"] = False
            await wait_until(
                lambda: proxy.stat("cluster.two.outlier_detection.ejections_active") == 0
            )
            bodies = {body for _, body in await fetch_many(session, proxy.url("/"), 4, 1)}
            assert bodies == {"steady", "recovered"}


def _gate() -> tuple[asyncio.Event, object]:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    return release, handler


async def test_pending_request_overflow_is_503_uo() -> None:
    release, handler = _gate()
    breakers = {"thresholds": [{"max_connections": 1, "max_pending_requests": 1}]}
    async with backends(("gated", handler)) as (gated,):
        resources = simple_proxy("gated", [gated.port], circuit_breakers=breakers)
        async with running_proxy(resources) as proxy, client() as session:
            first = asyncio.ensure_future(fetch(session, proxy.url("/")))
            await wait_until(lambda: len(gated.requests) == 1)
            rest = [asyncio.ensure_future(fetch(session, proxy.url("/"))) for _ in range(3)]
            await wait_until(lambda: sum(task.done() for task in rest) == 2)
            assert proxy.stat("cluster.gated.circuit_breakers.default.cx_open") == 1
            assert proxy.stat("cluster.gated.circuit_breakers.default.rq_pending_open") == 1
            release.set()
            results = await asyncio.gather(first, *rest)
        assert sorted(status for status, _, _ in results) == [200, 200, 503, 503]
        assert [body for status, _, body in results if status == 503] == [OVERFLOW] * 2
        assert proxy.stat("cluster.gated.upstream_rq_pending_overflow") == 2
        assert proxy.stat("cluster.gated.upstream_cx_overflow") >= 1
        assert proxy.stat("cluster.gated.upstream_cx_total") == 1


async def test_max_requests_overflow_is_503_uo() -> None:
    release, handler = _gate()
    breakers = {"thresholds": [{"max_requests": 1}]}
    async with backends(("gated", handler)) as (gated,):
        resources = simple_proxy("gated", [gated.port], circuit_breakers=breakers)
        async with running_proxy(resources) as proxy, client() as session:
            first = asyncio.ensure_future(fetch(session, proxy.url("/")))
            await wait_until(lambda: len(gated.requests) == 1)
            assert proxy.stat("cluster.gated.circuit_breakers.default.rq_open") == 1
            assert (await fetch(session, proxy.url("/")))[::2] == (503, OVERFLOW)
            release.set()
            assert (await first)[0] == 200
        assert proxy.stat("cluster.gated.upstream_rq_pending_overflow") == 1


def _health(state: dict[str, bool]):
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/health":
            return web.Response(status=200 if state["healthy"] else 503)
        return web.Response(text="sick" if not state["healthy"] else "healed")

    return handler


async def test_http_health_checks_take_hosts_out_and_back() -> None:
    state = {"healthy": False}
    check = {
        "timeout": "0.5s",
        "interval": "0.02s",
        "unhealthy_threshold": 1,
        "healthy_threshold": 2,
        "http_health_check": {"path": "/health"},
    }
    async with backends("fine", ("sick", _health(state))) as started:
        resources = simple_proxy("hc", [b.port for b in started], health_checks=[check])
        async with running_proxy(resources) as proxy, client() as session:
            # apply() waited for the first round: the sick host never sees traffic.
            bodies = {body for _, body in await fetch_many(session, proxy.url("/"), 10, 1)}
            assert bodies == {"fine"}
            assert proxy.stat("cluster.hc.membership_healthy") == 1
            async with session.get(proxy.admin("/clusters")) as response:
                assert "::health_flags::/failed_active_hc" in await response.text()
            state["healthy"] = True
            await wait_until(lambda: proxy.stat("cluster.hc.membership_healthy") == 2)
            bodies = {body for _, body in await fetch_many(session, proxy.url("/"), 10, 1)}
            assert bodies == {"fine", "healed"}
            assert proxy.stat("cluster.hc.health_check.failure") >= 1


async def test_tcp_health_checks_skip_a_dead_port() -> None:
    check = {"timeout": "0.2s", "interval": "1s", "unhealthy_threshold": 1,
             "healthy_threshold": 1, "tcp_health_check": {}}  # fmt: skip
    async with backends("alive") as (alive,):
        resources = simple_proxy("hc", [alive.port, free_port()], health_checks=[check])
        async with running_proxy(resources) as proxy, client() as session:
            results = await fetch_many(session, proxy.url("/"), 10, concurrency=1)
            assert results == [(200, "alive")] * 10
            assert proxy.stat("cluster.hc.health_check.network_failure") >= 1
