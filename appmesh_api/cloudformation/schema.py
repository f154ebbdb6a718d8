"""The CloudFormation registry schemas of the seven ``AWS::AppMesh::*`` types.

cfn-lint ships AWS's registry schemas (installed with moto's cloudformation extra);
they are the one source of truth for a type's top-level properties, which of them are
create-only (a change means replacement) and which attributes ``Fn::GetAtt`` serves.
Nothing here is hand-copied: a property the registry adds is known without a code change.
The schemas are read as files found through the package's location, without importing
cfn-lint (its ``__init__`` imports its whole engine: two seconds on the first App Mesh
stack after ``serve`` starts).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import runpy
from dataclasses import dataclass
from pathlib import Path


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
    """Type name -> schema file of us-east-1. cfn-lint keeps this table as ``types`` in a
    data module (``providers/us_east_1.py``, or ``providers/us_east_1/__init__.py`` in
    older releases), or as ``providers/us-east-1.json``. Each layout is read, so the moto
    pin's range of cfn-lint releases works; a module is run by path, not imported, so
    cfn-lint's package ``__init__`` never runs."""
    providers = folder / "providers"
    table = providers / "us-east-1.json"
    if table.is_file():
        types: dict[str, str] = json.loads(table.read_text())
        return types
    module = providers / "us_east_1.py"
    if not module.is_file():
        module = providers / "us_east_1" / "__init__.py"
    return dict(runpy.run_path(str(module))["types"])


def _schemas_folder() -> Path:
    """``cfnlint/data/schemas``, located without executing the package."""
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("cfn-lint is not installed (it comes with moto[cloudformation])")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "schemas"


@functools.cache
def resource_schema(type_name: str) -> ResourceSchema:
    """Load ``type_name``'s registry schema (us-east-1's copy: the types are global)."""
    folder = _schemas_folder()
    file_hash = _provider_types(folder)[type_name]
    document = json.loads((folder / "resources" / f"{file_hash}.json").read_text())
    return ResourceSchema(
        type_name=type_name,
        properties=frozenset(document["properties"]),
        read_only=_pointer_names(document.get("readOnlyProperties", [])),
        create_only=_pointer_names(document.get("createOnlyProperties", [])),
        required=frozenset(document.get("required", [])),
    )
