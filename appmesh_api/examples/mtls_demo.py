"""``appmesh-local up --example mtls``: mutual TLS between two sidecars, certificates
from files, as App Mesh's howto-mutual-tls-file-provided walkthrough sets it up.

A ``front`` node (the colorapp gateway) calls a ``backend`` node (a teller answering
``green``). Both listeners are ``STRICT`` TLS with certificates from files; the
backend's listener validation trusts the demo CA and accepts only the front's
certificate (SAN ``front.mtls.local``); the front's client policy for the backend
enforces TLS, trusts the CA, requires SAN ``backend.mtls.local`` and presents the
front's certificate. The certificates are made on the spot (``mtls_certs``) in a
temporary folder that goes when the demo stops.
"""

from __future__ import annotations

import json
import ssl
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from appmesh_api.examples.mtls_certs import DemoAuthority
from appmesh_api.localports import free_port, wait_for_port
from appmesh_api.up import (
    ControlPlane,
    Processes,
    appmesh_client,
    run_example_mesh,
    start_sidecar,
)

MESH = "appmesh-local-mtls"
FRONT, BACKEND = "front", "backend"
APP = [sys.executable, "-m", "appmesh_api.examples.colorapp_app"]


def host(name: str) -> str:
    return f"{name}.mtls.local"


def _files(folder: Path, name: str) -> dict:
    return {
        "file": {
            "certificateChain": str(folder / f"{name}.crt"),
            "privateKey": str(folder / f"{name}.key"),
        }
    }


def _trust(folder: Path, san: str) -> dict:
    return {
        "trust": {"file": {"certificateChain": str(folder / "ca.pem")}},
        "subjectAlternativeNames": {"match": {"exact": [host(san)]}},
    }


def _node(port: int, name: str, tls: dict, backends: list | None = None) -> dict:
    listener = {"portMapping": {"port": port, "protocol": "http"}, "tls": tls}
    spec: dict = {"listeners": [listener], "serviceDiscovery": {"dns": {"hostname": host(name)}}}
    if backends:
        spec["backends"] = backends
    return spec


def create_mtls_mesh(appmesh, ports: dict[str, int], folder: Path) -> None:
    """The two nodes, the backend's virtual service, and the TLS between them."""
    appmesh.create_mesh(meshName=MESH, spec={"egressFilter": {"type": "DROP_ALL"}})
    backend_tls = {
        "mode": "STRICT",
        "certificate": _files(folder, BACKEND),
        "validation": _trust(folder, FRONT),  # mTLS: only the front's certificate gets in
    }
    appmesh.create_virtual_node(
        meshName=MESH,
        virtualNodeName=BACKEND,
        spec=_node(ports[BACKEND], BACKEND, backend_tls),
    )
    appmesh.create_virtual_service(
        meshName=MESH,
        virtualServiceName=host(BACKEND),
        spec={"provider": {"virtualNode": {"virtualNodeName": BACKEND}}},
    )
    policy = {
        "enforce": True,
        "validation": _trust(folder, BACKEND),
        "certificate": _files(folder, FRONT),
    }
    client = {"virtualServiceName": host(BACKEND), "clientPolicy": {"tls": policy}}
    front_tls = {"mode": "STRICT", "certificate": _files(folder, FRONT)}
    appmesh.create_virtual_node(
        meshName=MESH,
        virtualNodeName=FRONT,
        spec=_node(ports[FRONT], FRONT, front_tls, [{"virtualService": client}]),
    )


def wait_for_tls_answer(url: str, ca: Path, timeout: float = 30) -> dict:
    """The first answer from the front over HTTPS, trusting only the demo CA."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as reply:
                return json.loads(reply.read())
        except (OSError, ValueError) as exc:
            last = str(exc)
            time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s ({last})")


def _start(plane: ControlPlane, processes: Processes, folder: Path) -> dict[str, dict[str, int]]:
    """The backend app and sidecar, then the front's; returns each sidecar's ports."""
    ports = {FRONT: free_port(), BACKEND: free_port()}
    create_mtls_mesh(appmesh_client(plane.endpoint), ports, folder)
    teller = processes.start(BACKEND, [*APP, "teller", "green", str(ports[BACKEND])])
    wait_for_port(ports[BACKEND], teller, BACKEND)
    sidecars = {BACKEND: start_sidecar(processes, plane, BACKEND, MESH)}
    sidecars[FRONT] = front = start_sidecar(processes, plane, FRONT, MESH)
    proxy_env = {"HTTP_PROXY": f"http://127.0.0.1:{front['egress']}", "NO_PROXY": ""}
    backend_url = f"http://{host(BACKEND)}:{ports[BACKEND]}/"
    app = processes.start(FRONT, [*APP, "gateway", str(ports[FRONT]), backend_url], proxy_env)
    wait_for_port(ports[FRONT], app, FRONT)
    return sidecars


def run_mtls(
    port: int,
    endpoint: str | None,
    say: Callable[[str], None],
    stop_after: float | None = None,
    replicas: int = 1,
) -> int:
    with tempfile.TemporaryDirectory(prefix="appmesh-local-mtls-") as tmp:
        folder = Path(tmp)

        def build(plane: ControlPlane, processes: Processes) -> None:
            say(f"[2/4] creating mesh {MESH} (certificates from a new CA in {folder})")
            authority = DemoAuthority(folder)
            for name in (FRONT, BACKEND):
                authority.issue(name, [host(name)])
            say("[3/4] starting 2 apps and their appmesh-proxy sidecars (STRICT mTLS)")
            sidecars = _start(plane, processes, folder)
            front, backend = sidecars[FRONT], sidecars[BACKEND]
            url = f"https://localhost:{front['ingress']}/color"
            say("[4/4] waiting for the first request to cross the mesh")
            first = wait_for_tls_answer(url, authority.pem)
            _explain(say, folder, url, first["color"], front, backend)

        return run_example_mesh(MESH, port, endpoint, say, build, stop_after, replicas)


def _explain(
    say: Callable[[str], None],
    folder: Path,
    url: str,
    color: str,
    front: dict[str, int],
    backend: dict[str, int],
) -> None:
    ca = folder / "ca.pem"
    say(f"\nThe mTLS mesh is up (first answer: {color}). Try:\n")
    say(f"  curl --cacert {ca} {url}")
    say(f"  curl -s 'http://127.0.0.1:{front['admin']}/stats?filter=ssl.handshake'")
    say(f"  curl -s 'http://127.0.0.1:{backend['admin']}/stats?filter=ssl'")
    say(f"  curl http://127.0.0.1:{backend['ingress']}/")
    say(f"  curl --cacert {ca} https://localhost:{backend['ingress']}/")
    say("\nThe first goes HTTPS to the front's sidecar (each curl is a new handshake: its")
    say("listener's ssl.handshake rises), which calls the backend's over mutual TLS on a")
    say("pooled connection (cluster.*.ssl.handshake). The backend's ssl stats show that")
    say("connection's TLS version and cipher. It refuses plaintext (the fourth command:")
    say("STRICT, an empty reply; ssl.connection_error rises) and a TLS client without the")
    say("front's certificate (the fifth: mTLS, ssl.fail_verify_no_cert rises). Press")
    say("Ctrl-C to stop everything; the certificates go with it.")
