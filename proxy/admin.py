"""Envoy's admin endpoint (port 9901 in App Mesh), on a small HTTP/1.1 server of its own.

The admin interface is off the data path, but it is open in every sidecar from the
start, so it must not cost what a web framework costs: aiohttp alone was 12 MB of a
sidecar's memory. It is served here with httptools (which the data path's codec loads
anyway): GET and HEAD on a fixed set of paths, keep-alive, one response per request in
order; 404 for other paths and 405 for other methods, as before. Output formats follow
Envoy's so existing tooling works: ``/server_info`` (the ECS health check
greps its ``state``), ``/ready``, ``/stats`` (``name: value`` lines, ``?filter=``,
``?format=json``, ``?usedonly``), ``/stats/prometheus``, ``/clusters`` (``::``-separated
text or ``?format=json``), ``/config_dump`` (``?include_eds``), ``/listeners`` and
``/certs``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl, unquote

import httptools

from envoy_bootstrap.envoy_types import PREFIX as TYPE_PREFIX
from proxy.config.access_log import DEFAULT_FORMAT, compile_text_format
from proxy.config.regex import RegexError, compile_re2
from proxy.observe.access_log import AccessLogSink
from proxy.stream_info import StreamInfo
from proxy.timers import http_date

if TYPE_CHECKING:
    import datetime

    from proxy.config.bootstrap import BootstrapConfig
    from proxy.config.compile import CompiledConfig
    from proxy.config.tls import Certificates
    from proxy.config.x509_facts import CertificateFacts
    from proxy.context import ProxyContext
    from proxy.listener import ListenerHandle
    from proxy.observe.observability import Observability
    from proxy.observe.stats import Stats
    from proxy.upstream.cluster_manager import Cluster
    from proxy.upstream.host import Host

PROXY_VERSION = "appmesh-local/0.1.0/1.0/Clean/RELEASE/Python"
_ADMIN_LOG_FORMAT = compile_text_format(DEFAULT_FORMAT)


@dataclass(frozen=True)
class AdminRequest:
    """One admin request: what the handlers read of it."""

    method: str
    path: str
    query: dict[str, str]  # the first value of each name, as aiohttp's ``query.get`` gave
    path_qs: str
    version: str
    headers: dict[str, str]  # lower-case names


@dataclass(frozen=True)
class AdminResponse:
    text: str
    status: int = 200
    content_type: str = "text/plain"

    def encode(self, head_only: bool, keep_alive: bool) -> bytes:
        body = self.text.encode()
        reason = HTTPStatus(self.status).phrase
        head = (
            f"HTTP/1.1 {self.status} {reason}\r\n"
            f"Content-Type: {self.content_type}; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Date: {http_date(time.time())}\r\n"
            + ("" if keep_alive else "Connection: close\r\n")
            + ("Allow: GET,HEAD\r\n" if self.status == 405 else "")
            + "\r\n"
        )
        return head.encode("latin-1") + (b"" if head_only else body)


Handler = Callable[[AdminRequest], AdminResponse]


def _json(data: Any) -> AdminResponse:
    # Envoy pretty-prints admin JSON with one-space indents.
    return AdminResponse(json.dumps(data, indent=1) + "\n", content_type="application/json")


class _AdminConnection(asyncio.Protocol):
    """One admin client connection, parsed by httptools; answered request by request."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._url = b""
        self._headers: dict[str, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.admin.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self.admin.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(AdminResponse("Bad Request\n", 400).encode(False, False))
            self._close()

    def on_message_begin(self) -> None:
        self._url, self._headers = b"", {}

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        url = httptools.parse_url(self._url)
        path = unquote((url.path or b"/").decode("latin-1"))
        query_text = (url.query or b"").decode("latin-1")
        query: dict[str, str] = {}
        for name, value in parse_qsl(query_text, keep_blank_values=True):
            query.setdefault(name, value)
        request = AdminRequest(
            method=self.parser.get_method().decode("latin-1"),
            path=path,
            query=query,
            path_qs=path + (f"?{query_text}" if query_text else ""),
            version=self.parser.get_http_version(),
            headers=self._headers,
        )
        keep_alive = self.parser.should_keep_alive()
        response = self.admin.respond(request, self.peer)
        self.transport.write(response.encode(request.method == "HEAD", keep_alive))
        if not keep_alive:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


class SecretSource(Protocol):
    """What the admin shows of the local SDS agent's client (``proxy.sds_client``)."""

    status: str
    names: tuple[str, ...]
    versions: dict[str, str]
    last_rejection: str


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
    def sds(self) -> SecretSource | None: ...

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
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_AdminConnection] = set()
        self._access_log_path = access_log
        self._access_log: AccessLogSink | None = None
        self.routes: dict[str, Handler] = {
            "/": self.index,
            "/server_info": self.server_info,
            "/ready": self.ready,
            "/stats": self.stats,
            "/stats/prometheus": self.prometheus,
            "/clusters": self.clusters,
            "/config_dump": self.config_dump,
            "/listeners": self.listeners,
            "/certs": self.certs,
        }

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        if self._access_log_path:
            self._access_log = AccessLogSink(self._access_log_path, loop)
        self._server = await loop.create_server(
            lambda: _AdminConnection(self), host, port, reuse_address=True
        )
        name = self._server.sockets[0].getsockname() if self._server.sockets else (host, port)
        self.bound = (name[0], name[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn._close()
            await self._server.wait_closed()
            self._server = None
        if self._access_log is not None:
            self._access_log.close()
            self._access_log = None

    def respond(self, request: AdminRequest, peer: str) -> AdminResponse:
        """Route one request, and write the admin access log's line when one is set."""
        started = asyncio.get_running_loop().time()
        handler = self.routes.get(request.path)
        if handler is None:
            response = AdminResponse("404: Not Found", 404)
        elif request.method not in ("GET", "HEAD"):
            response = AdminResponse("405: Method Not Allowed", 405)
        else:
            response = handler(request)
        if self._access_log is not None:
            self._log_request(request, response, peer, started)
        return response

    def _log_request(
        self, request: AdminRequest, response: AdminResponse, peer: str, started: float
    ) -> None:
        """The bootstrap's ``admin.access_log``: one line per admin request, in Envoy's
        default format (the ECS health check's curls included, as with Envoy)."""
        assert self._access_log is not None
        info = StreamInfo(started, f"HTTP/{request.version}", peer, "", 0)
        info.request_headers = {**request.headers, ":method": request.method,
                                ":path": request.path_qs,
                                ":authority": request.headers.get("host", "")}  # fmt: skip
        info.end = asyncio.get_running_loop().time()
        info.response_code = response.status
        info.bytes_sent = len(response.text.encode())
        self._access_log.write(_ADMIN_LOG_FORMAT(info))

    def _bootstrap(self) -> dict[str, Any]:
        bootstrap = self.server.bootstrap
        return dict(bootstrap.raw) if bootstrap is not None else {"node": self.server.node}

    # -- handlers ---------------------------------------------------------------------------
    def index(self, request: AdminRequest) -> AdminResponse:
        return AdminResponse("\n".join(sorted(self.routes)) + "\n")

    def server_info(self, request: AdminRequest) -> AdminResponse:
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

    def ready(self, request: AdminRequest) -> AdminResponse:
        state = self.server.state
        return AdminResponse(f"{state}\n", status=200 if state == "LIVE" else 503)

    def stats(self, request: AdminRequest) -> AdminResponse:
        stats = self.server.stats
        pattern = request.query.get("filter")
        try:  # RE2: a client's pattern runs in linear time on the loop that carries traffic
            name_filter = compile_re2(pattern) if pattern else None
        except RegexError as exc:
            return AdminResponse(f"Invalid regex: {exc}\n", 400)
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
            return self.prometheus(request)
        return AdminResponse("".join(f"{n}: {v}\n" for n, v in rows))

    def prometheus(self, request: AdminRequest) -> AdminResponse:
        observability = self.server.observability
        if observability is None:
            text = self.server.stats.render_prometheus()
        else:  # with App Mesh's stats tags and the metrics extension's envoy_appmesh_*
            text = observability.render_prometheus()
        return AdminResponse(text, content_type="text/plain")

    def clusters(self, request: AdminRequest) -> AdminResponse:
        clusters = list(self.server.ctx.clusters.clusters.values())
        if request.query.get("format") == "json":
            return _json({"cluster_statuses": [_cluster_json(c) for c in clusters]})
        return AdminResponse("".join(_cluster_text(c) for c in clusters))

    def listeners(self, request: AdminRequest) -> AdminResponse:
        handles = self.server.listeners
        if request.query.get("format") == "json":
            statuses = [
                {"name": name, "local_address": _socket(*handle.bound)}
                for name, handle in handles.items()
            ]
            return _json({"listener_statuses": statuses})
        lines = [f"{name}::{h.bound[0]}:{h.bound[1]}\n" for name, h in handles.items()]
        return AdminResponse("".join(lines))

    def certs(self, request: AdminRequest) -> AdminResponse:
        """Envoy's ``/certs``: per TLS context in use (listener filter chains, then
        clusters), its trust anchor and certificates; never a private key."""
        import datetime  # here, not at start: 0.45 MB that only /certs uses

        now = datetime.datetime.now(datetime.UTC)
        held = _tls_contexts(self.server.config)
        return _json({"certificates": [_certificates_json(c, now) for c in held]})

    def config_dump(self, request: AdminRequest) -> AdminResponse:
        config = self.server.config
        version = config.version
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        wanted = _by_name(config.resources)
        configs: list[dict[str, Any]] = [
            {"@type": TYPE_PREFIX + "envoy.admin.v3.BootstrapConfigDump",
             "bootstrap": self._bootstrap()},
            {"@type": TYPE_PREFIX + "envoy.admin.v3.ClustersConfigDump",
             "version_info": version,
             "dynamic_active_clusters": [
                 {"version_info": version, "cluster": dict(c.raw), "last_updated": stamp}
                 for c in config.clusters.values()],
             "dynamic_warming_clusters": [
                 {"version_info": version, "cluster": wanted.get(("Cluster", name), {}),
                  "last_updated": stamp}
                 for name in config.warming_clusters]},
            {"@type": TYPE_PREFIX + "envoy.admin.v3.ListenersConfigDump",
             "version_info": version,
             "dynamic_listeners": _listener_dumps(config, wanted, stamp)},
            {"@type": TYPE_PREFIX + "envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [
                 {"version_info": version, "route_config": dict(t.raw), "last_updated": stamp}
                 for t in config.route_tables.values()]},
            self._secrets_dump(config, stamp),
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

    def _secrets_dump(self, config: CompiledConfig, stamp: str) -> dict[str, Any]:
        """Envoy's ``SecretsConfigDump``: the secrets in use, private keys redacted, and
        the local agent's secrets still awaited (``dynamic_warming_secrets``)."""
        sds = self.server.sds
        active = [
            {"name": name, "version_info": config.version, "last_updated": stamp,
             "secret": _redacted(secret)}
            for name, secret in config.secrets.items()
        ]  # fmt: skip
        for name, secret in config.local_secrets.items():
            version = sds.versions.get(name, "") if sds else ""
            active.append({"name": name, "version_info": version, "last_updated": stamp,
                           "secret": _redacted(secret)})  # fmt: skip
        warming = [
            {"name": name, "version_info": "uninitialized", "secret": {"name": name}}
            for name in (sds.names if sds else ())
            if name not in config.local_secrets
        ]
        return {"@type": TYPE_PREFIX + "envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": active, "dynamic_warming_secrets": warming}  # fmt: skip


def _by_name(resources: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Each listener and cluster of the config as received: (kind, name) -> resource."""
    out = {}
    for resource in resources:
        kind = str(resource.get("@type", "")).rpartition(".")[2]
        if kind in ("Listener", "Cluster"):
            out[(kind, str(resource.get("name", "")))] = dict(resource)
    return out


def _listener_dumps(
    config: CompiledConfig, wanted: dict[tuple[str, str], dict[str, Any]], stamp: str
) -> list[dict[str, Any]]:
    """Envoy's ``dynamic_listeners``: the serving version (``active_state``) and, for a
    listener waiting for its SDS secrets, the version waiting (``warming_state``)."""
    version = config.version
    dumps: dict[str, dict[str, Any]] = {
        name: {"name": name, "active_state": {
            "version_info": version, "listener": dict(lc.raw), "last_updated": stamp}}
        for name, lc in config.listeners.items()
    }  # fmt: skip
    for name in config.warming_listeners:
        entry = dumps.setdefault(name, {"name": name})
        entry["warming_state"] = {"version_info": version, "last_updated": stamp,
                                  "listener": wanted.get(("Listener", name), {})}  # fmt: skip
    return list(dumps.values())


def _redacted(secret: Any) -> dict[str, Any]:
    """A secret as Envoy dumps it: the private key replaced by ``[redacted]``."""
    out = dict(secret)
    pair = out.get("tls_certificate")
    if isinstance(pair, dict) and "private_key" in pair:
        out["tls_certificate"] = {**pair, "private_key": {"inline_string": "[redacted]"}}
    return out


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


def _tls_contexts(config: CompiledConfig) -> list[Certificates]:
    """The certificates of every compiled TLS context, listeners' first."""
    held = []
    for listener in config.listeners.values():
        for chain in (*listener.filter_chains, listener.default_chain):
            if chain is not None and chain.tls is not None:
                held.append(chain.tls.certificates)
    held.extend(c.tls.certificates for c in config.clusters.values() if c.tls is not None)
    return held


def _certificates_json(held: Certificates, now: datetime.datetime) -> dict[str, Any]:
    anchors = [held.ca_cert] if held.ca_cert is not None else []
    return {
        "ca_cert": [_certificate_json(c, now) for c in anchors],
        "cert_chain": [_certificate_json(c, now) for c in held.cert_chain],
    }


def _certificate_json(facts: CertificateFacts, now: datetime.datetime) -> dict[str, Any]:
    """Envoy's ``CertificateDetails`` in proto JSON (its uint64 as a string)."""
    return {
        "path": facts.path,
        "serial_number": facts.serial_number,
        "subject_alt_names": [{kind: value} for kind, value in facts.subject_alt_names],
        "days_until_expiration": str(facts.days_until_expiration(now)),
        "valid_from": _timestamp(facts.valid_from),
        "expiration_time": _timestamp(facts.expiration_time),
    }


def _timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
