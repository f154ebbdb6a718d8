"""The CloudFormation registry schemas of the seven ``AWS::AppMesh::*`` types.

cfn-lint ships AWS's registry schemas (installed with moto's cloudformation extra);
they are the one source of truth for a type's top-level properties, which of them are
create-only (a change means replacement) and which attributes ``Fn::GetAtt`` serves.
Nothing here is hand-copied: a property the registry adds is known without a code change.
The schemas are read as JSON files, without importing cfn-lint itself (1.3 s of imports).
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

_SCHEMAS = "cfnlint.data.schemas"


@dataclass(frozen=True)
class ResourceSchema:
    """What CloudFormation itself knows of one resource type."""

    type_name: str  # "AWS::AppMesh::VirtualNode"
    properties: frozenset[str]  # every top-level property, read-only ones included
    read_only: frozenset[str]  # Arn, Uid, ...: outputs only, never inputs
    create_only: frozenset[str]  # MeshName, VirtualNodeName, MeshOwner, ...
    required: frozenset[str]

    @property
    def attributes(self) -> frozenset[str]:
        """What ``Fn::GetAtt`` may name: every scalar property (cfn-lint's reading too)."""
        return self.properties - {"Spec", "Tags"}

    @property
    def inputs(self) -> frozenset[str]:
        return self.properties - self.read_only


def _pointer_names(pointers: list[str]) -> frozenset[str]:
    """``["/properties/MeshName"]`` -> ``{"MeshName"}`` (top-level pointers only)."""
    return frozenset(p.removeprefix("/properties/") for p in pointers if p.count("/") == 2)


@functools.cache
def _provider_types(folder: Path) -> dict[str, str]:
    """Type name -> schema file of us-east-1. cfn-lint up to 1.5x kept this table in a
    module (``providers/us_east_1/__init__.py``, ``types``); later releases keep it as
    ``providers/us-east-1.json``. Both layouts are read, so the moto pin's range of
    cfn-lint releases works."""
    table = folder / "providers" / "us-east-1.json"
    if table.is_file():
        types: dict[str, str] = json.loads(table.read_text())
        return types
    module = importlib.import_module(f"{_SCHEMAS}.providers.us_east_1")
    return dict(module.types)


@functools.cache
def resource_schema(type_name: str) -> ResourceSchema:
    """Load ``type_name``'s registry schema (us-east-1's copy: the types are global)."""
    folder = Path(str(importlib.import_module(_SCHEMAS).__file__)).parent
    file_hash = _provider_types(folder)[type_name]
    document = json.loads((folder / "resources" / f"{file_hash}.json").read_text())
    return ResourceSchema(
        type_name=type_name,
        properties=frozenset(document["properties"]),
        read_only=_pointer_names(document.get("readOnlyProperties", [])),
        create_only=_pointer_names(document.get("createOnlyProperties", [])),
        required=frozenset(document.get("required", [])),
    )
