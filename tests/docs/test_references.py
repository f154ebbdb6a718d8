"""What README.md and docs/*.md name exists in the code: modules, variables, options.

The snippet test runs the commands; this catches the prose drifting: a module that
moved, an environment variable nobody reads, an option ``appmesh-local`` never had.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from appmesh_api.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appmesh_api", "awssigv4", "envoy_bootstrap", "proxy")
MODULE = re.compile(r"`([\w./-]+\.py)`")
# The families of variables the docs name that appmesh-local itself reads (botocore's
# AWS_* variables are botocore's business and are left out).
VARIABLE = re.compile(r"\b(?:APPMESH|ENVOY|XRAY|STATSD|ENABLE|LISTENER)_[A-Z0-9_]*[A-Z0-9]\b")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def source_text() -> str:
    return "\n".join(
        path.read_text() for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    )


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its subcommands, all the way down."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(option for option in action.option_strings if option.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= parser_options(sub)
    return found


def test_every_module_named_exists():
    files = [path.relative_to(ROOT).as_posix() for path in ROOT.rglob("*.py")]
    missing = sorted(
        f"{page.name}: {name}"
        for page in pages()
        for name in set(MODULE.findall(page.read_text()))
        if not any(file == name or file.endswith("/" + name) for file in files)
    )
    assert not missing, "modules the docs name but the repository lacks:\n" + "\n".join(missing)


def test_every_variable_named_is_read_by_the_code():
    source = source_text()
    missing = sorted(
        f"{page.name}: {name}"
        for page in pages()
        for name in set(VARIABLE.findall(page.read_text()))
        if name not in source
    )
    assert not missing, "variables the docs name but no code reads:\n" + "\n".join(missing)


def test_every_option_in_the_configuration_page_exists():
    known = parser_options(build_parser()) | {"--help"}
    named = set(OPTION.findall((ROOT / "docs" / "configuration.md").read_text()))
    assert named, "docs/configuration.md names no options: has it moved?"
    assert named <= known, f"options appmesh-local does not have: {sorted(named - known)}"
