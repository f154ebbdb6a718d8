"""A per-mesh version that other parts can wait on.

Every committed write, and every change in which proxies are connected, moves
its mesh's version forward (one counter for all meshes, starting from the
store's change sequence, so versions only grow). The xDS server waits here
instead of polling: a proxy's long-poll wakes the moment its mesh changes, and
only proxies of that mesh wake.
"""

from __future__ import annotations

import asyncio
import contextlib

from appmesh_api.store import MeshKey


class ChangeFeed:
    """Versions per mesh and one asyncio.Event per mesh that is set (and replaced) on change."""

    def __init__(self, initial_version: int = 0) -> None:
        self._initial = initial_version
        self._counter = initial_version
        self._versions: dict[MeshKey, int] = {}
        self._events: dict[MeshKey, asyncio.Event] = {}
        self.closed = False

    def close(self) -> None:
        """The server is stopping: wake every waiter now, and let no one wait again, so
        long-polls answer at once instead of being cancelled by the shutdown."""
        self.closed = True
        for event in self._events.values():
            event.set()
        self._events.clear()

    def version(self, mesh: MeshKey) -> int:
        """The mesh's current version (the store's sequence at start for untouched meshes)."""
        return self._versions.get(mesh, self._initial)

    def publish(self, mesh: MeshKey, version: int | None = None) -> int:
        """Record a change of ``mesh`` and wake every waiter on it; returns the new version.

        ``version`` is the store's sequence for a committed write; changes that are not
        stored (a proxy connecting) pass None and take the next number.
        """
        self._counter = max(self._counter + 1, version or 0)
        self._versions[mesh] = self._counter
        event = self._events.pop(mesh, None)
        if event is not None:
            event.set()
        return self._counter

    async def wait(self, mesh: MeshKey, seen_version: int, timeout: float) -> int:
        """Wait until the mesh's version differs from ``seen_version`` (or ``timeout`` passes)."""
        current = self.version(mesh)
        if current != seen_version or self.closed:
            return current
        event = self._events.get(mesh)
        if event is None:
            event = self._events[mesh] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.version(mesh)
