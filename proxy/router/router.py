"""The router filter: one downstream request → route → upstream attempts → one response.

``Router`` is a callback-driven state machine (no task per request). It resolves the
route and cluster once, builds the upstream request head once, then runs attempts:
choose a host, get a pooled connection, stream the body, and on each outcome (response
headers, reset, connect failure, per-try timeout) ask the ``RetryState`` whether to try
again after a jittered back-off. The route timeout starts when the downstream request is
complete and covers every attempt, as in Envoy. Request bodies are kept for replay up
to the buffer limit (``RequestBody``); past that, retries are off and the body streams.

With hedging on per-try timeout (a route's ``hedge_policy``, or an internal request's
``x-envoy-hedge-on-per-try-timeout``), an attempt whose per-try timeout fires is kept
running beside its retry (``_hedged``); the first response not to be retried wins and
the other attempts are reset, as Envoy's router races them.

Responses to failed requests are Envoy's local replies, with its response flags:
404 ``NR``, 503 ``NC`` / ``UH`` / ``UO`` / ``UF`` / ``UC``, 504 ``UT``.

Upgrades (WebSocket) are requests too, as in Envoy: allowed by the HCM's and the route's
``upgrade_configs`` (else 403), routed like any request, never retried, under the stream
idle timeout but not the route timeout (the request never ends). A ``101`` from the
upstream turns the stream into a tunnel: bytes flow both ways with the same backpressure,
each direction's end is passed on as a half-close, and the stream ends when both did.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from proxy import stream_info as flags
from proxy.config.retry import (
    CONNECT_FAILURE,
    CONNECTION_TERMINATION,
    PER_TRY_TIMEOUT,
    PROTOCOL_ERROR,
    RetryPolicy,
)
from proxy.config.routing import (
    HeaderMutation,
    RequestView,
    Route,
    RouteAction,
    redirect_location,
)
from proxy.router.attempt import Attempt
from proxy.router.grpc_timeout import deadlines, format_grpc_timeout
from proxy.router.headers import (
    apply_response_mutation,
    build_h2_request_headers,
    build_request_head,
    mutate_request_headers,
    normalize_path,
    response_headers,
    websocket_accept,
    websocket_key,
)
from proxy.router.http_types import CHUNKED, NO_BODY, Downstream, HttpRequest
from proxy.router.request_accounting import request_finished
from proxy.router.request_body import RequestBody
from proxy.router.retry_state import RetryState, hedge_on_per_try_timeout, request_retry_policy

if TYPE_CHECKING:
    from proxy.config.compile import HttpConnectionManagerConfig
    from proxy.context import ProxyContext
    from proxy.observe.stats import StatsScope
    from proxy.stream_info import StreamInfo
    from proxy.timers import Timer
    from proxy.upstream.cluster_manager import Cluster
    from proxy.upstream.host import Host
    from proxy.upstream.http1 import UpstreamConnection
    from proxy.upstream.http2 import Http2UpstreamStream

# Envoy's Grpc::Utility::httpToGrpcStatus, for local replies to gRPC requests.
_HTTP_TO_GRPC = {400: "13", 401: "16", 403: "7", 404: "12", 429: "14", 502: "14", 503: "14",
                 504: "14"}  # fmt: skip
_CODE_CLASS = tuple(f"upstream_rq_{n}xx" for n in range(6))
_RESET_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: "


def _milliseconds(value: str | None) -> float | None:
    """Seconds from an ``x-envoy-*-timeout-ms`` value; ``None`` if absent or not a number
    (Envoy ignores a header it cannot read)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value) / 1000


def _is_grpc(request: HttpRequest) -> bool:
    return request.headers.get("content-type", "").startswith("application/grpc")


class Router:
    """Routes and proxies one HTTP request; created by the codec at end of headers."""

    __slots__ = (
        "_active_at", "_backoff", "_body", "_down_eof", "_down_writable", "_duration", "_global",
        "_head", "_hedge", "_hedged",
        "_holding_retry", "_idle", "_internal", "_per_try", "_reading", "_silent_retries",
        "_timeout", "_tried", "_tunnel",
        "_up_eof", "_upgrade_counted",
        "_upstream_blocked", "_ws_key", "attempt", "cluster", "ctx", "done", "downstream", "hcm",
        "http_stats", "info", "request", "request_complete", "response_started", "retry",
        "route",
    )  # fmt: skip

    def __init__(
        self,
        ctx: ProxyContext,
        downstream: Downstream,
        hcm: HttpConnectionManagerConfig,
        request: HttpRequest,
        info: StreamInfo,
        http_stats: StatsScope,
    ) -> None:
        self.ctx, self.downstream, self.hcm = ctx, downstream, hcm
        self.request, self.info, self.http_stats = request, info, http_stats
        self.route: Route | None = None
        self.cluster: Cluster | None = None
        self.retry: RetryState | None = None
        self.attempt: Attempt | None = None
        self.done = self.response_started = self.request_complete = False
        self._head: bytes | list[tuple[str, str]] = b""
        self._body = RequestBody(request.framing == CHUNKED)
        self._silent_retries = 0
        self._global: Timer | None = None
        self._duration: Timer | None = None
        self._timeout: float | None = None
        self._per_try: float | None = None
        self._internal = False
        self._backoff: Timer | None = None
        self._idle: Timer | None = None
        self._active_at = info.start
        self._holding_retry = self._upstream_blocked = False
        self._reading = True
        self._down_writable = True  # the client's connection takes more response bytes
        self._tried: set[Host] = set()
        # Hedging on per-try timeout (Envoy's ``hedge_on_per_try_timeout``): attempts whose
        # per-try timeout fired and that were kept running beside their retry. The first
        # usable response of any of them and the current attempt wins; the others go.
        self._hedge = False
        self._hedged: list[Attempt] = []
        self._tunnel = self._down_eof = self._up_eof = self._upgrade_counted = False
        self._ws_key = ""  # the Sec-WebSocket-Key this proxy made up for an RFC 8441 client

    # -- downstream events -------------------------------------------------------------------
    def start(self) -> None:
        """Route the request (headers are complete) and start the first attempt.

        A request without a body (HTTP/2 END_STREAM on HEADERS; HTTP/1.1 with neither
        content-length nor chunked) is complete here, before the attempt starts, so an
        HTTP/2 upstream gets one HEADERS frame with END_STREAM, not HEADERS and then an
        empty DATA frame to end it (which an upstream may answer before it reads, and then
        reset the stream over). The codec's ``on_request_end`` that follows is a no-op."""
        request, hcm = self.request, self.hcm
        headers = request.headers
        if hcm.normalize_path or hcm.merge_slashes:
            request.path = normalize_path(request.path, hcm.normalize_path, hcm.merge_slashes)
            headers[":path"] = request.path
        if request.path in hcm.health_check_paths:
            # Envoy's health_check filter (not pass-through): the proxy answers for itself.
            return self.local_reply(200, b"", None, "health_check")
        self._internal = mutate_request_headers(headers, hcm, self.downstream.remote_address)
        table = self.ctx.config.route_table(hcm)
        view = RequestView(request.path, headers)
        route = None if table is None else table.route(headers.get(":authority", ""), view)
        if request.upgrade and not self._accept_upgrade(route):
            return self.local_reply(403, b"", None, "upgrade_failed")
        if route is None:
            self.http_stats.counters["no_route"] += 1
            return self.local_reply(404, b"", flags.NO_ROUTE_FOUND, "route_not_found")
        self.route = route
        self.info.route_name = route.name
        self.info.target_virtual_service = route.target_virtual_service
        if route.direct_response is not None:
            self.http_stats.counters["rq_direct_response"] += 1
            status, body = route.direct_response
            return self.local_reply(status, body, None, "direct_response", route.response_headers)
        if route.redirect is not None:
            return self._redirect(route)
        action = route.action
        assert action is not None
        name = action.pick_cluster(headers)
        cluster = self.ctx.clusters.get(name) if name else None
        if cluster is None:
            self.http_stats.counters["no_cluster"] += 1
            self.info.upstream_cluster = name or ""
            body, status = b"", action.not_found_status
            return self.local_reply(status, body, flags.NO_CLUSTER_FOUND, "cluster_not_found")
        self.cluster = cluster
        self.info.upstream_cluster = cluster.name
        self.info.target_virtual_node = cluster.config.target_virtual_node
        if request.upgrade and cluster.config.http2 and not cluster.config.allow_connect:
            body = b"the HTTP/2 cluster does not allow_connect: no upgrade can cross it"
            return self.local_reply(503, body, None, "upgrade_failed")
        self._hedge = action.hedge_on_per_try_timeout
        policy = self._retry_policy(action.retry_policy)
        expected = self._arm_deadlines(action, policy.per_try_timeout if policy else None)
        if self.ctx.tracer is not None:
            self.ctx.tracer.begin(self.info, headers)  # continues X-Amzn-Trace-Id upstream
        if request.upgrade:
            self._prepare_upgrade(cluster.config.http2)
        if cluster.config.http2:
            scheme = "https" if cluster.config.tls is not None else "http"
            self._head = build_h2_request_headers(request, route, expected, scheme)
            self._body.chunked = False  # HTTP/2 frames the body itself
        else:
            self._head = build_request_head(request, route, expected)
        idle = action.idle_timeout or hcm.stream_idle_timeout
        if idle and (
            request.upgrade
            or request.framing != NO_BODY
            or not self._timeout
            or self._timeout > idle
        ):
            # Without a body the route timeout starts now and would always fire first.
            self._arm_idle(idle)
        if request.framing == NO_BODY and not request.upgrade:
            self._request_ended()  # before the attempt, which then sends END_STREAM at once
        self._start_attempt()

    def on_request_data(self, data: bytes) -> None:
        self.info.bytes_received += len(data)
        if self.done:
            return
        self._active_at = self.ctx.loop.time()
        if self._tunnel:
            attempt = self.attempt
            if attempt is not None and attempt.conn is not None:
                attempt.conn.write(data)
            return
        self._body.add(data)
        attempt = self.attempt
        if attempt is not None and attempt.conn is not None and not attempt.discarded:
            attempt.conn.write(self._body.take())
        self._update_reading()

    def on_request_end(self) -> None:
        if self.request_complete:
            return  # HTTP/2 reports END_STREAM on a HEADERS frame twice (event and flag)
        self._request_ended()
        if self.done:
            return
        if self.request.upgrade:
            return self._downstream_half_closed()
        attempt = self.attempt
        if attempt is not None and attempt.conn is not None and not attempt.discarded:
            attempt.conn.write(self._body.take() + self._body.end_marker(), complete=True)
            self._arm_per_try(attempt)

    def _request_ended(self) -> None:
        """The whole request is in: the route timeout starts now (Envoy's ``timeout``);
        a tunnel has none."""
        self.request_complete = True
        self.info.last_downstream_rx = self.ctx.loop.time()
        if self._timeout and not self.done and not self.request.upgrade:
            self._global = self.ctx.timers.call_later(self._timeout, self._on_global_timeout)

    def on_downstream_reset(self) -> None:
        """The client went away before the response finished."""
        if self.done:
            return
        self.info.add_flag(flags.DOWNSTREAM_CONNECTION_TERMINATION)
        self.http_stats.counters["downstream_rq_rx_reset"] += 1
        if self.cluster is not None and self.attempt is not None and not self.attempt.ended:
            self.cluster.stats.counters["upstream_rq_cancelled"] += 1
        self._finish()

    def on_downstream_writable(self, writable: bool) -> None:
        """Response backpressure: a client that does not read pauses the upstream's reads,
        so a stream holds at most the two sockets' write buffers, never the whole body."""
        if writable == self._down_writable:
            return
        self._down_writable = writable
        if self.cluster is not None:
            paused = "paused" if not writable else "resumed"
            self.cluster.stats.counters[f"upstream_flow_control_{paused}_reading_total"] += 1
        for attempt in (self.attempt, *self._hedged):
            if attempt is not None and attempt.conn is not None:
                attempt.conn.set_reading(writable)

    # -- request preparation -----------------------------------------------------------------
    def _update_reading(self) -> None:
        wanted = not self._upstream_blocked and self._body.pending <= self._body.limit
        if wanted != self._reading:
            self._reading = wanted
            self.downstream.set_reading(wanted)

    def _set_upstream_blocked(self, blocked: bool) -> None:
        if blocked != self._upstream_blocked and self.cluster is not None:
            state = "backed_up" if blocked else "drained"
            self.cluster.stats.counters[f"upstream_flow_control_{state}_total"] += 1
        self._upstream_blocked = blocked
        self._update_reading()

    # -- attempts ---------------------------------------------------------------------------
    def _start_attempt(self) -> None:
        self._backoff = None
        if self.done:
            return
        cluster = self.cluster
        assert cluster is not None
        policy = self.retry.policy if self.retry is not None else None
        if cluster.original_dst:
            host = cluster.original_dst_host(self.info.original_destination)
        elif policy is not None and policy.avoid_previous_hosts and self._tried:
            host = cluster.choose_host(self._tried, policy.host_selection_attempts)
        else:
            host = cluster.choose_host()
        if host is None:
            cluster.stats.counters["upstream_cx_none_healthy"] += 1
            return self.local_reply(
                503, b"no healthy upstream", flags.NO_HEALTHY_UPSTREAM, "no_healthy_upstream"
            )
        if not cluster.resources.requests.can_create():
            cluster.stats.counters["upstream_rq_pending_overflow"] += 1
            return self._overflow()
        attempt = self.attempt = Attempt(self, cluster, host)
        self._tried.add(host)
        self.info.attempt_count += 1
        self.info.upstream_host = host.key
        if not attempt.acquire():
            self._end_attempt(attempt)
            self._overflow()

    def _overflow(self) -> None:
        self.local_reply(503, _RESET_BODY + b"overflow", flags.UPSTREAM_OVERFLOW, "overflow")

    def _on_ready(self, attempt: Attempt, conn: UpstreamConnection | Http2UpstreamStream) -> None:
        if attempt is not self.attempt or self.done:
            conn.release_unused()
            return
        now = self.ctx.loop.time()
        if self.info.first_upstream_tx is None:
            self.info.first_upstream_tx = now
        self._body.rewind()
        body = self._body.take()
        if self.request_complete:
            body += self._body.end_marker()
        request = self.request
        is_head = request.method == "HEAD"
        attempt.begin(conn, self._head, body, is_head, self.request_complete, now, request.upgrade)
        if not self._down_writable:  # the client was already behind: read only as it reads
            conn.set_reading(False)
        if self.request_complete:
            self._arm_per_try(attempt)
        self._update_reading()

    def _arm_per_try(self, attempt: Attempt) -> None:
        if self._per_try:
            attempt.arm_per_try(self.ctx.timers, self._per_try, self._on_per_try_timeout)

    def _end_attempt(self, attempt: Attempt) -> None:
        attempt.end()
        self._release_retry()

    def _abandon(self, attempt: Attempt, drain: bool) -> None:
        attempt.abandon(drain)
        self._release_retry()

    def _release_retry(self) -> None:
        """The retry this request held against ``max_retries`` is over."""
        if self._holding_retry and self.cluster is not None:
            self._holding_retry = False
            self.cluster.resources.retries.dec()

    def _maybe_retry(self, attempt: Attempt, retriable: bool, drain: bool) -> bool:
        """Give ``attempt`` up for another if policy, budget, body and breaker allow it."""
        if not self._retry_allowed(retriable):
            return False
        self._abandon(attempt, drain)
        self._schedule_retry()
        return True

    def _retry_allowed(self, retriable: bool) -> bool:
        """Whether another attempt may start (policy, budget, body, breaker), counting
        what stopped it when not."""
        retry, cluster = self.retry, self.cluster
        if retry is None or not retriable or cluster is None:
            return False
        counters = cluster.stats.counters
        if retry.exhausted:
            counters["upstream_rq_retry_limit_exceeded"] += 1
            self.info.add_flag(flags.UPSTREAM_RETRY_LIMIT_EXCEEDED)
            return False
        if not self._body.replayable:
            return False
        retries = cluster.resources.retries
        if retries.count - self._holding_retry >= retries.max:  # our own retry is ending
            counters["upstream_rq_retry_overflow"] += 1
            return False
        return True

    def _schedule_retry(self) -> None:
        """The next attempt after the back-off, holding one retry against ``max_retries``
        until it ends (the one held for an attempt before it is over)."""
        retry, cluster = self.retry, self.cluster
        assert retry is not None and cluster is not None
        self._release_retry()
        cluster.resources.retries.inc()
        self._holding_retry = True
        cluster.stats.counters["upstream_rq_retry"] += 1
        self._backoff = self.ctx.timers.call_later(retry.next_backoff(), self._start_attempt)

    # -- hedging (hedge_on_per_try_timeout) -------------------------------------------------
    def _live(self, attempt: Attempt) -> bool:
        """``attempt`` is the current one or a hedged one, and still wanted."""
        if attempt.discarded or self.done:
            return False
        return attempt is self.attempt or attempt in self._hedged

    def _others_pending(self, attempt: Attempt) -> bool:
        """Another attempt may still answer: one in flight, or a retry in its back-off."""
        if self._backoff is not None or any(a is not attempt for a in self._hedged):
            return True
        current = self.attempt
        return current is not None and current is not attempt and not current.ended

    def _hedge_after(self, attempt: Attempt) -> None:
        """Envoy's soft per-try timeout: ``attempt`` keeps running, is counted a timeout
        for outlier detection (not in ``upstream_rq_per_try_timeout``, which Envoy counts
        only for the attempts it resets), and a retry starts beside it whenever the policy
        has one left, whatever its ``retry_on``; with none left, the request waits for it
        until the route timeout."""
        cluster = self.cluster
        assert cluster is not None
        if cluster.outlier is not None:
            cluster.outlier.report(attempt.host, 504)
        if not self._retry_allowed(True):
            return
        self._hedged.append(attempt)
        self.attempt = None  # the retry, once its back-off is over
        self._schedule_retry()

    def _win(self, attempt: Attempt) -> None:
        """``attempt``'s response goes downstream: every other attempt is reset and a
        retry not started yet is not started, as Envoy's ``resetOtherUpstreams``."""
        if attempt in self._hedged:
            self._hedged.remove(attempt)
        self._drop_hedged()
        current = self.attempt
        if current is not None and current is not attempt and not current.ended:
            self._abandon(current, drain=False)
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
            self._release_retry()
        self.attempt = attempt
        self.info.upstream_host = attempt.host.key
        if not self._down_writable and attempt.conn is not None:
            attempt.conn.set_reading(False)

    def _drop_hedged(self) -> None:
        """Reset every hedged attempt still kept (the request is over, or another won)."""
        for attempt in self._hedged:
            attempt.abandon(drain=False)
        self._hedged = []

    # -- upstream events ---------------------------------------------------------------------
    def _on_headers(self, attempt: Attempt, status: int, headers: list[tuple[str, str]]) -> None:
        if not self._live(attempt):
            return
        cluster, host = self.cluster, attempt.host
        assert cluster is not None
        now = self.ctx.loop.time()
        counters = cluster.stats.counters
        cluster.stats.inc(_CODE_CLASS[status // 100] if status < 600 else "upstream_rq_5xx")
        cluster.stats.inc(f"upstream_rq_{status}")
        if status >= 500:
            host.rq_error += 1
        else:
            host.rq_success += 1
        if cluster.outlier is not None:
            cluster.outlier.report(host, status)
        if attempt.per_try is not None:
            attempt.per_try.cancel()
            attempt.per_try = None
        retry = self.retry
        if retry is not None:
            hedged = attempt in self._hedged  # retried already: never retried again
            if retry.policy.retriable_response(status, dict(headers)):
                if not hedged and self._maybe_retry(attempt, True, drain=True):
                    return
                if self._others_pending(attempt):
                    # A bad answer while another attempt may still bring a good one: this
                    # one goes, and the others are waited for (Envoy's could_not_retry).
                    if hedged:
                        self._hedged.remove(attempt)
                        attempt.abandon(drain=False)
                    else:
                        self._abandon(attempt, drain=False)
                    return
            elif retry.retries_done and not hedged:
                counters["upstream_rq_retry_success"] += 1
        if self._hedged or self._backoff is not None:
            self._win(attempt)
        self.info.first_upstream_rx = self._active_at = now
        if status == 101 and self.request.upgrade:
            return self._start_tunnel(attempt, headers, int((now - attempt.start) * 1000))
        if 200 <= status < 300 and self.request.upgrade and self.request.version == "2":
            # An RFC 8441 client reads any 2xx as "tunnel open": say what happened instead
            # (UNCONFIRMED: Envoy relays it as is).
            body = f"the upstream answered the upgrade with {status}, not 101".encode()
            return self.local_reply(502, body, None, "upgrade_failed")
        self._send_response_headers(status, headers, int((now - attempt.start) * 1000))

    def _on_flush(self) -> None:
        self.downstream.flush()

    def _on_data(self, data: bytes) -> None:
        if self.done:
            return
        self._active_at = self.ctx.loop.time()
        self.info.bytes_sent += len(data)
        self.downstream.send_data(data)

    def _on_trailers(self, trailers: list[tuple[str, str]]) -> None:
        """Response trailers (gRPC's ``grpc-status``): passed on before the end."""
        if self.done:
            return
        for name, value in trailers:
            if name == "grpc-status":
                self.info.grpc_status = value
        self.downstream.send_trailers(trailers)

    def _on_end(self, attempt: Attempt) -> None:
        if attempt is not self.attempt or self.done:
            return
        if self._tunnel:
            return self._upstream_half_closed()
        self._end_attempt(attempt)
        assert self.cluster is not None
        self.cluster.stats.counters["upstream_rq_completed"] += 1
        self.downstream.end_response()
        self._finish()

    def _on_failure(self, attempt: Attempt, reason: str, detail: str) -> None:
        """Connect failure, or the connection reset before the response completed."""
        if not self._live(attempt):
            return
        cluster = self.cluster
        assert cluster is not None
        conn = attempt.conn
        hedged = attempt in self._hedged
        if hedged:
            self._hedged.remove(attempt)
            attempt.end()
        else:
            self._end_attempt(attempt)
        if self.response_started:
            cluster.stats.counters["upstream_rq_rx_reset"] += 1
            self.info.add_flag(flags.UPSTREAM_CONNECTION_TERMINATION)
            return self._abort_downstream()
        stale = conn is not None and conn.reused and conn.received_bytes == 0
        if (
            reason == CONNECTION_TERMINATION
            and not hedged
            and stale
            and self._body.replayable
            and self._silent_retries < 3
        ):
            # A pooled connection the upstream had already closed: not a real attempt.
            self._silent_retries += 1
            attempt.discarded = True
            return self._start_attempt()
        attempt.host.rq_error += 1
        if cluster.outlier is not None:
            cluster.outlier.report(attempt.host, 503)
        if reason == CONNECT_FAILURE:
            self.info.upstream_transport_failure_reason = detail
        retry = self.retry
        retriable = not hedged and retry is not None and retry.policy.retriable_reset(reason)
        if self._maybe_retry(attempt, retriable, drain=False):
            return
        if self._others_pending(attempt):
            return  # a hedged attempt, or the retry beside it, may still answer
        body = _RESET_BODY + reason.encode()
        if detail:
            body += b", transport failure reason: " + detail.encode()
        if reason == PROTOCOL_ERROR:  # Envoy: 502 UPE, counted on the cluster
            cluster.stats.counters["upstream_cx_protocol_error"] += 1
            flag, status = flags.UPSTREAM_PROTOCOL_ERROR, 502
        else:
            flag, status = flags.UPSTREAM_CONNECTION_TERMINATION, 503
            if reason == CONNECT_FAILURE:
                flag = flags.UPSTREAM_CONNECTION_FAILURE
        self.local_reply(status, body, flag, "upstream_reset_before_response_started")

    def _on_per_try_timeout(self, attempt: Attempt) -> None:
        attempt.per_try = None
        if attempt is not self.attempt or attempt.discarded or self.done:
            return
        if self.response_started:
            return
        if self._hedge:
            return self._hedge_after(attempt)
        cluster = self.cluster
        assert cluster is not None
        cluster.stats.counters["upstream_rq_per_try_timeout"] += 1
        if cluster.outlier is not None:
            cluster.outlier.report(attempt.host, 504)
        retry = self.retry
        retriable = retry is not None and retry.policy.retriable_reset(PER_TRY_TIMEOUT)
        if self._maybe_retry(attempt, retriable, drain=False):
            return
        self._abandon(attempt, drain=False)
        self._timeout_reply()

    def _on_global_timeout(self) -> None:
        self._global = None
        if self.done:
            return
        cluster = self.cluster
        assert cluster is not None
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        attempt = self.attempt
        in_flight = attempt is not None and not attempt.ended
        # One per request, or, with hedged attempts, one per attempt still in flight, as
        # Envoy counts; the hedged ones' timeouts already went to outlier detection.
        hedged = len(self._hedged)
        cluster.stats.counters["upstream_rq_timeout"] += hedged + in_flight if hedged else 1
        if attempt is not None and in_flight:
            if cluster.outlier is not None:
                cluster.outlier.report(attempt.host, 504)
            self._abandon(attempt, drain=False)
        self._drop_hedged()
        self._timeout_reply()

    def _retry_policy(self, policy: RetryPolicy | None) -> RetryPolicy | None:
        """The route's retry policy as this request has it (an internal request's
        ``x-envoy-retry-*`` headers merged in); retries start only when it names a
        condition and the request matches its ``retriable_request_headers``, if any."""
        request = self.request
        if self._internal:
            policy = request_retry_policy(policy, request.headers)
            self._hedge = hedge_on_per_try_timeout(self._hedge, request.headers)
        retries = policy is not None and policy.retry_on and policy.allows(request.headers)
        if policy is not None and retries and not request.upgrade:
            self.retry = RetryState(policy)
        return policy

    def _arm_deadlines(self, action: RouteAction, per_try: float | None) -> float | None:
        """Pick the route timeout or the client's ``grpc-timeout`` (as the route says),
        start the stream-duration timer if any; returns the expected upstream timeout."""
        request = self.request
        timers = deadlines(
            action.timeout,
            action.max_grpc_timeout,
            action.grpc_timeout_offset,
            action.max_stream_duration,
            request.headers,
            _is_grpc(request),
        )
        self._timeout = timers.route_timeout
        if self._internal:
            per_try = self._header_timeouts(per_try)
        if per_try and self._timeout and per_try >= self._timeout:
            per_try = None  # Envoy: a per-try timeout not shorter than the whole is ignored
        self._per_try = per_try
        expected = per_try or self._timeout
        if timers.upstream_grpc_timeout and expected:
            request.headers["grpc-timeout"] = format_grpc_timeout(expected)
        if timers.stream_duration is not None:
            left = timers.stream_duration - (self.ctx.loop.time() - self.info.start)
            self._duration = self.ctx.timers.call_later(max(left, 0.0), self._on_max_duration)
        return expected

    def _header_timeouts(self, per_try: float | None) -> float | None:
        """An internal request's ``x-envoy-upstream-rq-timeout-ms`` replaces the route
        timeout and the one read from ``grpc-timeout`` (0: none), and
        ``x-envoy-upstream-rq-per-try-timeout-ms`` the retry policy's per-try timeout,
        as Envoy's router reads them; both are consumed, not forwarded. With the router's
        ``respect_expected_rq_timeout``, an ``x-envoy-expected-rq-timeout-ms`` (the
        calling proxy's budget) is the timeout instead, and then, as in Envoy, the
        ``x-envoy-upstream-rq-timeout-ms`` beside it is neither read nor consumed."""
        headers = self.request.headers
        if self.hcm.respect_expected_rq_timeout and "x-envoy-expected-rq-timeout-ms" in headers:
            total = _milliseconds(headers["x-envoy-expected-rq-timeout-ms"])
        else:
            total = _milliseconds(headers.pop("x-envoy-upstream-rq-timeout-ms", None))
        if total is not None:
            self._timeout = total or None
        each = _milliseconds(headers.pop("x-envoy-upstream-rq-per-try-timeout-ms", None))
        return per_try if each is None else each or None

    def _on_max_duration(self) -> None:
        """The connection manager's stream timer: gRPC hears DEADLINE_EXCEEDED."""
        self._duration = None
        if self.done:
            return
        self.http_stats.inc("downstream_rq_max_duration_reached")
        status = 504 if self.request_complete else 408
        self.local_reply(
            status, b"downstream duration timeout", None, "max_duration_timeout", grpc_status="4"
        )

    def _arm_idle(self, timeout: float | None, delay: float | None = None) -> None:
        """Stream idle timeout (route ``idle_timeout`` or HCM ``stream_idle_timeout``).

        One coarse timer per request; activity only stamps a time, and the timer re-arms
        itself for the remainder when it finds the stream was active meanwhile.
        """
        if timeout:
            self._idle = self.ctx.timers.call_later(delay or timeout, self._on_idle, timeout)

    def _on_idle(self, timeout: float) -> None:
        self._idle = None
        if self.done:
            return
        idle_for = self.ctx.loop.time() - self._active_at
        if idle_for < timeout:
            self._arm_idle(timeout, timeout - idle_for)
            return
        self.http_stats.inc("downstream_rq_idle_timeout")
        self.info.add_flag(flags.STREAM_IDLE_TIMEOUT)
        if self.response_started:
            return self._abort_downstream()
        self.local_reply(408, b"stream timeout", None, "stream_idle_timeout")

    def _timeout_reply(self) -> None:
        self.info.add_flag(flags.UPSTREAM_REQUEST_TIMEOUT)
        if self.response_started:
            return self._abort_downstream()
        self.local_reply(504, b"upstream request timeout", None, "upstream_response_timeout")

    # -- responses ---------------------------------------------------------------------------
    def _send_response_headers(
        self, status: int, upstream: list[tuple[str, str]], service_time: int
    ) -> None:
        out, content_length = response_headers(upstream, self.hcm, service_time)
        self._finish_response_headers(out)
        self.response_started = True
        self.info.response_code = status
        self.info.response_headers = out
        self.downstream.send_headers(status, out, content_length)

    def _finish_response_headers(
        self, out: list[tuple[str, str]], mutation: HeaderMutation | None = None
    ) -> None:
        """Route response-header mutations, then ``x-request-id`` if the HCM asks for it."""
        if mutation is None and self.route is not None:
            mutation = self.route.response_headers
        if mutation:
            apply_response_mutation(out, mutation)
        if self.hcm.always_set_request_id_in_response:
            request_id = self.request.headers.get("x-request-id")
            if request_id:
                out.append(("x-request-id", request_id))

    def local_reply(
        self,
        status: int,
        body: bytes,
        flag: str | None,
        details: str,
        mutation: HeaderMutation | None = None,
        grpc_status: str | None = None,
    ) -> None:
        """Envoy's locally generated response, with its response flag and details."""
        if self.done:
            return
        if flag:
            self.info.add_flag(flag)
        self.info.response_code_details = details
        if self.response_started:
            return self._abort_downstream()
        attempt = self.attempt
        if attempt is not None and not attempt.ended:
            self._abandon(attempt, drain=False)
        self._drop_hedged()
        headers: list[tuple[str, str]] = []
        if _is_grpc(self.request) and status >= 300:
            return self._grpc_local_reply(status, body, grpc_status)
        if body:
            headers.append(("content-type", "text/plain"))
        headers.append(("date", self.ctx.dates.get()))
        headers.append(("server", self.hcm.server_name))
        self._finish_response_headers(headers, mutation or HeaderMutation())
        self.response_started = True
        self.info.response_code = status
        self.info.response_headers = headers
        if self.request.method != "HEAD":
            self.info.bytes_sent += len(body)
        self.downstream.send_local(status, headers, body)
        self._finish()

    def _grpc_local_reply(self, status: int, body: bytes, grpc_status: str | None) -> None:
        """Envoy answers a gRPC request it cannot route or proxy with a trailers-only gRPC
        response (HTTP 200, ``grpc-status`` mapped from the HTTP status), so gRPC
        clients see UNAVAILABLE or UNIMPLEMENTED rather than a protocol error."""
        grpc_status = grpc_status or _HTTP_TO_GRPC.get(status, "2")
        headers = [
            ("content-type", "application/grpc"),
            ("grpc-status", grpc_status),
            ("grpc-message", body.decode("latin-1") if body else HTTPStatus(status).phrase),
            ("date", self.ctx.dates.get()),
            ("server", self.hcm.server_name),
        ]
        self.response_started = True
        self.info.response_code = 200
        self.info.grpc_status = grpc_status
        self.info.response_headers = headers
        self.downstream.send_local(200, headers, b"")
        self._finish()

    def _redirect(self, route: Route) -> None:
        self.http_stats.counters["rq_redirect"] += 1
        headers = self.request.headers
        status, location = redirect_location(
            route.redirect or {},
            headers.get(":scheme", "http"),
            headers.get(":authority", ""),
            self.request.path,
        )
        mutation = HeaderMutation((("location", location, False),), ())
        self.local_reply(status, b"", None, "redirect", mutation)

    # -- upgrades (WebSocket) -----------------------------------------------------------------
    def _accept_upgrade(self, route: Route | None) -> bool:
        """Envoy's rule: the HCM must list the upgrade type; the route's ``upgrade_configs``
        may turn it on or off, else the HCM's ``enabled`` decides. Accepted upgrades count
        in ``downstream_cx_upgrades_total`` and, while they last, ``_active``."""
        kind = self.request.upgrade
        enabled = self.hcm.upgrades.get(kind)
        if enabled is None:
            return False
        action = route.action if route is not None else None
        if action is not None and kind in action.upgrades:
            enabled = action.upgrades[kind]
        if enabled:
            stats = self.http_stats
            stats.counters["downstream_cx_upgrades_total"] += 1
            stats.gauges["downstream_cx_upgrades_active"] = (
                stats.gauges.get("downstream_cx_upgrades_active", 0) + 1
            )
            self._upgrade_counted = True
        return enabled

    def _prepare_upgrade(self, http2_upstream: bool) -> None:
        """The request body of an upgrade is the tunnel's first bytes: never kept for a
        replay. An RFC 8441 request (HTTP/2 has no key) gets a ``Sec-WebSocket-Key`` for
        its HTTP/1.1 upstream, checked against the answer's ``Sec-WebSocket-Accept``; to
        an HTTP/2 upstream it stays an extended CONNECT, which needs none."""
        self._body.retain = False
        request = self.request
        rfc8441 = request.version == "2" and request.upgrade == "websocket"
        if rfc8441 and not http2_upstream and "sec-websocket-key" not in request.headers:
            self._ws_key = request.headers["sec-websocket-key"] = websocket_key()

    def _start_tunnel(
        self, attempt: Attempt, headers: list[tuple[str, str]], service_time: int
    ) -> None:
        """``101 Switching Protocols``: relay it, then carry bytes both ways."""
        if self._ws_key:
            accept = [v for n, v in headers if n == "sec-websocket-accept"]
            if accept != [websocket_accept(self._ws_key)]:
                body = b"the upstream's Sec-WebSocket-Accept does not match the key sent"
                return self.local_reply(502, body, None, "upgrade_failed")
            headers = [(n, v) for n, v in headers if n != "sec-websocket-accept"]
        elif self.request.version != "2" and self.cluster and self.cluster.config.http2:
            headers = self._vouch_for_handshake(headers)
        self._tunnel = True
        self._send_response_headers(101, headers, service_time)
        self.downstream.flush()
        if self._down_eof and attempt.conn is not None:
            attempt.conn.write_eof()

    def _vouch_for_handshake(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """An HTTP/1.1 client's WebSocket accepted by an RFC 8441 (HTTP/2) upstream: the
        upstream's ``200`` has no ``Sec-WebSocket-Accept`` (extended CONNECT has no key),
        which RFC 6455 clients require, so the proxy answers the client's key itself
        (UNCONFIRMED: Envoy relays the ``101`` without one)."""
        key = self.request.headers.get("sec-websocket-key")
        websocket = self.request.upgrade == "websocket"
        if not websocket or not key or any(n == "sec-websocket-accept" for n, _ in headers):
            return headers
        return [*headers, ("sec-websocket-accept", websocket_accept(key))]

    def _on_upgrade_refused(self, attempt: Attempt, detail: str) -> None:
        """The HTTP/2 upstream cannot take an upgrade (no extended CONNECT): a 503 that
        says so, never a pretended tunnel."""
        if attempt is not self.attempt or attempt.discarded or self.done:
            return
        self._end_attempt(attempt)
        self.local_reply(503, detail.encode(), None, "upgrade_failed")

    def _downstream_half_closed(self) -> None:
        """The client ended its direction (HTTP/1.1 FIN, HTTP/2 END_STREAM)."""
        self._down_eof = True
        attempt = self.attempt
        if not self._tunnel or attempt is None or attempt.conn is None:
            return  # passed on once the 101 arrives
        attempt.conn.write_eof()
        if self._up_eof:
            self._close_tunnel(attempt)

    def _upstream_half_closed(self) -> None:
        self._up_eof = True
        self.downstream.end_response()
        attempt = self.attempt
        if self._down_eof and attempt is not None:
            self._close_tunnel(attempt)

    def _close_tunnel(self, attempt: Attempt) -> None:
        """Both directions ended: the upstream connection closes (never pooled again)."""
        conn = attempt.conn
        self._end_attempt(attempt)
        assert self.cluster is not None
        self.cluster.stats.counters["upstream_rq_completed"] += 1
        if conn is not None:
            conn.close()
        self._finish()

    def _abort_downstream(self) -> None:
        self.downstream.abort()
        self._finish()

    def _finish(self) -> None:
        """Close the books: timers, attempt, stats and the access log, exactly once."""
        if self.done:
            return
        self.done = True
        if self._upgrade_counted:
            self.http_stats.gauges["downstream_cx_upgrades_active"] -= 1
        info = self.info
        info.end = self.ctx.loop.time()
        for timer in (self._global, self._backoff, self._idle, self._duration):
            if timer is not None:
                timer.cancel()
        self._global = self._backoff = self._idle = self._duration = None
        attempt = self.attempt
        if attempt is not None and not attempt.ended:
            attempt.abandon(drain=False)
        self._drop_hedged()
        self._release_retry()  # also when the request ended during a back-off
        request_finished(self.ctx, info, self.http_stats, self.hcm.access_logs, self.cluster)
        self._body.clear()
        # Break the Router <-> Attempt cycle so a finished request is freed by reference
        # counting, not the cycle collector (~10% of the proxy's CPU under load).
        self.attempt = None
