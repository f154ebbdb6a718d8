"""Envoy v3 type URLs and the small helpers that wrap a body into a typed ``Any``.

Every resource and every ``typed_config`` we emit names its protobuf type; keeping the
URLs in one place means a typo shows up once, and ``validate.py`` can check that each
URL here resolves to a message the installed ``xds-protos`` knows.
"""

from __future__ import annotations

from typing import Any

PREFIX = "type.googleapis.com/"

LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_CONFIGURATION = PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
CLUSTER_LOAD_ASSIGNMENT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
BOOTSTRAP = PREFIX + "envoy.config.bootstrap.v3.Bootstrap"

HTTP_CONNECTION_MANAGER = (
    PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
TCP_PROXY = PREFIX + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = PREFIX + "envoy.extensions.filters.http.router.v3.Router"
HEALTH_CHECK_FILTER = PREFIX + "envoy.extensions.filters.http.health_check.v3.HealthCheck"
ORIGINAL_DST = PREFIX + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
TLS_INSPECTOR = PREFIX + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
DOWNSTREAM_TLS = PREFIX + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
FILE_ACCESS_LOG = PREFIX + "envoy.extensions.access_loggers.file.v3.FileAccessLog"
HTTP_PROTOCOL_OPTIONS = PREFIX + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
PREVIOUS_HOSTS = PREFIX + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
XRAY = PREFIX + "envoy.config.trace.v3.XRayConfig"
DATADOG = PREFIX + "envoy.config.trace.v3.DatadogConfig"
ZIPKIN = PREFIX + "envoy.config.trace.v3.ZipkinConfig"
DOG_STATSD = PREFIX + "envoy.config.metrics.v3.DogStatsdSink"

# Extension names as Envoy registers them (the ``name`` beside a ``typed_config``).
HCM_NAME = "envoy.filters.network.http_connection_manager"
TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy"
ROUTER_NAME = "envoy.filters.http.router"
HEALTH_CHECK_NAME = "envoy.filters.http.health_check"
ORIGINAL_DST_NAME = "envoy.filters.listener.original_dst"
TLS_INSPECTOR_NAME = "envoy.filters.listener.tls_inspector"
TLS_SOCKET_NAME = "envoy.transport_sockets.tls"
FILE_ACCESS_LOG_NAME = "envoy.access_loggers.file"
PREVIOUS_HOSTS_NAME = "envoy.retry_host_predicates.previous_hosts"

ALL_TYPE_URLS: tuple[str, ...] = tuple(
    value
    for key, value in sorted(globals().items())
    if key.isupper() and isinstance(value, str) and value.startswith(PREFIX) and value != PREFIX
)


def ads_source() -> dict[str, Any]:
    """A ``ConfigSource`` that fetches over the proxy's ADS stream, API v3."""
    return {"ads": {}, "resource_api_version": "V3"}


def typed(type_url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return ``body`` as a JSON ``Any``: the ``@type`` key first, then the fields."""
    return {"@type": type_url, **(body or {})}


def extension(name: str, type_url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a ``{name, typed_config}`` pair, the shape of every Envoy extension slot."""
    return {"name": name, "typed_config": typed(type_url, body)}
