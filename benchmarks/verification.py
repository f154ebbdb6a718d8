"""What ``serve --verify-signatures`` costs: DescribeMesh throughput with it off and on.

    python benchmarks/verification.py [--calls 2000] [--clients 2]

Two servers are started here on 127.0.0.1 (in memory), one verifying signatures, one
not; the same boto3 workload (DescribeMesh of one mesh, signed with the key both know)
runs against each in turn, each client in its own process. Printed: calls/s and p50/p99
for both, and the ratio. boto3's own signing is in every number on both sides.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import boto3
from botocore.config import Config

from appmesh_api.localports import free_port, wait_for_port

KEY, SECRET = "AKIABENCHMARK000001", "benchmark-secret"


def start(verify: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--in-memory", "--port"]
    command += [str(port), "--xds-port", "0", "--xray-daemon-port", "0", "--log-level", "warning"]
    if verify:
        command += ["--verify-signatures", "--credentials", f"{KEY}={SECRET}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def client(endpoint: str):
    return boto3.client(
        "appmesh",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


def describe_many(endpoint: str, calls: int) -> list[float]:
    appmesh = client(endpoint)
    appmesh.describe_mesh(meshName="bench")  # connect and load the model outside the timing
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        appmesh.describe_mesh(meshName="bench")
        latencies.append(time.perf_counter() - started)
    return latencies


def measure(endpoint: str, calls: int, clients: int) -> tuple[float, float, float]:
    client(endpoint).create_mesh(meshName="bench")
    started = time.perf_counter()
    with ProcessPoolExecutor(clients) as pool:
        runs = list(pool.map(describe_many, [endpoint] * clients, [calls // clients] * clients))
    elapsed = time.perf_counter() - started
    latencies = sorted(x for run in runs for x in run)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    results = {}
    for verify in (False, True):
        process, endpoint = start(verify)
        try:
            results[verify] = measure(endpoint, args.calls, args.clients)
        finally:
            process.terminate()
            process.wait()
    for verify, (rate, p50, p99) in results.items():
        label = "verify on " if verify else "verify off"
        print(f"{label}: {rate:7.0f} DescribeMesh/s  p50 {p50:5.2f} ms  p99 {p99:5.2f} ms")
    print(f"on/off throughput: {results[True][0] / results[False][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
