"""``LeanH2Connection``: h2's ``H2Connection`` without the per-frame costs it pays for
features the proxy does not use, and with bounded memory of closed streams.

What it changes, each measured under h2load (docs/benchmarks.md, HTTP/2):

- HPACK goes through ``FastEncoder`` and ``FastDecoder`` (``proxy/upstream/hpack_fast.py``).
- Every received frame is no longer ``repr()``-ed for a trace logger that drops it.
- Counting open streams (done each time a stream opens, to apply
  ``MAX_CONCURRENT_STREAMS``) reads each stream's state directly instead of through
  two properties per stream.
- h2 remembers how each of the last 65,536 closed streams of a connection ended, so as
  to answer a late frame on one as RFC 9113 5.1 says (a stream reset for a stream that
  was reset, a connection error for one that ended normally): megabytes per long-lived
  connection, such as the upstream one to the app. ``LeanH2Connection`` remembers the
  last ``MAX_CLOSED_STREAMS`` (1,024) and treats a frame on a stream it has forgotten
  as on a stream it reset: DATA is answered with RST_STREAM (STREAM_CLOSED) and its
  bytes still reopen the connection's window, a HEADERS block is decoded (the HPACK
  context stays in step) and answered with RST_STREAM, WINDOW_UPDATE and RST_STREAM
  are ignored. The connection lives on, as nghttp2 (Envoy's codec) does for streams it
  no longer tracks: a peer whose trailers or DATA crossed our reset is not wrong, and
  past the bound we cannot tell the two cases apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h2.connection
import h2.events
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from h2.stream import STREAM_OPEN, StreamClosedBy, StreamState
from h2.utilities import SizeLimitDict
from hyperframe.frame import RstStreamFrame

from proxy.upstream.hpack_fast import FastDecoder, FastEncoder

if TYPE_CHECKING:
    import h2.config
    from hyperframe.frame import Frame

_CLOSED = StreamState.CLOSED


class LeanH2Connection(h2.connection.H2Connection):
    """An ``H2Connection`` for the proxy's downstream and upstream codecs."""

    MAX_CLOSED_STREAMS = 1024

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.encoder = FastEncoder()
        decoder = FastDecoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        decoder.max_allowed_table_size = self.decoder.max_allowed_table_size
        self.decoder = decoder
        self._closed_streams = SizeLimitDict(size_limit=self.MAX_CLOSED_STREAMS)

    def _open_streams(self, remainder: int) -> int:
        """h2's count of open streams of one parity, purging closed ones as it goes."""
        count = 0
        closed = []
        for stream_id, stream in self.streams.items():
            state = stream.state_machine.state
            if state == _CLOSED:
                closed.append(stream_id)
            elif STREAM_OPEN[state] and stream_id % 2 == remainder:
                count += 1
        for stream_id in closed:
            stream = self.streams.pop(stream_id)
            self._closed_streams[stream_id] = stream.state_machine.stream_closed_by
        return count

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
