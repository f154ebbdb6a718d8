"""Per-resource stack events, the status reasons in them, and each resource's status.

moto records stack-level events only; CloudFormation records one event per resource step
(``CREATE_IN_PROGRESS``, ``CREATE_FAILED`` with the handler's message...), and that is
what ``aws cloudformation deploy`` and the CDK CLI print when a stack fails. moto also
reports every resource as its stack's status (or a hard-coded CREATE_COMPLETE); here a
resource's status is its last event's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from moto.cloudformation.models import Event, Stack
from moto.cloudformation.responses import CloudFormationResponse, StackResourceDTO
from moto.core.responses import ActionResult

from appmesh_api.cloudformation.properties import PropertyError
from appmesh_api.errors import AppMeshError

log = logging.getLogger("appmesh_local.cloudformation")

#: App Mesh error type -> the registry handler's error code (UNCONFIRMED: App Mesh's
#: handlers are not public; these are the codes the CloudFormation CLI's contract defines).
_HANDLER_CODES = {
    "BadRequestException": "InvalidRequest",
    "ConflictException": "AlreadyExists",
    "ForbiddenException": "AccessDenied",
    "LimitExceededException": "ServiceLimitExceeded",
    "NotFoundException": "NotFound",
    "ResourceInUseException": "ResourceConflict",
    "TooManyRequestsException": "Throttling",
    "TooManyTagsException": "InvalidRequest",
}


#: Called with the stack after each of its events (``persistence`` saves it there).
listeners: list[Callable[[Stack], None]] = []


def notify(stack: Stack) -> None:
    for listener in listeners:
        listener(stack)


_moto_add_stack_event = Stack._add_stack_event


def add_stack_event(
    stack: Stack,
    resource_status: str,
    resource_status_reason: str | None = None,
    resource_properties: str | None = None,
) -> None:
    """``Stack._add_stack_event`` that tells the listeners."""
    _moto_add_stack_event(stack, resource_status, resource_status_reason, resource_properties)
    notify(stack)


def resource_event(
    stack: Stack,
    logical_id: str,
    resource_type: str,
    status: str,
    reason: str | None = None,
    physical_id: str = "",
) -> None:
    """Append one resource's event to the stack (and to its SNS topics, as moto does)."""
    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id=physical_id,
        resource_type=resource_type,
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    stack.events.append(event)
    remember(stack, event)
    if status.endswith(("_COMPLETE", "_SKIPPED")):
        log.info("stack %s: %s %s %s", stack.name, logical_id, status, physical_id)
    notify(stack)


def remember(stack: Stack, event: Event) -> None:
    """Keep ``event`` as its resource's latest (the stack's own events are not resources)."""
    if event.resource_type != "AWS::CloudFormation::Stack":
        stack.__dict__.setdefault("appmesh_resource_status", {})[event.logical_resource_id] = event


def last_event(stack: Stack, logical_id: str | None) -> Event | None:
    return stack.__dict__.get("appmesh_resource_status", {}).get(logical_id)


_moto_dto_init = StackResourceDTO.__init__


def resource_dto_init(dto: StackResourceDTO, stack: Stack, resource: object) -> None:
    """``StackResourceDTO.__init__`` with the resource's own status and time."""
    _moto_dto_init(dto, stack, resource)  # type: ignore[arg-type]
    event = last_event(stack, dto.logical_resource_id)
    if event is not None:
        dto.resource_status = event.resource_status
        dto.timestamp = event.timestamp  # type: ignore[assignment]


def list_stack_resources(response: CloudFormationResponse) -> ActionResult:
    """``ListStackResources`` with real statuses (moto hard-codes CREATE_COMPLETE)."""
    stack = response.cloudformation_backend.get_stack(response._get_param("StackName"))
    summaries = []
    for resource in stack.stack_resources:
        logical_id = getattr(resource, "logical_resource_id", "")
        event = last_event(stack, logical_id)
        summaries.append(
            {
                "ResourceStatus": event.resource_status if event else stack.status,
                "LogicalResourceId": logical_id,
                "LastUpdatedTimestamp": event.timestamp if event else stack.creation_time,
                "PhysicalResourceId": getattr(resource, "physical_resource_id", ""),
                "ResourceType": getattr(resource, "cf_resource_type", ""),
            }
        )
    return ActionResult({"StackResourceSummaries": summaries})


def failure_reason(logical_id: str, error: Exception) -> str:
    """The status reason CloudFormation shows for a failed resource step."""
    if isinstance(error, AppMeshError):
        code = _HANDLER_CODES.get(error.code, "GeneralServiceException")
        return (
            f'Resource handler returned message: "{error.message} (Service: AppMesh, '
            f'Status Code: {error.status_code}, Request ID: {uuid.uuid4()})" '
            f"(RequestToken: {uuid.uuid4()}, HandlerErrorCode: {code})"
        )
    if isinstance(error, PropertyError):
        return f"Properties validation failed for resource {logical_id} with message: {error}"
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return str(message)
