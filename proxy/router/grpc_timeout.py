"""How long a request may take: the route timeout, or the client's ``grpc-timeout``.

Envoy reads a gRPC client's deadline (the ``grpc-timeout`` header) only when the route
asks for it, in one of two ways, and they behave differently on expiry:

- ``max_grpc_timeout`` (with ``grpc_timeout_offset``): the header *replaces* the route
  timeout of the router filter (absent header: no timeout), capped by the maximum (0: no
  cap) after the offset is taken off; the header sent upstream says what is left. On
  expiry the router answers 504 "upstream request timeout", which a gRPC client reads as
  UNAVAILABLE (``grpc-status: 14``), as every 504 local reply.
- ``max_stream_duration`` (``grpc_timeout_header_max``, ``grpc_timeout_header_offset``):
  the route timeout is off and the connection manager's stream timer runs from the
  request's first byte, set by the header (capped, then offset) or else by
  ``max_stream_duration`` itself. On expiry it answers "downstream duration timeout"
  with ``grpc-status: 4`` DEADLINE_EXCEEDED (HTTP 504 once the request was complete,
  408 before) and counts ``downstream_rq_max_duration_reached``.

Without either field the header only travels upstream, where the gRPC server enforces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.routing import StreamDuration

# grpc-timeout units (PROTOCOL-HTTP2.md): hours, minutes, seconds, milli, micro, nano.
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The timers of one request, in seconds; ``None`` means no timer."""

    route_timeout: float | None
    stream_duration: float | None = None
    upstream_grpc_timeout: bool = False  # rewrite the upstream header to what is left


def parse_grpc_timeout(value: str | None) -> float | None:
    """Seconds from a ``grpc-timeout`` value (1-8 digits and a unit); ``None`` if absent
    or malformed, as Envoy treats a header it cannot read."""
    if not value or len(value) < 2 or len(value) > 9:
        return None
    digits, unit = value[:-1], value[-1]
    if not digits.isdigit() or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]


def format_grpc_timeout(seconds: float) -> str:
    """A ``grpc-timeout`` value for ``seconds``, in milliseconds while they fit 8 digits."""
    millis = max(1, round(seconds * 1000))
    for unit, size in (("m", 1), ("S", 1000), ("M", 60_000), ("H", 3_600_000)):
        if millis // size < 100_000_000:
            return f"{-(-millis // size)}{unit}"
    return "99999999H"


def deadlines(
    route_timeout: float | None,
    max_grpc_timeout: float | None,
    grpc_offset: float | None,
    stream: StreamDuration | None,
    headers: Mapping[str, str],
    grpc: bool,
) -> Deadlines:
    """The request's timers from its route and headers (Envoy's finalTimeout and the
    connection manager's duration timer)."""
    if stream is not None:
        return Deadlines(None, _stream_duration(stream, headers, grpc))
    if not grpc or max_grpc_timeout is None:
        return Deadlines(route_timeout)
    timeout = parse_grpc_timeout(headers.get("grpc-timeout")) or 0.0
    if grpc_offset and grpc_offset < timeout:
        timeout -= grpc_offset
    if max_grpc_timeout and (not timeout or timeout > max_grpc_timeout):
        timeout = max_grpc_timeout
    return Deadlines(timeout or None, upstream_grpc_timeout=True)


def _stream_duration(
    stream: StreamDuration, headers: Mapping[str, str], grpc: bool
) -> float | None:
    header = parse_grpc_timeout(headers.get("grpc-timeout")) if grpc else None
    if header is None or stream.header_max is None:
        return stream.max_stream_duration or None
    timeout = header
    if stream.header_max and timeout > stream.header_max:
        timeout = stream.header_max
    if timeout and stream.header_offset:
        timeout = timeout - stream.header_offset if stream.header_offset < timeout else 0.0
    # A header of 0 (or eaten by the offset) has already expired: fire at once.
    return max(timeout, 1e-6)
