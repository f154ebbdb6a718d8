"""Cross-stack exports: registered when a stack completes, protected while imported.

moto 5.2 registers a stack's exports before its resources exist (evaluating them creates
the resources they name, outside any failure handling), and lets a stack whose export
another stack imports be deleted. CloudFormation refuses that: the delete (or an update
that drops or changes the export) fails with "Export ... cannot be deleted as it is in
use by ...". Imports are recorded as ``Fn::ImportValue`` is resolved (``intrinsics``).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.models import CloudFormationBackend, Stack

from appmesh_api.cloudformation.intrinsics import imports_of


def importers(backend: CloudFormationBackend, export_name: str, besides: Stack) -> list[str]:
    """Names of the live stacks (other than ``besides``) that import ``export_name``."""
    return [
        stack.name
        for stack in backend.stacks.values()
        if stack is not besides and export_name in imports_of(stack.resource_map)
    ]


def check_not_in_use(backend: CloudFormationBackend, stack: Stack, keep: dict[str, Any]) -> None:
    """Refuse to drop or change an export of ``stack`` that another stack imports.

    ``keep`` maps the export names the stack will still have to their values.
    """
    for name, export in backend.exports.items():
        if export.exporting_stack_id != stack.stack_id:
            continue
        if name in keep and keep[name] == export.value:
            continue
        users = importers(backend, name, stack)
        if users:
            raise ValidationError(
                message=f"Export {name} cannot be deleted as it is in use by {', '.join(users)}"
            )


def register(backend: CloudFormationBackend, stack: Stack) -> None:
    """Evaluate the stack's outputs and exports now that its resources exist."""
    stack.output_map = stack._create_output_map()
    new = {export.name: export for export in stack.exports}
    check_not_in_use(backend, stack, {name: export.value for name, export in new.items()})
    for name in new:
        owner = backend.exports.get(name)
        if owner is not None and owner.exporting_stack_id != stack.stack_id:
            raise ValidationError(
                message=f"Export with name {name} is already exported by stack "
                f"{_stack_name(backend, owner.exporting_stack_id)}"
            )
    unregister(backend, stack)
    backend.exports.update(new)


def unregister(backend: CloudFormationBackend, stack: Stack) -> None:
    for name, export in list(backend.exports.items()):
        if export.exporting_stack_id == stack.stack_id:
            del backend.exports[name]


def _stack_name(backend: CloudFormationBackend, stack_id: str) -> str:
    stack = backend.stacks.get(stack_id)
    return stack.name if stack is not None else stack_id
