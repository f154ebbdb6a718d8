"""The tcp_proxy filter: bytes both ways, weighted clusters, idle timeout, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

from proxy_envoy import cluster, file_access_log, tcp_listener
from proxy_harness import raw_connection, raw_server, running_proxy

from appmesh_api.localports import free_port


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write(b"<eof>")  # the client half-closed; answer, then close
    await writer.drain()
    writer.close()


def _greeter(name: bytes):
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name)
        await writer.drain()
        writer.close()

    return greet


def _port(server: asyncio.Server) -> int:
    return server.sockets[0].getsockname()[1]


async def test_tcp_proxy_pipes_bytes_both_ways_with_half_close(tmp_path: Path) -> None:
    echo = await raw_server(_echo)
    log = tmp_path / "tcp.log"
    fmt = "%UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS%\n"
    resources = [
        cluster("echo", [_port(echo)]),
        tcp_listener("tcp", cluster="echo", access_log=[file_access_log(str(log), text=fmt)]),
    ]
    async with running_proxy(resources) as proxy:
        port = proxy.port("tcp")
        async with raw_connection(port) as (reader, writer):
            payload = b"x" * 1_000_000
            writer.write(payload)
            assert await reader.readexactly(len(payload)) == payload
            writer.write_eof()
            assert await reader.read() == b"<eof>"
        assert proxy.stat("tcp.tcp.downstream_cx_total") == 1
        assert proxy.stat("cluster.echo.upstream_cx_total") == 1
    echo.close()
    assert log.read_text() == "echo 1000000 1000005 -\n"


async def test_tcp_connection_closes_once_both_directions_ended() -> None:
    """Not at the idle timeout: the access log and upstream accounting happen now."""
    greeter = await raw_server(_greeter(b"hi"))
    resources = [cluster("greeter", [_port(greeter)]), tcp_listener("tcp", cluster="greeter")]
    async with (
        running_proxy(resources) as proxy,
        raw_connection(proxy.port("tcp")) as (reader, writer),
    ):
        assert await reader.read() == b"hi"  # the upstream's EOF passed through
        writer.write_eof()  # now both directions have ended
        for _ in range(200):
            if proxy.stat("cluster.greeter.upstream_cx_destroy"):
                break
            await asyncio.sleep(0.01)
        assert proxy.stat("cluster.greeter.upstream_cx_destroy") == 1
    greeter.close()


async def test_tcp_weighted_clusters_split_connections() -> None:
    big, small = await raw_server(_greeter(b"big")), await raw_server(_greeter(b"small"))
    weighted = {"clusters": [{"name": "big", "weight": 75}, {"name": "small", "weight": 25}]}
    resources = [
        cluster("big", [_port(big)]),
        cluster("small", [_port(small)]),
        tcp_listener("tcp", weighted_clusters=weighted),
    ]
    counts: Counter[bytes] = Counter()
    async with running_proxy(resources) as proxy:

        async def one() -> None:
            async with raw_connection(proxy.port("tcp")) as (reader, _):
                counts[await reader.read()] += 1

        for _ in range(20):
            await asyncio.gather(*(one() for _ in range(20)))
    big.close()
    small.close()
    assert sum(counts.values()) == 400
    assert abs(counts[b"big"] / 400 - 0.75) < 0.08  # about 3.7 standard deviations


async def test_tcp_idle_timeout_closes_quiet_connections() -> None:
    echo = await raw_server(_echo)
    resources = [
        cluster("echo", [_port(echo)]),
        tcp_listener("tcp", cluster="echo", idle_timeout="0.05s"),
    ]
    async with running_proxy(resources) as proxy:
        async with raw_connection(proxy.port("tcp")) as (reader, writer):
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            assert await reader.read() == b""  # closed by the proxy once idle
        assert proxy.stat("tcp.tcp.idle_timeout") == 1
    echo.close()


async def test_tcp_without_upstream_closes_the_connection() -> None:
    resources = [
        cluster("empty", []),
        cluster("dead", [free_port()]),
        tcp_listener("tcp", cluster="empty"),
        tcp_listener("tcp2", cluster="dead"),
    ]
    async with running_proxy(resources) as proxy:
        for name in ("tcp", "tcp2"):
            async with raw_connection(proxy.port(name)) as (reader, writer):
                writer.write(b"hello")
                # Closed with our bytes unread, the kernel may answer with a reset instead.
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
        assert proxy.stat("cluster.empty.upstream_cx_none_healthy") == 1
        assert proxy.stat("cluster.dead.upstream_cx_connect_fail") == 1
