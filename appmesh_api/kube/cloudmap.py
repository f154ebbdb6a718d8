"""Pods → Cloud Map instances, as the controller registered them for ``awsCloudMap`` nodes.

A VirtualNode whose ``serviceDiscovery`` is ``awsCloudMap`` and whose ``podSelector``
matches Pods gets one Cloud Map instance per Pod in the node's namespace, with the
controller's attributes: the pod's labels, the node's Cloud Map attributes,
``AWS_INSTANCE_IPV4``, ``AWS_INSTANCE_PORT`` (the node's first listener port),
``k8s.io/pod``, ``k8s.io/namespace``, ``appmesh.k8s.aws/mesh`` and
``appmesh.k8s.aws/virtualNode``. The Cloud Map service is created under the named
namespace if it is missing, as the controller did.

Local processes are not pods with their own IPs: a Pod object stands for one, and its
annotation ``appmesh-local/address: HOST:PORT`` says where its sidecar's ingress
listens (default 127.0.0.1 and the node's listener port).
The instance id is ``HOST:PORT`` (UNCONFIRMED: the controller used the pod IP, which is
not unique for processes sharing 127.0.0.1).

The calls go to the side services (embedded moto or ``--aws-endpoint``) from a worker
thread, never from the event loop that serves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from appmesh_api.kube.convert import Cluster
from appmesh_api.kube.names import aws_name, selects
from appmesh_api.kube.objects import KubeObject, ManifestError

log = logging.getLogger("appmesh_local.kube")

ADDRESS_ANNOTATION = "appmesh-local/address"
OURS = "k8s.io/pod"  # the attribute that marks an instance as a pod's registration


@dataclass(frozen=True)
class ServiceInstances:
    """What one Cloud Map service should hold: instance id → attributes."""

    namespace: str
    service: str
    instances: dict[str, dict[str, str]]


def desired_instances(cluster: Cluster) -> list[ServiceInstances]:
    """The registrations the stored objects ask for (read on the event loop)."""
    found: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    pods = cluster.of_kind("Pod")
    for node in cluster.of_kind("VirtualNode"):
        cloud_map = (node.spec.get("serviceDiscovery") or {}).get("awsCloudMap")
        if not isinstance(cloud_map, dict) or node.spec.get("podSelector") is None:
            continue
        key = (str(cloud_map.get("namespaceName")), str(cloud_map.get("serviceName")))
        instances = found.setdefault(key, {})
        try:
            mesh = cluster.mesh_of(node)
        except ManifestError:
            continue  # not in a mesh yet: nothing to register
        for pod in pods:
            if pod.namespace == node.namespace and selects(node.spec["podSelector"], pod.labels):
                instance_id, attributes = _instance(pod, node, mesh, cloud_map)
                instances[instance_id] = attributes
    return [ServiceInstances(ns, svc, inst) for (ns, svc), inst in sorted(found.items())]


def _instance(
    pod: KubeObject, node: KubeObject, mesh: KubeObject, cloud_map: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    listeners = node.spec.get("listeners") or [{}]
    port = str((listeners[0].get("portMapping") or {}).get("port", ""))
    host = "127.0.0.1"
    address = pod.annotations.get(ADDRESS_ANNOTATION)
    if address:
        host, _, port = address.rpartition(":")
    attributes = dict(pod.labels)
    attributes.update({a["key"]: a["value"] for a in cloud_map.get("attributes") or []})
    attributes.update(
        {
            "AWS_INSTANCE_IPV4": host,
            "AWS_INSTANCE_PORT": port,
            OURS: pod.name,
            "k8s.io/namespace": pod.namespace,
            "appmesh.k8s.aws/mesh": aws_name(mesh),
            "appmesh.k8s.aws/virtualNode": aws_name(node),
        }
    )
    return f"{host}:{port}", attributes


class CloudMapRegistrar:
    """Makes Cloud Map hold what ``desired_instances`` says (runs in a worker thread)."""

    def __init__(self, endpoint: Callable[[], str | None], secret: str) -> None:
        self._endpoint = endpoint
        self._secret = secret

    def sync(self, account: str, region: str, wanted: list[ServiceInstances]) -> None:
        endpoint = self._endpoint()
        if endpoint is None or not wanted:
            return
        client = boto3.client(
            "servicediscovery",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=account,
            aws_secret_access_key=self._secret,
            config=Config(inject_host_prefix=False, retries={"max_attempts": 2}),
        )
        for entry in wanted:
            try:
                self._sync_service(client, entry)
            except Exception as exc:  # one service's trouble is logged, the others go on
                log.warning(
                    "Cloud Map %s/%s: could not register pods: %s",
                    entry.namespace,
                    entry.service,
                    exc,
                )

    @staticmethod
    def _sync_service(client: Any, entry: ServiceInstances) -> None:
        namespaces = client.list_namespaces()["Namespaces"]
        namespace = next((n for n in namespaces if n["Name"] == entry.namespace), None)
        if namespace is None:
            log.warning("Cloud Map namespace %s does not exist: create it first", entry.namespace)
            return
        services = client.list_services(
            Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace["Id"]], "Condition": "EQ"}]
        )["Services"]
        service = next((s for s in services if s["Name"] == entry.service), None)
        if service is None:
            service = client.create_service(Name=entry.service, NamespaceId=namespace["Id"])[
                "Service"
            ]
        current = {
            i["Id"]: i.get("Attributes") or {}
            for i in client.list_instances(ServiceId=service["Id"])["Instances"]
        }
        for instance_id, attributes in entry.instances.items():
            if current.get(instance_id) != attributes:
                client.register_instance(
                    ServiceId=service["Id"], InstanceId=instance_id, Attributes=attributes
                )
        for instance_id, attributes in current.items():
            if OURS in attributes and instance_id not in entry.instances:
                client.deregister_instance(ServiceId=service["Id"], InstanceId=instance_id)
