"""The sidecar under a header flood: Envoy's limits (60 KiB, 100 headers -> 431), the
request-headers timeout (408), and a request in flight keeps its latency meanwhile.

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
