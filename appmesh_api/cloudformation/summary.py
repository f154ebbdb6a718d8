"""``GetTemplateSummary`` of templates without ``AWSTemplateFormatVersion``.

The version line is optional, and many templates (the App Mesh walkthroughs among them)
leave it out; moto 5.2 reads ``template["AWSTemplateFormatVersion"]`` and answers a 500.
``aws cloudformation deploy`` calls GetTemplateSummary before every update of a stack.
"""

from __future__ import annotations

import json
from typing import Any

from moto.cloudformation import responses
from moto.cloudformation.models import Stack

_moto_summary = responses.get_template_summary_response_from_template


def get_template_summary_response_from_template(template_body: str) -> dict[str, Any]:
    template = Stack.parse_template(template_body)
    if isinstance(template, dict) and "AWSTemplateFormatVersion" not in template:
        template["AWSTemplateFormatVersion"] = "2010-09-09"
        template_body = json.dumps(template, default=str)
    return _moto_summary(template_body)
