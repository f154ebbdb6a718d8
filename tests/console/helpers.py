"""A small mesh and its traces, as the console and the CLI views show them.

Mesh ``demo``: gateway ``gateway`` routes ``/`` to ``a.demo.local`` (node ``node-a``), which
calls ``b.demo.local``, a router sending 75 % to ``node-b`` and 25 % to ``node-b-v2``. The
traces are ``tests.xray.helpers.three_hop``'s: gateway → node A → node B, where B faults.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.conftest import Server
from tests.signing import signed_headers, xds_request
from tests.xray.helpers import Trace, http, remote_call, three_hop

MESH = "demo"


def _listeners(port: int) -> list[dict]:
    return [{"portMapping": {"port": port, "protocol": "http"}}]


def _node(port: int, name: str, backends: tuple[str, ...] = ()) -> dict:
    return {
        "listeners": _listeners(port),
        "serviceDiscovery": {"dns": {"hostname": f"{name}.demo.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


def build_demo_mesh(appmesh: Any) -> None:
    """Create the mesh with boto3, as a user would."""
    appmesh.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "DROP_ALL"}})
    appmesh.create_virtual_node(
        meshName=MESH, virtualNodeName="node-a", spec=_node(9001, "node-a", ("b.demo.local",))
    )
    for name, port in (("node-b", 9002), ("node-b-v2", 9003)):
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName=name, spec=_node(port, name))
    appmesh.create_virtual_router(
        meshName=MESH, virtualRouterName="b-router", spec={"listeners": _listeners(8080)}
    )
    targets = [{"virtualNode": "node-b", "weight": 3}, {"virtualNode": "node-b-v2", "weight": 1}]
    appmesh.create_route(
        meshName=MESH,
        virtualRouterName="b-router",
        routeName="b-route",
        spec={"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}},
    )
    for service, provider in (
        ("b.demo.local", {"virtualRouter": {"virtualRouterName": "b-router"}}),
        ("a.demo.local", {"virtualNode": {"virtualNodeName": "node-a"}}),
    ):
        appmesh.create_virtual_service(
            meshName=MESH, virtualServiceName=service, spec={"provider": provider}
        )
    appmesh.create_virtual_gateway(
        meshName=MESH, virtualGatewayName="gateway", spec={"listeners": _listeners(8088)}
    )
    target = {"target": {"virtualService": {"virtualServiceName": "a.demo.local"}}}
    appmesh.create_gateway_route(
        meshName=MESH,
        virtualGatewayName="gateway",
        gatewayRouteName="to-a",
        spec={"httpRoute": {"match": {"prefix": "/"}, "action": target}},
    )


def send_traces(xray: Any, count: int = 3) -> list[Trace]:
    """``count`` gateway → A → B traces from the last minute, sent with PutTraceSegments."""
    now = time.time()
    traces = [three_hop(now - 40 + 10 * index) for index in range(count)]
    for trace in traces:
        reply = xray.put_trace_segments(TraceSegmentDocuments=trace.texts())
        assert reply["UnprocessedTraceSegments"] == []
    return traces


def get_json(server: Server, path: str, **params: Any) -> tuple[int, Any]:
    """GET a console endpoint; returns (status, decoded body)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{server.endpoint}/_appmesh/console/api{path}" + (f"?{query}" if query else "")
    # Signed as the account asked for, as the console page does (it shows no other's data).
    headers = signed_headers("GET", url, b"", params["account"]) if params.get("account") else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=10
        ) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def discover(server: Server, body: dict) -> dict:
    """One REST xDS request for listeners, as a proxy makes it."""
    request = xds_request(f"{server.endpoint}/v3/discovery:listeners", body)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def connect_proxy(server: Server, account: str, node: str, address: str, reject: bool = False):
    """Register a proxy for ``node`` through xDS, then ACK (or NACK) the listeners it got."""
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/{MESH}/virtualNode/{node}"
    identity = {"id": arn, "metadata": {"appmesh_local.ingress_address": address}}
    first = discover(server, {"node": identity})
    answer: dict[str, Any] = {"node": identity, "response_nonce": first["nonce"]}
    if reject:
        answer["error_detail"] = {"code": 3, "message": "listener port already in use"}
    else:
        answer["version_info"] = first["version_info"]
    discover(server, answer)
    return first["version_info"]


# A busier map: two root services (so X-Ray's graph has two client nodes), an edge that
# skips a column (frontend -> db runs past cart), and a root with a long DNS name.
FRONTEND, CART, DB = "shop/frontend", "shop/cart", "shop/db"
REPORTS = "warehouse-reports.batch-jobs.backoffice.svc.cluster.local"


def crowded_traces(start: float) -> list[Trace]:
    """frontend -> cart -> db and frontend -> db in one trace; reports -> db in another."""
    shop = Trace(start)
    to_cart = remote_call(CART, 0.01, 0.2, start, 200)
    to_db = remote_call(DB, 0.21, 0.3, start, 200)
    shop.segment(FRONTEND, 0.0, 0.35, http=http(200), subsegments=[to_cart, to_db])
    cart_to_db = remote_call(DB, 0.05, 0.15, start, 200)
    shop.segment(
        CART, 0.02, 0.19, parent_id=to_cart["id"], http=http(200), subsegments=[cart_to_db]
    )
    shop.segment(DB, 0.06, 0.14, parent_id=cart_to_db["id"], http=http(200))
    shop.segment(DB, 0.22, 0.29, parent_id=to_db["id"], http=http(200))
    reports = Trace(start + 1)
    call = remote_call(DB, 0.01, 0.1, start + 1, 200)
    reports.segment(
        REPORTS, 0.0, 0.2, http=http(200), origin="AWS::EC2::Instance", subsegments=[call]
    )
    reports.segment(DB, 0.02, 0.09, parent_id=call["id"], http=http(200))
    return [shop, reports]
