"""Fire-and-forget datagrams (X-Ray segments, DogStatsD lines), sent off the request path.

Callers queue a payload and return; one loop callback a few milliseconds later sends
everything queued with non-blocking ``sendto`` calls, so a burst of finished requests
costs one wake-up, and a slow or absent receiver costs nothing but dropped datagrams
(counted), never a blocked loop. This is how the X-Ray SDKs and Envoy's statsd sink
treat their daemons: telemetry must not hurt the traffic it describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

log = logging.getLogger("appmesh_proxy.datagrams")

FLUSH_DELAY = 0.02  # seconds between the first queued datagram and the send
MAX_QUEUED = 10_000  # beyond this, new datagrams are dropped until the next flush


class DatagramSender:
    """A non-blocking UDP (or Unix datagram) socket with a batching queue."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: tuple[str, int] | str,
        delay: float = FLUSH_DELAY,
    ) -> None:
        self.loop = loop
        self.address = address
        self.delay = delay
        self.sent = self.dropped = 0
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._queue: list[bytes] = []
        self._handle: asyncio.TimerHandle | None = None
        self._warned = False

    def send(self, payload: bytes) -> None:
        """Queue one datagram; it goes out with the next flush."""
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append(payload)
        if self._handle is None:
            self._handle = self.loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        """Send everything queued now; what the socket refuses is dropped."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        queue, self._queue = self._queue, []
        sendto, address = self._sock.sendto, self.address
        for payload in queue:
            try:
                sendto(payload, address)
            except OSError as exc:  # BlockingIOError (buffer full), refused, too large
                self.dropped += 1
                self._warn(exc)
            else:
                self.sent += 1

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("datagrams to %s are being dropped: %s", self.address, exc)

    def close(self) -> None:
        """Send what is queued, then close the socket."""
        self.flush()
        with contextlib.suppress(OSError):
            self._sock.close()
