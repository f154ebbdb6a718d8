"""Executing change sets through the stack lifecycle (``lifecycle.py``).

moto's ``execute_change_set`` applies the template with moto's engine (no events, no
rollback), never rebuilds the outputs, and fails with an ``UnboundLocalError`` (a 500)
for a change set name it does not know.
"""

from __future__ import annotations

from moto.cloudformation.exceptions import CloudFormationError
from moto.cloudformation.models import ChangeSet, CloudFormationBackend

from appmesh_api.cloudformation.lifecycle import run_create, run_update


class ChangeSetNotFoundException(CloudFormationError):
    code = "ChangeSetNotFoundException"


def find_change_set(backend: CloudFormationBackend, name_or_arn: str) -> ChangeSet:
    found = backend.change_sets.get(name_or_arn) or next(
        (cs for cs in backend.change_sets.values() if cs.change_set_name == name_or_arn), None
    )
    if found is None:
        raise ChangeSetNotFoundException(f"ChangeSet [{name_or_arn}] does not exist")
    return found


def execute_change_set(
    backend: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> None:
    change_set = find_change_set(backend, change_set_name)
    stack = backend.stacks[change_set.stack_id]
    if change_set.change_set_type == "CREATE":
        stack.template = change_set.template
        stack._parse_template()
        stack.parameters = change_set.parameters
        stack.cross_stack_resources = backend.exports
        stack.resource_map = stack._create_resource_map()
        stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
        run_create(backend, stack)
    else:
        run_update(
            backend,
            stack,
            change_set.template,
            change_set.parameters,
            change_set.role_arn,
            change_set.tags,
        )
    failed = "ROLLBACK" in stack.status or stack.status.endswith("FAILED")
    change_set.execution_status = "EXECUTE_FAILED" if failed else "EXECUTE_COMPLETE"
