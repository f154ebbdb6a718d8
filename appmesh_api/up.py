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
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import boto3
from botocore.config import Config

from appmesh_api.dynamo import local_dynamodb_command
from appmesh_api.localports import free_port, wait_for_port

MESH = "appmesh-local-colorapp"
TELLERS = ("white", "blue", "black")
TELLER_SERVICE = "colorteller.mesh.local"
GATEWAY_SERVICE = "colorgateway.mesh.local"
SERVICE_PORT = 9080
ACCOUNT = "123456789012"


@dataclass
class Processes:
    """Everything ``up`` started, stopped in reverse order; what the others stand on
    (``underneath``: the replicas' DynamoDB) only once they have stopped, since a
    replica's last writes as it stops (its registrations, its replica item) go there."""

    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    underneath: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(
        self,
        what: str,
        command: list[str],
        env: dict[str, str] | None = None,
        underneath: bool = False,
    ):
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        (self.underneath if underneath else self.started).append((what, process))
        return process

    def stop(self) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        for group in (self.started, self.underneath):
            self._stop(group)

    @staticmethod
    def _stop(group: list[tuple[str, subprocess.Popen]]) -> None:
        for _, process in reversed(group):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for what, process in reversed(group):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"  {what} did not stop in 10 s; killing it", flush=True)
                process.kill()
                process.wait()  # reaped here: a zombie left to init may linger on its pid


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


def start_sidecar(
    processes: Processes, plane: ControlPlane, node: str, mesh: str = MESH
) -> dict[str, int]:
    ports = {"ingress": free_port(), "egress": free_port(), "admin": free_port()}
    env = {
        **tracing_env(plane.xray_daemon),
        "APPMESH_RESOURCE_ARN": f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{mesh}/virtualNode/"
        + node,
        "APPMESH_XDS_ENDPOINT": plane.xds_endpoints,
        "APPMESH_INGRESS_PORT": str(ports["ingress"]),
        "APPMESH_EGRESS_PORT": str(ports["egress"]),
        "ENVOY_ADMIN_ACCESS_PORT": str(ports["admin"]),
        "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
        "LISTENER_DRAIN_WAIT_TIME_S": "1",
    }
    process = processes.start(f"proxy {node}", [sys.executable, "-m", "proxy.main"], env)
    wait_for_port(ports["admin"], process, f"the proxy of {node}")
    return ports


def tracing_env(daemon: str | None) -> dict[str, str]:
    """The App Mesh image's X-Ray settings, tracing every request (a demo wants every
    trace in the console at once; App Mesh's default samples 1/s then 5%)."""
    if not daemon:
        return {}
    return {
        "ENABLE_ENVOY_XRAY_TRACING": "1",
        "AWS_XRAY_DAEMON_ADDRESS": daemon,
        "XRAY_SAMPLING_RATE": "1.0",
    }


def remove_colorapp(appmesh, name: str = MESH) -> bool:
    """Delete an example's mesh and everything in it, if it exists; True if it did."""
    try:
        appmesh.describe_mesh(meshName=name)
    except appmesh.exceptions.NotFoundException:
        return False
    mesh = {"meshName": name}
    for router in appmesh.list_virtual_routers(**mesh)["virtualRouters"]:
        name = router["virtualRouterName"]
        for route in appmesh.list_routes(**mesh, virtualRouterName=name)["routes"]:
            appmesh.delete_route(**mesh, virtualRouterName=name, routeName=route["routeName"])
    for service in appmesh.list_virtual_services(**mesh)["virtualServices"]:
        appmesh.delete_virtual_service(**mesh, virtualServiceName=service["virtualServiceName"])
    for router in appmesh.list_virtual_routers(**mesh)["virtualRouters"]:
        appmesh.delete_virtual_router(**mesh, virtualRouterName=router["virtualRouterName"])
    for node in appmesh.list_virtual_nodes(**mesh)["virtualNodes"]:
        appmesh.delete_virtual_node(**mesh, virtualNodeName=node["virtualNodeName"])
    appmesh.delete_mesh(**mesh)
    return True


def run_example(
    example: str, port: int, endpoint: str | None, say: Callable[[str], None], replicas: int = 1
) -> int:
    """``up --example NAME``: colorapp (HTTP, the default), grpc or mtls."""
    if example == "grpc":
        from appmesh_api.examples.grpc_demo import run_grpc

        return run_grpc(port, endpoint, say, replicas=replicas)
    if example == "mtls":
        from appmesh_api.examples.mtls_demo import run_mtls

        return run_mtls(port, endpoint, say, replicas=replicas)
    return run_colorapp(port, endpoint, say, replicas=replicas)


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


@dataclass
class ControlPlane:
    endpoint: str  # the API endpoint ``up`` itself uses (the first replica's)
    xray_daemon: str | None  # host:port of its X-Ray daemon, if it runs one
    reused: bool
    replicas: tuple[str, ...] = ()  # with --replicas: every replica's endpoint

    @property
    def xds_endpoints(self) -> str:
        """``APPMESH_XDS_ENDPOINT`` for the sidecars: every replica, to fail over between."""
        return ",".join(self.replicas) or self.endpoint


def probe(endpoint: str) -> dict | Literal[False] | None:
    """What answers at ``endpoint``: appmesh-local's health document, ``None`` when nothing
    listens, ``False`` when something else does."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_appmesh/health", timeout=3) as reply:
            health = json.loads(reply.read())
    except urllib.error.URLError as exc:
        return None if isinstance(exc.reason, ConnectionRefusedError) else False
    except (OSError, ValueError):
        return False
    return health if isinstance(health, dict) and "appmesh" in health else False


def control_plane(
    port: int,
    endpoint: str | None,
    processes: Processes,
    say: Callable[[str], None],
    replicas: int = 1,
) -> ControlPlane:
    """Use the appmesh-local at ``endpoint`` (or already on ``port``), else start one
    (or ``replicas`` of them on one DynamoDB)."""
    if replicas > 1:
        return start_replicas(port, replicas, processes, say)
    found = probe(endpoint or f"http://127.0.0.1:{port}")
    if endpoint is not None and not found:
        raise RuntimeError(f"no appmesh-local answers at {endpoint}; start one with serve")
    if found:
        endpoint = endpoint or f"http://127.0.0.1:{port}"
        say(f"[1/4] using the appmesh-local already running on {endpoint}")
        return ControlPlane(endpoint, found.get("xray_daemon"), reused=True)
    if found is False:
        taken, port = port, free_port()
        say(f"      port {taken} is taken by something that is not appmesh-local; using {port}")
    endpoint = f"http://127.0.0.1:{port}"
    daemon_port = free_port()
    say(f"[1/4] starting the control plane on {endpoint} (X-Ray daemon on :{daemon_port})")
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
    command += ["--in-memory", "--xds-port", "0", "--xray-daemon-port", str(daemon_port)]
    wait_for_port(port, processes.start("control plane", command), "the control plane")
    return ControlPlane(endpoint, f"127.0.0.1:{daemon_port}", reused=False)


def start_replicas(
    port: int, count: int, processes: Processes, say: Callable[[str], None]
) -> ControlPlane:
    """``up --replicas N``: N ``serve`` processes on one DynamoDB table (moto's, in a
    process of its own), the first one with the X-Ray daemon. Each replica is on
    ``port + i`` when that is free; the sidecars get every replica's endpoint."""
    table_port = free_port()
    moto = processes.start("DynamoDB (moto)", local_dynamodb_command(table_port), underneath=True)
    wait_for_port(table_port, moto, "moto's DynamoDB")
    store = f"dynamodb://appmesh-local?endpoint=http://127.0.0.1:{table_port}&region=us-east-1"
    ports = [_free_or_any(port + index) for index in range(count)]
    daemon_port = free_port()
    say(
        f"[1/4] starting {count} control-plane replicas on one DynamoDB table "
        f"(moto on :{table_port}); X-Ray daemon on :{daemon_port} (replica 1)"
    )
    for index, replica_port in enumerate(ports):
        command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(replica_port)]
        command += ["--in-memory", "--store", store, "--create-table", "--xds-port", "0"]
        command += ["--xray-daemon-port", str(daemon_port if index == 0 else 0)]
        process = processes.start(f"replica {index + 1}", command)
        wait_for_port(replica_port, process, f"replica {index + 1}")
        say(f"      replica {index + 1}: http://127.0.0.1:{replica_port} (pid {process.pid})")
    endpoints = tuple(f"http://127.0.0.1:{p}" for p in ports)
    return ControlPlane(endpoints[0], f"127.0.0.1:{daemon_port}", reused=False, replicas=endpoints)


def _free_or_any(port: int) -> int:
    """``port`` when nothing listens there, else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def run_example_mesh(
    mesh: str,
    port: int,
    endpoint: str | None,
    say: Callable[[str], None],
    build: Callable[[ControlPlane, Processes], None],
    stop_after: float | None = None,
    replicas: int = 1,
) -> int:
    """What every ``up`` example shares: a control plane (borrowed or started), a fresh
    ``mesh`` (one an earlier run left is replaced), ``build`` creating the resources and
    starting the apps and sidecars, then waiting for Ctrl-C and stopping everything, the
    borrowed control plane's mesh list left as it was found."""
    processes = Processes()
    plane: ControlPlane | None = None
    try:
        plane = control_plane(port, endpoint, processes, say, replicas)
        if remove_colorapp(appmesh_client(plane.endpoint), mesh):
            say(f"      replaced the {mesh} mesh an earlier run left behind")
        build(plane, processes)
        wait_forever(stop_after)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        say(f"appmesh-local up: {exc}")
        return 1
    finally:
        say("stopping the mesh...")
        processes.stop()
        if plane is not None and plane.reused:
            leave_as_found(plane.endpoint, say, mesh)
        say("stopped.")
    return 0


def run_colorapp(
    port: int,
    endpoint: str | None,
    say: Callable[[str], None],
    stop_after: float | None = None,
    replicas: int = 1,
) -> int:
    def build(plane: ControlPlane, processes: Processes) -> None:
        endpoint = plane.endpoint
        appmesh = appmesh_client(endpoint)
        ports = {name: free_port() for name in (*TELLERS, "gateway")}
        say(f"[2/4] creating mesh {MESH} through the App Mesh API")
        create_colorapp(appmesh, ports)
        say("[3/4] starting 4 apps and their appmesh-proxy sidecars")
        app = [sys.executable, "-m", "appmesh_api.examples.colorapp_app"]
        for color in TELLERS:
            teller = processes.start(
                f"colorteller-{color}", [*app, "teller", color, str(ports[color])]
            )
            wait_for_port(ports[color], teller, f"colorteller-{color}")
            start_sidecar(processes, plane, f"colorteller-{color}")
        gateway_proxy = start_sidecar(processes, plane, "colorgateway")
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
        say(f"  open {endpoint}/console for the service map, its proxies and traces")
        say(f"  appmesh-local traces --endpoint {endpoint}")
        say("\nThe gateway's stats cover its last 50 answers (reset: curl .../color/clear).")
        say("Shift all traffic to blue with aws appmesh update-route (see the README), then curl")
        say("again. Press Ctrl-C to stop everything.")
        if plane.replicas:
            say("kill -9 a replica's pid (above): the sidecars fail over to the next one.")

    return run_example_mesh(MESH, port, endpoint, say, build, stop_after, replicas)


def leave_as_found(endpoint: str, say: Callable[[str], None], mesh: str = MESH) -> None:
    """A control plane we only borrowed gets its mesh list back as it was."""
    try:
        remove_colorapp(appmesh_client(endpoint), mesh)
        say(f"removed the {mesh} mesh from {endpoint}")
    except Exception as exc:  # the user's server may be gone already: say so, don't trace
        say(f"could not remove the {mesh} mesh from {endpoint}: {exc}")


def wait_forever(stop_after: float | None) -> None:
    """Block until Ctrl-C or SIGTERM (or ``stop_after`` seconds, for tests)."""

    def interrupt(_signum, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    deadline = None if stop_after is None else time.monotonic() + stop_after
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.5)
