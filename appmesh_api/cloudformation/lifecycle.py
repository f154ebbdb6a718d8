"""Stack lifecycle: create, update and delete as CloudFormation runs them.

moto's own engine creates resources lazily, lets a resource's exception escape (a 500,
the stack left ``CREATE_IN_PROGRESS``), deletes removed resources *before* adding new
ones on update, and writes stack-level events only. This module drives the same moto
pieces (``ResourceMap`` resolves intrinsics and calls each type's handler) in
CloudFormation's order instead:

- create walks the dependency graph (``graph.py``), one event per resource step; the
  first failure is ``CREATE_FAILED`` with the handler's message, and everything created
  so far is deleted in reverse order (``ROLLBACK_COMPLETE``);
- update adds and modifies first, then removes (and deletes replaced resources) in a
  cleanup phase; a failure restores every resource already touched to its previous state
  (``UPDATE_ROLLBACK_COMPLETE``);
- delete goes in reverse dependency order and stops at ``DELETE_FAILED`` if a resource
  cannot be deleted, leaving the stack in place as CloudFormation does.

Template errors found before any resource is touched (a missing parameter, a bad
template) are still raised as moto raises them: CloudFormation answers those calls with
a ``ValidationError`` too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from moto.cloudformation import parsing
from moto.cloudformation.exceptions import AlreadyExistsException, ValidationError
from moto.cloudformation.models import CloudFormationBackend, Stack
from moto.cloudformation.parsing import OutputMap, ResourceMap
from moto.cloudformation.utils import generate_stack_id
from moto.ec2.models.core import TaggedEC2Resource

from appmesh_api.cloudformation import exports
from appmesh_api.cloudformation.events import failure_reason, resource_event
from appmesh_api.cloudformation.graph import creation_order
from appmesh_api.cloudformation.resources import MODELS

log = logging.getLogger("appmesh_local.cloudformation")

#: Types that do nothing in CloudFormation either: no need to say they were skipped.
HARMLESS_TYPES = frozenset([*parsing.NULL_MODELS, "AWS::CDK::Metadata"])


class ResourceFailed(Exception):
    """A resource step failed; the event is already recorded."""

    def __init__(self, logical_id: str, verb: str) -> None:
        super().__init__(logical_id)
        self.logical_id = logical_id
        self.verb = verb  # "create" or "update", for the stack's status reason


@dataclass
class Journal:
    """What one create or update has done so far, in order, so it can be undone."""

    added: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (id, body)
    modified: list[tuple[str, Any, dict[str, Any]]] = field(default_factory=list)
    steps: list[tuple[str, str]] = field(default_factory=list)  # ("add"|"modify", id)
    skipped: set[str] = field(default_factory=set)  # types nothing creates
    previous: dict[str, Any] = field(default_factory=dict)  # an update's old bodies


_one_at_a_time = threading.RLock()


F = TypeVar("F", bound=Callable[..., Any])


def serialized(operation: F) -> F:
    """Run stack operations one at a time: moto's state is not thread-safe, and a2wsgi
    runs concurrent requests in concurrent threads (re-entrant: a nested stack's create
    runs inside its parent's)."""

    @functools.wraps(operation)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _one_at_a_time:
            return operation(*args, **kwargs)

    return run  # type: ignore[return-value]


# -- creating only when the lifecycle says so ---------------------------------------------
_moto_getitem = ResourceMap.__getitem__


def guarded_getitem(resource_map: ResourceMap, key: str) -> Any:
    """``ResourceMap.__getitem__`` that creates a resource only inside a create or update.

    moto's map creates a missing resource on any lookup, so describing a rolled-back or
    deleted stack (its outputs, its resources) would create everything again.
    """
    parsed = resource_map._parsed_resources
    if key in parsed or getattr(resource_map, "appmesh_may_create", False):
        return _moto_getitem(resource_map, key)
    if key in resource_map._resource_json_map:
        return None
    raise KeyError(key)


@contextlib.contextmanager
def creating(stack: Stack) -> Iterator[None]:
    stack.resource_map.appmesh_may_create = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        stack.resource_map.appmesh_may_create = False  # type: ignore[attr-defined]


def stack_resources(stack: Stack) -> list[Any]:
    """``Stack.stack_resources``: the resources that exist, never creating one."""
    resource_map = stack.resource_map
    return [
        instance
        for logical_id, instance in resource_map._parsed_resources.items()
        if logical_id in resource_map._resource_json_map and hasattr(instance, "is_created")
    ]


def no_outputs(stack: Stack) -> None:
    """A rolled-back or deleted stack shows no outputs (and evaluates none)."""
    stack.output_map = OutputMap(stack.resource_map, {}, stack.stack_id)


# -- one resource --------------------------------------------------------------------------
def supported(resource_type: str) -> bool:
    return resource_type.startswith("Custom::") or resource_type in parsing.get_model_map()


def _active(stack: Stack, body: dict[str, Any]) -> bool:
    condition = body.get("Condition")
    return not condition or bool(stack.resource_map.lazy_condition_map[condition])


def create_one(stack: Stack, logical_id: str, journal: Journal) -> Any:
    """Create one resource with its events; raise ResourceFailed after CREATE_FAILED."""
    resource_map = stack.resource_map
    body = resource_map._resource_json_map[logical_id]
    resource_type = body.get("Type", "")
    if not _active(stack, body):
        return None
    if not supported(resource_type):
        if resource_type not in HARMLESS_TYPES:
            journal.skipped.add(resource_type)
        return None
    if logical_id in resource_map._parsed_resources:  # created already (a lazy reference)
        return resource_map._parsed_resources[logical_id]
    resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
    try:
        instance = resource_map[logical_id]
    except Exception as error:
        _failed(stack, logical_id, resource_type, "CREATE_FAILED", error)
        raise ResourceFailed(logical_id, "create") from error
    _tag_ec2(stack, logical_id, instance)
    physical_id = str(getattr(instance, "physical_resource_id", "") or "")
    resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE", physical_id=physical_id)
    journal.added.append((logical_id, body))
    journal.steps.append(("add", logical_id))
    return instance


def _failed(
    stack: Stack, logical_id: str, resource_type: str, status: str, error: Exception
) -> None:
    reason = failure_reason(logical_id, error)
    log.warning("stack %s: %s %s: %s", stack.name, logical_id, status, reason)
    log.debug("stack %s: %s failed", stack.name, logical_id, exc_info=error)
    resource_event(stack, logical_id, resource_type, status, reason)


def _tag_ec2(stack: Stack, logical_id: str, instance: Any) -> None:
    """moto's own create tags EC2 resources with the stack's tags; keep doing that."""
    if isinstance(instance, TaggedEC2Resource):
        resource_map = stack.resource_map
        resource_map.tags["aws:cloudformation:logical-id"] = logical_id
        backend = parsing.ec2_models.ec2_backends[stack.account_id][stack.region_name]
        backend.create_tags([instance.physical_resource_id], resource_map.tags)  # type: ignore[attr-defined]


def update_one(stack: Stack, logical_id: str, journal: Journal) -> None:
    """Update one resource in place or by replacement, with its events."""
    resource_map = stack.resource_map
    body = resource_map._resource_json_map[logical_id]
    resource_type = body.get("Type", "")
    old = resource_map._parsed_resources[logical_id]
    try:
        new = parsing.parse_and_update_resource(
            logical_id, body, resource_map, stack.account_id, stack.region_name
        )
    except Exception as error:
        resource_event(stack, logical_id, resource_type, "UPDATE_IN_PROGRESS")
        _failed(stack, logical_id, resource_type, "UPDATE_FAILED", error)
        raise ResourceFailed(logical_id, "update") from error
    if new is None or new is old:
        return  # nothing to change (or a type without an update handler)
    resource_map._parsed_resources[logical_id] = new
    journal.modified.append((logical_id, old, journal.previous.get(logical_id, body)))
    journal.steps.append(("modify", logical_id))
    physical_id = str(getattr(new, "physical_resource_id", "") or "")
    resource_event(stack, logical_id, resource_type, "UPDATE_IN_PROGRESS")
    if getattr(new, "replaces", None) is old:
        resource_event(
            stack,
            logical_id,
            resource_type,
            "UPDATE_IN_PROGRESS",
            "Requested update requires the creation of a new physical resource; "
            "hence creating one.",
            physical_id,
        )
    resource_event(stack, logical_id, resource_type, "UPDATE_COMPLETE", physical_id=physical_id)


def delete_one(stack: Stack, logical_id: str, instance: Any, body: dict[str, Any]) -> bool:
    """Delete one resource with its events; False (after DELETE_FAILED) if it could not be."""
    resource_type = body.get("Type", "")
    if instance is None or isinstance(instance, (str, list, dict)):
        return True
    physical_id = str(getattr(instance, "physical_resource_id", "") or "")
    if body.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate"):
        resource_event(stack, logical_id, resource_type, "DELETE_SKIPPED", physical_id=physical_id)
        return True
    resource_event(stack, logical_id, resource_type, "DELETE_IN_PROGRESS", physical_id=physical_id)
    try:
        stack.resource_map._delete_resource(instance, body)
    except Exception as error:
        _failed(stack, logical_id, resource_type, "DELETE_FAILED", error)
        return False
    parsed = stack.resource_map._parsed_resources
    if parsed.get(logical_id) is instance:  # (a replaced resource's successor stays)
        del parsed[logical_id]
    resource_event(stack, logical_id, resource_type, "DELETE_COMPLETE", physical_id=physical_id)
    return True


def _report_skipped(stack: Stack, journal: Journal) -> None:
    """Say once per stack which resources nothing created (moto said it per resource)."""
    if journal.skipped:
        log.warning(
            "stack %s: nothing creates resources of type %s (neither appmesh-local nor its "
            "embedded moto supports them): they are left out of the stack",
            stack.name,
            ", ".join(sorted(journal.skipped)),
        )


# -- create ---------------------------------------------------------------------------------
def run_create(backend: CloudFormationBackend, stack: Stack) -> None:
    """Create every resource of ``stack`` (already built and registered) or roll back."""
    resource_map = stack.resource_map
    template = stack.template_dict
    resource_map._template = template
    resource_map._resource_json_map = template.get("Resources") or {}
    resource_map.tags.update(
        {"aws:cloudformation:stack-name": stack.name, "aws:cloudformation:stack-id": stack.stack_id}
    )
    stack.status = "CREATE_IN_PROGRESS"
    journal = Journal()
    try:
        with creating(stack):
            for logical_id in creation_order(resource_map._resource_json_map):
                create_one(stack, logical_id, journal)
            exports.register(backend, stack)
    except ResourceFailed as failure:
        _report_skipped(stack, journal)
        rollback_create(
            stack,
            journal,
            f"The following resource(s) failed to create: "
            f"[{failure.logical_id}]. Rollback requested by user.",
        )
        return
    except Exception as error:  # an export clash, a dependency cycle, a bad parameter...
        log.debug("stack %s: create failed", stack.name, exc_info=error)
        _report_skipped(stack, journal)
        rollback_create(stack, journal, failure_reason("", error))
        return
    _report_skipped(stack, journal)
    stack.description = template.get("Description")
    if resource_map.creation_complete():
        stack.mark_creation_complete()


def rollback_create(stack: Stack, journal: Journal, reason: str) -> None:
    stack.stack_status_reason = reason  # type: ignore[attr-defined]
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
    log.warning("stack %s: %s", stack.name, reason)
    parsed = stack.resource_map._parsed_resources
    deleted = True
    for logical_id, body in reversed(journal.added):
        deleted &= delete_one(stack, logical_id, parsed.get(logical_id), body)
        if deleted:
            parsed.pop(logical_id, None)
    no_outputs(stack)
    status = "ROLLBACK_COMPLETE" if deleted else "ROLLBACK_FAILED"
    stack.status = status
    stack._add_stack_event(status)


@serialized
def create_stack(
    backend: CloudFormationBackend,
    name: str,
    template: str,
    parameters: dict[str, Any],
    notification_arns: list[str] | None = None,
    tags: dict[str, str] | None = None,
    role_arn: str | None = None,
    enable_termination_protection: bool | None = False,
    timeout_in_mins: int | None = None,
    stack_policy_body: str | None = None,
) -> Stack:
    """``CloudFormationBackend.create_stack``, with resources created by ``run_create``."""
    if name in [stack.name for stack in backend.stacks.values()]:
        raise AlreadyExistsException(f"Stack [{name}] already exists")
    stack = Stack(  # type: ignore[abstract]
        stack_id=generate_stack_id(name, backend.region_name, backend.account_id),
        name=name,
        template=template,
        parameters=parameters,
        account_id=backend.account_id,
        region_name=backend.region_name,
        notification_arns=notification_arns,
        tags=tags,
        role_arn=role_arn,
        cross_stack_resources=backend.exports,
        enable_termination_protection=enable_termination_protection,
        timeout_in_mins=timeout_in_mins,
        stack_policy_body=stack_policy_body,
    )
    backend.stacks[stack.stack_id] = stack
    stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
    run_create(backend, stack)
    return stack


# -- update ---------------------------------------------------------------------------------
@dataclass
class _Before:
    """A stack's state before an update, to go back to."""

    template: Any
    template_dict: dict[str, Any]
    parameters: dict[str, Any]
    input_parameters: dict[str, Any]
    bodies: dict[str, Any]


def _load_template(stack: Stack, template: dict[str, Any], parameters: dict[str, Any]) -> None:
    resource_map = stack.resource_map
    resource_map._template = template
    resource_map.input_parameters = parameters
    resource_map.load_mapping()
    resource_map.load_parameters()
    resource_map.load_conditions()
    resource_map._resource_json_map = template.get("Resources") or {}


def run_update(
    backend: CloudFormationBackend,
    stack: Stack,
    template: str,
    parameters: dict[str, Any] | None,
    role_arn: str | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Move ``stack`` to ``template``: adds and modifications, then cleanup; or roll back."""
    resource_map = stack.resource_map
    new_template = stack.parse_template(template)
    before = _Before(
        stack.template,
        stack.template_dict,
        dict(stack.parameters),
        dict(resource_map.input_parameters),
        dict(resource_map._resource_json_map),
    )
    diff = resource_map.build_resource_diff(new_template, parameters)
    stack.status = "UPDATE_IN_PROGRESS"
    stack.stack_status_reason = None  # type: ignore[attr-defined]
    stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
    new_parameters = parameters if parameters is not None else before.input_parameters
    journal = Journal(previous=before.bodies)
    try:
        with creating(stack):
            _load_template(stack, new_template, new_parameters)
            _apply_changes(stack, diff, journal)
            exports.register(backend, stack)
    except Exception as failure:  # ResourceFailed, or the template or a parameter
        log.debug("stack %s: update failed", stack.name, exc_info=failure)
        _report_skipped(stack, journal)
        _rollback_update(backend, stack, before, journal, _update_failure(failure))
        return
    _report_skipped(stack, journal)
    _cleanup(stack, before, diff, journal)
    stack.template = template
    stack._parse_template()
    stack.description = stack.template_dict.get("Description")
    stack.parameters = new_parameters
    stack.role_arn = role_arn or stack.role_arn
    if tags is not None:
        stack.tags = tags
    stack.status = "UPDATE_COMPLETE"
    stack._add_stack_event("UPDATE_COMPLETE")


def _update_failure(failure: Exception) -> str:
    if isinstance(failure, ResourceFailed):
        return f"The following resource(s) failed to {failure.verb}: [{failure.logical_id}]. "
    return failure_reason("", failure)


def _apply_changes(stack: Stack, diff: dict[str, list[str]], journal: Journal) -> None:
    """Adds and modifications, in dependency order of the new template.

    App Mesh resources whose own text did not change are re-evaluated too: a ``GetAtt``
    of a replaced mesh changes their MeshName (their handler does nothing when no value
    changed). moto's types keep moto's rule (the resource's text changed).
    """
    resource_map = stack.resource_map
    parsed = resource_map._parsed_resources
    for logical_id in creation_order(resource_map._resource_json_map):
        body = resource_map._resource_json_map[logical_id]
        if logical_id in diff["Add"] or logical_id not in parsed:
            create_one(stack, logical_id, journal)
        elif not _active(stack, body):
            continue
        elif logical_id in diff["Modify"] or body.get("Type") in MODELS:
            update_one(stack, logical_id, journal)


def _cleanup(stack: Stack, before: _Before, diff: dict[str, list[str]], journal: Journal):
    """Delete what the update replaced or removed (failures here do not fail the update)."""
    stack._add_stack_event("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
    parsed = stack.resource_map._parsed_resources
    for logical_id, old, old_body in reversed(journal.modified):
        if getattr(parsed.get(logical_id), "replaces", None) is old:
            delete_one(stack, logical_id, old, old_body)
    removed = set(diff["Remove"])
    for logical_id in reversed(creation_order(before.bodies)):
        if logical_id in removed:
            delete_one(stack, logical_id, parsed.pop(logical_id, None), before.bodies[logical_id])


def _rollback_update(
    backend: CloudFormationBackend, stack: Stack, before: _Before, journal: Journal, reason: str
) -> None:
    stack.stack_status_reason = reason  # type: ignore[attr-defined]
    stack.status = "UPDATE_ROLLBACK_IN_PROGRESS"
    stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
    log.warning("stack %s: %s", stack.name, reason)
    _load_template(stack, before.template_dict, before.input_parameters)
    parsed = stack.resource_map._parsed_resources
    added = {logical_id: body for logical_id, body in journal.added}
    modified = {logical_id: (old, body) for logical_id, old, body in journal.modified}
    restored = True
    for action, logical_id in reversed(journal.steps):
        if action == "add":
            restored &= delete_one(
                stack, logical_id, parsed.pop(logical_id, None), added[logical_id]
            )
        else:
            old, old_body = modified[logical_id]
            restored &= _restore_one(stack, logical_id, old, old_body)
    exports.register(backend, stack)
    stack.status = "UPDATE_ROLLBACK_COMPLETE" if restored else "UPDATE_ROLLBACK_FAILED"
    if restored:
        stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    stack._add_stack_event(stack.status)


def _restore_one(stack: Stack, logical_id: str, old: Any, old_body: dict[str, Any]) -> bool:
    """Put a modified resource back: drop its replacement, or re-apply its old state."""
    parsed = stack.resource_map._parsed_resources
    current = parsed.get(logical_id)
    resource_type = old_body.get("Type", "")
    physical_id = str(getattr(old, "physical_resource_id", "") or "")
    resource_event(stack, logical_id, resource_type, "UPDATE_IN_PROGRESS", physical_id=physical_id)
    try:
        if getattr(current, "replaces", None) is old:
            parsed[logical_id] = old
            stack.resource_map._delete_resource(current, old_body)
        elif hasattr(old, "restore"):
            old.restore(current)
            parsed[logical_id] = old
        else:  # one of moto's types: run its update handler back to the old text
            parsed[logical_id] = (
                parsing.parse_and_update_resource(
                    logical_id, old_body, stack.resource_map, stack.account_id, stack.region_name
                )
                or current
            )
    except Exception as error:
        _failed(stack, logical_id, resource_type, "UPDATE_FAILED", error)
        return False
    resource_event(stack, logical_id, resource_type, "UPDATE_COMPLETE", physical_id=physical_id)
    return True


@serialized
def update_stack(
    backend: CloudFormationBackend,
    name: str,
    template: str,
    role_arn: str | None,
    parameters: list[dict[str, Any]],
    tags: dict[str, str] | None,
) -> Stack:
    """``CloudFormationBackend.update_stack``, run by ``run_update``."""
    stack = backend.get_stack(name)
    resolved = backend._resolve_update_parameters(instance=stack, incoming_params=parameters)
    run_update(backend, stack, template, resolved, role_arn, tags)
    return stack


# -- delete ---------------------------------------------------------------------------------
@serialized
def delete_stack(backend: CloudFormationBackend, name_or_stack_id: str) -> None:
    """``CloudFormationBackend.delete_stack``: reverse dependency order, DELETE_FAILED kept."""
    stack = backend.stacks.get(name_or_stack_id) or next(
        (s for s in backend.stacks.values() if s.name == name_or_stack_id), None
    )
    if stack is None:
        return  # CloudFormation answers a delete of a missing stack with success too
    stack.status = "DELETE_IN_PROGRESS"
    stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
    try:
        exports.check_not_in_use(backend, stack, keep={})
    except ValidationError as in_use:
        _delete_failed(stack, failure_reason("", in_use))
        return
    failed = _delete_resources(stack, stack.resource_map._resource_json_map)
    if failed:
        _delete_failed(
            stack, f"The following resource(s) failed to delete: [{', '.join(failed)}]. "
        )
        return
    exports.unregister(backend, stack)
    no_outputs(stack)
    backend.stacks.pop(stack.stack_id, None)
    backend.deleted_stacks[stack.stack_id] = stack
    stack.status = "DELETE_COMPLETE"
    stack._add_stack_event("DELETE_COMPLETE")


def _delete_failed(stack: Stack, reason: str) -> None:
    """The stack stays, as CloudFormation leaves it: the user fixes the cause and retries."""
    stack.status = "DELETE_FAILED"
    stack.stack_status_reason = reason  # type: ignore[attr-defined]
    stack._add_stack_event("DELETE_FAILED", resource_status_reason=reason)
    log.warning("stack %s: %s", stack.name, reason)


def _delete_resources(stack: Stack, bodies: dict[str, Any]) -> list[str]:
    parsed = stack.resource_map._parsed_resources
    failed: list[str] = []
    for logical_id in reversed(_order_or_template(bodies)):
        if logical_id not in parsed:
            continue
        if delete_one(stack, logical_id, parsed[logical_id], bodies[logical_id]):
            parsed.pop(logical_id, None)
        else:
            failed.append(logical_id)
    return failed


def _order_or_template(bodies: dict[str, Any]) -> list[str]:
    try:
        return creation_order(bodies)
    except ValueError:
        return list(bodies)
