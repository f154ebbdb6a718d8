"""An unmodified kubectl against appmesh-local's Kubernetes API for the controller's kinds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_client, new_account
from tests.kube.test_walkthroughs import render

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

HERE = Path(__file__).parent
NS = "howto-k8s-http-headers"
MESH = NS


@pytest.fixture
def cluster(server, tmp_path):
    """A kubeconfig from ``appmesh-local kube kubeconfig`` for a fresh account."""
    account = new_account()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "HOME": str(tmp_path),
    }
    config = subprocess.run(
        [sys.executable, "-m", "appmesh_api.cli", "kube", "kubeconfig"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "kubeconfig").write_text(config)
    env["KUBECONFIG"] = str(tmp_path / "kubeconfig")

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["kubectl", *args], env=env, capture_output=True, text=True, timeout=60
        )

    return kubectl, make_client(server.endpoint, "appmesh", account), tmp_path


def test_apply_get_describe_and_delete_with_kubectl(cluster):
    kubectl, appmesh, tmp_path = cluster
    applied = kubectl("apply", "-f", str(HERE / "headers.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert "virtualrouter.appmesh.k8s.aws/color created" in applied.stdout
    routes = appmesh.list_routes(meshName=MESH, virtualRouterName=f"color_{NS}")["routes"]
    assert sorted(r["routeName"] for r in routes) == ["color-route-blue", "color-route-red"]

    listed = kubectl("get", "virtualnodes", "-n", NS)
    assert listed.returncode == 0, listed.stderr
    assert f"mesh/{MESH}/virtualNode/blue_{NS}" in listed.stdout
    condition = kubectl(
        "get", "virtualservice", "color", "-n", NS,
        "-o", "jsonpath={.status.conditions[0].type}={.status.conditions[0].status}",
    )  # fmt: skip
    assert condition.stdout == "VirtualServiceActive=True", condition.stderr
    described = kubectl("describe", "virtualrouter", "color", "-n", NS)
    assert described.returncode == 0 and "color-route-red" in described.stdout

    changed = (HERE / "headers.yaml").read_text().replace("priority: 200", "priority: 300")
    (tmp_path / "v2.yaml").write_text(changed)
    again = kubectl("apply", "-f", str(tmp_path / "v2.yaml"))
    assert "virtualrouter.appmesh.k8s.aws/color configured" in again.stdout, again.stderr
    spec = appmesh.describe_route(
        meshName=MESH, virtualRouterName=f"color_{NS}", routeName="color-route-red"
    )["route"]["spec"]
    assert spec["priority"] == 300

    # File order deletes the Mesh before its nodes: it waits, as the controller's
    # finalizer made it wait, and goes once they are gone.
    deleted = kubectl("delete", "-f", str(HERE / "headers.yaml"))
    assert deleted.returncode == 0, deleted.stderr
    assert MESH not in [m["meshName"] for m in appmesh.list_meshes()["meshes"]]
    assert "No resources found" in kubectl("get", "virtualnodes", "-A").stderr


def test_server_side_apply(cluster):
    kubectl, appmesh, _ = cluster
    result = kubectl("apply", "--server-side", "-f", str(HERE / "headers.yaml"))
    assert result.returncode == 0, result.stderr
    nodes = appmesh.list_virtual_nodes(meshName=MESH)["virtualNodes"]
    assert len(nodes) == 3


def test_what_app_mesh_rejects_is_an_invalid_object_and_nothing_is_made(cluster):
    kubectl, appmesh, tmp_path = cluster
    documents = list(yaml.safe_load_all((HERE / "headers.yaml").read_text()))[:4]
    documents[3]["spec"]["listeners"][0]["portMapping"]["protocol"] = "smtp"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(documents))
    result = kubectl("apply", "-f", str(tmp_path / "bad.yaml"))
    assert result.returncode == 1
    assert "invalid" in result.stderr
    assert f"VirtualNode {NS}/blue: BadRequestException" in result.stderr
    nodes = appmesh.list_virtual_nodes(meshName=MESH)["virtualNodes"]
    assert nodes == []  # front waits for its VirtualService; blue was refused
    assert kubectl("get", "virtualnode", "blue", "-n", NS).returncode == 1


def test_other_kinds_are_not_served(cluster):
    kubectl, _, tmp_path = cluster
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {},
    }
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deployment))
    result = kubectl("apply", "-f", str(tmp_path / "deploy.yaml"))
    assert result.returncode == 1  # kubectl finds no schema or resource for it
    missing = kubectl("get", "deployments")
    assert missing.returncode == 1 and "deployments" in missing.stderr


def test_a_walkthrough_manifest_applies_its_app_mesh_objects_and_kubectl_refuses_the_rest(
    cluster,
):
    """kubectl validates a Deployment against /openapi/v2 (no schema there: left to the
    server), then finds no resource for it: kubectl's own error, per object, while the
    App Mesh objects of the same file are applied."""
    kubectl, appmesh, tmp_path = cluster
    (tmp_path / "retry-policy.yaml").write_text(render("retry-policy"))
    result = kubectl("apply", "-f", str(tmp_path / "retry-policy.yaml"))
    assert result.returncode == 1
    assert "virtualrouter.appmesh.k8s.aws/color created" in result.stdout
    assert 'no matches for kind "Deployment" in version "apps/v1"' in result.stderr
    assert 'no matches for kind "Service" in version "v1"' in result.stderr
    assert "failed to download openapi" not in result.stderr
    mesh = "howto-k8s-retry-policy"
    nodes = appmesh.list_virtual_nodes(meshName=mesh)["virtualNodes"]
    assert sorted(n["virtualNodeName"] for n in nodes) == [f"blue_{mesh}", f"front_{mesh}"]
