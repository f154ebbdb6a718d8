"""TLS and mutual TLS between two appmesh-proxy sidecars, against nginx doing the same job.

    python benchmarks/proxy_tls.py [--duration 3] [--rounds 3] [--no-pin]

Upstream: nginx returning 100 bytes (benchmarks/proxy.py). Certificates: a CA and
ECDSA P-256 leaves made for the run (tests/certificates.py). Two measurements:

1. Added latency per TLS hop on an open connection. Each path is two proxies, the hop
   between them plaintext, TLS or mutual TLS: the client's egress sidecar to the app's
   ingress sidecar (App Mesh's listener ``tls`` STRICT and the backend's ``clientPolicy``,
   from files, as envoy_bootstrap.translate configures them), and nginx terminating TLS
   (``listen ssl``, ``ssl_verify_client`` for mTLS) behind an nginx that proxies to it
   with ``proxy_ssl`` (verifying the server, presenting a client certificate for mTLS,
   upstream keep-alive). wrk at 1 connection gives p50; at 32, req/s. The added p50 of a
   TLS hop is the TLS path's p50 minus the plaintext path's, in the same round.
2. Handshakes per second: ``openssl s_time -new`` (a full handshake and one HTTP/1.0
   request per connection) against the TLS and mTLS ingress sidecars and the TLS and mTLS
   nginx, with the server's CPU time per handshake.

Rounds interleave the paths; medians (of same-round pairs for differences and ratios) are
printed with the load average. Pinned (default): wrk and s_time on CPU 1, every server on
CPU 0. Goal (issue 9, informational): mTLS adds at most 0.3 ms of p50 per hop.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    BenchPath,
    Processes,
    can_pin,
    cpu_seconds,
    free_port,
    load_average,
    on_cpu,
    round_arguments,
)
from benchmarks.proxy import (
    MeshTls,
    ensure_tools,
    nginx_command,
    nginx_with,
    run_wrk,
    serve_proxy,
    translate_for,
)
from tests.certificates import Authority

GOAL_MTLS_ADDED_P50_MS = 0.3
MODES = ("plain", "tls", "mtls")


def nginx_tls_back(
    tmp: Path, name: str, port: int, upstream: int, files: MeshTls, mutual: bool
) -> list[str]:
    """nginx terminating TLS on ``port`` (requiring a client certificate when ``mutual``)
    and proxying plaintext to ``upstream`` with keep-alive."""
    verify = f"ssl_verify_client on; ssl_client_certificate {files.ca};" if mutual else ""
    return nginx_with(tmp, name, f"""
  upstream {name}_up {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} ssl; ssl_certificate {files.chain};
    ssl_certificate_key {files.key}; {verify}
    location / {{ proxy_pass http://{name}_up; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
  }}""")  # fmt: skip


def nginx_tls_front(
    tmp: Path, name: str, port: int, back: int, files: MeshTls, mutual: bool
) -> list[str]:
    """nginx taking plaintext on ``port`` and proxying over TLS to ``back`` (verified against
    the CA, with the client certificate when ``mutual``), keep-alive."""
    client = (
        f"proxy_ssl_certificate {files.client_chain}; proxy_ssl_certificate_key {files.client_key};"
        if mutual
        else ""
    )
    return nginx_with(tmp, name, f"""
  upstream {name}_up {{ server 127.0.0.1:{back}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass https://{name}_up; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_ssl_verify on;
                 proxy_ssl_trusted_certificate {files.ca}; proxy_ssl_name app.bench.local;
                 proxy_ssl_session_reuse on; {client} }}
  }}""")  # fmt: skip


def run_s_time(port: int, seconds: int, files: MeshTls, mutual: bool, pin: bool) -> float:
    """Full handshakes per second, one HTTP/1.0 request each (openssl s_time -new)."""
    command = [*on_cpu(1, pin), "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
               "-www", "/", "-time", str(seconds)]  # fmt: skip
    if mutual:
        command += ["-cert", files.client_chain, "-key", files.client_key]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    found = re.search(r"(\d+) connections in (\d+) real seconds", done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"s_time on :{port} failed: {done.stdout[-800:]}{done.stderr[-800:]}")
    return int(found.group(1)) / max(int(found.group(2)), 1)


def measure_hop(path: BenchPath, seconds: int, pin: bool) -> None:
    latency = run_wrk(path.port, 1, seconds, pin)
    load = run_wrk(path.port, 32, seconds, pin)
    path.add(p50=latency["p50"], p99=latency["p99"], rps=load["rps"],
             errors=latency["errors"] + load["errors"])  # fmt: skip


def measure_handshakes(
    path: BenchPath, seconds: int, files: MeshTls, mutual: bool, pin: bool
) -> None:
    before = [cpu_seconds(pid) for pid in path.pids]
    rate = run_s_time(path.port, seconds, files, mutual, pin)
    used = sum(cpu_seconds(pid) - b for pid, b in zip(path.pids, before, strict=True))
    path.add(hps=rate, cpu_ms=used / max(rate * seconds, 1) * 1000)


def pairs_median(values: list[float], bases: list[float]) -> float:
    return statistics.median(v - b for v, b in zip(values, bases, strict=True))


def report(hops: dict[str, BenchPath], shakes: dict[str, BenchPath]) -> None:
    print(f"\n{'path (2 proxies)':<24}{'p50 ms c1':>10}{'p99 ms c1':>10}{'req/s c32':>10}"
          f"{'+p50 TLS hop':>13}{'errors':>7}")  # fmt: skip
    for key, path in hops.items():
        impl, mode = key.split(":")
        plain = hops[f"{impl}:plain"]
        added = pairs_median(path.samples["p50"], plain.samples["p50"]) if mode != "plain" else None
        shown = f"{added:>13.3f}" if added is not None else f"{'-':>13}"
        print(f"{path.name:<24}{path.median('p50'):>10.3f}{path.median('p99'):>10.3f}"
              f"{path.median('rps'):>10.0f}{shown}{sum(path.samples['errors']):>7.0f}")  # fmt: skip
    print("\nadded p50 per TLS hop, sidecar ÷ nginx (medians of same-round pairs):")
    for mode in ("tls", "mtls"):
        side = [
            s - p
            for s, p in zip(
                hops[f"sidecar:{mode}"].samples["p50"],
                hops["sidecar:plain"].samples["p50"],
                strict=True,
            )
        ]
        ngx = [s - p for s, p in zip(hops[f"nginx:{mode}"].samples["p50"],
                                     hops["nginx:plain"].samples["p50"], strict=True)]  # fmt: skip
        goal = ""
        if mode == "mtls":
            mark = "met" if statistics.median(side) <= GOAL_MTLS_ADDED_P50_MS else "not met"
            goal = f"  (goal ≤ {GOAL_MTLS_ADDED_P50_MS} ms: {mark})"
        print(f"  {mode:<5} sidecar {statistics.median(side):.3f} ms, nginx "
              f"{statistics.median(ngx):.3f} ms{goal}")  # fmt: skip
    print(f"\n{'handshakes':<24}{'per s':>8}{'÷nginx':>8}{'server ms/handshake':>21}")
    for key, path in shakes.items():
        impl, mode = key.split(":")
        ratio = path.ratio("hps", shakes[f"nginx:{mode}"])
        print(f"{path.name:<24}{path.median('hps'):>8.0f}{ratio:>8.2f}"
              f"{path.median('cpu_ms'):>21.3f}")  # fmt: skip


def main() -> None:
    parser = round_arguments(__doc__, 3, "wrk/s_time")
    args = parser.parse_args()
    ensure_tools()
    pin = can_pin(args.no_pin)
    with (
        tempfile.TemporaryDirectory(prefix="proxy-tls-bench-") as tmp_name,
        Processes(Path(tmp_name), pin) as procs,
    ):
        ca = Authority(procs.tmp)
        app = ca.issue("app", ["app.bench.local"])
        caller = ca.issue("client", ["client.bench.local"])
        files = MeshTls(str(ca.pem), str(app.chain), str(app.key),
                        str(caller.chain), str(caller.key))  # fmt: skip
        up = free_port()
        procs.start(nginx_command(procs.tmp, "up", up, None), up)
        hops: dict[str, BenchPath] = {}
        shakes: dict[str, BenchPath] = {}
        for mode in MODES:
            tls = None if mode == "plain" else files
            if mode == "tls":
                tls = MeshTls(files.ca, files.chain, files.key)
            ingress, egress = free_port(), free_port()
            resources = translate_for("app", up, ingress, ingress, free_port(), False,
                                      tls=tls)  # fmt: skip
            inner = serve_proxy(procs, f"app-{mode}", resources, ingress)
            resources = translate_for("client", up, ingress, free_port(), egress, False,
                                      tls=tls)  # fmt: skip
            outer = serve_proxy(procs, f"client-{mode}", resources, egress)
            hops[f"sidecar:{mode}"] = BenchPath(f"sidecars, {mode}", egress, outer + inner, 2)
            back, front = free_port(), free_port()
            if mode == "plain":
                back_pid = procs.start(nginx_command(procs.tmp, "b-plain", back, up), back)
                front_pid = procs.start(nginx_command(procs.tmp, "a-plain", front, back), front)
            else:
                mutual = mode == "mtls"
                back_pid = procs.start(nginx_tls_back(procs.tmp, f"b-{mode}", back, up, files,
                                                      mutual), back)  # fmt: skip
                front_pid = procs.start(nginx_tls_front(procs.tmp, f"a-{mode}", front, back,
                                                        files, mutual), front)  # fmt: skip
                shakes[f"sidecar:{mode}"] = BenchPath(f"sidecar, {mode}", ingress, inner, 1)
                shakes[f"nginx:{mode}"] = BenchPath(f"nginx, {mode}", back, [back_pid], 1)
            hops[f"nginx:{mode}"] = BenchPath(f"nginx, {mode}", front, [front_pid, back_pid], 2)
        mode_text = "pinned: clients CPU 1, servers CPU 0" if pin else "unpinned"
        print(f"{args.rounds} rounds, {args.duration} s per run, {mode_text}, "
              f"load average {load_average()}", flush=True)  # fmt: skip
        for path in hops.values():  # warm: pools, TLS sessions between the proxies
            run_wrk(path.port, 32, 1, pin)
        for round_ in range(1, args.rounds + 1):
            for path in hops.values():
                measure_hop(path, args.duration, pin)
                print(f"  round {round_}: {path.name:<16} p50 {path.samples['p50'][-1]:.3f} ms"
                      f"  {path.samples['rps'][-1]:>7.0f} req/s", flush=True)  # fmt: skip
            for key, path in shakes.items():
                measure_handshakes(path, args.duration, files, key.endswith("mtls"), pin)
                print(f"  round {round_}: {path.name:<16} {path.samples['hps'][-1]:>7.0f}"
                      " handshakes/s", flush=True)  # fmt: skip
        report(hops, shakes)
        print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
