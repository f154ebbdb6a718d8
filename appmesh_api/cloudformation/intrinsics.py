"""Intrinsic functions where moto 5.2 reads them wrong, and the imports a stack makes.

- ``Fn::GetAtt`` written as one dotted string (``{"Fn::GetAtt": "Role.Arn"}``, which
  CloudFormation accepts and the walkthroughs use) is read by moto as resource ``R``,
  attribute ``o`` (the string's first two characters); it is split here first.
- each ``Fn::ImportValue`` resolved is remembered on the stack's resource map, so that
  ``exports`` can refuse to delete an export another stack still imports.
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing

_moto_clean_json = parsing.clean_json


def clean_json(resource_json: Any, resources_map: parsing.ResourceMap) -> Any:
    """``parsing.clean_json`` with the two fixes above (moto's recursion comes back here)."""
    if isinstance(resource_json, dict):
        getatt = resource_json.get("Fn::GetAtt")
        if isinstance(getatt, str) and "." in getatt:
            resource_json = {**resource_json, "Fn::GetAtt": getatt.split(".", 1)}
        if "Fn::ImportValue" in resource_json:
            name = _moto_clean_json(resource_json["Fn::ImportValue"], resources_map)
            resources_map.__dict__.setdefault("appmesh_imports", set()).add(name)
    return _moto_clean_json(resource_json, resources_map)


def imports_of(resources_map: parsing.ResourceMap) -> set[str]:
    """The export names a stack's template has imported so far."""
    return resources_map.__dict__.get("appmesh_imports", set())
