"""gRPC unary calls through two appmesh-proxy sidecars, against direct and nginx, in one run.

    python benchmarks/proxy_grpc.py [--duration 5] [--rounds 3] [--concurrency 16] [--no-pin]

Server and client are grpcio (benchmarks/grpc_peer.py: ``/bench.Echo/Call``, 100 bytes
each way, no protobuf). Paths:

- direct: the client to the server;
- nginx, 2 hops: two nginx (1 worker each, ``listen ... http2`` and ``grpc_pass`` with
  upstream keep-alive), the job two sidecars do;
- sidecars, 2 hops: the client's egress sidecar and the server's ingress sidecar, for
  ``grpc`` nodes as envoy_bootstrap.translate configures them (benchmarks/proxy.py's mesh
  with a ``grpcRoute``), the client sending the virtual service as ``:authority``.

For each path and round: calls per second with ``--concurrency`` calls in flight on one
channel, then p50 with one call at a time, each for ``--duration`` seconds; the proxies'
CPU per 1,000 calls. Rounds interleave the paths; medians, and ratios of same-round
pairs, are printed with the load average. Pinned (default): the client on CPU 1, the
server and the proxies on CPU 0. The grpcio client's own CPU bounds the direct row, so the
ratios say what the hops cost the client, not the proxies' ceiling.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    ROOT,
    BenchPath,
    Processes,
    can_pin,
    cpu_seconds,
    free_port,
    load_average,
    on_cpu,
    round_arguments,
)
from benchmarks.proxy import HOST, nginx_with, serve_proxy, translate_for

PEER = ROOT / "benchmarks" / "grpc_peer.py"


def grpc_nginx(tmp: Path, name: str, port: int, upstream_port: int) -> list[str]:
    """nginx taking h2c gRPC on ``port`` and passing it to ``upstream_port`` (keep-alive)."""
    upstream = f"upstream {name}_up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}"
    server = (
        f"server {{ listen 127.0.0.1:{port} http2; http2_max_requests 1000000; "
        f"location / {{ grpc_pass grpc://{name}_up; }} }}"
    )
    return nginx_with(tmp, name, f"{upstream}\n  {server}")


def run_client(port: int, authority: str, seconds: float, concurrency: int, pin: bool) -> dict:
    command = [*on_cpu(1, pin), sys.executable, str(PEER), "call", str(port), authority,
               str(seconds), str(concurrency)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"grpc client on :{port} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def measure(path: BenchPath, authority: str, seconds: float, concurrency: int, pin: bool) -> None:
    before = [cpu_seconds(pid) for pid in path.pids]
    load = run_client(path.port, authority, seconds, concurrency, pin)
    used = sum(cpu_seconds(pid) - b for pid, b in zip(path.pids, before, strict=True))
    one = run_client(path.port, authority, seconds, 1, pin)
    path.add(
        cps=load["calls"] / load["seconds"],
        p50=one["p50"],
        p99=one["p99"],
        errors=load["errors"] + one["errors"],
        cpu_per_1k=used / max(load["calls"], 1) * 1000,
    )


def report(paths: list[BenchPath], concurrency: int) -> None:
    direct, nginx = paths[0], paths[1]
    print(f"\n{'path':<20}{'calls/s c' + str(concurrency):>13}{'÷direct':>9}{'÷nginx':>8}"
          f"{'p50 ms c1':>11}{'+p50/hop':>10}{'vCPU/1k':>9}{'errors':>8}")  # fmt: skip
    for path in paths:
        added = f"{path.added('p50', direct):>10.3f}" if path.hops else f"{'-':>10}"
        cpu = f"{path.median('cpu_per_1k') / path.hops:>9.3f}" if path.hops else f"{'-':>9}"
        print(f"{path.name:<20}{path.median('cps'):>13.0f}{path.ratio('cps', direct):>9.2f}"
              f"{path.ratio('cps', nginx):>8.2f}{path.median('p50'):>11.3f}{added}{cpu}"
              f"{sum(path.samples['errors']):>8.0f}")  # fmt: skip
    print(f"  medians of {len(direct.samples['cps'])} rounds; ratios and +p50/hop (vs direct, "
          "per hop) are medians of same-round pairs;\n  vCPU/1k: proxy CPU seconds per 1,000 "
          "calls, per hop.")  # fmt: skip


def main() -> None:
    parser = round_arguments(__doc__, 5, "client", float)
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    args = parser.parse_args()
    pin = can_pin(args.no_pin)
    with (
        tempfile.TemporaryDirectory(prefix="proxy-grpc-bench-") as tmp_name,
        Processes(Path(tmp_name), pin) as procs,
    ):
        server = free_port()
        procs.start([sys.executable, str(PEER), "serve", str(server)], server)
        front, back = free_port(), free_port()
        ngx_back = procs.start(grpc_nginx(procs.tmp, "back", back, server), back)
        ngx_front = procs.start(grpc_nginx(procs.tmp, "front", front, back), front)
        ingress, egress = free_port(), free_port()
        app = translate_for("app", server, ingress, ingress, free_port(), False, "grpc")
        client = translate_for("client", server, ingress, free_port(), egress, False, "grpc")
        sidecars = serve_proxy(procs, "client", client, egress)
        sidecars += serve_proxy(procs, "app", app, ingress)
        paths = [
            BenchPath("direct", server),
            BenchPath("nginx, 2 hops", front, [ngx_front, ngx_back], 2),
            BenchPath("sidecars, 2 hops", egress, sidecars, 2),
        ]
        mode = "pinned: client CPU 1, servers CPU 0" if pin else "unpinned"
        runs = f"(c{args.concurrency} + c1) x {args.duration:g} s"
        print(f"{args.rounds} rounds x {len(paths)} paths x {runs}, {mode}, "
              f"load average {load_average()}", flush=True)  # fmt: skip
        for path in paths:  # warm up: channels, pools, the proxies' first requests
            run_client(path.port, HOST, 1, args.concurrency, pin)
        for round_ in range(1, args.rounds + 1):
            for path in paths:
                measure(path, HOST, args.duration, args.concurrency, pin)
                print(f"  round {round_}: {path.name:<18} {path.samples['cps'][-1]:>7.0f} calls/s"
                      f"  p50 {path.samples['p50'][-1]:.3f} ms", flush=True)  # fmt: skip
        report(paths, args.concurrency)
        print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
