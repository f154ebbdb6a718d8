"""Envoy's HTTP/2 codec protections and the stats that name them, for both sides' codecs.

The h2 library ends a connection on any protocol error (GOAWAY) but does not say which
rule broke, and has no flood limits. This module gives both: ``protocol_error_stat``
names the Envoy counter for an h2 ``ProtocolError`` (``rx_messaging_error`` for RFC 9113
section 8 violations, ``too_many_header_frames``, ``header_overflow``), ``InboundFloods``
applies Envoy's default limits on empty DATA frames and PRIORITY frames, and
``OutboundFrames`` counts the frames written but still waiting in the socket's buffers
(Envoy's ``outbound_frames_active``), ending a connection whose peer stops reading while
it keeps making the proxy answer (PING floods, request floods). Envoy's default
``stream_error_on_invalid_http_messaging: false`` ends the connection too, so h2's
connection-level reaction is Envoy's.
"""

from __future__ import annotations

import os
from collections import deque

import h2.events
import h2.exceptions

# Envoy's Http2ProtocolOptions defaults.
MAX_OUTBOUND_FRAMES = 10_000
MAX_OUTBOUND_CONTROL_FRAMES = 1_000
MAX_CONSECUTIVE_EMPTY_FRAMES = 1
MAX_PRIORITY_FRAMES_PER_STREAM = 100
MAX_WINDOW_UPDATES_PER_DATA_FRAME = 10

_PING, _SETTINGS, _RST_STREAM = 0x6, 0x4, 0x3
_CONTROL = frozenset((_PING, _SETTINGS, _RST_STREAM))  # Envoy's "control" frame types
_UTILITIES = os.path.join("h2", "utilities.py")  # h2's header validation (RFC 9113 8.2)


def protocol_error_stat(exc: h2.exceptions.ProtocolError) -> str | None:
    """The Envoy ``http2.*`` counter a connection-ending h2 error stands for, if any."""
    text = str(exc)
    if isinstance(exc, h2.exceptions.DenialOfServiceError) and "header" in text:
        return "header_overflow"  # a header list over MAX_HEADER_LIST_SIZE
    if "Trailers must have END_STREAM" in text:
        return "too_many_header_frames"  # a HEADERS frame after headers, without END_STREAM
    if isinstance(exc, h2.exceptions.InvalidBodyLengthError) or _raised_in_validation(exc):
        return "rx_messaging_error"
    if "informational responses" in text:
        return "rx_messaging_error"  # END_STREAM on a 1xx
    return None


def _raised_in_validation(exc: BaseException) -> bool:
    """True when h2's header validation (``h2/utilities.py``) raised ``exc``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_UTILITIES)


class InboundFloods:
    """Envoy's inbound flood checks on one downstream connection: more consecutive
    empty-payload DATA frames (without END_STREAM) than
    ``max_consecutive_inbound_frames_with_empty_payload``, or more PRIORITY frames than
    ``max_inbound_priority_frames_per_stream`` times (1 + streams opened), or more
    WINDOW_UPDATE frames than 5 + 2 x (streams opened +
    ``max_inbound_window_update_frames_per_data_frame_sent`` x DATA frames sent); the
    codec adds the DATA frames it sends to ``data_frames``."""

    __slots__ = ("_empty", "_header_priority", "_opened", "_priority", "_window_updates",
                 "data_frames")  # fmt: skip

    def __init__(self) -> None:
        self._empty = 0
        self._priority = 0
        self._opened = 0
        self._window_updates = 0
        self.data_frames = 0
        self._header_priority: h2.events.PriorityUpdated | None = None

    def check(self, event: h2.events.Event) -> str | None:
        """The flood counter ``event`` trips, or ``None``."""
        if isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length or event.stream_ended is not None:
                self._empty = 0
                return None
            self._empty += 1
            if self._empty > MAX_CONSECUTIVE_EMPTY_FRAMES:
                return "inbound_empty_frames_flood"
            return None
        if isinstance(event, h2.events.StreamEnded):
            return None  # part of the frame that ended it
        self._empty = 0
        if isinstance(event, h2.events.RequestReceived):
            self._opened += 1
            self._header_priority = event.priority_updated  # reported again, not a frame
        elif isinstance(event, h2.events.WindowUpdated):
            self._window_updates += 1
            allowed = self._opened + MAX_WINDOW_UPDATES_PER_DATA_FRAME * self.data_frames
            if self._window_updates > 5 + 2 * allowed:
                return "inbound_window_update_frames_flood"
        elif isinstance(event, h2.events.PriorityUpdated):
            if event is self._header_priority:
                return None
            self._priority += 1
            if self._priority > MAX_PRIORITY_FRAMES_PER_STREAM * (1 + self._opened):
                return "inbound_priority_frames_flood"
        return None


class OutboundFrames:
    """Frames handed to the transport and not yet taken by the kernel: each write's
    frames are kept with their end offsets only while the transport buffers some of it
    (nothing to do while the peer reads), and dropped as the buffer drains."""

    __slots__ = ("_control", "_pending", "_written")

    def __init__(self) -> None:
        self._written = 0  # bytes handed to the transport so far
        self._pending: deque[tuple[int, bool]] = deque()  # (end offset, control frame)
        self._control = 0

    def wrote(self, data: bytes, buffered: int) -> str | None:
        """Account for one write of whole frames; the flood counter it trips, or ``None``."""
        start = self._written
        self._written += len(data)
        if not buffered:
            self._drop_sent(0)
            return None
        self._add_frames(data, start, self._written - buffered)
        self._drop_sent(buffered)
        if self._control > MAX_OUTBOUND_CONTROL_FRAMES:
            return "outbound_control_flood"
        if len(self._pending) > MAX_OUTBOUND_FRAMES:
            return "outbound_flood"
        return None

    def active(self, buffered: int) -> tuple[int, int]:
        """Envoy's ``outbound_frames_active`` and ``outbound_control_frames_active`` now,
        with ``buffered`` bytes still in the transport: frames the kernel took since the
        last write are dropped first, so an idle connection whose peer read it all
        shows none."""
        self._drop_sent(buffered)
        return len(self._pending), self._control

    def _drop_sent(self, buffered: int) -> None:
        """Forget the frames that ended before the first of the ``buffered`` bytes."""
        pending = self._pending
        if not buffered:
            pending.clear()
            self._control = 0
            return
        sent = self._written - buffered  # everything up to here reached the kernel
        while pending and pending[0][0] <= sent:
            if pending.popleft()[1]:
                self._control -= 1

    def _add_frames(self, data: bytes, start: int, sent: int) -> None:
        """The frames of ``data`` (9-byte headers: length, type) that end after ``sent``."""
        offset, size = 0, len(data)
        while offset + 9 <= size:
            end = offset + 9 + int.from_bytes(data[offset : offset + 3], "big")
            if start + end > sent:
                control = data[offset + 3] in _CONTROL
                self._pending.append((start + end, control))
                self._control += control
            offset = end
