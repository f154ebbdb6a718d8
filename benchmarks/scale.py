"""Scale-out side by side in one run: SQLite, DynamoDB with 1 replica, with 3 replicas.

    python benchmarks/scale.py [--nodes 300] [--clients 6] [--watchers 1000]

For each set-up (SQLite on disk in one process; ``--store dynamodb://`` on moto's
server, served one request at a time as tests/api does, with one and with three
``serve`` replicas): control-plane ops/s (creates, updates, describes of ``--nodes``
virtual nodes by ``--clients`` boto3 threads spread over the replicas), Describe p50
and p99, and the push latency from a route update answered by replica 1 to
``--watchers`` xDS long-polls spread over every replica (the time until the last of
them holds the new version). Ratios to SQLite are printed beside each number.

The processes (moto included) share this machine's cores, so absolutes are of this
machine only; compare the ratios. The scaffolding is benchmarks/stores.py's (the
servers, the clients, the timed loops) and benchmarks/translation.py's (watchers).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The repository's proxy package first: benchmarks/proxy.py would shadow it when
# translation.py (imported below) looks for proxy.xds_auth.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
importlib.import_module("proxy.xds_auth")
from stores import SPEC, client, serve, start, timed, wait_visible  # noqa: E402
from translation import build_propagation_mesh, propagation, raise_file_limit  # noqa: E402

from appmesh_api.dynamo import local_dynamodb_command  # noqa: E402
from appmesh_api.localports import free_port  # noqa: E402

PUSH_ACCOUNT = "222233334444"  # translation.py's watchers sign as this account


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe_latencies(clients: list, mesh: str, nodes: int) -> list[float]:
    """ms of each DescribeVirtualNode, the clients calling at once."""

    def run(offset: int) -> list[float]:
        mine, taken = clients[offset], []
        for index in range(offset, nodes, len(clients)):
            started = time.perf_counter()
            mine.describe_virtual_node(meshName=mesh, virtualNodeName=f"n{index}")
            taken.append((time.perf_counter() - started) * 1000)
        return taken

    with ThreadPoolExecutor(len(clients)) as pool:
        return [ms for part in pool.map(run, range(len(clients))) for ms in part]


def control_plane(endpoints: list[str], nodes: int, threads: int) -> dict[str, float]:
    clients = [client(endpoints[i % len(endpoints)]) for i in range(threads)]
    mesh = f"scale-{uuid.uuid4().hex[:6]}"
    clients[0].create_mesh(meshName=mesh)
    for other in endpoints[1:]:  # a replica must know the mesh before writing in it
        wait_visible(client(other), mesh, None)
    create = timed(
        clients,
        nodes,
        lambda c, i: c.create_virtual_node(meshName=mesh, virtualNodeName=f"n{i}", spec=SPEC),
    )
    for other in endpoints[1:]:
        wait_listed(client(other), mesh, nodes)
    started = time.perf_counter()
    latencies = describe_latencies(clients, mesh, nodes)
    describe = nodes / (time.perf_counter() - started)
    update = timed(
        clients,
        nodes,
        lambda c, i: c.update_virtual_node(meshName=mesh, virtualNodeName=f"n{i}", spec=SPEC),
    )
    return {
        "create/s": create,
        "update/s": update,
        "describe/s": describe,
        "describe p50 ms": statistics.median(latencies),
        "describe p99 ms": percentile(latencies, 0.99),
    }


def wait_listed(other, mesh: str, nodes: int) -> None:
    """Until ``other`` lists all ``nodes`` (its poll has caught up with the creates)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pages = other.get_paginator("list_virtual_nodes").paginate(meshName=mesh)
        if sum(len(page["virtualNodes"]) for page in pages) >= nodes:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{mesh}: the other replica never listed {nodes} nodes")


def push(endpoints: list[str], watchers: int) -> dict[str, float]:
    """Route update on the first endpoint -> every watcher (spread over all) has it."""
    from control_plane import client as account_client

    build_propagation_mesh(account_client(endpoints[0], PUSH_ACCOUNT))
    for other in endpoints[1:]:
        deadline = time.monotonic() + 10
        while True:  # the other replicas must hold the mesh before their watchers ask
            try:
                account_client(other, PUSH_ACCOUNT).describe_route(
                    meshName="prop", virtualRouterName="r0", routeName="route"
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    latencies = asyncio.run(propagation(endpoints[0], PUSH_ACCOUNT, watchers, endpoints))
    return {
        "push p50 ms": statistics.median(latencies),
        "push p99 ms": percentile(latencies, 0.99),
        "push max ms": max(latencies),
    }


def setups(tmp: Path, processes: list[subprocess.Popen], nodes: int):
    """(name, endpoints) for each set-up, its servers started on first use, with the
    node quota raised by configuration above ``--nodes`` (App Mesh's default is 200)."""
    quota = ("--quota", f"virtual-nodes-per-mesh={max(200, nodes + 10)}")
    process, endpoint = serve(tmp, *quota)
    processes.append(process)
    yield "SQLite, 1 process", [endpoint]
    for replicas in (1, 3):
        moto_port = free_port()  # a table per set-up, on a moto of its own
        processes.append(
            start(local_dynamodb_command(moto_port), moto_port, "moto", tmp / f"moto{replicas}.log")
        )
        store = f"dynamodb://scale?endpoint=http://127.0.0.1:{moto_port}&region=us-east-1"
        endpoints = []
        for _ in range(replicas):
            process, endpoint = serve(tmp, "--store", store, "--create-table", *quota)
            processes.append(process)
            endpoints.append(endpoint)
        yield f"DynamoDB (moto), {replicas} replica{'s' if replicas > 1 else ''}", endpoints


COLUMNS = (
    "create/s",
    "update/s",
    "describe/s",
    "describe p50 ms",
    "describe p99 ms",
    "push p50 ms",
    "push p99 ms",
    "push max ms",
)


def report(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    print(
        f"{args.nodes} virtual nodes, {args.clients} boto3 threads; "
        f"push: a route update to {args.watchers} xDS long-polls spread over the replicas"
    )
    print("(xN: ratio to SQLite; higher is better for /s, lower for ms; a push answered")
    print(" before the update's own answer arrived counts 0 ms, and has no ratio)")
    base = rows[0][1]
    print(f"{'':16}" + "".join(f"{name:>28}" for name, _ in rows))
    for column in COLUMNS:
        cells = []
        for _, numbers in rows:
            value, against = numbers[column], base[column]
            ratio = f"(x{value / against:.2f})" if against >= 0.05 else "(x -)"
            cells.append(f"{value:.1f} {ratio:>8}")
        print(f"{column:16}" + "".join(f"{cell:>28}" for cell in cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--watchers", type=int, default=1000)
    args = parser.parse_args()
    raise_file_limit()
    rows: list[tuple[str, dict[str, float]]] = []
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            for name, endpoints in setups(Path(folder), processes, args.nodes):
                numbers = control_plane(endpoints, args.nodes, args.clients)
                numbers.update(push(endpoints, args.watchers))
                rows.append((name, numbers))
                print(f"{name}: done", file=sys.stderr)
        finally:
            for process in reversed(processes):  # replicas before their DynamoDB
                process.terminate()
                process.wait(timeout=10)
    report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
