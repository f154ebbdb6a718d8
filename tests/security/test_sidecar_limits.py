"""The sidecar under a header flood: Envoy's limits (60 KiB, 100 headers -> 431), the
request-headers timeout (408), and a request in flight keeps its latency meanwhile;
upstream response heads bounded (80 KiB, 100 headers -> 502 UPE), and flow control
keeping a stream's memory bounded when either side stops reading.

Each attack runs against a real ``ProxyServer`` on 127.0.0.1 from raw sockets, as a
process on the same host would send it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import uvloop

from tests.security.sidecar import (
    backends,
    one_route_proxy,
    raw_connection,
    raw_server,
    read_request_head,
    read_response,
    running_proxy,
)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(scenario(), 30))


async def _send(port: int, head: bytes) -> int:
    async with raw_connection(port) as (reader, writer):
        writer.write(head)
        await writer.drain()
        status, _, _ = await read_response(reader)
        return status


def _get(*headers: str) -> bytes:
    lines = ["GET / HTTP/1.1", "Host: app", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def test_a_1_mib_header_gets_431_and_never_reaches_the_app() -> None:
    async def scenario() -> None:
        async with backends("app") as (app,), running_proxy(one_route_proxy(app.port)) as proxy:
            assert await _send(proxy.port(), _get("X-Big: " + "a" * (1 << 20))) == 431
            assert app.requests == []
            assert proxy.stat("http.ingress.downstream_rq_too_large_headers") == 1
            assert await _send(proxy.port(), _get()) == 200

    run(scenario)


def test_more_than_100_headers_get_431_and_100_pass() -> None:
    async def scenario() -> None:
        async with backends("app") as (app,), running_proxy(one_route_proxy(app.port)) as proxy:
            ninety_nine = [f"X-H{i}: v" for i in range(99)]  # plus Host: 100
            assert await _send(proxy.port(), _get(*ninety_nine)) == 200
            assert await _send(proxy.port(), _get(*ninety_nine, "X-One-Too-Many: v")) == 431

    run(scenario)


def test_max_request_headers_kb_is_honoured() -> None:
    async def scenario() -> None:
        async with backends("app") as (app,):
            config = one_route_proxy(app.port, max_request_headers_kb=8)
            async with running_proxy(config) as proxy:
                assert await _send(proxy.port(), _get("X-Pad: " + "p" * 7000)) == 200
                assert await _send(proxy.port(), _get("X-Pad: " + "p" * 9000)) == 431

    run(scenario)


def test_a_header_streamed_forever_is_cut_off_while_others_are_served() -> None:
    async def scenario() -> None:
        async with backends("app") as (app,), running_proxy(one_route_proxy(app.port)) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nHost: app\r\nX-Slow: ")
                sent = 0
                while not reader.at_eof() and sent < 4 << 20:
                    writer.write(b"s" * 4096)
                    sent += 4096
                    try:
                        await writer.drain()
                    except ConnectionError:
                        break
                    if sent % (64 << 10) == 0:  # meanwhile, others are served promptly
                        started = time.monotonic()
                        assert await _send(proxy.port(), _get()) == 200
                        assert time.monotonic() - started < 1.0
                    await asyncio.sleep(0)
                    if reader._buffer:  # type: ignore[attr-defined]  # the answer came
                        break
                status, _, _ = await read_response(reader)
            assert status == 431
            assert sent < 256 << 10  # cut off near 60 KiB, not after megabytes

    run(scenario)


def test_request_headers_timeout_answers_408_to_a_slow_head() -> None:
    async def scenario() -> None:
        async with backends("app") as (app,):
            config = one_route_proxy(app.port, request_headers_timeout="0.3s")
            async with running_proxy(config) as proxy:
                async with raw_connection(proxy.port()) as (reader, writer):
                    writer.write(b"GET / HTTP/1.1\r\nHost: app\r\n")  # and never the end
                    await writer.drain()
                    started = time.monotonic()
                    assert await _send(proxy.port(), _get()) == 200
                    status, _, _ = await read_response(reader)
                    assert status == 408
                    assert time.monotonic() - started < 2
                assert proxy.stat("http.ingress.downstream_rq_header_timeout") == 1

    run(scenario)


SMUGGLING = {
    "two Host headers": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "Transfer-Encoding: identity, chunked": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"
    ),
    "an unknown transfer coding": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    "malformed chunk framing": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
}


def test_ambiguous_framing_gets_400_and_never_reaches_the_app() -> None:
    async def scenario() -> None:
        async with backends("app") as (app,), running_proxy(one_route_proxy(app.port)) as proxy:
            for name, raw in SMUGGLING.items():
                assert await _send(proxy.port(), raw) == 400, name
            assert app.requests == []

    run(scenario)


# -- what the upstream sends back ---------------------------------------------------------

MIB = 1 << 20


async def _upstream(
    respond: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    """A raw backend that reads one request head, then runs ``respond``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request_head(reader)
            await respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await raw_server(handle)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _huge_head(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pads = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"h" * 1000) for i in range(200))
    writer.write(b"HTTP/1.1 200 OK\r\n" + pads + b"Content-Length: 2\r\n\r\nok")  # ~200 KiB
    await writer.drain()
    await _reader.read()  # until the proxy hangs up


async def _many_headers(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pads = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    writer.write(b"HTTP/1.1 200 OK\r\n" + pads + b"Content-Length: 2\r\n\r\nok")
    await writer.drain()
    await _reader.read()


async def _head_forever(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(4096):  # 16 MiB if nobody stops it
        writer.write(b"s" * 4096)
        await writer.drain()
        await asyncio.sleep(0)


def test_an_upstream_response_head_over_80_kib_or_100_headers_is_a_502() -> None:
    async def scenario() -> None:
        for respond in (_huge_head, _many_headers, _head_forever):
            upstream = await _upstream(respond)
            async with running_proxy(one_route_proxy(_port(upstream))) as proxy:
                started = time.monotonic()
                async with raw_connection(proxy.port()) as (reader, writer):
                    writer.write(_get())
                    status, _, body = await read_response(reader)
                assert status == 502, respond.__name__
                assert body.endswith(b"reset reason: protocol error"), body
                assert time.monotonic() - started < 5
                assert proxy.stat("cluster.app.upstream_cx_protocol_error") == 1
            upstream.close()

    run(scenario)


def test_max_response_headers_kb_and_max_headers_count_are_honoured() -> None:
    async def scenario() -> None:
        upstream = await _upstream(_huge_head)
        config = one_route_proxy(_port(upstream))
        options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        config[0]["typed_extension_protocol_options"] = {
            options: {
                "@type": f"type.googleapis.com/{options}",
                "common_http_protocol_options": {
                    "max_response_headers_kb": 300,
                    "max_headers_count": 300,
                },
                "explicit_http_config": {"http_protocol_options": {}},
            }
        }
        async with running_proxy(config) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(_get())
                status, headers, body = await read_response(reader)
            assert (status, body) == (200, b"ok")
            assert len(headers) > 200
        upstream.close()

    run(scenario)


def _rss() -> int:
    """This process's resident set (the proxy runs in it), in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def _stream_200_mb(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"d" * (256 << 10)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (200 * MIB))
    for _ in range(200 * MIB // len(chunk)):
        writer.write(chunk)
        await writer.drain()  # the backend itself buffers no more than its transport holds


def test_a_client_that_does_not_read_pauses_the_upstream_and_memory_stays_bounded() -> None:
    async def scenario() -> None:
        upstream = await _upstream(_stream_200_mb)
        async with running_proxy(one_route_proxy(_port(upstream))) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                before = _rss()
                writer.write(_get())
                await asyncio.sleep(2)  # the backend pushes; nobody reads
                grown = _rss() - before
                received = 0
                while chunk := await reader.read(1 << 20):
                    received += len(chunk)
                    if received >= 200 * MIB:
                        break
            print(f"\nRSS grew {grown / MIB:.1f} MiB while the client did not read")
            assert grown < 20 * MIB
            assert received > 200 * MIB and received - 200 * MIB < 1024, received
            assert proxy.stat("cluster.app.upstream_flow_control_paused_reading_total") >= 1
        upstream.close()

    run(scenario)


async def _keep_alive_8_mib(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with 8 MiB."""
    while True:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (8 * MIB))
        writer.write(b"k" * (8 * MIB))
        await writer.drain()
        await read_request_head(reader)


def test_a_connection_paused_for_a_slow_client_is_reusable_afterwards() -> None:
    """A response can end while the upstream's reads are paused for the client: the
    pooled connection reads again, so the next request on it gets its answer."""

    async def scenario() -> None:
        upstream = await _upstream(_keep_alive_8_mib)
        async with running_proxy(one_route_proxy(_port(upstream))) as proxy:
            for _ in range(3):
                async with raw_connection(proxy.port()) as (reader, writer):
                    writer.write(_get())
                    await asyncio.sleep(0.3)  # behind: the proxy pauses the upstream
                    started = time.monotonic()
                    status, _, body = await read_response(reader)
                    assert (status, len(body)) == (200, 8 * MIB)
                    assert time.monotonic() - started < 5
            assert proxy.stat("cluster.app.upstream_cx_total") == 1  # one pooled connection
            assert proxy.stat("cluster.app.upstream_flow_control_paused_reading_total") >= 3
        upstream.close()

    run(scenario)


def test_an_upstream_that_does_not_read_pauses_the_client_upload() -> None:
    async def scenario() -> None:
        taken = asyncio.get_running_loop().create_future()

        async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(2)  # takes nothing for a while
            size = 0
            while size < 200 * MIB and (chunk := await reader.read(1 << 20)):
                size += len(chunk)
            taken.set_result(size)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

        upstream = await _upstream(slow_reader)
        async with running_proxy(one_route_proxy(_port(upstream))) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                before = _rss()
                head = b"POST / HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % (200 * MIB)
                writer.write(head)
                chunk = b"u" * (256 << 10)
                sent, peak = 0, 0
                while sent < 200 * MIB:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
                    peak = max(peak, _rss() - before) if sent % (8 * MIB) == 0 else peak
                status, _, _ = await read_response(reader)
            print(f"\nRSS grew at most {peak / MIB:.1f} MiB during a 200 MiB upload")
            assert status == 200
            assert await taken == 200 * MIB
            assert peak < 20 * MIB
            assert proxy.stat("cluster.app.upstream_flow_control_backed_up_total") >= 1
        upstream.close()

    run(scenario)
