"""X-Ray's error types as botocore's ``xray`` model declares them.

The HTTP status is read from the model (``ThrottledException`` is 429, the rest 400), so an
error always reaches botocore, and the aws CLI, with the code and status X-Ray sends.
"""

from __future__ import annotations

import functools

import botocore.session
from botocore.model import ServiceModel


@functools.cache
def xray_model() -> ServiceModel:
    """botocore's ``xray`` service model (loaded once; the whole package reads it)."""
    return botocore.session.get_session().get_service_model("xray")


class XRayError(Exception):
    """An X-Ray error: rendered as ``x-amzn-ErrorType`` plus a ``{"Message": ...}`` body."""

    code = "InvalidRequestException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status_code(self) -> int:
        try:
            shape = xray_model().shape_for(self.code)
        except Exception:  # a code the model does not list (NotImplemented)
            return 501
        return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


class InvalidRequestException(XRayError):
    code = "InvalidRequestException"


class ThrottledException(XRayError):
    code = "ThrottledException"


class RuleLimitExceededException(XRayError):
    code = "RuleLimitExceededException"


class ResourceNotFoundException(XRayError):
    code = "ResourceNotFoundException"


class NotImplementedOperation(XRayError):
    """An operation of the model that appmesh-local does not serve (HTTP 501)."""

    code = "NotImplemented"
