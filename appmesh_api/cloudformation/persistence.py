"""Stacks kept in the data directory, so they survive a restart with their App Mesh resources.

moto keeps stacks in memory only, while the App Mesh resources they made are in the
store: after a restart, every mesh a stack made would belong to no stack. Each stack is
saved (``<data-dir>/cloudformation/<id>.json``) after each of its events, with the
parameters of each App Mesh resource it holds, and brought back on start:

- App Mesh resources are *adopted* from the store (described, never re-created); one that
  was deleted meanwhile is dropped from the stack, with a warning;
- resources of moto's types (IAM, S3, SSM...) are *adopted* too when their service's state
  came back from the data directory (``sidestate``): the stack keeps a pickled copy of
  each (ids, names, what ``Fn::GetAtt`` reads), and each resource step saves its
  service's state before the stack is saved, so the copy names what the service holds.
  Only a service whose state is not saved (it does not pickle) has its resources created
  again from the template;
- a stack that was being created when the server stopped is rolled back
  (``ROLLBACK_COMPLETE``), so nothing is left half-made; one that was being updated or
  deleted is left ``UPDATE_ROLLBACK_FAILED`` / ``DELETE_FAILED``, its resources as they
  were, for the user to delete.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from moto.cloudformation import parsing
from moto.cloudformation.models import Event, Stack, cloudformation_backends

from appmesh_api import sidestate
from appmesh_api.cloudformation import events, exports, lifecycle
from appmesh_api.cloudformation.graph import creation_order
from appmesh_api.cloudformation.resources import MODELS, AppMeshResource
from appmesh_api.errors import NotFoundException
from appmesh_api.identity import Caller

log = logging.getLogger("appmesh_local.cloudformation")

FOLDER = "cloudformation"
_VERSION = 1
_EVENT_FIELDS = (
    "stack_id",
    "stack_name",
    "logical_resource_id",
    "physical_resource_id",
    "resource_type",
    "resource_status",
    "resource_status_reason",
    "resource_properties",
)


class Saver:
    """Writes stacks under ``data_dir`` (one file each, replaced atomically)."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / FOLDER

    def path(self, stack: Stack) -> Path:
        return self.folder / f"{hashlib.sha1(stack.stack_id.encode()).hexdigest()}.json"

    def __call__(self, stack: Stack) -> None:
        """Save ``stack`` now (or forget it, once deleted or never executed)."""
        path = self.path(stack)
        if stack.status in ("DELETE_COMPLETE", "REVIEW_IN_PROGRESS"):
            path.unlink(missing_ok=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(snapshot(stack), default=str))
        os.replace(scratch, path)

    def load(self) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        entries = [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))]
        return sorted(entries, key=lambda entry: entry["creation_time"])


def snapshot(stack: Stack) -> dict[str, Any]:
    """What it takes to bring ``stack`` back: its inputs, status, resources and events."""
    resource_map = stack.resource_map
    resources = {}
    for logical_id, instance in resource_map._parsed_resources.items():
        body = resource_map._resource_json_map.get(logical_id)
        if body is None or not hasattr(instance, "is_created"):
            continue
        saved: dict[str, Any] = {"type": body.get("Type", "")}
        if isinstance(instance, AppMeshResource):
            saved["appmesh"] = instance.params
        else:
            saved.update(_moto_copy(instance))
        resources[logical_id] = saved
    template = stack.template if isinstance(stack.template, str) else json.dumps(stack.template)
    return {
        "version": _VERSION,
        "stack_id": stack.stack_id,
        "name": stack.name,
        "account": stack.account_id,
        "region": stack.region_name,
        "template": template,
        "parameters": stack.parameters,
        "tags": stack.tags,
        "role_arn": stack.role_arn,
        "status": stack.status,
        "status_reason": getattr(stack, "stack_status_reason", None),
        "creation_time": stack.creation_time.isoformat(),
        "resources": resources,
        "events": [_event_json(event) for event in stack.events],
    }


def _moto_copy(instance: Any) -> dict[str, Any]:
    """A moto resource as the stack keeps it, when its service's state is saved too."""
    service = sidestate.service_of_model(type(instance))
    if sidestate.active() is None or service is None:
        return {}
    try:
        copy = base64.b64encode(sidestate.dumps(instance)).decode()
    except Exception as error:  # it will be created again from the template instead
        log.debug("no saved copy of %s: %s", type(instance).__name__, error)
        return {}
    return {"service": service, "moto": copy}


def save_side_state(stack: Stack) -> None:
    """After a resource step of a moto type, save that service's state (before the stack
    is saved by the next listener), so that what the stack names is in the snapshot."""
    state = sidestate.active()
    event = stack.events[-1] if stack.events else None
    if state is None or event is None or event.resource_type in MODELS:
        return
    if not str(event.resource_status).endswith(("_COMPLETE", "_FAILED")):
        return
    model = parsing.get_model_map().get(event.resource_type)
    service = sidestate.service_of_model(model) if model is not None else None
    if service is not None and service not in sidestate.NOT_SAVED:
        state.save_service(service, stack.account_id, stack.region_name)


def _event_json(event: Event) -> dict[str, Any]:
    saved = {name: getattr(event, name) for name in _EVENT_FIELDS}
    saved["timestamp"] = event.timestamp.isoformat()
    saved["event_id"] = str(event.event_id)
    return saved


def _event(saved: dict[str, Any]) -> Event:
    event = Event(**{name: saved[name] for name in _EVENT_FIELDS})
    event.timestamp = datetime.fromisoformat(saved["timestamp"])
    event.event_id = saved["event_id"]
    return event


def restore_all(saver: Saver) -> None:
    """Bring back every saved stack, oldest first (so exports exist before imports)."""
    for entry in saver.load():
        try:
            restore(entry)
        except Exception:
            log.exception("could not restore stack %s from %s", entry.get("name"), saver.folder)


def restore(entry: dict[str, Any]) -> Stack:
    backend = cloudformation_backends[entry["account"]][entry["region"]]
    stack = Stack(  # type: ignore[abstract]
        stack_id=entry["stack_id"],
        name=entry["name"],
        template=entry["template"],
        parameters=entry["parameters"],
        account_id=entry["account"],
        region_name=entry["region"],
        tags=entry["tags"],
        role_arn=entry["role_arn"],
        cross_stack_resources=backend.exports,
    )
    stack.creation_time = datetime.fromisoformat(entry["creation_time"])
    for saved in entry["events"]:
        stack.events.append(_event(saved))
        events.remember(stack, stack.events[-1])
    stack.status = entry["status"]
    stack.stack_status_reason = entry["status_reason"]  # type: ignore[attr-defined]
    resource_map = stack.resource_map
    resource_map._template = stack.template_dict
    resource_map._resource_json_map = stack.template_dict.get("Resources") or {}
    backend.stacks[stack.stack_id] = stack
    journal = lifecycle.Journal()
    for logical_id in creation_order(resource_map._resource_json_map):
        saved = entry["resources"].get(logical_id) or _caught_mid_step(stack, logical_id)
        if saved is not None and _bring_back(stack, logical_id, saved):
            journal.added.append((logical_id, resource_map._resource_json_map[logical_id]))
    _settle(backend, stack, journal)
    return stack


def _caught_mid_step(stack: Stack, logical_id: str) -> dict[str, Any] | None:
    """An App Mesh resource whose last event is CREATE_IN_PROGRESS: the server may have
    stopped after App Mesh made it and before the stack was saved. If its template names
    it, find it by that name so that the rollback deletes it too."""
    event = events.last_event(stack, logical_id)
    body = stack.resource_map._resource_json_map[logical_id]
    model = MODELS.get(body.get("Type", ""))
    if model is None or event is None or event.resource_status != "CREATE_IN_PROGRESS":
        return None
    properties = parsing.clean_json(body.get("Properties") or {}, stack.resource_map)
    name = properties.get(model.cloudformation_name_type())
    if not name:
        return None
    try:
        params = model.api_params(properties, name)  # type: ignore[attr-defined]
    except ValueError:
        return None
    return {"type": body["Type"], "appmesh": params}


def _bring_back(stack: Stack, logical_id: str, saved: dict[str, Any]) -> bool:
    """Adopt (App Mesh) or re-create (moto) one resource; False if it is gone."""
    resource_map = stack.resource_map
    model = MODELS.get(saved["type"])
    try:
        if model is not None:
            caller = Caller(stack.account_id, stack.region_name)
            instance = model.adopt(caller, saved["appmesh"])  # type: ignore[attr-defined]
        elif _saved_with_its_service(stack, saved):
            instance = sidestate.loads(base64.b64decode(saved["moto"]))
        else:
            with lifecycle.creating(stack):
                instance = resource_map[logical_id]
    except NotFoundException:
        log.warning(
            "stack %s: %s (%s) was deleted outside the stack; it is no longer in the stack",
            stack.name,
            logical_id,
            saved["type"],
        )
        return False
    if instance is None:
        return False
    instance.cf_resource_type = saved["type"]
    instance.logical_resource_id = logical_id
    resource_map._parsed_resources[logical_id] = instance
    return True


def _saved_with_its_service(stack: Stack, saved: dict[str, Any]) -> bool:
    """Whether the resource is in its service's restored state (then adopt, not create)."""
    state = sidestate.active()
    service = saved.get("service")
    return bool(
        state is not None and service and saved.get("moto") and state.has(service, stack.account_id)
    )


_INTERRUPTED = {
    "UPDATE_IN_PROGRESS": "UPDATE_ROLLBACK_FAILED",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_IN_PROGRESS": "UPDATE_ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS": "DELETE_FAILED",
}


def _settle(backend: Any, stack: Stack, journal: lifecycle.Journal) -> None:
    """Finish what a stop interrupted: roll back a create; mark an update or delete."""
    reason = f"appmesh-local stopped while the stack was {stack.status}"
    if stack.status in ("CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS"):
        lifecycle.rollback_create(stack, journal, f"{reason}; rolling back")
    elif stack.status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED"):
        lifecycle.no_outputs(stack)
    else:
        if stack.status in _INTERRUPTED:
            stack.status = _INTERRUPTED[stack.status]
            stack._add_stack_event(stack.status, resource_status_reason=reason)
        try:
            exports.register(backend, stack)
        except Exception as error:  # an export another restored stack took meanwhile
            log.warning("stack %s: exports not restored: %s", stack.name, error)
    log.info("stack %s restored (%s)", stack.name, stack.status)
