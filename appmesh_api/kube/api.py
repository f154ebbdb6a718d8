"""``/_appmesh/kube/{apply,delete,objects}``: what ``appmesh-local kube`` talks to.

Requests are signed like any AWS request (service ``appmesh``); the caller's account
and region, read from the signature's scope, choose the set of objects, as an EKS
cluster belonged to one account and region. A body is a JSON ``{"objects": [...]}``
of manifests; the answer lists one result per object, in the order applied.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from appmesh_api.identity import identify
from appmesh_api.kube.controller import KubeController, Outcome
from appmesh_api.kube.objects import MAX_MANIFEST_BYTES, ManifestError, parse_object
from appmesh_api.settings import Settings


def kube_router(controller: KubeController, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/_appmesh/kube")

    async def batch(request: Request) -> tuple[Any, list] | JSONResponse:
        caller = identify(request.headers.get("authorization"), settings)
        body = await request.body()
        if len(body) > MAX_MANIFEST_BYTES:
            return _error(413, f"manifests larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            documents = json.loads(body or b"{}").get("objects")
            if not isinstance(documents, list):
                raise ManifestError('the body must be {"objects": [...]}')
            objects = [parse_object(doc) for doc in documents]
        except (ValueError, AttributeError) as exc:  # ManifestError, bad JSON, not an object
            return _error(400, str(exc))
        return caller, objects

    @router.post("/apply")
    async def apply(request: Request) -> Any:
        found = await batch(request)
        if isinstance(found, JSONResponse):
            return found
        caller, objects = found
        try:
            outcomes = controller.apply(caller.account, caller.region, objects)
        except ManifestError as exc:
            return _error(400, str(exc))
        return _results(outcomes)

    @router.post("/delete")
    async def delete(request: Request) -> Any:
        found = await batch(request)
        if isinstance(found, JSONResponse):
            return found
        caller, objects = found
        return _results(controller.delete(caller.account, caller.region, objects))

    @router.get("/objects")
    async def objects(request: Request) -> dict:
        caller = identify(request.headers.get("authorization"), settings)
        controller.settle(caller.account, caller.region)
        return {"items": controller.get(caller.account, caller.region)}

    return router


def _results(outcomes: list[Outcome]) -> dict:
    return {
        "results": [
            {"object": o.obj.label, "action": o.action, "error": o.error, "line": o.line()}
            for o in outcomes
        ]
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)
