"""``LeanH2Connection``: h2's ``H2Connection`` without the per-frame costs it pays for
features the proxy does not use, and with bounded memory of closed streams.

What it changes, each measured under h2load (docs/benchmarks.md, HTTP/2):

- HPACK goes through ``FastEncoder`` and ``FastDecoder`` (``proxy/upstream/hpack_fast.py``).
- Every received frame is no longer ``repr()``-ed for a trace logger that drops it.
- Received header blocks are validated in one pass (``proxy/upstream/h2_validation.py``)
  where h2 chained seven generators; h2's own pipeline still judges any block that fails.
- Its streams (``LeanStream``) write HEADERS, CONTINUATION and DATA frames as bytes
  where h2 built a hyperframe object for each (three mixins' ``__init__``, a ``Flags``
  set, a serialisation pass), with h2's state machine and checks as they were.
- Counting open streams (done each time a stream opens, to apply
  ``MAX_CONCURRENT_STREAMS``) scanned every stream of the connection, 100 on a busy
  upstream connection; each stream's state machine now keeps the count as it moves in
  and out of the open states, and notes when it closes, so only the streams closed
  since are visited.
- h2 remembers how each of the last 65,536 closed streams of a connection ended, so as
  to answer a late frame on one as RFC 9113 5.1 says (a stream reset for a stream that
  was reset, a connection error for one that ended normally): megabytes per long-lived
  connection, such as the upstream one to the app, and about 130 KB per connection even
  at 1,024 (an ``OrderedDict`` entry each). ``LeanH2Connection`` remembers the
  last ``MAX_CLOSED_STREAMS`` (128) and treats a frame on a stream it has forgotten
  as on a stream it reset: DATA is answered with RST_STREAM (STREAM_CLOSED) and its
  bytes still reopen the connection's window, a HEADERS block is decoded (the HPACK
  context stays in step) and answered with RST_STREAM, WINDOW_UPDATE and RST_STREAM
  are ignored. The connection lives on, as nghttp2 (Envoy's codec) does for streams it
  no longer tracks: a peer whose trailers or DATA crossed our reset is not wrong, and
  past the bound we cannot tell the two cases apart.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import h2.connection
import h2.events
import h2.stream
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, _decode_headers
from h2.errors import ErrorCodes
from h2.exceptions import (
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
    TooManyStreamsError,
)
from h2.frame_buffer import FrameBuffer
from h2.stream import STREAM_OPEN, StreamClosedBy, StreamInputs, StreamState
from h2.utilities import HeaderValidationFlags, SizeLimitDict
from h2.windows import WindowManager
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hyperframe.frame import RstStreamFrame

from proxy.upstream.h2_validation import acceptable
from proxy.upstream.hpack_fast import FastDecoder, FastEncoder

if TYPE_CHECKING:
    from collections.abc import Iterable

    import h2.config
    from hpack import Encoder
    from hyperframe.frame import Frame

_CLOSED = StreamState.CLOSED
_ALLOWED = {False: AllowedStreamIDs.EVEN, True: AllowedStreamIDs.ODD}  # by client_side
# What h2's ``_build_hdr_validation_flags`` derives from a received block's event:
# (is_trailer, is_response_header).
_HEADER_KINDS = {
    h2.events.RequestReceived: (False, False),
    h2.events.ResponseReceived: (False, True),
    h2.events.InformationalResponseReceived: (False, True),
    h2.events.TrailersReceived: (True, False),
}
_TRANSITIONS = {
    (state._value_, input_._value_): entry
    for (state, input_), entry in h2.stream._transitions.items()
}
_CONNECTION_TRANSITIONS = {
    (state._value_, input_._value_): entry
    for (state, input_), entry in h2.connection.H2ConnectionStateMachine._transitions.items()
}
_HEADER = struct.Struct(">HBBBL")  # RFC 9113 4.1: length (24 bits), type, flags, stream id
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20
# hyperframe's Flags keep only a frame type's defined flags: the same sets, as frozensets.
_DATA_FLAGS = {bits: frozenset(("END_STREAM",) if bits else ()) for bits in (0, _END_STREAM)}
_HEADERS_FLAGS = {
    bits: frozenset(("END_STREAM", "END_HEADERS") if bits & _END_STREAM else ("END_HEADERS",))
    for bits in (_END_HEADERS, _END_HEADERS | _END_STREAM)
}
_IGNORED_BITS = 0xFF & ~(_END_STREAM | _END_HEADERS | _PADDED | _PRIORITY)  # undefined here


class WireFrame:
    """A frame already serialised: what ``_prepare_for_sending`` needs of a frame."""

    __slots__ = ("body_len", "wire")

    def __init__(self, kind: int, flags: int, stream_id: int, body: bytes) -> None:
        self.body_len = size = len(body)
        self.wire = _HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + body

    def serialize(self) -> bytes:
        return self.wire


class ReceivedData:
    """A received DATA frame without padding, as h2's ``_receive_data_frame`` reads one
    (hyperframe's ``DataFrame`` is three ``__init__``s and a ``Flags`` set)."""

    __slots__ = ("body_len", "data", "flags", "flow_controlled_length", "stream_id")

    def __init__(self, stream_id: int, flags: frozenset[str], data: bytes) -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.data = data
        self.body_len = self.flow_controlled_length = len(data)


class ReceivedHeaders:
    """A received HEADERS frame holding its whole block (END_HEADERS), without padding
    or priority: what h2's ``_receive_headers_frame`` reads of one."""

    __slots__ = ("body_len", "data", "flags", "stream_id")

    def __init__(self, stream_id: int, flags: frozenset[str], data: bytes) -> None:
        self.stream_id = stream_id
        self.flags = flags
        self.data = data
        self.body_len = len(data)


class LeanFrameBuffer(FrameBuffer):
    """h2's ``FrameBuffer``, parsing the two frames a request and a response are made of
    (DATA without padding, HEADERS with END_HEADERS and neither padding nor priority)
    into ``ReceivedData`` and ``ReceivedHeaders`` with one ``unpack_from``; every other
    frame, and anything while a header block is continued, goes through h2's own parse,
    so its checks (CONTINUATION sequencing, padding, stream 0) are h2's."""

    def __next__(self) -> Any:
        data = self._data
        if len(data) < 9 or self._headers_buffer:
            return super().__next__()
        high, low, kind, bits, stream_id = _HEADER.unpack_from(data)
        stream_id &= 0x7FFFFFFF
        bits &= ~_IGNORED_BITS
        if not stream_id or kind > _HEADERS or bits & _PADDED:
            return super().__next__()
        if kind == _HEADERS and (bits & _PRIORITY or not bits & _END_HEADERS):
            return super().__next__()
        length = (high << 8) + low
        end = length + 9
        if len(data) < end:
            raise StopIteration
        self._validate_frame_length(length)
        body = bytes(data[9:end])
        del data[:end]
        if kind == _DATA:
            return ReceivedData(stream_id, _DATA_FLAGS[bits & _END_STREAM], body)
        return ReceivedHeaders(stream_id, _HEADERS_FLAGS[bits], body)


class LeanConnectionStateMachine(h2.connection.H2ConnectionStateMachine):
    """h2's connection state machine, its transitions looked up by the states' and
    inputs' integer values (hashing the enums runs ``Enum.__hash__`` in Python, twice
    per frame sent or received)."""

    def process_input(self, input_: ConnectionInputs) -> list[h2.events.Event]:
        if not isinstance(input_, ConnectionInputs):
            raise ValueError("Input must be an instance of ConnectionInputs")
        entry = _CONNECTION_TRANSITIONS.get((self.state._value_, input_._value_))
        if entry is None:
            old_state, self.state = self.state, ConnectionState.CLOSED
            raise ProtocolError(f"Invalid input {input_} in state {old_state}")
        func, self.state = entry
        return [] if func is None else func()


class StreamCounts:
    """A connection's open streams by parity (stream id % 2) and the ids closed since
    h2 last counted, kept by its streams' state machines."""

    __slots__ = ("closed", "open")

    def __init__(self) -> None:
        self.open = [0, 0]
        self.closed: list[int] = []


class CountingStateMachine(h2.stream.H2StreamStateMachine):
    """h2's stream state machine, reporting its moves in and out of the open states."""

    def __init__(self, stream_id: int, counts: StreamCounts) -> None:
        super().__init__(stream_id)
        self.counts = counts

    def process_input(self, input_: StreamInputs) -> list[Any]:
        """h2's ``process_input``, its transitions looked up by the states' and inputs'
        integer values (hashing the enums themselves runs Python code)."""
        if not isinstance(input_, StreamInputs):
            raise ValueError("Input must be an instance of StreamInputs")
        was = self.state
        entry = _TRANSITIONS.get((was._value_, input_._value_))
        if entry is None:
            self._move(_CLOSED)
            raise ProtocolError(f"Invalid input {input_} in state {was}")
        func, target = entry
        self._move(target)
        if func is None:
            return []
        try:
            return func(self, was)
        except ProtocolError:
            self._move(_CLOSED)
            raise
        except AssertionError as err:  # as h2 does
            self._move(_CLOSED)
            raise ProtocolError(err) from err

    def _move(self, now: StreamState) -> None:
        was, self.state = self.state, now
        if now is not was:
            opened = STREAM_OPEN[now]
            if opened != STREAM_OPEN[was]:
                self.counts.open[self.stream_id % 2] += 1 if opened else -1
            if now == _CLOSED:
                self.counts.closed.append(self.stream_id)


def _as_bytes(headers: Iterable[Any]) -> tuple[list[Any], bool, bytes | None, bytes | None]:
    """In one pass, what h2 finds in four (``utf8_encode_headers``,
    ``is_informational_response``, ``extract_method_header``, ``authority_from_headers``):
    the headers as UTF-8 bytes (a ``HeaderTuple``'s class kept), whether a ``:status``
    among the leading pseudo-headers is 1xx, and the ``:method`` and ``:authority``."""
    out: list[Any] = []
    informational = False
    pseudo = True
    method = authority = None
    names = _NAME_BYTES
    for header in headers:
        name, value = header[0], header[1]
        if type(name) is str:
            encoded = names.get(name)
            if encoded is None:
                encoded = name.encode()
                if len(names) < _NAME_BYTES_LIMIT:
                    names[name] = encoded
            name = encoded
        elif not isinstance(name, bytes):
            name = name.encode("utf-8")
        if type(value) is str:
            value = value.encode()
        elif not isinstance(value, bytes):
            value = value.encode("utf-8")
        if type(header) is tuple or not isinstance(header, HeaderTuple):
            out.append((name, value))
        else:
            out.append(header.__class__(name, value))
        if name[:1] == b":":
            if name == b":status":
                if pseudo:  # h2 looks at the first :status among the leading pseudo-headers
                    informational = value[:1] == b"1"
                    pseudo = False
            elif name == b":method":
                if method is None:
                    method = value
            elif name == b":authority" and authority is None:
                authority = value
        else:
            pseudo = False
    return out, informational, method, authority


# Header names as UTF-8, shared by every connection (names repeat; values mostly do not).
_NAME_BYTES: dict[str, bytes] = {}
_NAME_BYTES_LIMIT = 4096


class LeanStream(h2.stream.H2Stream):
    """h2's stream with HEADERS and DATA written as bytes (h2's outbound header
    normalisation and validation are off in ``h2_configuration``; with either on it
    falls back to h2's own code), and a state machine that keeps the open count."""

    def __init__(
        self,
        stream_id: int,
        counts: StreamCounts,
        config: h2.config.H2Configuration,
        inbound_window_size: int,
        outbound_window_size: int,
    ) -> None:
        """h2's ``H2Stream.__init__`` with the counting state machine (not one made and
        then replaced: a stream is made per request)."""
        self.state_machine = CountingStateMachine(stream_id, counts)
        self.stream_id = stream_id
        self.max_outbound_frame_size: int | None = None
        self.request_method: bytes | None = None
        self.outbound_flow_control_window = outbound_window_size
        self._inbound_window_manager = WindowManager(inbound_window_size)
        self._expected_content_length: int | None = None
        self._actual_content_length = 0
        self._authority: bytes | None = None
        self.config = config

    def send_headers(  # type: ignore[override]
        self, headers: Iterable[Any], encoder: Encoder, end_stream: bool = False
    ) -> list[WireFrame]:
        config = self.config
        if config.normalize_outbound_headers or config.validate_outbound_headers:
            return super().send_headers(headers, encoder, end_stream)  # type: ignore[return-value]
        machine = self.state_machine
        bytes_headers, informational, method, authority = _as_bytes(headers)
        input_ = StreamInputs.SEND_HEADERS
        if not machine.client and informational:
            if end_stream:
                raise ProtocolError("Cannot set END_STREAM on informational responses.")
            input_ = StreamInputs.SEND_INFORMATIONAL_HEADERS
        machine.process_input(input_)
        block = encoder.encode(bytes_headers)
        flags = 0
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            flags = _END_STREAM
        if machine.trailers_sent and not end_stream:
            raise ProtocolError("Trailers must have END_STREAM set.")
        if machine.client and self._authority is None:
            self._authority = authority
        self.request_method = method
        return self._header_frames(block, flags)

    def _header_frames(self, block: bytes, flags: int) -> list[WireFrame]:
        """HEADERS, then CONTINUATIONs for what exceeds the peer's frame size."""
        size = self.max_outbound_frame_size or len(block)
        if len(block) <= size:
            return [WireFrame(_HEADERS, flags | _END_HEADERS, self.stream_id, block)]
        pieces = [block[start : start + size] for start in range(0, len(block), size)]
        frames = [WireFrame(_HEADERS, flags, self.stream_id, pieces[0])]
        frames += [WireFrame(_CONTINUATION, 0, self.stream_id, piece) for piece in pieces[1:-1]]
        frames.append(WireFrame(_CONTINUATION, _END_HEADERS, self.stream_id, pieces[-1]))
        return frames

    def receive_headers(
        self, headers: Iterable[Any], end_stream: bool, header_encoding: bool | str | None
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        """h2's ``receive_headers`` with one scan of the block where h2 made two (the
        1xx test, the content-length values); the same checks and errors in the same
        order."""
        listed = headers if isinstance(headers, list) else list(headers)
        informational = False
        pseudo = True
        lengths: list[bytes] | None = None
        for name, value in listed:
            if pseudo:
                if name[:1] != b":":
                    pseudo = False
                elif name == b":status":
                    informational = value[:1] == b"1"
                    pseudo = False
            if name == b"content-length":
                if lengths is None:
                    lengths = []
                lengths.append(value)
        if informational:
            if end_stream:
                raise ProtocolError("Cannot set END_STREAM on informational responses")
            input_ = StreamInputs.RECV_INFORMATIONAL_HEADERS
        else:
            input_ = StreamInputs.RECV_HEADERS
        machine = self.state_machine
        events = machine.process_input(input_)
        event: Any = events[0]
        if end_stream:
            ended = machine.process_input(StreamInputs.RECV_END_STREAM)
            event.stream_ended = ended[0]
            events += ended
        if self.request_method == b"HEAD":
            self._expected_content_length = 0
        else:
            content_length = None
            for value in lengths or ():
                if not value.isdigit():
                    raise ProtocolError(f"Invalid content-length header: {value!r}")
                parsed = int(value, 10)
                if content_length is None:
                    content_length = parsed
                elif parsed != content_length:
                    raise ProtocolError(
                        f"Conflicting content-length headers: {content_length} and {parsed}"
                    )
            self._expected_content_length = content_length
        if isinstance(event, h2.events.TrailersReceived) and not end_stream:
            raise ProtocolError("Trailers must have END_STREAM set")
        kind = _HEADER_KINDS.get(type(event))
        if kind is None:
            flags = self._build_hdr_validation_flags(events)
        else:
            flags = HeaderValidationFlags(machine.client or False, kind[0], kind[1], False)
        event.headers = self._process_received_headers(listed, flags, header_encoding)
        return [], events

    def _process_received_headers(
        self, headers: Iterable[Any], flags: HeaderValidationFlags, encoding: bool | str | None
    ) -> list[Any]:
        """h2's normalisation, validation and decoding of a received block, with the
        validation done by ``acceptable`` when it passes the block (plain tuples out,
        ``NeverIndexedHeaderTuple`` kept for fields sent never-indexed)."""
        config = self.config
        listed = headers if isinstance(headers, list) else list(headers)
        if not (config.validate_inbound_headers and isinstance(encoding, str)) or not (
            acceptable(listed, flags)
        ):
            return super()._process_received_headers(listed, flags, encoding)
        decoded: list[Any] = []
        for header in listed:
            name, value = header[0].decode(encoding), header[1].decode(encoding)
            if type(header) is NeverIndexedHeaderTuple:
                decoded.append(NeverIndexedHeaderTuple(name, value))
            else:
                decoded.append((name, value))
        return decoded

    def send_data(  # type: ignore[override]
        self, data: bytes | memoryview, end_stream: bool = False, pad_length: int | None = None
    ) -> list[WireFrame]:
        if pad_length is not None:
            return super().send_data(data, end_stream, pad_length)  # type: ignore[return-value]
        machine = self.state_machine
        machine.process_input(StreamInputs.SEND_DATA)
        body = data.tobytes() if isinstance(data, memoryview) else bytes(data)
        flags = 0
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            flags = _END_STREAM
        self.outbound_flow_control_window -= len(body)
        return [WireFrame(_DATA, flags, self.stream_id, body)]

    def end_stream(self) -> list[WireFrame]:  # type: ignore[override]
        self.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        return [WireFrame(_DATA, _END_STREAM, self.stream_id, b"")]


class LeanH2Connection(h2.connection.H2Connection):
    """An ``H2Connection`` for the proxy's downstream and upstream codecs."""

    MAX_CLOSED_STREAMS = 128

    def __init__(self, config: h2.config.H2Configuration) -> None:
        self._counts = StreamCounts()
        super().__init__(config=config)
        self.encoder = FastEncoder()
        decoder = FastDecoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.decoder = decoder
        self._closed_streams = SizeLimitDict(size_limit=self.MAX_CLOSED_STREAMS)
        self.state_machine = LeanConnectionStateMachine()
        self.incoming_buffer = LeanFrameBuffer(server=not self.config.client_side)
        table: dict[type, Any] = self._frame_dispatch_table
        table[ReceivedData] = self._receive_data_frame
        table[ReceivedHeaders] = self._receive_headers_frame
        self._client = self.config.client_side

    def send_headers(
        self,
        stream_id: int,
        headers: Iterable[Any],
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        """h2's ``send_headers`` without its debug-log calls and property lookups (the
        same checks, in the same order); priorities go through h2's own."""
        if (
            priority_weight is not None
            or priority_depends_on is not None
            or (priority_exclusive is not None)
        ):
            return super().send_headers(
                stream_id, headers, end_stream, priority_weight, priority_depends_on,
                priority_exclusive,
            )  # fmt: skip
        stream = self.streams.get(stream_id)
        if stream is None:
            max_open_streams = self.remote_settings.max_concurrent_streams
            value = self._open_streams(int(self._client))
            if value + 1 > max_open_streams:
                raise TooManyStreamsError(
                    f"Max outbound streams is {max_open_streams}, {value} open"
                )
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        if stream is None:
            stream = self._begin_new_stream(stream_id, _ALLOWED[self._client])
        frames: list[Any] = stream.send_headers(headers, self.encoder, end_stream)
        self._prepare_for_sending(frames)

    def _begin_new_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> LeanStream:
        """h2's ``_begin_new_stream``, making a ``LeanStream``."""
        outbound = self._stream_id_is_outbound(stream_id)
        highest = self.highest_outbound_stream_id if outbound else self.highest_inbound_stream_id
        if stream_id <= highest:
            raise StreamIDTooLowError(stream_id, highest)
        if (stream_id % 2) != int(allowed_ids):
            raise ProtocolError("Invalid stream ID for peer.")
        stream = LeanStream(
            stream_id,
            self._counts,
            config=self.config,
            inbound_window_size=self.local_settings.initial_window_size,
            outbound_window_size=self.remote_settings.initial_window_size,
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        if outbound:
            self.highest_outbound_stream_id = stream_id
        else:
            self.highest_inbound_stream_id = stream_id
        return stream

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Frame], list[h2.events.Event]]:
        """h2's ``_receive_headers_frame`` for a ``ReceivedHeaders`` (no priority to
        apply), without its property and enum lookups; the same checks in the same order."""
        if type(frame) is not ReceivedHeaders:
            return super()._receive_headers_frame(frame)
        stream_id = frame.stream_id
        stream = self.streams.get(stream_id)
        if stream is None:
            max_open_streams = self.local_settings.max_concurrent_streams
            value = self._open_streams(int(not self._client))
            if value + 1 > max_open_streams:
                raise TooManyStreamsError(
                    f"Max inbound streams is {max_open_streams}, {value} open"
                )
        headers = _decode_headers(self.decoder, frame.data)
        events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        if stream is None:
            stream = self._begin_new_stream(stream_id, _ALLOWED[not self._client])
        frames, stream_events = stream.receive_headers(
            headers, "END_STREAM" in frame.flags, self.config.header_encoding
        )
        return frames, events + stream_events

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        out = self._data_to_send
        for frame in frames:
            out += frame.serialize()

    def _open_streams(self, remainder: int) -> int:
        """h2's count of open streams of one parity; closed streams move from
        ``streams`` to ``_closed_streams`` here, as in h2."""
        counts = self._counts
        closed, counts.closed = counts.closed, []
        for stream_id in closed:
            stream = self.streams.pop(stream_id, None)
            if stream is not None:
                self._closed_streams[stream_id] = stream.state_machine.stream_closed_by
        return counts.open[remainder]

    def _stream_closed_by(self, stream_id: int) -> StreamClosedBy | None:
        """How a stream ended; a stream below the highest id of its side that is neither
        open nor remembered counts as reset (see the module's docstring)."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream.closed_by
        if stream_id in self._closed_streams:
            return self._closed_streams[stream_id]
        outbound = self._stream_id_is_outbound(stream_id)
        highest = self.highest_outbound_stream_id if outbound else self.highest_inbound_stream_id
        return StreamClosedBy.SEND_RST_STREAM if 0 < stream_id <= highest else None

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        """h2's ``_receive_frame`` without the ``repr(frame)`` it builds for its trace
        log (about 3% of the proxy's time under load); otherwise the same."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                reset = RstStreamFrame(e.stream_id)
                reset.error_code = e.error_code
                self._prepare_for_sending([reset])
                return e._events
            raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                reset = RstStreamFrame(e.stream_id)
                reset.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([reset])
                return []
            if self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            raise
        self._prepare_for_sending(frames)
        return events
