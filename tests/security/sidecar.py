"""A real appmesh-proxy ``ProxyServer`` in front of a real backend, for the attacks below.

The fixtures of tests/proxy are reused as they are (their modules import each other by
bare name, so their folder goes on the path as tests/proxy's own conftest does).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

from proxy_envoy import cluster, http_listener, route, vhost
from proxy_harness import (
    backends,
    raw_connection,
    raw_server,
    read_request_head,
    read_response,
    running_proxy,
)

__all__ = [
    "backends",
    "cluster",
    "http_listener",
    "raw_connection",
    "raw_server",
    "read_request_head",
    "read_response",
    "route",
    "running_proxy",
    "vhost",
]


def one_route_proxy(port: int, **hcm: object) -> list[dict]:
    """A listener sending every path to the backend on ``port``, with HCM settings."""
    routes = [route({"prefix": "/"}, "app")]
    return [cluster("app", [port]), http_listener("ingress", [vhost("all", ["*"], routes)], **hcm)]
