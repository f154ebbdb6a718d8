"""A gRPC client's deadline through the proxy, against a slow grpcio server.

Three set-ups, as Envoy has them: the route timeout alone (App Mesh's translation: the
``grpc-timeout`` header just travels upstream), ``max_grpc_timeout`` (the header becomes
the router's timeout, 504 → UNAVAILABLE) and ``max_stream_duration`` (the stream timer,
DEADLINE_EXCEEDED). Each time the upstream stream must be reset, seen by the server as
its call going inactive long before the handler would have answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from proxy_envoy import cluster, http_listener, route, vhost
from proxy_harness import running_proxy
from test_proxy_http2 import H2_OPTIONS

from proxy.router.grpc_timeout import deadlines, format_grpc_timeout, parse_grpc_timeout

HANDLER_WAIT = 5.0  # the handler's own answer, if nobody cancels it


class SlowService:
    """``demo.Slow/Wait``: waits until the call is cancelled (or 5 s), recording what the
    deadline said on arrival and when the call went away."""

    def __init__(self) -> None:
        self.remaining: list[float | None] = []
        self.gone_after: list[float] = []
        self.done = threading.Event()

    def wait(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        start = time.monotonic()
        self.remaining.append(context.time_remaining())
        while context.is_active() and time.monotonic() - start < HANDLER_WAIT:
            time.sleep(0.01)
        if not context.is_active():
            self.gone_after.append(time.monotonic() - start)
        self.done.set()
        return b"late"


@contextlib.contextmanager
def slow_server() -> Iterator[tuple[SlowService, int]]:
    service = SlowService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {"Wait": grpc.unary_unary_rpc_method_handler(service.wait)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Slow", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield service, port
    finally:
        server.stop(grace=None)


def slow_proxy(port: int, **action: Any) -> list[dict[str, Any]]:
    routes = [route({"prefix": "/demo.Slow/"}, "slow", **{"timeout": "10s", **action})]
    listener = http_listener("ingress", [vhost("all", ["*"], routes)])
    return [cluster("slow", [port], **H2_OPTIONS), listener]


async def call_with_deadline(port: int, deadline: float) -> grpc.RpcError:
    """One call with a client deadline; returns its error. Which timer ended the call is
    in the error's details (the proxy's own say so), not in how long it took."""

    def run() -> grpc.RpcError:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                channel.unary_unary("/demo.Slow/Wait")(b"", timeout=deadline)
            except grpc.RpcError as error:
                return error
        raise AssertionError("the slow call answered within its deadline")

    return await asyncio.to_thread(run)


async def wait_gone(service: SlowService) -> float:
    assert await asyncio.to_thread(service.done.wait, HANDLER_WAIT + 1)
    assert service.gone_after, "the upstream call was never cancelled"
    return service.gone_after[0]


async def test_without_max_grpc_timeout_the_deadline_travels_upstream() -> None:
    """App Mesh's routes: the route timeout (10 s) stays; the client's own 1 s deadline
    ends the call, the server saw it in ``grpc-timeout``, and the proxy resets upstream."""
    with slow_server() as (service, port):
        async with running_proxy(slow_proxy(port)) as proxy:
            error = await call_with_deadline(proxy.port(), 1.0)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert error.details() != "upstream request timeout"  # the client's, not ours
            remaining = service.remaining[0]
            assert remaining is not None and 0 < remaining <= 1.0
            await wait_gone(service)
            # Who ends the call is a race between the client's timer and the grpcio
            # server's own (it holds the same deadline): the client's reset is counted in
            # the test against a backend that never answers, below.
            assert proxy.stat("cluster.slow.upstream_rq_timeout") == 0


class SilentBackend:
    """An HTTP/2 server that never answers: records each request's headers and the
    RST_STREAM codes it receives, so the proxy's own timer is what ends a call (a grpcio
    server would race it, holding the deadline the proxy sent). With ``reset`` it answers
    every request with that RST_STREAM instead."""

    def __init__(self, reset: h2.errors.ErrorCodes | None = None) -> None:
        self.reset = reset
        self.heads: list[dict[str, str]] = []
        self.resets: list[int] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while chunk := await reader.read(65536):
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.RequestReceived):
                    self.heads.append(dict(event.headers))  # type: ignore[arg-type]
                    if self.reset is not None:
                        conn.reset_stream(event.stream_id, self.reset)
                elif isinstance(event, h2.events.StreamReset):
                    self.resets.append(int(event.error_code or 0))
            writer.write(conn.data_to_send())
        writer.close()


@contextlib.asynccontextmanager
async def silent_backend(
    reset: h2.errors.ErrorCodes | None = None,
) -> AsyncIterator[tuple[SilentBackend, int]]:
    backend = SilentBackend(reset)
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    try:
        yield backend, server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_max_grpc_timeout_makes_the_header_the_route_timeout_minus_the_offset() -> None:
    """Deadline 2 s, offset 0.8 s: the proxy gives up at 1.2 s (504 → UNAVAILABLE, before
    the client would), told the upstream 1.2 s, and reset the upstream stream (CANCEL)."""
    action = {"max_grpc_timeout": "0s", "grpc_timeout_offset": "0.8s"}
    async with (
        silent_backend() as (backend, port),
        running_proxy(slow_proxy(port, **action)) as proxy,
    ):
        error = await call_with_deadline(proxy.port(), 2.0)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "upstream request timeout"  # the proxy's, before the client's
        # What the client had left when it sent (2 s less the time to send) less 0.8 s.
        told = parse_grpc_timeout(backend.heads[0]["grpc-timeout"])
        assert told is not None and 0 < told <= 1.2
        await asyncio.sleep(0.1)
        assert backend.resets == [h2.errors.ErrorCodes.CANCEL]
        assert proxy.stat("cluster.slow.upstream_rq_timeout") == 1


async def test_max_grpc_timeout_caps_a_longer_deadline() -> None:
    async with (
        silent_backend() as (backend, port),
        running_proxy(slow_proxy(port, max_grpc_timeout="0.5s")) as proxy,
    ):
        error = await call_with_deadline(proxy.port(), 5.0)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "upstream request timeout"  # the 0.5 s cap, not the 5 s
        assert backend.heads[0]["grpc-timeout"] == "500m"


async def test_max_stream_duration_answers_deadline_exceeded() -> None:
    """``grpc_timeout_header_max`` caps the 5 s deadline to 0.5 s; the stream timer
    answers ``grpc-status: 4`` trailers-only, and the upstream stream is reset."""
    action = {"max_stream_duration": {"grpc_timeout_header_max": "0.5s"}}
    with slow_server() as (service, port):
        async with running_proxy(slow_proxy(port, **action)) as proxy:
            error = await call_with_deadline(proxy.port(), 5.0)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert error.details() == "downstream duration timeout"  # the proxy's 0.5 s
            await wait_gone(service)
            assert proxy.stat("http.ingress.downstream_rq_max_duration_reached") == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("250m", 0.25), ("7u", 7e-6),
     ("9n", 9 * 1e-9), ("123456789S", None), ("1x", None), ("S", None), ("-1S", None),
     (None, None)],
)  # fmt: skip
def test_grpc_timeout_values(value: str | None, seconds: float | None) -> None:
    assert parse_grpc_timeout(value) == seconds


def test_grpc_timeout_formats_what_is_left() -> None:
    assert format_grpc_timeout(1.2) == "1200m"
    assert format_grpc_timeout(200_000.0) == "200000S"
    assert parse_grpc_timeout(format_grpc_timeout(0.0001)) == 0.001


def test_the_header_counts_only_for_grpc_and_only_when_asked() -> None:
    headers = {"grpc-timeout": "2S"}
    assert deadlines(15.0, None, None, None, headers, True).route_timeout == 15.0
    assert deadlines(15.0, 0.0, None, None, headers, False).route_timeout == 15.0
    assert deadlines(15.0, 0.0, None, None, headers, True).route_timeout == 2.0
    assert deadlines(15.0, 0.0, None, None, {}, True).route_timeout is None  # no header: none
    assert deadlines(15.0, 1.0, None, None, {}, True).route_timeout == 1.0
    assert deadlines(15.0, 0.0, 3.0, None, headers, True).route_timeout == 2.0  # offset too big


def timeout_proxy(port: int, *, edge: bool, **action: Any) -> list[dict[str, Any]]:
    """``slow_proxy`` on a listener that appends its peer to ``x-forwarded-for``
    (``edge``, App Mesh's ingress) or not (App Mesh's egress, where the app is the peer)."""
    routes = [route({"prefix": "/demo.Slow/"}, "slow", **{"timeout": "10s", **action})]
    listener = http_listener("ingress", [vhost("all", ["*"], routes)], use_remote_address=edge)
    return [cluster("slow", [port], **H2_OPTIONS), listener]


async def call_with_metadata(
    port: int, deadline: float, metadata: list[tuple[str, str]]
) -> grpc.RpcError:
    def run() -> grpc.RpcError:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                channel.unary_unary("/demo.Slow/Wait")(b"", timeout=deadline, metadata=metadata)
            except grpc.RpcError as error:
                return error
        raise AssertionError("the slow call answered")

    return await asyncio.to_thread(run)


HALF_SECOND = [("x-envoy-upstream-rq-timeout-ms", "500")]


async def test_an_internal_upstream_rq_timeout_header_replaces_the_route_timeout() -> None:
    """From 127.0.0.1 with ``use_remote_address`` the request is internal (Envoy's
    default internal addresses): the header's 500 ms, not the route's 10 s, ends the
    call with the router's 504, long before the client's own 5 s deadline."""
    async with (
        silent_backend() as (backend, port),
        running_proxy(timeout_proxy(port, edge=True)) as proxy,
    ):
        error = await call_with_metadata(proxy.port(), 5.0, HALF_SECOND)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "upstream request timeout"
        head = backend.heads[0]
        assert head["x-envoy-expected-rq-timeout-ms"] == "500"
        assert "x-envoy-upstream-rq-timeout-ms" not in head  # consumed
        assert head["x-envoy-internal"] == "true"
        assert head["grpc-timeout"].endswith(("m", "S", "u", "n"))  # the client's, untouched
        assert proxy.stat("cluster.slow.upstream_rq_timeout") == 1


async def test_the_header_takes_precedence_over_grpc_timeout_with_max_grpc_timeout() -> None:
    """Envoy's documented order: x-envoy-upstream-rq-timeout-ms over the grpc-timeout that
    max_grpc_timeout would use; the header sent upstream says the new deadline."""
    action = {"max_grpc_timeout": "0s"}
    async with (
        silent_backend() as (backend, port),
        running_proxy(timeout_proxy(port, edge=True, **action)) as proxy,
    ):
        error = await call_with_metadata(proxy.port(), 5.0, HALF_SECOND)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "upstream request timeout"
        assert backend.heads[0]["grpc-timeout"] == "500m"


async def test_a_per_try_timeout_header_applies_to_internal_requests() -> None:
    async with (
        silent_backend() as (_, port),
        running_proxy(timeout_proxy(port, edge=True)) as proxy,
    ):
        per_try = [("x-envoy-upstream-rq-per-try-timeout-ms", "300")]
        error = await call_with_metadata(proxy.port(), 5.0, per_try)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "upstream request timeout"
        assert proxy.stat("cluster.slow.upstream_rq_per_try_timeout") == 1


async def test_an_external_request_cannot_set_the_proxys_timeouts() -> None:
    """App Mesh's egress: the app's request carries no x-forwarded-for, so Envoy takes it
    for external and strips the header; the route timeout (10 s) stays, and the client's
    own 1 s deadline is what ends the call (DEADLINE_EXCEEDED, not the proxy's 504)."""
    async with (
        silent_backend() as (backend, port),
        running_proxy(timeout_proxy(port, edge=False)) as proxy,
    ):
        metadata = [("x-envoy-upstream-rq-timeout-ms", "1"), ("x-envoy-max-retries", "3")]
        error = await call_with_metadata(proxy.port(), 1.0, metadata)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        head = backend.heads[0]
        assert "x-envoy-upstream-rq-timeout-ms" not in head
        assert "x-envoy-max-retries" not in head and "x-envoy-internal" not in head
        assert head["x-envoy-expected-rq-timeout-ms"] == "10000"
        assert proxy.stat("cluster.slow.upstream_rq_timeout") == 0
        # The client's RST_STREAM at its deadline is counted and carried upstream.
        for _ in range(100):
            if backend.resets and proxy.stat("http.ingress.downstream_rq_rx_reset"):
                break
            await asyncio.sleep(0.05)
        assert proxy.stat("http.ingress.downstream_rq_rx_reset") == 1
        assert backend.resets == [h2.errors.ErrorCodes.CANCEL]
