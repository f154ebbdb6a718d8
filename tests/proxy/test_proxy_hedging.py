"""Hedging on per-try timeout (Envoy's ``hedge_on_per_try_timeout``): a timed-out attempt
keeps running beside its retry, and the first good response wins.

The backend is scripted by arrival order, never by time: the first request is held until
the second arrives (which only a kept first attempt can then answer), or until the proxy
has seen what the test needs. The per-try timeout only decides when the retry starts; no
assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from proxy_envoy import simple_proxy
from proxy_harness import backends, client, fetch, running_proxy, wait_until

INTERNAL = {"x-forwarded-for": "10.1.2.3"}  # one internal address: may steer the router
HEDGE = "x-envoy-hedge-on-per-try-timeout"


def _policy(retry_on: str) -> dict[str, Any]:
    return {"retry_policy": {"retry_on": retry_on, "num_retries": 1, "per_try_timeout": "0.2s"}}


class Script:
    """Answers by arrival: ``first`` and ``second`` are coroutines run for the first and
    the second request; a request the proxy resets is recorded as cancelled."""

    def __init__(self) -> None:
        self.arrived = 0
        self.second_arrived = asyncio.Event()
        self.cancelled: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.steps: list[Any] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        number = self.arrived
        self.arrived += 1
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if number == 1:
            self.second_arrived.set()
        try:
            return await self.steps[number]()
        except asyncio.CancelledError:
            self.cancelled.append(number)
            raise


def hedged_route() -> dict[str, Any]:
    """Retries on 5xx with a per-try timeout, and the route's hedge policy on."""
    return {**_policy("5xx"), "hedge_policy": {"hedge_on_per_try_timeout": True}}


@contextlib.asynccontextmanager
async def scripted_proxy(script: Script, route: dict[str, Any]) -> AsyncIterator[tuple[Any, Any]]:
    """A proxy whose route (``route``'s fields) sends to the scripted backend ``b``; yields
    the running proxy and a client session."""
    async with backends(("b", script.handle)) as (backend,):
        resources = simple_proxy("b", [backend.port], route_extra=route)
        async with running_proxy(resources) as proxy, client() as session:
            yield proxy, session


async def _second() -> web.Response:
    return web.Response(text="second")


async def _hang() -> web.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_the_timed_out_attempt_is_kept_and_its_answer_wins() -> None:
    """``retry_on: retriable-4xx`` never retries a per-try timeout, but a hedge is started
    whatever ``retry_on`` says (Envoy's ``shouldHedgeRetryPerTryTimeout``). The first
    attempt answers only once the retry has arrived: only a first attempt kept running
    can, and the retry is reset when it does."""
    script = Script()

    async def first() -> web.Response:
        await script.second_arrived.wait()
        return web.Response(text="first")

    script.steps = [first, _hang]
    async with scripted_proxy(script, _policy("retriable-4xx")) as (proxy, session):
        headers = {**INTERNAL, HEDGE: "true"}
        status, _, body = await fetch(session, proxy.url("/"), headers=headers)
        assert (status, body) == (200, "first")
        assert script.arrived == 2
        await wait_until(lambda: script.cancelled == [1])
        assert proxy.stat("cluster.b.upstream_rq_retry") == 1
        # Envoy counts only the per-try timeouts it resets the attempt for.
        assert proxy.stat("cluster.b.upstream_rq_per_try_timeout") == 0
    assert all(HEDGE not in seen for seen in script.headers)  # consumed, not forwarded


async def test_a_route_hedge_policy_lets_the_retry_win_and_resets_the_first() -> None:
    script = Script()
    script.steps = [_hang, _second]
    async with scripted_proxy(script, hedged_route()) as (proxy, session):
        status, _, body = await fetch(session, proxy.url("/"))
        assert (status, body) == (200, "second")
        await wait_until(lambda: script.cancelled == [0])
        assert proxy.stat("cluster.b.upstream_rq_per_try_timeout") == 0


async def test_a_hedged_attempts_bad_answer_waits_for_the_retry() -> None:
    """The first attempt, already retried, answers 503 while its retry is in flight: the
    503 is dropped (it cannot be retried again) and the retry's answer goes to the
    client, as Envoy waits for "upstream requests in flight awaiting headers"."""
    script = Script()
    proxies: list[Any] = []

    async def first() -> web.Response:
        await script.second_arrived.wait()
        return web.Response(status=503, text="first")

    async def second() -> web.Response:
        await wait_until(lambda: proxies[0].server.stats.get("cluster.b.upstream_rq_503") == 1)
        return web.Response(text="second")

    script.steps = [first, second]
    async with scripted_proxy(script, hedged_route()) as (proxy, session):
        proxies.append(proxy)
        status, _, body = await fetch(session, proxy.url("/"))
        assert (status, body) == (200, "second")


async def test_the_header_says_false_over_the_route_and_is_consumed() -> None:
    """``x-envoy-hedge-on-per-try-timeout: false`` on an internal request turns the
    route's hedging off: the per-try timeout resets the first attempt before the retry."""
    script = Script()
    script.steps = [_hang, _second]
    async with scripted_proxy(script, hedged_route()) as (proxy, session):
        headers = {**INTERNAL, HEDGE: "false"}
        assert (await fetch(session, proxy.url("/"), headers=headers))[2] == "second"
        assert proxy.stat("cluster.b.upstream_rq_per_try_timeout") == 1
    assert all(HEDGE not in seen for seen in script.headers)


async def test_at_the_route_timeout_every_attempt_in_flight_is_reset_and_counted() -> None:
    """Neither attempt answers: the route timeout ends both (504 ``UT``), and, as in
    Envoy, ``upstream_rq_timeout`` counts each attempt it found in flight."""
    script = Script()
    script.steps = [_hang, _hang]
    async with scripted_proxy(script, {**hedged_route(), "timeout": "1s"}) as (proxy, session):
        status, _, body = await fetch(session, proxy.url("/"))
        assert (status, body) == (504, "upstream request timeout")
        await wait_until(lambda: sorted(script.cancelled) == [0, 1])
        assert proxy.stat("cluster.b.upstream_rq_timeout") == 2
