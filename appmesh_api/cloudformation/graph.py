"""The order CloudFormation works in: references and ``DependsOn`` first.

A resource depends on every resource it names with ``Ref``, ``Fn::GetAtt`` or a
``${Name}``/``${Name.Attr}`` in ``Fn::Sub``, and on its ``DependsOn`` list. Creation walks
that graph forwards, deletion backwards. Among resources that are ready at the same time,
App Mesh's own order breaks the tie (mesh, then what routes point at, then routes, then
virtual services that name a provider, then gateway routes), so templates that name
resources by literal strings, as many App Mesh examples do, still create in an order App
Mesh accepts; otherwise template order is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9_:]+)(?:\.[A-Za-z0-9_.]+)?\}")

_APPMESH_RANK = {
    "AWS::AppMesh::Mesh": 0,
    "AWS::AppMesh::VirtualNode": 1,
    "AWS::AppMesh::VirtualRouter": 1,
    "AWS::AppMesh::VirtualGateway": 1,
    "AWS::AppMesh::Route": 2,
    "AWS::AppMesh::VirtualService": 3,
    "AWS::AppMesh::GatewayRoute": 4,
}


def _names(node: Any) -> Iterator[str]:
    """Every logical name a template fragment refers to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                yield str(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                if isinstance(text, str):
                    yield from _SUB_NAME.findall(text)
                if isinstance(value, list) and len(value) > 1:
                    yield from _names(value[1])
            else:
                yield from _names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _names(item)


def dependencies(resources: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each resource's direct dependencies among ``resources``."""
    graph: dict[str, set[str]] = {}
    for name, body in resources.items():
        depends = body.get("DependsOn") or []
        explicit = [depends] if isinstance(depends, str) else list(depends)
        found = set(_names(body.get("Properties") or {})) | set(explicit)
        graph[name] = {other for other in found if other in resources and other != name}
    return graph


def creation_order(resources: Mapping[str, Any]) -> list[str]:
    """Logical ids, each after everything it depends on (a cycle raises ValueError)."""
    graph = dependencies(resources)
    position = {name: index for index, name in enumerate(resources)}

    def rank(name: str) -> tuple[int, int]:
        return _APPMESH_RANK.get(resources[name].get("Type", ""), 0), position[name]

    done: list[str] = []
    waiting = dict(graph)
    while waiting:
        ready = [name for name, needs in waiting.items() if not needs - set(done)]
        if not ready:
            raise ValueError(f"Circular dependency between resources: {sorted(waiting)}")
        first = min(ready, key=rank)
        done.append(first)
        del waiting[first]
    return done
