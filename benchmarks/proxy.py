"""Data-plane cost of appmesh-proxy against direct traffic and nginx, in one interleaved run.

    python benchmarks/proxy.py [--duration 5] [--rounds 3] [--workers 1] [--no-pin]

Upstream: nginx (1 worker) returning a fixed 100-byte body on 127.0.0.1. Paths: direct;
nginx as a reverse proxy (1 worker, upstream keepalive); appmesh-proxy one hop as the
app's ingress sidecar, and one hop as the client's egress sidecar (App Mesh's default retry
policy); and two hops (egress proxy -> ingress proxy -> upstream). Proxy configs are
what envoy_bootstrap.translate produces for a small mesh. For each path and round:
``wrk -t1 -c1`` (p50/p99) then ``wrk -t1 -c32`` (req/s), the proxies' CPU time from
/proc/<pid>/stat during the c32 run, their VmRSS after it, and wrk's errors. Rounds
interleave the paths; medians are printed. Pinned (default): wrk on CPU 1, upstream and
proxies on CPU 0, as in shared/reference/proxy-performance.md. Goals are informational
(never the exit code). Each proxy is a benchmarks/proxy_serve.py process; ``--workers N``
runs N of them per proxy on one SO_REUSEPORT port, when the proxy's listeners support it.
wrk and nginx-light are installed from Debian when missing (as root).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    ROOT,
    BenchPath,
    Processes,
    can_pin,
    cpu_seconds,
    free_port,
    load_average,
    rss_mb,
    wait_for_port,
)

__all__ = ["BenchPath", "cpu_seconds", "free_port", "rss_mb", "wait_for_port"]
SERVE = ROOT / "benchmarks" / "proxy_serve.py"  # the proxy child process

BODY = "x" * 99 + "\n"  # 100 bytes
SERVICE = "app.bench.local"
HOST = f"{SERVICE}:8080"  # the virtual service and its router's port
MESH = "bench"
GRPC_SERVICE = "bench.Echo"  # benchmarks/grpc_peer.py's service
GOAL_ADDED_P50_MS, GOAL_VS_NGINX, GOAL_VCPU_PER_1K, GOAL_RSS_MB = 0.25, 0.25, 0.15, 30.0


# -- tools and processes ------------------------------------------------------------------------
def ensure_tools() -> None:
    """Install wrk and nginx-light from Debian when missing and root; otherwise explain."""
    missing = [tool for tool in ("wrk", "nginx", "taskset") if shutil.which(tool) is None]
    if not missing:
        return
    packages = {"wrk": "wrk", "nginx": "nginx-light", "taskset": "util-linux"}
    wanted = sorted({packages[tool] for tool in missing})
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: run `sudo apt-get install -y {' '.join(wanted)}`")
    print(f"installing {' '.join(wanted)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *wanted]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def nginx_command(tmp: Path, name: str, port: int, upstream_port: int | None) -> list[str]:
    """A self-contained single-process nginx config (nothing under /etc/nginx is read)."""
    if upstream_port is None:
        location = f'default_type text/plain; return 200 "{BODY}";'
        upstream = ""
    else:
        upstream = (
            f"upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 64; "
            "keepalive_requests 1000000; keepalive_timeout 300s; }"
        )
        location = 'proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'
    server = f"server {{ listen 127.0.0.1:{port}; location / {{ {location} }} }}"
    return nginx_with(tmp, name, f"{upstream}\n  {server}")


def nginx_with(tmp: Path, name: str, servers: str) -> list[str]:
    """nginx (one worker, no master) running ``servers`` (upstream and server blocks)."""
    # Debian's nginx creates its compiled-in temp dirs unless told otherwise.
    built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    temps = "".join(
        f"{kind}_temp_path {tmp}/{name}-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        if kind == "client_body" or f"--http-{kind}-temp-path" in built
    )
    text = f"""
worker_processes 1; master_process off; daemon off;
pid {tmp}/{name}.pid; error_log {tmp}/{name}.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s; {temps}
  {servers}
}}
"""
    (tmp / f"{name}.conf").write_text(text)
    return ["nginx", "-e", str(tmp / f"{name}.log"), "-c", str(tmp / f"{name}.conf")]


@dataclass(frozen=True)
class MeshTls:
    """TLS between the proxies, from files: ``app``'s listener is STRICT with ``chain`` /
    ``key``; ``client`` trusts ``ca`` for the backend, and with ``client_chain`` /
    ``client_key`` presents them (mutual TLS, the listener then validating against ``ca``)."""

    ca: str
    chain: str
    key: str
    client_chain: str = ""
    client_key: str = ""

    def listener(self) -> dict[str, Any]:
        tls: dict[str, Any] = {
            "mode": "STRICT",
            "certificate": {"file": {"certificateChain": self.chain, "privateKey": self.key}},
        }
        if self.client_chain:
            tls["validation"] = {"trust": {"file": {"certificateChain": self.ca}}}
        return tls

    def client_policy(self) -> dict[str, Any]:
        tls: dict[str, Any] = {
            "enforce": True,
            "validation": {"trust": {"file": {"certificateChain": self.ca}}},
        }
        if self.client_chain:
            files = {"certificateChain": self.client_chain, "privateKey": self.client_key}
            tls["certificate"] = {"file": files}
        return {"tls": tls}


def mesh_snapshot(
    app_port: int, endpoint_port: int, protocol: str = "http", tls: MeshTls | None = None
) -> Any:
    """A small mesh: node ``app`` (listening on the upstream's port) behind router ``app`` and
    service app.bench.local; node ``client`` has that service as its backend. Proxies of
    ``app`` are reached at 127.0.0.1:``endpoint_port`` (a registered endpoint). With ``tls``
    the hop between the two proxies is TLS (or mutual TLS)."""
    from envoy_bootstrap.snapshot import MeshSnapshot

    def node(name: str, port: int | None, backends: tuple[str, ...] = ()) -> dict[str, Any]:
        spec: dict[str, Any] = {"serviceDiscovery": {"dns": {"hostname": f"{name}.bench.local"}}}
        if port:
            listener = {"portMapping": {"port": port, "protocol": protocol}}
            spec["listeners"] = [{**listener, "tls": tls.listener()} if tls else listener]
        spec["backends"] = [
            {"virtualService": {"virtualServiceName": b,
                                **({"clientPolicy": tls.client_policy()} if tls else {})}}
            for b in backends
        ]  # fmt: skip
        return {"meshName": MESH, "virtualNodeName": name, "spec": spec}

    targets = [{"virtualNode": "app", "weight": 1}]  # no retryPolicy: App Mesh's default
    route = {"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}}
    router = {"listeners": [{"portMapping": {"port": 8080, "protocol": protocol}}]}
    if protocol == "grpc":
        grpc_match = {"serviceName": GRPC_SERVICE}
        route = {"grpcRoute": {"match": grpc_match, "action": {"weightedTargets": targets}}}
    elif protocol != "http":
        route = {f"{protocol}Route": route["httpRoute"]}
    provider = {"virtualRouter": {"virtualRouterName": "app"}}
    return MeshSnapshot(
        mesh={"meshName": MESH, "spec": {"egressFilter": {"type": "DROP_ALL"}}},
        virtual_nodes={"app": node("app", app_port), "client": node("client", None, (SERVICE,))},
        virtual_routers={"app": {"virtualRouterName": "app", "spec": router}},
        routes={"app": {"default": {"routeName": "default", "spec": route}}},
        virtual_services={SERVICE: {"spec": {"provider": provider}}},
        virtual_gateways={},
        gateway_routes={},
        registered_endpoints={"app": (("127.0.0.1", endpoint_port),)},
    )


def translate_for(
    name: str,
    app_port: int,
    target_port: int,
    ingress: int,
    egress: int,
    reuse_port: bool,
    protocol: str = "http",
    tls: MeshTls | None = None,
) -> list[dict[str, Any]]:
    """Envoy resources for proxy ``name``; the ``app`` cluster's endpoint is ``target_port``."""
    from envoy_bootstrap.snapshot import NodeIdentity
    from envoy_bootstrap.translate import translate

    identity = NodeIdentity("virtualNode", name, ingress, egress, "127.0.0.1", "127.0.0.1")
    snapshot = mesh_snapshot(app_port, target_port, protocol, tls)
    resources = [dict(r) for r in translate(snapshot, identity).all()]
    if reuse_port:
        for resource in resources:
            if resource["@type"].endswith("listener.v3.Listener"):
                resource["enable_reuse_port"] = True
    return resources


def proxy_supports_reuse_port() -> bool:
    """Whether the proxy's listeners can share a port across processes (SO_REUSEPORT)."""
    import proxy.listener

    return "reuse_port" in inspect.getsource(proxy.listener)


# -- measurement --------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(port: int, connections: int, seconds: int, pin: bool) -> dict[str, float]:
    """One wrk run: req/s, p50/p99 in ms and errors (socket errors plus non-2xx/3xx)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
    cmd = (["taskset", "-c", "1"] if pin else []) + [*cmd, f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "errors": 0.0}
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        result[key] = float(value) * _UNITS[unit]
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        result["errors"] += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        result["errors"] += sum(int(g) for g in match.groups())
    return result


def measure(path: BenchPath, upstream_pid: int, seconds: int, pin: bool) -> None:
    """c1 for latency, then c32 for throughput with the path's CPU time and RSS."""
    latency = run_wrk(path.port, 1, seconds, pin)
    watched = [*path.pids, upstream_pid]
    before = [cpu_seconds(pid) for pid in watched]
    load = run_wrk(path.port, 32, seconds, pin)
    used = [cpu_seconds(pid) - b for pid, b in zip(watched, before, strict=True)]
    requests = max(load["requests"], 1)  # CPU seconds per request x 1000 = vCPU per 1000 rps
    path.add(
        rps=load["rps"],
        p50=latency["p50"],
        p99=latency["p99"],
        errors=latency["errors"] + load["errors"],
        vcpu_per_1k=sum(used[:-1]) / requests * 1000,
        upstream_us=used[-1] / requests * 1e6,
        rss=max((rss_mb(pid) for pid in path.pids), default=float("nan")),
    )


def report(paths: list[BenchPath]) -> None:
    """Print the medians, the per-hop additions, the ratios, and the goals."""
    direct, nginx = paths[0], paths[1]
    print(
        f"\n{'path':<27}{'req/s c32':>10}{'÷direct':>8}{'÷nginx':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'+p50/hop':>9}{'+p99/hop':>9}{'vCPU/1k':>8}{'up µs/rq':>9}{'RSS MB':>7}{'errors':>7}"
    )
    nan = float("nan")
    for path in paths:
        vcpu = path.median("vcpu_per_1k") / max(path.hops, 1) if path.pids else nan
        added = [path.added(key, direct) if path.hops else nan for key in ("p50", "p99")]
        row = f"{path.name:<27}{path.median('rps'):>10.0f}{path.ratio('rps', direct):>8.2f}"
        row += (
            f"{path.ratio('rps', nginx):>7.2f}{path.median('p50'):>8.3f}{path.median('p99'):>8.3f}"
        )
        row += f"{added[0]:>9.3f}{added[1]:>9.3f}{vcpu:>8.3f}{path.median('upstream_us'):>9.1f}"
        row += f"{path.median('rss'):>7.1f}{sum(path.samples['errors']):>7.0f}"
        print(re.sub(r"(\s+)nan\b", lambda m: m.group(1) + "  -", row))
    spread = direct.samples["rps"]
    print(
        f"  medians of {len(spread)} rounds; ratios and +p50/+p99 (added vs direct at 1 connection,"
        " per hop) are\n  medians of same-round pairs; vCPU/1k: proxy CPU per 1000 req/s at 32"
        " connections, per hop;\n  up µs/rq: upstream nginx CPU per request; errors: wrk non-2xx +"
        f" socket errors, all runs.\n  Direct req/s ranged {min(spread):.0f}-{max(spread):.0f}"
        " across rounds (this machine's noise)."
    )
    print("\ngoals (informational):")
    for path in paths[2:]:
        added, vcpu = path.added("p50", direct), path.median("vcpu_per_1k") / path.hops
        rss, errors = path.median("rss"), sum(path.samples["errors"])
        checks = [
            (f"added p50/hop {added:.3f} ms ≤ {GOAL_ADDED_P50_MS}", added <= GOAL_ADDED_P50_MS),
            (f"vCPU/1k rps {vcpu:.3f} ≤ {GOAL_VCPU_PER_1K}", vcpu <= GOAL_VCPU_PER_1K),
            (f"RSS {rss:.1f} MB ≤ {GOAL_RSS_MB:g}", rss <= GOAL_RSS_MB),
            (f"errors {errors:.0f} = 0", errors == 0),
        ]
        if path.hops == 1:
            ratio = path.ratio("rps", nginx)
            checks.insert(1, (f"c32 {ratio:.2f}x nginx ≥ {GOAL_VS_NGINX}", ratio >= GOAL_VS_NGINX))
        print(f"  {path.name}:")
        for text, ok in checks:
            print(f"    {'PASS' if ok else 'MISS'}  {text}")


# -- RE2 against Python's re on route matching -------------------------------------------------
#: App Mesh's regex matches as the translator writes them: a gateway route's path regex and
#: header regexes (``match.headers[].match.regex``), ahead of a prefix catch-all.
REGEX_ROUTES = (
    {"match": {"safe_regex": {"regex": "/api/v[0-9]+/users/[0-9]+"}}, "route": {"cluster": "a"}},
    {
        "match": {
            "prefix": "/",
            "headers": [
                {
                    "name": "x-canary",
                    "string_match": {"safe_regex": {"regex": "(blue|green)-[a-z]+"}},
                }
            ],
        },
        "route": {"cluster": "b"},
    },
    {
        "match": {
            "prefix": "/",
            "headers": [
                {"name": "user-agent", "string_match": {"safe_regex": {"regex": ".*Mobile.*"}}}
            ],
        },
        "route": {"cluster": "c"},
    },
    {"match": {"prefix": "/"}, "route": {"cluster": "d"}},
)
REGEX_REQUESTS = (
    ("/api/v2/users/12345", {"user-agent": "curl/8.5.0"}),
    ("/catalog/items?id=7", {"x-canary": "green-eu", "user-agent": "curl/8.5.0"}),
    ("/", {"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"}),
    ("/static/app.js", {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"}),
)


def route_matching_ns(engine: str, calls: int = 50_000, rounds: int = 5) -> float:
    """ns per route lookup over REGEX_REQUESTS, the table compiled with ``engine``'s regexes
    (``re2``: the proxy's own; ``re2-uncached``: the same without remembered verdicts;
    ``re``: the same matchers on Python's ``re``); best of rounds."""
    from unittest import mock

    from proxy.config import matchers, regex
    from proxy.config.routing import RequestView, compile_route_configuration

    def python_re(pattern: str, *, ignore_case: bool = False) -> Any:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)

    spec = {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": list(REGEX_ROUTES)}]}
    patches = {
        "re": mock.patch.object(matchers, "compile_re2", python_re),
        "re2-uncached": mock.patch.object(regex, "VERDICT_CACHE_SIZE", 0),
    }
    with patches.get(engine, contextlib.nullcontext()):
        table = compile_route_configuration(spec)
    requests = [(RequestView(path, headers)) for path, headers in REGEX_REQUESTS]
    clusters = [table.route("svc", r).action.cluster for r in requests]  # type: ignore[union-attr]
    assert clusters == ["a", "b", "c", "d"], clusters
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls // len(requests)):
            for request in requests:
                table.route("svc", request)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e9


def print_route_matching() -> None:
    """The proxy as it runs (RE2, recent verdicts remembered) against Python's ``re``, and
    RE2's own per-call cost with the memory off."""
    ns = {engine: route_matching_ns(engine) for engine in ("re", "re2", "re2-uncached")}
    print(
        f"route lookup, 4 routes with regexes: re {ns['re']:.0f} ns, "
        f"re2 as the proxy runs it {ns['re2']:.0f} ns (re2/re {ns['re2'] / ns['re']:.2f}), "
        f"re2 uncached {ns['re2-uncached']:.0f} ns ({ns['re2-uncached'] / ns['re']:.2f})"
    )


# -- orchestration ------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--workers", type=int, default=1, help="SO_REUSEPORT proxy processes")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--route-matching", action="store_true", help="only RE2 vs re on route matching"
    )
    args = parser.parse_args()
    if args.route_matching:
        print_route_matching()
        return
    ensure_tools()
    pin = can_pin(args.no_pin)
    workers = args.workers
    if workers > 1 and not proxy_supports_reuse_port():
        print(f"--workers {workers}: skipped, the proxy's listeners do not set SO_REUSEPORT")
        workers = 1
    with (
        tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp_name,
        Processes(Path(tmp_name), pin) as procs,
    ):

        def start_proxy(
            name: str, listen: int, ingress: int, egress: int, target: int
        ) -> list[int]:
            resources = translate_for(name, up_port, target, ingress, egress, workers > 1)
            return serve_proxy(procs, f"{name}-{listen}", resources, listen, workers)

        up_port, ngx_port = free_port(), free_port()
        upstream = procs.start(nginx_command(procs.tmp, "up", up_port, None), up_port)
        ngx = procs.start(nginx_command(procs.tmp, "rp", ngx_port, up_port), ngx_port)
        ing_port, egr_port, one_port = free_port(), free_port(), free_port()
        ingress = start_proxy("app", ing_port, ing_port, free_port(), up_port)
        egress = start_proxy("client", egr_port, free_port(), egr_port, ing_port)
        # The egress proxy alone, its ``app`` endpoint being the upstream itself.
        egress_one = start_proxy("client", one_port, free_port(), one_port, up_port)
        paths = [
            BenchPath("direct", up_port),
            BenchPath("nginx reverse proxy", ngx_port, [ngx], 1),
            BenchPath("proxy 1 hop (ingress)", ing_port, ingress, 1),
            BenchPath("proxy 1 hop (egress+retry)", one_port, egress_one, 1),
            BenchPath("proxy 2 hops", egr_port, egress + ingress, 2),
        ]
        mode = "pinned: wrk CPU 1, servers CPU 0" if pin else "unpinned"
        print(
            f"{args.rounds} rounds x {len(paths)} paths x (c1 + c32) x {args.duration:g} s, "
            f"{mode}, proxy workers: {workers}, load average {load_average()}",
            flush=True,
        )
        for path in paths:  # warm connection pools and caches
            run_wrk(path.port, 32, 1, pin)
        for round_ in range(1, args.rounds + 1):
            for path in paths:
                measure(path, upstream, args.duration, pin)
                print(
                    f"  round {round_}: {path.name:<27} {path.samples['rps'][-1]:>8.0f} req/s"
                    f"  p50 {path.samples['p50'][-1]:.3f} ms",
                    flush=True,
                )
        report(paths)
        print(f"load average at the end: {load_average()}")


def serve_proxy(
    procs: Processes,
    name: str,
    resources: list[dict[str, Any]],
    port: int,
    workers: int = 1,
    serve: Path = SERVE,
) -> list[int]:
    """``workers`` proxy_serve.py processes applying ``resources``, listening on ``port``
    (``serve``: another checkout's proxy_serve.py, for a before/after pair)."""
    pids = []
    for index in range(workers):
        config = procs.tmp / f"{name}-{index}.json"
        config.write_text(json.dumps({"resources": resources, "admin": free_port()}))
        pids.append(procs.start([sys.executable, str(serve), str(config)], port))
    return pids


if __name__ == "__main__":
    main()
