"""Retries left for one request, and how long to back off before the next.

The policy was compiled with the route (``proxy.config.retry``); an internal request's
``x-envoy-retry-*`` headers may widen it for that request (``request_retry_policy``),
and this is the per-request counter the router keeps beside it.
"""

from __future__ import annotations

import dataclasses
import random

from proxy.config.matchers import compile_header_matcher
from proxy.config.retry import DEFAULT_POLICY, RetryPolicy, retry_on_bits

_RETRY_HEADERS = (
    "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
    "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
)  # fmt: skip


def request_retry_policy(
    route_policy: RetryPolicy | None, headers: dict[str, str]
) -> RetryPolicy | None:
    """The route's policy with an internal request's retry headers merged in, as Envoy's
    ``RetryStateImpl`` merges them: ``x-envoy-retry-on`` (HTTP conditions) and
    ``x-envoy-retry-grpc-on`` (gRPC ones) add to the route's ``retry_on`` (or to Envoy's
    defaults when the route has none), ``x-envoy-max-retries`` replaces ``num_retries``
    once anything is retried, ``x-envoy-retriable-status-codes`` adds codes and
    ``x-envoy-retriable-header-names`` adds present-matchers (each used only when
    ``retry_on`` names it). The headers are consumed: none goes upstream. External
    requests never get here with them (the HCM strips them)."""
    if headers.keys().isdisjoint(_RETRY_HEADERS):
        return route_policy  # the common case, in one C call (this runs per request)
    found = [headers.pop(name, None) for name in _RETRY_HEADERS]
    retry_on, grpc_on, max_retries, codes, names = found
    policy = route_policy or DEFAULT_POLICY
    bits = policy.retry_on | retry_on_bits(retry_on or "", grpc=False)
    bits |= retry_on_bits(grpc_on or "", grpc=True)
    retries = policy.num_retries
    if bits and max_retries is not None and max_retries.strip().isdigit():
        retries = int(max_retries)
    extra_codes = {int(c) for c in (codes or "").split(",") if c.strip().isdigit()}
    extra_headers = tuple(
        compile_header_matcher({"name": name.strip(), "present_match": True})
        for name in (names or "").split(",")
        if name.strip()
    )
    return dataclasses.replace(
        policy,
        retry_on=bits,
        num_retries=retries,
        retriable_status_codes=policy.retriable_status_codes | extra_codes,
        retriable_headers=policy.retriable_headers + extra_headers,
    )


def hedge_on_per_try_timeout(route_says: bool, headers: dict[str, str]) -> bool:
    """Whether this request hedges on a per-try timeout: an internal request's
    ``x-envoy-hedge-on-per-try-timeout`` (``true`` or ``false``; any other value leaves
    the route's word) over the route's ``hedge_policy``, as Envoy's
    ``FilterUtility::finalHedgingParams`` decides. The header is consumed, never sent on."""
    value = headers.pop("x-envoy-hedge-on-per-try-timeout", None)
    if value == "true":
        return True
    if value == "false":
        return False
    return route_says


class RetryState:
    """Retries left for one request, and Envoy's fully jittered exponential back-off."""

    __slots__ = ("policy", "retries_done")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries_done = 0

    @property
    def exhausted(self) -> bool:
        return self.retries_done >= self.policy.num_retries

    def next_backoff(self) -> float:
        """Count one retry and return its delay: random in ``[0, (2^n - 1) * base)``."""
        self.retries_done += 1
        ceiling = min(
            (2**self.retries_done - 1) * self.policy.base_interval, self.policy.max_interval
        )
        return random.random() * ceiling
