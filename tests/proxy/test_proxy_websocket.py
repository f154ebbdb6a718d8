"""WebSockets through the sidecar: aiohttp's client, an aiohttp echo server, real sockets.

The listener enables ``upgrade_configs: [{upgrade_type: websocket}]`` as App Mesh's
HCMs do; a ``101`` turns the request into a tunnel, anything else is a normal response.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import h2.config
import h2.connection
import h2.events
import h2.settings
from aiohttp import web

from tests.proxy.proxy_envoy import cluster, file_access_log, http_listener, route, vhost
from tests.proxy.proxy_harness import (
    backends,
    client,
    raw_connection,
    raw_server,
    read_request_head,
    read_response,
    running_proxy,
    wait_until,
)
from tests.websocket_peers import MIB, H2WebSocket, H2WebSocketServer, echo

WEBSOCKET = [{"upgrade_type": "websocket"}]


def ws_proxy(port: int, *, route_extra: dict | None = None, **hcm: Any) -> list[dict[str, Any]]:
    routes = [route({"prefix": "/"}, "ws", **(route_extra or {}))]
    hcm.setdefault("upgrade_configs", WEBSOCKET)
    return [cluster("ws", [port]), http_listener("ingress", [vhost("all", ["*"], routes)], **hcm)]


async def test_text_binary_and_a_mebibyte_echo_then_the_client_closes() -> None:
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port)) as proxy,
        client() as session,
    ):
        async with session.ws_connect(proxy.url("/chat"), max_msg_size=4 * MIB) as ws:
            assert proxy.stat("http.ingress.downstream_cx_upgrades_active") == 1
            await ws.send_str("hello")
            assert await ws.receive_str(timeout=5) == "hello"
            await ws.send_bytes(b"\x00\xff" * 8)
            assert await ws.receive_bytes(timeout=5) == b"\x00\xff" * 8
            big = bytes(range(256)) * (MIB // 256)
            await ws.send_bytes(big)
            assert await ws.receive_bytes(timeout=10) == big
            assert await ws.close()
            assert ws.close_code == aiohttp.WSCloseCode.OK
        await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)
        assert proxy.stat("http.ingress.downstream_cx_upgrades_total") == 1
        assert proxy.stat("http.ingress.downstream_rq_1xx") == 1
        assert proxy.stat("cluster.ws.upstream_rq_101") == 1
        await wait_until(lambda: proxy.stat("cluster.ws.upstream_cx_destroy") == 1)
        assert app.requests[0].headers["upgrade"].lower() == "websocket"


async def test_one_access_log_line_per_websocket_with_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = file_access_log(str(path), text="%RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT%\n")
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port, access_log=[log])) as proxy,
        client() as session,
    ):
        async with session.ws_connect(proxy.url("/")) as ws:
            await ws.send_bytes(b"z" * 10000)
            assert len(await ws.receive_bytes(timeout=5)) == 10000
        await wait_until(lambda: path.exists() and path.read_text().count("\n") == 1)
        status, received, sent = path.read_text().split()
        # Both directions carry the 10 000 bytes plus frame headers and the close frames.
        assert status == "101" and 10000 < int(received) < 10100 and 10000 < int(sent) < 10100
        assert proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0


async def test_the_server_closes_with_its_code_and_reason() -> None:
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port)) as proxy,
        client() as session,
    ):
        async with session.ws_connect(proxy.url("/")) as ws:
            await ws.send_str("close-me")
            message = await ws.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert (message.data, message.extra) == (4001, "server says bye")
        await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)


async def test_a_backend_answering_200_is_relayed_as_a_response() -> None:
    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(text="no websockets here")

    async with (
        backends(("plain", plain)) as (app,),
        running_proxy(ws_proxy(app.port)) as proxy,
        client() as session,
    ):
        try:
            async with session.ws_connect(proxy.url("/")):
                raise AssertionError("the handshake cannot succeed")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 200
        assert proxy.stat("cluster.ws.upstream_rq_200") == 1
        await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)


async def test_an_upgrade_is_never_retried() -> None:
    """Retry policies do not apply to upgrades: one 503 from the backend, relayed."""

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="down")

    retry = {"retry_policy": {"retry_on": "5xx", "num_retries": 3}}
    async with (
        backends(("down", unavailable)) as (app,),
        running_proxy(ws_proxy(app.port, route_extra=retry)) as proxy,
        client() as session,
    ):
        try:
            async with session.ws_connect(proxy.url("/")):
                raise AssertionError("the handshake cannot succeed")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 503
        assert len(app.requests) == 1
        assert proxy.stat("cluster.ws.upstream_rq_retry") == 0


async def test_upgrades_not_enabled_are_refused_with_403() -> None:
    async with (
        backends(("ws", echo)) as (app,),
        client() as session,
    ):
        # No upgrade_configs on the HCM; then enabled there but disabled by the route.
        for resources in (
            ws_proxy(app.port, upgrade_configs=[]),
            ws_proxy(app.port, route_extra={"upgrade_configs": [{"upgrade_type": "WebSocket",
                                                                 "enabled": False}]}),
            ws_proxy(app.port, upgrade_configs=[{"upgrade_type": "websocket", "enabled": False}]),
        ):  # fmt: skip
            async with running_proxy(resources) as proxy:
                try:
                    async with session.ws_connect(proxy.url("/")):
                        raise AssertionError("the upgrade must be refused")
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 403
                assert proxy.stat("http.ingress.downstream_cx_upgrades_total") == 0
        assert app.requests == []


async def test_a_route_can_enable_what_the_hcm_disabled() -> None:
    disabled = [{"upgrade_type": "websocket", "enabled": False}]
    enabled = {"upgrade_configs": [{"upgrade_type": "websocket", "enabled": True}]}
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port, upgrade_configs=disabled, route_extra=enabled)) as proxy,
        client() as session,
        session.ws_connect(proxy.url("/")) as ws,
    ):
        await ws.send_str("on")
        assert await ws.receive_str(timeout=5) == "on"


async def test_the_route_timeout_does_not_cut_a_websocket_but_the_idle_timeout_does() -> None:
    """Envoy's route timeout starts when the request ends, which an upgrade never does;
    the route's ``idle_timeout`` closes a tunnel nobody speaks on."""
    extra = {"timeout": "0.3s", "idle_timeout": "0.8s"}
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port, route_extra=extra)) as proxy,
        client() as session,
        session.ws_connect(proxy.url("/"), autoping=False) as ws,
    ):
        for _ in range(4):  # 1.2 s of traffic, four times the route timeout
            await asyncio.sleep(0.3)
            await ws.send_str("still here")
            assert await ws.receive_str(timeout=5) == "still here"
        started = time.monotonic()
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert 0.4 < time.monotonic() - started < 3
        assert proxy.stat("http.ingress.downstream_rq_idle_timeout") == 1


async def test_half_close_passes_both_ways() -> None:
    """Raw sockets: the client's FIN reaches the upstream while the upstream still
    answers, and the upstream's FIN then ends the tunnel."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\n"
        )
        received = await reader.read()  # until the proxy passes the client's FIN on
        writer.write(b"got " + received)
        writer.write_eof()
        await writer.drain()
        writer.close()

    server = await raw_server(upstream)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            running_proxy(ws_proxy(port, upgrade_configs=[{"upgrade_type": "raw"}])) as proxy,
            raw_connection(proxy.port()) as (reader, writer),
        ):
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: raw\r\n")
            writer.write(b"\r\n")
            status, headers, _ = await read_response(reader)
            assert status == 101 and headers["upgrade"] == "raw"
            assert headers["connection"] == "upgrade" and "content-length" not in headers
            writer.write(b"ping")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"got ping"
            await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)
    finally:
        server.close()


async def test_a_slow_reader_makes_the_proxy_stop_reading_the_upstream() -> None:
    """Backpressure: a client that does not read leaves the bytes in the upstream's
    socket, not in the proxy's memory."""
    sent = 0

    async def flood(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(2000):  # at most 128 MiB, bounded
                await asyncio.wait_for(ws.send_bytes(chunk), 2)
                sent += len(chunk)
        except (TimeoutError, ConnectionError):
            pass
        return ws

    async with (
        backends(("ws", flood)) as (app,),
        running_proxy(ws_proxy(app.port)) as proxy,
        client() as session,
        session.ws_connect(proxy.url("/"), max_msg_size=0) as ws,
    ):
        await ws.receive_bytes(timeout=5)
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        transport.pause_reading()
        await asyncio.sleep(3)  # the server's sends time out once every buffer is full
        stuck = sent
        assert stuck < 64 * MIB, f"the proxy kept reading: {stuck} bytes sent"
        transport.resume_reading()
        await ws.receive_bytes(timeout=5)
        assert proxy.stat("http.ingress.downstream_cx_upgrades_active") == 1


ALLOW_CONNECT = {"allow_connect": True}


async def test_an_http2_client_opens_a_websocket_with_extended_connect() -> None:
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port, http2_protocol_options=ALLOW_CONNECT)) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        ws = H2WebSocket(reader, writer)
        response = await ws.open("/chat")
        assert ws.remote_connect_setting() == 1
        assert dict(response.headers)[":status"] == "200"
        await ws.send(0x1, b"over h2")
        assert await ws.receive() == (0x1, b"over h2")
        await ws.send(0x2, b"\x01" * 40000)
        assert await ws.receive() == (0x2, b"\x01" * 40000)
        await ws.send(0x8, (1000).to_bytes(2, "big"))  # close handshake
        opcode, payload = await ws.receive()
        assert (opcode, payload[:2]) == (0x8, (1000).to_bytes(2, "big"))
        ws.h2.end_stream(1)
        await ws._send()
        ended = await ws._until(lambda e: isinstance(e, h2.events.StreamEnded))
        assert ended.stream_id == 1
        await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)
        assert proxy.stat("http.ingress.downstream_cx_upgrades_total") == 1
        # The backend saw an RFC 6455 handshake: a GET with a key this proxy made up.
        seen = app.requests[0]
        assert seen.method == "GET" and seen.headers["upgrade"] == "websocket"
        assert len(base64.b64decode(seen.headers["sec-websocket-key"])) == 16


async def test_extended_connect_is_offered_only_with_allow_connect() -> None:
    async with (
        backends(("ws", echo)) as (app,),
        running_proxy(ws_proxy(app.port)) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        ws = H2WebSocket(reader, writer)
        ws.h2.initiate_connection()
        await ws._send()
        await ws._until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        assert ws.remote_connect_setting() == 0


async def test_an_http2_websocket_to_a_backend_answering_200_gets_502() -> None:
    """An RFC 8441 client reads 200 as "tunnel open": a backend's plain 200 must not
    look like that."""

    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(text="no websockets here")

    async with (
        backends(("plain", plain)) as (app,),
        running_proxy(ws_proxy(app.port, http2_protocol_options=ALLOW_CONNECT)) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        response = await H2WebSocket(reader, writer).open("/")
        assert dict(response.headers)[":status"] == "502"
        assert proxy.stat("cluster.ws.upstream_rq_200") == 1


H2_CLUSTER = {
    "typed_extension_protocol_options": {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {"allow_connect": True}},
        }
    }
}


KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key


def h2_ws_proxy(port: int) -> list[dict[str, Any]]:
    """A listener (HTTP/1.1 and HTTP/2, extended CONNECT offered) to an HTTP/2 cluster."""
    routes = [route({"prefix": "/"}, "h2ws")]
    return [
        cluster("h2ws", [port], **H2_CLUSTER),
        http_listener(
            "ingress", [vhost("all", ["*"], routes)], upgrade_configs=WEBSOCKET,
            http2_protocol_options=ALLOW_CONNECT,
        ),
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def h2_websocket_server(offer_connect: bool = True) -> AsyncIterator[H2WebSocketServer]:
    server = H2WebSocketServer(offer_connect)
    await server.start()
    try:
        yield server
    finally:
        server.close()


def h2_port(server: H2WebSocketServer) -> int:
    assert server.server is not None
    return int(server.server.sockets[0].getsockname()[1])


async def test_an_http1_websocket_reaches_an_http2_upstream_as_extended_connect() -> None:
    """aiohttp's RFC 6455 handshake in, RFC 8441 out: the upstream sees a CONNECT with
    ``:protocol websocket`` and no hop-by-hop headers; its 200 is the client's 101, with
    the ``Sec-WebSocket-Accept`` aiohttp checks."""
    async with (
        h2_websocket_server() as server,
        running_proxy(h2_ws_proxy(h2_port(server))) as proxy,
        client() as session,
    ):
        async with session.ws_connect(proxy.url("/chat")) as ws:
            assert proxy.stat("http.ingress.downstream_cx_upgrades_active") == 1
            await ws.send_str("hello h2")
            assert await ws.receive_str(timeout=5) == "hello h2"
            await ws.send_bytes(b"\x00\xff" * 20000)  # several DATA frames
            assert await ws.receive_bytes(timeout=5) == b"\x00\xff" * 20000
            assert await ws.close()
            assert ws.close_code == aiohttp.WSCloseCode.OK
        await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)
        seen = server.requests[0]
        assert (seen[":method"], seen[":protocol"], seen[":path"]) == (
            "CONNECT",
            "websocket",
            "/chat",
        )
        assert "upgrade" not in seen and "connection" not in seen
        assert proxy.stat("cluster.h2ws.upstream_rq_101") == 1
        assert proxy.stat("cluster.h2ws.upstream_cx_total") == 1
        # The tunnel's stream is over; the connection stays pooled for the next request.
        async with session.ws_connect(proxy.url("/again")) as ws:
            await ws.send_str("twice")
            assert await ws.receive_str(timeout=5) == "twice"
        assert proxy.stat("cluster.h2ws.upstream_cx_total") == 1


async def test_an_http2_websocket_reaches_an_http2_upstream_as_extended_connect() -> None:
    """RFC 8441 both ways: no key is made up, DATA carries the frames end to end."""
    async with (
        h2_websocket_server() as server,
        running_proxy(h2_ws_proxy(h2_port(server))) as proxy,
        raw_connection(proxy.port()) as (reader, writer),
    ):
        ws = H2WebSocket(reader, writer)
        response = await ws.open("/chat")
        assert dict(response.headers)[":status"] == "200"
        await ws.send(0x1, b"h2 to h2")
        assert await ws.receive() == (0x1, b"h2 to h2")
        await ws.send(0x8, (1000).to_bytes(2, "big"))
        opcode, payload = await ws.receive()
        assert (opcode, payload) == (0x8, (1000).to_bytes(2, "big"))
        await ws._until(lambda e: isinstance(e, h2.events.StreamEnded))  # the server ended
        ws.h2.end_stream(1)
        await ws._send()
        await wait_until(lambda: proxy.stat("http.ingress.downstream_cx_upgrades_active") == 0)
        seen = server.requests[0]
        assert (seen[":method"], seen[":protocol"]) == ("CONNECT", "websocket")
        assert "sec-websocket-key" not in seen


async def test_an_upgrade_to_an_http2_upstream_without_extended_connect_gets_503() -> None:
    """The upstream's SETTINGS do not offer ENABLE_CONNECT_PROTOCOL: RFC 8441 forbids
    sending it ``:protocol``, so the client hears a 503 naming the reason, and the
    upstream never sees the request."""
    async with (
        h2_websocket_server(offer_connect=False) as server,
        running_proxy(h2_ws_proxy(h2_port(server))) as proxy,
        client() as session,
    ):
        handshake = {"connection": "upgrade", "upgrade": "websocket",
                     "sec-websocket-version": "13", "sec-websocket-key": KEY}  # fmt: skip
        async with session.get(proxy.url("/chat"), headers=handshake) as response:
            assert response.status == 503
            assert "SETTINGS_ENABLE_CONNECT_PROTOCOL" in await response.text()
        async with session.get(proxy.url("/plain")) as response:
            assert response.status == 404  # the same connection serves plain requests
        assert [r[":path"] for r in server.requests] == ["/plain"]
        assert proxy.stat("cluster.h2ws.upstream_cx_total") == 1


async def test_an_upgrade_to_an_http2_cluster_without_allow_connect_gets_503() -> None:
    """Envoy proxies upgrades over HTTP/2 only with the cluster's ``allow_connect``."""
    resources = h2_ws_proxy(0)
    async with h2_websocket_server() as server:
        resources[0] = cluster("h2ws", [h2_port(server)], **H2_OPTIONS_PLAIN)
        async with running_proxy(resources) as proxy, client() as session:
            handshake = {"connection": "upgrade", "upgrade": "websocket",
                         "sec-websocket-version": "13", "sec-websocket-key": KEY}  # fmt: skip
            async with session.get(proxy.url("/chat"), headers=handshake) as response:
                assert response.status == 503
                assert "allow_connect" in await response.text()
        assert server.requests == []


H2_OPTIONS_PLAIN = {
    "typed_extension_protocol_options": {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }
}
