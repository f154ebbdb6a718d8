"""The xDS client with several control-plane replicas: it fails over, and backs off.

Each replica is a real aiohttp server on 127.0.0.1 answering REST-JSON discovery the way
appmesh-local does (a version per replica, long-polls held while the version is current).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from proxy.xds.rest import XdsClient

NODE = {"id": "arn:aws:appmesh:us-east-1:123456789012:mesh/demo/virtualNode/front"}


class Replica:
    """One fake control-plane replica; ``status`` other than 200 answers every request."""

    def __init__(self, name: str, status: int = 200) -> None:
        self.name, self.status = name, status
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        body = await request.json()
        version = f"{self.name}-1"
        if body.get("version_info") == version:
            await asyncio.sleep(float(request.query.get("wait", "1")))
            return web.Response(status=304)
        kind_url = body["type_url"]
        return web.json_response(
            {"version_info": version, "resources": [], "type_url": kind_url, "nonce": version}
        )

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v3/discovery:{kind}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}"

    async def kill(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@asynccontextmanager
async def replicas(*names: str, status: int = 200) -> AsyncIterator[list[tuple[Replica, str]]]:
    started = [Replica(name, status) for name in names]
    urls = [await replica.start() for replica in started]
    try:
        yield list(zip(started, urls, strict=True))
    finally:
        for replica in started:
            if replica.runner is not None:
                await replica.runner.cleanup()


def recorder() -> tuple[list[str], Any]:
    applied: list[str] = []

    async def apply(_resources: list[dict[str, Any]], version: str) -> None:
        applied.append(version)

    return applied, apply


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_dead_replica_is_left_for_the_next_at_once() -> None:
    async with replicas("a", "b", "c") as running:
        (first, _), (second, _), _ = running
        applied, apply = recorder()
        # A back-off of 5 to 10 s would outlast ``until``'s bound: "at once" is that none
        # is taken, not a wall-clock threshold that a loaded machine can miss.
        xds = XdsClient([url for _, url in running], NODE, apply, wait_seconds=5, backoff_base=10.0)
        await xds.start()
        try:
            await until(lambda: "a-1" in applied)
            assert xds.endpoint.endswith(f":{first.port}")
            await first.kill()
            await until(lambda: "b-1" in applied)
            assert xds.endpoint.endswith(f":{second.port}")
            assert xds.failovers == 1, "all loops follow one failover"
        finally:
            await xds.stop()


async def test_when_every_replica_fails_the_loops_back_off() -> None:
    async with replicas("a", "b", status=503) as running:
        applied, apply = recorder()
        xds = XdsClient([url for _, url in running], NODE, apply, backoff_base=0.5)
        await xds.start()
        await asyncio.sleep(1.0)
        await xds.stop()
        asked = sum(replica.requests for replica, _ in running)
        # Two loops (listeners, clusters): one try per replica each, then a 1-2 s back-off.
        assert 4 <= asked <= 6, asked
        assert applied == []


async def test_one_endpoint_keeps_its_back_off_and_never_moves() -> None:
    async with replicas("a", status=503) as running:
        _, apply = recorder()
        xds = XdsClient(running[0][1], NODE, apply, backoff_base=0.5)
        await xds.start()
        await asyncio.sleep(0.2)
        await xds.stop()
        assert running[0][0].requests == 2 and xds.failovers == 0
