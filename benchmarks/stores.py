"""The two stores side by side: SQLite vs DynamoDB (on moto's server), one and two replicas.

    python benchmarks/stores.py [--nodes 200] [--clients 4]

Starts moto's server (one request at a time, as tests/api does, so conditional writes
are atomic) and ``appmesh-local serve`` with ``--data-dir`` (SQLite on disk) or with
``--store dynamodb://...``; then, with ``--clients`` threads of boto3, creates N virtual
nodes (writes/s), describes each (reads/s) and updates each (writes/s). With two
replicas, clients alternate between them, and the time until the last write is
visible on the other replica is printed as "catch-up".

moto's DynamoDB is a Python server on the same 2 cores, so the DynamoDB numbers are a
lower bound for a real table; the point is the shape (reads stay in memory, writes
pay a round trip to the table per sequence number and transaction).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appmesh_api.localports import free_port, wait_for_port  # noqa: E402

ACCOUNT = "210987654321"
SPEC = {
    "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
    "serviceDiscovery": {"dns": {"hostname": "app.local"}},
}
MOTO_SERIAL = (
    "import sys; from werkzeug.serving import make_server; "
    "from moto.server import DomainDispatcherApplication, create_backend_app; "
    "make_server('127.0.0.1', int(sys.argv[1]), "
    "DomainDispatcherApplication(create_backend_app), threaded=False).serve_forever()"
)


def start(
    command: list[str], port: int, what: str, log: Path, root: Path = ROOT
) -> subprocess.Popen:
    """``command`` with this checkout (or ``root``, another one) first on the path, not
    an installed appmesh-local."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_for_port(port, process, what, timeout=30)
    return process


def serve(tmp: Path, *extra: str, root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
    command += ["--xds-port", "0", "--xray-daemon-port", "0", "--log-level", "warning"]
    command += ["--data-dir", str(tmp / f"data-{port}"), *extra]
    process = start(command, port, "serve", tmp / f"serve-{port}.log", root)
    return process, f"http://127.0.0.1:{port}"


def client(endpoint: str):
    return boto3.client(
        "appmesh",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCOUNT,
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


def timed(clients: list, nodes: int, call: Callable) -> float:
    """ops/s of ``call(client, index)`` for every index, spread over the clients."""

    def run(offset: int) -> None:
        mine = clients[offset % len(clients)]
        for index in range(offset, nodes, len(clients)):
            call(mine, index)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(run, range(len(clients))))
    return nodes / (time.perf_counter() - started)


def workload(endpoints: list[str], nodes: int, threads: int) -> dict[str, float]:
    clients = [client(endpoints[i % len(endpoints)]) for i in range(threads)]
    mesh = f"bench-{uuid.uuid4().hex[:6]}"
    clients[0].create_mesh(meshName=mesh)
    if len(endpoints) > 1:  # the other replica must know the mesh before writing in it
        wait_visible(client(endpoints[1]), mesh, None)
    result = {
        "create/s": timed(
            clients,
            nodes,
            lambda c, i: c.create_virtual_node(meshName=mesh, virtualNodeName=f"n{i}", spec=SPEC),
        ),
        "describe/s": timed(
            clients,
            nodes,
            lambda c, i: c.describe_virtual_node(meshName=mesh, virtualNodeName=f"n{i}"),
        ),
        "update/s": timed(
            clients,
            nodes,
            lambda c, i: c.update_virtual_node(meshName=mesh, virtualNodeName=f"n{i}", spec=SPEC),
        ),
    }
    if len(endpoints) > 1:
        written = time.perf_counter()
        clients[0].update_virtual_node(meshName=mesh, virtualNodeName="n0", spec=SPEC)
        wait_visible(client(endpoints[1]), mesh, 3)
        result["catch-up ms"] = (time.perf_counter() - written) * 1000
    return result


def wait_visible(other, mesh: str, version: int | None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if version is None:
                other.describe_mesh(meshName=mesh)
                return
            found = other.describe_virtual_node(meshName=mesh, virtualNodeName="n0")
            if found["virtualNode"]["metadata"]["version"] >= version:
                return
        except other.exceptions.NotFoundException:
            pass
        time.sleep(0.002)
    raise RuntimeError("the other replica never saw the write")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    processes: list[subprocess.Popen] = []
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        try:
            process, endpoint = serve(tmp)
            processes.append(process)
            rows.append(("SQLite, 1 process", workload([endpoint], args.nodes, args.clients)))
            moto_port = free_port()
            processes.append(
                start(
                    [sys.executable, "-c", MOTO_SERIAL, str(moto_port)],
                    moto_port,
                    "moto",
                    tmp / "moto.log",
                )
            )
            store = f"dynamodb://bench?endpoint=http://127.0.0.1:{moto_port}&region=us-east-1"
            replicas = []
            for _ in range(2):
                process, endpoint = serve(tmp, "--store", store, "--create-table")
                processes.append(process)
                replicas.append(endpoint)
            rows.append(
                ("DynamoDB (moto), 1 replica", workload(replicas[:1], args.nodes, args.clients))
            )
            rows.append(
                ("DynamoDB (moto), 2 replicas", workload(replicas, args.nodes, args.clients))
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)
    print(f"{args.nodes} virtual nodes, {args.clients} boto3 client threads")
    print(f"{'store':30} {'create/s':>9} {'describe/s':>11} {'update/s':>9} {'catch-up ms':>12}")
    for name, numbers in rows:
        catch_up = numbers.get("catch-up ms")
        shown = f"{catch_up:12.1f}" if catch_up is not None else f"{'-':>12}"
        print(
            f"{name:30} {numbers['create/s']:9.0f} {numbers['describe/s']:11.0f} "
            f"{numbers['update/s']:9.0f} {shown}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
