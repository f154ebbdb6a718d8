"""``AWS::ECS::TaskDefinition`` with everything an App Mesh task needs.

moto 5.2 keeps only Family, ContainerDefinitions, Volumes and Memory of a task definition
made by CloudFormation, so the ``ProxyConfiguration`` (type APPMESH, the envoy container,
IgnoredUID, ProxyIngressPort, AppPorts...) that App Mesh's ECS templates carry is lost,
and so are NetworkMode, Cpu, the roles and RequiresCompatibilities. This model registers
the task definition through moto's ECS backend with all of them, so a template's task
definition reads back like one registered through the ECS API.
"""

from __future__ import annotations

from typing import Any

from moto.core.common_models import CloudFormationModel
from moto.core.utils import pascal_to_camelcase, remap_nested_keys
from moto.ecs.models import TaskDefinition, ecs_backends
from moto.moto_api._internal import mock_random


def proxy_configuration(properties: dict[str, Any]) -> dict[str, Any] | None:
    """CloudFormation's ``ProxyConfiguration`` in the ECS API's form."""
    proxy = properties.get("ProxyConfiguration")
    if not proxy:
        return None
    return {
        "type": proxy.get("Type", "APPMESH"),
        "containerName": proxy["ContainerName"],
        "properties": [
            {"name": item["Name"], "value": str(item["Value"])}
            for item in proxy.get("ProxyConfigurationProperties") or []
        ],
    }


def register_arguments(properties: dict[str, Any]) -> dict[str, Any]:
    """``register_task_definition``'s keyword arguments for a template's properties."""

    def camel(key: str) -> Any:  # moto's own conversion of nested keys, kept as it was
        return remap_nested_keys(properties.get(key), pascal_to_camelcase)

    tags = [{"key": t["Key"], "value": t["Value"]} for t in properties.get("Tags") or []]
    arguments = {
        "family": properties.get("Family")
        or f"task-definition-{int(mock_random.random() * 10**6)}",
        "container_definitions": camel("ContainerDefinitions") or [],
        "volumes": camel("Volumes") or [],
        "network_mode": properties.get("NetworkMode"),
        "tags": tags or None,
        "placement_constraints": camel("PlacementConstraints"),
        "requires_compatibilities": properties.get("RequiresCompatibilities"),
        "cpu": _text(properties.get("Cpu")),
        "memory": _text(properties.get("Memory")),
        "task_role_arn": properties.get("TaskRoleArn"),
        "execution_role_arn": properties.get("ExecutionRoleArn"),
        "proxy_configuration": proxy_configuration(properties),
        "runtime_platform": camel("RuntimePlatform"),
        "ipc_mode": properties.get("IpcMode"),
        "pid_mode": properties.get("PidMode"),
        "ephemeral_storage": camel("EphemeralStorage"),
    }
    return {key: value for key, value in arguments.items() if value is not None}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class AppMeshTaskDefinition(TaskDefinition, CloudFormationModel):
    """Registered after moto's model for the same type, so moto's engine uses this one."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ECS::TaskDefinition"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> TaskDefinition:
        properties = cloudformation_json.get("Properties") or {}
        backend = ecs_backends[account_id][region_name]
        created = backend.register_task_definition(**register_arguments(properties))
        created.appmesh_properties = properties  # type: ignore[attr-defined]
        return created

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> TaskDefinition:
        """A task definition is immutable: a change registers a new revision."""
        properties = cloudformation_json.get("Properties") or {}
        if getattr(original_resource, "appmesh_properties", None) == properties:
            return original_resource
        backend = ecs_backends[account_id][region_name]
        backend.deregister_task_definition(original_resource.arn)
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )
