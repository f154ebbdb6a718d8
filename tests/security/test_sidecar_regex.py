"""Crafted regexes cannot stall the sidecar: RE2 runs them in linear time.

With Python's ``re``, ``/stats?filter=([a-z_]+\\.?)+!`` backtracks for seconds per stat
name (measured: 2 s for a 14-letter segment, 30 s for 18), and a mesh author's route
regex ``/(a+)+b`` does the same on ``/aaaa...``, on the loop that carries all traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import uvloop

from tests.security.sidecar import (
    backends,
    cluster,
    http_listener,
    route,
    running_proxy,
    vhost,
)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(scenario(), 30))


async def _timed_get(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    started = time.monotonic()
    async with session.get(url) as reply:
        await reply.read()
        return reply.status, time.monotonic() - started


def _proxy(port: int) -> list[dict]:
    routes = [
        route({"safe_regex": {"regex": "/(a+)+b"}}, "app"),
        route({"prefix": "/"}, "app"),
    ]
    return [
        cluster("upstream_with_a_long_name", [port]),
        cluster("app", [port]),
        http_listener("ingress", [vhost("all", ["*"], routes)]),
    ]


@contextlib.asynccontextmanager
async def _proxied() -> AsyncIterator[tuple[Any, aiohttp.ClientSession]]:
    """A proxy with a regex route in front of a backend, and a client session."""
    async with contextlib.AsyncExitStack() as stack:
        (app,) = await stack.enter_async_context(backends("app"))
        proxy = await stack.enter_async_context(running_proxy(_proxy(app.port)))
        yield proxy, await stack.enter_async_context(aiohttp.ClientSession())


def test_a_crafted_stats_filter_answers_at_once_and_traffic_keeps_flowing() -> None:
    async def scenario() -> None:
        async with (
            backends("app") as (app,),
            running_proxy(_proxy(app.port)) as proxy,
            aiohttp.ClientSession() as s,
        ):
            evil = proxy.admin("/stats?filter=" + "([a-z_]+%5C.?)%2B!")
            admin = asyncio.create_task(_timed_get(s, evil))
            status, latency = await _timed_get(s, proxy.url("/during"))
            assert status == 200 and latency < 0.5
            status, took = await admin
            assert status == 200 and took < 1.0

    run(scenario)


def test_a_route_regex_cannot_be_made_to_backtrack() -> None:
    async def scenario() -> None:
        async with (
            backends("app") as (app,),
            running_proxy(_proxy(app.port)) as proxy,
            aiohttp.ClientSession() as s,
        ):
            status, took = await _timed_get(s, proxy.url("/" + "a" * 40))
            assert status == 200 and took < 0.5  # fell through to the prefix route

    run(scenario)


def test_a_regex_re2_cannot_run_or_too_large_a_program_is_refused() -> None:
    async def scenario() -> None:
        async with (
            backends("app") as (app,),
            running_proxy(_proxy(app.port)) as proxy,
            aiohttp.ClientSession() as s,
        ):
            lookbehind = proxy.admin("/stats?filter=(%3F%3C%3Da)b")  # not RE2
            async with s.get(lookbehind) as reply:
                assert reply.status == 400
                assert "RE2" in await reply.text()

    run(scenario)
