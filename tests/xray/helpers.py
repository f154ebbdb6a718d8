"""Hand-made X-Ray segment documents, shaped like App Mesh's Envoy and the X-Ray SDKs send."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROXY = "AWS::AppMesh::Proxy"
GATEWAY, NODE_A, NODE_B = "demo/gateway", "demo/node-a", "demo/node-b"


def new_id() -> str:
    return secrets.token_hex(8)


def new_trace_id(at: float) -> str:
    return f"1-{int(at):08x}-{secrets.token_hex(12)}"


def http(status: int, url: str = "http://gateway.demo/colors", method: str = "GET") -> dict:
    return {
        "request": {"method": method, "url": url, "client_ip": "10.0.0.7", "user_agent": "curl"},
        "response": {"status": status},
    }


@dataclass
class Trace:
    """A trace being written: its id, its start and the documents made so far."""

    start: float
    trace_id: str = ""
    documents: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.trace_id = self.trace_id or new_trace_id(self.start)

    def segment(self, name: str, begin: float, end: float, **fields: Any) -> dict[str, Any]:
        """A segment from ``start + begin`` to ``start + end`` (seconds)."""
        document = {
            "name": name,
            "id": new_id(),
            "trace_id": self.trace_id,
            "start_time": self.start + begin,
            "end_time": self.start + end,
            "origin": PROXY,
            **fields,
        }
        self.documents.append(document)
        return document

    def texts(self) -> list[str]:
        return [json.dumps(document) for document in self.documents]


def remote_call(name: str, begin: float, end: float, start: float, status: int) -> dict:
    """A ``namespace: remote`` subsegment: an outgoing HTTP call through the proxy."""
    call = {
        "id": new_id(),
        "name": name,
        "start_time": start + begin,
        "end_time": start + end,
        "namespace": "remote",
        "http": http(status),
    }
    if status >= 500:
        call["fault"] = True
    return call


def three_hop(start: float, annotations: dict | None = None) -> Trace:
    """gateway -> node A -> node B, where B faults (503) and A absorbs it (200).

    Gateway: 0.0-0.5 s, root, HTTP 200. A: 0.1-0.4 s. B: 0.2-0.6 s (it keeps working after
    answering, so the trace lasts 0.6 s while the root answered in 0.5 s).
    """
    trace = Trace(start)
    to_a = remote_call(NODE_A, 0.05, 0.45, start, 200)
    trace.segment(
        GATEWAY,
        0.0,
        0.5,
        http=http(200),
        annotations=annotations or {},
        aws={"app_mesh": {"mesh_name": "demo", "virtual_gateway_name": "gateway"}},
        subsegments=[to_a],
    )
    to_b = remote_call(NODE_B, 0.15, 0.35, start, 503)
    trace.segment(NODE_A, 0.1, 0.4, parent_id=to_a["id"], http=http(200), subsegments=[to_b])
    trace.segment(NODE_B, 0.2, 0.6, parent_id=to_b["id"], http=http(503), fault=True)
    return trace


def wait_for(check: Callable[[], Any], timeout: float = 10.0, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"gave up after {timeout}s waiting for {check}"
            return value
        time.sleep(every)
