"""Translation cost as a mesh grows, and config propagation to many watching proxies.

    python benchmarks/translation.py [--sizes 10 100 1000 10000] [--watchers 10 100 1000]

Part 1 (pure, no I/O): time ``translate()`` for one virtual node in meshes of N
resources, two ways: a node with 3 backends (what it reaches stays fixed while
the mesh grows) and, for contrast, an ALLOW_ALL node that reaches every service.
Cost should grow with what the node reaches, not with the mesh.

Part 2 (live): start appmesh-local, connect W long-polling proxies (REST xDS,
``?wait=30``), update a route with boto3, and measure how long after the API call
returned each proxy held the new version.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from botocore.credentials import Credentials

# benchmarks/proxy.py would shadow the proxy package: import it before adding this
# directory (last) to the path for the sibling benchmark modules.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
from proxy.xds_auth import node_account, xds_signer  # noqa: E402

sys.path.append(str(HERE))
from control_plane import client, free_port, wait_for_port  # noqa: E402

from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity  # noqa: E402
from envoy_bootstrap.translate import translate  # noqa: E402


def _node(mesh: str, name: str, backends: list[str]) -> dict:
    spec = {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"{name}.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }
    return {"meshName": mesh, "virtualNodeName": name, "spec": spec, "status": {"status": "ACTIVE"}}


def build_snapshot(resources: int, egress: str) -> MeshSnapshot:
    """A mesh of about ``resources`` resources: per service a node, a router and a route."""
    services = max(1, resources // 4)
    mesh = "bench"
    nodes = {f"n{i}": _node(mesh, f"n{i}", []) for i in range(services)}
    # Under ALLOW_ALL a node without backends reaches every service of the mesh.
    backends = [] if egress == "ALLOW_ALL" else [f"s{i}.local" for i in range(min(3, services))]
    nodes["client"] = _node(mesh, "client", backends)
    routers, routes, virtual_services = {}, {}, {}
    for i in range(services):
        listeners = [{"portMapping": {"port": 8080, "protocol": "http"}}]
        routers[f"r{i}"] = {
            "meshName": mesh,
            "virtualRouterName": f"r{i}",
            "spec": {"listeners": listeners},
        }
        action = {"weightedTargets": [{"virtualNode": f"n{i}", "weight": 1}]}
        routes[f"r{i}"] = {
            "route": {
                "meshName": mesh,
                "routeName": "route",
                "virtualRouterName": f"r{i}",
                "spec": {"httpRoute": {"match": {"prefix": "/"}, "action": action}},
            }
        }
        provider = {"virtualRouter": {"virtualRouterName": f"r{i}"}}
        virtual_services[f"s{i}.local"] = {
            "meshName": mesh,
            "virtualServiceName": f"s{i}.local",
            "spec": {"provider": provider},
        }
    return MeshSnapshot(
        mesh={"meshName": mesh, "spec": {"egressFilter": {"type": egress}}},
        virtual_nodes=nodes,
        virtual_routers=routers,
        routes=routes,
        virtual_services=virtual_services,
        virtual_gateways={},
        gateway_routes={},
    )


def time_translation(snapshot: MeshSnapshot, repeats: int) -> float:
    node = NodeIdentity(kind="virtualNode", name="client")
    samples = []
    for _ in range(repeats):
        # CPU time of this process: on a shared machine wall time measures the neighbours.
        started = time.process_time()
        translate(snapshot, node)
        samples.append(time.process_time() - started)
    return statistics.median(samples) * 1000


def part_one(sizes: list[int]) -> None:
    print("translate() for one node, median CPU ms")
    print(f"{'resources':>10}{'3 backends':>13}{'ALLOW_ALL (all services)':>27}")
    previous = None
    for size in sizes:
        repeats = 20 if size <= 1000 else 3
        fixed = time_translation(build_snapshot(size, "DROP_ALL"), repeats)
        everything = time_translation(build_snapshot(size, "ALLOW_ALL"), repeats)
        growth = "" if previous is None else f"   (x{everything / previous:.1f} for x10 resources)"
        print(f"{size:>10}{fixed:>13.2f}{everything:>27.2f}{growth}")
        previous = everything


async def watch(
    session, url: str, node_id: str, ready: asyncio.Event, counter: list, raw: bool = False
) -> float:
    """One watcher: its config now, then a long-poll for the next version; the time the
    answer arrived. ``raw``: the long-poll on a bare asyncio protocol (``LongPoll``)."""
    request: dict = {"node": {"id": node_id}}
    sign = xds_signer(Credentials(node_account(node_id, None), "local"), "us-east-1")
    body = json.dumps(request).encode()
    async with session.post(url, data=body, headers=sign(url, body)) as response:
        first = await response.json()
    version = first["version_info"]
    request.update(version_info=version, response_nonce=version)
    body = json.dumps(request).encode()
    waiting = url + "?wait=60"
    if raw:
        parked = await LongPoll.send(waiting, body, sign(waiting, body))
    counter.append(1)
    if len(counter) == counter[0] + 1:
        ready.set()
    if raw:
        return await parked.arrived
    async with session.post(waiting, data=body, headers=sign(waiting, body)) as response:
        await response.read()
        return time.perf_counter()


class LongPoll(asyncio.Protocol):
    """A long-poll that notes when its whole answer arrived and does nothing else.

    1,000 watchers in one benchmark process stand for 1,000 proxies in processes of
    their own; aiohttp's client spent 100-150 ms of this process's CPU per push taking
    in their answers, on the cores the servers under test share. This one only finds
    the end of the head and counts the body's bytes (one read, usually)."""

    def __init__(self) -> None:
        self.arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.data = b""

    @classmethod
    async def send(cls, url: str, body: bytes, headers: dict[str, str]) -> LongPoll:
        parts = urlsplit(url)
        _, poll = await asyncio.get_running_loop().create_connection(
            cls, parts.hostname, parts.port
        )
        lines = [f"POST {parts.path}?{parts.query} HTTP/1.1", f"host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"content-length: {len(body)}", "connection: close", "", ""]
        poll.transport.write("\r\n".join(lines).encode() + body)
        return poll

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        head, found, rest = self.data.partition(b"\r\n\r\n")
        if not found or self.arrived.done():
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) >= length:
            self.arrived.set_result(time.perf_counter())
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.arrived.done():
            self.arrived.set_exception(exc or ConnectionError("closed before the answer"))


async def propagation(
    endpoint: str,
    account: str,
    watchers: int,
    watch_at: list[str] | None = None,
    meter: list | None = None,
    raw: bool = False,
) -> list[float]:
    """ms from the route update's answer (made at ``endpoint``) to each watcher's new
    version; watchers are spread round-robin over ``watch_at`` (default: ``endpoint``).
    ``meter``: ``[cpu]``, a function returning the servers' CPU seconds; the CPU they
    spent from just before the update to the last watcher's answer is appended, then
    this process's own (the watchers') from the update's answer on. ``raw``: the long-polls on
    ``LongPoll`` rather than aiohttp."""
    appmesh = client(endpoint, account)
    arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/prop/virtualNode/client"
    urls = [f"{where}/v3/discovery:clusters" for where in watch_at or [endpoint]]
    ready = asyncio.Event()
    counter = [watchers]
    # A fresh connection per request: a pooled one idle past uvicorn's keep-alive (5 s,
    # easily reached while 1,000 watchers start on a busy machine) may close under it.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        tasks = [
            asyncio.create_task(watch(session, urls[index % len(urls)], arn, ready, counter, raw))
            for index in range(watchers)
        ]
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(0.5)  # let every long-poll reach the server and park
        if meter:
            from bigmesh import quiet

            await quiet(meter[0], len(urls))
        weight = 1 + next(_WEIGHTS) % 50  # a new weight each run: each one is a change
        spec = {
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"weightedTargets": [{"virtualNode": "n0", "weight": weight}]},
            }
        }
        cpu_before = meter[0]() if meter else 0.0
        await asyncio.to_thread(
            appmesh.update_route,
            meshName="prop",
            virtualRouterName="r0",
            routeName="route",
            spec=spec,
        )
        returned = time.perf_counter()
        own_before = time.process_time()  # the watchers', not the boto3 call's
        arrivals = await asyncio.gather(*tasks)
        if meter:
            meter.append(meter[0]() - cpu_before)
            meter.append(time.process_time() - own_before)
    return [max(0.0, arrival - returned) * 1000 for arrival in arrivals]


_WEIGHTS = itertools.count(2)


def build_propagation_mesh(appmesh) -> None:
    """Mesh ``prop``: node ``client`` reaches ``s0.local``, routed by ``r0`` to ``n0``."""
    appmesh.create_mesh(meshName="prop")
    for node, backends in (("n0", []), ("client", ["s0.local"])):
        appmesh.create_virtual_node(
            meshName="prop", virtualNodeName=node, spec=_node("prop", node, backends)["spec"]
        )
    listeners = [{"portMapping": {"port": 8080, "protocol": "http"}}]
    appmesh.create_virtual_router(
        meshName="prop", virtualRouterName="r0", spec={"listeners": listeners}
    )
    spec = {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {"weightedTargets": [{"virtualNode": "n0", "weight": 1}]},
        }
    }
    appmesh.create_route(meshName="prop", virtualRouterName="r0", routeName="route", spec=spec)
    appmesh.create_virtual_service(
        meshName="prop",
        virtualServiceName="s0.local",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "r0"}}},
    )


def part_two(watcher_counts: list[int]) -> None:
    import subprocess

    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
        command += ["--data-dir", data_dir, "--xds-port", "0", "--log-level", "warning"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for_port(port, process)
            account = "222233334444"
            build_propagation_mesh(client(endpoint, account))
            print("\nAPI call returned -> new version held by every watcher (ms)")
            print(f"{'watchers':>9}{'p50':>9}{'p99':>9}{'max':>9}")
            for count in watcher_counts:
                latencies = sorted(asyncio.run(propagation(endpoint, account, count)))
                p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
                print(
                    f"{count:>9}{statistics.median(latencies):>9.1f}{p99:>9.1f}{latencies[-1]:>9.1f}"
                )
        finally:
            process.terminate()
            process.wait(timeout=10)


def raise_file_limit() -> None:
    """1000 watchers need ~1000 sockets on each side; lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def main() -> None:
    raise_file_limit()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--watchers", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--skip-push", action="store_true", help="part 1 only")
    args = parser.parse_args()
    part_one(args.sizes)
    if not args.skip_push:
        part_two(args.watchers)
    print(json.dumps({"note": "one run on this machine; compare ratios, not absolutes"}))


if __name__ == "__main__":
    main()
