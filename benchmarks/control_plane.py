"""Control plane throughput: appmesh-local vs moto's server, one boto3 workload, one run.

    python benchmarks/control_plane.py [--nodes 200] [--clients 1 8]

Both servers are started here on 127.0.0.1 (appmesh-local with its SQLite store
on disk, moto_server in memory). For each client count the workload is: create N
virtual nodes, describe each, list them all with pagination (limit 10), update
each, delete each. Printed per phase: ops/s, p50 and p99 latency for both, and
the throughput ratio. Each client is its own process; boto3's own CPU cost is in
every number, on both sides, and clients share the machine's 2 cores with the server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import boto3
from botocore.config import Config

from appmesh_api.localports import free_port, wait_for_port

PHASES = ("create", "describe", "list", "update", "delete")
MESH = "bench"


def start_appmesh_local(data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "appmesh_api.cli",
        "serve",
        "--port",
        str(port),
        "--xds-port",
        "0",
    ]
    process = subprocess.Popen(
        [*command, "--data-dir", data_dir, "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    binary = shutil.which("moto_server")
    command = [binary] if binary else [sys.executable, "-m", "moto.server"]
    process = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def client(endpoint: str, account: str):
    return boto3.client(
        "appmesh",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=account,
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=4),
    )


def node_spec(port: int) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "bench.local"}},
    }


@dataclass
class PhaseResult:
    operations: int
    seconds: float
    latencies_ms: list[float]

    @property
    def ops_per_second(self) -> float:
        return self.operations / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(call: Callable[[], object], latencies: list[float]) -> None:
    start = time.perf_counter()
    call()
    latencies.append((time.perf_counter() - start) * 1000)


def worker_ops(phase: str, appmesh, names: list[str]) -> list[float]:
    latencies: list[float] = []
    for name in names:
        if phase == "create":
            timed(
                lambda n=name: appmesh.create_virtual_node(
                    meshName=MESH, virtualNodeName=n, spec=node_spec(8080)
                ),
                latencies,
            )
        elif phase == "describe":
            timed(
                lambda n=name: appmesh.describe_virtual_node(meshName=MESH, virtualNodeName=n),
                latencies,
            )
        elif phase == "update":
            timed(
                lambda n=name: appmesh.update_virtual_node(
                    meshName=MESH, virtualNodeName=n, spec=node_spec(9090)
                ),
                latencies,
            )
        elif phase == "delete":
            timed(
                lambda n=name: appmesh.delete_virtual_node(meshName=MESH, virtualNodeName=n),
                latencies,
            )
    return latencies


def list_all(appmesh, latencies: list[float]) -> int:
    token, pages = None, 0
    while True:
        start = time.perf_counter()
        kwargs = {"nextToken": token} if token else {}
        page = appmesh.list_virtual_nodes(meshName=MESH, limit=10, **kwargs)
        latencies.append((time.perf_counter() - start) * 1000)
        pages += 1
        token = page.get("nextToken")
        if not token:
            return pages


_worker_client = None


def _init_worker(endpoint: str, account: str) -> None:
    """Each client process builds its boto3 client once, before any phase is timed."""
    global _worker_client
    _worker_client = client(endpoint, account)


def _warm_up(_index: int) -> bool:
    _worker_client.list_meshes()
    return True


def _run_share(phase: str, names: list[str]) -> tuple[int, list[float]]:
    if phase == "list":
        latencies: list[float] = []
        return list_all(_worker_client, latencies), latencies
    latencies = worker_ops(phase, _worker_client, names)
    return len(latencies), latencies


def run_workload(endpoint: str, nodes: int, clients: int, account: str) -> dict[str, PhaseResult]:
    """Run every phase with ``clients`` client *processes* (threads would share one GIL
    and measure boto3's contention rather than the server)."""
    setup = client(endpoint, account)
    setup.create_mesh(meshName=MESH)
    names = [f"node-{index:04d}" for index in range(nodes)]
    shares = [names[index::clients] for index in range(clients)]
    results: dict[str, PhaseResult] = {}
    with ProcessPoolExecutor(
        clients, initializer=_init_worker, initargs=(endpoint, account)
    ) as pool:
        list(pool.map(_warm_up, range(clients * 4)))
        for phase in PHASES:
            start = time.perf_counter()
            per_worker = list(pool.map(_run_share, [phase] * clients, shares))
            elapsed = time.perf_counter() - start
            latencies = [ms for _, worker in per_worker for ms in worker]
            operations = sum(count for count, _ in per_worker)
            results[phase] = PhaseResult(operations, elapsed, latencies)
    setup.delete_mesh(meshName=MESH)
    return results


def report(clients: int, ours: dict[str, PhaseResult], moto: dict[str, PhaseResult]) -> None:
    print(f"\n{clients} concurrent client(s)")
    header = f"{'phase':<9}{'appmesh-local ops/s':>21}{'p50 ms':>8}{'p99 ms':>8}"
    header += f"{'moto ops/s':>12}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>8}"
    print(header)
    for phase in PHASES:
        a, m = ours[phase], moto[phase]
        print(
            f"{phase:<9}{a.ops_per_second:>21.0f}{a.percentile(0.5):>8.2f}{a.percentile(0.99):>8.2f}"
            f"{m.ops_per_second:>12.0f}{m.percentile(0.5):>8.2f}{m.percentile(0.99):>8.2f}"
            f"{a.ops_per_second / m.ops_per_second:>7.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        ours_process, ours = start_appmesh_local(data_dir)
        moto_process, moto = start_moto()
        print(f"appmesh-local {ours} (SQLite in {data_dir}); moto_server {moto}")
        print(f"{args.nodes} virtual nodes per run; machine: {os.cpu_count()} CPUs")
        try:
            for index, clients in enumerate(args.clients):
                account = f"{100000000000 + index:012d}"
                moto_results = run_workload(moto, args.nodes, clients, account)
                our_results = run_workload(ours, args.nodes, clients, account)
                report(clients, our_results, moto_results)
        finally:
            for process in (ours_process, moto_process):
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    main()
