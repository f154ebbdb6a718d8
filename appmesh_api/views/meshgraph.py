"""A mesh as a graph for the console: columns of boxes, gateways on the left, nodes on the
right, with route weights on the edges.

It is laid out from the resource tree (``meshtree``), so the graph and the CLI's tree agree:
a resource is placed where traffic first reaches it, in its kind's column, on the first free
row at or below its parent's (children stay beside their parents and edges rarely cross).
Gateway routes become the labels of gateway → service edges; a node's backends become dashed
edges back to the services it calls.
"""

from __future__ import annotations

from typing import Any

from appmesh_api.views.meshtree import TreeNode

COLUMNS = {"gateway": 0, "service": 1, "router": 2, "route": 3, "node": 4}
COLUMN_TITLES = ["gateways · clients", "virtual services", "routers", "routes", "virtual nodes"]


def node_id(tree: TreeNode) -> str:
    if tree["kind"] == "route":
        return f"route:{tree['facts'].get('router')}/{tree['name']}"
    return f"{tree['kind']}:{tree['name']}"


def _subtitle(tree: TreeNode) -> str:
    facts = tree["facts"]
    if tree["kind"] == "node":
        for word in (facts.get("discovery"), facts.get("listeners")):
            if word and word != "none":
                return word
        return "no listeners: calls out only"
    if tree["kind"] == "route":
        return facts.get("match") or ""
    return facts.get("listeners") or facts.get("provider") or ""


class GraphBuilder:
    """Collects boxes and edges while walking the tree."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, Any]] = []
        self.next_row = [0] * len(COLUMNS)

    def place(self, tree: TreeNode, at_least: int) -> dict[str, Any]:
        """The box for a resource, created on first sight."""
        found = self.nodes.get(node_id(tree))
        if found is not None:
            return found
        column = COLUMNS[tree["kind"]]
        if at_least < 0:  # a node nothing routes to: a client of the mesh, drawn with gateways
            column, at_least = 0, 0
        row = max(self.next_row[column], at_least)
        self.next_row[column] = row + 1
        box = {
            "id": node_id(tree),
            "kind": tree["kind"],
            "name": tree["name"],
            "subtitle": _subtitle(tree),
            "column": column,
            "row": row,
            "missing": bool(tree["facts"].get("missing")),
            "facts": tree["facts"],
        }
        self.nodes[box["id"]] = box
        return box

    def edge(self, source: str, target: str, kind: str, label: str, **extra: Any) -> None:
        self.edges.append({"from": source, "to": target, "kind": kind, "label": label, **extra})

    def walk(self, tree: TreeNode, parent: dict[str, Any] | None, label: str = "") -> None:
        if tree["kind"] == "gatewayRoute":  # an edge label, not a box
            for child in tree["children"]:
                self.walk(child, parent, f"{tree['name']}\n{tree['facts'].get('match')}")
            return
        client = parent is None and tree["kind"] == "node" and tree["facts"].get("backends")
        box = self.place(tree, parent["row"] if parent else (-1 if client else 0))
        if parent is not None:
            self._link(parent, box, tree, label)
        if not tree["ref"]:
            for child in tree["children"]:
                self.walk(child, box)

    def _link(self, parent: dict[str, Any], box: dict[str, Any], tree: TreeNode, label: str):
        facts = tree["facts"]
        if parent["kind"] == "gateway":
            self.edge(parent["id"], box["id"], "gatewayRoute", label)
        elif parent["kind"] == "route":
            weight, percent = facts.get("weight"), facts.get("percent")
            text = f"{percent}%\nweight {weight}"
            self.edge(parent["id"], box["id"], "weight", text, weight=weight, percent=percent)
        else:
            self.edge(
                parent["id"], box["id"], "provider" if parent["kind"] == "service" else "", ""
            )

    def backends(self) -> None:
        """Dashed edges from each node to the services it may call."""
        for box in list(self.nodes.values()):
            for service in box["facts"].get("backends") or ():
                target = f"service:{service}"
                if target not in self.nodes:
                    missing = {"kind": "service", "name": service, "facts": {"missing": True}}
                    self.place({**missing, "children": [], "ref": False}, 0)
                self.edge(box["id"], target, "backend", "backend")


def mesh_graph(tree: TreeNode) -> dict[str, Any]:
    """``{"nodes", "edges", "columns"}`` for the console's SVG drawing."""
    builder = GraphBuilder()
    for child in tree["children"]:
        builder.walk(child, None)
    builder.backends()
    return {"nodes": list(builder.nodes.values()), "edges": builder.edges, "columns": COLUMN_TITLES}
