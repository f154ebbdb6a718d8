"""A real mesh on one machine: apps, appmesh-proxy sidecars and the control plane.

Traffic goes app -> front proxy (egress) -> target proxy (ingress) -> app, over
127.0.0.1, configured only through the App Mesh API with boto3.
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
import time

import pytest

from tests.conftest import make_client, new_account
from tests.mesh.harness import Mesh, get

SERVICE = "color.mesh.local"
HOST = f"{SERVICE}:8080"


def node_spec(port: int, backends: tuple[str, ...] = ()) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"node-{port}.mesh.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


def weighted(*targets: tuple[str, int], **extra) -> dict:
    action = {"weightedTargets": [{"virtualNode": n, "weight": w} for n, w in targets]}
    return {"httpRoute": {"match": {"prefix": "/"}, "action": action, **extra}}


@pytest.fixture(scope="module")
def colormesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, "colors", tmp_path_factory.mktemp("mesh"))
    try:
        appmesh.create_mesh(meshName="colors")
        ports = {name: mesh.app(name) for name in ("blue", "green")}
        ports["flaky"] = mesh.app("flaky", failure_rate=0.5)
        for name, port in ports.items():
            appmesh.create_virtual_node(
                meshName="colors", virtualNodeName=name, spec=node_spec(port)
            )
        appmesh.create_virtual_node(
            meshName="colors",
            virtualNodeName="front",
            spec=node_spec(mesh.app("front"), backends=(SERVICE, "flaky.mesh.local")),
        )
        router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
        for name in ("color", "flaky"):
            appmesh.create_virtual_router(meshName="colors", virtualRouterName=name, spec=router)
        appmesh.create_route(
            meshName="colors",
            virtualRouterName="color",
            routeName="main",
            spec=weighted(("blue", 50), ("green", 50)),
        )
        appmesh.create_route(
            meshName="colors",
            virtualRouterName="flaky",
            routeName="main",
            spec=weighted(("flaky", 1)),
        )
        for service, router_name in ((SERVICE, "color"), ("flaky.mesh.local", "flaky")):
            provider = {"virtualRouter": {"virtualRouterName": router_name}}
            appmesh.create_virtual_service(
                meshName="colors", virtualServiceName=service, spec={"provider": provider}
            )
        proxies = {name: mesh.proxy(name) for name in ("front", "blue", "green", "flaky")}
        yield {"appmesh": appmesh, "mesh": mesh, "proxies": proxies, "ports": ports}
    finally:
        mesh.close()


def colors(front, count: int, path: str = "/color", headers=None) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for _ in range(count):
        status, _, body = get(front.egress, path, HOST, headers)
        seen[body if status == 200 else status] += 1
    return seen


def until(check, timeout: float = 15.0) -> None:
    """Poll ``check`` until it holds; config pushes are fast but not instant."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the mesh never reached the expected state"
        time.sleep(0.05)


def test_a_request_crosses_both_proxies_with_envoys_headers(colormesh):
    front = colormesh["proxies"]["front"]
    status, headers, body = get(front.egress, "/headers", HOST, {"X-Amzn-Trace-Id": "Root=1-abc"})
    assert status == 200
    assert headers["server"] == "envoy"
    assert int(headers["x-envoy-upstream-service-time"]) >= 0
    seen_by_app = {k.lower(): v for k, v in json.loads(body).items()}
    assert seen_by_app["x-amzn-trace-id"] == "Root=1-abc"
    assert seen_by_app["x-request-id"]
    assert "127.0.0.1" in seen_by_app["x-forwarded-for"]  # appended by the target's ingress
    blue, green = colormesh["proxies"]["blue"], colormesh["proxies"]["green"]
    assert (
        blue.stat("http.ingress.downstream_rq_total")
        + green.stat("http.ingress.downstream_rq_total")
        >= 1
    )


def test_weighted_targets_split_within_a_few_percent(colormesh):
    front = colormesh["proxies"]["front"]
    seen = colors(front, 2000)
    assert set(seen) == {"blue", "green"}
    assert abs(seen["blue"] - 1000) < 100, seen


def test_an_unknown_destination_gets_404_under_drop_all(colormesh):
    front = colormesh["proxies"]["front"]
    status, _, _ = get(front.egress, "/", "nowhere.mesh.local:8080")
    assert status == 404


def test_retries_hide_a_50_percent_failing_backend(colormesh):
    appmesh, front = colormesh["appmesh"], colormesh["proxies"]["front"]
    without = collections.Counter(
        get(front.egress, "/color", "flaky.mesh.local:8080")[0] for _ in range(40)
    )
    assert without[500] > 0, "without a retry policy the failures show"
    retry = {
        "maxRetries": 3,
        "perRetryTimeout": {"unit": "s", "value": 2},
        "httpRetryEvents": ["server-error"],
    }
    appmesh.update_route(
        meshName="colors",
        virtualRouterName="flaky",
        routeName="main",
        spec=weighted(("flaky", 1), retryPolicy=retry),
    )
    cluster = f"cluster.cds_egress_colors_flaky_http_{colormesh['ports']['flaky']}"
    before = front.stat(f"{cluster}.upstream_rq_retry")

    def all_succeed() -> bool:
        return all(
            get(front.egress, "/color", "flaky.mesh.local:8080")[0] == 200 for _ in range(20)
        )

    until(all_succeed)
    assert front.stat(f"{cluster}.upstream_rq_retry") > before


def test_a_canary_shift_reaches_the_proxies(colormesh):
    appmesh, front = colormesh["appmesh"], colormesh["proxies"]["front"]
    appmesh.update_route(
        meshName="colors",
        virtualRouterName="color",
        routeName="main",
        spec=weighted(("green", 100)),
    )
    until(lambda: colors(front, 20) == collections.Counter({"green": 20}))
    appmesh.update_route(
        meshName="colors",
        virtualRouterName="color",
        routeName="main",
        spec=weighted(("blue", 50), ("green", 50)),
    )
    until(lambda: "blue" in colors(front, 20))


def test_header_match_routes_ahead_of_the_default(colormesh):
    appmesh, front = colormesh["appmesh"], colormesh["proxies"]["front"]
    match = {"prefix": "/", "headers": [{"name": "color_header", "match": {"exact": "blue"}}]}
    action = {"weightedTargets": [{"virtualNode": "blue", "weight": 1}]}
    appmesh.create_route(
        meshName="colors",
        virtualRouterName="color",
        routeName="by-header",
        spec={"priority": 0, "httpRoute": {"match": match, "action": action}},
    )
    until(lambda: colors(front, 20, headers={"color_header": "blue"}) == {"blue": 20})
    assert set(colors(front, 40)) == {"blue", "green"}
    appmesh.delete_route(meshName="colors", virtualRouterName="color", routeName="by-header")


def test_the_admin_port_reports_live_and_the_config_version(colormesh):
    front = colormesh["proxies"]["front"]
    assert json.loads(front.admin_get("/server_info"))["state"] == "LIVE"
    assert front.admin_get("/ready").strip() == "LIVE"
    assert front.stat("control_plane.connected_state") == 1
    assert "cds_egress_colors_blue_http" in front.admin_get("/clusters")


def test_route_updates_never_stall_a_keep_alive_client(colormesh):
    """Issue 9's stall, measured as a user saw it: one keep-alive connection sends
    requests back to back through the front sidecar while the route's weights flip 20
    times through the API. A request that needs the client's 3 s timeout is a stall."""
    appmesh, front = colormesh["appmesh"], colormesh["proxies"]["front"]
    stop = threading.Event()
    outcome = {"answers": 0, "stalls": 0}

    def keep_asking() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", front.egress, timeout=3)
        for _ in range(5000):  # bounded; normally ends when the updates do
            if stop.is_set():
                break
            try:
                conn.request("GET", "/color", headers={"Host": HOST})
                conn.getresponse().read()
                outcome["answers"] += 1
            except (TimeoutError, OSError, http.client.HTTPException):
                outcome["stalls"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", front.egress, timeout=3)
        conn.close()

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        for n in range(20):
            target = "blue" if n % 2 else "green"
            appmesh.update_route(
                meshName="colors", virtualRouterName="color", routeName="main",
                spec=weighted((target, 100)),
            )  # fmt: skip
            time.sleep(0.15)
    finally:
        stop.set()
        asking.join(timeout=30)
        appmesh.update_route(
            meshName="colors", virtualRouterName="color", routeName="main",
            spec=weighted(("blue", 50), ("green", 50)),
        )  # fmt: skip
    assert outcome["stalls"] == 0, outcome
    assert outcome["answers"] > 20, outcome
