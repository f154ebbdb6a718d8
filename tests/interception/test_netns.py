"""Transparent interception for real, as root, in network namespaces made for the test.

Two namespaces joined by a veth pair play a client host and an app task. The
APPMESH_* rules are installed in the app namespace; a server there reports the
original destination it recovers with SO_ORIGINAL_DST.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from proxy.interception.iptables import Interception, apply, remove

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables") or not shutil.which("ip"),
    reason="needs root, iptables and iproute2 (network namespaces)",
)

ECHO = str(Path(__file__).with_name("echo_destination.py"))
CLIENT_IP, APP_IP = "10.231.7.1", "10.231.7.2"  # inside namespaces this test creates


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


def in_ns(ns: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


@pytest.fixture
def hosts():
    tag = uuid.uuid4().hex[:6]
    client, app = f"amc-{tag}", f"ama-{tag}"
    processes: list[subprocess.Popen] = []
    sh("ip", "netns", "add", client)
    sh("ip", "netns", "add", app)
    try:
        sh("ip", "link", "add", f"vc{tag}", "type", "veth", "peer", "name", f"va{tag}")
        sh("ip", "link", "set", f"vc{tag}", "netns", client)
        sh("ip", "link", "set", f"va{tag}", "netns", app)
        for ns, device, address in ((client, f"vc{tag}", CLIENT_IP), (app, f"va{tag}", APP_IP)):
            sh(*in_ns(ns, "ip", "addr", "add", f"{address}/30", "dev", device))
            sh(*in_ns(ns, "ip", "link", "set", device, "up"))
            sh(*in_ns(ns, "ip", "link", "set", "lo", "up"))

        def start(ns: str, *pairs: str) -> None:
            process = subprocess.Popen(
                in_ns(ns, sys.executable, ECHO, *pairs), stdout=subprocess.PIPE, text=True
            )
            assert process.stdout.readline().strip() == "ready"
            processes.append(process)

        start(app, "15000=ingress", "15001=egress", "9080=app")
        start(client, "7000=remote", "22=ssh")
        yield client, app
    finally:
        for process in processes:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "del", client], check=False)
        subprocess.run(["ip", "netns", "del", app], check=False)


def namespace_runner(ns: str):
    return lambda arguments: subprocess.run(
        in_ns(ns, "iptables", *arguments), capture_output=True, text=True, check=False
    )


def connect(ns: str, address: str, port: int, uid: int = 0) -> str:
    code = (
        "import encodings.idna,os,socket,sys;"
        f"os.setuid({uid}) if {uid} else None;"
        f"s=socket.create_connection(('{address}',{port}),timeout=5);"
        "print(s.makefile().readline().strip())"
    )
    result = subprocess.run(
        in_ns(ns, sys.executable, "-c", code), capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_ecs_style_interception_redirects_and_keeps_the_original_destination(hosts):
    client, app = hosts
    config = Interception.from_properties(
        {"IgnoredUID": "1337", "AppPorts": "9080", "EgressIgnoredIPs": "169.254.170.2"}
    )
    assert connect(client, APP_IP, 9080) == f"app {APP_IP}:9080"  # before: straight to the app
    apply(config, runner=namespace_runner(app))
    # Inbound to an app port lands on the proxy's ingress, which knows where it was going.
    assert connect(client, APP_IP, 9080) == f"ingress {APP_IP}:9080"
    # Outbound from the app lands on the proxy's egress port.
    assert connect(app, CLIENT_IP, 7000) == f"egress {CLIENT_IP}:7000"
    # The proxy's own user (IgnoredUID) and port 22 go out untouched.
    assert connect(app, CLIENT_IP, 7000, uid=1337) == f"remote {CLIENT_IP}:7000"
    assert connect(app, CLIENT_IP, 22) == f"ssh {CLIENT_IP}:22"
    remove(runner=namespace_runner(app))
    assert connect(client, APP_IP, 9080) == f"app {APP_IP}:9080"
