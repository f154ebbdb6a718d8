"""X-Ray segment documents for one proxied request, shaped as App Mesh's Envoy sent them.

A segment is one request as this proxy served it: named ``<mesh>/<node>`` (or
``XRAY_SEGMENT_NAME``) with origin ``AWS::AppMesh::Proxy`` and ``aws.app_mesh`` naming
the mesh and the virtual node or gateway; ``http`` holds the request (method, url,
user agent, client ip) and the response (status, body length); ``fault`` (5xx),
``error`` (4xx) and ``throttle`` (429) flag the outcome, as X-Ray reads them. When the
request went upstream, one ``namespace: remote`` subsegment is that call, named after
its target (the virtual service, else the virtual node), with its own timing and
outcome. Its id is what the proxy sent upstream as ``Parent``, so the next hop's segment
(another proxy, or the app's own X-Ray SDK) hangs under it.

Pure functions over the finished request's ``StreamInfo``: nothing here runs per byte,
and nothing runs at all for requests that are not sampled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.stream_info import StreamInfo, TraceContext

ORIGIN = "AWS::AppMesh::Proxy"
DAEMON_HEADER = b'{"format":"json","version":1}\n'


class FinishedRequest:
    """What a segment is built from, captured when the request ended."""

    __slots__ = ("end_time", "inbound", "info", "method", "target", "trace", "url")

    def __init__(
        self,
        trace: TraceContext,
        info: StreamInfo,
        method: str,
        url: str,
        target: str | None,
        inbound: bool,
        end_time: float,
    ) -> None:
        self.trace = trace
        self.info = info
        self.method = method
        self.url = url
        self.target = target  # the remote call's name; None when nothing went upstream
        self.inbound = inbound
        self.end_time = end_time  # wall clock (the loop clock is only ms-precise)


def segment_fields(name: str, origin: str, aws: dict[str, Any]) -> dict[str, Any]:
    """The fields every segment of this proxy shares: Envoy's ``segment_name`` and
    ``segment_fields`` (``aws`` verbatim; App Mesh's image names the resource
    ``virtual_node_name`` for gateways too)."""
    return {"name": name, "origin": origin or ORIGIN, "aws": aws}


def segment_document(fields: dict[str, Any], done: FinishedRequest) -> dict[str, Any]:
    """The segment (with its remote subsegment) of one finished request."""
    info, trace = done.info, done.trace
    document: dict[str, Any] = {
        "name": fields["name"],
        "id": trace.segment_id,
        "trace_id": trace.trace_id,
        "start_time": info.start_time,
        "end_time": done.end_time,
        "origin": fields["origin"],
        "aws": fields["aws"],
        "http": {"request": _request(done), "response": _response(info.response_code, info)},
    }
    if trace.parent_id:
        document["parent_id"] = trace.parent_id
    document.update(outcome(info.response_code))
    document["annotations"] = _annotations(done)
    if done.target is not None and info.first_upstream_tx is not None:
        document["subsegments"] = [_remote_call(done)]
    return document


def outcome(status: int | None) -> dict[str, bool]:
    """X-Ray's flags for an HTTP status: fault 5xx, error 4xx, throttle (and error) 429.
    No status (the client went away first) flags nothing."""
    if status is None:
        return {}
    if status >= 500:
        return {"fault": True}
    if status == 429:
        return {"error": True, "throttle": True}
    if status >= 400:
        return {"error": True}
    return {}


def _wall(done: FinishedRequest, loop_time: float | None) -> float:
    """A loop-clock instant of this request on the wall clock X-Ray wants, kept within
    the segment (the loop clock ticks in milliseconds; the segment's ends are exact)."""
    info = done.info
    if loop_time is None:
        return done.end_time
    wall = info.start_time + (loop_time - info.start)
    return min(max(wall, info.start_time), done.end_time)


def _request(done: FinishedRequest) -> dict[str, Any]:
    headers = done.info.request_headers
    client_ip, forwarded = client_address(headers, done.info.downstream_remote)
    request: dict[str, Any] = {"method": done.method, "url": done.url, "client_ip": client_ip}
    if forwarded:
        request["x_forwarded_for"] = True
    user_agent = headers.get("user-agent")
    if user_agent:
        request["user_agent"] = user_agent
    return request


def client_address(headers: Any, remote: str) -> tuple[str, bool]:
    """The client's IP and whether it came from ``x-forwarded-for`` (not just our own
    append of the peer address)."""
    peer = remote.rpartition(":")[0].strip("[]") or remote
    entries = [e.strip() for e in headers.get("x-forwarded-for", "").split(",") if e.strip()]
    if not entries or entries == [peer]:
        return peer, False
    return entries[0], True


def _response(status: int | None, info: StreamInfo) -> dict[str, Any]:
    response: dict[str, Any] = {"content_length": info.bytes_sent}
    if status is not None:
        response["status"] = status
    return response


def _annotations(done: FinishedRequest) -> dict[str, str]:
    info = done.info
    annotations = {"direction": "ingress" if done.inbound else "egress"}
    if info.upstream_cluster:
        annotations["upstream_cluster"] = info.upstream_cluster
    if info.response_flags:
        annotations["response_flags"] = info.flags_text
    return annotations


def _remote_call(done: FinishedRequest) -> dict[str, Any]:
    """The upstream call: its status when the upstream answered, a fault when it did not."""
    info = done.info
    answered = info.first_upstream_rx is not None
    status = info.response_code if answered else None
    call: dict[str, Any] = {
        "id": done.trace.call_id,
        "name": done.target,
        "start_time": _wall(done, info.first_upstream_tx),
        "end_time": done.end_time,
        "namespace": "remote",
        "http": {
            "request": {"method": done.method, "url": done.url},
            "response": _response(status, info),
        },
    }
    call.update(outcome(status) if answered else {"fault": True})
    return call
