"""A mesh far beyond App Mesh's quotas: which watchers one route change reaches, and when.

    python benchmarks/bigmesh.py [--nodes 10000] [--services 2500] [--watchers 1000 5000]
                                 [--tree /path/to/other/checkout ...]

Starts ``serve`` (from this checkout, or from each ``--tree`` for a before/after run)
with quotas raised, builds a mesh of N virtual nodes and S virtual services (each service
a router with one route to a node; node j's backends are services j, j+1, j+2 mod S),
parks W REST long-polls (``?wait=60``, one proxy per node n0..n(W-1)), updates the route
of router r1 with boto3 and measures, from the moment UpdateRoute returned:

- how long until every affected watcher (a node whose backends include s1) held the
  new version (p50 / max);
- how many unaffected watchers were answered too (a needless push each) within the
  same window plus one second.

The mesh is built once (through this checkout's server) and each tree serves a copy.
Bounded: a parked watcher waits at most 60 s, a run at most 600 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from botocore.credentials import Credentials

# benchmarks/proxy.py would shadow the proxy package: import it before adding this
# directory (last) to the path for the sibling benchmark modules.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
from proxy.xds_auth import node_account, xds_signer  # noqa: E402

sys.path.append(str(HERE))
from control_plane import client, free_port, wait_for_port  # noqa: E402
from translation import raise_file_limit  # noqa: E402

ACCOUNT = "222233334444"
MESH = "big"
CHANGED_ROUTER = 1
LISTENERS = [{"portMapping": {"port": 8080, "protocol": "http"}}]


def start(tree: Path, data_dir: str, nodes: int, services: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    quotas = (
        f"virtual-nodes-per-mesh={nodes + 10},virtual-services-per-mesh={services + 10},"
        f"virtual-routers-per-mesh={services + 10}"
    )
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
    command += ["--data-dir", data_dir, "--xds-port", "0"]
    command += ["--log-level", os.environ.get("BIGMESH_LOG_LEVEL", "warning")]
    command += ["--xray-daemon-port", "0"]
    env = {**os.environ, "PYTHONPATH": str(tree), "APPMESH_LOCAL_QUOTAS": quotas}
    log = open(Path(tempfile.gettempdir()) / f"bigmesh-serve-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=log, stderr=log)
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def _route(weight: int) -> dict:
    action = {"weightedTargets": [{"virtualNode": "n0", "weight": weight}]}
    return {"httpRoute": {"match": {"prefix": "/"}, "action": action}}


def populate(endpoint: str, nodes: int, services: int) -> float:
    """The mesh through the API (4 client threads); returns the seconds it took."""
    started = time.perf_counter()
    appmesh = client(endpoint, ACCOUNT)
    appmesh.create_mesh(meshName=MESH)
    clients = [client(endpoint, ACCOUNT) for _ in range(4)]

    def service(i: int) -> None:
        api = clients[i % 4]
        api.create_virtual_router(
            meshName=MESH, virtualRouterName=f"r{i}", spec={"listeners": LISTENERS}
        )
        api.create_route(
            meshName=MESH, virtualRouterName=f"r{i}", routeName="route", spec=_route(1)
        )
        provider = {"virtualRouter": {"virtualRouterName": f"r{i}"}}
        api.create_virtual_service(
            meshName=MESH, virtualServiceName=f"s{i}.local", spec={"provider": provider}
        )

    def node(j: int) -> None:
        backends = [f"s{(j + k) % services}.local" for k in range(3)]
        spec = {
            "listeners": LISTENERS,
            "serviceDiscovery": {"dns": {"hostname": f"n{j}.local"}},
            "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
        }
        clients[j % 4].create_virtual_node(meshName=MESH, virtualNodeName=f"n{j}", spec=spec)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(node, range(nodes)))  # backends may name services not yet made
        list(pool.map(service, range(services)))
    return time.perf_counter() - started


def affected(watchers: int, services: int) -> set[int]:
    """Nodes among the watchers whose backends (j, j+1, j+2 mod S) include the service."""
    return {j for j in range(watchers) if (CHANGED_ROUTER - j) % services in (0, 1, 2)}


class Watcher:
    def __init__(self, endpoint: str, j: int) -> None:
        self.url = f"{endpoint}/v3/discovery:clusters"
        self.arn = f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{MESH}/virtualNode/n{j}"
        self.sign = xds_signer(Credentials(node_account(self.arn, None), "local"), "us-east-1")
        self.version = ""

    async def ask(self, session: aiohttp.ClientSession, wait: float = 0) -> tuple[int, str]:
        request: dict = {"node": {"id": self.arn}}
        if self.version:
            request.update(version_info=self.version, response_nonce=self.version)
        body = json.dumps(request).encode()
        url = self.url + (f"?wait={wait}" if wait else "")
        async with session.post(url, data=body, headers=self.sign(url, body)) as response:
            if response.status == 304:
                return 304, self.version
            answer = await response.json()
            return response.status, answer["version_info"]


async def quiet(cpu: Callable[[], float], servers: int = 1, most: float = 10.0) -> None:
    """Until the servers spend under 10% of a core each for 0.3 s (every poll parked;
    replicas keep polling their table), so the CPU measured for a change is the
    change's. Bounded well below the watchers' 60 s wait."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        before = cpu()
        await asyncio.sleep(0.3)
        if cpu() - before < 0.03 * servers:
            return


async def one_run(
    endpoint: str, watchers: int, services: int, weight: int, cpu: Callable | None = None
) -> dict:
    """One route change to ``watchers`` parked long-polls; ``cpu`` (the server's CPU
    seconds) adds the CPU spent from the update to the last affected answer."""
    appmesh = client(endpoint, ACCOUNT)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    crowd = [Watcher(endpoint, j) for j in range(watchers)]
    gate = asyncio.Semaphore(100)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def current(watcher: Watcher) -> None:
            async with gate:
                for attempt in range(3):  # a pooled connection the server closed idle
                    try:
                        watcher.version = (await watcher.ask(session))[1]
                        return
                    except aiohttp.ClientError:
                        if attempt == 2:
                            raise

        # Register every proxy first, then read each one's current version: the
        # registrations themselves move versions, and a parked poll must hold the latest.
        for _ in range(2):
            await asyncio.gather(*(current(w) for w in crowd))
        arrivals: dict[int, float] = {}

        failed: list[BaseException] = []

        async def park(j: int, watcher: Watcher) -> None:
            # A fresh connection each: a pooled one the server closed idle would fail.
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True), timeout=timeout
            ) as own:
                try:
                    status, version = await watcher.ask(own, wait=60)
                except aiohttp.ClientError as error:
                    failed.append(error)
                    return
            if status == 200 and version != watcher.version:
                arrivals[j] = time.perf_counter()

        tasks = [asyncio.create_task(park(j, w)) for j, w in enumerate(crowd)]
        await asyncio.sleep(1.0 + watchers / 2000)  # let every long-poll park
        if cpu is not None:
            await quiet(cpu)
        early = len(arrivals)
        cpu_before = cpu() if cpu else 0.0
        started = time.perf_counter()
        await asyncio.to_thread(
            appmesh.update_route,
            meshName=MESH,
            virtualRouterName=f"r{CHANGED_ROUTER}",
            routeName="route",
            spec=_route(weight),
        )
        returned = time.perf_counter()
        cpu_update = cpu() - cpu_before if cpu else None
        wanted = affected(watchers, services)
        deadline = returned + 60
        while not wanted <= arrivals.keys() and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        all_in = time.perf_counter()
        cpu_spent = cpu() - cpu_before if cpu else None
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted((arrivals[j] - returned) * 1000 for j in wanted if j in arrivals)
    needless = sum(1 for j, at in arrivals.items() if j not in wanted and at >= returned)
    return {
        "watchers": watchers,
        "affected": len(wanted),
        "arrived": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "max_ms": latencies[-1] if latencies else None,
        "unaffected_answered": needless,
        "answered_before_change": early,
        "waited_s": round(all_in - returned, 3),
        "failed_polls": len(failed),
        "push_cpu_ms": None if cpu_spent is None else round(cpu_spent * 1000),
        "update_cpu_ms": None if cpu_update is None else round(cpu_update * 1000),
        "update_s": round(returned - started, 3),
    }


def build(data_dir: str, args: argparse.Namespace) -> None:
    """The mesh, once, through this checkout's server; each tree then starts on a copy."""
    process, endpoint = start(
        Path(__file__).resolve().parents[1], data_dir, args.nodes, args.services
    )
    try:
        took = populate(endpoint, args.nodes, args.services)
        print(f"built {args.nodes} nodes, {args.services} services in {took:.0f} s")
    finally:
        process.terminate()
        process.wait(timeout=60)


def run_tree(tree: Path, built: str, args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory() as data_dir:
        shutil.copytree(built, data_dir, dirs_exist_ok=True)
        process, endpoint = start(tree, data_dir, args.nodes, args.services)
        try:
            results = []
            for i, count in enumerate(args.watchers):
                result = asyncio.run(
                    asyncio.wait_for(one_run(endpoint, count, args.services, 2 + i), 600)
                )
                print("  " + json.dumps(result))
                results.append(result)
            return results
        finally:
            process.terminate()
            process.wait(timeout=60)


def main() -> None:
    raise_file_limit()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--services", type=int, default=2500)
    parser.add_argument("--watchers", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--tree", type=Path, nargs="+", default=[Path(__file__).parents[1]])
    parser.add_argument("--built", help="a data dir this script built before (skips building)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        built = args.built or scratch
        if not args.built:
            build(built, args)
        for tree in args.tree:
            print(f"serve from {tree}")
            run_tree(tree.resolve(), built, args)


if __name__ == "__main__":
    main()
