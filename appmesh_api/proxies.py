"""Which proxies are connected, where their ingress listens, and what they accepted.

A proxy registers simply by asking for configuration: its DiscoveryRequest's node
metadata says where its ingress can be reached (``appmesh_local.ingress_address``).
A virtual node's endpoints are the ingress addresses of its connected proxies, so
node A's proxy reaches node B through B's proxy. A proxy that stops asking is
forgotten after ``ttl`` seconds, and its node's endpoints change then.

With replicas on a shared store (``appmesh_api.dynamo``), each replica also holds the
registrations the others saved (``merge``): their proxies count for endpoints, the
per-node quota and ``/_appmesh/proxies``, with the same ``ttl`` from the ``last_seen``
their replica last saved, so a replica that dies takes its proxies' endpoints with it
only once they have not reconnected elsewhere within ``ttl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from appmesh_api.store import MeshKey


def _saved(state: ProxyState) -> dict:
    return {
        "mesh": list(state.mesh),
        "kind": state.kind,
        "name": state.name,
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
    }


ProxyKey = tuple[str, tuple[str, int] | None]

#: App Mesh's "Connected Envoys per virtual node / gateway" quota.
MAX_PROXIES_PER_RESOURCE = 50


@dataclass
class ProxyState:
    """What the control plane knows about one connected proxy."""

    node_id: str
    mesh: MeshKey
    kind: str
    name: str
    ingress_address: tuple[str, int] | None
    first_seen: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    acked: dict[str, str] = field(default_factory=dict)  # type_url -> last accepted version
    rejected: dict[str, dict] = field(default_factory=dict)  # type_url -> {version, message}
    replica: str | None = None  # the other replica it is connected to (None: this one)

    def as_json(self) -> dict:
        return {
            "nodeId": self.node_id,
            "meshName": self.mesh.mesh,
            "meshOwner": self.mesh.mesh_owner,
            "region": self.mesh.region,
            "resourceKind": self.kind,
            "resourceName": self.name,
            "ingressAddress": None
            if self.ingress_address is None
            else f"{self.ingress_address[0]}:{self.ingress_address[1]}",
            "connectedSeconds": round(time.time() - self.first_seen, 1),
            "lastSeenSecondsAgo": round(time.time() - self.last_seen, 1),
            "acceptedVersions": dict(self.acked),
            "rejected": dict(self.rejected),
            "connectedHere": self.replica is None,
        }


class ProxyRegistry:
    """Connected proxies keyed by (node id, ingress address).

    Registrations are saved (``rows``/``restore``), so a control plane that restarts
    still knows every node's endpoints while its proxies reconnect; a proxy that does
    not come back is forgotten ``ttl`` seconds after it was last seen, as usual.
    """

    def __init__(self, ttl: float = 90.0) -> None:
        self.ttl = ttl
        self._proxies: dict[ProxyKey, ProxyState] = {}
        self._remote: dict[ProxyKey, ProxyState] = {}  # other replicas' (``merge``)

    def _live(self) -> list[ProxyState]:
        """This replica's proxies, then the other replicas' that are not also here."""
        cutoff = time.time() - self.ttl
        others = [
            state
            for key, state in self._remote.items()
            if key not in self._proxies and state.last_seen >= cutoff
        ]
        return [*self._proxies.values(), *others]

    def seen(
        self, node_id: str, mesh: MeshKey, kind: str, name: str, address: tuple[str, int] | None
    ) -> tuple[ProxyState, bool]:
        """Record that a proxy asked for config; returns its state and whether it is new."""
        key = (node_id, address)
        state = self._proxies.get(key)
        if state is not None and (state.mesh, state.kind, state.name) == (mesh, kind, name):
            state.last_seen = time.time()
            return state, False
        state = ProxyState(node_id, mesh, kind, name, address)
        self._proxies[key] = state
        return state, True

    def forget(self, state: ProxyState) -> None:
        self._proxies.pop((state.node_id, state.ingress_address), None)

    def count_for(self, mesh: MeshKey, kind: str, name: str) -> int:
        return sum(1 for p in self._live() if (p.mesh, p.kind, p.name) == (mesh, kind, name))

    def expire(self) -> set[MeshKey]:
        """Forget proxies silent for longer than ``ttl``; returns the meshes that changed."""
        cutoff = time.time() - self.ttl
        changed = set()
        for proxies in (self._proxies, self._remote):
            stale = [key for key, state in proxies.items() if state.last_seen < cutoff]
            changed |= {proxies.pop(key).mesh for key in stale}
        return changed

    def merge(self, rows: list[tuple[str, str, str, str]]) -> set[MeshKey]:
        """Replace the other replicas' registrations with ``(replica, node_id, address,
        state JSON)`` rows; returns the meshes whose endpoints changed."""
        remote = {}
        for replica, node_id, address, state_json in rows:
            state = _restored(node_id, address, state_json)
            state.replica = replica
            remote[(node_id, state.ingress_address)] = state
        touched = {state.mesh for state in [*self._remote.values(), *remote.values()]}
        before = {mesh: self.endpoints(mesh) for mesh in touched}
        self._remote = remote
        return {mesh for mesh in touched if self.endpoints(mesh) != before[mesh]}

    def endpoints(self, mesh: MeshKey) -> dict[str, tuple[tuple[str, int], ...]]:
        """Virtual node name -> the registered ingress addresses of its proxies (sorted)."""
        found: dict[str, set[tuple[str, int]]] = {}
        for state in self._live():
            if state.mesh == mesh and state.kind == "virtualNode" and state.ingress_address:
                found.setdefault(state.name, set()).add(state.ingress_address)
        return {name: tuple(sorted(addresses)) for name, addresses in found.items()}

    def rows(self) -> list[tuple[str, str, str]]:
        """``(node_id, address, state)`` rows for the store."""
        return [
            (state.node_id, json.dumps(state.ingress_address), json.dumps(_saved(state)))
            for state in self._proxies.values()
        ]

    def restore(self, rows: list[tuple[str, str, str]]) -> None:
        """Take back registrations saved by an earlier run that are still within ``ttl``."""
        cutoff = time.time() - self.ttl
        for node_id, address, state_json in rows:
            state = _restored(node_id, address, state_json)
            if state.last_seen >= cutoff:
                self._proxies[(node_id, state.ingress_address)] = state

    def all(self) -> list[ProxyState]:
        return sorted(self._live(), key=lambda p: (p.mesh, p.kind, p.name, p.node_id))


def _restored(node_id: str, address: str, state_json: str) -> ProxyState:
    """A registration saved by ``rows`` (this replica's earlier run, or another's)."""
    saved = json.loads(state_json)
    ingress = json.loads(address)
    state = ProxyState(
        node_id,
        MeshKey(*saved["mesh"]),
        saved["kind"],
        saved["name"],
        (str(ingress[0]), int(ingress[1])) if ingress else None,
    )
    state.first_seen, state.last_seen = saved["first_seen"], saved["last_seen"]
    return state
