"""Late frames on long-closed HTTP/2 streams, from a raw client (hyperframe and hpack, no
state machine of its own to refuse them), against a real ProxyServer.

The proxy's h2 connections remember how the last 1,024 closed streams ended
(``LeanH2Connection.MAX_CLOSED_STREAMS``), not h2's 65,536; a frame on a stream closed
longer ago than that must cost the peer that stream only (RST_STREAM for DATA and
HEADERS, nothing for WINDOW_UPDATE and RST_STREAM), never the connection."""

from __future__ import annotations

import asyncio

import hpack
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

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


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
