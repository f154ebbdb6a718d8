"""A mesh as the tree traffic follows: gateways → gateway routes → services → routers →
routes → nodes.

Each resource appears once, where traffic first reaches it; a later mention is a reference
(``"ref": true``, drawn as "shown above"), so a node behind two routes is not described
twice. What no gateway reaches comes after the gateways: services, then nodes nobody routes
to (often the mesh's clients, like colorapp's gateway node).

Tree nodes are plain JSON (``kind``, ``name``, ``label``, ``details``, ``children``,
``facts``, ``ref``): ``--json`` prints them, ``tree`` draws them, ``meshgraph`` lays them out.
"""

from __future__ import annotations

from typing import Any

from appmesh_api.views import specs
from appmesh_api.views.resources import Data, MeshResources

TreeNode = dict[str, Any]


def _node(kind: str, name: str, label: str, **extra: Any) -> TreeNode:
    return {
        "kind": kind,
        "name": name,
        "label": label,
        "details": extra.pop("details", []),
        "children": extra.pop("children", []),
        "facts": extra.pop("facts", {}),
        "ref": extra.pop("ref", False),
    }


class TreeBuilder:
    """Walks a mesh from its gateways, remembering what it has already described."""

    def __init__(self, found: MeshResources) -> None:
        self.found = found
        self.shown: set[tuple[str, str]] = set()
        self.services = {s["virtualServiceName"]: s for s in found.services}
        self.routers = {r["virtualRouterName"]: r for r in found.routers}
        self.nodes = {n["virtualNodeName"]: n for n in found.nodes}

    def first_time(self, kind: str, name: str) -> bool:
        if (kind, name) in self.shown:
            return False
        self.shown.add((kind, name))
        return True

    def mesh(self) -> TreeNode:
        found = self.found
        spec = found.mesh.get("spec") or {}
        region = found.mesh["metadata"]["arn"].split(":")[3]
        facts = {"owner": found.owner, "region": region, "egress": specs.egress(spec)}
        children = [self.gateway(gateway) for gateway in found.gateways]
        children += [
            self.service(name) for name in self.services if ("service", name) not in self.shown
        ]
        children += [self.node(name) for name in self.nodes if ("node", name) not in self.shown]
        label = f"mesh {found.name}  owner {found.owner} · {region} · egress {facts['egress']}"
        return _node("mesh", found.name, label, children=children, facts=facts)

    def gateway(self, gateway: Data) -> TreeNode:
        name = gateway["virtualGatewayName"]
        self.first_time("gateway", name)
        listeners = specs.listeners(gateway.get("spec") or {})
        routes = [self.gateway_route(r) for r in self.found.gateway_routes.get(name, [])]
        label = f"gateway {name}  listeners {listeners}"
        return _node("gateway", name, label, children=routes, facts={"listeners": listeners})

    def gateway_route(self, route: Data) -> TreeNode:
        spec = route.get("spec") or {}
        name, target = route["gatewayRouteName"], specs.gateway_target(spec)
        match = specs.route_summary(spec)
        label = f"gateway route {name}  {match} → service {target}"
        children = [self.service(target)] if target else []
        facts = {"match": match, "target": target, "gateway": route["virtualGatewayName"]}
        return _node("gatewayRoute", name, label, children=children, facts=facts)

    def service(self, name: str) -> TreeNode:
        service = self.services.get(name)
        if service is None:
            return _node(
                "service", name, f"service {name} (not created yet)", facts={"missing": True}
            )
        if not self.first_time("service", name):
            return _node("service", name, f"service {name} (shown above)", ref=True)
        provider = specs.provider(service.get("spec") or {})
        if provider is None:
            return _node("service", name, f"service {name} (no provider)")
        kind, target = provider
        child = self.router(target) if kind == "router" else self.node(target)
        return _node(
            "service",
            name,
            f"service {name} → {kind} {target}",
            children=[child],
            facts={"provider": f"{kind} {target}"},
        )

    def router(self, name: str) -> TreeNode:
        router = self.routers.get(name)
        if router is None:
            return _node("router", name, f"router {name} (missing)", facts={"missing": True})
        if not self.first_time("router", name):
            return _node("router", name, f"router {name} (shown above)", ref=True)
        listeners = specs.listeners(router.get("spec") or {})
        routes = [self.route(r) for r in self.found.routes.get(name, [])]
        label = f"router {name}  listeners {listeners}"
        return _node("router", name, label, children=routes, facts={"listeners": listeners})

    def route(self, route: Data) -> TreeNode:
        spec = route.get("spec") or {}
        name, match = route["routeName"], specs.route_summary(spec)
        targets = []
        for target in specs.weighted_targets(spec):
            share = f"{target['percent']}% (weight {target['weight']}) → "
            targets.append(self.node(target["node"], share, target))
        facts = {"match": match, "router": route["virtualRouterName"]}
        return _node("route", name, f"route {name}  {match}", children=targets, facts=facts)

    def node(self, name: str, share: str = "", weight: dict | None = None) -> TreeNode:
        facts: dict[str, Any] = dict(weight or {})
        node = self.nodes.get(name)
        if node is None:
            facts["missing"] = True
            return _node("node", name, f"{share}node {name} (missing)", facts=facts)
        if not self.first_time("node", name):
            return _node("node", name, f"{share}node {name} (shown above)", ref=True, facts=facts)
        spec = node.get("spec") or {}
        backends = specs.backends(spec)
        facts |= {
            "listeners": specs.listeners(spec),
            "discovery": specs.discovery(spec),
            "backends": backends,
        }
        details = [f"listeners {facts['listeners']} · discovery {facts['discovery']}"]
        if backends:
            details.append("backends " + ", ".join(backends))
        return _node("node", name, f"{share}node {name}", details=details, facts=facts)


def mesh_tree(found: MeshResources) -> TreeNode:
    """The whole mesh as one tree, rooted at the mesh."""
    return TreeBuilder(found).mesh()
