"""The console's JSON: small read-only views of the server's own state.

Each endpoint reads ``app.state`` directly (the store, the X-Ray service, the proxy registry)
instead of calling the public APIs over HTTP: no credentials to forge, and the console sees
exactly what the control plane holds. Every view is scoped to the caller's account, read
from the request's SigV4 credential scope as the API reads it (unsigned: the default
account); ``?account=`` may only name that same account, so no request reads another
account's meshes, traces or proxies by naming it. The page's account picker sends a
credential scope for the account picked, which under ``--verify-signatures`` no browser can
sign: then the console shows the default account only.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from appmesh_api.console.accounts import known_accounts
from appmesh_api.console.servicemap import service_map
from appmesh_api.identity import identify
from appmesh_api.settings import DEFAULT_REGION
from appmesh_api.store import MeshKey
from appmesh_api.views import traces as trace_views
from appmesh_api.views.meshgraph import mesh_graph
from appmesh_api.views.meshtree import mesh_tree
from appmesh_api.views.resources import from_store
from appmesh_api.views.tree import draw
from appmesh_api.views.waterfall import layout
from appmesh_api.xray import operations
from appmesh_api.xray.errors import XRayError
from appmesh_api.xray.store import Partition

PREFIX = "/_appmesh/console/api"
MAX_MINUTES = 24 * 60
KINDS = ("virtualGateway", "virtualService", "virtualRouter", "virtualNode")

router = APIRouter(prefix=PREFIX, tags=["console"])


def _scope(request: Request, account: str | None, region: str | None) -> tuple[str, str]:
    """The caller's account and the region asked for; naming another account is refused."""
    caller = identify(request.headers.get("authorization"), request.app.state.settings)
    if account and account != caller.account:
        raise HTTPException(
            403,
            f"account {account} is not the caller's ({caller.account}): the console shows an "
            "account's data only to requests signed as that account",
        )
    return caller.account, region or caller.region or DEFAULT_REGION


def _shared_with(request: Request, region: str, owner: str, mesh: str, account: str) -> bool:
    """Another account's mesh, as the API allows it: through an accepted RAM share."""
    state = request.app.state
    arn = f"arn:aws:appmesh:{region}:{owner}:mesh/{mesh}"
    return bool(
        state.settings.share_all_meshes or state.service.shares.allows(arn, account, region)
    )


def _minutes(minutes: float) -> float:
    if not 0 < minutes <= MAX_MINUTES:
        raise HTTPException(400, f"minutes must be between 0 and {MAX_MINUTES}")
    return minutes


def _partition(request: Request, account: str, region: str) -> Partition | None:
    """This account's X-Ray data; None when X-Ray goes to ``--aws-endpoint`` instead."""
    xray = request.app.state.xray
    return None if xray is None else xray.state.partition(account, region)


@router.get("/accounts")
def accounts(request: Request) -> dict[str, Any]:
    """Accounts and regions that own meshes, sent traces or run proxies; and the default."""
    state = request.app.state
    xray = None if state.xray is None else state.xray.state
    caller = identify(request.headers.get("authorization"), state.settings)
    mine = known_accounts(state.store, xray, state.discovery.registry)
    return {
        "default": {"account": state.settings.default_account, "region": DEFAULT_REGION},
        "accounts": [entry for entry in mine if entry["account"] == caller.account],
        "xray": state.xray is not None,
    }


@router.get("/meshes")
def meshes(request: Request, account: str | None = None, region: str | None = None) -> dict:
    """The meshes an account owns in a region, with how many resources each holds."""
    account, region = _scope(request, account, region)
    store = request.app.state.store
    found = []
    for name, record in sorted(store.meshes_owned_by(region, account).items()):
        key = MeshKey(region, account, name)
        counts = {kind: len(store.children(key, kind)) for kind in KINDS}
        egress = ((record.data.get("spec") or {}).get("egressFilter") or {}).get("type")
        found.append({"name": name, "owner": account, "egress": egress or "DROP_ALL", **counts})
    return {"account": account, "region": region, "meshes": found}


@router.get("/meshes/{mesh}")
def mesh(
    request: Request,
    mesh: str,
    account: str | None = None,
    region: str | None = None,
    owner: str | None = None,
) -> dict:
    """One mesh as a tree (with its text drawing) and as a laid-out graph."""
    account, region = _scope(request, account, region)
    if owner and owner != account and not _shared_with(request, region, owner, mesh, account):
        raise HTTPException(404, f"mesh {mesh} is not present for account {owner}")
    found = from_store(request.app.state.store, MeshKey(region, owner or account, mesh))
    if found is None:
        raise HTTPException(404, f"mesh {mesh} is not present for account {owner or account}")
    tree = mesh_tree(found)
    return {"name": mesh, "tree": tree, "text": draw(tree), "graph": mesh_graph(tree)}


@router.get("/servicemap")
def servicemap(
    request: Request, account: str | None = None, region: str | None = None, minutes: float = 5
) -> dict:
    """GetServiceGraph over the last ``minutes``, with rates on every edge."""
    account, region = _scope(request, account, region)
    minutes = _minutes(minutes)
    partition = _partition(request, account, region)
    if partition is None:
        return {"available": False, "nodes": [], "edges": [], "minutes": minutes}
    end = time.time()
    graph = operations.get_service_graph(
        partition, {"StartTime": end - minutes * 60, "EndTime": end}
    )
    return {"available": True, "minutes": minutes, **service_map(graph["Services"], minutes)}


@router.get("/traces")
def traces(
    request: Request,
    account: str | None = None,
    region: str | None = None,
    minutes: float = 15,
    filter: str | None = None,
) -> dict:
    """The newest traces (up to 100), optionally filtered by an X-Ray filter expression."""
    account, region = _scope(request, account, region)
    minutes = _minutes(minutes)
    partition = _partition(request, account, region)
    if partition is None:
        return {"available": False, "traces": []}
    end = time.time()
    params: dict[str, Any] = {"StartTime": end - minutes * 60, "EndTime": end + 60}
    if filter:
        params["FilterExpression"] = filter
    try:
        found = operations.get_trace_summaries(partition, params)
    except XRayError as error:
        raise HTTPException(400, error.message) from None
    rows = [trace_views.row(summary) for summary in found["TraceSummaries"]]
    return {"available": True, "traces": rows}


@router.get("/traces/{trace_id}")
def trace(
    request: Request, trace_id: str, account: str | None = None, region: str | None = None
) -> dict:
    """One trace laid out as a waterfall."""
    account, region = _scope(request, account, region)
    partition = _partition(request, account, region)
    record = None if partition is None else partition.traces.get(trace_id)
    if record is None:
        raise HTTPException(404, f"no trace {trace_id} for account {account} in {region}")
    return {"id": trace_id, **layout(record.analysis.assembled.documents())}


@router.get("/proxies")
def proxies(request: Request, account: str | None = None, region: str | None = None) -> dict:
    """Connected proxies of the account's meshes: where they listen, what they accepted."""
    account, region = _scope(request, account, region)
    registry = request.app.state.discovery.registry
    found = [
        state.as_json()
        for state in registry.all()
        if state.mesh.mesh_owner == account and state.mesh.region == region
    ]
    return {"account": account, "region": region, "proxies": found}
