"""Change sets as the CDK CLI uses them, executed through ``lifecycle.py``.

moto 5.2's ``execute_change_set`` applies the template with moto's engine (no events, no
rollback) and never rebuilds the outputs; ``UsePreviousValue`` on an SSM-typed parameter
fails (see ``ssm_names_back``); for a change set it does not know, Describe
answers ``ValidationError`` (the CDK CLI waits for ``ChangeSetNotFound``), Execute fails
with an ``UnboundLocalError`` and Delete with a ``KeyError`` (both 500s).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation.exceptions import (
    AlreadyExistsException,
    CloudFormationError,
    ValidationError,
)
from moto.cloudformation.models import ChangeSet, CloudFormationBackend, Stack

from appmesh_api.cloudformation.lifecycle import run_create, run_update, serialized


class ChangeSetNotFoundException(CloudFormationError):
    code = "ChangeSetNotFoundException"


def find_change_set(backend: CloudFormationBackend, name_or_arn: str) -> ChangeSet:
    found = backend.change_sets.get(name_or_arn) or next(
        (cs for cs in backend.change_sets.values() if cs.change_set_name == name_or_arn), None
    )
    if found is None:
        raise ChangeSetNotFoundException(f"ChangeSet [{name_or_arn}] does not exist")
    return found


_moto_create_change_set = CloudFormationBackend.create_change_set

#: Stacks CloudFormation refuses to update (a rolled-back create must be deleted first,
#: which is what the CDK CLI does when it finds one).
_NOT_UPDATABLE = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "ROLLBACK_IN_PROGRESS")


def create_change_set(
    backend: CloudFormationBackend, stack_name: str, *args: Any, **kwargs: Any
) -> tuple[str, str]:
    """``create_change_set`` that refuses an UPDATE of a stack that cannot be updated, and a
    CREATE of a stack that exists (moto would make a second stack of the same name)."""
    stack = next((s for s in backend.stacks.values() if s.name == stack_name), None)
    kind = kwargs.get("change_set_type")
    if kind == "UPDATE" and stack is not None and stack.status in _NOT_UPDATABLE:
        raise ValidationError(
            message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
        )
    if kind == "CREATE" and stack is not None and stack.status != "REVIEW_IN_PROGRESS":
        raise AlreadyExistsException(f"Stack [{stack_name}] already exists")
    return _moto_create_change_set(backend, stack_name, *args, **kwargs)


def describe_change_set(backend: CloudFormationBackend, change_set_name: str) -> ChangeSet:
    return find_change_set(backend, change_set_name)


def delete_change_set(backend: CloudFormationBackend, change_set_name: str) -> None:
    """Deleting a change set that is not there succeeds (UNCONFIRMED: the CDK CLI deletes
    its previous change set by name before every deploy and does not catch an error)."""
    try:
        found = find_change_set(backend, change_set_name)
    except ChangeSetNotFoundException:
        return
    backend.change_sets.pop(found.change_set_id, None)


def ssm_names_back(stack: Stack, parameters: dict[str, Any]) -> dict[str, Any]:
    """Undo moto's resolution of ``UsePreviousValue`` for SSM-typed parameters.

    moto's CreateChangeSet puts the parameter's *resolved* value (``"27"``) in the change
    set, which the execution then resolves again as an SSM name and fails; the CDK CLI
    sends ``UsePreviousValue`` for ``BootstrapVersion`` on every update. The previous value
    is the name the stack was given (or its template's default).
    """
    slots = stack.template_dict.get("Parameters") or {}
    resolved = stack.resource_map.resolved_parameters
    fixed = dict(parameters)
    for key, value in parameters.items():
        slot = slots.get(key) or {}
        if str(slot.get("Type", "")).startswith("AWS::SSM::Parameter::") and (
            key in resolved and value == resolved[key]
        ):
            fixed[key] = stack.parameters.get(key, slot.get("Default"))
    return fixed


@serialized
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
            ssm_names_back(stack, change_set.parameters),
            change_set.role_arn,
            change_set.tags,
        )
    failed = "ROLLBACK" in stack.status or stack.status.endswith("FAILED")
    change_set.execution_status = "EXECUTE_FAILED" if failed else "EXECUTE_COMPLETE"
