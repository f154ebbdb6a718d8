"""What an upstream exchange reports to the router's attempt, on HTTP/1.1 and HTTP/2 alike.

``upstream/http1.py``'s ``UpstreamConnection`` and ``upstream/http2.py``'s
``Http2UpstreamStream`` report one response the same way, to the same receiver (the
router's ``Attempt``). The events are declared once here, imported by both codecs, so the
two cannot drift apart; each codec's own protocol adds what only it reports
(``UpstreamStream``: the pool's answer; ``Http2StreamOwner``: a refused extended CONNECT).
"""

from __future__ import annotations

from typing import Protocol


class StreamEvents(Protocol):
    """A response's head, body, trailers and end or reset, and the request side's
    backpressure (``writable``) and flush; ``discarded`` is set once the attempt was
    given up on, so late events are dropped."""

    discarded: bool

    def on_upstream_headers(
        self, status: int, headers: list[tuple[str, str]], keep_alive: bool
    ) -> None: ...
    def on_upstream_data(self, data: bytes) -> None: ...
    def on_upstream_trailers(self, trailers: list[tuple[str, str]]) -> None: ...
    def on_upstream_end(self) -> None: ...
    def on_upstream_reset(self, reason: str) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...
    def on_upstream_flush(self) -> None: ...
