"""Three replicas on one DynamoDB (moto's server), proxies that fail over, traffic that flows.

Apps and ``appmesh-proxy`` sidecars are real processes on 127.0.0.1 (``tests.mesh.harness``),
each proxy given all three replicas in ``APPMESH_XDS_ENDPOINT``. Replica 1 is killed with
``kill -9`` while traffic runs through the front proxy; a route change made through
replica 3 must reach the front proxy (now on replica 2), and no request may fail.
"""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
from pathlib import Path

from tests.api.test_replicas import eventually, start_replica
from tests.conftest import make_client
from tests.mesh.harness import Mesh, get
from tests.mesh.test_mesh_traffic import node_spec, weighted
from tests.signing import proxies_of

SERVICE = "color.mesh.local"
HOST = f"{SERVICE}:8080"


def build(appmesh, mesh: Mesh) -> None:
    appmesh.create_mesh(meshName=mesh.mesh)
    for name in ("blue", "green"):
        spec = node_spec(mesh.app(name))
        appmesh.create_virtual_node(meshName=mesh.mesh, virtualNodeName=name, spec=spec)
    front = node_spec(mesh.app("front"), backends=(SERVICE,))
    appmesh.create_virtual_node(meshName=mesh.mesh, virtualNodeName="front", spec=front)
    router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
    appmesh.create_virtual_router(meshName=mesh.mesh, virtualRouterName="color", spec=router)
    appmesh.create_route(
        meshName=mesh.mesh,
        virtualRouterName="color",
        routeName="main",
        spec=weighted(("blue", 1)),
    )
    provider = {"virtualRouter": {"virtualRouterName": "color"}}
    appmesh.create_virtual_service(
        meshName=mesh.mesh, virtualServiceName=SERVICE, spec={"provider": provider}
    )


class Traffic(threading.Thread):
    """Requests through the front proxy's egress, one after another, until stopped."""

    def __init__(self, port: int, limit: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.port, self.limit = port, limit
        self.seen: list[tuple[float, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                status, _, body = get(self.port, "/color", HOST, timeout=5)
                outcome = body if status == 200 else f"HTTP {status}"
            except OSError as error:
                outcome = f"error {error}"
            self.seen.append((time.monotonic(), outcome))

    def first(self, outcome: str, after: float) -> float | None:
        return next((at for at, seen in self.seen if seen == outcome and at > after), None)

    def errors(self) -> collections.Counter:
        return collections.Counter(o for _, o in self.seen if o not in ("blue", "green"))


def test_kill_9_of_the_proxies_replica_fails_them_over_without_dropping_traffic(
    tmp_path: Path, dynamodb_endpoint: str, account: str
):
    from tests.api.conftest import dynamodb_store

    store = dynamodb_store(dynamodb_endpoint)
    replicas = [start_replica(tmp_path / f"r{index}", store) for index in (1, 2, 3)]
    mesh = Mesh(replicas[0].endpoint, account, "failover", tmp_path)
    try:
        first, third = (make_client(replicas[i].endpoint, "appmesh", account) for i in (0, 2))
        build(first, mesh)
        eventually(lambda: third.describe_route(
            meshName="failover", virtualRouterName="color", routeName="main"
        ))  # fmt: skip
        every = ",".join(replica.endpoint for replica in replicas)
        proxies = {
            name: mesh.proxy(name, env={"APPMESH_XDS_ENDPOINT": every})
            for name in ("blue", "green", "front")
        }
        front = proxies["front"]
        assert get(front.egress, "/color", HOST)[2] == "blue"
        # Replica 2 knows the blue and green proxies connected to replica 1 (their
        # ingress addresses are blue's and green's endpoints) before replica 1 dies.
        eventually(lambda: _assert(_connected(replicas[1].endpoint, account, here=False) == 3))
        before = _version(front)
        traffic = Traffic(front.egress)
        traffic.start()
        time.sleep(1.0)
        killed = time.monotonic()
        replicas[0].stop(signal.SIGKILL)
        eventually(lambda: _assert(_version(front) != before), timeout=20)
        moved = time.monotonic()
        third.update_route(
            meshName="failover",
            virtualRouterName="color",
            routeName="main",
            spec=weighted(("green", 1)),
        )
        updated = time.monotonic()
        eventually(lambda: _assert(traffic.first("green", killed)), timeout=20)
        time.sleep(1.0)
        traffic.stopping.set()
        traffic.join(timeout=10)
        green = traffic.first("green", killed)
        took = green - killed
        print(
            f"\nkill -9 -> replica 2's config applied {1000 * (moved - killed):.0f} ms; "
            f"route update via replica 3 answered {1000 * (updated - moved):.0f} ms, "
            f"applied {1000 * (green - updated):.0f} ms after; kill -> green {1000 * took:.0f} ms; "
            f"{len(traffic.seen)} requests, errors: {dict(traffic.errors())}"
        )
        assert traffic.errors() == {}, traffic.errors()
        assert took < 5.0
        after = [seen for at, seen in traffic.seen if at > killed + took]
        assert set(after) == {"green"}
        # The proxies moved to replica 2; replica 3 sees them there, live.
        assert _connected(replicas[1].endpoint, account, here=True) == 3
        assert _connected(replicas[2].endpoint, account, here=False) == 3
    finally:
        mesh.close()
        for replica in replicas:
            replica.stop()


def _assert(value):
    assert value
    return value


def _connected(endpoint: str, account: str, here: bool) -> int:
    listed = proxies_of(endpoint, account)
    return sum(1 for p in listed if p["connectedHere"] is here and p["meshName"] == "failover")


def _version(proxy) -> str:
    """The version of the proxy's running config (its replica's boot prefix included)."""
    dump = json.loads(proxy.admin_get("/config_dump"))
    return str(dump["configs"][1]["version_info"])
