"""A task definition, as RegisterTaskDefinition takes it or DescribeTaskDefinition returns it.

Every field is accounted for (``fields``): what running it here honours is read
(containers' name, image, command, entryPoint, environment, essential, dependsOn,
healthCheck, user, ulimits, portMappings, logConfiguration, workingDirectory,
stopTimeout, and the ``APPMESH`` proxy configuration), what has no meaning for local
processes is named in the run's output, and anything else is refused, so nothing a
task definition asks for is dropped without a word.

The proxy is the container ``proxyConfiguration`` names (a virtual node's sidecar, its
task's traffic intercepted) or, in a task without one, the container whose
``APPMESH_RESOURCE_ARN`` names a virtual gateway: App Mesh's gateways ran Envoy as the
task's main container, reached directly on its listener ports, nothing intercepted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appmesh_api.ecs import fields
from appmesh_api.ecs.fields import TaskDefinitionError

CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")


@dataclass(frozen=True)
class HealthCheck:
    command: list[str]  # ["CMD-SHELL", "..."] or ["CMD", "exe", "arg"...]
    interval: float = 30.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0


@dataclass
class Container:
    name: str
    command: list[str]
    entry_point: list[str]
    environment: dict[str, str]
    essential: bool = True
    depends_on: list[tuple[str, str]] = field(default_factory=list)  # (container, condition)
    health_check: HealthCheck | None = None
    image: str = ""
    user: str = ""  # "uid", "uid:gid", "name" or "name:group"
    ulimits: list[tuple[str, int, int]] = field(default_factory=list)  # (name, soft, hard)
    ports: list[tuple[int, str]] = field(default_factory=list)  # (containerPort, protocol)
    log: dict[str, str] | None = None  # awslogs options
    working_directory: str = ""
    stop_timeout: float | None = None


@dataclass
class TaskDefinition:
    family: str
    containers: list[Container]
    proxy_container: str | None
    proxy_properties: dict[str, str]
    not_applied: list[str] = field(default_factory=list)  # said when the task starts
    gateway: bool = False  # the proxy is a virtual gateway's, not a sidecar: no rules

    @property
    def intercepted(self) -> bool:
        """App Mesh's iptables rules apply: a sidecar named by ``proxyConfiguration``."""
        return self.proxy_container is not None and not self.gateway

    def container(self, name: str) -> Container:
        for container in self.containers:
            if container.name == name:
                return container
        raise TaskDefinitionError(f"no container named {name!r} in task definition {self.family}")


def load_file(path: str) -> TaskDefinition:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TaskDefinitionError(f"{path}: cannot read a JSON task definition: {exc}") from exc
    return parse(document, path)


def parse(document: Any, source: str = "task definition") -> TaskDefinition:
    """``document`` in RegisterTaskDefinition's shape, or wrapped in ``taskDefinition``."""
    if isinstance(document, dict) and isinstance(document.get("taskDefinition"), dict):
        document = document["taskDefinition"]
    if not isinstance(document, dict):
        raise TaskDefinitionError(f"{source}: a task definition is a JSON object")
    family = str(document.get("family") or Path(source).stem)
    specs = document.get("containerDefinitions")
    if not isinstance(specs, list) or not specs:
        raise TaskDefinitionError(f"{source}: containerDefinitions is missing or empty")
    not_applied = fields.check_task(document, source)
    for spec in specs:
        not_applied += fields.check_container(spec, source)
    containers = [_container(spec, source) for spec in specs]
    names = [c.name for c in containers]
    for container in containers:
        for dependency, condition in container.depends_on:
            if dependency not in names:
                raise TaskDefinitionError(
                    f"{source}: container {container.name} depends on unknown container "
                    f"{dependency}"
                )
            if condition not in CONDITIONS:
                raise TaskDefinitionError(
                    f"{source}: container {container.name}: condition {condition} is not one "
                    f"of {', '.join(CONDITIONS)}"
                )
    proxy = document.get("proxyConfiguration") or {}
    proxy_name = proxy.get("containerName")
    if proxy and proxy.get("type", "APPMESH") != "APPMESH":
        raise TaskDefinitionError(f"{source}: proxyConfiguration type must be APPMESH")
    if proxy_name and proxy_name not in names:
        raise TaskDefinitionError(
            f"{source}: proxyConfiguration names container {proxy_name}, which is not defined"
        )
    properties = {str(p["name"]): str(p["value"]) for p in proxy.get("properties") or []}
    gateway = None if proxy else _gateway_container(containers, source)
    if gateway is not None:
        return TaskDefinition(family, containers, gateway, {}, not_applied, gateway=True)
    return TaskDefinition(family, containers, proxy_name, properties, not_applied)


_GATEWAY_ARN = re.compile(r"(^|:)mesh/[^/]+/virtualGateway/[^/]+$")


def _gateway_container(containers: list[Container], source: str) -> str | None:
    """The container running a virtual gateway's Envoy (``APPMESH_RESOURCE_ARN`` names
    one), in a task without ``proxyConfiguration``; ``None`` if there is none."""
    found = [
        c.name
        for c in containers
        if _GATEWAY_ARN.search(c.environment.get("APPMESH_RESOURCE_ARN", "").strip())
    ]
    if len(found) > 1:
        raise TaskDefinitionError(
            f"{source}: containers {', '.join(found)} each name a virtual gateway in "
            "APPMESH_RESOURCE_ARN; a task runs one gateway proxy"
        )
    return found[0] if found else None


def _container(spec: Any, source: str) -> Container:
    if not isinstance(spec, dict) or not spec.get("name"):
        raise TaskDefinitionError(f"{source}: every container definition needs a name")
    check = spec.get("healthCheck")
    health = None
    if isinstance(check, dict) and check.get("command"):
        health = HealthCheck(
            command=[str(c) for c in check["command"]],
            interval=float(check.get("interval", 30)),
            timeout=float(check.get("timeout", 5)),
            retries=int(check.get("retries", 3)),
            start_period=float(check.get("startPeriod", 0)),
        )
    return Container(
        name=str(spec["name"]),
        command=[str(c) for c in spec.get("command") or []],
        entry_point=[str(c) for c in spec.get("entryPoint") or []],
        environment={str(e["name"]): str(e["value"]) for e in spec.get("environment") or []},
        essential=bool(spec.get("essential", True)),
        depends_on=[
            (str(d["containerName"]), str(d.get("condition", "START")))
            for d in spec.get("dependsOn") or []
        ],
        health_check=health,
        image=str(spec.get("image") or ""),
        user=str(spec.get("user") or ""),
        ulimits=[fields.ulimit(u, source) for u in spec.get("ulimits") or []],
        ports=[fields.port_mapping(m, source) for m in spec.get("portMappings") or []],
        log=fields.awslogs(spec.get("logConfiguration"), str(spec["name"]), source),
        working_directory=str(spec.get("workingDirectory") or ""),
        stop_timeout=None if spec.get("stopTimeout") is None else float(spec["stopTimeout"]),
    )
