"""App Mesh's metrics extension on a live mesh: front -> b.local (router) -> node b.

Both sidecars run with ``APPMESH_METRIC_EXTENSION_VERSION=1``, ``ENABLE_ENVOY_STATS_TAGS=1``,
DogStatsD to a UDP socket of the test, and CloudWatch at the ``server`` fixture's endpoint
(signed as the test's own account). A fixed number of requests then shows up, with the
same count, in Prometheus, in CloudWatch and in the DogStatsD lines.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time

import pytest

from tests.conftest import REGION, make_client, new_account
from tests.mesh.harness import Mesh, get

REQUESTS = 7
SERVICE = "b.local"


def until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the expected state never came"
        time.sleep(0.1)


class StatsdReceiver:
    """A UDP socket collecting DogStatsD lines on a background thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            self.lines.extend(data.decode().splitlines())

    def total(self, metric: str, tags: str) -> int:
        """Sum of ``metric:<n>|c`` lines whose tags start with the regex ``tags``."""
        pattern = re.compile(rf"^{re.escape(metric)}:(\d+)\|c\|#{tags}(,|$)")
        return sum(int(m.group(1)) for line in list(self.lines) if (m := pattern.match(line)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def node_spec(port: int, backends: tuple[str, ...] = ()) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"node-{port}.mesh.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


@pytest.fixture(scope="module")
def measured(server, tmp_path_factory):
    account, name = new_account(), f"metrics-{secrets.token_hex(3)}"
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, name, tmp_path_factory.mktemp("metrics"))
    statsd = StatsdReceiver()
    env = {
        "APPMESH_METRIC_EXTENSION_VERSION": "1",
        "ENABLE_ENVOY_STATS_TAGS": "1",
        "ENABLE_ENVOY_DOG_STATSD": "1",
        "STATSD_PORT": str(statsd.port),
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": REGION,
    }
    try:
        appmesh.create_mesh(meshName=name)
        port_b = mesh.app("b")
        appmesh.create_virtual_node(meshName=name, virtualNodeName="b", spec=node_spec(port_b))
        appmesh.create_virtual_node(
            meshName=name, virtualNodeName="front", spec=node_spec(mesh.app("front"), (SERVICE,))
        )
        router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
        appmesh.create_virtual_router(meshName=name, virtualRouterName="b", spec=router)
        targets = [{"virtualNode": "b", "weight": 1}]
        appmesh.create_route(
            meshName=name,
            virtualRouterName="b",
            routeName="all",
            spec={"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}},
        )
        provider = {"virtualRouter": {"virtualRouterName": "b"}}
        appmesh.create_virtual_service(
            meshName=name, virtualServiceName=SERVICE, spec={"provider": provider}
        )
        b = mesh.proxy("b", env={**env, "ENVOY_STATS_FLUSH_INTERVAL": "1000ms"})
        front = mesh.proxy("front", env={**env, "ENVOY_STATS_FLUSH_INTERVAL": "1s"})
        endpoint = f"::127.0.0.1:{b.ingress}::"
        until(lambda: endpoint in front.admin_get("/clusters"))  # b is a known host
        statuses = [get(front.egress, "/color", f"{SERVICE}:8080")[0] for _ in range(REQUESTS)]
        assert statuses == [200] * REQUESTS
        yield {"mesh": name, "account": account, "front": front, "b": b, "statsd": statsd}
    finally:
        mesh.close()
        statsd.close()


def target_labels(mesh: str) -> str:
    return (
        f'Mesh="{mesh}",VirtualNode="front",TargetVirtualNode="b",TargetVirtualService="{SERVICE}"'
    )


def test_prometheus_shows_the_extension_metrics_with_their_dimensions(measured):
    mesh, front, b = measured["mesh"], measured["front"], measured["b"]
    inbound = b.admin_get("/stats/prometheus")
    assert f'envoy_appmesh_RequestCount{{Mesh="{mesh}",VirtualNode="b"}} {REQUESTS}\n' in inbound
    assert "# TYPE envoy_appmesh_RequestCount counter\n" in inbound
    assert "# TYPE envoy_appmesh_ActiveConnectionCount gauge\n" in inbound
    processed = re.search(r"envoy_appmesh_ProcessedBytes\{[^}]*\} (\d+)", inbound)
    assert processed is not None and int(processed.group(1)) >= REQUESTS  # "b" both ways
    connections = re.search(r"envoy_appmesh_NewConnectionCount\{[^}]*\} (\d+)", inbound)
    assert connections is not None and 1 <= int(connections.group(1)) <= REQUESTS
    outbound = front.admin_get("/stats/prometheus")
    labels = target_labels(mesh)
    assert f"envoy_appmesh_RequestCountPerTarget{{{labels}}} {REQUESTS}\n" in outbound
    assert f"envoy_appmesh_HTTPCode_Target_2XX_Count{{{labels}}} {REQUESTS}\n" in outbound
    assert f"envoy_appmesh_HTTPCode_Target_5XX_Count{{{labels}}} 0\n" in outbound
    assert f"envoy_appmesh_TargetResponseTime_count{{{labels}}} {REQUESTS}\n" in outbound
    assert f'envoy_appmesh_TargetResponseTime_bucket{{{labels},le="+Inf"}} {REQUESTS}\n' in outbound
    # ENABLE_ENVOY_STATS_TAGS and the extension tag Envoy's own stats too.
    fixed = f'appmesh_mesh="{mesh}",appmesh_virtual_node="front",Mesh="{mesh}",VirtualNode="front"'
    cluster = f"cds_egress_{mesh}_b_http_"
    assert re.search(
        rf'^envoy_cluster_upstream_rq_completed\{{{fixed},envoy_cluster_name="{cluster}\d+"\}} '
        rf"{REQUESTS}$",
        outbound,
        re.M,
    )
    assert f"appmesh.RequestCount: {REQUESTS}\n" in b.admin_get("/stats")


def test_cloudwatch_sums_equal_the_requests_sent(server, measured):
    cloudwatch = make_client(server.endpoint, "cloudwatch", measured["account"])
    mesh = measured["mesh"]

    def total(metric: str, statistic: str, **dimensions: str) -> float:
        now = time.time()
        points = cloudwatch.get_metric_statistics(
            Namespace="CWAgent",
            MetricName=f"envoy.appmesh.{metric}",
            Dimensions=[{"Name": k, "Value": v} for k, v in {"Mesh": mesh, **dimensions}.items()],
            StartTime=now - 600,
            EndTime=now + 60,
            Period=60,
            Statistics=[statistic],
        )["Datapoints"]
        return sum(point[statistic] for point in points)

    target = {"VirtualNode": "front", "TargetVirtualNode": "b", "TargetVirtualService": SERVICE}
    until(lambda: total("RequestCount", "Sum", VirtualNode="b") == REQUESTS)
    until(lambda: total("RequestCountPerTarget", "Sum", **target) == REQUESTS)
    assert total("HTTPCode_Target_2XX_Count", "Sum", **target) == REQUESTS
    assert total("TargetResponseTime", "SampleCount", **target) == REQUESTS
    now = time.time()
    query = {
        "Id": "perTarget",
        "MetricStat": {
            "Metric": {
                "Namespace": "CWAgent",
                "MetricName": "envoy.appmesh.RequestCountPerTarget",
                "Dimensions": [
                    {"Name": k, "Value": v} for k, v in {"Mesh": mesh, **target}.items()
                ],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[query], StartTime=now - 600, EndTime=now + 60
    )["MetricDataResults"][0]
    assert sum(result["Values"]) == REQUESTS


def test_dogstatsd_receives_the_metrics_with_their_tags(measured):
    mesh, statsd = re.escape(measured["mesh"]), measured["statsd"]
    target = rf"Mesh:{mesh},VirtualNode:front,TargetVirtualNode:b,TargetVirtualService:b\.local"
    until(lambda: statsd.total("envoy.appmesh.RequestCountPerTarget", target) == REQUESTS)
    inbound = rf"Mesh:{mesh},VirtualNode:b"
    until(lambda: statsd.total("envoy.appmesh.RequestCount", inbound) == REQUESTS)
    timing = re.compile(rf"^envoy\.appmesh\.TargetResponseTime:[\d.]+\|ms\|#{target}")
    assert sum(1 for line in list(statsd.lines) if timing.match(line)) == REQUESTS
    # Envoy's own stats go out too, with their extracted tag and App Mesh's fixed tags.
    cluster = rf"envoy\.cluster_name:cds_egress_{mesh}_b_http_\d+,appmesh\.mesh:{mesh}"
    until(lambda: statsd.total("envoy.cluster.upstream_rq_completed", cluster) == REQUESTS)
