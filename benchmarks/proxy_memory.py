"""What one appmesh-proxy sidecar costs in memory, and what each import costs.

    python benchmarks/proxy_memory.py [--tree DIR] [--rounds 3]

Starts ``appmesh-proxy -c bootstrap.json`` (the bootstrap the App Mesh image's environment
makes) against a REST xDS control plane in this process serving one virtual node: one
listener, one backend, so three clusters (the app, the backend, amazonaws). The node is
served with an ``http`` listener, then with an ``http2`` one, then with an ``http`` listener
in STRICT TLS with a file certificate (``tls``), then the same with its certificate from a
local SDS agent (``sds``: the fake SPIRE agent of ``tests/sds_agent.py`` on a Unix socket,
which makes the sidecar load h2 and protobuf). For each: VmRSS once LIVE, and after 2 s of
load through the ingress (wrk at 32 connections, over TLS for ``tls`` and ``sds``, or
h2load 8 x 10 streams for HTTP/2). Rounds alternate the four; medians are printed. Then,
in a fresh interpreter, VmRSS after each import of the sidecar's start-up path and of the
libraries it no longer loads at start. ``--tree DIR`` measures another checkout's proxy
(before/after a change).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import ROOT, Processes, free_port, load_average, rss_mb, wait_for_port
from envoy_bootstrap.bootstrap import build_bootstrap
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import translate

NODE = "arn:aws:appmesh:us-east-1:123456789012:mesh/bench/virtualNode/front"
GOAL_MB = 30.0
IMPORTS = [
    ("asyncio", "asyncio (ssl with it)"),
    ("uvloop", "uvloop"),
    ("httptools", "httptools"),
    ("proxy.main", "proxy.main (bootstrap, signing)"),
    ("proxy.server", "proxy.server (data path, admin)"),
    ("proxy.xds.rest", "proxy.xds.rest (REST xDS)"),
]
NOT_AT_START = [
    ("aiohttp.web", "aiohttp (+web)"),
    ("botocore.auth", "botocore (SigV4Auth)"),
    ("re2", "re2"),
    ("h2.connection", "h2"),
    ("envoy_bootstrap.translate", "envoy_bootstrap.translate"),
    ("cryptography.x509", "cryptography.x509"),
    ("google.protobuf.json_format", "protobuf"),
    ("envoy.extensions.transport_sockets.tls.v3.secret_pb2", "Secret proto (local SDS)"),
    ("envoy.service.discovery.v3.discovery_pb2", "Discovery protos (local SDS)"),
    ("grpc", "grpcio (never: SDS is gRPC over h2)"),
]
SPIFFE_ID = "spiffe://bench.local/front"
#: Protocol the node's listener speaks, per variant.
PROTOCOLS = {"http": "http", "http2": "http2", "tls": "http", "sds": "http"}


def node_resources(
    protocol: str, app_port: int, ingress: int, egress: int, tls: dict | None = None
) -> list[dict]:
    """Node ``front`` (one ``protocol`` listener on the app's port, with ``tls`` if given)
    with backend ``peer``."""

    def node(name: str, port: int, backends: tuple[str, ...] = ()) -> dict[str, Any]:
        listener: dict[str, Any] = {"portMapping": {"port": port, "protocol": protocol}}
        if tls and name == "front":
            listener["tls"] = tls
        spec: dict[str, Any] = {
            "serviceDiscovery": {"dns": {"hostname": f"{name}.bench.local"}},
            "listeners": [listener],
            "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
        }
        return {"meshName": "bench", "virtualNodeName": name, "spec": spec}

    provider = {"virtualNode": {"virtualNodeName": "peer"}}
    snapshot = MeshSnapshot(
        mesh={"meshName": "bench", "spec": {}},
        virtual_nodes={
            "front": node("front", app_port, ("peer.bench.local",)),
            "peer": node("peer", 9),
        },
        virtual_routers={},
        routes={},
        virtual_services={"peer.bench.local": {"spec": {"provider": provider}}},
        virtual_gateways={},
        gateway_routes={},
        registered_endpoints={"peer": (("127.0.0.1", 9),)},
    )
    identity = NodeIdentity("virtualNode", "front", ingress, egress, "127.0.0.1", "127.0.0.1")
    return [dict(resource) for resource in translate(snapshot, identity).all()]


class ControlPlane(ThreadingHTTPServer):
    """REST xDS serving one version of ``resources`` (long-polls on it held for 1 s)."""

    daemon_threads = True

    def __init__(self, resources: list[dict]) -> None:
        self.resources = resources
        super().__init__(("127.0.0.1", 0), _Discovery)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Discovery(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ControlPlane

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request.get("version_info") == "1":
            time.sleep(1)
            self.send_response(304)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        names, kind = set(request.get("resource_names") or ()), request["type_url"]
        found = [r for r in self.server.resources if r["@type"] == kind
                 and (not names or (r.get("name") or r.get("cluster_name")) in names)]  # fmt: skip
        body = json.dumps({"version_info": "1", "resources": found, "type_url": kind,
                           "nonce": "1"}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def nginx_upstream(tmp: Path, port: int, h2_port: int) -> list[str]:
    from benchmarks.proxy_http2 import h2_upstream_command

    return h2_upstream_command(tmp, port, h2_port)


def until_live(admin: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/server_info", timeout=2) as r:
                if json.load(r)["state"] == "LIVE":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the sidecar did not become LIVE")


def load(variant: str, port: int) -> None:
    """Two seconds of traffic through the ingress (bounded by the tools' -d/-D)."""
    host = "front.bench.local"
    scheme = "https" if variant in ("tls", "sds") else "http"
    if variant == "http2":
        cmd = ["h2load", "-D", "2", "-c", "8", "-m", "10", "-t", "1",
               "-H", f":authority: {host}", f"http://127.0.0.1:{port}/"]  # fmt: skip
    else:
        cmd = ["wrk", "-t1", "-c32", "-d2s", "-H", f"Host: {host}", f"{scheme}://127.0.0.1:{port}/"]
    subprocess.run(cmd, capture_output=True, check=True, timeout=30)


def spire_agent(tmp: Path) -> Any:
    """The fake SPIRE agent serving the front's SVID, on a short socket path."""
    from tests.certificates import Authority
    from tests.sds_agent import FakeSpireAgent

    sockets = Path(tempfile.mkdtemp(prefix="spire-", dir="/tmp"))
    agent = FakeSpireAgent(sockets / "agent.sock")
    agent.certificate(SPIFFE_ID, Authority(tmp, "Bench CA").issue("front", [SPIFFE_ID]))
    return agent.start()


def one_sidecar(procs: Processes, tree: Path, variant: str, app_ports: dict[str, int]) -> dict:
    """Start a sidecar for the node in ``variant``; its RSS idle and loaded."""
    ingress, egress, admin = free_port(), free_port(), free_port()
    protocol = PROTOCOLS[variant]
    env = {"APPMESH_RESOURCE_ARN": NODE, "ENVOY_ADMIN_ACCESS_PORT": str(admin),
           "APPMESH_INGRESS_PORT": str(ingress), "APPMESH_EGRESS_PORT": str(egress)}  # fmt: skip
    tls, agent = None, None
    if variant == "tls":
        from tests.certificates import Authority

        pem = Authority(procs.tmp, "Bench CA").issue(f"front-{ingress}", ["front.bench.local"])
        files = {"certificateChain": str(pem.chain), "privateKey": str(pem.key)}
        tls = {"mode": "STRICT", "certificate": {"file": files}}
    if variant == "sds":
        agent = spire_agent(procs.tmp)
        env["APPMESH_SDS_SOCKET_PATH"] = str(agent.socket_path)
        tls = {"mode": "STRICT", "certificate": {"sds": {"secretName": SPIFFE_ID}}}
    plane = ControlPlane(node_resources(protocol, app_ports[protocol], ingress, egress, tls))
    path = procs.tmp / f"bootstrap-{variant}-{ingress}.json"
    path.write_text(json.dumps(build_bootstrap(env, f"127.0.0.1:{plane.port}")))
    child_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "HOME": str(procs.tmp)}
    command = [sys.executable, "-m", "proxy.main", "-c", str(path), "--drain-time-s", "0"]
    pid = procs.start(command, admin, env=child_env, cwd=tree)  # -m puts cwd first
    try:
        until_live(admin)
        if variant in ("tls", "sds"):
            wait_for_port(ingress, procs.started[-1], timeout=20)  # warmed: the SVID came
        time.sleep(0.5)
        idle = rss_mb(pid)
        load(variant, ingress)
        return {"idle": idle, "loaded": rss_mb(pid)}
    finally:
        procs.stop_last()
        plane.shutdown()
        plane.server_close()
        if agent is not None:
            agent.stop()


def python_baseline(tree: Path) -> float:
    """VmRSS of this interpreter doing nothing (site-packages' .pth files included)."""
    code = "import re;print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree
    )
    return int(out.stdout) / 1024


_IMPORT_COSTS = """
import importlib, json, re, sys
def rss():
    return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024
rows, before = [], rss()
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        rows.append((name, None, str(exc))); continue
    now = rss(); rows.append((name, now - before, now)); before = now
print(json.dumps(rows))
"""


def import_costs(tree: Path) -> list[tuple[str, float | None, Any]]:
    """VmRSS added by each import, in order, in a fresh interpreter."""
    names = [name for name, _ in IMPORTS + NOT_AT_START]
    command = [sys.executable, "-c", _IMPORT_COSTS, *names]
    env = {"PYTHONPATH": str(tree)}
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd=tree)
    return [tuple(row) for row in json.loads(out.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose proxy to run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing (benchmarks/proxy.py and proxy_http2.py install them)")
    tree = args.tree.resolve()
    samples: dict[str, dict[str, list[float]]] = {variant: {} for variant in PROTOCOLS}
    with (
        tempfile.TemporaryDirectory(prefix="proxy-mem-") as tmp_name,
        Processes(Path(tmp_name), pin=False) as procs,
    ):
        up, up_h2 = free_port(), free_port()
        procs.start(nginx_upstream(procs.tmp, up, up_h2), up)
        wait_for_port(up_h2, procs.started[-1], timeout=20)
        print(f"proxy from {tree}; load average {load_average()}", flush=True)
        for round_ in range(1, args.rounds + 1):
            for protocol in PROTOCOLS:
                got = one_sidecar(procs, tree, protocol, {"http": up, "http2": up_h2})
                for key, value in got.items():
                    samples[protocol].setdefault(key, []).append(value)
                print(f"  round {round_} {protocol:<6} idle {got['idle']:.1f} MB,"
                      f" after load {got['loaded']:.1f} MB", flush=True)  # fmt: skip
        loadavg = load_average()
    print(f"\nVmRSS of one sidecar (1 listener, 3 clusters), median of {args.rounds};"
          f" load average at the end {loadavg}")  # fmt: skip
    print(f"  python doing nothing (this machine's site-packages): {python_baseline(tree):.1f} MB")
    for protocol, got in samples.items():
        idle, loaded = statistics.median(got["idle"]), statistics.median(got["loaded"])
        mark = "met" if loaded <= GOAL_MB else "not met"
        print(f"  {protocol:<6} listener: LIVE {idle:.1f} MB, after load {loaded:.1f} MB"
              f" (goal ≤ {GOAL_MB:g} MB: {mark})")  # fmt: skip
    print("\nVmRSS added by each import, in this order, in a fresh interpreter:")
    labels = dict(IMPORTS + NOT_AT_START)
    for index, (name, added, total) in enumerate(import_costs(tree)):
        if index == len(IMPORTS):
            print("  not loaded by the sidecar above at start (on demand or never):")
        cost = "not installed" if added is None else f"+{added:4.1f} MB  (total {total:.1f})"
        print(f"    {labels[name]:<34} {cost}")


if __name__ == "__main__":
    main()
