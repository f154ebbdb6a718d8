"""Child process of benchmarks/proxy.py: one ProxyServer on uvloop with a static config.

    python benchmarks/proxy_serve.py CONFIG.json

CONFIG.json holds ``{"resources": [...Envoy v3 resources...], "admin": <port>}``, and
optionally ``"env"`` (the image's tracing/metrics variables) with ``"node_id"``. Kept
apart from the benchmark so that the proxy's RSS is not inflated by the benchmark's own
imports; it runs until terminated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def serve(config: dict) -> None:
    """Start the server, apply the resources as version 1, and serve forever."""
    from proxy.server import ProxyServer

    extra = {}
    if config.get("env"):
        from envoy_bootstrap.bootstrap import build_bootstrap
        from proxy.config.bootstrap import compile_bootstrap

        node_id = config.get("node_id", "mesh/bench/virtualNode/bench")
        env = {"APPMESH_RESOURCE_ARN": node_id, **config["env"]}
        bootstrap = compile_bootstrap(build_bootstrap(env, "127.0.0.1:4567"))
        extra["observability"] = bootstrap.observability
    server = ProxyServer(
        admin_address=("127.0.0.1", config["admin"]), node={"id": "bench"}, **extra
    )
    await server.start()
    await server.apply(config["resources"], "1")
    await asyncio.Event().wait()


def main() -> None:
    import uvloop

    logging.basicConfig(level=logging.WARNING)
    uvloop.run(serve(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
