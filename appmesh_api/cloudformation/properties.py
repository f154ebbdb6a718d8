"""CloudFormation properties -> App Mesh API parameters, by walking botocore's shapes.

A template's keys differ from the API's only in case, and not only in the first letter
(``DNS``/``dns``, ``AWSCloudMap``/``awsCloudMap``, ``HTTP2``/``http2``), so a naive
PascalCase->camelCase is wrong. Each key is matched case-insensitively against the
members of the botocore shape at that point, which is exact: no App Mesh structure has
two members that differ only by case. A key that matches nothing is refused, as the
registry's ``additionalProperties: false`` does.

Values are coerced where CloudFormation coerces them: YAML and parameters deliver
``"8080"`` and ``"true"`` as strings, and CloudFormation converts them to the schema's
integer and boolean before the handler sees them.
"""

from __future__ import annotations

from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape


class PropertyError(ValueError):
    """A template value that cannot become an API parameter (the path names where)."""


def to_api(shape: Shape, value: Any, path: str) -> Any:
    """Convert one CloudFormation value to the API's form for ``shape``."""
    if isinstance(shape, StructureShape):
        return _structure(shape, value, path)
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            raise PropertyError(f"{path}: expected type: JSONArray, found: {_json_type(value)}")
        return [to_api(shape.member, item, f"{path}/{i}") for i, item in enumerate(value)]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            raise PropertyError(f"{path}: expected type: JSONObject, found: {_json_type(value)}")
        return {key: to_api(shape.value, item, f"{path}/{key}") for key, item in value.items()}
    return _scalar(shape, value, path)


def _structure(shape: StructureShape, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PropertyError(f"{path}: expected type: JSONObject, found: {_json_type(value)}")
    by_lower = {name.lower(): name for name in shape.members}
    converted: dict[str, Any] = {}
    for key, item in value.items():
        member = by_lower.get(key.lower())
        if member is None:
            raise PropertyError(f"{path}: extraneous key [{key}] is not permitted")
        converted[member] = to_api(shape.members[member], item, f"{path}/{key}")
    return converted


def _scalar(shape: Shape, value: Any, path: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long") and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise PropertyError(f"{path}: expected type: Integer, found: String") from None
    if kind == "boolean" and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise PropertyError(f"{path}: expected type: Boolean, found: String")
        return value.lower() == "true"
    if kind in ("double", "float") and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise PropertyError(f"{path}: expected type: Number, found: String") from None
    if kind == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "JSONObject"
    if isinstance(value, list):
        return "JSONArray"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, (int, float)):
        return "Integer"
    return "String"
