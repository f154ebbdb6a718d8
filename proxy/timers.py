"""One coarse timer for every request deadline, and a cached ``date`` header.

A ``loop.call_later`` per request (route timeout, per-try timeout, idle timeout) costs a
heap push and a handle object each time, and most deadlines are cancelled long before they
fire. Here deadlines fall into buckets (5 ms for short delays, 100 ms for delays over a
second) and the loop holds a single timer armed for the earliest bucket. Cancelling is a
dict delete. Firing is at most one bucket's resolution late, which is far inside what any
Envoy timeout promises.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from typing import Any

_FINE = 0.005  # seconds per tick
_COARSE_TICKS = 20  # delays >= 1 s round up to 100 ms


class Timer:
    """A handle to one deadline; ``cancel()`` is O(1) and idempotent."""

    __slots__ = ("_args", "_bucket", "_callback", "_slot", "_wheel")

    def __init__(
        self, callback: Callable[..., Any], args: tuple[Any, ...], wheel: TimerWheel, slot: int
    ) -> None:
        self._callback: Callable[..., Any] | None = callback
        self._args = args
        self._bucket: dict[Timer, None] | None = None
        self._wheel = wheel
        self._slot = slot

    def cancel(self) -> None:
        bucket = self._bucket
        if bucket is not None:
            bucket.pop(self, None)
            self._bucket = None
            if not bucket:  # drop empty buckets now; their heap entry is skipped later
                self._wheel._buckets.pop(self._slot, None)
        self._callback = None
        self._args = ()

    @property
    def cancelled(self) -> bool:
        return self._callback is None

    def _fire(self) -> None:
        callback, args = self._callback, self._args
        self._callback, self._args, self._bucket = None, (), None
        if callback is not None:
            callback(*args)


class TimerWheel:
    """Bucketed deadlines driven by one loop timer armed at the earliest non-empty bucket."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, dict[Timer, None]] = {}
        self._slots: list[int] = []  # heap of bucket slots
        self._handle: asyncio.TimerHandle | None = None
        self._armed_slot: int | None = None

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` after about ``delay`` seconds (never early)."""
        ticks = math.ceil((self._loop.time() + max(delay, 0.0)) / _FINE)
        if delay >= 1.0:
            ticks = -(-ticks // _COARSE_TICKS) * _COARSE_TICKS
        timer = Timer(callback, args, self, ticks)
        bucket = self._buckets.get(ticks)
        if bucket is None:
            bucket = self._buckets[ticks] = {}
            heapq.heappush(self._slots, ticks)
            if self._armed_slot is None or ticks < self._armed_slot:
                self._arm(ticks)
        bucket[timer] = None
        timer._bucket = bucket
        return timer

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_slot = slot
        self._handle = self._loop.call_at(slot * _FINE, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_slot = None
        now = self._loop.time()
        slots = self._slots
        while slots and slots[0] * _FINE <= now:
            bucket = self._buckets.pop(heapq.heappop(slots), None)
            for timer in list(bucket or ()):
                timer._fire()
        while slots and not self._buckets.get(slots[0]):
            self._buckets.pop(heapq.heappop(slots), None)
        if slots:
            self._arm(slots[0])

    def close(self) -> None:
        """Drop every pending deadline (server stop)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_slot = None
        self._buckets.clear()
        self._slots.clear()

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())


class DateCache:
    """The HTTP ``date`` value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = http_date(now)
        return self._value


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> str:
    """RFC 9110's IMF-fixdate (``Thu, 03 Dec 2026 12:41:15 GMT``), as
    ``email.utils.formatdate(usegmt=True)`` writes it, without loading the email package
    (0.6 MB) into every sidecar for one header."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
