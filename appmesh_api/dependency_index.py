"""Per-proxy config versions for one mesh, moved only by changes a proxy depends on.

A mesh's version moves on every write to it. If every proxy's config version were the
mesh version, one route change would wake, translate and push all 10,000 nodes of a big
mesh. Instead each node (or gateway) the control plane serves gets its own version: the
mesh version at which something in its dependency closure (``envoy_bootstrap.
dependencies``) last changed. A reverse index from each dependency to the nodes whose
closure holds it turns a snapshot diff into the set of affected nodes, so the work of a
change is proportional to what it affects, not to the mesh or to the watchers.
"""

from __future__ import annotations

from envoy_bootstrap.dependencies import (
    Dependency,
    changed,
    closure,
    reach_all_closure,
    reaches_all,
)
from envoy_bootstrap.snapshot import MeshSnapshot

NodeKey = tuple[str, str]  # (virtualNode | virtualGateway, name)


class DependencyIndex:
    """The tracked nodes of one mesh: their closures, the reverse index and versions."""

    def __init__(self) -> None:
        self.versions: dict[NodeKey, int] = {}
        self._closures: dict[NodeKey, frozenset[Dependency]] = {}
        self._reverse: dict[Dependency, set[NodeKey]] = {}
        # ALLOW_ALL nodes without backends share one closure of the whole service graph.
        self._reach_all: set[NodeKey] = set()
        self._reach_all_closure: frozenset[Dependency] = frozenset()

    def version(self, snapshot: MeshSnapshot, node: NodeKey) -> int:
        """The node's config version, tracking it from ``snapshot`` if it is new."""
        known = self.versions.get(node)
        if known is not None:
            return known
        self._track(snapshot, node)
        self.versions[node] = snapshot.version
        return snapshot.version

    def advance(self, old: MeshSnapshot, new: MeshSnapshot) -> set[NodeKey]:
        """Move the nodes a change from ``old`` to ``new`` reaches to ``new.version``;
        returns them. Untouched nodes keep their version and are not looked at."""
        moved = changed(old, new)
        if not moved:
            return set()
        affected: set[NodeKey] = set()
        for dependency in moved:
            affected |= self._reverse.get(dependency, set())
        if self._reach_all and moved & self._reach_all_closure:
            affected |= self._reach_all  # re-tracked below, which recomputes the closure
        for node in affected:
            self._untrack(node)
            self._track(new, node)
            self.versions[node] = new.version
        return affected

    def _track(self, snapshot: MeshSnapshot, node: NodeKey) -> None:
        found = closure(snapshot, *node)
        self._closures[node] = found
        for dependency in found:
            self._reverse.setdefault(dependency, set()).add(node)
        if reaches_all(snapshot, *node):
            if not self._reach_all:
                self._reach_all_closure = reach_all_closure(snapshot)
            self._reach_all.add(node)

    def _untrack(self, node: NodeKey) -> None:
        for dependency in self._closures.pop(node, frozenset()):
            holders = self._reverse.get(dependency)
            if holders is not None:
                holders.discard(node)
                if not holders:
                    del self._reverse[dependency]
        self._reach_all.discard(node)
