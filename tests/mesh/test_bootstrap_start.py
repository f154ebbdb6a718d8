"""A sidecar started from ``appmesh-local bootstrap``'s output joins the mesh.

The bootstrap a real Envoy would be given is the whole configuration: the proxy runs
from the file with none of the App Mesh variables in its environment, registers its
ingress address from the node metadata, and serves mesh traffic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from appmesh_api.localports import wait_for_port
from tests.conftest import free_port, make_client, new_account
from tests.mesh.harness import Mesh, Proxy, get


def test_a_proxy_started_from_appmesh_local_bootstrap_joins_the_mesh(server, tmp_path):
    account = new_account()
    mesh = Mesh(server.endpoint, account, "boot", tmp_path)
    appmesh = make_client(server.endpoint, "appmesh", account)
    try:
        appmesh.create_mesh(meshName="boot")
        port = mesh.app("blue")
        appmesh.create_virtual_node(
            meshName="boot",
            virtualNodeName="blue",
            spec={
                "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": "blue.boot.local"}},
            },
        )
        appmesh.create_virtual_service(
            meshName="boot",
            virtualServiceName="blue.boot.local",
            spec={"provider": {"virtualNode": {"virtualNodeName": "blue"}}},
        )
        appmesh.create_virtual_node(
            meshName="boot",
            virtualNodeName="front",
            spec={
                "listeners": [{"portMapping": {"port": mesh.app("front"), "protocol": "http"}}],
                "serviceDiscovery": {"dns": {"hostname": "front.boot.local"}},
                "backends": [{"virtualService": {"virtualServiceName": "blue.boot.local"}}],
            },
        )
        blue = start_from_bootstrap(mesh, "blue", tmp_path)
        front = mesh.proxy("front")
        assert get(front.egress, "/color", f"blue.boot.local:{port}")[::2] == (200, "blue")
        dump = json.loads(blue.admin_get("/config_dump"))
        assert dump["configs"][0]["bootstrap"]["node"]["id"].endswith("virtualNode/blue")
    finally:
        mesh.close()


def start_from_bootstrap(mesh: Mesh, node: str, tmp_path) -> Proxy:
    """``appmesh-local bootstrap`` > file, then ``appmesh-proxy -c file`` without the
    App Mesh variables."""
    ingress, egress, admin = free_port(), free_port(), free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APPMESH_", "ENVOY_"))}
    arn = f"arn:aws:appmesh:us-east-1:{mesh.account}:mesh/{mesh.mesh}/virtualNode/{node}"
    printed = subprocess.run(
        [sys.executable, "-m", "appmesh_api.cli", "bootstrap", "--resource-arn", arn,
         "--xds-endpoint", mesh.endpoint.removeprefix("http://")],
        env={**clean, "APPMESH_INGRESS_PORT": str(ingress), "APPMESH_EGRESS_PORT": str(egress),
             "ENVOY_ADMIN_ACCESS_PORT": str(admin), "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
             "ENVOY_ADMIN_ACCESS_LOG_FILE": str(tmp_path / f"admin-{node}.log")},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    path = tmp_path / f"bootstrap-{node}.json"
    path.write_text(printed.stdout)
    log = (tmp_path / f"proxy-{node}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.main", "-c", str(path), "--drain-time-s", "0"],
        env=clean,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    mesh.processes.append(process)
    proxy = Proxy(node, ingress, egress, admin, process)
    wait_for_port(admin, process, timeout=20)
    mesh.wait_live(proxy)
    return proxy
