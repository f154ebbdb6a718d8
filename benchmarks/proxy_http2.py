"""HTTP/2 through appmesh-proxy against nginx doing the same job, in one interleaved run.

    python benchmarks/proxy_http2.py [--duration 5] [--rounds 3] [--no-pin] [--baseline DIR]

Client: ``h2load`` (Debian's nghttp2-client) with prior knowledge (h2c), 8 connections x
10 concurrent streams, and 1 x 1 for latency. Upstream: nginx (1 worker) returning a
100-byte body, on an HTTP/1.1 port and an h2c port. Paths:

- direct: h2load straight to the upstream's h2c port;
- nginx: ``listen ... http2`` in front, ``proxy_pass`` over HTTP/1.1 keep-alive behind;
- proxy h2→h1: the ingress sidecar of an ``http`` node (HTTP/2 in, HTTP/1.1 out): the
  same job as the nginx row;
- proxy h2→h2: the ingress sidecar of an ``http2`` node (HTTP/2 on both sides, one
  multiplexed upstream connection).

``--baseline DIR`` adds the two sidecar paths as another checkout (DIR) runs them, in the
same rounds, for a before/after pair on one machine at one time.

Proxy configs are what envoy_bootstrap.translate produces (benchmarks/proxy.py's small
mesh). Reports median req/s, p50 at 1x1, the proxy's CPU per 1,000 requests and RSS, and
ratios against nginx in the same round. Goals are informational (issue 9: HTTP/2
throughput ≥ 0.25x nginx's with one worker); the exit code is not.
"""

from __future__ import annotations

import os
import re
import shutil
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
    round_arguments,
    rss_mb,
    wait_for_port,
)
from benchmarks.proxy import BODY, HOST, nginx_command, serve_proxy, translate_for

GOAL_VS_NGINX = 0.25
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def ensure_h2load() -> None:
    if shutil.which("h2load"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-client"], check=False)
    if not shutil.which("h2load"):
        sys.exit("h2load is missing: apt-get install nghttp2-client")


def h2_upstream_command(tmp: Path, port: int, h2_port: int) -> list[str]:
    """The upstream nginx, with an h2c (prior knowledge) port beside its HTTP/1.1 one."""
    command = nginx_command(tmp, "up", port, None)
    conf = tmp / "up.conf"
    text = conf.read_text()
    answer = f'return 200 "{BODY}";'
    location = f"keepalive_requests 1000000; location / {{ default_type text/plain; {answer} }}"
    extra = f"server {{ listen 127.0.0.1:{h2_port} http2; {location} }}"
    conf.write_text(text.replace("server {", f"{extra}\n  server {{", 1))
    return command


def h2_front_command(tmp: Path, port: int, upstream_port: int) -> list[str]:
    """nginx as the HTTP/2 front: h2c in, HTTP/1.1 keep-alive to the upstream."""
    command = nginx_command(tmp, "rp", port, upstream_port)
    conf = tmp / "rp.conf"
    conf.write_text(conf.read_text().replace(f"listen 127.0.0.1:{port};",
                                             f"listen 127.0.0.1:{port} http2;"))  # fmt: skip
    return command


def run_h2load(port: int, clients: int, streams: int, seconds: int, pin: bool) -> dict[str, float]:
    cmd = ["h2load", "-D", str(seconds), "-c", str(clients), "-m", str(streams), "-t", "1",
           "-H", f":authority: {HOST}", f"http://127.0.0.1:{port}/"]  # fmt: skip
    cmd = (["taskset", "-c", "1"] if pin else []) + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    total, succeeded = int(done.group(2)), int(done.group(3))
    mean, unit = re.search(r"time for request:\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)",
                           out).groups()  # fmt: skip
    return {"rps": rps, "errors": float(total - succeeded), "requests": float(total),
            "mean": float(mean) * _UNITS[unit]}  # fmt: skip


def measure(path: BenchPath, seconds: int, pin: bool) -> None:
    latency = run_h2load(path.port, 1, 1, seconds, pin)
    before = [cpu_seconds(pid) for pid in path.pids]
    load = run_h2load(path.port, 8, 10, seconds, pin)
    used = sum(cpu_seconds(pid) - b for pid, b in zip(path.pids, before, strict=True))
    path.add(rps=load["rps"], mean=latency["mean"], errors=latency["errors"] + load["errors"],
             vcpu_per_1k=used / max(load["requests"], 1) * 1000,
             rss=max((rss_mb(pid) for pid in path.pids), default=float("nan")))  # fmt: skip


def report(paths: list[BenchPath]) -> None:
    nginx = paths[1]
    print(f"\n{'path':<22}{'req/s 8x10':>11}{'÷nginx':>8}{'mean ms 1x1':>12}"
          f"{'vCPU/1k':>9}{'RSS MB':>8}{'errors':>7}")  # fmt: skip
    for path in paths:
        print(f"{path.name:<22}{path.median('rps'):>11.0f}{path.ratio('rps', nginx):>8.2f}"
              f"{path.median('mean'):>12.3f}{path.median('vcpu_per_1k'):>9.3f}"
              f"{path.median('rss'):>8.1f}{sum(path.samples['errors']):>7.0f}")  # fmt: skip
    for path in paths[2:]:
        ratio = path.ratio("rps", nginx)
        mark = "met" if ratio >= GOAL_VS_NGINX else "not met"
        print(f"goal: {path.name} {ratio:.2f}x nginx >= {GOAL_VS_NGINX}: {mark}")
    named = {path.name: path for path in paths}
    for hop in ("h2 -> h1", "h2 -> h2"):
        before, after = named.get(f"before {hop}"), named[f"proxy {hop}"]
        if before is not None:
            print(f"after / before, {hop}: req/s {after.ratio('rps', before):.2f}x, "
                  f"vCPU per request {after.ratio('vcpu_per_1k', before):.2f}x")  # fmt: skip


def main() -> None:
    parser = round_arguments(__doc__, 5, "h2load")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    ensure_h2load()
    pin = can_pin(args.no_pin)
    with (
        tempfile.TemporaryDirectory(prefix="proxy-h2-bench-") as tmp_name,
        Processes(Path(tmp_name), pin) as procs,
    ):

        def start_proxy(name: str, port: int, target: int, protocol: str, tree: Path = ROOT
                        ) -> list[int]:  # fmt: skip
            resources = translate_for(name, target, target, port, free_port(), False, protocol)
            serve = tree / "benchmarks" / "proxy_serve.py"
            return serve_proxy(procs, f"{name}-{protocol}-{port}", resources, port, serve=serve)

        up_port, up_h2, ngx_port = free_port(), free_port(), free_port()
        procs.start(h2_upstream_command(procs.tmp, up_port, up_h2), up_port)
        wait_for_port(up_h2, procs.started[-1], timeout=20)
        ngx = procs.start(h2_front_command(procs.tmp, ngx_port, up_port), ngx_port)
        h1_port, h2_port = free_port(), free_port()
        to_h1 = start_proxy("app", h1_port, up_port, "http")
        to_h2 = start_proxy("app", h2_port, up_h2, "http2")
        paths = [
            BenchPath("direct (h2c)", up_h2),
            BenchPath("nginx h2 -> h1", ngx_port, [ngx], 1),
            BenchPath("proxy h2 -> h1", h1_port, to_h1, 1),
            BenchPath("proxy h2 -> h2", h2_port, to_h2, 1),
        ]
        if args.baseline:
            old_h1, old_h2, tree = free_port(), free_port(), args.baseline
            old = start_proxy("app", old_h1, up_port, "http", tree)
            paths.insert(2, BenchPath("before h2 -> h1", old_h1, old, 1))
            old = start_proxy("app", old_h2, up_h2, "http2", tree)
            paths.insert(4, BenchPath("before h2 -> h2", old_h2, old, 1))
        mode = "pinned: h2load CPU 1, servers CPU 0" if pin else "unpinned"
        print(f"{args.rounds} rounds x {len(paths)} paths x (1x1 + 8x10) x "
              f"{args.duration} s, {mode}, load average {load_average()}", flush=True)  # fmt: skip
        for path in paths:
            run_h2load(path.port, 8, 10, 1, pin)
        for round_ in range(1, args.rounds + 1):
            for path in paths:
                measure(path, args.duration, pin)
                rps, vcpu = path.samples["rps"][-1], path.samples["vcpu_per_1k"][-1]
                print(f"  round {round_}: {path.name:<18} {rps:>8.0f} req/s, {vcpu:.3f} vCPU/1k",
                      flush=True)  # fmt: skip
        report(paths)
        print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
