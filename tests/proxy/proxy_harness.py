"""Real sockets on 127.0.0.1: upstream servers, a running proxy, and clients.

Backends are aiohttp.web servers on free ports (or raw asyncio servers where a test
needs to misbehave on the wire); the proxy is a real ``ProxyServer``; clients are
aiohttp sessions or raw sockets. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from proxy.server import ProxyServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Backend:
    """An aiohttp upstream that answers every path with ``handler`` (default: its name)."""

    def __init__(self, name: str = "backend", handler: Handler | None = None) -> None:
        self.name = name
        self.handler = handler
        self.requests: list[web.Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.handler is not None:
            return await self.handler(request)
        return web.Response(text=self.name)

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Hung handlers are cancelled when the proxy gives up on them, and never hold
        # the test's teardown.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@contextlib.asynccontextmanager
async def backends(*specs: str | tuple[str, Handler]) -> AsyncIterator[list[Backend]]:
    """Start backends named (and optionally handled) as given; stop them afterwards."""
    started: list[Backend] = []
    try:
        for spec in specs:
            name, handler = (spec, None) if isinstance(spec, str) else spec
            started.append(await Backend(name, handler).start())
        yield started
    finally:
        for backend in started:
            await backend.stop()


class RunningProxy:
    """A started ``ProxyServer`` plus the URL of its first listener."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server

    def port(self, listener: str = "ingress") -> int:
        return self.server.listener_address(listener)[1]

    def url(self, path: str = "/", listener: str = "ingress") -> str:
        return f"http://127.0.0.1:{self.port(listener)}{path}"

    def admin(self, path: str) -> str:
        address = self.server.admin_address
        assert address is not None
        return f"http://127.0.0.1:{address[1]}{path}"

    def stat(self, name: str) -> int:
        value = self.server.stats.get(name)
        assert value is not None, f"no stat {name}"
        return value


@contextlib.asynccontextmanager
async def running_proxy(
    resources: list[dict[str, Any]], version: str = "1", **options: Any
) -> AsyncIterator[RunningProxy]:
    """A started proxy on ``resources``; ``options`` go to ``ProxyServer`` (drain_seconds)."""
    server = ProxyServer(admin_address=("127.0.0.1", 0), node={"id": "test-node"}, **options)
    await server.start()
    try:
        await server.apply(resources, version)
        yield RunningProxy(server)
    finally:
        await server.stop(drain_seconds=0)


@contextlib.asynccontextmanager
async def client(**kwargs: Any) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, **kwargs) as session:
        yield session


async def fetch(
    session: aiohttp.ClientSession, url: str, method: str = "GET", **kwargs: Any
) -> tuple[int, dict[str, str], str]:
    async with session.request(method, url, **kwargs) as response:
        body = await response.text()
        return response.status, {k.lower(): v for k, v in response.headers.items()}, body


async def fetch_many(
    session: aiohttp.ClientSession, url: str, count: int, concurrency: int = 16, **kwargs: Any
) -> list[tuple[int, str]]:
    """``count`` GETs, at most ``concurrency`` at a time: ``(status, body)`` each."""
    results: list[tuple[int, str]] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            status, _, body = await fetch(session, url, **kwargs)
            results.append((status, body))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return results


# -- raw HTTP/1.1 over a socket ---------------------------------------------------------------
async def read_response(
    reader: asyncio.StreamReader, head_request: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: content-length, chunked, or read-to-close bodies."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_request or status in (204, 304) or status < 200:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                return status, headers, body
            body += await reader.readexactly(size)
            await reader.readline()
    return status, headers, await reader.read()


@contextlib.asynccontextmanager
async def raw_connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    """A bare asyncio server on a free port, for upstreams that misbehave on purpose."""
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def wait_until(predicate: Callable[[], bool], attempts: int = 400) -> None:
    """Poll a condition the proxy reaches asynchronously (bounded, no timing assertion)."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
