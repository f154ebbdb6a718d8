"""``GetTemplateSummary``, from the template parsed once (``template_text``).

moto 5.2 reads ``template["AWSTemplateFormatVersion"]``, which is optional and which many
templates (the App Mesh walkthroughs among them) leave out: a 500, and ``aws
cloudformation deploy`` calls GetTemplateSummary before every update of a stack. It also
parses the text again with the pure-Python YAML loader. Here the summary is built from the
shared parse, with the version defaulting to the only one there is.
"""

from __future__ import annotations

from typing import Any

from appmesh_api.cloudformation.template_text import parse_template


def get_template_summary_response_from_template(template_body: str) -> dict[str, Any]:
    """The fields GetTemplateSummary answers, on top of the template's own (Description,
    Metadata...), as moto's response serializer expects them."""
    summary = parse_template(template_body)
    summary["ResourceTypes"] = [
        resource["Type"] for resource in (summary.get("Resources") or {}).values()
    ]
    summary["Version"] = summary.get("AWSTemplateFormatVersion", "2010-09-09")
    summary["Parameters"] = [
        _parameter(name, declared) for name, declared in (summary.get("Parameters") or {}).items()
    ]
    return summary


def _parameter(name: str, declared: dict[str, Any]) -> dict[str, Any]:
    constraints = {}
    if "AllowedValues" in declared:
        constraints["AllowedValues"] = declared["AllowedValues"]
    return {
        "ParameterKey": name,
        "Description": declared.get("Description", ""),
        "DefaultValue": declared.get("Default"),
        "NoEcho": declared.get("NoEcho", False),
        "ParameterType": declared.get("Type", "String"),
        "ParameterConstraints": constraints,
    }
