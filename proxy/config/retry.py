"""Envoy's route retry policy: when an attempt may be retried, and how long to back off.

The policy is compiled once per route (``retry_on`` becomes a bitmask) and answers
"retry this outcome?" for upstream responses, resets, connect failures and per-try
timeouts, exactly along the lines of Envoy's ``RetryStateImpl`` (the per-request count
and back-off are ``proxy.router.retry_state``): ``5xx`` and ``gateway-error`` include
resets and timeouts, ``connect-failure`` covers only connection establishment, overflow
is never retried.
The overall route timeout spans all attempts and is enforced by the router, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.matchers import HeaderMatcher, compile_header_matcher
from proxy.config.protojson import duration, uint

RETRY_5XX = 1 << 0
RETRY_GATEWAY_ERROR = 1 << 1
RETRY_CONNECT_FAILURE = 1 << 2
RETRY_RETRIABLE_4XX = 1 << 3
RETRY_REFUSED_STREAM = 1 << 4
RETRY_RETRIABLE_STATUS_CODES = 1 << 5
RETRY_RESET = 1 << 6
RETRY_RETRIABLE_HEADERS = 1 << 7
RETRY_ENVOY_RATELIMITED = 1 << 8
RETRY_GRPC_CANCELLED = 1 << 9
RETRY_GRPC_DEADLINE_EXCEEDED = 1 << 10
RETRY_GRPC_RESOURCE_EXHAUSTED = 1 << 11
RETRY_GRPC_UNAVAILABLE = 1 << 12
RETRY_GRPC_INTERNAL = 1 << 13

_RETRY_ON = {
    "5xx": RETRY_5XX,
    "gateway-error": RETRY_GATEWAY_ERROR,
    "connect-failure": RETRY_CONNECT_FAILURE,
    "retriable-4xx": RETRY_RETRIABLE_4XX,
    "refused-stream": RETRY_REFUSED_STREAM,
    "retriable-status-codes": RETRY_RETRIABLE_STATUS_CODES,
    "reset": RETRY_RESET,
    "retriable-headers": RETRY_RETRIABLE_HEADERS,
    "envoy-ratelimited": RETRY_ENVOY_RATELIMITED,
    "cancelled": RETRY_GRPC_CANCELLED,
    "deadline-exceeded": RETRY_GRPC_DEADLINE_EXCEEDED,
    "resource-exhausted": RETRY_GRPC_RESOURCE_EXHAUSTED,
    "unavailable": RETRY_GRPC_UNAVAILABLE,
    "internal": RETRY_GRPC_INTERNAL,
}
# The tokens ``x-envoy-retry-grpc-on`` takes; ``x-envoy-retry-on`` takes the others (Envoy
# parses the two headers apart, a route's ``retry_on`` takes both).
_GRPC_RETRY_ON = frozenset(("cancelled", "deadline-exceeded", "resource-exhausted", "unavailable",
                            "internal"))  # fmt: skip
_GRPC_STATUS = {
    "1": RETRY_GRPC_CANCELLED,
    "4": RETRY_GRPC_DEADLINE_EXCEEDED,
    "8": RETRY_GRPC_RESOURCE_EXHAUSTED,
    "13": RETRY_GRPC_INTERNAL,
    "14": RETRY_GRPC_UNAVAILABLE,
}
_RESET_FAMILY = RETRY_5XX | RETRY_GATEWAY_ERROR | RETRY_RESET

# Why an attempt ended without a usable response.
CONNECT_FAILURE = "connection failure"
CONNECTION_TERMINATION = "connection termination"
PER_TRY_TIMEOUT = "per try timeout"
OVERFLOW = "overflow"
PROTOCOL_ERROR = "protocol error"  # the upstream broke HTTP (or its head was too large)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A compiled ``RetryPolicy``; ``num_retries`` defaults to 1 as in Envoy."""

    retry_on: int
    num_retries: int
    per_try_timeout: float | None
    retriable_status_codes: frozenset[int]
    retriable_headers: tuple[HeaderMatcher, ...]
    base_interval: float
    max_interval: float
    avoid_previous_hosts: bool
    host_selection_attempts: int
    # ``retriable_request_headers``: when set, only a request matching one may be retried.
    retriable_request_headers: tuple[HeaderMatcher, ...] = ()

    def allows(self, request_headers: Mapping[str, str]) -> bool:
        """Whether this request may be retried at all (Envoy zeroes ``retry_on`` for a
        request that matches none of the ``retriable_request_headers``)."""
        matchers = self.retriable_request_headers
        return not matchers or any(m.matches(request_headers) for m in matchers)

    def retriable_response(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether an upstream response with these headers should be retried."""
        on = self.retry_on
        if on & RETRY_5XX and status >= 500:
            return True
        if on & RETRY_GATEWAY_ERROR and status in (502, 503, 504):
            return True
        if on & RETRY_RETRIABLE_4XX and status == 409:
            return True
        if on & RETRY_RETRIABLE_STATUS_CODES and status in self.retriable_status_codes:
            return True
        if on & RETRY_ENVOY_RATELIMITED and "x-envoy-ratelimited" in headers:
            return True
        if on & RETRY_RETRIABLE_HEADERS and any(m.matches(headers) for m in self.retriable_headers):
            return True
        grpc_status = headers.get("grpc-status")
        return grpc_status is not None and bool(on & _GRPC_STATUS.get(grpc_status, 0))

    def retriable_reset(self, reason: str) -> bool:
        """Whether an attempt that ended with ``reason`` (no response) should be retried."""
        if reason == OVERFLOW:
            return False
        if reason == CONNECT_FAILURE and self.retry_on & RETRY_CONNECT_FAILURE:
            return True
        return bool(self.retry_on & _RESET_FAMILY)


def retry_on_bits(value: str, grpc: bool | None = None) -> int:
    """The bitmask of a comma-separated ``retry_on``; unknown tokens count for nothing.
    ``grpc``: only the gRPC tokens (``x-envoy-retry-grpc-on``, True) or only the others
    (``x-envoy-retry-on``, False); ``None``, both (a route's ``retry_on``)."""
    bits = 0
    for token in value.split(","):
        token = token.strip()
        if grpc is None or (token in _GRPC_RETRY_ON) == grpc:
            bits |= _RETRY_ON.get(token, 0)
    return bits


# What a request's ``x-envoy-retry-on`` starts from when its route has no retry policy:
# Envoy's defaults (one retry, 25 ms base back-off, ten times that at most).
DEFAULT_POLICY = RetryPolicy(
    retry_on=0,
    num_retries=1,
    per_try_timeout=None,
    retriable_status_codes=frozenset(),
    retriable_headers=(),
    base_interval=0.025,
    max_interval=0.25,
    avoid_previous_hosts=False,
    host_selection_attempts=1,
)


def compile_retry_policy(spec: Any) -> RetryPolicy | None:
    """A route's or virtual host's ``retry_policy``; ``None`` when it retries nothing."""
    if not isinstance(spec, dict):
        return None
    retry_on = retry_on_bits(str(spec.get("retry_on", "")))
    backoff = spec.get("retry_back_off") or {}
    base = duration(backoff.get("base_interval"), 0.025) or 0.025
    maximum = duration(backoff.get("max_interval"), base * 10) or base * 10
    predicates = spec.get("retry_host_predicate") or ()
    return RetryPolicy(
        retry_on=retry_on,
        num_retries=uint(spec.get("num_retries"), 1),
        per_try_timeout=duration(spec.get("per_try_timeout")) or None,
        retriable_status_codes=frozenset(
            int(code) for code in spec.get("retriable_status_codes", ())
        ),
        retriable_headers=tuple(
            compile_header_matcher(m) for m in spec.get("retriable_headers", ())
        ),
        base_interval=base,
        max_interval=max(maximum, base),
        avoid_previous_hosts=any(
            "previous_hosts" in str(p.get("name", "")) + str(p.get("typed_config", ""))
            for p in predicates
            if isinstance(p, dict)
        ),
        host_selection_attempts=max(1, uint(spec.get("host_selection_retry_max_attempts"), 1)),
        retriable_request_headers=tuple(
            compile_header_matcher(m) for m in spec.get("retriable_request_headers", ())
        ),
    )
