"""What the environment asks of the sidecar's tracing and metrics, read as App Mesh's image did.

The variables and defaults are the Envoy image's (``ENABLE_ENVOY_XRAY_TRACING``,
``XRAY_DAEMON_PORT``, ``XRAY_SAMPLING_RATE``, ``APPMESH_METRIC_EXTENSION_VERSION``,
``ENVOY_STATS_FLUSH_INTERVAL``, ``ENABLE_ENVOY_DOG_STATSD``, ...), parsed with the same
rules as ``envoy_bootstrap`` (Go booleans and durations, a bad value refuses to start), so
a task definition behaves the same with either proxy. Everything is decided here, once:
the data path only asks whether a tracer or a metrics extension exists.

Two additions of ours, because App Mesh's Envoy never wrote to CloudWatch itself (its
CloudWatch agent sidecar did, in whatever namespace the agent's config named): metrics go
to CloudWatch when ``AWS_ENDPOINT_URL_CLOUDWATCH`` or ``AWS_ENDPOINT_URL`` names an
endpoint, in ``APPMESH_CLOUDWATCH_NAMESPACE`` (default ``CWAgent``, the agent's own
default namespace).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from envoy_bootstrap.durations import parse_go_duration
from envoy_bootstrap.envvars import Env, mesh_resource
from envoy_bootstrap.observability import parse_sampling_rate

DEFAULT_SAMPLING_RATE = 0.05
DEFAULT_FLUSH_INTERVAL = 5.0
DEFAULT_NAMESPACE = "CWAgent"
XRAY_DAEMON_PORT = 2000
STATSD_PORT = 8125


@dataclass(frozen=True)
class MeshIdentity:
    """The resource this proxy serves: its names in segments, dimensions and tags."""

    mesh: str
    kind: str  # virtualNode or virtualGateway
    name: str

    @property
    def dimension(self) -> str:
        """``VirtualNode`` / ``VirtualGateway``: the metrics extension's dimension name."""
        return self.kind[:1].upper() + self.kind[1:]

    @property
    def snake_kind(self) -> str:
        """``virtual_node`` / ``virtual_gateway``: the stats tag and X-Ray field suffix."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.kind).lstrip("_")


@dataclass(frozen=True)
class TracingConfig:
    segment_name: str
    daemon: tuple[str, int]
    sampling_rate: float
    manifest_path: str | None


@dataclass(frozen=True)
class CloudWatchConfig:
    endpoint: str
    region: str
    namespace: str


@dataclass(frozen=True)
class MetricsConfig:
    extension: bool  # APPMESH_METRIC_EXTENSION_VERSION=1
    stats_tags: bool  # ENABLE_ENVOY_STATS_TAGS=1
    flush_interval: float  # seconds
    dogstatsd: tuple[str, int] | str | None  # (host, port), a Unix socket path, or off
    cloudwatch: CloudWatchConfig | None


@dataclass(frozen=True)
class ObservabilityConfig:
    identity: MeshIdentity | None
    tracing: TracingConfig | None
    metrics: MetricsConfig

    @classmethod
    def from_environment(cls, env: Mapping[str, str], node_id: str) -> ObservabilityConfig:
        """Raises ``ValueError`` for values the App Mesh image would refuse."""
        values = Env(env)
        identity = _identity(node_id)
        tracing = None
        if values.truthy("ENABLE_ENVOY_XRAY_TRACING"):
            tracing = _tracing(values, identity)
        return cls(identity, tracing, _metrics(values, identity))


OFF = ObservabilityConfig(
    None, None, MetricsConfig(False, False, DEFAULT_FLUSH_INTERVAL, None, None)
)


def _identity(node_id: str) -> MeshIdentity | None:
    try:
        resource = mesh_resource(node_id)
    except ValueError:
        return None
    return MeshIdentity(resource.mesh, resource.type, resource.name)


def _tracing(env: Env, identity: MeshIdentity | None) -> TracingConfig:
    default_name = f"{identity.mesh}/{identity.name}" if identity else "appmesh-proxy"
    return TracingConfig(
        segment_name=env.or_("XRAY_SEGMENT_NAME", default_name),
        daemon=xray_daemon(env),
        sampling_rate=sampling_rate(env),
        manifest_path=env.get("XRAY_SAMPLING_RULE_MANIFEST") or None,
    )


def sampling_rate(env: Env) -> float:
    """``XRAY_SAMPLING_RATE`` (default 5%), parsed exactly as the bootstrap parses it."""
    text = env.get("XRAY_SAMPLING_RATE")
    return parse_sampling_rate(text) if text else DEFAULT_SAMPLING_RATE


def xray_daemon(env: Env) -> tuple[str, int]:
    """``AWS_XRAY_DAEMON_ADDRESS`` (``host:port``, or the SDKs' ``tcp:h:p udp:h:p``) or
    127.0.0.1:``XRAY_DAEMON_PORT``; resolved now, so sends never wait on DNS."""
    port = env.integer("XRAY_DAEMON_PORT", XRAY_DAEMON_PORT)
    value = env.get("AWS_XRAY_DAEMON_ADDRESS")
    if not value:
        return "127.0.0.1", port
    for part in value.split():
        if part.startswith("udp:"):
            value = part[4:]
            break
    host, _, port_text = value.rpartition(":")
    if not host or not port_text.isdigit():
        host, port_text = value, str(port)
    return _resolve(host.strip("[]"), int(port_text), "AWS_XRAY_DAEMON_ADDRESS")


def _resolve(host: str, port: int, variable: str) -> tuple[str, int]:
    try:
        info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise ValueError(f"{variable}: cannot resolve {host!r}: {exc}") from None
    return str(info[0][4][0]), port


def flush_interval(env: Env) -> float:
    """``ENVOY_STATS_FLUSH_INTERVAL`` as a Go duration (``5000ms``, ``5s``), in seconds."""
    text = env.get("ENVOY_STATS_FLUSH_INTERVAL")
    if not text:
        return DEFAULT_FLUSH_INTERVAL
    try:
        seconds = float(parse_go_duration(text)[:-1])
    except ValueError:
        raise ValueError(
            f'ENVOY_STATS_FLUSH_INTERVAL environment variable ("{text}") must be a duration '
            'such as "5000ms" or "5s"'
        ) from None
    if seconds <= 0:
        raise ValueError("ENVOY_STATS_FLUSH_INTERVAL must be positive")
    return seconds


def _metrics(env: Env, identity: MeshIdentity | None) -> MetricsConfig:
    extension = env.or_("APPMESH_METRIC_EXTENSION_VERSION", "0") == "1" and identity is not None
    return MetricsConfig(
        extension=extension,
        stats_tags=env.truthy("ENABLE_ENVOY_STATS_TAGS") and identity is not None,
        flush_interval=flush_interval(env),
        dogstatsd=_dogstatsd(env),
        cloudwatch=_cloudwatch(env) if extension else None,
    )


def _dogstatsd(env: Env) -> tuple[str, int] | str | None:
    if not env.truthy("ENABLE_ENVOY_DOG_STATSD"):
        return None
    path = env.get("STATSD_SOCKET_PATH")
    if path:
        return path
    host = env.or_("STATSD_ADDRESS", "127.0.0.1")
    return _resolve(host, env.integer("STATSD_PORT", STATSD_PORT), "STATSD_ADDRESS")


def _cloudwatch(env: Env) -> CloudWatchConfig | None:
    endpoint = env.first("AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    region = env.first("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
    namespace = env.or_("APPMESH_CLOUDWATCH_NAMESPACE", DEFAULT_NAMESPACE)
    return CloudWatchConfig(endpoint, region, namespace)
