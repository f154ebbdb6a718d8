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
benchmarks/push.py times the push alone, two checkouts paired in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import uvloop

# The repository's proxy package first: benchmarks/proxy.py would shadow it when
# translation.py (imported below) looks for proxy.xds_auth.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
importlib.import_module("proxy.xds_auth")
from connected import connected_rss, cpu_seconds  # noqa: E402
from stores import SPEC, client, serve, start, timed, wait_visible  # noqa: E402
from translation import (  # noqa: E402
    build_propagation_mesh,
    build_snapshot,
    propagation,
    raise_file_limit,
    time_translation,
)

from appmesh_api.dynamo import local_dynamodb_command  # noqa: E402
from appmesh_api.localports import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
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


def push(
    endpoints: list[str], pids: list[int], watchers: int, rounds: int, raw: bool = True
) -> dict[str, float]:
    """Route update on the first endpoint -> every watcher (spread over all) has it;
    ``rounds`` times: the median round's latencies, the servers' CPU per push (and the
    watchers' own). ``raw``: the long-polls on translation.LongPoll, not aiohttp."""
    runs = push_rounds(endpoints, pids, watchers, rounds, raw)
    latencies = sorted(runs, key=lambda run: run["p99"])[len(runs) // 2]["latencies"]
    return {
        "push p50 ms": statistics.median(latencies),
        "push p99 ms": percentile(latencies, 0.99),
        "push max ms": max(latencies),
        "push CPU ms": statistics.mean(run["server_cpu"] for run in runs),
    }


def push_rounds(
    endpoints: list[str], pids: list[int], watchers: int, rounds: int, raw: bool
) -> list[dict]:
    """``rounds`` pushes (the mesh built first): each one's latencies, p99, and CPU ms of
    the servers and of this process's watchers from the update to the last answer."""
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
    runs = []
    for _ in range(rounds):
        meter: list = [lambda: cpu_seconds(pids)]
        # The raw watchers on uvloop, as the servers are: 1,000 proxies would not share
        # one process, so this one should take as little of the cores as it can.
        run = uvloop.run if raw else asyncio.run
        latencies = run(propagation(endpoints[0], PUSH_ACCOUNT, watchers, endpoints, meter, raw))
        runs.append(
            {
                "latencies": latencies,
                "p99": percentile(latencies, 0.99),
                "server_cpu": meter[1] * 1000,
                "watcher_cpu": meter[2] * 1000,
            }
        )
    return runs


def setups(tmp: Path, processes: list[subprocess.Popen], nodes: int):
    """(name, endpoints) for each set-up, its servers started on first use, with the
    node quota raised by configuration above ``--nodes`` (App Mesh's default is 200)."""
    quota = ("--quota", f"virtual-nodes-per-mesh={max(200, nodes + 10)}")
    process, endpoint = serve(tmp, *quota)
    processes.append(process)
    yield "SQLite, 1 process", [endpoint], [process.pid]
    for replicas in (1, 3):
        moto_port = free_port()  # a table per set-up, on a moto of its own
        processes.append(
            start(local_dynamodb_command(moto_port), moto_port, "moto", tmp / f"moto{replicas}.log")
        )
        store = f"dynamodb://scale?endpoint=http://127.0.0.1:{moto_port}&region=us-east-1"
        endpoints, pids = [], []
        for _ in range(replicas):
            process, endpoint = serve(tmp, "--store", store, "--create-table", *quota)
            processes.append(process)
            endpoints.append(endpoint)
            pids.append(process.pid)
        name = f"DynamoDB (moto), {replicas} replica{'s' if replicas > 1 else ''}"
        yield name, endpoints, pids


COLUMNS = (
    "create/s",
    "update/s",
    "describe/s",
    "describe p50 ms",
    "describe p99 ms",
    "push p50 ms",
    "push p99 ms",
    "push max ms",
    "push CPU ms",
)


def connected_memory(tmp: Path, count: int) -> dict[str, float]:
    """One SQLite process with gRPC ADS on: RSS idle, with ``count`` parked long-polls,
    with ``count`` ADS streams (one node's proxies, each on its own connection)."""
    from control_plane import client as account_client

    xds_port = free_port()
    process, endpoint = serve(tmp, "--xds-port", str(xds_port))
    try:
        build_propagation_mesh(account_client(endpoint, PUSH_ACCOUNT))
        arn = f"arn:aws:appmesh:us-east-1:{PUSH_ACCOUNT}:mesh/prop/virtualNode/client"
        return asyncio.run(
            connected_rss(process.pid, endpoint, f"127.0.0.1:{xds_port}", PUSH_ACCOUNT, arn, count)
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def big_meshes(sizes: list[int], watcher_counts: list[int]) -> list[dict]:
    """Per mesh size (SQLite, one process, built through the API with bigmesh.py's
    shape): translate() CPU for one node, then one route change to each count of
    parked long-polls (few affected), with the server's CPU for the push."""
    import bigmesh

    rows = []
    for nodes in sizes:
        services = max(3, nodes // 4)
        translation = {
            "translate 3 backends ms": time_translation(build_snapshot(4 * nodes, "DROP_ALL"), 3),
            "translate ALLOW_ALL ms": time_translation(build_snapshot(4 * nodes, "ALLOW_ALL"), 3),
        }
        with tempfile.TemporaryDirectory() as data_dir:
            process, endpoint = bigmesh.start(ROOT, data_dir, nodes, services)
            try:
                built = bigmesh.populate(endpoint, nodes, services)
                pids = [process.pid]
                for index, count in enumerate(c for c in watcher_counts if c <= nodes):
                    run = bigmesh.one_run(
                        endpoint, count, services, 2 + index, partial(cpu_seconds, pids)
                    )
                    result = asyncio.run(asyncio.wait_for(run, 600))
                    rows.append({"nodes": nodes, "built s": built, **translation, **result})
                    print(f"{nodes} nodes: {json.dumps(result)}", file=sys.stderr)
            finally:
                process.terminate()
                process.wait(timeout=60)
    return rows


def report_memory(numbers: dict[str, float], count: int) -> None:
    print(f"\nServer RSS with {count} proxies of one node connected (SQLite, one process)")
    for name, value in numbers.items():
        print(f"  {name:22} {value:8.1f}")


def report_big(rows: list[dict]) -> None:
    print("\nBig meshes (SQLite, one process): translate() CPU for one node (median of 3),")
    print("and one route change to W parked long-polls (A of them affected)")
    columns = ("nodes", "translate 3 backends ms", "translate ALLOW_ALL ms", "watchers")
    columns += ("affected", "p50_ms", "max_ms", "unaffected_answered", "push_cpu_ms")
    print("".join(f"{name:>26}" for name in columns))
    for row in rows:
        cells = (row.get(name) for name in columns)
        print("".join(f"{c:>26.1f}" if isinstance(c, float) else f"{c!s:>26}" for c in cells))


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
    parser.add_argument("--push-rounds", type=int, default=3, help="route updates per set-up")
    parser.add_argument(
        "--aiohttp-watchers", action="store_true", help="long-poll with aiohttp (before: raw)"
    )
    parser.add_argument("--connected", type=int, default=1000, help="proxies for RSS (0: skip)")
    parser.add_argument("--big", type=int, nargs="*", default=[1000, 10000], help="mesh sizes")
    parser.add_argument("--big-watchers", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--skip-setups", action="store_true", help="only --connected and --big")
    args = parser.parse_args()
    raise_file_limit()
    rows: list[tuple[str, dict[str, float]]] = []
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            for name, endpoints, pids in setups(Path(folder), processes, args.nodes):
                if args.skip_setups:
                    break
                numbers = control_plane(endpoints, args.nodes, args.clients)
                raw = not args.aiohttp_watchers
                numbers.update(push(endpoints, pids, args.watchers, args.push_rounds, raw))
                rows.append((name, numbers))
                print(f"{name}: done", file=sys.stderr)
        finally:
            for process in reversed(processes):  # replicas before their DynamoDB
                process.terminate()
                process.wait(timeout=10)
        if rows:
            report(rows, args)
        if args.connected:
            report_memory(connected_memory(Path(folder), args.connected), args.connected)
    if args.big:
        report_big(big_meshes(args.big, args.big_watchers))
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
