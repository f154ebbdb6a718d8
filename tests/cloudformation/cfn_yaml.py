"""Read a CloudFormation YAML template and work out, on the test's side, what it declares.

The walkthrough tests derive what App Mesh must hold from the template itself, so they
need the template's values with its intrinsics worked out: this module is a small,
independent reading of the template language (short-form tags, ``Ref``, ``Fn::Sub``,
``Fn::GetAtt``, ``Fn::Join``, ``Fn::Equals`` in conditions). It shares no code with
``appmesh_api/cloudformation/``, so a mistake there cannot hide itself here. An
intrinsic it does not know fails the test instead of being guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class _TemplateLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (on libyaml when PyYAML has it) turning ``!Ref x``, ``!GetAtt a.b``,
    ``!Sub s`` ... into their long forms."""


def _short_form(loader: _TemplateLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_form)


@functools.cache
def load(path: Path) -> dict[str, Any]:
    """The template at ``path`` (read once; callers only read it)."""
    return yaml.load(path.read_text(), Loader=_TemplateLoader)


@dataclass
class Stack:
    """What intrinsics need to know about one deployed stack."""

    name: str
    account: str
    region: str
    template: dict[str, Any]
    parameters: dict[str, str]
    physical_ids: dict[str, str]
    # (logical id, attribute) -> value, for attributes that only the service knows
    # (a load balancer's DNSName); the test looks them up with the service's own client.
    service_attribute: Callable[[str, str, str], str]


def parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """Parameters as CloudFormation sees them: the given value, else the default."""
    values = {}
    for name, declared in (template.get("Parameters") or {}).items():
        value = given.get(name, declared.get("Default"))
        if value is None:
            raise AssertionError(f"parameter {name} has no value and no default")
        values[name] = _as_text(value)
    return values


def _as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class Resolver:
    """Works out a template value for a deployed stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.parameters = parameter_values(stack.template, stack.parameters)

    def condition(self, name: str | None) -> bool:
        if name is None:
            return True
        return self._truth(self.stack.template["Conditions"][name])

    def _truth(self, expression: Any) -> bool:
        (function, argument), *_ = expression.items()
        if function != "Fn::Equals":
            raise NotImplementedError(f"condition function {function}")
        left, right = (_as_text(self.value(item)) for item in argument)
        return left == right

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, argument), *_ = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, argument)
        return {key: self.value(item) for key, item in node.items()}

    def _intrinsic(self, function: str, argument: Any) -> Any:
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = self.value(argument)
            return self.get_att(logical_id, attribute)
        if function == "Fn::Sub":
            return self._sub(argument)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(_as_text(item) for item in self.value(items))
        raise NotImplementedError(f"intrinsic {function}")

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.stack.region,
            "AWS::AccountId": self.stack.account,
            "AWS::StackName": self.stack.name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.stack.physical_ids[name]

    def get_att(self, logical_id: str, attribute: str) -> str:
        """A name-like attribute is the resource's own (resolved) property of that name,
        as the registry schemas define App Mesh's ``*Name`` and Cloud Map's ``Name``;
        anything else is asked of the service that holds the resource."""
        properties = self.stack.template["Resources"][logical_id].get("Properties", {})
        if attribute in properties:
            return self.value(properties[attribute])
        physical = self.stack.physical_ids[logical_id]
        return self.stack.service_attribute(logical_id, physical, attribute)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {name: self.value(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _as_text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)
