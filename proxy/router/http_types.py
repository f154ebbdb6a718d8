"""The codec-neutral request and the interface a downstream codec offers the router.

The HTTP/1.1 and HTTP/2 codecs both produce an ``HttpRequest`` (pseudo-headers included)
and implement ``Downstream``, so the router, retries and policies are codec-neutral.
"""

from __future__ import annotations

from typing import Protocol

# How the request body is framed on the wire (and must be framed upstream).
NO_BODY = 0
CONTENT_LENGTH = 1
CHUNKED = 2


class HttpRequest:
    """One request head. ``headers`` holds lower-cased names, duplicates joined with ``,``
    (cookies with ``; ``), plus ``:method``, ``:path``, ``:authority`` and ``:scheme``.
    ``upgrade`` is the lower-cased upgrade type (``websocket``) of an HTTP/1.1 Upgrade or
    an HTTP/2 extended CONNECT, which the codec has already put in HTTP/1.1's form."""

    __slots__ = ("content_length", "framing", "headers", "method", "path", "upgrade", "version")

    def __init__(
        self,
        method: str,
        path: str,
        version: str,
        headers: dict[str, str],
        framing: int,
        content_length: int,
        upgrade: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        self.framing = framing
        self.content_length = content_length
        self.upgrade = upgrade


class Downstream(Protocol):
    """What the router needs from the downstream codec for one stream."""

    remote_address: str

    def send_headers(
        self, status: int, headers: list[tuple[str, str]], content_length: int | None
    ) -> None:
        """Start the response; framing and ``connection`` headers are the codec's job."""

    def send_data(self, data: bytes) -> None: ...

    def send_trailers(self, trailers: list[tuple[str, str]]) -> None:
        """Response trailers, sent with the end of the response (HTTP/2; HTTP/1.1 drops
        them, as Envoy does without ``enable_trailers``)."""

    def flush(self) -> None:
        """Write out what was queued (the codec may coalesce writes until then)."""

    def end_response(self) -> None:
        """The response is complete; in an upgraded stream (a tunnel after ``101``), the
        upstream ended its direction: half-close towards the client."""

    def send_local(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """A complete locally generated response (404 NR, 503 UH, 504 UT...)."""

    def abort(self) -> None:
        """Reset the stream (for HTTP/1: close the connection) after headers went out."""

    def set_reading(self, enabled: bool) -> None:
        """Request-body backpressure."""
