"""HTTP/1.1 on the wire: keep-alive, framing, streaming, pipelining and Envoy's headers."""

from __future__ import annotations

import asyncio

from aiohttp import web
from proxy_envoy import cluster, http_listener, route, simple_proxy, vhost
from proxy_harness import (
    backends,
    client,
    fetch,
    raw_connection,
    raw_server,
    read_request_head,
    read_response,
    running_proxy,
)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    te = request.headers.get("Transfer-Encoding", "-")
    return web.Response(text=f"{request.method} {len(body)} {te}")


async def test_keep_alive_reuses_one_upstream_connection() -> None:
    async with backends("app") as (app,):
        async with running_proxy(simple_proxy("app", [app.port])) as proxy, client() as session:
            for _ in range(20):
                assert (await fetch(session, proxy.url("/")))[0] == 200
        assert proxy.stat("cluster.app.upstream_cx_total") == 1
        assert proxy.stat("http.ingress.downstream_cx_total") == 1
        assert proxy.stat("http.ingress.downstream_rq_2xx") == 20
        assert proxy.stat("cluster.app.upstream_rq_2xx") == 20


async def test_chunked_responses_stream_before_the_upstream_finishes() -> None:
    release = asyncio.Event()

    async def streaming(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"first;")
        await release.wait()
        await response.write(b"second")
        await response.write_eof()
        return response

    async with (
        backends(("stream", streaming)) as (stream,),
        running_proxy(simple_proxy("stream", [stream.port])) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        while await reader.readline() != b"\r\n":
            pass
        assert await reader.readline() == b"6\r\n"
        assert await reader.readexactly(8) == b"first;\r\n"  # before the upstream ends
        release.set()
        assert await reader.readuntil(b"0\r\n\r\n") == b"6\r\nsecond\r\n0\r\n\r\n"


async def test_request_bodies_keep_their_framing_upstream() -> None:
    async with (
        backends(("echo", _echo)) as (echo,),
        running_proxy(simple_proxy("echo", [echo.port])) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        writer.write(
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        assert (await read_response(reader))[2] == b"POST 11 chunked"
        writer.write(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        assert (await read_response(reader))[2] == b"PUT 3 -"


async def test_large_bodies_stream_both_ways_with_backpressure() -> None:
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB

    async def download(request: web.Request) -> web.Response:
        if request.method == "POST":
            size = 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
            return web.Response(text=str(size))
        return web.Response(body=big)

    async with (
        backends(("bulk", download)) as (bulk,),
        running_proxy(simple_proxy("bulk", [bulk.port])) as proxy,
        client() as s,
    ):
        assert (await fetch(s, proxy.url("/"), "POST", data=big))[::2] == (200, str(len(big)))
        async with s.get(proxy.url("/")) as response:
            assert await response.read() == big


async def test_head_204_and_304_carry_no_body_and_keep_the_connection() -> None:
    async def bodiless(request: web.Request) -> web.Response:
        if request.path == "/204":
            return web.Response(status=204)
        if request.path == "/304":
            return web.Response(status=304, headers={"ETag": "x"})
        return web.Response(text="twelve bytes")

    async with backends(("app", bodiless)) as (app,):
        async with (
            running_proxy(simple_proxy("app", [app.port])) as proxy,
            raw_connection(proxy.port()) as (reader, writer),
        ):
            writer.write(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
            status, headers, _ = await read_response(reader, head_request=True)
            assert (status, headers["content-length"]) == (200, "12")
            for path in (b"/204", b"/304", b"/"):
                writer.write(b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n\r\n")
                status, headers, body = await read_response(reader)
                assert "transfer-encoding" not in headers
            assert (status, body) == (200, b"twelve bytes")
        assert proxy.stat("cluster.app.upstream_cx_total") == 1


async def test_connection_close_is_honoured() -> None:
    async with backends("app") as (app,), running_proxy(simple_proxy("app", [app.port])) as proxy:
        async with raw_connection(proxy.port()) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert (status, headers["connection"], body) == (200, "close", b"app")
            assert await reader.read() == b""  # the proxy closed the connection
        async with raw_connection(proxy.port()) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            assert (await read_response(reader))[0] == 400  # HTTP/1.1 needs a Host


async def test_http_1_0_is_refused_unless_accepted_like_envoy() -> None:
    routes = [route({"prefix": "/"}, "app")]
    options = {"accept_http_10": True, "default_host_for_http_10": "legacy.local"}
    async with backends("app") as (app,):
        resources = [
            cluster("app", [app.port]),
            http_listener("ingress", [vhost("vh", ["*"], routes)]),
            http_listener("legacy", [vhost("vh", ["*"], routes)], http_protocol_options=options),
        ]
        async with running_proxy(resources) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                assert (await read_response(reader))[0] == 426
            async with raw_connection(proxy.port("legacy")) as (reader, writer):
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                assert (await read_response(reader))[2] == b"app"
                assert await reader.read() == b""
            assert app.requests[-1].headers["Host"] == "legacy.local"
            async with raw_connection(proxy.port("legacy")) as (reader, writer):
                writer.write(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
                assert (await read_response(reader))[1]["connection"] == "keep-alive"
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                assert (await read_response(reader))[0] == 200


async def test_pipelined_requests_are_answered_in_order() -> None:
    async def by_path(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(0.02)
        return web.Response(text=request.path)

    async with backends(("app", by_path)) as (app,):
        async with (
            running_proxy(simple_proxy("app", [app.port])) as proxy,
            raw_connection(proxy.port()) as (reader, writer),
        ):
            writer.write(
                b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
                b"POST /fast HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
                b"GET /last HTTP/1.1\r\nhost: x\r\n\r\n"
            )
            bodies = [(await read_response(reader))[2] for _ in range(3)]
        assert bodies == [b"/slow", b"/fast", b"/last"]


async def test_envoy_request_and_response_headers() -> None:
    async def headers_app(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"Server": "gunicorn", "X-App": "1"})

    async with backends(("app", headers_app)) as (app,):
        routes = [route({"prefix": "/"}, "app")]
        resources = [
            cluster("app", [app.port]),
            http_listener("ingress", [vhost("vh", ["*"], routes)], use_remote_address=True),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            sent = {"x-amzn-trace-id": trace, "x-forwarded-for": "10.0.0.1"}
            status, headers, _ = await fetch(session, proxy.url("/"), headers=sent)
            assert status == 200
            assert headers["server"] == "envoy"
            assert headers["x-envoy-upstream-service-time"].isdigit()
            assert headers["x-app"] == "1"
            seen = app.requests[-1].headers
            assert len(seen["x-request-id"]) == 36
            assert seen["x-amzn-trace-id"] == trace
            assert seen["x-forwarded-for"] == "10.0.0.1,127.0.0.1"
            assert seen["x-forwarded-proto"] == "http"
            await fetch(session, proxy.url("/"), headers={"x-request-id": "keep-me"})
            assert app.requests[-1].headers["x-request-id"] == "keep-me"


async def test_server_header_name_is_configurable() -> None:
    async with backends("app") as (app,):
        routes = [route({"prefix": "/"}, "app")]
        resources = [
            cluster("app", [app.port]),
            http_listener("ingress", [vhost("vh", ["*"], routes)], server_name="mesh-proxy"),
        ]
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[1]["server"] == "mesh-proxy"


async def test_expect_100_continue_is_answered_by_the_proxy() -> None:
    async with (
        backends(("echo", _echo)) as (echo,),
        running_proxy(simple_proxy("echo", [echo.port])) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        writer.write(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        assert (await read_response(reader))[2] == b"POST 5 -"


async def test_close_delimited_upstream_responses_are_rechunked() -> None:
    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    upstream = await raw_server(old_server)
    port = upstream.sockets[0].getsockname()[1]
    async with (
        running_proxy(simple_proxy("old", [port])) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert (status, body) == (200, b"until the end")
            assert headers["transfer-encoding"] == "chunked"
    upstream.close()


async def test_a_stale_pooled_connection_is_retried_transparently() -> None:
    """The upstream keeps connections 'alive' but drops each one on its second request."""
    connections = []

    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await read_request_head(reader)
        writer.transport.abort()

    upstream = await raw_server(one_shot)
    port = upstream.sockets[0].getsockname()[1]
    async with running_proxy(simple_proxy("flaky", [port])) as proxy, client() as session:
        for _ in range(3):
            assert (await fetch(session, proxy.url("/")))[::2] == (200, "ok")
    assert proxy.stat("cluster.flaky.upstream_rq_retry") == 0
    assert len(connections) == 3
    upstream.close()


async def test_an_upstream_reset_after_headers_resets_the_client() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    upstream = await raw_server(half)
    port = upstream.sockets[0].getsockname()[1]
    async with running_proxy(simple_proxy("half", [port])) as proxy:
        async with raw_connection(proxy.port()) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            received = await reader.read()  # until the proxy closes
        assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b"partial")
        assert proxy.stat("cluster.half.upstream_rq_rx_reset") == 1
    upstream.close()


async def test_malformed_requests_get_400_and_upgrades_403() -> None:
    async with backends("app") as (app,):
        async with running_proxy(simple_proxy("app", [app.port])) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(b"GARBAGE\r\n\r\n")
                assert (await read_response(reader))[::2] == (400, b"Bad Request")
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(
                    b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\n"
                    b"upgrade: websocket\r\n\r\n"
                )
                assert (await read_response(reader))[0] == 403
        assert proxy.stat("http.ingress.downstream_cx_protocol_error") == 1
        assert app.requests == []


async def test_finished_requests_are_freed_without_the_cycle_collector() -> None:
    """A finished request must not sit in a reference cycle (Router <-> Attempt): under
    load those cycles cost a collection every ~85 requests and pauses of many ms."""
    import gc

    from proxy.router.router import Router

    async with (
        backends("app") as (app,),
        running_proxy(simple_proxy("app", [app.port])) as proxy,
        client() as session,
    ):
        gc.collect()
        gc.disable()
        try:
            for _ in range(30):
                assert (await fetch(session, proxy.url("/")))[0] == 200
            alive = sum(isinstance(obj, Router) for obj in gc.get_objects())
        finally:
            gc.enable()
    assert alive <= 2
