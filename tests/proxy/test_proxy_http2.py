"""HTTP/2 and gRPC through a real ProxyServer, with real grpcio and h2 peers.

The listener is an HCM with ``codec_type: AUTO`` (what App Mesh's listeners use): the
HTTP/2 preface picks the HTTP/2 codec. Clusters with ``http2_protocol_options`` speak
HTTP/2 upstream (App Mesh's ``http2`` and ``grpc`` listeners). A gRPC server and client
from grpcio run on threads, the proxy on the test's loop; the HTTP/2 client and server of
the conversion tests are the h2 library over asyncio streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
from proxy_envoy import cluster, http_listener, route, vhost
from proxy_harness import backends, client, running_proxy

from appmesh_api.localports import free_port

H2_OPTIONS = {
    "typed_extension_protocol_options": {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }
}


class EchoService:
    """``demo.Echo``: Say (unary), Count (server streaming), Flaky (UNAVAILABLE once)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "demo.Echo",
            {
                "Say": grpc.unary_unary_rpc_method_handler(self.say),
                "Count": grpc.unary_stream_rpc_method_handler(self.count),
                "Flaky": grpc.unary_unary_rpc_method_handler(self.flaky),
                "Missing": grpc.unary_unary_rpc_method_handler(self.missing),
            },
        )

    def _record(self, name: str, context: grpc.ServicerContext) -> None:
        self.calls.append((name, {k: str(v) for k, v in context.invocation_metadata()}))

    def say(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record("Say", context)
        return b"echo:" + request

    def count(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._record("Count", context)
        for n in range(int(request)):
            yield str(n).encode()

    def flaky(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record("Flaky", context)
        if sum(1 for name, _ in self.calls if name == "Flaky") == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return b"ok"

    def missing(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record("Missing", context)
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b""


@contextlib.contextmanager
def grpc_server() -> Iterator[tuple[EchoService, int]]:
    service = EchoService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield service, port
    finally:
        server.stop(grace=None)


def grpc_proxy(port: int, retry: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """gRPC routes by service prefix, as App Mesh writes them, to an HTTP/2 cluster."""
    extra: dict[str, Any] = {"timeout": "5s"}
    if retry is not None:
        extra["retry_policy"] = retry
    routes = [route({"prefix": "/demo.Echo/"}, "grpc-backend", **extra)]
    return [
        cluster("grpc-backend", [port], **H2_OPTIONS),
        http_listener("ingress", [vhost("all", ["*"], routes)]),
    ]


async def call(port: int, method: str, request: bytes, **kwargs: Any) -> Any:
    """One unary call on a fresh channel, off the loop (grpcio's client blocks)."""

    def run() -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = channel.unary_unary(method)
            return stub(request, timeout=5, **kwargs)

    return await asyncio.to_thread(run)


async def test_grpc_unary_streaming_metadata_and_status_pass_through() -> None:
    with grpc_server() as (service, port):
        async with running_proxy(grpc_proxy(port)) as proxy:
            listener = proxy.port()
            reply = await call(listener, "/demo.Echo/Say", b"hi", metadata=(("x-team", "blue"),))
            assert reply == b"echo:hi"
            assert service.calls[-1][1]["x-team"] == "blue"

            def stream() -> list[bytes]:
                with grpc.insecure_channel(f"127.0.0.1:{listener}") as channel:
                    return list(channel.unary_stream("/demo.Echo/Count")(b"3", timeout=5))

            assert await asyncio.to_thread(stream) == [b"0", b"1", b"2"]
            try:
                await call(listener, "/demo.Echo/Missing", b"")
                raise AssertionError("the NOT_FOUND status did not come through")
            except grpc.RpcError as error:  # trailers carried grpc-status and grpc-message
                assert error.code() == grpc.StatusCode.NOT_FOUND
                assert error.details() == "no such thing"
            assert proxy.stat("http.ingress.downstream_rq_http2_total") == 3
            assert proxy.stat("http.ingress.downstream_cx_http1_total") == 0


async def test_grpc_local_replies_are_grpc_statuses() -> None:
    """No route: UNIMPLEMENTED; the backend is down: UNAVAILABLE (Envoy's mapping)."""
    with grpc_server() as (_, port):
        async with running_proxy(grpc_proxy(port)) as proxy:
            try:
                await call(proxy.port(), "/other.Service/Call", b"")
                raise AssertionError("an unrouted call succeeded")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    closed = free_port()
    async with running_proxy(grpc_proxy(closed)) as proxy:
        try:
            await call(proxy.port(), "/demo.Echo/Say", b"")
            raise AssertionError("a call to a closed port succeeded")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "upstream connect error" in (error.details() or "")


async def test_grpc_retries_on_unavailable() -> None:
    retry = {"retry_on": "unavailable", "num_retries": 2, "per_try_timeout": "2s"}
    with grpc_server() as (service, port):
        async with running_proxy(grpc_proxy(port, retry)) as proxy:
            assert await call(proxy.port(), "/demo.Echo/Flaky", b"") == b"ok"
            assert [name for name, _ in service.calls] == ["Flaky", "Flaky"]
            assert proxy.stat("cluster.grpc-backend.upstream_rq_retry") == 1


async def test_many_concurrent_calls_share_one_upstream_connection() -> None:
    with grpc_server() as (service, port):
        async with running_proxy(grpc_proxy(port)) as proxy:
            listener = proxy.port()

            def burst() -> list[bytes]:
                with grpc.insecure_channel(f"127.0.0.1:{listener}") as channel:
                    stub = channel.unary_unary("/demo.Echo/Say")
                    calls = [stub.future(str(n).encode(), timeout=5) for n in range(40)]
                    return [c.result() for c in calls]

            replies = await asyncio.to_thread(burst)
            assert replies == [b"echo:%d" % n for n in range(40)]
            assert proxy.stat("cluster.grpc-backend.upstream_cx_total") == 1
            assert len(service.calls) == 40


# -- HTTP/1.1 <-> HTTP/2 conversion ---------------------------------------------------------
async def h2_request(
    port: int, method: str, path: str, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One request with the h2 library over a plain socket (prior knowledge)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [(":method", method), (":path", path), (":scheme", "http"),
               (":authority", "svc.local")]  # fmt: skip
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, headers, end_stream=not body)
    if body:
        conn.send_data(stream_id, body, end_stream=True)
    writer.write(conn.data_to_send())
    status, response, data = 0, {}, b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                raise AssertionError("the proxy closed the HTTP/2 connection")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    response = dict(event.headers)  # type: ignore[arg-type]
                    status = int(response.pop(":status"))
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, response, data
            writer.write(conn.data_to_send())
    finally:
        writer.close()


async def test_an_http2_client_reaches_an_http1_backend() -> None:
    async def handler(request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        return web.Response(text=f"{request.method} {request.version} {body.decode()}")

    async with backends(("b", handler)) as (backend,):
        routes = [route({"prefix": "/"}, "plain")]
        resources = [cluster("plain", [backend.port]),
                     http_listener("ingress", [vhost("all", ["*"], routes)])]  # fmt: skip
        async with running_proxy(resources) as proxy:
            status, headers, data = await h2_request(proxy.port(), "POST", "/x", b"payload")
            assert status == 200
            assert data == b"POST HttpVersion(major=1, minor=1) payload"
            assert backend.requests[-1].headers["Host"] == "svc.local"
            assert "x-envoy-upstream-service-time" in headers
            assert proxy.stat("http.ingress.downstream_rq_http2_total") == 1


def send_within_windows(conn: h2.connection.H2Connection, queued: dict[int, bytearray]) -> None:
    """Send each stream's queued bytes as far as the flow-control windows allow, ending
    the stream with the last of them (a test peer that honours the proxy's windows)."""
    for stream_id, rest in list(queued.items()):
        while rest:
            size = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if size <= 0:
                break
            chunk = bytes(rest[:size])
            del rest[:size]
            conn.send_data(stream_id, chunk, end_stream=not rest)
        if not rest:
            del queued[stream_id]


async def h2_uploads(port: int, bodies: list[bytes]) -> list[bytes]:
    """POST ``bodies`` on concurrent streams of one connection, honouring the proxy's
    flow-control windows both ways; returns the response bodies in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    conn.initiate_connection()
    queued: dict[int, bytearray] = {}
    answers: dict[int, bytearray] = {}
    for n, body in enumerate(bodies):
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, [(":method", "POST"), (":path", f"/big{n}"),
                          (":scheme", "http"), (":authority", "svc.local")])  # fmt: skip
        queued[stream_id], answers[stream_id] = bytearray(body), bytearray()
    ended: set[int] = set()
    try:
        while len(ended) < len(bodies):
            send_within_windows(conn, queued)
            writer.write(conn.data_to_send())
            chunk = await reader.read(65536)
            if not chunk:
                raise AssertionError("the proxy closed the HTTP/2 connection")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    answers[event.stream_id] += event.data or b""
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
    finally:
        writer.close()
    return [bytes(answer) for answer in answers.values()]


async def h2_backend(
    seen: list[dict[str, str]], frames: list[tuple[str, int, bool]] | None = None
) -> asyncio.AbstractServer:
    """A minimal HTTP/2-only (h2c prior knowledge) server: answers with the request's
    method, path and body. ``frames`` records each request's HEADERS and DATA frames as
    (kind, size, whether END_STREAM was on it)."""
    log = frames if frames is not None else []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        requests: dict[int, tuple[dict[str, str], bytes]] = {}
        answers: dict[int, bytearray] = {}  # what the peer's windows have not let out yet
        while chunk := await reader.read(65536):
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.RequestReceived):
                    requests[event.stream_id] = (dict(event.headers), b"")  # type: ignore[arg-type]
                    log.append(("HEADERS", 0, event.stream_ended is not None))
                    # (h2 hands every cookie back never-indexed, however it came)
                    hidden = [str(h[0]) for h in event.headers or ()
                              if not h.indexable and h[0] != "cookie"]  # type: ignore[union-attr]  # fmt: skip
                    if hidden:
                        log.append(("NEVER_INDEXED", len(hidden), hidden == ["authorization"]))
                elif isinstance(event, h2.events.DataReceived):
                    log.append(("DATA", len(event.data or b""), event.stream_ended is not None))
                    head, body = requests[event.stream_id]
                    requests[event.stream_id] = (head, body + event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    head, body = requests.pop(event.stream_id)
                    seen.append(head)
                    answer = f"{head[':method']} {head[':path']} {body.decode()}".encode()
                    conn.send_headers(event.stream_id, [(":status", "201"),
                                      ("content-length", str(len(answer)))])  # fmt: skip
                    answers[event.stream_id] = bytearray(answer)
            send_within_windows(conn, answers)
            writer.write(conn.data_to_send())
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_an_http1_client_reaches_an_http2_only_backend() -> None:
    seen: list[dict[str, str]] = []
    frames: list[tuple[str, int, bool]] = []
    server = await h2_backend(seen, frames)
    port = server.sockets[0].getsockname()[1]
    routes = [route({"prefix": "/"}, "h2")]
    resources = [cluster("h2", [port], **H2_OPTIONS),
                 http_listener("ingress", [vhost("all", ["*"], routes)])]  # fmt: skip
    try:
        async with running_proxy(resources) as proxy, client() as session:
            # First a GET without a body on a new upstream connection: the request is
            # complete before the connection is, so its HEADERS carry END_STREAM alone.
            async with session.get(proxy.url("/first")) as response:
                assert response.status == 201
                assert await response.read() == b"GET /first "
            async with session.post(proxy.url("/upload"), data=b"abc") as response:
                assert response.status == 201
                assert await response.read() == b"POST /upload abc"
            async with session.get(proxy.url("/again")) as response:  # chunk-free, pooled
                assert await response.read() == b"GET /again "
            # Sent as built (h2's outbound normalisation is off): the value's trailing
            # whitespace, which HTTP/2 forbids, is trimmed by the HTTP/1.1 parser, and a
            # credential stays out of HPACK's table (never indexed) as h2 would keep it.
            padded = {"x-padded": "value \t", "authorization": "Basic dXNlcjpwYXNz",
                      "cookie": "a-cookie-long-enough-to-index"}  # fmt: skip
            async with session.get(proxy.url("/padded"), headers=padded) as response:
                assert response.status == 201
        assert seen[-1]["x-padded"] == "value"
        assert seen[-1]["authorization"] == "Basic dXNlcjpwYXNz"
        assert frames[-2:] == [("HEADERS", 0, True), ("NEVER_INDEXED", 1, True)]
        assert seen[1][":authority"].startswith("127.0.0.1")
        assert "transfer-encoding" not in seen[1] and "connection" not in seen[1]
        assert proxy.stat("cluster.h2.upstream_cx_total") == 1
    finally:
        server.close()


async def test_an_http2_request_reaches_an_http2_backend_exactly_once() -> None:
    """h2 to h2 on a pooled upstream connection: a bodiless request (END_STREAM on its
    HEADERS) is sent once, not once per report of its end, and nothing is reset. It goes
    out as the client sent it, one HEADERS frame with END_STREAM (not HEADERS and then an
    empty DATA frame to end it), and a body's END_STREAM rides on its last DATA frame."""
    seen: list[dict[str, str]] = []
    frames: list[tuple[str, int, bool]] = []
    server = await h2_backend(seen, frames)
    port = server.sockets[0].getsockname()[1]
    routes = [route({"prefix": "/"}, "h2")]
    resources = [cluster("h2", [port], **H2_OPTIONS),
                 http_listener("ingress", [vhost("all", ["*"], routes)])]  # fmt: skip
    try:
        async with running_proxy(resources) as proxy:
            for n in range(5):  # the first opens the upstream connection, the rest reuse it
                status, _, data = await h2_request(proxy.port(), "GET", f"/n{n}")
                assert (status, data) == (201, f"GET /n{n} ".encode())
            assert [head[":path"] for head in seen] == [f"/n{n}" for n in range(5)]
            assert frames == [("HEADERS", 0, True)] * 5
            frames.clear()
            status, _, data = await h2_request(proxy.port(), "POST", "/up", b"body")
            assert (status, data) == (201, b"POST /up body")
            assert frames == [("HEADERS", 0, False), ("DATA", 4, True)]
            assert proxy.stat("cluster.h2.upstream_cx_total") == 1
    finally:
        server.close()


async def test_large_http2_bodies_pass_both_ways_within_flow_control_windows() -> None:
    """h2 to h2 with bodies several times the 64 KiB initial windows, on concurrent streams
    of one connection each side: the proxy must reopen every window it holds (client to
    proxy, proxy to backend, and back) or a stream stalls, which the timeout catches."""
    server = await h2_backend([])
    port = server.sockets[0].getsockname()[1]
    routes = [route({"prefix": "/"}, "h2")]
    resources = [cluster("h2", [port], **H2_OPTIONS),
                 http_listener("ingress", [vhost("all", ["*"], routes)])]  # fmt: skip
    bodies = [bytes([ord("a") + n]) * (300_000 + n) for n in range(4)]
    try:
        async with running_proxy(resources) as proxy:
            for _ in range(2):  # the second round reuses both connections' windows
                answers = await asyncio.wait_for(h2_uploads(proxy.port(), bodies), 20)
                assert answers == [f"POST /big{n} ".encode() + body
                                   for n, body in enumerate(bodies)]  # fmt: skip
            assert proxy.stat("cluster.h2.upstream_cx_total") == 1
    finally:
        server.close()


@contextlib.contextmanager
def health_server(serving: bool) -> Iterator[int]:
    """A gRPC server with grpc.health.v1 (answered as raw bytes: SERVING is 08 01,
    NOT_SERVING 08 02) and a Say that fails when the server is not serving."""

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"\x08\x01" if serving else b"\x08\x02"

    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        if not serving:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not serving")
        return b"echo:" + request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}),
        grpc.method_handlers_generic_handler(
            "demo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}),
    ))  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


async def test_grpc_health_checks_keep_a_not_serving_host_out() -> None:
    check = {"timeout": "1s", "interval": "0.2s", "unhealthy_threshold": 1,
             "healthy_threshold": 1, "grpc_health_check": {}}  # fmt: skip
    with health_server(True) as good, health_server(False) as bad:
        routes = [route({"prefix": "/demo.Echo/"}, "checked", timeout="5s")]
        resources = [cluster("checked", [good, bad], health_checks=[check], **H2_OPTIONS),
                     http_listener("ingress", [vhost("all", ["*"], routes)])]  # fmt: skip
        async with running_proxy(resources) as proxy:
            for _ in range(100):  # bounded wait for the first rounds
                if proxy.server.stats.get("cluster.checked.health_check.failure"):
                    break
                await asyncio.sleep(0.05)
            replies = [await call(proxy.port(), "/demo.Echo/Say", b"%d" % n) for n in range(6)]
            assert replies == [b"echo:%d" % n for n in range(6)]
            assert proxy.stat("cluster.checked.health_check.success") >= 1
            assert proxy.stat("cluster.checked.health_check.failure") >= 1
