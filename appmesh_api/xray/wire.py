"""rest-json for X-Ray, driven by botocore's ``xray`` model.

Every X-Ray operation is ``POST /<Path>`` with a JSON body, so an operation is found by its
path alone. Parsing and validation reuse appmesh-local's model-driven rest-json code (the
same constraint checks and Coral-style messages), reporting violations as X-Ray's
``InvalidRequestException`` instead of App Mesh's ``BadRequestException``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from botocore.model import OperationModel

from appmesh_api import protocol
from appmesh_api.errors import BadRequestException
from appmesh_api.xray.errors import InvalidRequestException, xray_model


@functools.cache
def operations_by_path() -> dict[str, OperationModel]:
    """``/TraceSegments`` -> PutTraceSegments, for every operation in the model."""
    model = xray_model()
    found = {}
    for name in model.operation_names:
        operation = model.operation_model(name)
        found[operation.http["requestUri"].split("?", 1)[0]] = operation
    return found


def find_operation(method: str, path: str) -> OperationModel | None:
    """The operation a request names, or None when it is no X-Ray call."""
    if method != "POST":
        return None
    return operations_by_path().get(path.rstrip("/") or "/")


def parse(operation: OperationModel, body: bytes) -> dict[str, Any]:
    """Validated input parameters; any violation is an InvalidRequestException."""
    try:
        return protocol.parse_request(operation, {}, {}, body)
    except BadRequestException as error:
        raise InvalidRequestException(error.message) from None


def serialize(operation: OperationModel, result: dict[str, Any]) -> bytes:
    """The output body; members the model does not know are left out, as AWS's are."""
    return protocol.serialize_output(operation, result)


def epoch(value: Any) -> float:
    """A request timestamp (epoch number, numeric text or ISO 8601) as epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise InvalidRequestException(f"Value '{value}' is not a valid timestamp.")
