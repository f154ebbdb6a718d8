"""The fenced ```bash and ```python blocks of a Markdown file, as a reader sees them.

A block that must not run in a test (it starts something that runs until Ctrl-C,
installs packages, or needs root) says so on the line right before its fence:

    <!-- snippet: skip (runs the server until Ctrl-C) -->

The reason is required, so a skipped block always says why a reader may trust it
without the test having run it. ```console (and any other language) is a transcript
to read, never run. ``sh``, ``shell`` and ``py`` fences are refused: they would
silently escape the test, so the docs spell runnable blocks ``bash`` or ``python``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = ("bash", "python")
AMBIGUOUS = ("sh", "shell", "py", "python3", "zsh")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip(?:\s*\((.*)\))?$")


@dataclass(frozen=True)
class Snippet:
    """One runnable block: where it is, its language, its text, and why it is skipped."""

    path: Path
    line: int  # the fence's line number, 1-based
    language: str
    text: str
    skip_reason: str | None

    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclass
class Extracted:
    snippets: list[Snippet]
    problems: list[str]  # markers without a reason, stray markers, ambiguous fences


def extract(path: Path) -> Extracted:
    """Every bash and python block of ``path`` in order, and what is wrong with the markup."""
    lines = path.read_text().splitlines()
    snippets: list[Snippet] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        marker = _marker(path, lines, index, problems)
        if not opened:
            if marker is not None:
                problems.append(f"{path.name}:{index}: a snippet marker not followed by a fence")
            index += 1
            continue
        end = _closing_fence(path, lines, index)
        language = opened.group(1)
        if language in AMBIGUOUS:
            problems.append(f"{path.name}:{index + 1}: fence ```{language}: use bash or python")
        if language in RUNNABLE:
            text = "\n".join(lines[index + 1 : end]) + "\n"
            snippets.append(Snippet(path, index + 1, language, text, marker))
        index = end + 1
    return Extracted(snippets, problems)


def _marker(path: Path, lines: list[str], index: int, problems: list[str]) -> str | None:
    """The skip reason on the line before ``index``; a marker without one is a problem."""
    if index == 0:
        return None
    found = MARKER.match(lines[index - 1].strip())
    if not found:
        return None
    skip = SKIP.match(found.group(1))
    reason = (skip.group(1) or "").strip() if skip else ""
    if not reason:
        problems.append(
            f"{path.name}:{index}: {lines[index - 1].strip()!r} must read "
            "'<!-- snippet: skip (why this block is not run) -->'"
        )
        return "(no reason given)"
    return reason


def _closing_fence(path: Path, lines: list[str], start: int) -> int:
    for index in range(start + 1, len(lines)):
        if lines[index].strip() == "```":
            return index
    raise ValueError(f"{path.name}:{start + 1}: this fence is never closed")
