"""One upstream try: a host, a pooled connection, a per-try timer, and its accounting.

The router decides *whether* to try (and again); an ``Attempt`` is the try itself. It
counts itself into the cluster's and host's active requests (the ``max_requests``
breaker and least-request balancing read those), waits in the host pool, forwards the
connection's events to its owner, and undoes its accounting exactly once however it ends
(response, reset, timeout, retry, client gone). Callbacks that arrive after the owner
moved on to another attempt are recognised by identity and ignored there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from proxy.upstream.http1 import UpstreamConnection

if TYPE_CHECKING:
    from proxy.timers import Timer, TimerWheel
    from proxy.upstream.cluster_manager import Cluster
    from proxy.upstream.host import Host
    from proxy.upstream.http2 import Http2UpstreamStream

    Exchange = UpstreamConnection | Http2UpstreamStream


class AttemptOwner(Protocol):
    """What an attempt reports to (the router)."""

    def _on_ready(self, attempt: Attempt, conn: Exchange) -> None: ...
    def _on_failure(self, attempt: Attempt, reason: str, detail: str) -> None: ...
    def _on_headers(
        self, attempt: Attempt, status: int, headers: list[tuple[str, str]]
    ) -> None: ...
    def _on_data(self, data: bytes) -> None: ...
    def _on_trailers(self, trailers: list[tuple[str, str]]) -> None: ...
    def _on_end(self, attempt: Attempt) -> None: ...
    def _on_flush(self) -> None: ...
    def _on_upgrade_refused(self, attempt: Attempt, detail: str) -> None: ...
    def _set_upstream_blocked(self, blocked: bool) -> None: ...


class Attempt:
    __slots__ = ("cluster", "conn", "discarded", "ended", "host", "owner", "per_try", "start")

    def __init__(self, owner: AttemptOwner, cluster: Cluster, host: Host) -> None:
        self.owner = owner
        self.cluster = cluster
        self.host = host
        self.conn: Exchange | None = None
        self.discarded = False
        self.ended = False
        self.per_try: Timer | None = None
        self.start = 0.0
        cluster.resources.requests.inc()
        host.rq_active += 1
        host.rq_total += 1
        cluster.stats.counters["upstream_rq_total"] += 1

    def acquire(self) -> bool:
        """Ask the host pool for a connection; ``False`` is a pending-request overflow."""
        return self.host.pool.acquire(self)

    def begin(
        self,
        conn: Exchange,
        head: bytes | list[tuple[str, str]],
        body: bytes,
        is_head: bool,
        complete: bool,
        now: float,
        upgrade: str = "",
    ) -> None:
        """Send the request on ``conn``: an HTTP/1.1 head is bytes, an HTTP/2 one a list
        (an upgrade's is an extended CONNECT)."""
        self.conn = conn
        self.start = now
        if isinstance(head, bytes):
            assert isinstance(conn, UpstreamConnection)
            conn.begin(self, head, body, is_head, complete, bool(upgrade))
        else:
            assert not isinstance(conn, UpstreamConnection)
            conn.begin(self, head, body, is_head, complete, bool(upgrade))

    def arm_per_try(
        self, timers: TimerWheel, timeout: float, callback: Callable[[Attempt], None]
    ) -> None:
        if self.per_try is None and not self.ended:
            self.per_try = timers.call_later(timeout, callback, self)

    def end(self) -> None:
        """Undo this attempt's accounting (idempotent)."""
        if self.ended:
            return
        self.ended = True
        self.cluster.resources.requests.dec()
        self.host.rq_active -= 1
        if self.per_try is not None:
            self.per_try.cancel()
            self.per_try = None

    def abandon(self, drain: bool) -> None:
        """Give up on this try; a drained response may still return its connection."""
        self.discarded = True
        if self.conn is None:
            self.host.pool.cancel(self)
        elif not drain:
            self.conn.abort()
        self.end()

    # -- pool and connection callbacks (UpstreamStream) ----------------------------------
    def on_pool_ready(self, conn: Exchange) -> None:
        if self.discarded:
            conn.release_unused()
        else:
            self.owner._on_ready(self, conn)

    def on_pool_failure(self, reason: str, detail: str) -> None:
        self.owner._on_failure(self, reason, detail)

    def on_upstream_headers(
        self, status: int, headers: list[tuple[str, str]], keep_alive: bool
    ) -> None:
        self.owner._on_headers(self, status, headers)

    def on_upstream_data(self, data: bytes) -> None:
        # A response given up on for a retry may still be read to its end (drained, so
        # an HTTP/2 stream or a keep-alive connection is reused): none of it goes on.
        if not self.discarded:
            self.owner._on_data(data)

    def on_upstream_trailers(self, trailers: list[tuple[str, str]]) -> None:
        if not self.discarded:
            self.owner._on_trailers(trailers)

    def on_upstream_end(self) -> None:
        self.owner._on_end(self)

    def on_upstream_reset(self, reason: str) -> None:
        self.owner._on_failure(self, reason, "")

    def on_upstream_writable(self, writable: bool) -> None:
        self.owner._set_upstream_blocked(not writable)

    def on_upstream_flush(self) -> None:
        self.owner._on_flush()

    def on_upstream_upgrade_refused(self, detail: str) -> None:
        self.owner._on_upgrade_refused(self, detail)
