"""What a sidecar on incremental ADS costs in memory next to one on REST xDS.

    python benchmarks/delta_memory.py [--tree DIR ...] [--rounds 3]

Starts ``appmesh-local serve`` with one virtual node (one listener, no backends) and, in
interleaved rounds, an ``appmesh-proxy`` for it on REST xDS (the server's main port) and
one on Delta ADS (``APPMESH_XDS_DELTA=1``, the server's ``--xds-port``), each from every
``--tree`` given (default: this checkout), one at a time. VmRSS 1 s after the sidecar
reports LIVE; medians are printed with the load average, and which of grpcio and
protobuf each sidecar loaded (``/proc/PID/maps``). Pass the checkout before a change and
the one after as two ``--tree`` to pair them in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import ROOT, Processes, free_port, load_average, rss_mb

ACCOUNT = "123456789012"
MESH = "memory"
NODE = f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{MESH}/virtualNode/solo"
#: C extensions seen in ``/proc/PID/maps`` (h2 is pure Python and shows in none).
LIBRARIES = {"grpcio": "cygrpc", "protobuf": "_message"}


def serve(procs: Processes) -> tuple[int, int]:
    """``appmesh-local serve`` in memory with the one node; (REST port, gRPC port)."""
    import boto3

    port, xds = free_port(), free_port()
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--in-memory", "--port"]
    command += [str(port), "--xds-port", str(xds), "--xray-daemon-port", str(free_port())]
    procs.start(command, port, cwd=ROOT)
    appmesh = boto3.client(
        "appmesh",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=ACCOUNT,
        aws_secret_access_key="local",
    )
    appmesh.create_mesh(meshName=MESH)
    spec = {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "solo.memory.local"}},
    }
    appmesh.create_virtual_node(meshName=MESH, virtualNodeName="solo", spec=spec)
    return port, xds


def sidecar(procs: Processes, tree: Path, endpoint: str, delta: bool) -> dict[str, object]:
    """One sidecar from ``tree``: its VmRSS 1 s after LIVE and the libraries it mapped."""
    admin = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "APPMESH_RESOURCE_ARN": NODE,
        "APPMESH_XDS_ENDPOINT": endpoint,
        "APPMESH_INGRESS_PORT": str(free_port()),
        "APPMESH_EGRESS_PORT": str(free_port()),
        "ENVOY_ADMIN_ACCESS_PORT": str(admin),
        "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
        **({"APPMESH_XDS_DELTA": "1"} if delta else {}),
    }
    pid = procs.start([sys.executable, "-m", "proxy.main"], admin, env=env, cwd=tree)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/server_info", timeout=5) as r:
            if json.load(r).get("state") == "LIVE":
                break
        time.sleep(0.05)
    else:
        raise RuntimeError("the sidecar never became LIVE")
    time.sleep(1.0)
    maps = Path(f"/proc/{pid}/maps").read_text()
    got = {"rss": rss_mb(pid), "loaded": [k for k, v in LIBRARIES.items() if v in maps]}
    procs.stop_last()
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", help="checkout whose proxy to run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree or [ROOT]]
    variants = [(tree, delta) for tree in trees for delta in (False, True)]
    samples: dict[tuple[Path, bool], list[float]] = {v: [] for v in variants}
    loaded: dict[tuple[Path, bool], list[str]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="delta-mem-") as tmp_name,
        Processes(Path(tmp_name), pin=False) as procs,
    ):
        port, xds = serve(procs)
        print(f"load average at the start {load_average()}", flush=True)
        for round_ in range(1, args.rounds + 1):
            for tree, delta in variants:
                endpoint = f"127.0.0.1:{xds}" if delta else f"http://127.0.0.1:{port}"
                got = sidecar(procs, tree, endpoint, delta)
                samples[(tree, delta)].append(float(got["rss"]))  # type: ignore[arg-type]
                loaded[(tree, delta)] = got["loaded"]  # type: ignore[assignment]
                name = "Delta" if delta else "REST"
                print(f"  round {round_} {tree.name} {name:<5} {got['rss']:.1f} MB", flush=True)
        print(f"load average at the end {load_average()}")
    print(f"\nVmRSS of one sidecar 1 s after LIVE, median of {args.rounds}:")
    for tree, delta in variants:
        name = "Delta ADS" if delta else "REST xDS"
        libs = ", ".join(loaded[(tree, delta)]) or "neither grpcio nor protobuf"
        median = statistics.median(samples[(tree, delta)])
        print(f"  {tree}  {name:<9} {median:5.1f} MB  (loaded: {libs})")


if __name__ == "__main__":
    main()
