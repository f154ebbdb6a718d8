"""The colorapp's two programs, as in App Mesh's walkthrough.

    python -m appmesh_api.examples.colorapp_app teller COLOR PORT
    python -m appmesh_api.examples.colorapp_app gateway PORT TELLER_URL

A teller answers its colour. The gateway answers ``/color`` by asking the
colorteller virtual service, the way an app in a mesh does: a plain HTTP call to
``TELLER_URL`` through the proxy named by ``HTTP_PROXY`` (its sidecar's egress),
and reports the colours of its last ``WINDOW`` answers, so a traffic shift shows
within a few requests (``/color/clear`` empties the window).
"""

from __future__ import annotations

import collections
import json
import sys

import aiohttp
from aiohttp import web


def teller(color: str) -> web.Application:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text=color)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app


WINDOW = 50


def gateway(teller_url: str) -> web.Application:
    recent: collections.deque[str] = collections.deque(maxlen=WINDOW)

    async def color(request: web.Request) -> web.Response:
        session: aiohttp.ClientSession = request.app["session"]
        # Pass the trace header on, as an X-Ray-instrumented app does, so the call to the
        # teller joins the request's trace instead of starting one of its own.
        trace = request.headers.get("x-amzn-trace-id")
        headers = {"x-amzn-trace-id": trace} if trace else {}
        async with session.get(teller_url, headers=headers) as reply:
            body = await reply.text()
            if reply.status != 200:
                return web.Response(status=reply.status, text=body)
        recent.append(body)
        tally = collections.Counter(recent)
        stats = {name: round(count / len(recent), 2) for name, count in sorted(tally.items())}
        return web.Response(text=json.dumps({"color": body, "stats": stats}) + "\n")

    async def clear(_request: web.Request) -> web.Response:
        recent.clear()
        return web.Response(text="cleared\n")

    async def session_context(app: web.Application):
        app["session"] = aiohttp.ClientSession(trust_env=True)  # honours HTTP_PROXY
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_get("/color", color)
    app.router.add_get("/color/clear", clear)
    return app


def main(argv: list[str]) -> None:
    if argv[0] == "teller":
        web.run_app(teller(argv[1]), host="127.0.0.1", port=int(argv[2]), print=None)
    else:
        web.run_app(gateway(argv[2]), host="127.0.0.1", port=int(argv[1]), print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
