"""How much of a request the control plane will hold, and reading a body within it.

A body is refused as soon as it is known to be too large: from ``Content-Length``
before a byte is read, else while it streams in, so a client can never make the server
buffer more than the limit. The numbers are in docs/compatibility.md with where they
come from (AWS documents few of them).
"""

from __future__ import annotations

from starlette.types import Receive

from appmesh_api.frontdoor import refusals

KIB = 1024
MIB = 1024 * KIB

#: Request line plus headers, checked by the HTTP server (``appmesh_api.httpserver``).
HEAD_LIMIT = 64 * KIB
#: App Mesh's JSON bodies (the largest spec is a few KiB). UNCONFIRMED.
APPMESH_BODY_LIMIT = 1 * MIB
#: X-Ray: PutTraceSegments batches of documents of up to 64 KiB each. UNCONFIRMED.
XRAY_BODY_LIMIT = 5 * MIB
#: The side services (S3 PutObject of CDK assets is the large case). UNCONFIRMED.
SIDE_SERVICE_BODY_LIMIT = 64 * MIB
#: appmesh-local's own endpoints (xDS DiscoveryRequests, the console's JSON).
LOCAL_BODY_LIMIT = 1 * MIB


def declared_length(headers: dict[str, str], limit: int) -> None:
    """Refuse a ``Content-Length`` over ``limit`` before reading anything."""
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise refusals.too_large("body", limit)


async def read_bounded(receive: Receive, limit: int) -> bytes:
    """The whole body, or a refusal the moment it passes ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            raise refusals.too_large("body", limit)
        if not message.get("more_body"):
            return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands an app the body already read, then waits as the server does."""
    sent = False

    async def again() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return again
