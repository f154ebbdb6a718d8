"""What ``serve --verify-signatures`` costs: DescribeMesh throughput with it off and on.

    python benchmarks/verification.py [--calls 2000] [--clients 2] [--rounds 3]

Two servers are started here on 127.0.0.1 (in memory), one verifying signatures, one
not; the same boto3 workload (DescribeMesh of one mesh, signed with the key both know)
runs against each in turn, each client in its own process, in paired rounds (off then on,
on then off, ...) so a change in the machine's load falls on both sides. Printed: calls/s
and p50/p99 of each round, each round's on/off ratio and their median, the load average,
and what one verification costs in-process (µs). boto3's own signing is in every number
on both sides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from appmesh_api.frontdoor.signatures import SignedRequest, verify
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


def cpu_seconds(pid: int) -> float:
    """A process's user plus system CPU time so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_us(process: subprocess.Popen, endpoint: str, calls: int, clients: int) -> float:
    """The server's CPU time per DescribeMesh, in µs: less moved by other load on a shared
    machine than calls/s, since it counts only what the server itself spent."""
    before = cpu_seconds(process.pid)
    measure(endpoint, calls, clients)
    return (cpu_seconds(process.pid) - before) / calls * 1e6


def measure(endpoint: str, calls: int, clients: int) -> tuple[float, float, float]:
    started = time.perf_counter()
    with ProcessPoolExecutor(clients) as pool:
        runs = list(pool.map(describe_many, [endpoint] * clients, [calls // clients] * clients))
    elapsed = time.perf_counter() - started
    latencies = sorted(x for run in runs for x in run)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def verification_us(rounds: int = 5, calls: int = 5000) -> float:
    """The best of ``rounds`` timings of one in-process verification of a signed
    DescribeMesh as boto3 sends it (its headers, host and empty body), in µs."""
    url = "http://127.0.0.1:4566/v20190125/meshes/bench"
    headers = {"User-Agent": "Boto3/1.40", "amz-sdk-invocation-id": "0" * 36}
    aws = AWSRequest(method="GET", url=url, headers={**headers, "amz-sdk-request": "attempt=1"})
    SigV4Auth(Credentials(KEY, SECRET), "appmesh", "us-east-1").add_auth(aws)
    wire = [(name.lower(), value) for name, value in aws.headers.items()]
    request = SignedRequest(
        "GET", "/v20190125/meshes/bench", "", [*wire, ("host", "127.0.0.1:4566")], b""
    )
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()  # CPU time: other load on the machine does not count
        for _ in range(calls):
            verify(request, lambda _key: SECRET)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    servers = {verify: start(verify) for verify in (False, True)}
    ratios = []
    cpu: dict[bool, float] = {}
    try:
        for endpoint in (servers[False][1], servers[True][1]):
            client(endpoint).create_mesh(meshName="bench")
        for round_ in range(args.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            results = {v: measure(servers[v][1], args.calls, args.clients) for v in order}
            for verify, (rate, p50, p99) in results.items():
                label = "verify on " if verify else "verify off"
                print(
                    f"round {round_ + 1} {label}: {rate:7.0f} DescribeMesh/s  "
                    f"p50 {p50:5.2f} ms  p99 {p99:5.2f} ms"
                )
            ratios.append(results[True][0] / results[False][0])
        cpu = {v: server_cpu_us(*servers[v], args.calls, args.clients) for v in (False, True)}
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    print(f"server CPU per DescribeMesh: off {cpu[False]:.0f} us, on {cpu[True]:.0f} us")
    print("on/off throughput per round: " + ", ".join(f"{r:.2f}" for r in ratios))
    print(f"on/off throughput, median: {statistics.median(ratios):.2f}")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"one verification in-process: {verification_us():.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
