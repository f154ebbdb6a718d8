"""``appmesh-local kube``: App Mesh controller manifests reconciled into App Mesh.

Each test uses an account of its own against the shared real server, runs the real
CLI as a user would, and checks the result through boto3's App Mesh client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_client, new_account

HERE = Path(__file__).parent
NS = "howto-k8s-http-headers"
MESH = NS


def kube(server, account: str, *args: str, input_text: str | None = None):
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.run(
        [sys.executable, "-m", "appmesh_api.cli", "kube", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, name: str, documents: list[dict]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def manifests() -> list[dict]:
    return list(yaml.safe_load_all((HERE / "headers.yaml").read_text()))


@pytest.fixture
def applied(server, tmp_path):
    account = new_account()
    result = kube(server, account, "apply", "-f", str(HERE / "headers.yaml"))
    assert result.returncode == 0, result.stderr
    return account, make_client(server.endpoint, "appmesh", account)


def test_apply_creates_what_the_controller_created(applied):
    _, appmesh = applied
    nodes = {
        n["virtualNodeName"] for n in appmesh.list_virtual_nodes(meshName=MESH)["virtualNodes"]
    }
    assert nodes == {f"{n}_{NS}" for n in ("front", "blue", "red")}
    service = appmesh.describe_virtual_service(
        meshName=MESH, virtualServiceName=f"color.{NS}.svc.cluster.local"
    )["virtualService"]
    assert service["spec"]["provider"]["virtualRouter"]["virtualRouterName"] == f"color_{NS}"
    front = appmesh.describe_virtual_node(meshName=MESH, virtualNodeName=f"front_{NS}")
    backends = front["virtualNode"]["spec"]["backends"]
    assert backends == [{"virtualService": {"virtualServiceName": f"color.{NS}.svc.cluster.local"}}]
    route = appmesh.describe_route(
        meshName=MESH, virtualRouterName=f"color_{NS}", routeName="color-route-blue"
    )["route"]["spec"]
    assert route["priority"] == 100
    assert route["httpRoute"]["action"]["weightedTargets"] == [
        {"virtualNode": f"blue_{NS}", "weight": 1}
    ]


def test_get_shows_arns_and_active_conditions(server, applied):
    account, _ = applied
    result = kube(server, account, "get", "virtualnodes", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    items = yaml.safe_load(result.stdout)["items"]
    assert {i["metadata"]["name"] for i in items} == {"front", "blue", "red"}
    status = next(i for i in items if i["metadata"]["name"] == "blue")["status"]
    assert status["virtualNodeARN"].endswith(f"mesh/{MESH}/virtualNode/blue_{NS}")
    assert status["conditions"][0]["type"] == "VirtualNodeActive"
    assert status["observedGeneration"] == 1


def test_reapplying_updates_in_place_and_drops_removed_routes(server, applied, tmp_path):
    account, appmesh = applied
    documents = manifests()
    router = next(d for d in documents if d["kind"] == "VirtualRouter")
    router["spec"]["routes"] = router["spec"]["routes"][1:]  # blue's header route goes
    router["spec"]["routes"][0]["httpRoute"]["action"]["weightedTargets"] = [
        {"virtualNodeRef": {"name": "red"}, "weight": 3},
        {"virtualNodeRef": {"name": "blue"}, "weight": 1},
    ]
    result = kube(server, account, "apply", "-f", write(tmp_path, "v2.yaml", documents))
    assert result.returncode == 0, result.stderr
    assert "virtualrouter.appmesh.k8s.aws/color configured" in result.stdout
    assert "virtualnode.appmesh.k8s.aws/red unchanged" in result.stdout
    routes = appmesh.list_routes(meshName=MESH, virtualRouterName=f"color_{NS}")["routes"]
    assert [r["routeName"] for r in routes] == ["color-route-red"]
    spec = appmesh.describe_route(
        meshName=MESH, virtualRouterName=f"color_{NS}", routeName="color-route-red"
    )["route"]["spec"]
    weights = {
        t["virtualNode"]: t["weight"] for t in spec["httpRoute"]["action"]["weightedTargets"]
    }
    assert weights == {f"red_{NS}": 3, f"blue_{NS}": 1}
    got = yaml.safe_load(kube(server, account, "get", "virtualrouters", "-o", "yaml").stdout)
    assert got["items"][0]["status"]["observedGeneration"] == 2


def test_delete_removes_everything_in_reverse_order(server, applied):
    account, appmesh = applied
    result = kube(server, account, "delete", "-f", str(HERE / "headers.yaml"))
    assert result.returncode == 0, result.stderr
    assert MESH not in [m["meshName"] for m in appmesh.list_meshes()["meshes"]]
    assert kube(server, account, "get", "-o", "json").stdout.count('"kind": "VirtualNode"') == 0


def test_a_namespace_no_mesh_selects_waits_with_the_controllers_error(server, tmp_path):
    account = new_account()
    documents = [d for d in manifests() if d["kind"] in ("Namespace", "VirtualNode")]
    documents[0]["metadata"]["labels"] = {"mesh": "another"}
    result = kube(server, account, "apply", "-f", write(tmp_path, "orphan.yaml", documents))
    assert result.returncode == 0, result.stderr
    assert (
        f"virtualnode.appmesh.k8s.aws/front created (not active yet: VirtualNode {NS}/front: "
        f"failed to find matching mesh for namespace: {NS}, expecting 1 but found 0"
    ) in result.stdout
    items = yaml.safe_load(kube(server, account, "get", "virtualnodes", "-o", "yaml").stdout)
    condition = items["items"][0]["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "Pending")


def test_two_meshes_selecting_a_namespace_is_the_controllers_error(server, tmp_path):
    account = new_account()
    documents = manifests()
    twin = yaml.safe_load(yaml.safe_dump(documents[1]))
    twin["metadata"]["name"] = "twin"
    result = kube(server, account, "apply", "-f", write(tmp_path, "twin.yaml", [*documents, twin]))
    assert "found multiple matching meshes for namespace" in result.stderr
    assert "expecting 1 but found 2: howto-k8s-http-headers, twin" in result.stderr


def test_an_object_waits_for_what_it_references_then_goes_active(server, tmp_path):
    """As with the controller's requeue: kubectl applies one object at a time, in file
    order, so a VirtualService may come before the router it names."""
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    documents = manifests()
    without_router = [d for d in documents if d["kind"] != "VirtualRouter"]
    result = kube(server, account, "apply", "-f", write(tmp_path, "first.yaml", without_router))
    assert result.returncode == 0, result.stderr
    assert f"failed to resolve virtualRouterRef {NS}/color" in result.stdout
    assert appmesh.list_virtual_services(meshName=MESH)["virtualServices"] == []
    router = [d for d in documents if d["kind"] == "VirtualRouter"]
    result = kube(server, account, "apply", "-f", write(tmp_path, "second.yaml", router))
    assert result.returncode == 0, result.stderr
    services = appmesh.list_virtual_services(meshName=MESH)["virtualServices"]
    assert [s["virtualServiceName"] for s in services] == [f"color.{NS}.svc.cluster.local"]
    items = yaml.safe_load(kube(server, account, "get", "virtualservices", "-o", "yaml").stdout)
    assert items["items"][0]["status"]["conditions"][0]["status"] == "True"


def test_an_unknown_field_is_refused_with_its_path(server, tmp_path):
    account = new_account()
    documents = manifests()[:4]  # Namespace, Mesh, front, blue
    documents[3]["spec"]["listeners"][0]["portMapping"]["prot"] = "http"
    result = kube(server, account, "apply", "-f", write(tmp_path, "typo.yaml", documents))
    assert result.returncode == 1
    assert f"VirtualNode {NS}/blue: unknown field spec.listeners[0].portMapping.prot" in (
        result.stderr
    )


def test_app_mesh_errors_come_back_naming_the_object(server, tmp_path):
    account = new_account()
    documents = manifests()[:4]
    documents[3]["spec"]["listeners"][0]["portMapping"]["protocol"] = "smtp"
    result = kube(server, account, "apply", "-f", write(tmp_path, "bad.yaml", documents))
    assert result.returncode == 1
    assert f"error: VirtualNode {NS}/blue: BadRequestException" in result.stderr


def test_other_kinds_are_refused_not_skipped(server, tmp_path):
    account = new_account()
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    result = kube(server, account, "apply", "-f", write(tmp_path, "deploy.yaml", [deployment]))
    assert result.returncode == 1
    assert "Deployment web: appmesh-local is not a Kubernetes cluster" in result.stderr
    assert "pass --skip-other-kinds" in result.stderr


def test_backend_groups_expand_into_backends(server, tmp_path):
    account = new_account()
    documents = manifests()
    front = next(d for d in documents if d["metadata"]["name"] == "front")
    del front["spec"]["backends"]
    front["spec"]["backendGroups"] = [{"name": "everything"}]
    group = {
        "apiVersion": "appmesh.k8s.aws/v1beta2",
        "kind": "BackendGroup",
        "metadata": {"name": "everything", "namespace": NS},
        "spec": {"virtualservices": [{"name": "color"}]},
    }
    result = kube(
        server, account, "apply", "-f", write(tmp_path, "groups.yaml", [*documents, group])
    )
    assert result.returncode == 0, result.stderr
    appmesh = make_client(server.endpoint, "appmesh", account)
    spec = appmesh.describe_virtual_node(meshName=MESH, virtualNodeName=f"front_{NS}")[
        "virtualNode"
    ]["spec"]
    assert spec["backends"] == [
        {"virtualService": {"virtualServiceName": f"color.{NS}.svc.cluster.local"}}
    ]
