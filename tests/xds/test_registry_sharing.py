"""The proxy registry merges the other replicas' registrations, with the same TTL."""

from __future__ import annotations

import json
import time

from appmesh_api.proxies import ProxyRegistry
from appmesh_api.store import MeshKey

MESH = MeshKey("us-east-1", "123456789012", "m")


def row(replica: str, node: str, address: tuple[str, int], seen_ago: float) -> tuple:
    now = time.time()
    state = {"mesh": list(MESH), "kind": "virtualNode", "name": node}
    state |= {"first_seen": now - seen_ago - 1, "last_seen": now - seen_ago}
    return replica, f"mesh/m/virtualNode/{node}", json.dumps(address), json.dumps(state)


def test_other_replicas_proxies_are_endpoints_until_their_ttl():
    registry = ProxyRegistry(ttl=90)
    changed = registry.merge([row("r1", "blue", ("10.0.0.1", 15000), 5)])
    assert changed == {MESH}
    assert registry.endpoints(MESH) == {"blue": (("10.0.0.1", 15000),)}
    assert registry.count_for(MESH, "virtualNode", "blue") == 1
    # A heartbeat that changes nothing but last_seen pushes nothing.
    assert registry.merge([row("r1", "blue", ("10.0.0.1", 15000), 1)]) == set()
    # Its replica died: the row's last_seen ages past the TTL and the endpoint goes.
    assert registry.merge([row("r1", "blue", ("10.0.0.1", 15000), 91)]) == {MESH}
    assert registry.endpoints(MESH) == {}


def test_a_proxy_that_moved_here_counts_once_and_stays_when_its_old_row_goes():
    registry = ProxyRegistry(ttl=90)
    registry.merge([row("r1", "blue", ("10.0.0.1", 15000), 5)])
    registry.seen("mesh/m/virtualNode/blue", MESH, "virtualNode", "blue", ("10.0.0.1", 15000))
    assert registry.count_for(MESH, "virtualNode", "blue") == 1
    (state,) = registry.all()
    assert state.replica is None
    assert registry.merge([]) == set()
    assert registry.endpoints(MESH) == {"blue": (("10.0.0.1", 15000),)}


def test_expire_drops_stale_remote_proxies_when_the_table_cannot_be_read():
    registry = ProxyRegistry(ttl=0.05)
    registry.merge([row("r1", "blue", ("10.0.0.1", 15000), 0)])
    time.sleep(0.1)
    assert registry.expire() == {MESH}
    assert registry.all() == []
