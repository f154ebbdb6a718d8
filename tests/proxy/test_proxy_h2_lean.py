"""``LeanH2Connection`` (proxy/upstream/h2_lean.py): the frames it writes, read by h2's
own state machine, and late frames on long-closed HTTP/2 streams from a raw client
(hyperframe and hpack, no state machine of its own to refuse them) against a real
ProxyServer.

The proxy's h2 connections remember how the last 128 closed streams ended
(``LeanH2Connection.MAX_CLOSED_STREAMS``), not h2's 65,536; a frame on a stream closed
longer ago than that must cost the peer that stream only (RST_STREAM for DATA and
HEADERS, nothing for WINDOW_UPDATE and RST_STREAM), never the connection."""

from __future__ import annotations

import asyncio
import random

import h2.config
import h2.connection
import h2.events
import hpack
from h2.exceptions import ProtocolError
from h2.stream import StreamState
from h2.utilities import HeaderValidationFlags, normalize_inbound_headers, validate_headers
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from proxy_envoy import http_listener, vhost
from proxy_harness import running_proxy

from proxy.upstream.h2_lean import LeanH2Connection
from proxy.upstream.h2_validation import acceptable
from proxy.upstream.http2 import h2_configuration

OPEN = StreamState.OPEN
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_its_headers_continuations_and_data_read_back_in_h2() -> None:
    """Requests from a ``LeanH2Connection`` client to a stock h2 server and back: a head
    over the peer's 16 KiB frame size (HEADERS and CONTINUATIONs), a body in DATA frames
    with END_STREAM on the last, a bodiless request, trailers."""
    client = LeanH2Connection(h2_configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.local_settings.max_header_list_size = 1 << 20
    client.initiate_connection()
    server.initiate_connection()
    big = [(f"x-big-{n}", "v" * 1000) for n in range(40)]  # about 40 KB of HPACK literals
    base = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]
    client.send_headers(1, base + big)
    client.send_data(1, b"a" * 10000)
    client.send_data(1, b"b" * 5000, end_stream=True)
    client.send_headers(3, base, end_stream=True)
    client.send_headers(5, base)
    client.send_headers(5, [("grpc-status", "0")], end_stream=True)
    events = server.receive_data(client.data_to_send())
    heads = {e.stream_id: e.headers for e in events if isinstance(e, h2.events.RequestReceived)}
    assert heads[1] == [(k.encode(), v.encode()) for k, v in base + big]
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert body == b"a" * 10000 + b"b" * 5000
    ended = [e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)]
    assert sorted(ended) == [1, 3, 5]
    assert any(isinstance(e, h2.events.TrailersReceived) for e in events)
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"answer", end_stream=True)
    answers = client.receive_data(server.data_to_send())
    assert b"".join(e.data for e in answers if isinstance(e, h2.events.DataReceived)) == b"answer"
    assert 1 not in client.streams or client.streams[1].closed


def test_the_open_stream_counts_are_h2s() -> None:
    """Streams opened, ended either way, reset either way, in random order: after each
    step the kept counts equal a count of every stream's state (h2's own way), and the
    closed streams have left ``streams`` for ``_closed_streams``."""
    rng = random.Random(9)
    client = LeanH2Connection(h2_configuration(client_side=True))
    server = LeanH2Connection(h2_configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    head = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]
    for _ in range(3000):
        live = [i for i, st in client.streams.items() if not st.closed]
        step = rng.randrange(5) if live else 0
        if step == 0:
            client.send_headers(client.get_next_available_stream_id(), head)
        elif step == 1:
            sending = [i for i in live if client.streams[i].state_machine.state == OPEN]
            if sending:
                client.end_stream(rng.choice(sending))
        elif step == 2:
            client.reset_stream(rng.choice(live))
        for event in server.receive_data(client.data_to_send()):
            if isinstance(event, h2.events.RequestReceived) and rng.random() < 0.5:
                server.reset_stream(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and rng.random() < 0.7:
                stream = server.streams.get(event.stream_id)
                if stream is not None and not stream.state_machine.headers_sent:
                    server.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
        if step == 3:
            open_ids = [i for i, st in server.streams.items()
                        if st.open and not st.state_machine.headers_sent]  # fmt: skip
            if open_ids:
                server.send_headers(rng.choice(open_ids), [(":status", "204")], end_stream=True)
        client.receive_data(server.data_to_send())
        for conn, parity in ((client, 1), (server, 1)):
            expected = sum(1 for i, st in conn.streams.items() if st.open and i % 2 == parity)
            assert conn._open_streams(parity) == expected
            assert not any(st.closed for st in conn.streams.values())


REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a"),
           (b":authority", b"svc.local"), (b"user-agent", b"x/1"), (b"accept", b"*/*")]  # fmt: skip
RESPONSE = [(b":status", b"200"), (b"server", b"envoy"), (b"content-length", b"3")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]
FIELDS = [b"te", b"host", b"connection", b"upgrade", b"cookie", b":path", b":method",
          b":status", b":protocol", b":authority", b":x", b":", b"", b"X-Up", b"a:b", b"ok",
          b"sp ace", b"\x7f", b"\xe9", b"keep-alive", b"transfer-encoding"]  # fmt: skip
VALUES = [b"", b"trailers", b"Trailers", b"gzip", b" lead", b"trail\t", b"nul\x00", b"l\nf",
          b"c\rr", b"svc.local", b"other", b"CONNECT", b"GET", b"/", b"\xe9t\xe9"]  # fmt: skip


def mutated(rng: random.Random, block: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``block`` with zero to three edits: a field added, dropped, moved or renamed."""
    block = list(block)
    for _ in range(rng.randrange(4)):
        edit = rng.randrange(4)
        if edit == 0 or not block:
            block.insert(rng.randrange(len(block) + 1), (rng.choice(FIELDS), rng.choice(VALUES)))
        elif edit == 1:
            del block[rng.randrange(len(block))]
        elif edit == 2:
            block.insert(rng.randrange(len(block)), block.pop())
        else:
            at = rng.randrange(len(block))
            block[at] = (block[at][0], rng.choice(VALUES))
    return block


def h2_verdict(block: list[tuple[bytes, bytes]], flags: HeaderValidationFlags) -> object:
    try:
        return list(validate_headers(list(normalize_inbound_headers(block, flags)), flags))
    except ProtocolError:
        return "refused"


def test_one_pass_validation_never_accepts_what_h2_refuses() -> None:
    """``acceptable`` may pass a block only if h2's normalisation and validation pass it
    unchanged; it must pass the ordinary ones, or the fast path would never run."""
    rng = random.Random(5)
    kinds = [(REQUEST, HeaderValidationFlags(False, False, False, False)),
             (RESPONSE, HeaderValidationFlags(True, False, True, False)),
             (TRAILERS, HeaderValidationFlags(False, True, False, False))]  # fmt: skip
    passed = refused = 0
    for _ in range(20000):
        template, flags = rng.choice(kinds)
        block = mutated(rng, template)
        verdict = h2_verdict(block, flags)
        if acceptable(block, flags):
            assert verdict == block, (block, flags)
            passed += 1
        refused += verdict == "refused"
    assert passed > 3000 and refused > 3000
    for template, flags in kinds:
        assert acceptable(template, flags)


class RawClient:
    """Frames in and out of one h2c connection, nothing checked on our side."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.buffer = b""

    def send(self, *frames: Frame) -> None:
        self.writer.write(b"".join(frame.serialize() for frame in frames))

    def request(self, stream_id: int) -> HeadersFrame:
        head = [(":method", "GET"), (":scheme", "http"), (":path", f"/{stream_id}"),
                (":authority", "svc.local")]  # fmt: skip
        return HeadersFrame(
            stream_id, self.encoder.encode(head), flags={"END_HEADERS", "END_STREAM"}
        )

    async def frame(self) -> Frame:
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        self.send(SettingsFrame(0, flags={"ACK"}))
                    if isinstance(frame, HeadersFrame):
                        self.decoder.decode(frame.data)  # keep the HPACK context in step
                    return frame
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            if not chunk:
                raise AssertionError("the proxy closed the HTTP/2 connection")
            self.buffer += chunk

    async def until_ended(self, stream_ids: set[int]) -> list[Frame]:
        """Frames until each of ``stream_ids`` ended (END_STREAM or RST_STREAM)."""
        seen: list[Frame] = []
        while stream_ids:
            frame = await self.frame()
            seen.append(frame)
            assert not isinstance(frame, GoAwayFrame), frame
            if "END_STREAM" in frame.flags or isinstance(frame, RstStreamFrame):
                stream_ids.discard(frame.stream_id)
        return seen


async def test_late_frames_on_forgotten_streams_reset_the_stream_not_the_connection() -> None:
    listener = http_listener("ingress", [vhost("all", ["*"], [])])  # every request a 404
    async with running_proxy([listener]) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port())
        raw = RawClient(reader, writer)
        writer.write(PREFACE)
        raw.send(SettingsFrame(0))
        stream_id = 1
        total = LeanH2Connection.MAX_CLOSED_STREAMS + 200  # stream 1 is long forgotten
        while stream_id < 2 * total:
            batch = range(stream_id, min(stream_id + 200, 2 * total), 2)
            raw.send(*(raw.request(n) for n in batch))
            await raw.until_ended(set(batch))
            stream_id = batch[-1] + 2
        # Stream 1 ended both ways long ago (a 404, END_STREAM each side).
        late_trailers = HeadersFrame(3, raw.encoder.encode([("x-late", "1")]),
                                     flags={"END_HEADERS", "END_STREAM"})  # fmt: skip
        raw.send(DataFrame(1, b"late body"), WindowUpdateFrame(5, window_increment=100),
                 RstStreamFrame(7, error_code=8), late_trailers,
                 raw.request(stream_id))  # fmt: skip
        frames = await raw.until_ended({1, 3, stream_id})
        resets = {f.stream_id: f.error_code for f in frames if isinstance(f, RstStreamFrame)}
        assert resets == {1: 5, 3: 5}  # STREAM_CLOSED, and none for 5 and 7
        answer = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == stream_id]
        assert len(answer) == 1  # the connection still serves new streams
        assert proxy.stat("http.ingress.downstream_cx_protocol_error") == 0
        writer.close()
