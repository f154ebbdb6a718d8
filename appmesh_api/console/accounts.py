"""Which accounts and regions have something to show: meshes, traces or proxies.

Every caller's account is its own partition in appmesh-local, so a console that only looked
at the default account would look empty to anyone using another access key. The picker
lists every account that owns a mesh, sent traces or has a connected proxy.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from appmesh_api.proxies import ProxyRegistry
from appmesh_api.store import Store
from appmesh_api.xray.store import XRayState


def known_accounts(
    store: Store, xray: XRayState | None, registry: ProxyRegistry
) -> list[dict[str, Any]]:
    """``[{"account", "region", "meshes", "traces", "proxies"}]``, busiest first."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {"meshes": 0, "traces": 0, "proxies": 0}
    )
    for record in store.all_meshes():
        counts[(record.key.mesh_owner, record.key.region)]["meshes"] += 1
    for partition in xray.partitions() if xray is not None else ():
        if len(partition.traces):
            counts[(partition.account, partition.region)]["traces"] += sum(
                1 for _ in partition.traces.records()
            )
    for proxy in registry.all():
        counts[(proxy.mesh.mesh_owner, proxy.mesh.region)]["proxies"] += 1
    found = [{"account": a, "region": r, **c} for (a, r), c in counts.items()]
    return sorted(found, key=lambda item: (-item["meshes"], item["account"], item["region"]))
