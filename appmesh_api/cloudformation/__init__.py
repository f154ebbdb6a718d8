"""CloudFormation for App Mesh: the embedded moto's engine, taught App Mesh and failure.

- ``schema``: the registry schemas of the ``AWS::AppMesh::*`` types (cfn-lint's copies);
- ``properties``: template properties -> API parameters along botocore's shapes;
- ``bridge``: App Mesh calls from moto's threads, run by the service on the event loop;
- ``resources``: one moto resource model per type, writing through the bridge;
- ``graph``: dependency order; ``events``: per-resource events and status reasons;
- ``lifecycle``: create/update/delete with rollback; ``changesets``: executing them;
- ``exports``: cross-stack exports, refused to delete while another stack imports them;
- ``intrinsics``: dotted-string ``Fn::GetAtt``, and the imports a stack makes;
- ``template_text``: template text parsed once per text (libyaml), not at every call;
- ``summary``: GetTemplateSummary of templates without a format version;
- ``outputs``: outputs that are left out, never a 500, when nothing can compute them;
- ``cloudmap``: the ``AWS::ServiceDiscovery::*`` types, in moto's Cloud Map;
- ``ec2``: security group ingress rules without ports, route tables a delete removes;
- ``elbv2``: network load balancers (their TCP listeners);
- ``ecs``: task definitions that keep their ProxyConfiguration (App Mesh's ECS templates);
- ``persistence``: stacks saved in the data directory and restored with their resources;
- ``template_urls``: TemplateURLs on 127.0.0.1 and localhost, path-style or virtual-hosted.

``install`` hooks all of it into moto's CloudFormation backend. It imports moto's whole
CloudFormation engine (about a second), so the edge calls it on the first CloudFormation
request instead of at start-up, unless the data directory holds stacks to restore.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

_lock = threading.Lock()
_installed = False


class _DropMotoSkipNotice(logging.Filter):
    """moto logs an unsupported type once per resource; lifecycle says it once per stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No Moto CloudFormation support for")


def install() -> None:
    """Replace moto's stack create/update/delete and change-set execution (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.cloudformation import models, parsing, responses
        from moto.cloudformation.models import ChangeSet, CloudFormationBackend, Stack
        from moto.cloudformation.responses import CloudFormationResponse, StackResourceDTO

        from appmesh_api.cloudformation import (
            bridge,
            changesets,
            cloudmap,
            ec2,
            ecs,
            elbv2,
            events,
            intrinsics,
            lifecycle,
            outputs,
            persistence,
            resources,
            summary,
            template_text,
        )
        from appmesh_api.cloudformation.template_urls import get_stack_from_s3_url

        # Importing resources and ecs defined the model classes moto's engine looks for.
        assert resources.MODELS and ecs.AppMeshTaskDefinition.cloudformation_type()
        assert ec2.PortlessSecurityGroup.cloudformation_type() and cloudmap.MODELS
        assert ec2.DeletableRouteTable.cloudformation_type()
        assert elbv2.TypedLoadBalancer.cloudformation_type()
        for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
            cached.cache_clear()
        # What is replaced in moto 5.2 (owner, attribute, ours): each entry fixes one thing
        # the module docstrings of lifecycle, changesets, outputs, exports... describe.
        replacements: list[tuple[object, str, object]] = [
            (CloudFormationBackend, "create_stack", lifecycle.create_stack),
            (CloudFormationBackend, "update_stack", lifecycle.update_stack),
            (CloudFormationBackend, "delete_stack", lifecycle.delete_stack),
            (CloudFormationBackend, "create_change_set", changesets.create_change_set),
            (CloudFormationBackend, "execute_change_set", changesets.execute_change_set),
            (CloudFormationBackend, "describe_change_set", changesets.describe_change_set),
            (CloudFormationBackend, "delete_change_set", changesets.delete_change_set),
            (parsing.ResourceMap, "__getitem__", lifecycle.guarded_getitem),
            (parsing.ResourceMap, "validate_outputs", outputs.validate_outputs),
            (parsing, "parse_output", outputs.parse_output),
            (parsing, "clean_json", intrinsics.clean_json),
            (
                responses,
                "get_template_summary_response_from_template",
                summary.get_template_summary_response_from_template,
            ),
            (responses, "get_stack_from_s3_url", get_stack_from_s3_url),
            (models, "get_stack_from_s3_url", get_stack_from_s3_url),
            (StackResourceDTO, "__init__", events.resource_dto_init),
            (CloudFormationResponse, "list_stack_resources", events.list_stack_resources),
            (Stack, "stack_resources", property(lifecycle.stack_resources)),
            (Stack, "_add_stack_event", events.add_stack_event),
            (Stack, "parse_template", staticmethod(template_text.parse_template)),
            (ChangeSet, "_parse_template", template_text.parse_change_set_template),
        ]
        for owner, attribute, ours in replacements:
            setattr(owner, attribute, ours)
        logging.getLogger("moto").addFilter(_DropMotoSkipNotice())
        warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto")
        _installed = True
        data_dir = bridge.data_dir()
        if data_dir is not None:
            saver = persistence.Saver(data_dir)
            events.listeners.append(persistence.save_side_state)  # before the stack's own save
            events.listeners.append(saver)
            persistence.restore_all(saver)


def has_saved_stacks(data_dir: Path) -> bool:
    """Whether a previous run left stacks to restore (then ``serve`` installs at start)."""
    folder = Path(data_dir) / "cloudformation"
    return folder.is_dir() and any(folder.glob("*.json"))
