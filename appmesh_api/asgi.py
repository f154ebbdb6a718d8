"""Small ASGI helpers shared by appmesh-local's pure-ASGI front doors (App Mesh, X-Ray)."""

from __future__ import annotations

from starlette.types import Receive, Scope


async def read_body(receive: Receive) -> bytes:
    """The whole request body (App Mesh and X-Ray requests are small JSON documents)."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a dict with lower-case names (ASGI already lower-cases them)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
