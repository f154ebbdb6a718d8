"""Mount the console on the control plane: the page, its static files and its JSON.

They must be registered before the catch-all mount of the side services at ``/``, which
would otherwise answer ``/console`` as a moto request.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from appmesh_api.console.api import router

STATIC = Path(__file__).with_name("static")


def install(app: FastAPI) -> None:
    """Serve ``/console`` (the page), ``/console/static/...`` and the console API."""

    @app.get("/console", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/console/", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/console")

    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(router)
