"""CloudFormation for App Mesh: the embedded moto's engine, taught App Mesh and failure.

- ``schema``: the registry schemas of the ``AWS::AppMesh::*`` types (cfn-lint's copies);
- ``properties``: template properties -> API parameters along botocore's shapes;
- ``bridge``: App Mesh calls from moto's threads, run by the service on the event loop;
- ``resources``: one moto resource model per type, writing through the bridge;
- ``graph``: dependency order; ``events``: per-resource events and status reasons;
- ``lifecycle``: create/update/delete with rollback; ``changesets``: executing them;
- ``exports``: cross-stack exports, refused to delete while another stack imports them;
- ``outputs``: outputs that are left out, never a 500, when nothing can compute them;
- ``template_urls``: TemplateURLs on 127.0.0.1 and localhost, path-style or virtual-hosted.

``install`` hooks all of it into moto's CloudFormation backend. It imports moto's whole
CloudFormation engine (about a second), so the edge calls it on the first CloudFormation
request instead of at start-up.
"""

from __future__ import annotations

import logging
import threading
import warnings

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
        from moto.cloudformation.models import CloudFormationBackend, Stack
        from moto.cloudformation.responses import CloudFormationResponse, StackResourceDTO

        from appmesh_api.cloudformation import (
            changesets,
            events,
            exports,
            lifecycle,
            outputs,
            resources,
        )
        from appmesh_api.cloudformation.template_urls import get_stack_from_s3_url

        assert resources.MODELS  # the import registered the seven model classes
        for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
            cached.cache_clear()
        CloudFormationBackend.create_stack = lifecycle.create_stack  # type: ignore[method-assign]
        CloudFormationBackend.update_stack = lifecycle.update_stack  # type: ignore[method-assign]
        CloudFormationBackend.delete_stack = lifecycle.delete_stack  # type: ignore[method-assign]
        CloudFormationBackend.execute_change_set = changesets.execute_change_set  # type: ignore[method-assign]
        CloudFormationBackend.describe_change_set = changesets.describe_change_set  # type: ignore[method-assign]
        CloudFormationBackend.delete_change_set = changesets.delete_change_set  # type: ignore[method-assign]
        parsing.ResourceMap.__getitem__ = lifecycle.guarded_getitem  # type: ignore[method-assign]
        parsing.ResourceMap.validate_outputs = outputs.validate_outputs  # type: ignore[method-assign]
        parsing.parse_output = outputs.parse_output
        parsing.clean_json = exports.clean_json
        responses.get_stack_from_s3_url = get_stack_from_s3_url
        models.get_stack_from_s3_url = get_stack_from_s3_url
        StackResourceDTO.__init__ = events.resource_dto_init  # type: ignore[method-assign]
        CloudFormationResponse.list_stack_resources = events.list_stack_resources  # type: ignore[method-assign,assignment]
        Stack.stack_resources = property(lifecycle.stack_resources)  # type: ignore[method-assign,assignment]
        logging.getLogger("moto").addFilter(_DropMotoSkipNotice())
        warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto")
        _installed = True
