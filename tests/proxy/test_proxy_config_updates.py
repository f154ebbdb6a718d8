"""Config versions: atomic swaps that never drop in-flight requests, RDS/EDS, NACKs."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from proxy_envoy import (
    LISTENER,
    ROUTE_CONFIGURATION,
    cla,
    cluster,
    eds_cluster,
    http_listener,
    rds_resource,
    route,
    simple_proxy,
    vhost,
)
from proxy_harness import backends, client, fetch, raw_connection, read_response, running_proxy

from proxy.config.protojson import ConfigError


def _to(name: str) -> list[dict]:
    return [vhost("vh", ["*"], [route({"prefix": "/"}, name)])]


async def test_an_update_does_not_drop_an_in_flight_request() -> None:
    release = asyncio.Event()

    async def gated(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="old")

    async with backends(("old", gated), "new") as (old, new):
        v1 = [cluster("old", [old.port]), http_listener("ingress", _to("old"))]
        async with running_proxy(v1) as proxy:
            port = proxy.port()
            async with raw_connection(port) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                while not old.requests:
                    await asyncio.sleep(0.005)
                v2 = [
                    cluster("new", [new.port]),
                    http_listener("ingress", _to("new")),
                ]
                await proxy.server.apply(v2, "2")
                assert proxy.port() == port  # same socket, new filter chain
                release.set()
                status, headers, body = await read_response(reader)
                assert (status, body) == (200, b"old")
                # Its filter chain (inline routes) changed: Envoy drains the connection.
                assert headers["connection"] == "close"
                assert await reader.read() == b""
            async with client() as session:
                assert (await fetch(session, proxy.url("/")))[2] == "new"
            assert proxy.server.version == "2"
            assert proxy.stat("http.ingress.downstream_cx_total") == 2
            assert proxy.stat("http.ingress.downstream_cx_drain_close") == 1


async def test_route_updates_over_rds_apply_to_open_connections() -> None:
    async with backends("blue", "green") as (blue, green):
        base = [
            cluster("blue", [blue.port]),
            cluster("green", [green.port]),
            http_listener("ingress", rds="colors"),
        ]
        async with running_proxy([*base, rds_resource("colors", _to("blue"))]) as proxy:
            async with client() as session:
                assert (await fetch(session, proxy.url("/")))[2] == "blue"
                await proxy.server.apply([*base, rds_resource("colors", _to("green"))], "2")
                assert (await fetch(session, proxy.url("/")))[2] == "green"
            assert proxy.stat("http.ingress.downstream_cx_total") == 1


async def test_missing_rds_route_configuration_is_404() -> None:
    async with backends("app") as (app,):
        resources = [cluster("app", [app.port]), http_listener("ingress", rds="not-yet")]
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[0] == 404


async def test_eds_updates_move_traffic_and_keep_pools_of_staying_hosts() -> None:
    async with backends("a", "b") as (a, b):
        base = [eds_cluster("svc"), http_listener("ingress", _to("svc"))]
        async with running_proxy([*base, cla("svc", [a.port])]) as proxy:
            async with client() as session:
                assert (await fetch(session, proxy.url("/")))[2] == "a"
                await proxy.server.apply([*base, cla("svc", [a.port, b.port])], "2")
                bodies = {(await fetch(session, proxy.url("/")))[2] for _ in range(4)}
                assert bodies == {"a", "b"}
                await proxy.server.apply([*base, cla("svc", [b.port])], "3")
                assert {(await fetch(session, proxy.url("/")))[2] for _ in range(4)} == {"b"}
            # a's pooled connection survived version 2; only b needed a new one.
            assert proxy.stat("cluster.svc.upstream_cx_total") == 2


async def test_a_rejected_update_keeps_the_last_good_config() -> None:
    async with backends("app") as (app,), running_proxy(simple_proxy("app", [app.port])) as proxy:
        bad_route = route({"safe_regex": {"regex": "(unclosed"}}, "app")
        bad = [
            cluster("app", [app.port]),
            http_listener("ingress", [vhost("v", ["*"], [bad_route])]),
        ]
        # The listener is refused on its own and keeps version 1's; the rest of 2 is live.
        refused = await proxy.server.apply(bad, "2")
        assert "invalid regex" in refused[LISTENER]["ingress"]
        duplicate = [cluster("app", [app.port]), cluster("app", [app.port])]
        with pytest.raises(ConfigError, match="duplicate"):  # the set itself is wrong
            await proxy.server.apply(duplicate, "3")
        async with client() as session:
            assert (await fetch(session, proxy.url("/")))[2] == "app"
        assert proxy.server.version == "2"


async def test_a_route_configuration_that_does_not_compile_is_refused_alone() -> None:
    """Envoy loads each RDS resource apart: a bad one is NACKed and keeps its last
    accepted version; a new one refused leaves its listener with none (404, ``NR``, as
    Envoy's null route config answers); the rest of the update goes live."""
    async with backends("blue", "green") as (blue, green):
        base = [
            cluster("blue", [blue.port]),
            http_listener("ingress", rds="colors"),
            http_listener("other", rds="fresh", stat_prefix="other"),
        ]
        v1 = [*base, rds_resource("colors", _to("blue"))]
        async with running_proxy(v1) as proxy, client() as session:
            bad = [route({"safe_regex": {"regex": "(unclosed"}}, "green")]
            v2 = [
                *base,
                cluster("green", [green.port]),
                rds_resource("colors", [vhost("vh", ["*"], bad)]),
                rds_resource("fresh", [vhost("vh", ["*"], bad)]),
            ]
            refused = await proxy.server.apply(v2, "2")
            assert set(refused) == {ROUTE_CONFIGURATION}
            assert "invalid regex" in refused[ROUTE_CONFIGURATION]["colors"]
            assert set(refused[ROUTE_CONFIGURATION]) == {"colors", "fresh"}
            assert (await fetch(session, proxy.url("/")))[2] == "blue"  # version 1's routes
            assert proxy.server.ctx.clusters.get("green") is not None  # the rest of 2 is live
            assert (await fetch(session, proxy.url("/", "other")))[0] == 404
            assert proxy.stat("http.other.no_route") == 1
            fixed = [rds_resource(name, _to("green")) for name in ("colors", "fresh")]
            good = [*v2[:-2], *fixed]
            assert await proxy.server.apply(good, "3") == {}
            assert (await fetch(session, proxy.url("/")))[2] == "green"
            assert (await fetch(session, proxy.url("/", "other")))[2] == "green"


async def test_a_listener_that_cannot_bind_is_refused_alone() -> None:
    """Envoy binds each listener apart: one whose port is taken fails with "cannot bind"
    and ``listener_manager.listener_create_failure``; a moved one keeps its old socket
    and version; the other listeners and clusters of the update go live."""
    async with (
        backends("app", "new") as (app, new),
        running_proxy(simple_proxy("app", [app.port])) as proxy,
        client() as session,
    ):
        first = proxy.port()
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        try:
            taken = blocker.sockets[0].getsockname()[1]
            clash = [
                cluster("app", [app.port]),
                cluster("new", [new.port]),
                http_listener("ingress", _to("new"), port=taken),  # moved onto a taken port
                http_listener("extra", _to("new"), port=taken, stat_prefix="extra"),
                http_listener("fine", _to("new"), stat_prefix="fine"),
            ]
            refused = await proxy.server.apply(clash, "2")
            reasons = refused[LISTENER]
            assert set(reasons) == {"ingress", "extra"}
            assert f"cannot bind '127.0.0.1:{taken}'" in reasons["ingress"]
            assert proxy.stat("listener_manager.listener_create_failure") == 2
            assert proxy.port() == first  # still bound where it was, at version 1
            assert (await fetch(session, proxy.url("/")))[2] == "app"
            assert "extra" not in proxy.server.listeners
            assert (await fetch(session, proxy.url("/", "fine")))[2] == "new"
            assert proxy.server.version == "2"
        finally:
            blocker.close()
            await blocker.wait_closed()


async def test_listeners_open_move_and_close_with_the_config() -> None:
    async with backends("app") as (app,), running_proxy(simple_proxy("app", [app.port])) as proxy:
        first = proxy.port()
        await proxy.server.apply([cluster("app", [app.port])], "2")
        assert "ingress" not in proxy.server.listeners
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", first)


async def test_route_updates_under_keep_alive_load_stall_no_request() -> None:
    """Issue 9's measurement, as a test: a client keeps one connection alive and sends
    requests back to back while the routes (and a cluster's settings) change 30 times.
    Every request must be answered, by the old or the new config, well before the
    client's timeout; a stalled request is one that needed the timeout."""
    async with backends("a", "b") as (a, b):

        def version(n: int) -> list[dict]:
            target = "a" if n % 2 else "b"
            timeout = f"{0.25 + n / 1000:.3f}s"  # the clusters change too, every time
            return [
                cluster("a", [a.port], connect_timeout=timeout),
                cluster("b", [b.port], connect_timeout=timeout),
                http_listener("ingress", _to(target)),
            ]

        async with running_proxy(version(0)) as proxy:
            answers: list[str] = []
            stalled = 0
            done = asyncio.Event()

            async def keep_asking() -> None:
                nonlocal stalled
                connector = aiohttp.TCPConnector(limit=1)
                timeout = aiohttp.ClientTimeout(total=3)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
                    for _ in range(2000):  # bounded; normally ends when the updates do
                        if done.is_set():
                            return
                        try:
                            async with s.get(proxy.url("/")) as response:
                                answers.append(await response.text())
                        except (TimeoutError, aiohttp.ClientError):
                            stalled += 1

            asking = asyncio.create_task(keep_asking())
            for n in range(1, 31):
                await asyncio.sleep(0.02)
                await proxy.server.apply(version(n), str(n + 1))
            done.set()
            await asking
            assert stalled == 0, f"{stalled} of {len(answers) + stalled} requests stalled"
            assert {"a", "b"} <= set(answers), answers[-5:]
