"""Template text to a template dict, parsed once per text.

moto 5.2 parses a template's text with PyYAML's pure-Python loader every time it needs
the template: ``aws cloudformation deploy`` of an update has the same text parsed five
times or more (GetTemplateSummary twice, CreateChangeSet for the stack and again for the
change set, ExecuteChangeSet), each a quarter of a second for a 1,000-line walkthrough
template (howto-metrics-extension-ecs), so the update took seconds of parsing alone.
Here the text is parsed with libyaml when PyYAML has it (the same constructors, so the
same dict), the result is kept for the texts seen last, and every caller gets its own
deep copy, since moto's engine writes into the dict it is given. The YAML short forms
(``!Ref``, ``!GetAtt``, ``!Sub`` ...) become their long forms with moto's own
constructor; text that is not YAML is read as JSON, as moto does.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import yaml
from moto.cloudformation.utils import yaml_tag_constructor
from yaml.parser import ParserError
from yaml.scanner import ScannerError

_Base: type = getattr(yaml, "CLoader", yaml.Loader)


class _TemplateLoader(_Base):  # libyaml when PyYAML was built with it
    """moto's loader (the full constructor, short-form tags) on libyaml's parser."""


_TemplateLoader.add_multi_constructor("", yaml_tag_constructor)


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_TemplateLoader)  # the full loader, as moto uses
    except (ParserError, ScannerError):
        return json.loads(text)


def parse_template(text: str) -> Any:
    """The template ``text`` declares, as moto's ``Stack.parse_template`` returns it."""
    return copy.deepcopy(_parsed(text))


def parse_change_set_template(change_set: Any) -> None:
    """``ChangeSet._parse_template``: the same parse, for the change set's template."""
    change_set.template_dict = parse_template(change_set.template)
