"""appmesh-proxy on incremental ADS (``APPMESH_XDS_DELTA=1``) against ``appmesh-local serve``.

``front`` reaches ``color.delta.local`` (router ``color``, its route to ``blue``) and the
services of ``green``, ``amber`` and ``red``; its sidecar speaks Delta ADS to the
server's gRPC port while the others speak REST xDS. Its admin's
``control_plane.delta.*`` counters say what arrived: a route change must bring one
resource, a dropped backend a removal, and a config it cannot serve a NACK with the
last good cluster kept. Then two replicas: the one the sidecar streams from is killed
and it carries on, from the other.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from envoy_bootstrap.envoy_types import CLUSTER
from proxy.xds.delta import DeltaClient
from proxy.xds_auth import Credentials, call_signer
from tests.conftest import make_client, new_account, start_server
from tests.mesh.harness import Mesh, Proxy, get
from tests.signing import proxies_of

MESH = "delta"
COLOR = f"color.{MESH}.local:8080"
TRUST_SDS = {"tls": {"enforce": True, "validation": {"trust": {"sds": {"secretName": "ca"}}}}}


def node_spec(port: int, name: str, backends: tuple[str, ...] = (), policy=None) -> dict:
    spec: dict = {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"{name}.{MESH}.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }
    for backend in spec["backends"]:
        if policy and backend["virtualService"]["virtualServiceName"] in policy:
            backend["virtualService"]["clientPolicy"] = policy[
                backend["virtualService"]["virtualServiceName"]
            ]
    return spec


def route_to(node: str) -> dict:
    action = {"weightedTargets": [{"virtualNode": node, "weight": 1}]}
    return {"httpRoute": {"match": {"prefix": "/"}, "action": action}}


def routed_to(appmesh) -> str:
    """The node route ``main`` sends to now: the route test changes it, and under
    ``pytest -n`` it may have run in another worker (another mesh) or not at all."""
    route = appmesh.describe_route(meshName=MESH, virtualRouterName="color", routeName="main")
    return route["route"]["spec"]["httpRoute"]["action"]["weightedTargets"][0]["virtualNode"]


def delta_env(*xds_ports: int) -> dict[str, str]:
    return {
        "APPMESH_XDS_DELTA": "1",
        "APPMESH_XDS_ENDPOINT": ",".join(f"127.0.0.1:{port}" for port in xds_ports),
    }


def until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def counters(proxy: Proxy) -> dict[str, int]:
    names = ("streams", "responses", "resources_received", "resources_removed", "nacks")
    return {name: proxy.stat(f"control_plane.delta.{name}") for name in names}


def quiet(proxy: Proxy, seconds: float = 1.0) -> dict[str, int]:
    """The counters once nothing has arrived for ``seconds``."""
    before = counters(proxy)
    while True:
        time.sleep(seconds)
        now = counters(proxy)
        if now == before:
            return now
        before = now


@pytest.fixture(scope="module")
def deltamesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, MESH, tmp_path_factory.mktemp(MESH))
    try:
        appmesh.create_mesh(meshName=MESH)
        ports = {name: mesh.app(name) for name in ("blue", "green", "amber", "front")}
        for name in ("blue", "green", "amber", "red"):
            spec = node_spec(ports.get(name, 9), name)
            appmesh.create_virtual_node(meshName=MESH, virtualNodeName=name, spec=spec)
            provider = {"virtualNode": {"virtualNodeName": name}}
            service = f"{name}.{MESH}.local"
            appmesh.create_virtual_service(
                meshName=MESH, virtualServiceName=service, spec={"provider": provider}
            )
        router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
        appmesh.create_virtual_router(meshName=MESH, virtualRouterName="color", spec=router)
        appmesh.create_route(
            meshName=MESH, virtualRouterName="color", routeName="main", spec=route_to("blue")
        )
        appmesh.create_virtual_service(
            meshName=MESH,
            virtualServiceName=f"color.{MESH}.local",
            spec={"provider": {"virtualRouter": {"virtualRouterName": "color"}}},
        )
        backends = tuple(f"{name}.{MESH}.local" for name in ("color", "green", "amber", "red"))
        front_spec = node_spec(ports["front"], "front", backends)
        appmesh.create_virtual_node(meshName=MESH, virtualNodeName="front", spec=front_spec)
        proxies = {name: mesh.proxy(name) for name in ("blue", "green", "amber")}
        proxies["front"] = mesh.proxy("front", env=delta_env(server.xds_port))
        yield {"appmesh": appmesh, "mesh": mesh, "proxies": proxies, "ports": ports}
    finally:
        mesh.close()


def test_a_delta_sidecar_gets_its_config_and_carries_traffic(deltamesh):
    front = deltamesh["proxies"]["front"]
    assert get(front.egress, "/color", COLOR)[::2] == (200, "blue")
    port = deltamesh["ports"]["amber"]
    assert get(front.egress, "/color", f"amber.{MESH}.local:{port}")[::2] == (200, "amber")
    seen = counters(front)
    assert seen["streams"] == 1 and seen["resources_received"] >= 7, seen
    log = (deltamesh["mesh"].tmp / "proxy-front.log").read_text()
    assert "incremental ADS" in log


def test_a_route_change_sends_only_the_changed_route_configuration(deltamesh):
    front, appmesh = deltamesh["proxies"]["front"], deltamesh["appmesh"]
    before = quiet(front)
    appmesh.update_route(
        meshName=MESH, virtualRouterName="color", routeName="main", spec=route_to("green")
    )
    assert until(lambda: get(front.egress, "/color", COLOR)[2] == "green")
    after = quiet(front)
    # The route configuration, and what blue's leaving the node's closure changes (its
    # cluster is removed): a few resources of the 17 or so the node holds, not all of
    # every changed type as State of the World would send.
    received = after["resources_received"] - before["resources_received"]
    assert 1 <= received <= 2 and before["resources_received"] >= 12, (before, after)
    assert after["nacks"] == before["nacks"]


def test_a_dropped_backend_is_removed_and_its_cluster_disappears(deltamesh):
    front, appmesh = deltamesh["proxies"]["front"], deltamesh["appmesh"]
    assert f"_{MESH}_red_http_" in front.admin_get("/clusters")
    before = quiet(front)
    backends = tuple(f"{name}.{MESH}.local" for name in ("color", "green", "amber"))
    spec = node_spec(deltamesh["ports"]["front"], "front", backends)
    appmesh.update_virtual_node(meshName=MESH, virtualNodeName="front", spec=spec)
    assert until(lambda: f"_{MESH}_red_http_" not in front.admin_get("/clusters"))
    after = quiet(front)
    assert after["resources_removed"] > before["resources_removed"], (before, after)
    assert get(front.egress, "/color", COLOR)[::2] == (200, routed_to(appmesh))


def test_a_config_it_cannot_serve_is_nacked_and_the_last_good_cluster_kept(server, deltamesh):
    front, appmesh = deltamesh["proxies"]["front"], deltamesh["appmesh"]
    before = quiet(front)
    backends = tuple(f"{name}.{MESH}.local" for name in ("color", "green", "amber"))
    policy = {f"amber.{MESH}.local": TRUST_SDS}  # a local SDS agent, and this proxy has none
    spec = node_spec(deltamesh["ports"]["front"], "front", backends, policy)
    appmesh.update_virtual_node(meshName=MESH, virtualNodeName="front", spec=spec)
    assert until(lambda: counters(front)["nacks"] > before["nacks"])
    account = deltamesh["mesh"].account
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/{MESH}/virtualNode/front"

    def rejected() -> dict:
        mine = [p for p in proxies_of(server.endpoint, account) if p["nodeId"] == arn]
        return mine[0]["rejected"].get(CLUSTER) if mine else {}

    found = until(rejected)
    assert found and "amber" in found["message"] and "SDS secret 'ca'" in found["message"], found
    port = deltamesh["ports"]["amber"]
    assert get(front.egress, "/color", f"amber.{MESH}.local:{port}")[::2] == (200, "amber")
    dump = json.loads(front.admin_get("/config_dump"))
    assert "amber" in json.dumps(dump)


def test_killing_the_replica_it_streams_from_fails_over_and_keeps_serving(tmp_path):
    """Two replicas (here two servers holding the same mesh): the sidecar streams from
    the first; it is killed with SIGKILL, traffic carries on, and a change made on the
    second reaches the sidecar."""
    first, second = start_server(tmp_path), start_server(tmp_path)
    account = new_account()
    mesh = Mesh(first.endpoint, account, "fail", tmp_path)
    clients = [make_client(s.endpoint, "appmesh", account) for s in (first, second)]
    try:
        port = mesh.app("solo")
        for appmesh in clients:
            appmesh.create_mesh(meshName="fail")
            spec = node_spec(port, "solo")
            appmesh.create_virtual_node(meshName="fail", virtualNodeName="solo", spec=spec)
        solo = mesh.proxy("solo", env=delta_env(first.xds_port, second.xds_port))
        assert get(solo.ingress, "/color", "solo")[::2] == (200, "solo")
        first.stop(9)
        assert until(lambda: counters(solo)["streams"] == 2)
        assert get(solo.ingress, "/color", "solo")[::2] == (200, "solo")
        assert solo.stat("control_plane.connected_state") == 1
        spec = node_spec(port, "solo", ("other.fail.local",))
        clients[1].create_virtual_node(
            meshName="fail", virtualNodeName="other", spec=node_spec(9, "other")
        )
        clients[1].create_virtual_service(
            meshName="fail",
            virtualServiceName="other.fail.local",
            spec={"provider": {"virtualNode": {"virtualNodeName": "other"}}},
        )
        clients[1].update_virtual_node(meshName="fail", virtualNodeName="solo", spec=spec)
        assert until(lambda: "_fail_other_http_" in solo.admin_get("/clusters"))
        log = (tmp_path / "proxy-solo.log").read_text()
        assert "failing over to http://127.0.0.1:" in log
    finally:
        mesh.close()
        first.stop()
        second.stop()


async def test_a_replica_that_goes_silent_is_left_when_a_ping_goes_unanswered(tmp_path):
    """The replica streamed from is stopped with SIGSTOP: its socket stays open and the
    kernel still ACKs, so only an unanswered HTTP/2 PING tells. The client (keepalive
    shortened to 0.5 s + 0.5 s here; 30 s + 10 s by default) fails over to the second
    replica, and a change made there reaches it."""
    first, second = start_server(tmp_path), start_server(tmp_path)
    account = new_account()
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/quiet/virtualNode/solo"
    clients = [make_client(s.endpoint, "appmesh", account) for s in (first, second)]
    for appmesh in clients:
        appmesh.create_mesh(meshName="quiet")
        appmesh.create_virtual_node(
            meshName="quiet", virtualNodeName="solo", spec=node_spec(9, "solo")
        )
    clusters: list[set[str]] = []

    async def apply(resources: list[dict], _version: str) -> None:
        clusters.append({r["name"] for r in resources if r.get("@type") == CLUSTER})

    xds = DeltaClient(
        [f"127.0.0.1:{first.xds_port}", f"127.0.0.1:{second.xds_port}"],
        {"id": arn, "cluster": arn},
        apply,
        sign=call_signer(Credentials(account, "appmesh-local"), "us-east-1"),
        keepalive_interval=0.5,
        keepalive_timeout=0.5,
    )
    await xds.start()
    try:
        await asyncio.wait_for(xds.first_applied.wait(), 15)
        assert xds.endpoint.endswith(f":{first.xds_port}") and xds.failovers == 0
        first.process.send_signal(signal.SIGSTOP)
        await wait_until(lambda: xds.failovers == 1 and xds.counters["delta.streams"] == 2)
        assert xds.endpoint.endswith(f":{second.xds_port}")
        spec = node_spec(9, "solo", ("other.quiet.local",))
        await asyncio.to_thread(_add_backend, clients[1], spec)
        await wait_until(lambda: any("_quiet_other_http_" in " ".join(c) for c in clusters))
    finally:
        await xds.stop()
        first.process.send_signal(signal.SIGCONT)
        first.stop()
        second.stop()


async def test_a_quiet_stream_pinged_often_is_kept_by_serve(tmp_path):
    """Pings every 0.2 s on a stream with nothing to send: grpcio's default policy would
    GOAWAY (``too_many_pings``) on the third; ``serve`` answers them all and the one
    stream stays."""
    server = start_server(tmp_path)
    account = new_account()
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/pinged/virtualNode/solo"
    appmesh = make_client(server.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName="pinged")
    appmesh.create_virtual_node(
        meshName="pinged", virtualNodeName="solo", spec=node_spec(9, "solo")
    )

    async def apply(_resources: list[dict], _version: str) -> None:
        return None

    xds = DeltaClient(
        f"127.0.0.1:{server.xds_port}",
        {"id": arn, "cluster": arn},
        apply,
        sign=call_signer(Credentials(account, "appmesh-local"), "us-east-1"),
        keepalive_interval=0.2,
        keepalive_timeout=5,
    )
    await xds.start()
    try:
        await asyncio.wait_for(xds.first_applied.wait(), 15)
        await wait_until(lambda: xds.stream is None or xds.stream.pings_answered >= 6)
        assert xds.stream is not None and xds.counters["delta.streams"] == 1
    finally:
        await xds.stop()
        server.stop()


async def test_a_replica_that_accepts_but_never_speaks_http2_is_left_at_connect(tmp_path):
    """A TCP server that accepts and stays silent (no SETTINGS): the stream is not
    counted as open, the connect timeout ends it, and the next replica serves."""
    server = start_server(tmp_path)
    account = new_account()
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/mute/virtualNode/solo"
    appmesh = make_client(server.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName="mute")
    appmesh.create_virtual_node(meshName="mute", virtualNodeName="solo", spec=node_spec(9, "solo"))
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    mute_port = mute.sockets[0].getsockname()[1]

    async def apply(_resources: list[dict], _version: str) -> None:
        return None

    xds = DeltaClient(
        [f"127.0.0.1:{mute_port}", f"127.0.0.1:{server.xds_port}"],
        {"id": arn, "cluster": arn},
        apply,
        sign=call_signer(Credentials(account, "appmesh-local"), "us-east-1"),
        connect_timeout=0.5,
    )
    await xds.start()
    try:
        await asyncio.wait_for(xds.first_applied.wait(), 15)
        assert held, "the silent replica was tried first"
        assert xds.failovers == 1 and xds.counters["delta.streams"] == 1
        assert xds.endpoint.endswith(f":{server.xds_port}")
    finally:
        await xds.stop()
        mute.close()
        for writer in held:
            writer.close()
        server.stop()


def _add_backend(appmesh, spec: dict) -> None:
    appmesh.create_virtual_node(
        meshName="quiet", virtualNodeName="other", spec=node_spec(9, "other")
    )
    provider = {"virtualNode": {"virtualNodeName": "other"}}
    appmesh.create_virtual_service(
        meshName="quiet", virtualServiceName="other.quiet.local", spec={"provider": provider}
    )
    appmesh.update_virtual_node(meshName="quiet", virtualNodeName="solo", spec=spec)


async def wait_until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
