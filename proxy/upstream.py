"""Upstream HTTP/1.1: the client codec on one connection, and the pool per host.

``UpstreamConnection`` is a raw ``asyncio.Protocol`` with an httptools response parser.
It carries one request at a time and reports to an ``UpstreamStream`` (the router's
attempt): headers, body chunks, end, reset, and write backpressure. When the response
ends and the request was fully sent on a keep-alive connection, it goes back to its
``HostPool``; idle connections are reused newest-first, so the ones the upstream is most
likely to have closed age out through the idle sweep.

``HostPool`` enforces the cluster's circuit breakers the way Envoy's HTTP/1 pool does:
a request that finds no idle connection is *pending* (bounded by
``max_pending_requests``, overflow → ``upstream_rq_pending_overflow``), and a new
connection is opened for it unless ``max_connections`` is reached
(→ ``upstream_cx_overflow``; the request waits for a connection to free up).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

import httptools

from proxy.retry import CONNECT_FAILURE, CONNECTION_TERMINATION

if TYPE_CHECKING:
    from proxy.cluster_manager import Cluster, Host


class UpstreamStream(Protocol):
    """What an upstream connection reports to (the router's current attempt)."""

    discarded: bool

    def on_pool_ready(self, conn: UpstreamConnection) -> None: ...
    def on_pool_failure(self, reason: str, detail: str) -> None: ...
    def on_upstream_headers(
        self, status: int, headers: list[tuple[str, str]], keep_alive: bool
    ) -> None: ...
    def on_upstream_data(self, data: bytes) -> None: ...
    def on_upstream_end(self) -> None: ...
    def on_upstream_reset(self, reason: str) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...
    def on_upstream_flush(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One upstream HTTP/1.1 connection; at most one request in flight."""

    __slots__ = (
        "_close_delimited",
        "_headers",
        "_interim",
        "_is_head",
        "_keep_alive",
        "_request_done",
        "_response_done",
        "closed",
        "idle_since",
        "parser",
        "pool",
        "received_bytes",
        "requests",
        "response_started",
        "stream",
        "transport",
    )

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.stream: UpstreamStream | None = None
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self.received_bytes = 0
        self.response_started = False
        self._headers: list[tuple[str, str]] = []
        self._is_head = False
        self._interim = False
        self._keep_alive = True
        self._close_delimited = False
        self._request_done = False
        self._response_done = False

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        if stream is None:
            self.abort()  # bytes on an idle connection: the upstream broke framing
            return
        self.received_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._reset(CONNECTION_TERMINATION)
            return
        stream = self.stream
        if stream is not None:
            if stream.discarded:
                self.abort()  # a retried attempt whose response did not end within one read
            else:
                stream.on_upstream_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        stream = self.stream
        if stream is not None:
            if self.response_started and self._close_delimited and not self._response_done:
                self._complete()
            else:
                self.stream = None
                stream.on_upstream_reset(CONNECTION_TERMINATION)
        self.pool.on_closed(self)

    def pause_writing(self) -> None:
        if self.stream is not None:
            self.stream.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.stream is not None:
            self.stream.on_upstream_writable(True)

    # -- driven by the router -----------------------------------------------------------
    def begin(self, stream: UpstreamStream, payload: bytes, is_head: bool, complete: bool) -> None:
        """Start a request: ``payload`` is the head plus any body already available."""
        self.stream = stream
        self.requests += 1
        self.received_bytes = 0
        self.response_started = False
        self._is_head = is_head
        self._request_done = complete
        self._response_done = False
        assert self.transport is not None
        self.transport.write(payload)

    def write(self, data: bytes, complete: bool = False) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)
        if complete:
            self._request_done = True

    def set_reading(self, enabled: bool) -> None:
        if self.transport is not None and not self.closed:
            if enabled:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def abort(self) -> None:
        """Drop the connection now (mid-request); the stream hears nothing more."""
        self.stream = None
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        """Close gracefully after a finished exchange."""
        self.stream = None
        if self.transport is not None and not self.closed:
            self.transport.close()

    @property
    def reused(self) -> bool:
        return self.requests > 1

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue and friends are not forwarded
            return
        headers = self._headers
        self.response_started = True
        self._keep_alive = parser.should_keep_alive()
        self._close_delimited = (
            not self._is_head
            and status not in (204, 304)
            and not any(n == "content-length" or n == "transfer-encoding" for n, _ in headers)
        )
        stream = self.stream
        if stream is not None:
            stream.on_upstream_headers(status, headers, self._keep_alive)
        if self._is_head and self.stream is stream:
            # httptools cannot be told the request was HEAD: end here, fresh parser next.
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        stream = self.stream
        if stream is not None and not stream.discarded:
            stream.on_upstream_data(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._response_done:
            self._complete()

    # -- internals ------------------------------------------------------------------------
    def _complete(self) -> None:
        self._response_done = True
        stream, self.stream = self.stream, None
        if stream is not None and not stream.discarded:
            stream.on_upstream_end()
        if self.closed:
            return
        if self._keep_alive and self._request_done and not self._close_delimited:
            self.pool.release(self)
        else:
            self.close()

    def _reset(self, reason: str) -> None:
        stream, self.stream = self.stream, None
        if self.transport is not None and not self.closed:
            self.transport.abort()
        if stream is not None and not stream.discarded:
            stream.on_upstream_reset(reason)


def _connect_detail(exc: BaseException) -> str:
    """Envoy's transport failure reason wording, as far as a socket error tells it."""
    if isinstance(exc, TimeoutError):
        return "connect timeout"
    code = getattr(exc, "errno", None)
    return f"delayed connect error: {code}" if code else (str(exc) or type(exc).__name__)


class HostPool:
    """Idle keep-alive connections and pending requests for one upstream host."""

    __slots__ = ("_tasks", "closing", "cluster", "connecting", "host", "idle", "waiters")

    def __init__(self, host: Host, cluster: Cluster) -> None:
        self.host = host
        self.cluster = cluster
        self.idle: list[UpstreamConnection] = []
        self.waiters: deque[UpstreamStream] = deque()
        self.connecting = 0
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    def acquire(self, stream: UpstreamStream) -> bool:
        """Hand ``stream`` a connection now or later; ``False`` means pending overflow."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                stream.on_pool_ready(conn)
                return True
        cluster = self.cluster
        thresholds = cluster.config.thresholds
        if cluster.rq_pending >= thresholds.max_pending_requests:
            cluster.stats.counters["upstream_rq_pending_overflow"] += 1
            return False
        cluster.rq_pending += 1
        cluster.stats.counters["upstream_rq_pending_total"] += 1
        self.waiters.append(stream)
        self.maybe_connect()
        return True

    def cancel(self, stream: UpstreamStream) -> None:
        """Forget a pending request (timeout, downstream gone)."""
        try:
            self.waiters.remove(stream)
        except ValueError:
            return
        self.cluster.rq_pending -= 1

    def maybe_connect(self) -> bool:
        """Open a connection if waiters outnumber connects in progress and the breaker allows."""
        if self.connecting >= len(self.waiters) or self.closing:
            return False
        cluster = self.cluster
        if cluster.cx_active >= cluster.config.thresholds.max_connections:
            cluster.stats.counters["upstream_cx_overflow"] += 1
            return False
        cluster.cx_active += 1
        self.host.cx_active += 1
        self.connecting += 1
        cluster.stats.counters["upstream_cx_total"] += 1
        self.host.cx_total += 1
        task = asyncio.get_running_loop().create_task(self._open())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        host, cluster = self.host, self.cluster
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), host.host, host.port),
                cluster.config.connect_timeout,
            )
        except (OSError, TimeoutError, asyncio.CancelledError) as exc:
            self._connect_failed(exc)
            return
        self.connecting -= 1
        self._assign(conn)

    def _connect_failed(self, exc: BaseException) -> None:
        self.connecting -= 1
        self.cluster.cx_active -= 1
        self.host.cx_active -= 1
        counters = self.cluster.stats.counters
        counters["upstream_cx_connect_fail"] += 1
        if isinstance(exc, TimeoutError):
            counters["upstream_cx_connect_timeout"] += 1
        self.host.cx_connect_fail += 1
        stream = self._pop_waiter()
        if stream is not None:
            stream.on_pool_failure(CONNECT_FAILURE, _connect_detail(exc))
        self.maybe_connect()

    def _pop_waiter(self) -> UpstreamStream | None:
        if not self.waiters:
            return None
        self.cluster.rq_pending -= 1
        return self.waiters.popleft()

    def _assign(self, conn: UpstreamConnection) -> None:
        """A connection became free: the oldest waiter gets it, else it idles."""
        if conn.closed:
            return
        stream = self._pop_waiter()
        if stream is not None:
            stream.on_pool_ready(conn)
        elif self.closing:
            conn.close()
        else:
            conn.idle_since = time.monotonic()  # the loop's clock; no getpid() per request
            self.idle.append(conn)

    def release(self, conn: UpstreamConnection) -> None:
        """The connection finished a request and may carry another."""
        limit = self.cluster.config.max_requests_per_connection
        if limit and conn.requests >= limit:
            conn.close()
            return
        self._assign(conn)

    def on_closed(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        self.cluster.cx_active -= 1
        self.host.cx_active -= 1
        self.cluster.stats.counters["upstream_cx_destroy"] += 1
        if not self.maybe_connect():
            self.cluster.on_connection_freed()

    def close_idle(self, older_than: float | None = None) -> int:
        """Close idle connections (all, or those idle since before ``older_than``)."""
        keep: list[UpstreamConnection] = []
        drop: list[UpstreamConnection] = []
        for conn in self.idle:
            (drop if older_than is None or conn.idle_since < older_than else keep).append(conn)
        self.idle = keep
        for conn in drop:
            conn.close()
        return len(drop)

    def close(self) -> None:
        """Stop pooling: idle connections close now, busy ones when their request ends."""
        self.closing = True
        self.close_idle()
        for task in list(self._tasks):
            task.cancel()
