"""Envoy's HTTP/2 codec stats on the admin port: ``http2.*`` for the listeners' codec,
``cluster.<name>.http2.*`` for upstream connections, read from ``/stats`` as a user would.

A raw h2 client opens a stream and resets it; a backend that never answers (or resets
every stream) stands upstream, so each counter moves for exactly one known event.
"""

from __future__ import annotations

import asyncio
import itertools
import socket

import aiohttp
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hyperframe.frame
from proxy_envoy import http_listener, vhost
from proxy_harness import RunningProxy, fetch, running_proxy
from test_proxy_grpc_timeout import silent_backend, slow_proxy

REQUEST = [(":method", "POST"), (":path", "/demo.Slow/Wait"), (":scheme", "http"),
           (":authority", "svc.local"), ("content-type", "application/grpc")]  # fmt: skip


async def http2_stats(proxy: RunningProxy) -> dict[str, int]:
    """``/stats?filter=http2`` parsed into name → value."""
    async with aiohttp.ClientSession() as session:
        status, _, body = await fetch(session, proxy.admin("/stats?filter=http2"))
    assert status == 200
    pairs = (line.split(": ", 1) for line in body.splitlines() if ": " in line)
    return {name: int(value) for name, value in pairs}


async def until(check: object, what: str) -> None:
    for _ in range(100):
        if callable(check) and check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_a_client_reset_counts_rx_reset_and_resets_upstream() -> None:
    async with silent_backend() as (backend, port), running_proxy(slow_proxy(port)) as proxy:
        _reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST)
        writer.write(client.data_to_send())
        await until(lambda: backend.heads, "the request reached the backend")
        stats = await http2_stats(proxy)
        assert stats["http2.streams_active"] == 1
        assert stats["cluster.slow.http2.streams_active"] == 1
        assert stats["http2.rx_reset"] == 0
        client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        writer.write(client.data_to_send())
        await until(lambda: backend.resets, "the upstream stream was reset")
        assert backend.resets == [h2.errors.ErrorCodes.CANCEL]
        stats = await http2_stats(proxy)
        assert stats["http2.rx_reset"] == 1
        assert stats["http2.tx_reset"] == 0
        assert stats["cluster.slow.http2.tx_reset"] == 1
        assert stats["cluster.slow.http2.rx_reset"] == 0
        assert stats["http2.streams_active"] == 0
        assert stats["cluster.slow.http2.streams_active"] == 0
        writer.close()


async def test_an_upstream_reset_counts_in_the_cluster() -> None:
    refused = h2.errors.ErrorCodes.REFUSED_STREAM
    async with (
        silent_backend(reset=refused) as (backend, port),
        running_proxy(slow_proxy(port)) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST, end_stream=True)
        writer.write(client.data_to_send())
        trailers: dict[str, str] = {}
        while not trailers:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "the proxy closed the connection"
            for event in client.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    trailers = dict(event.headers)  # type: ignore[arg-type]
        writer.close()
        assert trailers["grpc-status"] == "14"  # a trailers-only UNAVAILABLE from the proxy
        stats = await http2_stats(proxy)
        tried = len(backend.heads)
        assert tried >= 1
        assert stats["cluster.slow.http2.rx_reset"] == tried
        assert stats["cluster.slow.http2.stream_refused_errors"] == tried
        assert stats["http2.rx_reset"] == stats["http2.tx_reset"] == 0


async def test_drain_sends_goaway_and_trailers_are_counted() -> None:
    async with silent_backend() as (_, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, REQUEST)
        client.send_headers(1, [("x-end", "1")], end_stream=True)  # request trailers
        writer.write(client.data_to_send())
        await until(lambda: proxy.server.stats.get("http2.trailers") == 1, "trailers counted")
        for conn in list(proxy.server.ctx.connections):
            conn.drain()
        terminated = False
        while not terminated:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "closed without GOAWAY"
            events = client.receive_data(chunk)
            terminated = any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
        assert (await http2_stats(proxy))["http2.goaway_sent"] == 1
        writer.close()


def raw_client(validate: bool = True) -> h2.connection.H2Connection:
    """An h2 client; ``validate=False`` lets it send what RFC 9113 forbids."""
    config = h2.config.H2Configuration(
        header_encoding="utf-8", validate_outbound_headers=validate,
        normalize_outbound_headers=validate,
    )  # fmt: skip
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    return client


async def goaway_code(reader: asyncio.StreamReader, client: h2.connection.H2Connection) -> int:
    """Read until the proxy's GOAWAY; its error code."""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, "closed without GOAWAY"
        for event in client.receive_data(chunk):
            if isinstance(event, h2.events.ConnectionTerminated):
                return int(event.error_code or 0)


def raw_headers(client: h2.connection.H2Connection, stream_id: int, headers: list, end: bool):
    """A HEADERS frame encoded with the connection's own HPACK state, written around h2's
    state machine (which would refuse to send it)."""
    frame = hyperframe.frame.HeadersFrame(stream_id, client.encoder.encode(headers))
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


async def test_a_connection_specific_header_is_a_messaging_error() -> None:
    """RFC 9113 8.2.2: ``connection`` in a request ends the connection (Envoy's default,
    stream_error_on_invalid_http_messaging false) and counts rx_messaging_error."""
    async with silent_backend() as (backend, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = raw_client(validate=False)
        client.send_headers(1, [*REQUEST, ("connection", "keep-alive")], end_stream=True)
        writer.write(client.data_to_send())
        assert await goaway_code(reader, client) == h2.errors.ErrorCodes.PROTOCOL_ERROR
        writer.close()
        stats = await http2_stats(proxy)
        assert stats["http2.rx_messaging_error"] == 1
        assert stats["http2.goaway_sent"] == 1
        assert stats["http2.too_many_header_frames"] == 0
        assert backend.heads == []


async def test_a_second_headers_frame_without_end_stream_is_too_many_header_frames() -> None:
    async with silent_backend() as (backend, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = raw_client()
        client.send_headers(1, REQUEST)
        writer.write(client.data_to_send())
        await until(lambda: backend.heads, "the request reached the backend")
        writer.write(raw_headers(client, 1, [("x-again", "1")], end=False))
        assert await goaway_code(reader, client) == h2.errors.ErrorCodes.PROTOCOL_ERROR
        writer.close()
        stats = await http2_stats(proxy)
        assert stats["http2.too_many_header_frames"] == 1
        assert stats["http2.rx_messaging_error"] == 0
        assert stats["http2.trailers"] == 0


async def test_consecutive_empty_data_frames_are_an_inbound_flood() -> None:
    """Envoy's max_consecutive_inbound_frames_with_empty_payload (1): the second empty
    DATA frame in a row ends the connection with ENHANCE_YOUR_CALM."""
    async with silent_backend() as (_, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = raw_client()
        client.send_headers(1, REQUEST)
        client.send_data(1, b"x")
        client.send_data(1, b"")  # one empty frame is allowed
        writer.write(client.data_to_send())
        await until(lambda: proxy.server.stats.get("http.ingress.downstream_rq_total"), "rq")
        assert (await http2_stats(proxy))["http2.inbound_empty_frames_flood"] == 0
        client.send_data(1, b"")
        writer.write(client.data_to_send())
        assert await goaway_code(reader, client) == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        writer.close()
        stats = await http2_stats(proxy)
        assert stats["http2.inbound_empty_frames_flood"] == 1
        assert stats["http2.goaway_sent"] == 1


async def test_too_many_priority_frames_are_an_inbound_flood() -> None:
    """max_inbound_priority_frames_per_stream (100) x (1 + opened streams): with one
    stream open, the 201st PRIORITY frame ends the connection."""
    async with silent_backend() as (_, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = raw_client()
        client.send_headers(1, REQUEST, priority_weight=32)  # its priority is no frame
        for _ in range(200):
            client.prioritize(3, weight=16)
        writer.write(client.data_to_send())
        await until(lambda: proxy.server.stats.get("http.ingress.downstream_rq_total"), "rq")
        assert (await http2_stats(proxy))["http2.inbound_priority_frames_flood"] == 0
        client.prioritize(3, weight=8)
        writer.write(client.data_to_send())
        assert await goaway_code(reader, client) == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        writer.close()
        assert (await http2_stats(proxy))["http2.inbound_priority_frames_flood"] == 1


async def test_window_updates_beyond_the_data_sent_are_an_inbound_flood() -> None:
    """max_inbound_window_update_frames_per_data_frame_sent (10): 5 + 2 x (streams opened
    + 10 x DATA frames sent) WINDOW_UPDATEs are allowed; with one stream open and nothing
    sent that is 7, and the 8th ends the connection."""
    async with silent_backend() as (_, port), running_proxy(slow_proxy(port)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        client = raw_client()
        client.send_headers(1, REQUEST)
        for _ in range(7):
            client.increment_flow_control_window(1)
        writer.write(client.data_to_send())
        await until(lambda: proxy.server.stats.get("http.ingress.downstream_rq_total"), "rq")
        assert (await http2_stats(proxy))["http2.inbound_window_update_frames_flood"] == 0
        client.increment_flow_control_window(1)
        writer.write(client.data_to_send())
        assert await goaway_code(reader, client) == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
        writer.close()
        assert (await http2_stats(proxy))["http2.inbound_window_update_frames_flood"] == 1


async def unread_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client socket with a tiny receive buffer that the test never reads: the proxy's
    answers pile up in its own buffers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def flood_until_closed(writer: asyncio.StreamWriter, make: object, rounds: int) -> int:
    """Write ``make()`` bytes until the proxy closes the connection; rounds written."""
    for done in range(rounds):
        assert callable(make)
        writer.write(make())
        try:
            await asyncio.wait_for(writer.drain(), 5)
        except (ConnectionError, TimeoutError):
            return done
        if writer.is_closing():
            return done
        await asyncio.sleep(0)
    return rounds


async def test_pings_to_a_client_that_never_reads_are_an_outbound_control_flood() -> None:
    """Envoy's max_outbound_control_frames (1,000): PING ACKs the peer leaves unread
    past the socket's buffers end the connection (CVE-2019-9512)."""
    async with silent_backend() as (_, port), running_proxy(slow_proxy(port)) as proxy:
        _, writer = await unread_connection(proxy.port())
        client = raw_client()

        def pings() -> bytes:
            for n in range(1000):
                client.ping(n.to_bytes(8, "big"))
            return client.data_to_send()

        await flood_until_closed(writer, pings, 400)
        await until(lambda: proxy.server.stats.get("http2.outbound_control_flood"), "flood")
        writer.close()
        stats = await http2_stats(proxy)
        assert stats["http2.outbound_control_flood"] == 1
        assert stats["http2.outbound_flood"] == 0


async def test_requests_from_a_client_that_never_reads_are_an_outbound_flood() -> None:
    """Envoy's max_outbound_frames (10,000): answers (a HEADERS and a DATA frame each,
    windows opened wide) the peer leaves unread past the socket's buffers end the
    connection."""
    body = {"inline_string": "x" * 2000}
    answer = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}
    resources = [http_listener("ingress", [vhost("all", ["*"], [answer])])]
    async with running_proxy(resources) as proxy:
        _, writer = await unread_connection(proxy.port())
        client = raw_client()
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        client.increment_flow_control_window(2**31 - 1 - 65535)
        writer.write(client.data_to_send())
        get = [(":method", "GET"), (":path", "/"), (":scheme", "http"),
               (":authority", "svc.local")]  # fmt: skip
        stream_ids = iter(range(1, 2**31, 2))

        def requests() -> bytes:  # raw frames: h2 would track every unanswered stream
            return b"".join(raw_headers(client, next(stream_ids), get, True) for _ in range(200))

        await flood_until_closed(writer, requests, 200)
        await until(lambda: proxy.server.stats.get("http2.outbound_flood"), "flood")
        writer.close()
        stats = await http2_stats(proxy)
        assert stats["http2.outbound_flood"] == 1
        assert stats["http2.outbound_control_flood"] == 0


class RudeBackend:
    """An HTTP/2 server whose answer breaks RFC 9113 in one chosen way, written as raw
    frames with its own HPACK state (h2 would refuse to send them)."""

    def __init__(self, answer: list[tuple[list[tuple[str, str]], bool]]) -> None:
        self.answer = answer  # HEADERS frames: (headers, END_STREAM)
        self.goaways: list[int] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while chunk := await reader.read(65536):
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.RequestReceived):
                    frames = [raw_headers(conn, event.stream_id, h, e) for h, e in self.answer]
                    writer.write(conn.data_to_send() + b"".join(frames))  # read at once
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.goaways.append(int(event.error_code or 0))
            writer.write(conn.data_to_send())
        writer.close()


async def rude_exchange(answer: list[tuple[list[tuple[str, str]], bool]]) -> dict[str, int]:
    """One gRPC-looking request through the proxy to a ``RudeBackend``; the stats after."""
    backend = RudeBackend(answer)
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    try:
        async with running_proxy(slow_proxy(server.sockets[0].getsockname()[1])) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
            client = raw_client()
            client.send_headers(1, REQUEST, end_stream=True)
            writer.write(client.data_to_send())
            status = ""
            while not status:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                assert chunk, "the proxy closed the connection"
                for event in client.receive_data(chunk):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers)["grpc-status"]  # type: ignore[arg-type]
            writer.close()
            assert status == "14"  # the proxy's own UNAVAILABLE: the upstream broke
            await until(lambda: backend.goaways, "the upstream heard GOAWAY")
            assert backend.goaways == [h2.errors.ErrorCodes.PROTOCOL_ERROR]
            return await http2_stats(proxy)
    finally:
        server.close()


async def test_an_upstream_connection_header_is_a_messaging_error_of_the_cluster() -> None:
    stats = await rude_exchange([([(":status", "200"), ("connection", "close")], True)])
    assert stats["cluster.slow.http2.rx_messaging_error"] == 1
    assert stats["cluster.slow.http2.goaway_sent"] == 1
    assert stats["http2.rx_messaging_error"] == 0


async def test_an_upstream_third_headers_frame_is_too_many_header_frames() -> None:
    """Envoy takes one response HEADERS (after any 1xx) and trailers with END_STREAM;
    another HEADERS without END_STREAM ends the connection."""
    answer = [([(":status", "200"), ("content-type", "application/grpc")], False),
              ([("x-more", "1")], False)]  # fmt: skip
    stats = await rude_exchange(answer)
    assert stats["cluster.slow.http2.too_many_header_frames"] == 1
    assert stats["cluster.slow.http2.rx_messaging_error"] == 0


def frames_active(proxy: RunningProxy, prefix: str = "") -> tuple[int, int]:
    """``<prefix>http2.outbound_frames_active`` and ``..._control_frames_active``."""
    stats = proxy.server.stats
    frames = stats.get(f"{prefix}http2.outbound_frames_active")
    control = stats.get(f"{prefix}http2.outbound_control_frames_active")
    assert frames is not None and control is not None
    return frames, control


async def test_outbound_frame_gauges_count_answers_the_client_has_not_read() -> None:
    """A client that stops reading: once the sockets' buffers are full, answers (HEADERS
    and DATA) wait in the proxy and ``outbound_frames_active`` counts them, then the
    ACKs of 10 PINGs queue behind them as control frames; once the client has read it
    all, both gauges are back to zero without anything more being written."""
    body = {"inline_string": "x" * 4000}
    answer = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}
    resources = [http_listener("ingress", [vhost("all", ["*"], [answer])])]
    get = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "svc.local")]
    async with running_proxy(resources) as proxy:
        reader, writer = await unread_connection(proxy.port())
        client = raw_client()
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        client.increment_flow_control_window(2**31 - 1 - 65535)
        writer.write(client.data_to_send())
        stream_ids = iter(range(1, 2**31, 2))
        for sent in itertools.count(50, 50):  # 100 frames a round: far under the 10,000 limit
            assert sent < 20_000, "the proxy never had to hold a frame"
            writer.write(b"".join(raw_headers(client, next(stream_ids), get, True)
                                  for _ in range(50)))  # fmt: skip
            await writer.drain()
            total = "http.ingress.downstream_rq_total"
            await until(lambda: proxy.server.stats.get(total) == sent, f"{sent} requests")  # noqa: B023
            if frames_active(proxy)[0]:
                break
        assert frames_active(proxy)[1] == 0  # answers only: no control frame held yet
        for n in range(10):
            client.ping(n.to_bytes(8, "big"))
        writer.write(client.data_to_send())
        await until(lambda: frames_active(proxy)[1] == 10, "10 PING ACKs held")
        assert frames_active(proxy)[0] > 10
        while frames_active(proxy) != (0, 0):
            assert await asyncio.wait_for(reader.read(65536), 5), "the proxy closed"
        assert proxy.server.stats.get("http2.outbound_flood") == 0
        writer.close()


class UnreadBackend:
    """An HTTP/2 upstream that opens its windows wide, never reads what the proxy sends
    (through a tiny receive buffer), and sends PINGs when asked."""

    def __init__(self) -> None:
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.writer: asyncio.StreamWriter | None = None

    async def serve(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.conn
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        conn.increment_flow_control_window(2**31 - 1 - 65535)
        writer.write(conn.data_to_send())
        self.writer = writer

    def ping(self, count: int) -> None:
        assert self.writer is not None
        for n in range(count):
            self.conn.ping(n.to_bytes(8, "big"))
        self.writer.write(self.conn.data_to_send())


async def upload(port: int) -> None:
    """POST a 64 MiB body to the proxy, as fast as it takes it (forever, here)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    size = 64 * 2**20
    head = f"POST /demo.Slow/Wait HTTP/1.1\r\nhost: svc.local\r\ncontent-length: {size}\r\n\r\n"
    writer.write(head.encode())
    try:
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
    finally:
        writer.transport.abort()


async def test_the_clusters_outbound_frame_gauges_count_what_the_upstream_left_unread() -> None:
    """A request body streamed to an HTTP/2 upstream that stops reading: its DATA frames
    wait in the proxy (``cluster.<name>.http2.outbound_frames_active``), then the ACKs
    of the upstream's 10 PINGs queue behind them as control frames."""
    backend = UnreadBackend()
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the accepted one's too
    listening.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(backend.serve, sock=listening)
    port = listening.getsockname()[1]
    prefix = "cluster.slow."
    async with running_proxy(slow_proxy(port)) as proxy:
        uploading = asyncio.create_task(upload(proxy.port()))
        await until(lambda: backend.writer is not None, "the proxy connected upstream")
        for _ in range(500):
            if frames_active(proxy, prefix)[0]:
                break
            await asyncio.sleep(0.02)
        assert frames_active(proxy, prefix)[0] > 0, "no DATA frame was ever held"
        assert frames_active(proxy, prefix)[1] == 0
        backend.ping(10)
        await until(lambda: frames_active(proxy, prefix)[1] == 10, "10 PING ACKs held")
        uploading.cancel()
    server.close()
