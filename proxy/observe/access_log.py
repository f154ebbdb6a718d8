"""Envoy access-log sinks: file, stdout or stderr, buffered off the per-request path.

Sinks buffer lines and flush on a one-second timer (Envoy's default
``file_flush_interval``) or when the buffer grows, keeping file writes off the
per-request path. The formats they write were compiled with the config
(``proxy.config.access_log``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, BinaryIO

from proxy.config.access_log import STDERR, STDOUT

if TYPE_CHECKING:
    from proxy.config.access_log import AccessLogConfig
    from proxy.stream_info import StreamInfo


class AccessLogSink:
    """A buffered writer for one path, shared by every logger that names it."""

    FLUSH_INTERVAL = 1.0
    MAX_BUFFER = 64 * 1024

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self._loop = loop
        self._lines: list[str] = []
        self._size = 0
        self._handle: asyncio.TimerHandle | None = None
        self._file: BinaryIO | None = None

    def write(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.MAX_BUFFER:
            self.flush()
        elif self._handle is None:
            self._handle = self._loop.call_later(self.FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        self._size = 0
        try:
            stream = self._stream()
            stream.write(data)
            stream.flush()
        except OSError as exc:  # a full disk must not take the data path down
            print(f"access log {self.path}: {exc}", file=sys.stderr)

    def _stream(self) -> BinaryIO:
        if self.path == STDOUT:
            return sys.stdout.buffer
        if self.path == STDERR:
            return sys.stderr.buffer
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - lives as long as the sink
        return self._file

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


class AccessLogSinks:
    """Sinks by path, created on first use; the server flushes them on stop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sinks: dict[str, AccessLogSink] = {}
        self._closed = False

    def sink(self, path: str) -> AccessLogSink:
        """The sink of ``path`` (flushed and closed with the others)."""
        sink = self._sinks.get(path)
        if sink is None:
            sink = self._sinks[path] = AccessLogSink(path, self._loop)
        return sink

    def log(self, loggers: tuple[AccessLogConfig, ...], info: StreamInfo) -> None:
        for logger in loggers:
            sink = self._sinks.get(logger.path)
            if sink is None:
                sink = self._sinks[logger.path] = AccessLogSink(logger.path, self._loop)
            sink.write(logger.render(info))
            if self._closed:  # a straggler after stop(): write it through
                sink.close()

    def flush(self) -> None:
        for sink in self._sinks.values():
            sink.flush()

    def close(self) -> None:
        self._closed = True
        for sink in self._sinks.values():
            sink.close()
