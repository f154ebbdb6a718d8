"""App Mesh error types as AWS sends them.

Every exception the service raises is one of the error shapes in botocore's
``appmesh`` model. The HTTP status comes from the model too (``error.httpStatusCode``),
so a status can never drift from what botocore expects.
"""

from __future__ import annotations

from appmesh_api.model import service_model


class AppMeshError(Exception):
    """An error with an AWS error type; rendered as ``x-amzn-ErrorType`` + ``{"message"}``."""

    code: str = "InternalServerErrorException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status_code(self) -> int:
        shape = service_model().shape_for(self.code)
        return int(shape.metadata.get("error", {}).get("httpStatusCode", 500))


class BadRequestException(AppMeshError):
    code = "BadRequestException"


class ConflictException(AppMeshError):
    code = "ConflictException"


class ForbiddenException(AppMeshError):
    code = "ForbiddenException"


class InternalServerErrorException(AppMeshError):
    code = "InternalServerErrorException"


class LimitExceededException(AppMeshError):
    code = "LimitExceededException"


class NotFoundException(AppMeshError):
    code = "NotFoundException"


class ResourceInUseException(AppMeshError):
    code = "ResourceInUseException"


class ServiceUnavailableException(AppMeshError):
    code = "ServiceUnavailableException"


class TooManyRequestsException(AppMeshError):
    code = "TooManyRequestsException"


class TooManyTagsException(AppMeshError):
    code = "TooManyTagsException"
