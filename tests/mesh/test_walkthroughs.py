"""The behaviours App Mesh's walkthroughs demonstrated, end to end (reference §6).

Each test builds its own small mesh through the API, runs the apps and sidecars as
processes, and drives traffic through the front proxy's egress port.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time

import pytest

from tests.conftest import make_client, new_account
from tests.mesh.harness import Mesh, get


@pytest.fixture
def world(server, tmp_path):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, "walk", tmp_path)
    appmesh.create_mesh(meshName="walk")
    try:
        yield {"appmesh": appmesh, "mesh": mesh, "account": account, "server": server}
    finally:
        mesh.close()


def listener(port: int, **extra) -> dict:
    return {"portMapping": {"port": port, "protocol": "http"}, **extra}


def front_node(world, service: str) -> None:
    world["appmesh"].create_virtual_node(
        meshName="walk",
        virtualNodeName="front",
        spec={
            "listeners": [listener(world["mesh"].app("front"))],
            "serviceDiscovery": {"dns": {"hostname": "front.walk.local"}},
            "backends": [{"virtualService": {"virtualServiceName": service}}],
        },
    )


def node_service(world, node: str, spec: dict, service: str) -> None:
    """A node and a virtual service provided by it directly (no router)."""
    appmesh = world["appmesh"]
    appmesh.create_virtual_node(meshName="walk", virtualNodeName=node, spec=spec)
    provider = {"virtualNode": {"virtualNodeName": node}}
    appmesh.create_virtual_service(
        meshName="walk", virtualServiceName=service, spec={"provider": provider}
    )


def statuses(port: int, host: str, count: int, path: str = "/color") -> collections.Counter:
    return collections.Counter(get(port, path, host)[0] for _ in range(count))


def wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the mesh"
        time.sleep(0.1)


def cloud_map_service(world, name: str, ports: list[int]) -> None:
    cloudmap = make_client(
        world["server"].endpoint, "servicediscovery", world["account"], inject_host_prefix=False
    )
    operation = cloudmap.create_http_namespace(Name="walk.local")["OperationId"]
    namespace = cloudmap.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
    service = cloudmap.create_service(Name=name, NamespaceId=namespace)["Service"]["Id"]
    for index, port in enumerate(ports):
        attributes = {"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(port)}
        cloudmap.register_instance(
            ServiceId=service, InstanceId=f"i-{index}", Attributes=attributes
        )


@pytest.mark.parametrize(
    ("failing", "expect"),
    [(1, "the degraded host is ejected"), (3, "panic: every host is used again")],
)
def test_outlier_detection_ejects_and_panics(world, failing, expect):
    mesh = world["mesh"]
    ports = [mesh.app(f"h{i}", failure_rate=1.0 if i < failing else 0.0) for i in range(4)]
    cloud_map_service(world, "colors", ports)
    outlier = {
        "maxServerErrors": 5,
        "interval": {"unit": "s", "value": 30},
        "baseEjectionDuration": {"unit": "s", "value": 30},
        "maxEjectionPercent": 100,
    }
    spec = {
        "listeners": [listener(8080, outlierDetection=outlier)],
        "serviceDiscovery": {
            "awsCloudMap": {"namespaceName": "walk.local", "serviceName": "colors"}
        },
    }
    node_service(world, "colors", spec, "colors.walk.local")
    front_node(world, "colors.walk.local")
    front = mesh.proxy("front")
    wait_for(
        lambda: (
            front.admin_get("/clusters").count("cds_egress_walk_colors_http_8080::127.0.0.1:")
            >= 4 * 3
        )
    )
    warmup = statuses(front.egress, "colors.walk.local:8080", 40)
    assert warmup[500] >= 5, warmup
    after = statuses(front.egress, "colors.walk.local:8080", 100)
    cluster = "cluster.cds_egress_walk_colors_http_8080"
    if failing == 1:
        assert after == {200: 100}, f"{expect}: {after}"
        assert front.stat(f"{cluster}.outlier_detection.ejections_active") == 1
    else:
        assert after[500] > 40, f"{expect}: {after}"
        assert front.stat(f"{cluster}.outlier_detection.ejections_active") >= 1


def test_dns_service_discovery_reaches_the_app(world):
    mesh = world["mesh"]
    port = mesh.app("dns-app")
    spec = {
        "listeners": [listener(port)],
        "serviceDiscovery": {"dns": {"hostname": "localhost", "ipPreference": "IPv4_ONLY"}},
    }
    node_service(world, "dns-app", spec, "dns.walk.local")
    front_node(world, "dns.walk.local")
    front = mesh.proxy("front")
    status, _, body = get(front.egress, "/color", f"dns.walk.local:{port}")
    assert (status, body) == (200, "dns-app")


def test_a_route_timeout_cuts_a_slow_request(world):
    mesh, appmesh = world["mesh"], world["appmesh"]
    port = mesh.app("slow")
    spec = {
        "listeners": [listener(port)],
        "serviceDiscovery": {"dns": {"hostname": "slow.walk.local"}},
    }
    appmesh.create_virtual_node(meshName="walk", virtualNodeName="slow", spec=spec)
    router = {"listeners": [listener(8080)]}
    appmesh.create_virtual_router(meshName="walk", virtualRouterName="r", spec=router)
    route = {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"weightedTargets": [{"virtualNode": "slow", "weight": 1}]},
            "timeout": {"perRequest": {"unit": "ms", "value": 300}},
        }
    }
    appmesh.create_route(meshName="walk", virtualRouterName="r", routeName="r", spec=route)
    provider = {"virtualRouter": {"virtualRouterName": "r"}}
    appmesh.create_virtual_service(
        meshName="walk", virtualServiceName="slow.walk.local", spec={"provider": provider}
    )
    front_node(world, "slow.walk.local")
    front, _ = mesh.proxy("front"), mesh.proxy("slow")
    assert get(front.egress, "/delay/10", "slow.walk.local:8080")[0] == 200
    status, _, body = get(front.egress, "/delay/1500", "slow.walk.local:8080")
    assert status == 504 and "upstream request timeout" in body


def test_a_connection_pool_limit_overflows_with_503(world):
    mesh = world["mesh"]
    port = mesh.app("pooled")
    pool = {"http": {"maxConnections": 1, "maxPendingRequests": 1}}
    spec = {
        "listeners": [listener(port, connectionPool=pool)],
        "serviceDiscovery": {"dns": {"hostname": "pooled.walk.local"}},
    }
    node_service(world, "pooled", spec, "pooled.walk.local")
    front_node(world, "pooled.walk.local")
    front, pooled = mesh.proxy("front"), mesh.proxy("pooled")
    host = f"pooled.walk.local:{port}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool_threads:
        results = list(
            pool_threads.map(lambda _: get(front.egress, "/delay/400", host)[0], range(8))
        )
    assert results.count(200) >= 1 and results.count(503) >= 1, results
    cluster = f"cluster.cds_ingress_walk_pooled_http_{port}"
    assert pooled.stat(f"{cluster}.upstream_rq_pending_overflow") >= 1
