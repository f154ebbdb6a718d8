"""What one change sends a proxy of a big mesh: Delta ADS against State of the World.

    python benchmarks/delta_sotw.py [--nodes 1000]

Starts ``serve`` (in memory, quotas raised, gRPC ADS on) and builds a mesh of N virtual
nodes ``n0..`` each providing a virtual service ``s<j>.local``, under ``ALLOW_ALL``, plus a
node ``front`` with no backends, which therefore reaches every service: N clusters, and
one route configuration with N virtual hosts. Two gRPC streams for ``front`` subscribe to
its clusters, listeners and route configurations, one SotW (``StreamAggregatedResources``)
and one Delta (``DeltaAggregatedResources``), ACKing every response. Then two changes, and
what each stream received for them within 3 s (protobuf bytes on the wire, resources):

- a proxy of ``n5`` registers (its ingress address becomes ``n5``'s endpoint: one
  cluster's endpoints change);
- ``n7``'s listener moves from port 8080 to 8081 (its cluster is renamed, and the route
  configuration's virtual host for ``s7`` changes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
from proxy.xds_auth import Credentials, call_signer, xds_signer  # noqa: E402

sys.path.append(str(HERE))
from control_plane import client, free_port, wait_for_port  # noqa: E402

ACCOUNT = "222233334444"
MESH = "big"
TYPES = {
    "clusters": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "listeners": "type.googleapis.com/envoy.config.listener.v3.Listener",
    "routes": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
}
NODE = {"id": f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{MESH}/virtualNode/front"}


def start(nodes: int) -> tuple[subprocess.Popen, str, int]:
    port, xds = free_port(), free_port()
    quotas = f"virtual-nodes-per-mesh={nodes + 10},virtual-services-per-mesh={nodes + 10}"
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
    command += ["--in-memory", "--xds-port", str(xds), "--xray-daemon-port", "0"]
    command += ["--log-level", "warning"]
    env = {**os.environ, "APPMESH_LOCAL_QUOTAS": quotas}
    log = open(Path(tempfile.gettempdir()) / f"delta-sotw-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    wait_for_port(port, process)
    wait_for_port(xds, process)
    return process, f"http://127.0.0.1:{port}", xds


def node_spec(name: str, port: int = 8080) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"{name}.local"}},
    }


def populate(endpoint: str, nodes: int) -> None:
    appmesh = client(endpoint, ACCOUNT)
    appmesh.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "ALLOW_ALL"}})
    clients = [client(endpoint, ACCOUNT) for _ in range(4)]

    def one(j: int) -> None:
        api = clients[j % 4]
        api.create_virtual_node(meshName=MESH, virtualNodeName=f"n{j}", spec=node_spec(f"n{j}"))
        provider = {"virtualNode": {"virtualNodeName": f"n{j}"}}
        api.create_virtual_service(
            meshName=MESH, virtualServiceName=f"s{j}.local", spec={"provider": provider}
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(nodes)))
    front = {"serviceDiscovery": {"dns": {"hostname": "front.local"}}}
    appmesh.create_virtual_node(meshName=MESH, virtualNodeName="front", spec=front)


class Tally:
    """What one stream received: (bytes, resources, removed) per response, timestamped."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int, int, int]] = []

    def add(self, size: int, resources: int, removed: int = 0) -> None:
        self.seen.append((time.monotonic(), size, resources, removed))

    def since(self, moment: float) -> tuple[int, int, int, int]:
        rows = [row for row in self.seen if row[0] >= moment]
        return len(rows), sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows)


def _metadata(xds: int, path: str) -> list[tuple[str, str]]:
    return call_signer(Credentials(ACCOUNT, "bench"), "us-east-1")(f"127.0.0.1:{xds}", path)


async def sotw(channel: grpc.aio.Channel, xds: int, tally: Tally) -> None:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    path = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
    call = stub.StreamAggregatedResources(metadata=_metadata(xds, path))
    node = json_format.ParseDict(NODE, discovery_pb2.DiscoveryRequest().node)
    await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=TYPES["clusters"]))
    await call.write(discovery_pb2.DiscoveryRequest(type_url=TYPES["listeners"]))
    await call.write(
        discovery_pb2.DiscoveryRequest(
            type_url=TYPES["routes"], resource_names=["rds_egress_http_8080"]
        )
    )
    async for response in call:
        tally.add(response.ByteSize(), len(response.resources))
        names = ["rds_egress_http_8080"] if response.type_url == TYPES["routes"] else []
        await call.write(
            discovery_pb2.DiscoveryRequest(
                type_url=response.type_url,
                version_info=response.version_info,
                response_nonce=response.nonce,
                resource_names=names,
            )
        )


async def delta(channel: grpc.aio.Channel, xds: int, tally: Tally) -> None:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    path = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
    call = stub.DeltaAggregatedResources(metadata=_metadata(xds, path))
    node = json_format.ParseDict(NODE, discovery_pb2.DeltaDiscoveryRequest().node)
    request = discovery_pb2.DeltaDiscoveryRequest
    await call.write(request(node=node, type_url=TYPES["clusters"]))
    await call.write(request(type_url=TYPES["listeners"]))
    await call.write(
        request(type_url=TYPES["routes"], resource_names_subscribe=["rds_egress_http_8080"])
    )
    async for response in call:
        tally.add(response.ByteSize(), len(response.resources), len(response.removed_resources))
        await call.write(request(type_url=response.type_url, response_nonce=response.nonce))


def register(endpoint: str, node: str) -> None:
    """One REST discovery request as a proxy of ``node`` with an ingress address."""
    body = {
        "node": {
            "id": f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{MESH}/virtualNode/{node}",
            "metadata": {"appmesh_local.ingress_address": "127.0.0.1:9999"},
        },
        "type_url": TYPES["clusters"],
    }
    url = f"{endpoint}/v3/discovery:clusters"
    data = json.dumps(body).encode()
    headers = xds_signer(Credentials(ACCOUNT, "bench"), "us-east-1")(url, data)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        reply.read()


async def measure(endpoint: str, xds: int) -> None:
    tallies = {"SotW": Tally(), "Delta": Tally()}
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{xds}", options=[("grpc.max_receive_message_length", -1)]
    )
    streams = [
        asyncio.ensure_future(sotw(channel, xds, tallies["SotW"])),
        asyncio.ensure_future(delta(channel, xds, tallies["Delta"])),
    ]
    await asyncio.sleep(8)  # both streams get and ACK the full config
    start = 0.0
    print("initial: " + _row(tallies, start))
    loop = asyncio.get_running_loop()
    appmesh = client(endpoint, ACCOUNT)
    changes = {
        "a proxy of n5 registers": lambda: register(endpoint, "n5"),
        "n7's listener port 8080 -> 8081": lambda: appmesh.update_virtual_node(
            meshName=MESH, virtualNodeName="n7", spec=node_spec("n7", 8081)
        ),
    }
    for what, change in changes.items():
        start = time.monotonic()
        await loop.run_in_executor(None, change)
        await asyncio.sleep(3)
        print(f"{what}: " + _row(tallies, start))
    for stream in streams:
        stream.cancel()
    await channel.close()


def _row(tallies: dict[str, Tally], since: float) -> str:
    parts = []
    for name, tally in tallies.items():
        responses, size, resources, removed = tally.since(since)
        extra = f", {removed} removed" if name == "Delta" else ""
        parts.append(
            f"{name} {responses} responses, {resources} resources{extra}, {size / 1024:.1f} KiB"
        )
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    process, endpoint, xds = start(args.nodes)
    try:
        began = time.perf_counter()
        populate(endpoint, args.nodes)
        print(f"{args.nodes} nodes and services in {time.perf_counter() - began:.0f} s")
        asyncio.run(measure(endpoint, xds))
        print("load average:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    finally:
        process.terminate()
        process.wait(timeout=20)


if __name__ == "__main__":
    main()
