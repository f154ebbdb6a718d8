"""The downstream request body on its way upstream, kept for replay while it fits.

A retry must resend the body, so chunks are kept until the body exceeds the buffer limit
(Envoy's 1 MiB per-connection default). Past that, retries are off (as in Envoy) and the
buffer only holds what the current attempt has not sent yet, so memory stays bounded
and large uploads simply stream.
"""

from __future__ import annotations

BUFFER_LIMIT = 1 << 20


class RequestBody:
    __slots__ = ("_chunks", "_sent", "chunked", "limit", "pending", "retain", "size")

    def __init__(self, chunked: bool, limit: int = BUFFER_LIMIT) -> None:
        self.chunked = chunked
        self.limit = limit
        self._chunks: list[bytes] = []
        self._sent = 0  # chunks already written on the current attempt
        self.size = 0  # total body bytes seen
        self.pending = 0  # bytes not yet written on the current attempt
        self.retain = True

    def add(self, data: bytes) -> None:
        self._chunks.append(data)
        self.size += len(data)
        self.pending += len(data)
        if self.retain and self.size > self.limit:
            self.retain = False

    @property
    def replayable(self) -> bool:
        """A new attempt can resend everything (nothing was dropped)."""
        return self.retain or self.size == 0

    def rewind(self) -> None:
        """A new attempt starts: everything kept is unsent again."""
        self._sent = 0
        self.pending = self.size if self.retain else sum(map(len, self._chunks))

    def take(self) -> bytes:
        """Bytes the current attempt has not sent yet, framed for the upstream."""
        chunks = self._chunks[self._sent :] if self._sent else self._chunks
        if self.retain:
            self._sent = len(self._chunks)
        else:
            self._chunks = []
            self._sent = 0
        self.pending = 0
        if not chunks:
            return b""
        if self.chunked:
            return b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
        return b"".join(chunks)

    def end_marker(self) -> bytes:
        return b"0\r\n\r\n" if self.chunked else b""

    def clear(self) -> None:
        self._chunks = []
        self._sent = 0
        self.pending = 0
