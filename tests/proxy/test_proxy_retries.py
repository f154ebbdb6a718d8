"""Retry policies: what is retried, how often, and what the client finally sees."""

from __future__ import annotations

import asyncio
import itertools

import h2.config
import h2.connection
import h2.events
from aiohttp import web
from proxy_envoy import cluster, http_listener, route, simple_proxy, vhost
from proxy_harness import (
    backends,
    client,
    fetch,
    fetch_many,
    raw_connection,
    running_proxy,
    wait_until,
)
from test_proxy_http2 import H2_OPTIONS

from appmesh_api.localports import free_port

UNLIMITED = {"thresholds": [{"max_retries": 1000}]}


def _flaky(every: int, status: int = 500):
    """Fail ``every``-th request (1 of 2 = a 50%-failing backend)."""
    counter = itertools.count()

    async def handler(request: web.Request) -> web.Response:
        if next(counter) % every == 0:
            return web.Response(status=status, text="boom")
        return web.Response(text="ok")

    return handler


async def test_retries_hide_a_50_percent_failing_backend() -> None:
    policy = {"retry_on": "5xx", "num_retries": 3, "retry_back_off": {"base_interval": "0.001s"}}
    async with backends(("flaky", _flaky(2))) as (flaky,):
        resources = simple_proxy(
            "flaky", [flaky.port], route_extra={"retry_policy": policy},
            circuit_breakers=UNLIMITED,
        )  # fmt: skip
        async with running_proxy(resources) as proxy, client() as session:
            results = await fetch_many(session, proxy.url("/"), 100, concurrency=1)
        assert all(status == 200 for status, _ in results)
        # Every other upstream answer fails, so each request's first attempt fails once.
        assert proxy.stat("cluster.flaky.upstream_rq_retry") == 100
        assert proxy.stat("cluster.flaky.upstream_rq_retry_success") == 100
        assert proxy.stat("cluster.flaky.upstream_rq_500") == 100
        assert len(flaky.requests) == 200


async def test_without_a_retry_policy_failures_reach_the_client() -> None:
    async with backends(("flaky", _flaky(2))) as (flaky,):
        async with running_proxy(simple_proxy("flaky", [flaky.port])) as proxy, client() as s:
            statuses = [status for status, _ in await fetch_many(s, proxy.url("/"), 20, 1)]
        assert statuses.count(500) == 10
        assert proxy.stat("cluster.flaky.upstream_rq_retry") == 0


async def test_exhausted_retries_return_the_last_response_flagged_urx() -> None:
    policy = {"retry_on": "gateway-error", "num_retries": 2}
    async with backends(("down", _flaky(1, status=503))) as (down,):
        resources = simple_proxy("down", [down.port], route_extra={"retry_policy": policy})
        async with running_proxy(resources) as proxy, client() as session:
            status, _, body = await fetch(session, proxy.url("/"))
        assert (status, body) == (503, "boom")
        assert len(down.requests) == 3
        assert proxy.stat("cluster.down.upstream_rq_retry_limit_exceeded") == 1


async def test_retry_on_only_retries_what_it_names() -> None:
    policy = {"retry_on": "retriable-status-codes", "retriable_status_codes": [409],
              "num_retries": 1}  # fmt: skip
    async with backends(("conflict", _flaky(1, status=409)), ("err", _flaky(1))) as (c, e):
        resources = [
            cluster("conflict", [c.port]),
            cluster("err", [e.port]),
            http_listener("ingress", [vhost("vh", ["*"], [
                route({"prefix": "/c"}, "conflict", retry_policy=policy),
                route({"prefix": "/e"}, "err", retry_policy=policy),
            ])]),
        ]  # fmt: skip
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/c")))[0] == 409
            assert (await fetch(session, proxy.url("/e")))[0] == 500
        assert (len(c.requests), len(e.requests)) == (2, 1)


async def test_connect_failure_is_retried_on_another_host() -> None:
    dead = free_port()
    policy = {"retry_on": "connect-failure", "num_retries": 2,
              "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}],
              "host_selection_retry_max_attempts": 5}  # fmt: skip
    async with backends("alive") as (alive,):
        resources = simple_proxy("mixed", [dead, alive.port], route_extra={"retry_policy": policy})
        async with running_proxy(resources) as proxy, client() as session:
            results = await fetch_many(session, proxy.url("/"), 10, concurrency=1)
        assert results == [(200, "alive")] * 10
        assert proxy.stat("cluster.mixed.upstream_cx_connect_fail") >= 1


async def test_connect_failure_without_retries_is_503_uf() -> None:
    resources = simple_proxy("dead", [free_port()])
    async with running_proxy(resources) as proxy, client() as session:
        status, _, body = await fetch(session, proxy.url("/"))
    assert status == 503
    assert body.startswith(
        "upstream connect error or disconnect/reset before headers. reset reason: "
        "connection failure"
    )


async def test_request_bodies_are_replayed_on_retry() -> None:
    seen: list[bytes] = []
    counter = itertools.count()

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.read())
        if next(counter) == 0:
            return web.Response(status=503)
        return web.Response(text="ok")

    policy = {"retry_on": "5xx", "num_retries": 1}
    async with backends(("echo", handler)) as (echo,):
        resources = simple_proxy("echo", [echo.port], route_extra={"retry_policy": policy})
        async with running_proxy(resources) as proxy, client() as session:
            body = b"payload-" * 1000
            assert (await fetch(session, proxy.url("/"), "POST", data=body))[0] == 200

            async def chunks():
                yield b"first,"
                yield b"second"

            counter = itertools.count()  # fail the first attempt again
            assert (await fetch(session, proxy.url("/"), "POST", data=chunks()))[0] == 200
    assert seen[0] == seen[1] == body
    assert seen[2] == seen[3] == b"first,second"


async def test_retry_overflow_is_counted_when_max_retries_is_reached() -> None:
    policy = {"retry_on": "5xx", "num_retries": 1}
    breakers = {"thresholds": [{"max_retries": 0}]}
    async with backends(("down", _flaky(1))) as (down,):
        resources = simple_proxy(
            "down", [down.port], route_extra={"retry_policy": policy}, circuit_breakers=breakers
        )
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[0] == 500
        assert proxy.stat("cluster.down.upstream_rq_retry_overflow") == 1
        assert len(down.requests) == 1


async def test_a_client_leaving_during_back_off_releases_the_retry_budget() -> None:
    policy = {"retry_on": "5xx", "num_retries": 5, "retry_back_off": {"base_interval": "10s"}}
    breakers = {"thresholds": [{"max_retries": 1}]}
    async with backends(("down", _flaky(1))) as (down,):
        resources = simple_proxy(
            "down", [down.port], route_extra={"retry_policy": policy}, circuit_breakers=breakers
        )
        async with running_proxy(resources) as proxy:
            async with raw_connection(proxy.port()) as (_, writer):
                writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                await wait_until(lambda: proxy.stat("cluster.down.upstream_rq_retry") == 1)
                assert proxy.stat("cluster.down.circuit_breakers.default.rq_retry_open") == 1
            await wait_until(lambda: proxy.stat("http.ingress.downstream_rq_rx_reset") == 1)
            assert proxy.stat("cluster.down.circuit_breakers.default.rq_retry_open") == 0


# -- an internal request's x-envoy-retry-* headers (Envoy's router reads them) ---------------
INTERNAL = {"x-forwarded-for": "10.1.2.3"}  # one internal address: Envoy's internal request
_RETRY_HEADERS = ("x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
                  "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names")  # fmt: skip


def _always(status: int, **headers: str):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text="no", headers=headers)

    return handler


async def _attempts(route_extra: dict | None, headers: dict[str, str], handler) -> tuple[int, list]:
    """(final status, the requests the backend saw) for one request to a proxy whose one
    route has ``route_extra``."""
    async with backends(("b", handler)) as (backend,):
        resources = simple_proxy("b", [backend.port], route_extra=route_extra)
        async with running_proxy(resources) as proxy, client() as session:
            status, _, _ = await fetch(session, proxy.url("/"), headers=headers)
    return status, backend.requests


async def test_an_internal_request_retries_as_its_headers_ask_and_they_do_not_go_upstream() -> None:
    """No retry policy on the route: ``x-envoy-retry-on: 5xx`` with
    ``x-envoy-max-retries: 2`` makes three attempts; none of the headers is forwarded."""
    headers = {**INTERNAL, "x-envoy-retry-on": "5xx", "x-envoy-max-retries": "2"}
    status, seen = await _attempts(None, headers, _always(503))
    assert status == 503 and len(seen) == 3
    for request in seen:
        assert not set(_RETRY_HEADERS) & {k.lower() for k in request.headers}, request.headers
        assert request.headers["x-envoy-internal"] == "true"


async def test_an_external_request_cannot_ask_for_retries() -> None:
    """Without ``x-forwarded-for`` (an app calling its egress) the request is external: the
    HCM strips the headers before the router, so one attempt, and nothing forwarded."""
    headers = {"x-envoy-retry-on": "5xx", "x-envoy-max-retries": "2"}
    status, seen = await _attempts(None, headers, _always(503))
    assert status == 503 and len(seen) == 1
    assert "x-envoy-retry-on" not in seen[0].headers
    assert "x-envoy-max-retries" not in seen[0].headers


async def test_max_retries_header_replaces_the_routes_num_retries() -> None:
    policy = {"retry_on": "5xx", "num_retries": 1, "retry_back_off": {"base_interval": "0.001s"}}
    headers = {**INTERNAL, "x-envoy-max-retries": "3"}
    status, seen = await _attempts({"retry_policy": policy}, headers, _always(500))
    assert status == 500 and len(seen) == 4


async def test_max_retries_alone_retries_nothing() -> None:
    """Envoy applies ``x-envoy-max-retries`` only when something is retried."""
    status, seen = await _attempts(None, {**INTERNAL, "x-envoy-max-retries": "3"}, _always(500))
    assert status == 500 and len(seen) == 1
    assert "x-envoy-max-retries" not in seen[0].headers  # consumed all the same


async def test_retry_grpc_on_retries_a_grpc_status_and_retry_on_does_not_take_grpc_names() -> None:
    """``unavailable`` is a gRPC condition: read from ``x-envoy-retry-grpc-on``, ignored in
    ``x-envoy-retry-on`` (Envoy parses the two headers apart)."""
    unavailable = _always(200, **{"grpc-status": "14", "content-type": "application/grpc"})
    grpc_on = {**INTERNAL, "x-envoy-retry-grpc-on": "unavailable"}
    assert len((await _attempts(None, grpc_on, unavailable))[1]) == 2
    http_on = {**INTERNAL, "x-envoy-retry-on": "unavailable"}
    assert len((await _attempts(None, http_on, unavailable))[1]) == 1


async def test_retriable_status_codes_header_adds_to_the_routes_codes() -> None:
    policy = {"retry_on": "retriable-status-codes", "retriable_status_codes": [409]}
    headers = {**INTERNAL, "x-envoy-retriable-status-codes": "418, 429"}
    status, seen = await _attempts({"retry_policy": policy}, headers, _always(418))
    assert status == 418 and len(seen) == 2
    status, seen = await _attempts({"retry_policy": policy}, INTERNAL, _always(418))
    assert len(seen) == 1  # without the header, 418 is not the route's


async def test_retriable_header_names_header_retries_a_response_carrying_one() -> None:
    headers = {
        **INTERNAL,
        "x-envoy-retry-on": "retriable-headers",
        "x-envoy-retriable-header-names": "x-try-again,x-other",
    }
    status, seen = await _attempts(None, headers, _always(200, **{"x-try-again": "1"}))
    assert status == 200 and len(seen) == 2
    status, seen = await _attempts(None, headers, _always(200))
    assert len(seen) == 1


async def test_retriable_request_headers_limit_retries_to_the_requests_that_match() -> None:
    """Envoy: with ``retriable_request_headers`` a request matching none of them is not
    retried, whatever ``retry_on`` (a header's included) says."""
    policy = {"retry_on": "5xx", "num_retries": 2,
              "retriable_request_headers": [{"name": ":method", "exact_match": "GET"}]}  # fmt: skip
    route_extra = {"retry_policy": policy}
    async with backends(("b", _always(503))) as (backend,):
        resources = simple_proxy("b", [backend.port], route_extra=route_extra)
        async with running_proxy(resources) as proxy, client() as session:
            assert (await fetch(session, proxy.url("/")))[0] == 503
            assert len(backend.requests) == 3
            internal = {**INTERNAL, "x-envoy-retry-on": "5xx"}
            assert (await fetch(session, proxy.url("/"), "POST", headers=internal))[0] == 503
            assert len(backend.requests) == 4


async def _flaky_h2_backend() -> asyncio.AbstractServer:
    """An h2c backend answering, in turn, a 500 with a body and trailers (its head in
    a write of its own) and a plain ``ok``."""
    answered = itertools.count()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while chunk := await reader.read(65536):
            for event in conn.receive_data(chunk):
                if not isinstance(event, h2.events.StreamEnded):
                    continue
                first = next(answered) % 2 == 0
                conn.send_headers(event.stream_id, [(":status", "500" if first else "200")])
                writer.write(conn.data_to_send())
                await writer.drain()
                if first:
                    conn.send_data(event.stream_id, b"flaky server")
                    conn.send_headers(event.stream_id, [("x-flaky", "1")], end_stream=True)
                else:
                    conn.send_data(event.stream_id, b"ok", end_stream=True)
            writer.write(conn.data_to_send())
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_a_retried_responses_body_and_trailers_never_reach_the_client() -> None:
    """The retry's 500 is read to its end (so the HTTP/2 stream is reused); none of
    it goes on: an HTTP/1.1 client would read its body as the next status line, an
    HTTP/2 client would get its trailers (the leak 7ec2991 fixed)."""
    policy = {"retry_on": "5xx", "num_retries": 1, "retry_back_off": {"base_interval": "0.001s"}}
    server = await _flaky_h2_backend()
    port = server.sockets[0].getsockname()[1]
    resources = simple_proxy("h2", [port], route_extra={"retry_policy": policy}, **H2_OPTIONS)
    try:
        async with running_proxy(resources) as proxy:
            async with raw_connection(proxy.port()) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                reply = await reader.read()
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply
            assert reply.endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n"), reply  # chunked: no length
            assert b"flaky" not in reply
            status, data, trailers = await _h2_get(proxy.port())
            assert (status, data, trailers) == (200, b"ok", {})
            assert proxy.stat("cluster.h2.upstream_rq_retry") == 2
            assert proxy.stat("cluster.h2.upstream_cx_total") == 1  # the stream was drained
    finally:
        server.close()


async def _h2_get(port: int) -> tuple[int, bytes, dict[str, str]]:
    """A GET from an HTTP/2 client: status, body and trailers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                          (":authority", "x")], end_stream=True)  # fmt: skip
    writer.write(conn.data_to_send())
    status, data, trailers = 0, b"", {}
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "the proxy closed the HTTP/2 connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])  # type: ignore[arg-type]
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers.update(dict(event.headers))  # type: ignore[arg-type]
                elif isinstance(event, h2.events.StreamEnded):
                    return status, data, trailers
            writer.write(conn.data_to_send())
    finally:
        writer.close()
