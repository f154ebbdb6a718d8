"""The dependency closure is sound: a change outside a proxy's closure never changes its
translation. Checked on random meshes by replacing one resource at a time with the same
resource from another random mesh, so every kind of change is tried."""

import dataclasses
import random

import pytest

from envoy_bootstrap.dependencies import changed, closure, reach_all_closure, reaches_all
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import ResourceNotFound, translate

from .mesh_factory import Mesh, http_route, listener
from .random_meshes import GATEWAYS, NODES, random_snapshot

PROXIES = [("virtualNode", n) for n in NODES] + [("virtualGateway", g) for g in GATEWAYS]
FIELDS = (
    "mesh",
    "virtual_nodes",
    "virtual_routers",
    "routes",
    "virtual_services",
    "virtual_gateways",
    "gateway_routes",
    "registered_endpoints",
    "certificates",
)


def _translated(snapshot: MeshSnapshot, kind: str, name: str):
    try:
        return translate(snapshot, NodeIdentity(kind, name))  # type: ignore[arg-type]
    except (ResourceNotFound, KeyError, ValueError) as exc:
        return type(exc)


def _full_closure(snapshot: MeshSnapshot, kind: str, name: str):
    found = closure(snapshot, kind, name)
    return found | reach_all_closure(snapshot) if reaches_all(snapshot, kind, name) else found


def _one_change(old: MeshSnapshot, other: MeshSnapshot, rng: random.Random) -> MeshSnapshot:
    field = rng.choice(FIELDS)
    if field == "mesh":
        return dataclasses.replace(old, mesh=other.mesh)
    before, donor = dict(getattr(old, field)), getattr(other, field)
    name = rng.choice(sorted(before.keys() | donor.keys()) or ["x"])
    if name in donor:
        before[name] = donor[name]
    else:
        before.pop(name, None)
    return dataclasses.replace(old, **{field: before})


@pytest.mark.parametrize("seed", range(60))
def test_a_change_outside_the_closure_leaves_the_translation_alone(seed):
    rng = random.Random(seed)
    old = random_snapshot(seed)
    for step in range(6):
        new = _one_change(old, random_snapshot(10_000 + seed * 10 + step), rng)
        moved = changed(old, new)
        for kind, name in PROXIES:
            if _full_closure(old, kind, name) & moved:
                continue
            assert _translated(old, kind, name) == _translated(new, kind, name), (kind, name, moved)
        old = new


def _two_services(weight: int) -> MeshSnapshot:
    return (
        Mesh()
        .node("a", listener(80))
        .node("b", listener(80))
        .node("client-a", backends=["a.local"])
        .node("client-b", backends=["b.local"])
        .router("ra", 80)
        .route("ra", "r", http_route(None, ("a", weight)))
        .service("a.local", router="ra")
        .service("b.local", node="b")
        .build()
    )


def test_a_route_change_reaches_only_the_nodes_behind_its_service():
    old, new = _two_services(1), _two_services(2)
    moved = changed(old, new)
    assert moved == {("virtualRouter", "ra")}
    assert moved & closure(old, "virtualNode", "client-a")
    assert not moved & closure(old, "virtualNode", "client-b")
    assert not moved & closure(old, "virtualNode", "a")
