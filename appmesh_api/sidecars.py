"""``appmesh-local up --mesh NAME``: the sidecars of a mesh that was deployed some other way.

A mesh made by ``cdk deploy``, ``aws cloudformation deploy``, the aws CLI or kubectl has
no processes yet: App Mesh's Envoys came from the ECS task or the pod. This runs one
``appmesh-proxy`` for every virtual node and virtual gateway the control plane holds for
the mesh, and prints, for each, where its app must listen (the node's listener port on
127.0.0.1), the sidecar's ports, and the exact ``appmesh-proxy`` command line, so the
same sidecar can be started by hand later. The apps are the user's: nothing here starts
them. A mesh that does not exist, or has nothing to run, is refused before anything
starts. Ctrl-C stops every proxy it started.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from appmesh_api.localports import free_port, wait_for_port
from appmesh_api.up import Processes, probe, tracing_env, wait_forever
from appmesh_api.views.endpoint import UNREACHABLE, client

CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Resource:
    """A virtual node or gateway to run a proxy for, and its listener ports."""

    kind: str  # virtualNode | virtualGateway
    name: str
    arn: str
    ports: tuple[int, ...]

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def label(self) -> str:
        return ("virtual node " if self.kind == "virtualNode" else "virtual gateway ") + self.name


@dataclass(frozen=True)
class Sidecar:
    resource: Resource
    ingress: int
    egress: int
    admin: int
    env: dict[str, str]

    def command_line(self) -> str:
        """What a user types to start the same sidecar: its environment and ``appmesh-proxy``."""
        assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.env.items())
        return f"{assignments} appmesh-proxy"


class Refused(Exception):
    """Why ``up --mesh`` cannot run, said before any process starts."""


def _listener_ports(spec: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(item["portMapping"]["port"]) for item in spec.get("listeners") or [])


def mesh_resources(appmesh, mesh: str, owner: str | None) -> list[Resource]:
    """Every virtual node and gateway of ``mesh``, as the API describes them."""
    scope = {"meshName": mesh, **({"meshOwner": owner} if owner else {})}
    try:
        appmesh.describe_mesh(**scope)
    except appmesh.exceptions.NotFoundException as error:
        raise Refused(
            f"{error.response['Error']['Message']}; deploy it first (cdk deploy, aws "
            "cloudformation deploy, aws appmesh create-mesh) or name the account with "
            "--mesh-owner"
        ) from error
    found = []
    for kind, lister, describer in (
        ("virtualNode", "list_virtual_nodes", "describe_virtual_node"),
        ("virtualGateway", "list_virtual_gateways", "describe_virtual_gateway"),
    ):
        key = f"{kind}Name"
        for page in appmesh.get_paginator(lister).paginate(**scope):
            for item in page[f"{kind}s"]:
                described = getattr(appmesh, describer)(**scope, **{key: item[key]})[kind]
                found.append(
                    Resource(kind, item[key], item["arn"], _listener_ports(described["spec"]))
                )
    if not found:
        raise Refused(f"mesh {mesh} has no virtual nodes or virtual gateways: nothing to run")
    return found


def sidecar_for(resource: Resource, endpoint: str, xray_daemon: str | None) -> Sidecar:
    ingress, egress, admin = free_port(), free_port(), free_port()
    env = {
        "APPMESH_RESOURCE_ARN": resource.arn,
        "APPMESH_XDS_ENDPOINT": endpoint,
        "APPMESH_INGRESS_PORT": str(ingress),
        "APPMESH_EGRESS_PORT": str(egress),
        "ENVOY_ADMIN_ACCESS_PORT": str(admin),
        "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
        "AWS_REGION": resource.region,
        **tracing_env(xray_daemon),
    }
    return Sidecar(resource, ingress, egress, admin, env)


def describe(sidecar: Sidecar) -> list[str]:
    """What the user needs to wire their app to this sidecar."""
    resource = sidecar.resource
    ports = ", ".join(str(port) for port in resource.ports) or "none"
    if resource.kind == "virtualNode":
        where = (
            f"your app listens on 127.0.0.1:{ports} (listener port); clients reach it at "
            f"127.0.0.1:{sidecar.ingress}; the app calls other services through "
            f"HTTP_PROXY=http://127.0.0.1:{sidecar.egress}"
        )
    else:
        where = f"clients reach the gateway on 127.0.0.1:{ports} (listener port)"
    return [f"  {resource.label}: {where}; admin :{sidecar.admin}", f"    {sidecar.command_line()}"]


def _caller_credentials(owner: str) -> tuple[Credentials, str]:
    """The shell's AWS credentials, else the mesh owner's account as the key (as the proxy
    signs without credentials)."""
    session = boto3.Session()
    region = session.region_name or "us-east-1"
    found = session.get_credentials()
    frozen = found.get_frozen_credentials() if found else None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        return Credentials(owner, "local"), region
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token), region


def connected(endpoint: str, owner: str) -> list[dict[str, Any]]:
    """``/_appmesh/proxies`` as the mesh's owner sees it (signed, as any AWS client signs)."""
    url = f"{endpoint.rstrip('/')}/_appmesh/proxies"
    credentials, region = _caller_credentials(owner)
    request = AWSRequest(method="GET", url=url, data=b"")
    SigV4Auth(credentials, "appmesh", region).add_auth(request)
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=dict(request.headers.items())), timeout=5
    ) as reply:
        return list(json.loads(reply.read())["proxies"])


def _holds_config(sidecar: Sidecar, proxies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The control plane's record of this sidecar once it accepted a config."""
    address = f"127.0.0.1:{sidecar.ingress}"
    for proxy in proxies:
        mine = proxy["resourceName"] == sidecar.resource.name and proxy["ingressAddress"] == address
        if mine and proxy["resourceKind"] == sidecar.resource.kind and proxy["acceptedVersions"]:
            return proxy
    return None


def wait_connected(
    endpoint: str, owner: str, sidecars: list[Sidecar], processes: Processes
) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    waiting = list(sidecars)
    while waiting and time.monotonic() < deadline:
        proxies = connected(endpoint, owner)
        waiting = [s for s in waiting if _holds_config(s, proxies) is None]
        for what, process in processes.started:
            if process.poll() is not None:
                raise Refused(f"the sidecar of {what} exited with status {process.returncode}")
        time.sleep(0.1)
    if waiting:
        names = ", ".join(s.resource.label for s in waiting)
        raise Refused(f"no config accepted within {CONNECT_TIMEOUT:.0f} s by: {names}")


def run_mesh_sidecars(
    mesh: str,
    endpoint: str,
    owner: str | None,
    say: Callable[[str], None],
    stop_after: float | None = None,
) -> int:
    """Run a proxy for every node and gateway of ``mesh`` until Ctrl-C; 1 if refused."""
    processes = Processes()
    try:
        health = probe(endpoint)
        if not health:
            raise Refused(f"no appmesh-local answers at {endpoint}; start one with serve")
        appmesh = client("appmesh", endpoint)
        resources = mesh_resources(appmesh, mesh, owner)
        mesh_owner = owner or resources[0].arn.split(":")[4]
        say(
            f"mesh {mesh} on {endpoint}: an appmesh-proxy for each of its {len(resources)} "
            "virtual nodes and gateways"
        )
        sidecars = [sidecar_for(r, endpoint, health.get("xray_daemon")) for r in resources]
        for sidecar in sidecars:
            for line in describe(sidecar):
                say(line)
            command = [sys.executable, "-m", "proxy.main"]
            process = processes.start(sidecar.resource.label, command, sidecar.env)
            wait_for_port(sidecar.admin, process, f"the proxy of {sidecar.resource.label}")
        wait_connected(endpoint, mesh_owner, sidecars, processes)
        say(
            f"\nthe sidecars hold mesh {mesh}'s config. Start your apps on the listener ports "
            "above; Ctrl-C stops the sidecars."
        )
        wait_forever(stop_after)
    except KeyboardInterrupt:
        pass
    except (Refused, RuntimeError, ClientError, *UNREACHABLE) as error:
        say(f"appmesh-local up: {error}")
        return 1
    finally:
        if processes.started:
            say("stopping the sidecars...")
            processes.stop()
            say("stopped.")
    return 0
