"""Retries left for one request, and how long to back off before the next.

The policy was compiled with the route (``proxy.config.retry``); this is the per-request
counter the router keeps beside it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config.retry import RetryPolicy


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
