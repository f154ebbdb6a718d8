"""docs/compatibility.md keeps up with the code's ``UNCONFIRMED`` choices.

The page lists every choice made where App Mesh's behaviour was never documented. A new
``UNCONFIRMED`` marker in a module the page does not name is a choice users cannot find,
so this fails until the page names it, in the section of its package.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "compatibility.md"
MARKERS = re.compile(r"UNCONFIRMED|not documented|unconfirmed")
# Section of the page, by the package directory a module lives in (longest first).
SECTIONS = {
    "appmesh_api/cloudformation": "CloudFormation",
    "appmesh_api/xray": "X-Ray",
    "appmesh_api/kube": "Kubernetes manifests",
    "appmesh_api": "The App Mesh API",
    "envoy_bootstrap": "The Envoy translation",
    "proxy": "The sidecar",
}
# Modules whose marker explains the convention rather than making a choice.
CONVENTION_ONLY = {"appmesh_api/rules/__init__.py"}


def page_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    title = ""
    for line in PAGE.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:]
            sections[title] = ""
        elif title:
            sections[title] += line + "\n"
    return sections


def marked_modules() -> list[Path]:
    found = []
    for package in ("appmesh_api", "awssigv4", "envoy_bootstrap", "proxy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in CONVENTION_ONLY and MARKERS.search(path.read_text()):
                found.append(path)
    return found


def test_every_module_with_an_unconfirmed_choice_is_on_the_page():
    sections = page_sections()
    missing = []
    for path in marked_modules():
        relative = path.relative_to(ROOT).as_posix()
        package = next(p for p in SECTIONS if relative.startswith(p + "/"))
        title = next(t for t in sections if t.startswith(SECTIONS[package]))
        local = relative[len(package) + 1 :]
        if f"`{local}`" not in sections[title]:
            missing.append(f"{relative} (expected `{local}` under '{title}')")
    assert marked_modules(), "no UNCONFIRMED markers found: has the convention changed?"
    assert not missing, "docs/compatibility.md does not list:\n" + "\n".join(missing)
