"""What one proxy's config is made of, and what changed between two snapshots.

A proxy's translation reads only a closure of the mesh: the mesh itself, its own node
or gateway (with its gateway routes), the virtual services it reaches, their providers
(a node, or a router with its routes), the nodes those routes target with their
registered endpoints, and the certificates its own spec names. That closure is a
function of the contents of the resources in it, so if none of them changed between two
snapshots, neither did the closure nor the translation. The control plane uses this to
translate and push only the proxies a change reaches (``appmesh_api.dependency_index``).

A node under ALLOW_ALL that declares no backends reaches every virtual service; its
closure is the whole mesh's service graph, shared by all such nodes, so it is computed
once (``reach_all_closure``) rather than per node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from envoy_bootstrap.snapshot import MeshSnapshot, Spec

#: ``(kind, name)``: ``virtualNode``, ``virtualGateway`` (with its gateway routes),
#: ``virtualService``, ``virtualRouter`` (with its routes), ``endpoints`` (a node's
#: registered addresses), ``certificate`` (an ARN's material), and two singletons.
Dependency = tuple[str, str]
MESH: Dependency = ("mesh", "")
#: The set of virtual service names, which an ALLOW_ALL node without backends reaches.
SERVICE_NAMES: Dependency = ("services", "")


def reaches_all(snapshot: MeshSnapshot, kind: str, name: str) -> bool:
    """A virtual node that reaches every service of the mesh (ALLOW_ALL, no backends)."""
    if kind != "virtualNode" or snapshot.egress_filter != "ALLOW_ALL":
        return False
    return not _backend_names(snapshot.node_spec(name))


def closure(snapshot: MeshSnapshot, kind: str, name: str) -> frozenset[Dependency]:
    """The resources the translation of ``kind``/``name`` reads, except, for a node that
    reaches all services, the shared service graph (see ``reach_all_closure``)."""
    found: set[Dependency] = {MESH, (kind, name)}
    if kind == "virtualGateway":
        spec = snapshot.gateway_spec(name)
        services = {_gateway_target(s) for _, s in snapshot.gateway_route_specs(name)}
    else:
        spec = snapshot.node_spec(name)
        services = set() if reaches_all(snapshot, kind, name) else _backend_names(spec)
    found |= {("certificate", arn) for arn in _arns(spec)}
    for service in services:
        found |= _service_closure(snapshot, service)
    return frozenset(found)


def reach_all_closure(snapshot: MeshSnapshot) -> frozenset[Dependency]:
    """The service graph an ALLOW_ALL node without backends reads: every service."""
    found: set[Dependency] = {SERVICE_NAMES}
    for service in snapshot.virtual_services:
        found |= _service_closure(snapshot, service)
    return frozenset(found)


def changed(old: MeshSnapshot, new: MeshSnapshot) -> set[Dependency]:
    """Every dependency whose content differs between two snapshots of one mesh.

    Records are replaced, never mutated, so an identical object means unchanged; equal
    contents (a store that rebuilds records on read) count as unchanged too.
    """
    found: set[Dependency] = set()
    if not _same(old.mesh, new.mesh):
        found.add(MESH)
    pairs: tuple[tuple[str, Mapping[str, Any], Mapping[str, Any]], ...] = (
        ("virtualNode", old.virtual_nodes, new.virtual_nodes),
        ("virtualService", old.virtual_services, new.virtual_services),
        ("virtualRouter", old.virtual_routers, new.virtual_routers),
        ("virtualRouter", old.routes, new.routes),
        ("virtualGateway", old.virtual_gateways, new.virtual_gateways),
        ("virtualGateway", old.gateway_routes, new.gateway_routes),
        ("endpoints", old.registered_endpoints, new.registered_endpoints),
        ("certificate", old.certificates, new.certificates),
    )
    for kind, before, after in pairs:
        found |= {(kind, name) for name in _differing(before, after)}
    if old.virtual_services.keys() != new.virtual_services.keys():
        found.add(SERVICE_NAMES)
    return found


def _service_closure(snapshot: MeshSnapshot, service: str) -> set[Dependency]:
    """A service, its provider as named (live or not), and what the provider sends to."""
    found: set[Dependency] = {("virtualService", service)}
    provider = snapshot.service_spec(service).get("provider") or {}
    node = (provider.get("virtualNode") or {}).get("virtualNodeName")
    if node:
        found |= {("virtualNode", node), ("endpoints", node)}
    router = (provider.get("virtualRouter") or {}).get("virtualRouterName")
    if router:
        found.add(("virtualRouter", router))
        for _, spec in snapshot.router_routes(router):
            for target in _route_targets(spec):
                found |= {("virtualNode", target), ("endpoints", target)}
    return found


def _route_targets(spec: Spec) -> Iterator[str]:
    for body in spec.values():
        if isinstance(body, Mapping):
            for weighted in (body.get("action") or {}).get("weightedTargets") or ():
                yield str(weighted.get("virtualNode", ""))


def _backend_names(spec: Spec) -> set[str]:
    names = set()
    for backend in spec.get("backends") or ():
        name = (backend.get("virtualService") or {}).get("virtualServiceName")
        if name:
            names.add(str(name))
    return names


def _gateway_target(spec: Spec) -> str:
    for body in spec.values():
        if isinstance(body, Mapping):
            target = (body.get("action") or {}).get("target") or {}
            return str((target.get("virtualService") or {}).get("virtualServiceName", ""))
    return ""


def _arns(value: Any) -> Iterator[str]:
    """Every ARN string anywhere in a spec (ACM certificates, ACM PCA authorities)."""
    if isinstance(value, str):
        if value.startswith("arn:"):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _arns(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _arns(item)


def _differing(before: Mapping[str, Any], after: Mapping[str, Any]) -> Iterator[str]:
    for name in before.keys() | after.keys():
        if not _same(before.get(name), after.get(name)):
            yield name


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b
