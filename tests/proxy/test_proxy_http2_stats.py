"""Envoy's HTTP/2 codec stats on the admin port: ``http2.*`` for the listeners' codec,
``cluster.<name>.http2.*`` for upstream connections, read from ``/stats`` as a user would.

A raw h2 client opens a stream and resets it; a backend that never answers (or resets
every stream) stands upstream, so each counter moves for exactly one known event.
"""

from __future__ import annotations

import asyncio

import aiohttp
import h2.config
import h2.connection
import h2.errors
import h2.events
from proxy_harness import RunningProxy, fetch, running_proxy
from test_proxy_grpc_timeout import silent_backend, slow_proxy

REQUEST = [(":method", "POST"), (":path", "/demo.Slow/Wait"), (":scheme", "http"),
           (":authority", "svc.local"), ("content-type", "application/grpc")]  # fmt: skip


async def http2_stats(proxy: RunningProxy) -> dict[str, int]:
    """``/stats?filter=http2`` parsed into name → value."""
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, proxy.admin("/stats?filter=http2"))
    assert status == 200
    pairs = (line.split(": ", 1) for line in body.splitlines() if ": " in line)
    return {name: int(value) for name, value in pairs}


async def until(check: object, what: str) -> None:
    for _ in range(100):
        if callable(check) and check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_a_client_reset_counts_rx_reset_and_resets_upstream() -> None:
    async with silent_backend() as (backend, port), running_proxy(slow_proxy(port)) as proxy:
        _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST)
        writer.write(client.data_to_send())
        await until(lambda: backend.heads, "the request reached the backend")
        stats = await http2_stats(proxy)
        assert stats["http2.streams_active"] == 1
        assert stats["cluster.slow.http2.streams_active"] == 1
        assert stats["http2.rx_reset"] == 0
        client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        writer.write(client.data_to_send())
        await until(lambda: backend.resets, "the upstream stream was reset")
        assert backend.resets == [h2.errors.ErrorCodes.CANCEL]
        stats = await http2_stats(proxy)
        assert stats["http2.rx_reset"] == 1
        assert stats["http2.tx_reset"] == 0
        assert stats["cluster.slow.http2.tx_reset"] == 1
        assert stats["cluster.slow.http2.rx_reset"] == 0
        assert stats["http2.streams_active"] == 0
        assert stats["cluster.slow.http2.streams_active"] == 0
        writer.close()


async def test_an_upstream_reset_counts_in_the_cluster() -> None:
    refused = h2.errors.ErrorCodes.REFUSED_STREAM
    async with (
        silent_backend(reset=refused) as (backend, port),
        running_proxy(slow_proxy(port)) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST, end_stream=True)
        writer.write(client.data_to_send())
        trailers: dict[str, str] = {}
        while not trailers:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "the proxy closed the connection"
            for event in client.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    trailers = dict(event.headers)  # type: ignore[arg-type]
        writer.close()
        assert trailers["grpc-status"] == "14"  # a trailers-only UNAVAILABLE from the proxy
        stats = await http2_stats(proxy)
        tried = len(backend.heads)
        assert tried >= 1
        assert stats["cluster.slow.http2.rx_reset"] == tried
        assert stats["cluster.slow.http2.stream_refused_errors"] == tried
        assert stats["http2.rx_reset"] == stats["http2.tx_reset"] == 0


async def test_drain_sends_goaway_and_trailers_are_counted() -> None:
    async with silent_backend() as (_, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST)
        client.send_headers(1, [("x-end", "1")], end_stream=True)  # request trailers
        writer.write(client.data_to_send())
        await until(lambda: proxy.server.stats.get("http2.trailers") == 1, "trailers counted")
        for conn in list(proxy.server.ctx.connections):
            conn.drain()
        terminated = False
        while not terminated:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "closed without GOAWAY"
            events = client.receive_data(chunk)
            terminated = any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
        assert (await http2_stats(proxy))["http2.goaway_sent"] == 1
        writer.close()
