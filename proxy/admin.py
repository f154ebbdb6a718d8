"""Envoy's admin endpoint (port 9901 in App Mesh) on aiohttp.

The admin interface is off the data path, so it uses aiohttp for convenience. Output
formats follow Envoy's so existing tooling works: ``/server_info`` (the ECS health check
greps its ``state``), ``/ready``, ``/stats`` (``name: value`` lines, ``?filter=``,
``?format=json``, ``?usedonly``), ``/stats/prometheus``, ``/clusters`` (``::``-separated
text or ``?format=json``), ``/config_dump`` (``?include_eds``), ``/listeners`` and
``/certs``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from envoy_bootstrap.envoy_types import PREFIX as TYPE_PREFIX
from proxy.config.access_log import DEFAULT_FORMAT, compile_text_format
from proxy.config.regex import RegexError, compile_re2
from proxy.observe.access_log import AccessLogSink
from proxy.stream_info import StreamInfo

if TYPE_CHECKING:
    from proxy.config.bootstrap import BootstrapConfig
    from proxy.config.compile import CompiledConfig
    from proxy.context import ProxyContext
    from proxy.listener import ListenerHandle
    from proxy.observe.observability import Observability
    from proxy.observe.stats import Stats
    from proxy.upstream.cluster_manager import Cluster
    from proxy.upstream.host import Host

PROXY_VERSION = "appmesh-local/0.1.0/1.0/Clean/RELEASE/Python"
_ADMIN_LOG_FORMAT = compile_text_format(DEFAULT_FORMAT)


def _json(data: Any) -> web.Response:
    # Envoy pretty-prints admin JSON with one-space indents.
    return web.Response(text=json.dumps(data, indent=1) + "\n", content_type="application/json")


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


class ServerView(Protocol):
    """What the admin endpoint reads of the server it reports on (``ProxyServer``).

    Declared here so the server can own its admin endpoint without the admin importing
    the server back."""

    started_at: float
    state: str
    node: dict[str, Any]
    observability: Observability | None
    listeners: dict[str, ListenerHandle]
    bootstrap: BootstrapConfig | None

    @property
    def ctx(self) -> ProxyContext: ...

    @property
    def config(self) -> CompiledConfig: ...

    @property
    def stats(self) -> Stats: ...


class AdminServer:
    def __init__(self, server: ServerView, access_log: str | None = None) -> None:
        self.server = server
        self.bound: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None
        self._access_log_path = access_log
        self._access_log: AccessLogSink | None = None
        app = web.Application(middlewares=[self._log_request] if access_log else [])
        app.router.add_get("/", self.index)
        app.router.add_get("/server_info", self.server_info)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/stats/prometheus", self.prometheus)
        app.router.add_get("/clusters", self.clusters)
        app.router.add_get("/config_dump", self.config_dump)
        app.router.add_get("/listeners", self.listeners)
        app.router.add_get("/certs", self.certs)
        self.app = app

    async def start(self, host: str, port: int) -> None:
        if self._access_log_path:
            loop = asyncio.get_running_loop()
            self._access_log = AccessLogSink(self._access_log_path, loop)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses
        name = addresses[0] if addresses else (host, port)
        self.bound = (name[0], name[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._access_log is not None:
            self._access_log.close()
            self._access_log = None

    @web.middleware
    async def _log_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The bootstrap's ``admin.access_log``: one line per admin request, in Envoy's
        default format (the ECS health check's curls included, as with Envoy)."""
        loop = asyncio.get_running_loop()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        info = StreamInfo(
            loop.time(), f"HTTP/{request.version.major}.{request.version.minor}",
            f"{peer[0]}:{peer[1]}" if peer else "", "", 0,
        )  # fmt: skip
        headers = {k.lower(): v for k, v in request.headers.items()}
        info.request_headers = {**headers, ":method": request.method, ":path": request.path_qs,
                                ":authority": request.host}  # fmt: skip
        response = await handler(request)
        info.end = loop.time()
        info.response_code = response.status
        info.bytes_sent = getattr(response, "content_length", None) or 0
        if self._access_log is not None:
            self._access_log.write(_ADMIN_LOG_FORMAT(info))
        return response

    def _bootstrap(self) -> dict[str, Any]:
        bootstrap = self.server.bootstrap
        return dict(bootstrap.raw) if bootstrap is not None else {"node": self.server.node}

    # -- handlers ---------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        paths = sorted(r.resource.canonical for r in self.app.router.routes() if r.resource)
        return web.Response(text="\n".join(paths) + "\n")

    async def server_info(self, request: web.Request) -> web.Response:
        uptime = f"{int(time.time() - self.server.started_at)}s"
        return _json(
            {
                "version": PROXY_VERSION,
                "state": self.server.state,
                "hot_restart_version": "disabled",
                "command_line_options": {"concurrency": 1, "mode": "Serve"},
                "node": self.server.node,
                "uptime_current_epoch": uptime,
                "uptime_all_epochs": uptime,
            }
        )

    async def ready(self, request: web.Request) -> web.Response:
        state = self.server.state
        return web.Response(text=f"{state}\n", status=200 if state == "LIVE" else 503)

    async def stats(self, request: web.Request) -> web.Response:
        stats = self.server.stats
        pattern = request.query.get("filter")
        try:  # RE2: a client's pattern runs in linear time on the loop that carries traffic
            name_filter = compile_re2(pattern) if pattern else None
        except RegexError as exc:
            return web.Response(status=400, text=f"Invalid regex: {exc}\n")
        everything: list[tuple[str, float]] = [(name, value) for name, value, _ in stats.snapshot()]
        if self.server.observability is not None:  # the metrics extension's appmesh.* stats
            everything = sorted([*everything, *self.server.observability.stat_rows()])
        rows = [
            (name, value)
            for name, value in everything
            if (name_filter is None or name_filter.search(name))
            and ("usedonly" not in request.query or value)
        ]
        if request.query.get("format") == "json":
            return _json({"stats": [{"name": n, "value": v} for n, v in rows]})
        if request.query.get("format") == "prometheus":
            return await self.prometheus(request)
        return web.Response(text="".join(f"{n}: {v}\n" for n, v in rows))

    async def prometheus(self, request: web.Request) -> web.Response:
        observability = self.server.observability
        if observability is None:
            text = self.server.stats.render_prometheus()
        else:  # with App Mesh's stats tags and the metrics extension's envoy_appmesh_*
            text = observability.render_prometheus()
        return web.Response(text=text, content_type="text/plain")

    async def clusters(self, request: web.Request) -> web.Response:
        clusters = list(self.server.ctx.clusters.clusters.values())
        if request.query.get("format") == "json":
            return _json({"cluster_statuses": [_cluster_json(c) for c in clusters]})
        return web.Response(text="".join(_cluster_text(c) for c in clusters))

    async def listeners(self, request: web.Request) -> web.Response:
        handles = self.server.listeners
        if request.query.get("format") == "json":
            statuses = [
                {"name": name, "local_address": _socket(*handle.bound)}
                for name, handle in handles.items()
            ]
            return _json({"listener_statuses": statuses})
        lines = [f"{name}::{h.bound[0]}:{h.bound[1]}\n" for name, h in handles.items()]
        return web.Response(text="".join(lines))

    async def certs(self, request: web.Request) -> web.Response:
        return _json({"certificates": []})

    async def config_dump(self, request: web.Request) -> web.Response:
        config = self.server.config
        version = config.version
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        configs: list[dict[str, Any]] = [
            {"@type": TYPE_PREFIX + "envoy.admin.v3.BootstrapConfigDump",
             "bootstrap": self._bootstrap()},
            {"@type": TYPE_PREFIX + "envoy.admin.v3.ClustersConfigDump",
             "version_info": version,
             "dynamic_active_clusters": [
                 {"version_info": version, "cluster": dict(c.raw), "last_updated": stamp}
                 for c in config.clusters.values()]},
            {"@type": TYPE_PREFIX + "envoy.admin.v3.ListenersConfigDump",
             "version_info": version,
             "dynamic_listeners": [
                 {"name": name, "active_state": {
                     "version_info": version, "listener": dict(lc.raw), "last_updated": stamp}}
                 for name, lc in config.listeners.items()]},
            {"@type": TYPE_PREFIX + "envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [
                 {"version_info": version, "route_config": dict(t.raw), "last_updated": stamp}
                 for t in config.route_tables.values()]},
        ]  # fmt: skip
        if "include_eds" in request.query:
            endpoint_configs = [
                {"version_info": version, "endpoint_config": dict(r), "last_updated": stamp}
                for r in config.resources
                if r.get("@type", "").endswith("ClusterLoadAssignment")
            ]
            configs.append(
                {"@type": TYPE_PREFIX + "envoy.admin.v3.EndpointsConfigDump",
                 "dynamic_endpoint_configs": endpoint_configs}
            )  # fmt: skip
        return _json({"configs": configs})


def _host_stats(host: Host) -> dict[str, int]:
    return {
        "cx_active": host.cx_active,
        "cx_connect_fail": host.cx_connect_fail,
        "cx_total": host.cx_total,
        "rq_active": host.rq_active,
        "rq_error": host.rq_error,
        "rq_success": host.rq_success,
        "rq_timeout": 0,
        "rq_total": host.rq_total,
    }


def _host_stat(name: str, value: int) -> dict[str, str]:
    if name.endswith("_active"):
        return {"name": name, "type": "GAUGE", "value": str(value)}
    return {"name": name, "value": str(value)}


def _cluster_text(cluster: Cluster) -> str:
    name, th = cluster.name, cluster.config.thresholds
    lines = [f"{name}::observability_name::{name}"]
    for priority in ("default_priority", "high_priority"):
        lines += [
            f"{name}::{priority}::max_connections::{th.max_connections}",
            f"{name}::{priority}::max_pending_requests::{th.max_pending_requests}",
            f"{name}::{priority}::max_requests::{th.max_requests}",
            f"{name}::{priority}::max_retries::{th.max_retries}",
        ]
    lines.append(f"{name}::added_via_api::true")
    for host in cluster.hosts.values():
        prefix = f"{name}::{host.key}::"
        lines += [f"{prefix}{stat}::{value}" for stat, value in _host_stats(host).items()]
        lines += [
            f"{prefix}hostname::{host.endpoint.hostname}",
            f"{prefix}health_flags::{host.health_flags}",
            f"{prefix}weight::{host.endpoint.weight}",
            f"{prefix}region::",
            f"{prefix}zone::",
            f"{prefix}sub_zone::",
            f"{prefix}canary::false",
            f"{prefix}priority::{host.endpoint.priority}",
            f"{prefix}success_rate::-1",
            f"{prefix}local_origin_success_rate::-1",
        ]
    return "".join(line + "\n" for line in lines)


def _cluster_json(cluster: Cluster) -> dict[str, Any]:
    hosts = []
    for host in cluster.hosts.values():
        health: dict[str, Any] = {
            "eds_health_status": "HEALTHY" if host.eds_healthy else "UNHEALTHY"
        }
        if host.ejected:
            health["failed_outlier_check"] = True
        if host.hc_failed:
            health["failed_active_health_check"] = True
        hosts.append(
            {
                "address": _socket(host.host, host.port),
                "stats": [_host_stat(k, v) for k, v in _host_stats(host).items()],
                "health_status": health,
                "weight": host.endpoint.weight,
                "priority": host.endpoint.priority,
                "hostname": host.endpoint.hostname,
            }
        )
    return {"name": cluster.name, "added_via_api": True, "host_statuses": hosts}
