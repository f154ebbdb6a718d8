"""What happened to one request or TCP connection: the record every observer reads.

Envoy calls this ``StreamInfo``. The data path fills it in as it goes (times, bytes,
upstream host, route and cluster targets, response flags) and hands it to the access
loggers, the X-Ray tracer and the metrics extension when the stream ends, so observing
never reaches back into the protocol objects (and ``proxy.observe`` never imports the
router or the codecs).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

# Envoy response flags (short form, as %RESPONSE_FLAGS% prints them).
NO_HEALTHY_UPSTREAM = "UH"
UPSTREAM_CONNECTION_FAILURE = "UF"
UPSTREAM_OVERFLOW = "UO"
NO_ROUTE_FOUND = "NR"
UPSTREAM_RETRY_LIMIT_EXCEEDED = "URX"
NO_CLUSTER_FOUND = "NC"
UPSTREAM_REQUEST_TIMEOUT = "UT"
UPSTREAM_CONNECTION_TERMINATION = "UC"
UPSTREAM_REMOTE_RESET = "UR"
UPSTREAM_PROTOCOL_ERROR = "UPE"
DOWNSTREAM_CONNECTION_TERMINATION = "DC"
DOWNSTREAM_PROTOCOL_ERROR = "DPE"
NO_FILTER_CHAIN_FOUND = "NFCF"
STREAM_IDLE_TIMEOUT = "SI"
DURATION_TIMEOUT = "DT"

_EMPTY: Mapping[str, str] = {}


class TraceContext:
    """Where one request sits in its X-Ray trace, decided when it was routed (read-only).

    Kept beside ``StreamInfo`` because the record carries it: the tracer sets it and the
    segment builder reads it."""

    __slots__ = ("call_id", "parent_id", "sampled", "segment_id", "trace_id")

    def __init__(
        self, trace_id: str, parent_id: str | None, segment_id: str, call_id: str, sampled: bool
    ) -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id  # the caller's entity, from the incoming header
        self.segment_id = segment_id  # this proxy's segment
        self.call_id = call_id  # the remote subsegment; sent upstream as Parent
        self.sampled = sampled


class StreamInfo:
    """Per-stream facts; times are loop-monotonic seconds, ``start_time`` is wall clock."""

    __slots__ = (
        "attempt_count",
        "bytes_received",
        "bytes_sent",
        "connection_id",
        "downstream_local",
        "downstream_remote",
        "end",
        "first_upstream_rx",
        "first_upstream_tx",
        "grpc_status",
        "last_downstream_rx",
        "original_destination",
        "protocol",
        "request_headers",
        "response_code",
        "response_code_details",
        "response_flags",
        "response_headers",
        "route_name",
        "start",
        "start_time",
        "stat_prefix",
        "target_virtual_node",
        "target_virtual_service",
        "trace",
        "upstream_cluster",
        "upstream_host",
        "upstream_local",
        "upstream_transport_failure_reason",
    )

    def __init__(
        self,
        start: float,
        protocol: str,
        downstream_remote: str,
        downstream_local: str,
        connection_id: int,
        original_destination: tuple[str, int] | None = None,
    ) -> None:
        self.start_time = time.time()
        self.start = start
        self.end: float | None = None
        self.protocol = protocol
        self.downstream_remote = downstream_remote
        self.downstream_local = downstream_local
        self.connection_id = connection_id
        # Where an intercepted connection was going (then also ``downstream_local``, as
        # in Envoy); ORIGINAL_DST clusters connect there. None when not redirected.
        self.original_destination = original_destination
        self.request_headers: Mapping[str, str] = _EMPTY
        self.response_headers: list[tuple[str, str]] = []
        self.response_code: int | None = None
        self.grpc_status: str | None = None  # from trailers, or a trailers-only response
        self.response_code_details = ""
        self.response_flags: list[str] = []
        self.bytes_received = 0
        self.bytes_sent = 0
        self.upstream_host = ""
        self.upstream_cluster = ""
        self.upstream_local = ""
        self.upstream_transport_failure_reason = ""
        self.route_name = ""
        # Which listener served it (``ingress...`` or ``egress...``), and the mesh targets
        # of its route and cluster: what X-Ray and the metrics extension name calls after.
        self.stat_prefix = ""
        self.target_virtual_service = ""
        self.target_virtual_node = ""
        self.attempt_count = 0
        self.first_upstream_tx: float | None = None
        self.first_upstream_rx: float | None = None
        self.last_downstream_rx: float | None = None
        self.trace: TraceContext | None = None  # set by the X-Ray tracer when it is on

    def add_flag(self, flag: str) -> None:
        if flag not in self.response_flags:
            self.response_flags.append(flag)

    @property
    def flags_text(self) -> str:
        return ",".join(self.response_flags) if self.response_flags else "-"

    def response_header(self, name: str) -> str | None:
        """First response header named ``name`` (lower case), for ``%RESP(...)%``."""
        for key, value in self.response_headers:
            if key == name:
                return value
        return None
