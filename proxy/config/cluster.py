"""Compiled ``Cluster`` and ``ClusterLoadAssignment`` resources (immutable, per version).

Only the settings the data path acts on are kept, with Envoy's defaults filled in so the
runtime never has to know them: circuit breakers 1024/1024/1024/3, outlier detection
5 consecutive 5xx / 10 s interval / 30 s base ejection / 10 % max ejection, a 50 %
healthy-panic threshold, a 5 s connect timeout and a 1 h upstream idle timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from envoy_bootstrap.envoy_types import HTTP_PROTOCOL_OPTIONS
from proxy.config.protojson import (
    ConfigError,
    aggregate_stats_tag,
    duration,
    flag,
    percent,
    socket_address,
    type_url,
    uint,
)
from proxy.config.tls import NO_SECRETS, ClientTls, Secrets, compile_client
from proxy.config.unsupported import socket_kind

UNHEALTHY_EDS_STATES = frozenset({"UNHEALTHY", "DRAINING", "TIMEOUT"})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``circuit_breakers.thresholds`` for the DEFAULT priority."""

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    enforcing_consecutive_5xx: int = 100
    enforcing_consecutive_gateway_failure: int = 0
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 10.0


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """One active health check; ``kind`` is ``http``, ``tcp`` or ``grpc``."""

    kind: str
    timeout: float
    interval: float
    interval_jitter: float
    unhealthy_threshold: int
    healthy_threshold: int
    path: str = "/"
    host: str = ""
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 201),)
    send: bytes = b""
    receive: tuple[bytes, ...] = ()
    http2: bool = False  # an HTTP check over HTTP/2 (codec_client_type HTTP2)
    service_name: str = ""  # grpc.health.v1 HealthCheckRequest.service


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``LbEndpoint``: address, weight, EDS health and priority."""

    host: str
    port: int
    weight: int = 1
    healthy: bool = True
    priority: int = 0
    hostname: str = ""
    health_check_port: int = 0

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LoadAssignment:
    cluster_name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A compiled ``Cluster``. ``raw`` is kept for change detection and ``/config_dump``."""

    name: str
    discovery: str
    eds_service_name: str
    load_assignment: LoadAssignment | None
    connect_timeout: float
    lb_policy: str
    thresholds: Thresholds
    outlier: OutlierConfig | None
    health_checks: tuple[HealthCheckConfig, ...]
    panic_threshold: float
    idle_timeout: float | None
    max_requests_per_connection: int
    http2: bool
    raw: dict[str, Any]
    # ``http2_protocol_options.allow_connect``: upgrades may cross as extended CONNECT.
    allow_connect: bool = False
    cleanup_interval: float = 5.0  # ORIGINAL_DST: how long an unused destination is kept
    target_virtual_node: str = ""  # App Mesh's aggregate_stats metadata, for metrics
    tls: ClientTls | None = None  # TLS origination (UpstreamTlsContext)
    # Envoy's HTTP/1 client codec: 80 KiB of response head (http_parser's own limit, and
    # common_http_protocol_options.max_response_headers_kb since Envoy 1.32) and
    # common_http_protocol_options.max_headers_count (100) response headers.
    max_response_headers_kb: int = 80
    max_response_headers_count: int = 100


def compile_load_assignment(spec: dict[str, Any]) -> LoadAssignment:
    """A ``ClusterLoadAssignment`` (from EDS or a cluster's inline ``load_assignment``)."""
    name = str(spec.get("cluster_name", ""))
    endpoints: list[Endpoint] = []
    for locality in spec.get("endpoints", ()) or ():
        priority = uint(locality.get("priority"), 0)
        for lb in locality.get("lb_endpoints", ()) or ():
            endpoint = lb.get("endpoint") or {}
            host, port = socket_address(endpoint.get("address"))
            hc = endpoint.get("health_check_config") or {}
            endpoints.append(
                Endpoint(
                    host=host,
                    port=port,
                    weight=max(1, uint(lb.get("load_balancing_weight"), 1)),
                    healthy=lb.get("health_status", "UNKNOWN") not in UNHEALTHY_EDS_STATES,
                    priority=priority,
                    hostname=str(endpoint.get("hostname", "")),
                    health_check_port=uint(hc.get("port_value"), 0),
                )
            )
    return LoadAssignment(name, tuple(endpoints))


def _thresholds(spec: Any) -> Thresholds:
    for entry in (spec or {}).get("thresholds", ()) or ():
        if entry.get("priority", "DEFAULT") == "DEFAULT":
            return Thresholds(
                max_connections=uint(entry.get("max_connections"), 1024),
                max_pending_requests=uint(entry.get("max_pending_requests"), 1024),
                max_requests=uint(entry.get("max_requests"), 1024),
                max_retries=uint(entry.get("max_retries"), 3),
            )
    return Thresholds()


def _outlier(spec: Any) -> OutlierConfig | None:
    if not isinstance(spec, dict):
        return None
    base = duration(spec.get("base_ejection_time"), 30.0) or 30.0
    return OutlierConfig(
        consecutive_5xx=uint(spec.get("consecutive_5xx"), 5),
        consecutive_gateway_failure=uint(spec.get("consecutive_gateway_failure"), 5),
        enforcing_consecutive_5xx=uint(spec.get("enforcing_consecutive_5xx"), 100),
        enforcing_consecutive_gateway_failure=uint(
            spec.get("enforcing_consecutive_gateway_failure"), 0
        ),
        interval=duration(spec.get("interval"), 10.0) or 10.0,
        base_ejection_time=base,
        max_ejection_time=max(base, duration(spec.get("max_ejection_time"), 300.0) or 300.0),
        max_ejection_percent=percent(spec.get("max_ejection_percent"), 10.0),
    )


def _payload(spec: Any) -> bytes:
    if not isinstance(spec, dict):
        return b""
    if "text" in spec:
        try:
            return bytes.fromhex(str(spec["text"]))
        except ValueError as exc:
            raise ConfigError(f"health check payload is not hex: {spec!r}") from exc
    return str(spec.get("binary", "")).encode()


def _health_check(spec: dict[str, Any]) -> HealthCheckConfig | None:
    # The timings and thresholds are common to every kind; each kind then fills in its own fields.
    common = HealthCheckConfig(
        kind="",
        timeout=duration(spec.get("timeout"), 1.0) or 1.0,
        interval=duration(spec.get("interval"), 5.0) or 5.0,
        interval_jitter=duration(spec.get("interval_jitter"), 0.0) or 0.0,
        unhealthy_threshold=max(1, uint(spec.get("unhealthy_threshold"), 1)),
        healthy_threshold=max(1, uint(spec.get("healthy_threshold"), 1)),
    )
    if isinstance(spec.get("http_health_check"), dict):
        http = spec["http_health_check"]
        statuses = tuple(
            (uint(r.get("start"), 200), uint(r.get("end"), 201))
            for r in http.get("expected_statuses", ()) or ()
        )
        return replace(
            common,
            kind="http",
            path=str(http.get("path", "/")),
            host=str(http.get("host", "")),
            expected_statuses=statuses or ((200, 201),),
            http2=http.get("codec_client_type") == "HTTP2",
        )
    if isinstance(spec.get("tcp_health_check"), dict):
        tcp = spec["tcp_health_check"]
        return replace(
            common,
            kind="tcp",
            send=_payload(tcp.get("send")),
            receive=tuple(_payload(p) for p in tcp.get("receive", ()) or ()),
        )
    if isinstance(spec.get("grpc_health_check"), dict):
        grpc = spec["grpc_health_check"]
        return replace(
            common,
            kind="grpc",
            service_name=str(grpc.get("service_name", "")),
            host=str(grpc.get("authority", "")),
        )
    return None  # custom health checkers are not supported; ignore rather than reject


def _http_options(spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Common HTTP protocol options and whether the upstream speaks HTTP/2."""
    options = (spec.get("typed_extension_protocol_options") or {}).get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    )
    if isinstance(options, dict) and type_url(options) in ("", HTTP_PROTOCOL_OPTIONS):
        explicit = options.get("explicit_http_config") or {}
        http2 = "http2_protocol_options" in explicit
        return options.get("common_http_protocol_options") or {}, http2
    legacy = spec.get("common_http_protocol_options") or {}
    return legacy, "http2_protocol_options" in spec


def _allow_connect(spec: dict[str, Any]) -> bool:
    """The cluster's ``http2_protocol_options.allow_connect`` (typed or legacy)."""
    options = (spec.get("typed_extension_protocol_options") or {}).get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    )
    explicit = (options.get("explicit_http_config") or {}) if isinstance(options, dict) else {}
    h2 = explicit.get("http2_protocol_options") or spec.get("http2_protocol_options") or {}
    return isinstance(h2, dict) and flag(h2.get("allow_connect"), False)


def _check_lb_policy(name: str, discovery: str, lb_policy: str) -> None:
    """Envoy's rule: an ORIGINAL_DST cluster's destination *is* its balancing decision,
    so it takes CLUSTER_PROVIDED and nothing else, and only such clusters provide one."""
    provided = lb_policy == "CLUSTER_PROVIDED"
    if (discovery == "ORIGINAL_DST" and not provided) or (
        provided and discovery not in ("ORIGINAL_DST", "CUSTOM")
    ):
        raise ConfigError(
            f"cluster {name}: LB policy {lb_policy} is not valid for cluster type "
            f"{discovery}; only CLUSTER_PROVIDED is allowed with ORIGINAL_DST"
        )


def compile_cluster(spec: dict[str, Any], secrets: Secrets = NO_SECRETS) -> ClusterConfig:
    """A ``Cluster`` dict; STATIC/STRICT_DNS/LOGICAL_DNS carry endpoints, EDS waits for them."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("cluster without name")
    discovery = str(spec.get("type", "STATIC"))
    if isinstance(spec.get("cluster_type"), dict):
        discovery = "CUSTOM"
    lb_policy = str(spec.get("lb_policy", "ROUND_ROBIN"))
    _check_lb_policy(name, discovery, lb_policy)
    eds = spec.get("eds_cluster_config") or {}
    assignment = None
    if isinstance(spec.get("load_assignment"), dict):
        assignment = compile_load_assignment({"cluster_name": name, **spec["load_assignment"]})
    common, http2 = _http_options(spec)
    lb_config = spec.get("common_lb_config") or {}
    checks = tuple(
        check
        for check in (_health_check(h) for h in spec.get("health_checks", ()) or ())
        if check is not None
    )
    return ClusterConfig(
        name=name,
        discovery=discovery,
        eds_service_name=str(eds.get("service_name") or name),
        load_assignment=assignment,
        connect_timeout=duration(spec.get("connect_timeout"), 5.0) or 5.0,
        lb_policy=lb_policy,
        thresholds=_thresholds(spec.get("circuit_breakers")),
        outlier=_outlier(spec.get("outlier_detection")),
        health_checks=checks,
        panic_threshold=percent(lb_config.get("healthy_panic_threshold"), 50.0),
        idle_timeout=duration(common.get("idle_timeout"), 3600.0) or None,
        max_requests_per_connection=uint(
            common.get("max_requests_per_connection", spec.get("max_requests_per_connection")), 0
        ),
        http2=http2,
        raw=spec,
        allow_connect=http2 and _allow_connect(spec),
        cleanup_interval=duration(spec.get("cleanup_interval"), 5.0) or 5.0,
        target_virtual_node=aggregate_stats_tag(spec, "TargetVirtualNode"),
        tls=_client_tls(name, spec.get("transport_socket"), secrets),
        max_response_headers_kb=uint(common.get("max_response_headers_kb"), 80) or 80,
        max_response_headers_count=uint(common.get("max_headers_count"), 100) or 100,
    )


def _client_tls(name: str, socket: Any, secrets: Secrets) -> ClientTls | None:
    """The cluster's TLS origination context, when its transport socket is TLS."""
    if not isinstance(socket, dict) or socket_kind(socket) != "tls":
        return None
    try:
        return compile_client(socket, secrets)
    except ConfigError as exc:
        raise ConfigError(f"cluster {name}: {exc}") from exc
