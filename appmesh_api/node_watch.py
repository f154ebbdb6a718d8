"""Waiting for one node's config to change, woken only when it does.

Long-polls and ADS streams wait here per node, not per mesh: one event per
``(mesh, node)``, set only when a snapshot diff names that node as affected. Per mesh
with anyone waiting, one dispatcher task follows the change feed and asks the snapshot
cache to advance, which diffs and wakes (``wake``). So a change wakes the watchers it
concerns, and an unaffected watcher costs nothing per change, however many there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from appmesh_api.changefeed import ChangeFeed
from appmesh_api.dependency_index import NodeKey
from appmesh_api.store import MeshKey

log = logging.getLogger("appmesh_local.xds")

#: How long the dispatcher waits on the feed between checks that anyone still waits.
DISPATCH_SECONDS = 30.0


class NodeWatchers:
    """Events per waiting node, and a dispatcher per mesh that has waiting nodes.

    ``advance(mesh)`` brings the mesh's snapshot to the feed's version (calling ``wake``
    for the nodes the change reaches); it raises if the mesh cannot be read, and then
    every waiter of that mesh is woken to find out for itself.
    """

    def __init__(self, feed: ChangeFeed, advance: Callable[[MeshKey], object]) -> None:
        self.feed = feed
        self._advance = advance
        self._events: dict[MeshKey, dict[NodeKey, asyncio.Event]] = {}
        self._dispatchers: dict[MeshKey, asyncio.Task] = {}

    def wake(self, mesh: MeshKey, nodes: Iterable[NodeKey]) -> None:
        waiting = self._events.get(mesh)
        if not waiting:
            return
        for node in nodes:
            event = waiting.pop(node, None)
            if event is not None:
                event.set()

    def wake_all(self, mesh: MeshKey) -> None:
        for event in self._events.pop(mesh, {}).values():
            event.set()

    async def wait(self, mesh: MeshKey, node: NodeKey, timeout: float) -> None:
        """Until the node is named affected, the mesh fails to read, or ``timeout``."""
        if self.feed.closed:
            return
        event = self._events.setdefault(mesh, {}).setdefault(node, asyncio.Event())
        self._ensure_dispatcher(mesh)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def waiting(self, mesh: MeshKey) -> int:
        return len(self._events.get(mesh, {}))

    def _ensure_dispatcher(self, mesh: MeshKey) -> None:
        task = self._dispatchers.get(mesh)
        if task is None or task.done():
            self._dispatchers[mesh] = asyncio.create_task(self._dispatch(mesh))

    async def _dispatch(self, mesh: MeshKey) -> None:
        while self._events.get(mesh):
            seen = self.feed.version(mesh)
            try:
                self._advance(mesh)  # to ``seen`` or later: nothing published is missed
            except Exception as exc:  # the mesh is gone or unreadable: let each waiter see
                log.debug("waking every watcher of %s: %s", mesh.mesh, exc)
                self.wake_all(mesh)
            if not self._events.get(mesh):
                break
            await self.feed.wait(mesh, seen, DISPATCH_SECONDS)
            if self.feed.closed:
                self.wake_all(mesh)
                break
        self._dispatchers.pop(mesh, None)
