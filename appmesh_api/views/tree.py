"""Draw a tree in a terminal with ``├─ └─ │``, like ``tree(1)``.

Each node has a ``label`` line, optional ``details`` lines printed under it (kept inside the
node's own branch, so they read as part of it) and ``children``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BRANCH, LAST, PIPE, SPACE = "├─ ", "└─ ", "│  ", "   "


def draw(root: dict[str, Any]) -> str:
    """The whole tree as text, one line per label or detail."""
    return "\n".join(_lines(root, "", ""))


def _lines(node: dict[str, Any], lead: str, inner: str) -> Iterator[str]:
    """``lead`` precedes the label; ``inner`` is the prefix of everything under it."""
    yield f"{lead}{node['label']}"
    children = node.get("children") or []
    below = inner + (PIPE if children else SPACE)
    for detail in node.get("details") or ():
        yield f"{below}{detail}"
    for index, child in enumerate(children):
        last = index == len(children) - 1
        connector, continuation = (LAST, SPACE) if last else (BRANCH, PIPE)
        yield from _lines(child, inner + connector, inner + continuation)
