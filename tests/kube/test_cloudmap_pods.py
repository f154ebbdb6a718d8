"""Pods of an ``awsCloudMap`` VirtualNode are registered in Cloud Map as the controller did."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.conftest import make_client, new_account
from tests.kube.test_kube_cli import kube, write

NS = "howto-k8s-cloudmap"


def manifests(pod_port: int) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"mesh": NS}}},
        {
            "apiVersion": "appmesh.k8s.aws/v1beta2",
            "kind": "Mesh",
            "metadata": {"name": NS},
            "spec": {"namespaceSelector": {"matchLabels": {"mesh": NS}}},
        },
        {
            "apiVersion": "appmesh.k8s.aws/v1beta2",
            "kind": "VirtualNode",
            "metadata": {"name": "colorteller", "namespace": NS},
            "spec": {
                "podSelector": {"matchLabels": {"app": "colorteller"}},
                "listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}],
                "serviceDiscovery": {
                    "awsCloudMap": {
                        "namespaceName": "cloudmap.local",
                        "serviceName": "colorteller",
                        "attributes": [{"key": "version", "value": "blue"}],
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "colorteller-1",
                "namespace": NS,
                "labels": {"app": "colorteller", "tier": "back"},
                "annotations": {"appmesh-local/address": f"127.0.0.1:{pod_port}"},
            },
            "spec": {"containers": [{"name": "app", "image": "colorteller"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "other", "namespace": NS, "labels": {"app": "front"}},
            "spec": {"containers": [{"name": "app", "image": "front"}]},
        },
    ]


def instances(cloudmap) -> list[dict]:
    try:
        found = cloudmap.discover_instances(
            NamespaceName="cloudmap.local", ServiceName="colorteller"
        )
    except cloudmap.exceptions.ServiceNotFound:
        return []  # the registrar has not created the service yet
    return found["Instances"]


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


@pytest.fixture
def cloudmap_account(server):
    account = new_account()
    cloudmap = make_client(server.endpoint, "servicediscovery", account, inject_host_prefix=False)
    cloudmap.create_http_namespace(Name="cloudmap.local")
    return account, cloudmap


def test_a_matching_pod_becomes_an_instance_with_the_controllers_attributes(
    server, cloudmap_account, tmp_path
):
    account, cloudmap = cloudmap_account
    path = write(tmp_path, "cloudmap.yaml", manifests(15123))
    result = kube(server, account, "apply", "-f", path)
    assert result.returncode == 0, result.stderr
    found = wait_for(lambda: instances(cloudmap))
    assert len(found) == 1, found  # the front pod does not match the selector
    attributes = found[0]["Attributes"]
    assert attributes["AWS_INSTANCE_IPV4"] == "127.0.0.1"
    assert attributes["AWS_INSTANCE_PORT"] == "15123"
    assert attributes["k8s.io/pod"] == "colorteller-1"
    assert attributes["k8s.io/namespace"] == NS
    assert attributes["appmesh.k8s.aws/mesh"] == NS
    assert attributes["appmesh.k8s.aws/virtualNode"] == f"colorteller_{NS}"
    assert attributes["version"] == "blue" and attributes["tier"] == "back"


def test_deleting_the_pod_deregisters_it(server, cloudmap_account, tmp_path):
    account, cloudmap = cloudmap_account
    documents = manifests(15124)
    kube(server, account, "apply", "-f", write(tmp_path, "all.yaml", documents))
    assert wait_for(lambda: instances(cloudmap))
    pod = [d for d in documents if d["metadata"]["name"] == "colorteller-1"]
    result = kube(server, account, "delete", "-f", write(tmp_path, "pod.yaml", pod))
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: not instances(cloudmap))
    assert yaml.safe_load(kube(server, account, "get", "pods", "-o", "yaml").stdout)["items"]


def test_deleting_the_virtual_node_deregisters_its_pods(server, cloudmap_account, tmp_path):
    account, cloudmap = cloudmap_account
    documents = manifests(15125)
    kube(server, account, "apply", "-f", write(tmp_path, "all.yaml", documents))
    assert wait_for(lambda: instances(cloudmap))
    node = [d for d in documents if d["kind"] == "VirtualNode"]
    result = kube(server, account, "delete", "-f", write(tmp_path, "node.yaml", node))
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: not instances(cloudmap))
