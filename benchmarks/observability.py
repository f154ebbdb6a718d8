"""What tracing and the metrics extension cost the sidecar, in one interleaved run.

    python benchmarks/observability.py [--duration 5] [--rounds 3] [--baseline DIR]

One proxy hop (the client's egress sidecar, App Mesh's default retry policy, nginx as
the upstream), in variants: observability off; X-Ray tracing at the default 5% and at
100% (a UDP socket of this process plays the daemon and never reads); the metrics
extension (Prometheus counters only, and with DogStatsD every second). ``--baseline DIR``
adds the same hop served by another checkout's proxy (e.g. a copy taken before a
change), so "off" can be compared with "before". Each round runs every variant with
``wrk -t1 -c32`` (req/s and the proxy's CPU per request); medians are printed with the
change against the first variant.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import Processes, can_pin, cpu_seconds, free_port, load_average
from benchmarks.proxy import SERVE, ensure_tools, nginx_command, run_wrk, translate_for

NODE_ID = "mesh/bench/virtualNode/client"


def variants(daemon_port: int, statsd_port: int) -> dict[str, dict[str, str]]:
    tracing = {"ENABLE_ENVOY_XRAY_TRACING": "1", "XRAY_DAEMON_PORT": str(daemon_port)}
    extension = {"APPMESH_METRIC_EXTENSION_VERSION": "1"}
    return {
        "off": {},
        "tracing 5%": tracing,
        "tracing 100%": {**tracing, "XRAY_SAMPLING_RATE": "1"},
        "metrics extension": extension,
        "metrics + dogstatsd 1s": {
            **extension,
            "ENABLE_ENVOY_DOG_STATSD": "1",
            "STATSD_PORT": str(statsd_port),
            "ENVOY_STATS_FLUSH_INTERVAL": "1s",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    ensure_tools()
    pin = can_pin(args.no_pin)
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sink in sinks:  # bound but never read: the kernel drops what overflows
        sink.bind(("127.0.0.1", 0))
    daemon, statsd = (sink.getsockname()[1] for sink in sinks)
    with (
        tempfile.TemporaryDirectory(prefix="obs-bench-") as tmp_name,
        Processes(Path(tmp_name), pin) as procs,
    ):

        def start_proxy(serve: Path, env: dict[str, str]) -> tuple[int, int]:
            port = free_port()
            resources = translate_for("client", up_port, up_port, free_port(), port, False)
            config = {"resources": resources, "admin": free_port(), "env": env, "node_id": NODE_ID}
            path = procs.tmp / f"proxy-{port}.json"
            path.write_text(json.dumps(config))
            return port, procs.start([sys.executable, str(serve), str(path)], port)

        up_port = free_port()
        procs.start(nginx_command(procs.tmp, "up", up_port, None), up_port)
        paths: dict[str, tuple[int, int]] = {}
        if args.baseline:
            baseline = args.baseline / "benchmarks" / "proxy_serve.py"
            paths["baseline (before)"] = start_proxy(baseline, {})
        for name, env in variants(daemon, statsd).items():
            paths[name] = start_proxy(SERVE, env)
        print(f"load average {load_average()}", flush=True)
        for port, _ in paths.values():
            run_wrk(port, 32, 1, pin)  # warm up
        rps: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(1, args.rounds + 1):
            for name, (port, pid) in paths.items():
                before = cpu_seconds(pid)
                result = run_wrk(port, 32, args.duration, pin)
                used = cpu_seconds(pid) - before
                rps[name].append(result["rps"])
                cpu[name].append(used / max(result["rps"] * args.duration, 1) * 1e6)
                print(f"  round {round_}: {name:<24} {result['rps']:>8.0f} req/s", flush=True)
        report(rps, cpu)
        print(f"load average at the end: {load_average()}")


def report(rps: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    first = next(iter(rps))
    print(f"\n{'variant':<26}{'req/s':>9}{'vs ' + first[:12]:>18}{'proxy µs/req':>14}")
    for name in rps:
        ratios = [mine / base for mine, base in zip(rps[name], rps[first], strict=True)]
        change = (statistics.median(ratios) - 1) * 100
        print(
            f"{name:<26}{statistics.median(rps[name]):>9.0f}{change:>+17.1f}%"
            f"{statistics.median(cpu[name]):>14.1f}"
        )
    print("  medians of same-round ratios; proxy µs/req is its CPU time per request")


if __name__ == "__main__":
    main()
