"""Per-resource stack events and the status reasons CloudFormation writes into them.

moto records stack-level events only; CloudFormation records one event per resource step
(``CREATE_IN_PROGRESS``, ``CREATE_FAILED`` with the handler's message...), and that is
what ``aws cloudformation deploy`` and the CDK CLI print when a stack fails.
"""

from __future__ import annotations

import uuid

from moto.cloudformation.models import Event, Stack

from appmesh_api.cloudformation.properties import PropertyError
from appmesh_api.errors import AppMeshError

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
