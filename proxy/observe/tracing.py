"""X-Ray tracing of proxied requests (``ENABLE_ENVOY_XRAY_TRACING=1``), as Envoy's tracer.

When a request is routed, the tracer reads ``X-Amzn-Trace-Id``: a valid ``Root`` is
continued (its ``Parent`` becomes this segment's parent) and a ``Sampled=1``/``0``
decision is honoured; otherwise a new trace starts and the local sampling rules decide.
The header sent upstream carries the same root, this proxy's remote-call subsegment as
``Parent`` and the decision, so the next proxy, or the application's own X-Ray SDK,
joins the trace as a child. Requests answered before routing (404, direct responses)
get their context when they end.

When the request ends, a sampled one is queued as-is; a loop callback a few
milliseconds later builds the segment documents and hands them to the daemon as
datagrams. Unsampled requests cost a header parse and nothing more.

A virtual gateway's ingress pass into its own egress listener (its ``self_redirect``
cluster, how App Mesh built gateways) is not traced separately: the egress pass records
the gateway's segment, so a gateway is one service in the graph and not its own caller.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from random import getrandbits
from typing import TYPE_CHECKING

from proxy.observe.xray_segments import (
    DAEMON_HEADER,
    FinishedRequest,
    segment_document,
    segment_fields,
)
from proxy.stream_info import TraceContext

if TYPE_CHECKING:
    import asyncio

    from proxy.config.observability import MeshIdentity, TracingConfig
    from proxy.observe.datagrams import DatagramSender
    from proxy.observe.sampling import Sampler
    from proxy.stream_info import StreamInfo

TRACE_HEADER = "x-amzn-trace-id"
SELF_REDIRECT = "_self_redirect_"
FLUSH_DELAY = 0.02
_ROOT = re.compile(r"1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}")
_ID = re.compile(r"[0-9a-fA-F]{16}")
# Marks a request this proxy passes through without a segment of its own.
UNTRACED = TraceContext("", None, "", "", False)


def parse_trace_header(value: str) -> tuple[str | None, str | None, bool | None]:
    """``(root, parent, sampled)`` of an ``X-Amzn-Trace-Id``; invalid parts are None and
    ``Sampled=?`` (a request for a decision) is None too."""
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, _, item = part.partition("=")
        fields[key.strip().lower()] = item.strip()
    root = fields.get("root")
    parent = fields.get("parent")
    sampled = {"1": True, "0": False}.get(fields.get("sampled", ""))
    return (
        root if root and _ROOT.fullmatch(root) else None,
        parent if parent and _ID.fullmatch(parent) else None,
        sampled,
    )


def new_trace_id() -> str:
    """``1-<epoch seconds>-<96 random bits>``; unique, not secret (as the SDKs make them)."""
    return f"1-{int(time.time()):08x}-{getrandbits(96):024x}"


def new_id() -> str:
    return f"{getrandbits(64):016x}"


class Tracer:
    """One proxy's tracer: contexts on the way in, segments to the daemon on the way out."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: TracingConfig,
        identity: MeshIdentity | None,
        sampler: Sampler,
        sender: DatagramSender,
    ) -> None:
        self.loop = loop
        self.sampler = sampler
        self.sender = sender
        self.node_name = identity.name if identity else ""
        self.fields = segment_fields(config.segment_name, config.origin, config.aws)
        self.recorded = 0
        self._pending: list[FinishedRequest] = []
        self._handle: asyncio.TimerHandle | None = None

    # -- the request path ---------------------------------------------------------------------
    def begin(self, info: StreamInfo, headers: dict[str, str]) -> None:
        """The request is routed: decide its trace and rewrite the header sent upstream."""
        if SELF_REDIRECT in info.upstream_cluster:
            info.trace = UNTRACED
            return
        trace = info.trace = self.context(headers)
        if trace.sampled:
            headers[TRACE_HEADER] = f"Root={trace.trace_id};Parent={trace.call_id};Sampled=1"
        elif trace.parent_id:
            headers[TRACE_HEADER] = f"Root={trace.trace_id};Parent={trace.parent_id};Sampled=0"
        else:
            headers[TRACE_HEADER] = f"Root={trace.trace_id};Sampled=0"

    def context(self, headers: Mapping[str, str]) -> TraceContext:
        """Continue the caller's trace or start one; the sampling decision included."""
        value = headers.get(TRACE_HEADER)
        root, parent, sampled = parse_trace_header(value) if value else (None, None, None)
        if root is None:
            root, parent, sampled = new_trace_id(), None, None
        if sampled is None:
            path = headers.get(":path", "").partition("?")[0]
            method = headers.get(":method", "")
            sampled = self.sampler.decide(headers.get(":authority", ""), method, path)
        if not sampled:
            return TraceContext(root, parent, "", "", False)
        return TraceContext(root, parent, new_id(), new_id(), True)

    def finish(self, info: StreamInfo) -> None:
        """The request is over: queue a sampled one for its segment."""
        headers = info.request_headers
        trace = info.trace
        if trace is None:  # answered before it was routed upstream
            trace = info.trace = self.context(headers)
        if not trace.sampled:
            return
        authority, path = headers.get(":authority", ""), headers.get(":path", "")
        url = f"{headers.get(':scheme', 'http')}://{authority}{path}"
        inbound = info.stat_prefix.startswith("ingress")
        target = self.target(info, inbound) if info.attempt_count else None
        method = headers.get(":method", "")
        done = FinishedRequest(trace, info, method, url, target, inbound, time.time())
        self._pending.append(done)
        if self._handle is None:
            self._handle = self.loop.call_later(FLUSH_DELAY, self.flush)

    def target(self, info: StreamInfo, inbound: bool) -> str:
        """The remote call's name: the virtual service, else the virtual node, else this
        node (the local app behind an ingress listener), else the host called (a
        passthrough, named as the X-Ray SDKs name calls)."""
        if info.target_virtual_service:
            return info.target_virtual_service
        if info.target_virtual_node:
            return info.target_virtual_node
        if inbound and self.node_name:
            return self.node_name
        authority = info.request_headers.get(":authority", "")
        host, colon, port = authority.rpartition(":")
        return (host if colon and port.isdigit() else authority) or info.upstream_cluster

    # -- off the request path -----------------------------------------------------------------
    def flush(self) -> None:
        """Build and send the queued segments, one datagram each."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        pending, self._pending = self._pending, []
        for done in pending:
            document = segment_document(self.fields, done)
            body = json.dumps(document, separators=(",", ":")).encode()
            self.sender.send(DAEMON_HEADER + body)
        self.recorded += len(pending)
        if pending:
            self.sender.flush()

    def close(self) -> None:
        self.flush()
        self.sender.close()
