"""A mesh app that calls the next hop and reports what it saw, optionally with the X-Ray SDK.

    python traced_app.py NAME PORT FAILURE_RATE [XRAY_DAEMON_PORT]

GET /chain?next=PORT/HOST,PORT/HOST  -> JSON list of hops, this one first:
    {"name": NAME, "trace": <X-Amzn-Trace-Id it received>}; it calls
    http://127.0.0.1:PORT/chain?next=<the rest> with Host HOST (its sidecar's egress),
    passing the trace header on as applications do.
GET /status/<code>                   -> that status

With XRAY_DAEMON_PORT the app uses aws-xray-sdk: its middleware records a segment named
NAME under the caller's trace, and its aiohttp client records a remote subsegment for the
next hop and sends the header with that subsegment as Parent.
"""

from __future__ import annotations

import json
import sys

import aiohttp
from aiohttp import web

TRACE = "X-Amzn-Trace-Id"


def build(name: str, xray_port: int | None) -> web.Application:
    middlewares = []
    trace_configs = []
    startup = []
    if xray_port:
        from aws_xray_sdk.core import xray_recorder
        from aws_xray_sdk.core.async_context import AsyncContext
        from aws_xray_sdk.ext.aiohttp.client import aws_xray_trace_config
        from aws_xray_sdk.ext.aiohttp.middleware import middleware

        async def configure(_app: web.Application) -> None:
            # AsyncContext installs a task factory on the running loop: configure there.
            xray_recorder.configure(
                service=name,
                context=AsyncContext(),
                sampling=False,  # the incoming header decides
                daemon_address=f"127.0.0.1:{xray_port}",
                context_missing="LOG_ERROR",
            )

        startup.append(configure)
        middlewares.append(middleware)
        trace_configs.append(aws_xray_trace_config())

    async def chain(request: web.Request) -> web.Response:
        hops = [{"name": name, "trace": request.headers.get(TRACE, "")}]
        following = [hop for hop in request.query.get("next", "").split(",") if hop]
        if following:
            port, _, host = following[0].partition("/")
            headers = {"Host": host}
            if not xray_port and TRACE in request.headers:
                headers[TRACE] = request.headers[TRACE]
            url = f"http://127.0.0.1:{port}/chain"
            params = {"next": ",".join(following[1:])}
            async with (
                aiohttp.ClientSession(trace_configs=trace_configs) as session,
                session.get(url, headers=headers, params=params) as reply,
            ):
                if reply.status != 200:
                    return web.Response(status=reply.status, text=await reply.text())
                hops += await reply.json()
        return web.Response(text=json.dumps(hops), content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text=name)

    app = web.Application(middlewares=middlewares)
    app.on_startup.extend(startup)
    app.router.add_get("/chain", chain)
    app.router.add_get("/status/{code}", status)
    return app


if __name__ == "__main__":
    xray = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
    web.run_app(build(sys.argv[1], xray), host="127.0.0.1", port=int(sys.argv[2]), print=None)
