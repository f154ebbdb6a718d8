"""The FastAPI application: App Mesh's REST API plus the AWS side services on one port.

``/v20190125/...`` is App Mesh, dispatched by botocore's model; ``/_appmesh/...`` is
appmesh-local's own surface (health, xDS); everything else goes to the side
services (embedded moto, or ``--aws-endpoint``), routed by SigV4 credential scope.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from appmesh_api import protocol
from appmesh_api.changefeed import ChangeFeed
from appmesh_api.errors import AppMeshError, InternalServerErrorException
from appmesh_api.identity import identify
from appmesh_api.model import match_operation
from appmesh_api.service import AppMeshService
from appmesh_api.settings import Settings
from appmesh_api.store import Store

log = logging.getLogger("appmesh_local.api")

API_PREFIX = "/v20190125"
DATABASE_FILE = "appmesh.sqlite3"


def open_store(settings: Settings) -> Store:
    if settings.data_dir is None:
        return Store(None)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    return Store(Path(settings.data_dir) / DATABASE_FILE)


def error_response(error: AppMeshError, request_id: str) -> Response:
    return JSONResponse(
        {"message": error.message},
        status_code=error.status_code,
        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; state (store, change feed, service) lives on ``app.state``."""
    settings = settings or Settings()
    store = open_store(settings)
    feed = ChangeFeed(store.sequence)
    service = AppMeshService(store, feed, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        where = settings.data_dir or "memory (--in-memory)"
        log.info("App Mesh API ready; state in %s", where)
        yield
        store.close()

    app = FastAPI(
        title="appmesh-local",
        description="AWS App Mesh API, served locally",
        lifespan=lifespan,
        docs_url="/_appmesh/docs",
        openapi_url="/_appmesh/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.feed = feed
    app.state.service = service

    @app.get("/_appmesh/health")
    async def health() -> dict:
        side = settings.aws_endpoint or "embedded moto"
        return {"status": "running", "appmesh": "available", "side_services": side}

    @app.api_route(
        API_PREFIX + "/{path:path}", methods=["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]
    )
    async def appmesh(request: Request) -> Response:
        return await handle_appmesh(request, service, settings)

    from appmesh_api.edge import build_side_services_app

    app.mount("/", build_side_services_app(settings.aws_endpoint))
    return app


async def handle_appmesh(request: Request, service: AppMeshService, settings: Settings) -> Response:
    """Parse, run and serialize one App Mesh operation, mapping every failure to an AWS error."""
    request_id = str(uuid.uuid4())
    path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    path = path.split("?", 1)[0]
    found = match_operation(request.method, path)
    if found is None:
        return JSONResponse(
            {"message": f"No App Mesh operation serves {request.method} {path}"},
            status_code=404,
            headers={
                "x-amzn-ErrorType": "UnknownOperationException",
                "x-amzn-RequestId": request_id,
            },
        )
    operation, labels = found
    try:
        body = await request.body()
        params = protocol.parse_request(operation, labels, request.query_params, body)
        caller = identify(request.headers.get("authorization"), settings)
        result = service.call(operation.name, params, caller)
        payload = protocol.serialize_output(operation, result)
    except AppMeshError as error:
        log.info("%s -> %s: %s", operation.name, error.code, error.message)
        return error_response(error, request_id)
    except Exception:
        log.exception("%s failed unexpectedly", operation.name)
        error = InternalServerErrorException(
            "The request failed inside appmesh-local. See the server log for the traceback."
        )
        return error_response(error, request_id)
    log.debug("%s -> 200", operation.name)
    return Response(
        payload,
        media_type="application/json",
        headers={"x-amzn-RequestId": request_id},
    )
