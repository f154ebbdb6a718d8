"""What each task definition field means for a task run here: honoured, said, or refused.

A task definition is written for ECS, and a run here must not quietly do less than it
asks. Every field of RegisterTaskDefinition's shapes is in one of three groups:

- honoured: read by ``taskdef`` and carried out (containers and their commands,
  environment, ``dependsOn``, health checks, ``user``, ``ulimits``, ``portMappings``,
  ``awslogs`` logging, ``workingDirectory``, ``stopTimeout``, the proxy configuration);
- no meaning for local processes (CPU and memory sizes, IAM roles, launch types,
  labels): accepted, and named in the run's output with what happens instead;
- refused when set: what a local process cannot do as ECS did (volumes, secrets,
  links, privileged mode, ...). The message names the field and the container.

Fields DescribeTaskDefinition adds (ARN, revision, status, ...) describe the
registration, not the task, and are accepted as they are. A field set to its empty
value (``[]``, ``{}``, ``0``, ``false``) asks for nothing.
"""

from __future__ import annotations

import resource
from typing import Any


class TaskDefinitionError(ValueError):
    """A task definition that cannot be run; the message says what to change."""


_TASK_HONOURED = {"family", "containerDefinitions", "proxyConfiguration", "networkMode"}
_REGISTRATION = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt", "deleteRequestedAt", "tags",
}  # fmt: skip
_TASK_SAID = {
    "cpu": "task cpu {v}: not enforced (the containers are processes of this machine)",
    "memory": "task memory {v}: not enforced (the containers are processes of this machine)",
    "taskRoleArn": "taskRoleArn: not assumed; the containers use this machine's AWS credentials",
    "executionRoleArn": "executionRoleArn: not used (no image is pulled here)",
    "requiresCompatibilities": "requiresCompatibilities {v}: the task runs on this machine",
    "runtimePlatform": "runtimePlatform: the task runs on this machine's platform",
    "placementConstraints": "placementConstraints: there is one place, this machine",
    "ephemeralStorage": "ephemeralStorage: not sized (the containers share this machine's disk)",
}
_CONTAINER_HONOURED = {
    "name", "image", "command", "entryPoint", "environment", "essential", "dependsOn",
    "healthCheck", "user", "ulimits", "portMappings", "logConfiguration",
    "workingDirectory", "stopTimeout",
}  # fmt: skip
_CONTAINER_SAID = {
    "cpu": "cpu {v}: not enforced",
    "memory": "memory {v}: not enforced",
    "memoryReservation": "memoryReservation {v}: not enforced",
    "resourceRequirements": "resourceRequirements: not enforced",
    "dockerLabels": "dockerLabels: there is no container to label",
    "repositoryCredentials": "repositoryCredentials: no image is pulled",
    "versionConsistency": "versionConsistency: no image is pulled",
}
_NETWORK_MODES = ("awsvpc", "host")


def check_task(document: dict[str, Any], source: str) -> list[str]:
    """Refuse what the task level asks and cannot be done; the sentences to say."""
    said = []
    for key, value in document.items():
        if key in _TASK_HONOURED or key in _REGISTRATION or _empty(value):
            continue
        if key in _TASK_SAID:
            said.append(_TASK_SAID[key].format(v=_show(value)))
            continue
        raise TaskDefinitionError(f"{source}: {key} is not supported here{_why(key)}")
    mode = document.get("networkMode")
    if mode and mode not in _NETWORK_MODES:
        raise TaskDefinitionError(
            f"{source}: networkMode {mode} is not supported here (ECS registers bridge when "
            "none is given); awsvpc (a namespace of the task's own, or explicit mode) and "
            "host (explicit mode) are"
        )
    return said


def check_container(spec: Any, source: str) -> list[str]:
    if not isinstance(spec, dict) or not spec.get("name"):
        raise TaskDefinitionError(f"{source}: every container definition needs a name")
    name, said = spec["name"], []
    for mapping in spec.get("portMappings") or []:
        protocol = str(mapping.get("protocol", "tcp")).lower()
        if protocol not in ("tcp", "udp"):
            # howto-timeout-policy writes 'http'; its tasks ran on ECS (UNCONFIRMED: what
            # ECS made of it is not documented), and http runs over TCP.
            said.append(
                f"container {name}: port {mapping.get('containerPort')} protocol {protocol} "
                "taken as tcp (a port mapping's protocols are tcp and udp)"
            )
    for key, value in spec.items():
        if key in _CONTAINER_HONOURED or _empty(value):
            continue
        if key in _CONTAINER_SAID:
            said.append(f"container {name}: " + _CONTAINER_SAID[key].format(v=_show(value)))
            continue
        raise TaskDefinitionError(
            f"{source}: container {name}: {key} is not supported here{_why(key)}"
        )
    return said


_WHY = {
    "volumes": " (no volumes: give the containers' commands paths on this machine instead)",
    "mountPoints": " (no volumes: give the containers' commands paths on this machine instead)",
    "volumesFrom": " (no volumes: give the containers' commands paths on this machine instead)",
    "secrets": " (put the values in environment instead)",
    "environmentFiles": " (put the values in environment instead)",
    "links": " (bridge-mode links; awsvpc containers reach each other on localhost)",
    "privileged": " (the containers are processes without their own kernel namespaces)",
    "linuxParameters": " (the containers are processes without their own kernel namespaces)",
}


def _why(key: str) -> str:
    return _WHY.get(key, "")


def ulimit(item: Any, source: str) -> tuple[str, int, int]:
    """``{name, softLimit, hardLimit}``, checked against the limits this system has."""
    name = str(item.get("name", ""))
    if not hasattr(resource, f"RLIMIT_{name.upper()}"):
        raise TaskDefinitionError(f"{source}: ulimit {name!r} is not a limit this system has")
    return name, int(item["softLimit"]), int(item["hardLimit"])


def port_mapping(item: Any, source: str) -> tuple[int, str]:
    """(containerPort, protocol). As on awsvpc, a host port must equal the container port."""
    unknown = set(item) - {"containerPort", "hostPort", "protocol", "name", "appProtocol"}
    if unknown:
        raise TaskDefinitionError(
            f"{source}: portMappings {', '.join(sorted(unknown))} is not supported here"
        )
    port, protocol = int(item["containerPort"]), str(item.get("protocol", "tcp")).lower()
    host = item.get("hostPort")
    if host not in (None, 0, port, str(port)):
        raise TaskDefinitionError(
            f"{source}: hostPort {host} differs from containerPort {port}: each task here has "
            "its own address (awsvpc), where the host ports and container ports must match"
        )
    return port, protocol if protocol == "udp" else "tcp"


AWSLOGS_OPTIONS = {
    "awslogs-group", "awslogs-region", "awslogs-stream-prefix", "awslogs-create-group",
    "mode", "max-buffer-size",
}  # fmt: skip


def awslogs(config: Any, container: str, source: str) -> dict[str, str] | None:
    """The ``awslogs`` driver's options (logs go to CloudWatch Logs on the endpoint)."""
    if not config:
        return None
    driver = config.get("logDriver")
    if driver != "awslogs":
        raise TaskDefinitionError(
            f"{source}: container {container}: logDriver {driver} is not supported here "
            "(awslogs is: the logs go to CloudWatch Logs on the endpoint)"
        )
    if config.get("secretOptions"):
        raise TaskDefinitionError(
            f"{source}: container {container}: logConfiguration secretOptions is not supported"
        )
    options = {str(k): str(v) for k, v in (config.get("options") or {}).items()}
    unknown = set(options) - AWSLOGS_OPTIONS
    if unknown:
        raise TaskDefinitionError(
            f"{source}: container {container}: awslogs option "
            f"{', '.join(sorted(unknown))} is not supported here"
        )
    if "awslogs-group" not in options:
        raise TaskDefinitionError(
            f"{source}: container {container}: awslogs needs awslogs-group"
        )  # ECS's agent refuses the same
    return options


def _empty(value: Any) -> bool:
    return value is None or value is False or value in ([], {}, "", 0)


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
