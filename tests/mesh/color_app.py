"""A tiny upstream app for mesh tests: answers its name, and misbehaves on request.

    python color_app.py NAME PORT [FAILURE_RATE] [HOST]

HOST is the address to bind (127.0.0.1; the network-namespace tests bind others).

GET /color        -> NAME (or a 500, FAILURE_RATE of the time)
GET /headers      -> the request headers as JSON (what the proxies forwarded)
GET /delay/<ms>   -> NAME after a pause
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys

from aiohttp import web


def build(name: str, failure_rate: float) -> web.Application:
    counter = itertools.count()
    fail_every = round(1 / failure_rate) if failure_rate else 0

    async def color(request: web.Request) -> web.Response:
        if fail_every and next(counter) % fail_every == 0:
            return web.Response(status=500, text=f"{name} failed\n")
        return web.Response(text=name)

    async def headers(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(dict(request.headers)))

    async def delay(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/color", color)
    app.router.add_get("/headers", headers)
    app.router.add_get("/delay/{ms}", delay)
    app.router.add_get("/{tail:.*}", color)
    return app


if __name__ == "__main__":
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    print("ready", flush=True)
    web.run_app(build(sys.argv[1], rate), host=host, port=int(sys.argv[2]), print=None)
