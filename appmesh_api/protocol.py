"""rest-json on the wire, driven by botocore's shapes.

``parse_request`` turns an HTTP request into the operation's input parameters and
checks every constraint the model states (required, types, enums, lengths, ranges,
list sizes, unions) -- including the maxima botocore's client never checks.
``serialize_output`` renders an operation's output the way botocore reads it.

Messages follow AWS's Coral validation style
(``1 validation error detected: Value '70000' at 'spec.listeners.1.member.portMapping.port'
failed to satisfy constraint: Member must have value less than or equal to 65535``)
so that users who grep for AWS's wording find ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from botocore.model import ListShape, MapShape, OperationModel, Shape, StringShape, StructureShape

from appmesh_api.errors import BadRequestException

_MAX_ERRORS_SHOWN = 5


class _Collector:
    """Gathers constraint violations so one response names all of them, as AWS does."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def violation(self, value: Any, where: str, constraint: str) -> None:
        self.problems.append(
            f"Value {_render(value)} at '{where}' failed to satisfy constraint: {constraint}"
        )

    def other(self, text: str) -> None:
        self.problems.append(text)

    def raise_if_any(self) -> None:
        if not self.problems:
            return
        count = len(self.problems)
        noun = "error" if count == 1 else "errors"
        shown = "; ".join(self.problems[:_MAX_ERRORS_SHOWN])
        raise BadRequestException(f"{count} validation {noun} detected: {shown}")


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"'{text}'"


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


def validate_value(shape: Shape, value: Any, path: str, errors: _Collector) -> None:
    """Check ``value`` against ``shape`` recursively, recording each violation."""
    # botocore builds each compound type_name as its own Shape subclass.
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        _validate_structure(shape, value, path, errors)
    elif isinstance(shape, ListShape):
        _validate_list(shape, value, path, errors)
    elif isinstance(shape, MapShape):
        _validate_map(shape, value, path, errors)
    elif isinstance(shape, StringShape):
        _validate_string(shape, value, path, errors)
    elif kind in ("integer", "long"):
        _validate_integer(shape, value, path, errors)
    elif kind in _SCALAR_CHECKS:
        accepts, constraint = _SCALAR_CHECKS[kind]
        if isinstance(value, bool) != (kind == "boolean") or not accepts(value):
            errors.violation(value, path, constraint)


_SCALAR_CHECKS = {
    "boolean": (lambda value: isinstance(value, bool), "Member must be a boolean"),
    "double": (lambda value: isinstance(value, (int, float)), "Member must be a number"),
    "float": (lambda value: isinstance(value, (int, float)), "Member must be a number"),
    "timestamp": (
        lambda value: isinstance(value, (int, float, str)),
        "Member must be a timestamp",
    ),
}


def _validate_structure(shape: StructureShape, value: Any, path: str, errors: _Collector) -> None:
    if not isinstance(value, dict):
        errors.violation(value, path or "body", "Member must be an object")
        return
    members = shape.members
    for key in value:
        if key not in members:
            where = f"'{path}'" if path else "the top level"
            errors.other(f"Unknown field '{key}' at {where}: it is not part of {shape.name}")
    for required in shape.required_members:
        if value.get(required) is None:
            errors.violation(None, _join(path, required), "Member must not be null")
    present = [key for key, item in value.items() if key in members and item is not None]
    if shape.is_tagged_union and len(present) != 1:
        options = ", ".join(members)
        errors.other(
            f"Value at '{path}' failed to satisfy constraint: Member must have exactly one "
            f"of the following fields set: [{options}] ({len(present)} set)"
        )
    for key in present:
        validate_value(members[key], value[key], _join(path, key), errors)


def _validate_list(shape: ListShape, value: Any, path: str, errors: _Collector) -> None:
    if not isinstance(value, list):
        errors.violation(value, path, "Member must be a list")
        return
    _check_size(shape, len(value), value, path, errors, "length")
    for index, item in enumerate(value, start=1):
        where = f"{path}.{index}.member"
        if item is None:
            errors.violation(None, where, "Member must not be null")
        else:
            validate_value(shape.member, item, where, errors)


def _validate_map(shape: MapShape, value: Any, path: str, errors: _Collector) -> None:
    if not isinstance(value, dict):
        errors.violation(value, path, "Member must be a map")
        return
    _check_size(shape, len(value), value, path, errors, "length")
    for key, item in value.items():
        validate_value(shape.key, key, f"{path}.key", errors)
        validate_value(shape.value, item, f"{path}.{key}", errors)


def _validate_string(shape: StringShape, value: Any, path: str, errors: _Collector) -> None:
    if not isinstance(value, str):
        errors.violation(value, path, "Member must be a string")
        return
    _check_size(shape, len(value), value, path, errors, "length")
    enum = shape.enum
    if enum and value not in enum:
        errors.violation(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
    pattern = shape.metadata.get("pattern")
    if pattern and re.search(pattern, value) is None:
        errors.violation(value, path, f"Member must satisfy regular expression pattern: {pattern}")


#: What App Mesh's Java service holds: ``integer`` is 32-bit, ``long`` 64-bit. JSON's
#: numbers are unbounded, so a value outside these is refused rather than stored.
_INTEGER_BITS = {"integer": 32, "long": 64}


def _validate_integer(shape: Shape, value: Any, path: str, errors: _Collector) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.violation(value, path, "Member must be an integer")
        return
    bits = _INTEGER_BITS[shape.type_name]
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if not low <= value <= high:
        errors.violation(value, path, f"Member must have value between {low} and {high}")
        return
    _check_size(shape, value, value, path, errors, "value")


def _check_size(
    shape: Shape, measure: int, value: Any, path: str, errors: _Collector, what: str
) -> None:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and measure < low:
        errors.violation(value, path, f"Member must have {what} greater than or equal to {low}")
    if high is not None and measure > high:
        errors.violation(value, path, f"Member must have {what} less than or equal to {high}")


def _scalar_from_text(shape: Shape, text: str, name: str, errors: _Collector) -> Any:
    """Convert a path label or query value to the shape's type (they arrive as text)."""
    if shape.type_name in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            errors.violation(text, name, "Member must be an integer")
            return None
    if shape.type_name == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        errors.violation(text, name, "Member must be a boolean")
        return None
    return text


def parse_request(
    operation: OperationModel,
    labels: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Build and validate the input parameters of ``operation`` from an HTTP request.

    Raises BadRequestException naming every offending field; nothing is changed
    by a request that fails here.
    """
    shape = operation.input_shape
    errors = _Collector()
    params: dict[str, Any] = {}
    document = _parse_body(body) if body.strip() else {}
    if not isinstance(document, dict):
        raise BadRequestException("The request body must be a JSON object.")
    if shape is None:
        return params
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            if wire_name in labels:
                text = _label_text(labels[wire_name], wire_name)
                params[name] = _scalar_from_text(member, text, name, errors)
        elif location == "querystring":
            if wire_name in query:
                params[name] = _scalar_from_text(member, query[wire_name], name, errors)
        elif location is None and name in document:
            params[name] = document[name]
    body_members = {n for n, m in shape.members.items() if not m.serialization.get("location")}
    for key in document:
        if key not in body_members:
            errors.other(f"Unknown field '{key}' at the top level: it is not part of {shape.name}")
    errors.raise_if_any()
    validate_value(shape, {k: v for k, v in params.items() if v is not None}, "", errors)
    errors.raise_if_any()
    return params


def validate_input(operation: OperationModel, params: Mapping[str, Any]) -> None:
    """Check parameters that did not come over HTTP (CloudFormation's) as a request's are.

    Raises the same BadRequestException, worded the same, as ``parse_request``.
    """
    shape = operation.input_shape
    if shape is None:
        return
    errors = _Collector()
    validate_value(shape, {k: v for k, v in params.items() if v is not None}, "", errors)
    errors.raise_if_any()


def _label_text(raw: str, wire_name: str) -> str:
    """A URI label, percent-decoded as strict UTF-8 (AWS refuses what does not decode)."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequestException(
            f"The path segment for {wire_name} is not percent-encoded UTF-8."
        ) from None


def _parse_body(body: bytes) -> Any:
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads would also guess UTF-16 and -32.
        document = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        # JSON may spell a lone UTF-16 surrogate ("\\ud800"), which no resource name can
        # hold: refuse it here rather than fail when the name is stored or sent back.
        json.dumps(document, ensure_ascii=False).encode("utf-8")
        return document
    except UnicodeEncodeError:
        raise BadRequestException(
            "The request body holds a lone UTF-16 surrogate, which is not valid Unicode."
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise BadRequestException(
            f"The request body is not valid JSON ({exc}). Send a JSON object as the body."
        ) from None
    except RecursionError:
        raise BadRequestException(
            "The request body is nested too deeply to be an App Mesh request."
        ) from None


def _no_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are Python's JSON, not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def to_wire(shape: Shape, value: Any) -> Any:
    """Render a stored value for the wire: timestamps as epoch seconds, nulls dropped."""
    if isinstance(shape, StructureShape):
        members = shape.members
        return {
            key: to_wire(members[key], item)
            for key, item in value.items()
            if item is not None and key in members
        }
    if isinstance(shape, ListShape):
        return [to_wire(shape.member, item) for item in value]
    if isinstance(shape, MapShape):
        return {key: to_wire(shape.value, item) for key, item in value.items()}
    if shape.type_name == "timestamp" and isinstance(value, datetime):
        return value.timestamp()
    return value


def serialize_output(operation: OperationModel, result: Mapping[str, Any]) -> bytes:
    """The JSON body of a successful response (honours the output's ``payload`` member)."""
    shape = operation.output_shape
    if shape is None:
        return b"{}"
    payload = shape.serialization.get("payload")
    if payload:
        member = shape.members[payload]
        document = to_wire(member, result.get(payload) or {})
    else:
        document = to_wire(shape, result)
    return json.dumps(document, separators=(",", ":")).encode()
