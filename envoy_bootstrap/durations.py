"""Durations: App Mesh ``{value, unit}`` objects and Go duration strings to Envoy JSON.

Envoy's JSON form of ``google.protobuf.Duration`` is a decimal number of seconds with an
``s`` suffix ("15s", "0.250s"). App Mesh speaks ``{"unit": "ms", "value": 250}``; the
App Mesh Envoy image reads ``ENVOY_STATS_FLUSH_INTERVAL`` with Go's ``time.ParseDuration``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def from_nanos(nanos: int) -> str:
    """Format a nanosecond count the way protobuf's JSON mapping formats a Duration: the
    fraction in 3, 6 or 9 digits. Integer arithmetic (exact), not ``Decimal``: the
    sidecar builds its bootstrap with this, and ``decimal`` costs it 0.4 MB."""
    whole, fraction = divmod(abs(nanos), 1_000_000_000)
    sign = "-" if nanos < 0 else ""
    if not fraction:
        return f"{sign}{whole}s"
    digits = f"{fraction:09d}".rstrip("0")
    width = 3 if len(digits) <= 3 else 6 if len(digits) <= 6 else 9
    return f"{sign}{whole}.{digits.ljust(width, '0')}s"


def from_seconds(seconds: int | float) -> str:
    """Format whole or fractional seconds as an Envoy duration."""
    from decimal import Decimal  # exact for a float's shortest repr; only here and below

    return from_nanos(round(Decimal(str(seconds)) * 1_000_000_000))


def from_millis(millis: int) -> str:
    """Format milliseconds (App Mesh health checks speak milliseconds) as a duration."""
    return from_nanos(int(millis) * 1_000_000)


def appmesh_nanos(duration: Mapping[str, Any]) -> int:
    """Return an App Mesh Duration in nanoseconds; a missing unit means seconds (the
    botocore model makes both members optional, and App Mesh's console defaults to s)."""
    value = int(duration.get("value", 0))
    unit = duration.get("unit", "s")
    return value * _NANOS_PER_UNIT["ms" if unit == "ms" else "s"]


def from_appmesh(duration: Mapping[str, Any]) -> str:
    """Convert an App Mesh Duration object to an Envoy duration string."""
    return from_nanos(appmesh_nanos(duration))


def parse_go_duration(text: str) -> str:
    """Convert a Go duration ("5000ms", "1m30s", "10s") to an Envoy duration.

    Raises ``ValueError`` for anything ``time.ParseDuration`` would reject, because the
    App Mesh image refuses to start on a malformed ``ENVOY_STATS_FLUSH_INTERVAL``.
    """
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    if body == "0":
        return "0s"
    parts = _GO_PART.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        raise ValueError(f"invalid duration {text!r}")
    from decimal import Decimal

    nanos = sum(Decimal(number) * _NANOS_PER_UNIT[unit] for number, unit in parts)
    return from_nanos(sign * int(nanos))
