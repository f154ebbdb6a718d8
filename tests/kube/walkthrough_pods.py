"""An EKS walkthrough's pods as processes on this host, with real ``appmesh-proxy`` sidecars.

The manifest goes through ``appmesh-local kube apply --skip-other-kinds`` against the
running ``serve``, as ``kubectl apply`` sent it to the App Mesh controller; its
Deployments are played by hand here: each pod is its app on a loopback address of its
own (``APPMESH_APP_HOST``) and a sidecar for the virtual node whose ``podSelector``
picks the Deployment's pod labels, as the controller's injector picked it.

Secrets and ``appmesh.k8s.aws/secretMounts``: the walkthroughs' ``deploy.sh`` puts
certificate files into Kubernetes Secrets (``kubectl create secret generic NAME
--from-file=...``), and the injector mounts a pod's secret into its Envoy container at
the annotation's path (``/certs/``). Here a secret is a folder under ``secrets/``
holding copies of those files, and the rendered manifest's virtual nodes name the
folder their own pod mounts instead of the mount path (``mount_secrets``). The mesh
harness has no way to show a sidecar another path: it reads the file paths of its
node's spec on this machine as they are (the ECS runner likewise refuses
``mountPoints``), and a per-sidecar mount namespace with ``/certs`` bind-mounted needs
root and a ``/certs`` on the host. Rewriting per pod keeps what the mounts meant: each
sidecar sees only its own secret's files, so a spec naming a file its secret lacks
fails here as it failed in the pod.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.kube.test_kube_cli import kube
from tests.mesh.harness import Proxy, get
from tests.mesh.walkthrough_local import LocalWorld, loopback, wait_listening

FRONT_APP = str(Path(__file__).with_name("front_app.py"))
SECRET_MOUNTS = "appmesh.k8s.aws/secretMounts"
APP_PORT = 8080  # every app of these walkthroughs listens on 8080


def mounts(deployment: dict) -> list[tuple[str, str]]:
    """``secretMounts``' ``SECRET:PATH`` pairs (comma-separated, as the injector reads it)."""
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    entries = [entry.strip() for entry in annotations.get(SECRET_MOUNTS, "").split(",")]
    return [tuple(entry.split(":", 1)) for entry in entries if entry]  # type: ignore[misc]


def pod_of(node: dict, documents: list[dict]) -> dict | None:
    """The Deployment whose pod labels the virtual node's ``podSelector`` matches."""
    selector = node["spec"].get("podSelector", {}).get("matchLabels", {})
    found = [
        d
        for d in documents
        if d["kind"] == "Deployment"
        and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(found) <= 1, f"{node['metadata']['name']} selects several Deployments"
    return found[0] if found else None


def _rewrite(value: Any, pairs: list[tuple[str, str]], secrets: Path) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite(v, pairs, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, pairs, secrets) for v in value]
    if isinstance(value, str):
        for secret, path in pairs:
            if value.startswith(path):
                return f"{secrets / secret}/{value.removeprefix(path).lstrip('/')}"
    return value


def mount_secrets(text: str, secrets: Path) -> str:
    """The rendered manifest with each virtual node's paths under its pod's secret mounts
    naming that secret's folder under ``secrets``; nothing else changes."""
    documents = [d for d in yaml.safe_load_all(text) if d]
    for document in documents:
        if document["kind"] == "VirtualNode" and (pod := pod_of(document, documents)):
            document["spec"] = _rewrite(document["spec"], mounts(pod), secrets)
    return yaml.safe_dump_all(documents, sort_keys=False)


def openssl_verify(ca_file: Path, cert_file: Path) -> bool:
    """``openssl verify -CAfile CA CERT`` for a leaf its CA signed directly."""
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass
class Pod:
    app: subprocess.Popen | None
    sidecar: Proxy


class Cluster(LocalWorld):
    """One walkthrough's EKS cluster: an account of its own, its secrets and its pods.
    The mesh is named as the namespace, as in these walkthroughs."""

    def __init__(self, server, tmp: Path, namespace: str) -> None:
        super().__init__(server, tmp, namespace)
        self.namespace = namespace
        self.secrets = tmp / "secrets"
        self.pods: dict[str, Pod] = {}
        self.applied = 0

    def create_secret(self, name: str, source: Path, *files: str) -> None:
        """``kubectl create secret generic NAME --from-file=source/FILE ...``."""
        folder = self.secrets / name
        folder.mkdir(parents=True)
        for file in files:
            shutil.copyfile(source / file, folder / file)

    def apply(self, rendered: str) -> str:
        """``kubectl apply -f`` the rendered manifest, its secret mounts resolved here."""
        self.applied += 1
        path = self.tmp / f"manifest-{self.applied}.yaml"
        path.write_text(mount_secrets(rendered, self.secrets))
        done = kube(self.server, self.account, "apply", "--skip-other-kinds", "-f", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def node(self, name: str) -> str:
        """The controller's App Mesh name for a virtual node of the namespace."""
        return f"{name}_{self.namespace}"

    def start_color(self, version: str) -> Pod:
        """Deployment ``version``: the color app answering ``version``, and its sidecar."""
        self.pods[version] = Pod(None, self.start_app(version, APP_PORT, self.node(version)))
        return self.pods[version]

    def start_front(self) -> Pod:
        """Deployment ``front``: its sidecar, then the front app sending to its egress."""
        address = loopback()
        sidecar = self.mesh.proxy(self.node("front"), env={"APPMESH_APP_HOST": address})
        color_host = f"color.{self.namespace}.svc.cluster.local:{APP_PORT}"
        log = (self.tmp / f"app-front-{len(self.pods)}.log").open("wb")
        argv = [sys.executable, FRONT_APP, str(APP_PORT), address, str(sidecar.egress), color_host]
        app = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.mesh.processes.append(app)
        wait_listening(address, APP_PORT, app, "front")
        self.pods["front"] = Pod(app, sidecar)
        return self.pods["front"]

    def replace_front(self) -> Pod:
        """A changed pod template replaces the pod: the old one goes, a new one starts
        with the secret the new template mounts."""
        old = self.pods.pop("front")
        for process in (old.app, old.sidecar.process):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
        return self.start_front()

    def curl(self, color: str) -> tuple[int, str]:
        """``curl -H "color_header: COLOR" front.NS.svc.cluster.local:8080/``: the Service
        sends it to the front pod, whose sidecar's ingress takes it (iptables there)."""
        host = f"front.{self.namespace}.svc.cluster.local:{APP_PORT}"
        port = self.pods["front"].sidecar.ingress
        status, _, body = get(port, "/", host, headers={"color_header": color})
        return status, body

    def health(self, pod: str, *versions: str) -> dict[str, str]:
        """``curl localhost:9901/clusters | grep -E '((blue|green|red).*health)'`` in
        ``pod``: each version's egress cluster's health_flags (its one host)."""
        found: dict[str, str] = {}
        for line in self.pods[pod].sidecar.admin_get("/clusters").splitlines():
            for version in versions:
                cluster = f"cds_egress_{self.namespace}_{self.node(version)}_http_{APP_PORT}::"
                if line.startswith(cluster) and "::health_flags::" in line:
                    found[version] = line.rpartition("::")[2]
        return found

    def cluster_ssl(self, pod: str, version: str, name: str) -> int:
        """An ``ssl.*`` counter of ``pod``'s egress cluster to ``version``."""
        cluster = f"cds_egress_{self.namespace}_{self.node(version)}_http_{APP_PORT}"
        return self.pods[pod].sidecar.stat(f"cluster.{cluster}.ssl.{name}")
