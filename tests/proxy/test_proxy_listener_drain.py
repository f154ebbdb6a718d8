"""Listener updates drain the connections of the filter chains they change, as Envoy's.

Real sockets on a real ProxyServer, Python ``ssl`` and the h2 library as clients. A
PERMISSIVE listener going STRICT drains its plaintext connections (HTTP/1.1: the next
response says ``connection: close``; HTTP/2: GOAWAY) and keeps its TLS ones; requiring
client certificates cuts off the TLS connections made without one; tcp_proxy
connections are closed after the drain time; a chain, listener or route configuration
left unchanged keeps its connections.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from proxy_envoy import cluster, http_listener, rds_resource, route, tcp_listener, vhost
from proxy_harness import backends, raw_server, read_response, running_proxy, wait_until
from test_proxy_tls import downstream, files, refused, tls_listener, validation

from appmesh_api.localports import free_port
from tests.certificates import Authority

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


async def connect(port: int, context: ssl.SSLContext | None = None) -> Connection:
    return await asyncio.open_connection("127.0.0.1", port, ssl=context)


async def get(connection: Connection) -> tuple[int, dict[str, str], bytes]:
    """One keep-alive request on an open connection."""
    reader, writer = connection
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return await read_response(reader)


async def closed_by_proxy(connection: Connection) -> bool:
    """The proxy ends the connection (EOF or reset) without sending anything more."""
    try:
        return await asyncio.wait_for(connection[0].read(), 15) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def stat(proxy: Any, name: str) -> int:
    return int(proxy.stat(name))


async def test_permissive_to_strict_drains_plaintext_and_keeps_tls(ca: Authority) -> None:
    socket = downstream({"tls_certificates": [files(ca.issue("server", ["secure.local"]))]})
    async with backends("blue") as (blue,):
        port = free_port()
        base = [cluster("blue", [blue.port])]
        v1 = [*base, tls_listener("ingress", port, socket, "PERMISSIVE", "blue")]
        async with running_proxy(v1) as proxy:
            plain, secure = await connect(port), await connect(port, ca.client_context())
            for connection in (plain, secure):
                status, headers, _ = await get(connection)
                assert status == 200 and "connection" not in headers
            await proxy.server.apply(
                [*base, tls_listener("ingress", port, socket, "STRICT", "blue")], "2"
            )
            status, headers, body = await get(plain)  # its raw_buffer chain is gone
            assert (status, body, headers["connection"]) == (200, b"blue", "close")
            assert await closed_by_proxy(plain)
            assert await refused(port, None)  # no plaintext chain for new connections
            for _ in range(2):  # the TLS chain is unchanged: its connection goes on
                status, headers, _ = await get(secure)
                assert status == 200 and "connection" not in headers
            secure[1].close()
            manager = "listener_manager."
            assert stat(proxy, manager + "listener_modified") == 1
            assert stat(proxy, manager + "listener_in_place_updated") == 1
            assert stat(proxy, manager + "total_filter_chains_draining") == 1
            assert stat(proxy, manager + "total_listeners_draining") == 0
            assert stat(proxy, "http.ingress.downstream_cx_drain_close") == 1


async def test_requiring_client_certificates_cuts_off_connections_without_one(
    ca: Authority,
) -> None:
    server, good = ca.issue("server", ["secure.local"]), ca.issue("good", ["front.local"])
    certificate = {"tls_certificates": [files(server)]}
    async with backends("blue") as (blue,):
        port = free_port()
        base = [cluster("blue", [blue.port])]
        v1 = [*base, tls_listener("ingress", port, downstream(certificate), "STRICT", "blue")]
        async with running_proxy(v1, drain_seconds=0.5) as proxy:
            busy, idle = [await connect(port, ca.client_context()) for _ in range(2)]
            assert (await get(busy))[0] == (await get(idle))[0] == 200
            mutual = downstream(certificate, validation(ca, "front.local"))
            v2 = [*base, tls_listener("ingress", port, mutual, "STRICT", "blue")]
            await proxy.server.apply(v2, "2")
            status, headers, _ = await get(busy)
            assert (status, headers["connection"]) == (200, "close")
            assert await closed_by_proxy(busy)
            assert await closed_by_proxy(idle)  # sent nothing: closed at the drain time
            assert await refused(port, ca.client_context())
            with_certificate = await connect(port, ca.client_context(good))
            assert (await get(with_certificate))[0] == 200
            with_certificate[1].close()
            await wait_until(
                lambda: stat(proxy, "listener_manager.total_filter_chains_draining") == 0
            )


async def test_an_unchanged_chain_keeps_its_connections_through_other_changes() -> None:
    async with backends("blue", "green") as (blue, green):
        clusters = [cluster("blue", [blue.port]), cluster("green", [green.port])]

        def version(color: str) -> list[dict[str, Any]]:
            other = [vhost("all", ["*"], [route({"prefix": "/"}, color)])]
            return [
                *clusters,
                http_listener("kept", rds="colors", stat_prefix="kept"),
                http_listener("other", other, stat_prefix="other"),
                rds_resource("colors", [vhost("all", ["*"], [route({"prefix": "/"}, color)])]),
            ]

        async with running_proxy(version("blue"), drain_seconds=0.2) as proxy:
            kept, other = await connect(proxy.port("kept")), await connect(proxy.port("other"))
            assert (await get(kept))[2] == (await get(other))[2] == b"blue"
            await proxy.server.apply(version("green"), "2")  # other's chain and the RDS
            status, headers, body = await get(other)  # drained: served by its old chain
            assert (body, headers["connection"]) == (b"blue", "close")
            await wait_until(
                lambda: stat(proxy, "listener_manager.total_filter_chains_draining") == 0
            )
            for _ in range(2):  # past the drain time: still open, on the new routes
                status, headers, body = await get(kept)
                assert (status, body) == (200, b"green") and "connection" not in headers
            kept[1].close()
            assert stat(proxy, "http.kept.downstream_cx_total") == 1
            assert stat(proxy, "http.kept.downstream_cx_drain_close") == 0
            assert stat(proxy, "listener_manager.listener_in_place_updated") == 1


async def test_a_change_beside_the_chains_drains_the_whole_listener() -> None:
    async with backends("blue") as (blue,):
        listener = http_listener("ingress", [vhost("all", ["*"], [route({"prefix": "/"}, "blue")])])
        resources = [cluster("blue", [blue.port]), listener]
        async with running_proxy(resources) as proxy:
            connection = await connect(proxy.port())
            assert (await get(connection))[0] == 200
            changed = {**listener, "traffic_direction": "INBOUND"}
            await proxy.server.apply([resources[0], changed], "2")
            status, headers, _ = await get(connection)  # the same chain, a new listener
            assert (status, headers["connection"]) == (200, "close")
            assert await closed_by_proxy(connection)
            assert stat(proxy, "listener_manager.listener_modified") == 1
            assert stat(proxy, "listener_manager.listener_in_place_updated") == 0
            assert stat(proxy, "listener_manager.total_listeners_draining") == 1


async def test_an_http2_connection_of_a_drained_chain_gets_goaway(ca: Authority) -> None:
    socket = downstream({"tls_certificates": [files(ca.issue("server", ["secure.local"]))]})
    async with backends("blue") as (blue,):
        port = free_port()
        base = [cluster("blue", [blue.port])]
        v1 = [*base, tls_listener("ingress", port, socket, "PERMISSIVE", "blue")]
        async with running_proxy(v1) as proxy:
            reader, writer = await connect(port)
            client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
            client.initiate_connection()
            writer.write(client.data_to_send())  # the preface: the HTTP/2 codec takes over
            http2 = "http.ingress.downstream_cx_http2_total"
            await wait_until(lambda: proxy.server.stats.get(http2) == 1)
            await proxy.server.apply(
                [*base, tls_listener("ingress", port, socket, "STRICT", "blue")], "2"
            )
            terminated: list[h2.events.ConnectionTerminated] = []
            while not terminated:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                assert chunk, "closed without GOAWAY"
                events = client.receive_data(chunk)
                terminated = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
            assert terminated[0].error_code == 0  # NO_ERROR: a graceful drain
            assert await closed_by_proxy((reader, writer))
            assert stat(proxy, "http2.goaway_sent") == 1
            writer.close()


async def test_a_tcp_proxy_connection_of_a_changed_chain_closes_after_the_drain_time() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    upstream = await raw_server(echo)
    try:
        port = upstream.sockets[0].getsockname()[1]
        listen = free_port()
        resources = [cluster("echo", [port]), tcp_listener("tcp", port=listen, cluster="echo")]
        async with running_proxy(resources, drain_seconds=3) as proxy:
            reader, writer = await connect(listen)
            writer.write(b"one")
            assert await reader.readexactly(3) == b"one"
            changed = tcp_listener("tcp", port=listen, cluster="echo", idle_timeout="60s")
            await proxy.server.apply([resources[0], changed], "2")
            writer.write(b"two")  # tcp_proxy has no request boundary: it carries on...
            assert await reader.readexactly(3) == b"two"
            assert await closed_by_proxy((reader, writer))  # ...until the drain time
            writer.close()
            fresh = await connect(listen)  # a new connection takes the new chain
            fresh[1].write(b"three")
            assert await fresh[0].readexactly(5) == b"three"
            fresh[1].close()
    finally:
        upstream.close()
