"""``appmesh-local up --example colorapp``: a whole mesh on one machine, in one command.

It starts the control plane, creates the colorapp mesh through the App Mesh API
(exactly the calls App Mesh's walkthrough makes), starts the example apps and an
``appmesh-proxy`` beside each, waits until traffic flows, and prints what to try.
Ctrl-C stops every process it started. Nothing needs root: the apps reach the
mesh through their sidecar's egress port (``HTTP_PROXY``), and each proxy
registers its ingress address with the control plane.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from appmesh_api.localports import free_port, wait_for_port

MESH = "appmesh-local-colorapp"
TELLERS = ("white", "blue", "black")
TELLER_SERVICE = "colorteller.mesh.local"
GATEWAY_SERVICE = "colorgateway.mesh.local"
SERVICE_PORT = 9080
ACCOUNT = "123456789012"


@dataclass
class Processes:
    """Everything ``up`` started, stopped in reverse order."""

    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, what: str, command: list[str], env: dict[str, str] | None = None):
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        self.started.append((what, process))
        return process

    def stop(self) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for what, process in reversed(self.started):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"  {what} did not stop in 10 s; killing it", flush=True)
                process.kill()


def appmesh_client(endpoint: str):
    return boto3.client(
        "appmesh",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCOUNT,
        aws_secret_access_key="appmesh-local",
        config=Config(retries={"max_attempts": 3}),
    )


def create_colorapp(appmesh, ports: dict[str, int]) -> None:
    """The colorapp walkthrough's resources: tellers behind a router, and a gateway node."""
    appmesh.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "DROP_ALL"}})
    for color in TELLERS:
        appmesh.create_virtual_node(
            meshName=MESH,
            virtualNodeName=f"colorteller-{color}",
            spec={
                "listeners": [{"portMapping": {"port": ports[color], "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": f"colorteller-{color}.mesh.local"}},
            },
        )
    router = {"listeners": [{"portMapping": {"port": SERVICE_PORT, "protocol": "http"}}]}
    appmesh.create_virtual_router(meshName=MESH, virtualRouterName="colorteller", spec=router)
    targets = [{"virtualNode": f"colorteller-{c}", "weight": 1} for c in TELLERS]
    appmesh.create_route(
        meshName=MESH,
        virtualRouterName="colorteller",
        routeName="colorteller-route",
        spec={"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}},
    )
    provider = {"virtualRouter": {"virtualRouterName": "colorteller"}}
    appmesh.create_virtual_service(
        meshName=MESH, virtualServiceName=TELLER_SERVICE, spec={"provider": provider}
    )
    appmesh.create_virtual_node(
        meshName=MESH,
        virtualNodeName="colorgateway",
        spec={
            "listeners": [{"portMapping": {"port": ports["gateway"], "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": GATEWAY_SERVICE}},
            "backends": [{"virtualService": {"virtualServiceName": TELLER_SERVICE}}],
        },
    )


def start_sidecar(processes: Processes, endpoint: str, node: str) -> dict[str, int]:
    ports = {"ingress": free_port(), "egress": free_port(), "admin": free_port()}
    env = {
        "APPMESH_RESOURCE_ARN": f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{MESH}/virtualNode/"
        + node,
        "APPMESH_XDS_ENDPOINT": endpoint,
        "APPMESH_INGRESS_PORT": str(ports["ingress"]),
        "APPMESH_EGRESS_PORT": str(ports["egress"]),
        "ENVOY_ADMIN_ACCESS_PORT": str(ports["admin"]),
        "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
        "LISTENER_DRAIN_WAIT_TIME_S": "1",
    }
    process = processes.start(f"proxy {node}", [sys.executable, "-m", "proxy.main"], env)
    wait_for_port(ports["admin"], process, f"the proxy of {node}")
    return ports


def wait_for_traffic(url: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return json.loads(reply.read())
        except (OSError, ValueError) as exc:
            last_error = str(exc)
            time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s ({last_error})")


def run_colorapp(
    port: int, endpoint: str | None, say: Callable[[str], None], stop_after: float | None = None
) -> int:
    processes = Processes()
    try:
        if endpoint is None:
            endpoint = f"http://127.0.0.1:{port}"
            say(f"[1/4] starting the control plane on {endpoint}")
            command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
            command += ["--in-memory", "--xds-port", "0", "--xray-daemon-port", "0"]
            wait_for_port(port, processes.start("control plane", command), "the control plane")
        else:
            say(f"[1/4] using the control plane at {endpoint}")
        ports = {name: free_port() for name in (*TELLERS, "gateway")}
        say(f"[2/4] creating mesh {MESH} through the App Mesh API")
        create_colorapp(appmesh_client(endpoint), ports)
        say("[3/4] starting 4 apps and their appmesh-proxy sidecars")
        app = [sys.executable, "-m", "appmesh_api.examples.colorapp_app"]
        for color in TELLERS:
            teller = processes.start(
                f"colorteller-{color}", [*app, "teller", color, str(ports[color])]
            )
            wait_for_port(ports[color], teller, f"colorteller-{color}")
            start_sidecar(processes, endpoint, f"colorteller-{color}")
        gateway_proxy = start_sidecar(processes, endpoint, "colorgateway")
        teller_url = f"http://{TELLER_SERVICE}:{SERVICE_PORT}/"
        proxy_env = {"HTTP_PROXY": f"http://127.0.0.1:{gateway_proxy['egress']}", "NO_PROXY": ""}
        gateway = processes.start(
            "colorgateway", [*app, "gateway", str(ports["gateway"]), teller_url], proxy_env
        )
        wait_for_port(ports["gateway"], gateway, "colorgateway")
        url = f"http://127.0.0.1:{gateway_proxy['ingress']}/color"
        say("[4/4] waiting for the first request to cross the mesh")
        first = wait_for_traffic(url)
        say(f"\nThe colorapp mesh is up (first answer: {first['color']}). Try:\n")
        say(f"  curl {url}")
        say(f"  curl http://127.0.0.1:{gateway_proxy['admin']}/stats | grep colorteller")
        say(f"  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID={ACCOUNT} AWS_SECRET_ACCESS_KEY=x \\")
        say(f"    aws --region us-east-1 appmesh list-virtual-nodes --mesh-name {MESH}")
        say(f"  appmesh-local mesh describe {MESH} --endpoint {endpoint}")
        say(f"  open {endpoint}/console for the mesh graph, its proxies and traces")
        say("\nShift all traffic to blue with aws appmesh update-route (see the README), then curl")
        say("again. Press Ctrl-C to stop everything.")
        _wait(stop_after)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        say(f"appmesh-local up: {exc}")
        return 1
    finally:
        say("stopping the mesh...")
        processes.stop()
        say("stopped.")
    return 0


def _wait(stop_after: float | None) -> None:
    """Block until Ctrl-C or SIGTERM (or ``stop_after`` seconds, for tests)."""

    def interrupt(_signum, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    deadline = None if stop_after is None else time.monotonic() + stop_after
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.5)
