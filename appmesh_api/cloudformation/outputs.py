"""Outputs that never break a stack: values nothing can produce are left out, loudly.

moto 5.2 answers a template whose ``Outputs`` name ``Fn::GetAtt`` of a type it does not
support with a 500 on CreateStack (its output check calls a method on None), and an
output that cannot be evaluated makes every later DescribeStacks of the stack fail. Here
such an output is validated against the types that exist and, if it still cannot be
computed, omitted from the stack's outputs with one warning naming it.
"""

from __future__ import annotations

import logging
from typing import Any

from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnsupportedAttribute, ValidationError

log = logging.getLogger("appmesh_local.cloudformation")

_moto_parse_output = parsing.parse_output


def validate_outputs(resource_map: parsing.ResourceMap) -> None:
    """``ResourceMap.validate_outputs`` that skips types no handler supports."""
    for output in (resource_map._template.get("Outputs") or {}).values():
        condition = output.get("Condition")
        if condition and not resource_map.lazy_condition_map[condition]:
            continue
        value = output.get("Value", {})
        if not isinstance(value, dict) or "Fn::GetAtt" not in value:
            continue
        target, attribute = _getatt(value["Fn::GetAtt"])
        resource = resource_map._resource_json_map.get(target)
        if resource is None:
            raise ValidationError(
                message=f"Template format error: Unresolved resource dependencies [{target}] "
                "in the Outputs block of the template"
            )
        resource_type = resource.get("Type", "")
        model = parsing.get_model_map().get(resource_type)
        if model is not None and not model.has_cfn_attr(attribute):
            raise UnsupportedAttribute(resource=resource_type.rsplit(":", 1)[-1], attr=attribute)


def _getatt(argument: Any) -> tuple[str, str]:
    if isinstance(argument, str):
        target, _, attribute = argument.partition(".")
        return target, attribute
    return str(argument[0]), str(argument[1])


def parse_output(key: str, output_json: Any, resource_map: parsing.ResourceMap) -> Any:
    """``parsing.parse_output``, leaving out (with a warning) what cannot be evaluated."""
    try:
        return _moto_parse_output(key, output_json, resource_map)
    except Exception as error:
        warned = resource_map.__dict__.setdefault("appmesh_output_warnings", set())
        if key not in warned:
            warned.add(key)
            log.warning(
                "stack %s: output %s left out: %s",
                resource_map["AWS::StackName"],
                key,
                getattr(error, "message", None) or error,
            )
        return None
