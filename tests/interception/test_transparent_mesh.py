"""Transparent mode end to end, as on ECS and EKS: iptables in each task, and
applications that know nothing of the mesh.

Network namespaces on one private bridge (see netns.py):

    control plane  .2   appmesh-local serve
    front task     .10  app "front" :8080, appmesh-proxy, APPMESH_* iptables rules
    color task     .20  app "color" :8080, appmesh-proxy, APPMESH_* iptables rules
    outside        .30  not in the mesh: HTTP "external" :8080, a TCP greeter :9000

The front task's app side (a plain HTTP client, uid 0) asks for
http://color.mesh.local:8080/color. The name resolves, through the task's /etc/hosts,
to 10.10.10.10, an address nothing owns, as the App Mesh guide suggests. iptables
sends the connection to the front proxy's egress listener, which routes it by original
destination port and Host to the color proxy's registered ingress address; the color
proxy hands it to the app on 127.0.0.1.
Each proxy's access log (stdout, its log file here) shows the original destination.

The proxies must be exempt from their own redirect. App Mesh runs Envoy as uid 1337
(IgnoredUID). Where uid 1337 cannot run this machine's Python (pyenv under a 0700
/root), the proxies run as root with group 1337 and the rules exempt that group
instead: IgnoredGID, which ECS (proxyConfiguration) and EKS (APPMESH_IGNORE_GID) offer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import make_client, new_account
from tests.interception.netns import Network, eventually, in_ns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("iptables", "ip", "setpriv")),
    reason="needs root, iptables, iproute2 and setpriv (network namespaces)",
)

HERE = Path(__file__).parent
COLOR_APP = str(HERE.parent / "mesh" / "color_app.py")
ECHO = str(HERE / "echo_destination.py")
MESH, SERVICE, DUMMY_IP = "transparent", "color.mesh.local", "10.10.10.10"
LOG_FORMAT = "[mesh] %DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %RESPONSE_CODE%"
ALLOW_ALL_CLUSTER = f"cds_egress_{MESH}_mesh-allow-all"
PROXY = (sys.executable, "-m", "proxy.main")
OCTETS = {"plane": 2, "front": 10, "color": 20, "outside": 30}
TASKS = (("color", OCTETS["color"]), ("front", OCTETS["front"]))  # color registers first


@dataclass(frozen=True)
class ProxyUser:
    """How the proxies run, and the iptables exemption (EKS variable) that matches it."""

    command: tuple[str, ...]
    iptables_env: dict[str, str]


def proxy_user() -> ProxyUser:
    """uid 1337 as in App Mesh if it can run this interpreter, else root with gid 1337.

    The probe checks the prefix: setpriv may still exec an unreadable interpreter, which
    then falls back to the system's standard library and misses our dependencies."""
    as_uid = ("setpriv", "--reuid=1337", "--regid=1337", "--clear-groups")
    code = f"import sys, uvloop, proxy.server; sys.exit(sys.prefix != {sys.prefix!r})"
    probe = subprocess.run([*as_uid, sys.executable, "-c", code], capture_output=True, check=False)
    if probe.returncode == 0:
        return ProxyUser(as_uid, {"APPMESH_IGNORE_UID": "1337"})
    as_gid = ("setpriv", "--regid=1337", "--clear-groups")
    return ProxyUser(as_gid, {"APPMESH_IGNORE_GID": "1337"})


@dataclass
class Transparent:
    """The running mesh: namespaces, addresses, the App Mesh client and the proxy logs."""

    network: Network
    appmesh: Any
    namespaces: dict[str, str]
    logs: Path

    def ip(self, name: str) -> str:
        return self.network.address(OCTETS[name])

    def stat(self, task: str, name: str) -> int:
        url = f"http://{self.ip(task)}:9901/stats"
        with urllib.request.urlopen(url, timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                key, _, value = line.partition(": ")
                if key == name:
                    return int(value)
        return 0

    def logged(self, task: str, line: str) -> int:
        """How often ``task``'s proxy wrote this access-log line (it flushes within 1 s)."""
        return (self.logs / f"proxy-{task}.log").read_text(errors="replace").count(line)

    def set_egress(self, egress: str) -> None:
        self.appmesh.update_mesh(meshName=MESH, spec={"egressFilter": {"type": egress}})


def run_in(ns: str, code: str) -> str:
    """Run Python ``code`` as a plain root process in ``ns``: an app, not the proxy."""
    command = in_ns(ns, sys.executable, "-c", code)
    return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout


def get(ns: str, url: str) -> tuple[int, str]:
    """A GET from inside ``ns``: (status, body), status 0 when the connection failed.
    The host name resolves through the namespace's /etc/hosts, as an app's would."""
    parts = urlsplit(url)
    status, _, body = run_in(
        ns,
        "import http.client, sys\ntry:\n"
        f"    c = http.client.HTTPConnection({parts.hostname!r}, {parts.port}, timeout=5)\n"
        f"    c.request('GET', {parts.path!r})\n"
        "    r = c.getresponse()\n    print(r.status)\n    sys.stdout.write(r.read().decode())\n"
        "except OSError:\n    print(0)\n",
    ).partition("\n")
    return int(status or 0), body


def tcp_line(ns: str, address: str, port: int) -> str:
    """Connect from ``ns`` and read one line; "" when the connection is closed or refused."""
    return run_in(
        ns,
        "import socket\ntry:\n"
        f"    s = socket.create_connection(({address!r}, {port}), timeout=5)\n"
        "    print(s.makefile().readline().strip())\n"
        "except OSError:\n    print()\n",
    ).strip()


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def admin_state(address: str) -> str:
    try:
        with urllib.request.urlopen(f"http://{address}:9901/server_info", timeout=2) as reply:
            return json.loads(reply.read()).get("state", "")
    except OSError:
        return ""


def node_spec(name: str, backends: tuple[str, ...] = ()) -> dict:
    log = {"file": {"path": "/dev/stdout", "format": {"text": LOG_FORMAT}}}
    return {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"{name}.mesh.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
        "logging": {"accessLog": log},
    }


def build_mesh(appmesh) -> None:
    appmesh.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "ALLOW_ALL"}})
    appmesh.create_virtual_node(meshName=MESH, virtualNodeName="color", spec=node_spec("color"))
    front = node_spec("front", backends=(SERVICE,))
    appmesh.create_virtual_node(meshName=MESH, virtualNodeName="front", spec=front)
    provider = {"virtualNode": {"virtualNodeName": "color"}}
    appmesh.create_virtual_service(
        meshName=MESH, virtualServiceName=SERVICE, spec={"provider": provider}
    )


def start_control_plane(net: Network, logs: Path) -> str:
    """appmesh-local in its own namespace, reachable from the tasks and from this test."""
    ns, address = net.host("plane", OCTETS["plane"]), net.address(OCTETS["plane"])
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--host", address]
    command += ["--in-memory", "--xds-port", "0", "--xray-daemon-port", "0"]
    with (logs / "control-plane.log").open("wb") as log:
        process = net.spawn(ns, command, log=log)
    eventually(lambda: process.poll() is not None or port_open(address, 4567), timeout=30)
    assert process.poll() is None, (logs / "control-plane.log").read_text()
    return f"http://{address}:4567"


@dataclass(frozen=True)
class Deployment:
    """What every task shares: the network, the control plane and the proxies' user."""

    net: Network
    endpoint: str
    account: str
    user: ProxyUser
    logs: Path

    def task(self, name: str, octet: int) -> str:
        """A task namespace: its interception rules, its app on 127.0.0.1:8080, its proxy."""
        ns = self.net.host(name, octet, hosts={SERVICE: DUMMY_IP})
        rules = {**os.environ, **self.user.iptables_env, "APPMESH_APP_PORTS": "8080"}
        tool = shutil.which("appmesh-proxy")
        apply = in_ns(ns, *((tool,) if tool else PROXY), "iptables", "apply")
        subprocess.run(apply, env=rules, check=True, capture_output=True, timeout=30)
        self.net.spawn(ns, [sys.executable, COLOR_APP, name, "8080"])
        with (self.logs / f"proxy-{name}.log").open("wb") as log:
            env = self.proxy_env(name, self.net.address(octet))
            self.net.spawn(ns, [*self.user.command, *PROXY], log=log, env=env)
        eventually(lambda: admin_state(self.net.address(octet)) == "LIVE")
        return ns

    def proxy_env(self, node: str, address: str) -> dict[str, str]:
        arn = f"arn:aws:appmesh:us-east-1:{self.account}:mesh/{MESH}/virtualNode/{node}"
        return {
            **os.environ,
            "APPMESH_RESOURCE_ARN": arn,
            "APPMESH_XDS_ENDPOINT": self.endpoint,
            "APPMESH_INGRESS_ADDRESS": f"{address}:15000",
            "ENVOY_ADMIN_ACCESS_ADDRESS": address,  # the test polls it from outside the task
            "LISTENER_DRAIN_WAIT_TIME_S": "0",
        }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Transparent]:
    logs = tmp_path_factory.mktemp("transparent")
    with Network() as net:
        endpoint = start_control_plane(net, logs)
        deployment = Deployment(net, endpoint, new_account(), proxy_user(), logs)
        appmesh = make_client(endpoint, "appmesh", deployment.account)
        build_mesh(appmesh)
        namespaces = {name: deployment.task(name, octet) for name, octet in TASKS}
        outside = namespaces["outside"] = net.host("outside", OCTETS["outside"])
        net.spawn(outside, [sys.executable, COLOR_APP, "external", "8080", "0", "0.0.0.0"])
        net.spawn(outside, [sys.executable, ECHO, "9000=outside"])
        yield Transparent(net, appmesh, namespaces, logs)


def test_a_service_name_is_intercepted_and_routed_proxy_to_proxy(mesh: Transparent) -> None:
    front, color = mesh.namespaces["front"], mesh.ip("color")
    assert eventually(lambda: get(front, f"http://{SERVICE}:8080/color") == (200, "color"))
    target = f"cds_egress_{MESH}_color_http_8080"
    assert mesh.stat("front", f"cluster.{target}.upstream_rq_200") >= 1
    # The front proxy saw where the app was going; it sent it to the color proxy's ingress.
    assert eventually(lambda: mesh.logged("front", f"{DUMMY_IP}:8080 {target} {color}:15000 200"))
    app = f"cds_ingress_{MESH}_color_http_8080 127.0.0.1:8080 200"
    assert eventually(lambda: mesh.logged("color", f"{color}:15000 {app}"))


def test_the_app_port_is_intercepted_on_the_way_in(mesh: Transparent) -> None:
    """The color app listens on 127.0.0.1 only: from outside, only its proxy can answer."""
    color = mesh.ip("color")
    assert get(mesh.namespaces["outside"], f"http://{color}:8080/color") == (200, "color")
    app = f"cds_ingress_{MESH}_color_http_8080 127.0.0.1:8080 200"
    assert eventually(lambda: mesh.logged("color", f"{color}:8080 {app}"))


def test_allow_all_sends_unknown_destinations_where_the_app_sent_them(mesh: Transparent) -> None:
    front, outside = mesh.namespaces["front"], mesh.ip("outside")
    http = f"{outside}:8080 {ALLOW_ALL_CLUSTER} {outside}:8080 200"
    tcp = f"{outside}:9000 {ALLOW_ALL_CLUSTER} {outside}:9000 0"
    seen = mesh.logged("front", http), mesh.logged("front", tcp)
    # HTTP on a mesh port: the egress routes' catch-all virtual host.
    assert get(front, f"http://{outside}:8080/color") == (200, "external")
    # TCP on a port the mesh does not use: the egress listener's default filter chain.
    assert tcp_line(front, outside, 9000) == f"outside {outside}:9000"
    # Both went through the passthrough cluster, to where the app sent them.
    expected = (seen[0] + 1, seen[1] + 1)
    assert eventually(lambda: (mesh.logged("front", http), mesh.logged("front", tcp)) == expected)


def test_drop_all_refuses_what_the_mesh_does_not_name(mesh: Transparent) -> None:
    front, outside = mesh.namespaces["front"], mesh.ip("outside")
    mesh.set_egress("DROP_ALL")
    try:
        assert eventually(lambda: get(front, f"http://{outside}:8080/color")[0] == 404)
        assert tcp_line(front, outside, 9000) == ""  # no filter chain: closed
        assert get(front, f"http://{SERVICE}:8080/color") == (200, "color")
    finally:
        mesh.set_egress("ALLOW_ALL")
    assert eventually(lambda: get(front, f"http://{outside}:8080/color") == (200, "external"))
