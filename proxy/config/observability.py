"""What the bootstrap asks of the sidecar's tracing and metrics, compiled once at start.

``proxy.config.bootstrap`` fills these from the bootstrap's ``tracing``,
``stats_sinks``, ``stats_config``, ``stats_flush_interval`` and node metadata, which
``envoy_bootstrap`` built from the App Mesh image's environment (or ``-c`` named). The
data path only asks whether a tracer or a metrics extension exists.

One addition of ours, because App Mesh's Envoy never wrote to CloudWatch itself (its
CloudWatch agent sidecar did, in whatever namespace the agent's config named): the
metrics extension writes to CloudWatch when the node metadata's
``appmesh_local.cloudwatch`` names an endpoint (``AWS_ENDPOINT_URL_CLOUDWATCH`` or
``AWS_ENDPOINT_URL``), in ``APPMESH_CLOUDWATCH_NAMESPACE`` (default ``CWAgent``, the
agent's own default namespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SAMPLING_RATE = 0.05  # X-Ray's default rule: 1 a second, then 5%
DEFAULT_FLUSH_INTERVAL = 5.0


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


@dataclass(frozen=True)
class TracingConfig:
    """Envoy's ``XRayConfig``: where segments go, what they say, how requests are sampled."""

    segment_name: str
    daemon: tuple[str, int]
    origin: str = "AWS::AppMesh::Proxy"
    aws: dict[str, Any] = field(default_factory=dict)  # ``segment_fields.aws``, verbatim
    manifest_path: str | None = None  # ``sampling_rule_manifest.filename``
    manifest: Any = None  # ``sampling_rule_manifest.inline_string``, parsed
    sampling_rate: float = DEFAULT_SAMPLING_RATE


@dataclass(frozen=True)
class CloudWatchConfig:
    endpoint: str
    region: str
    namespace: str


@dataclass(frozen=True)
class StatsTags:
    """``stats_config.stats_tags``: fixed tags on every stat, and Envoy's regex extractors
    (the first group is cut from the name, the second, or else the first, is the value)."""

    fixed: tuple[tuple[str, str], ...] = ()
    regex: tuple[tuple[str, re.Pattern[str]], ...] = ()


@dataclass(frozen=True)
class MetricsConfig:
    extension: bool  # node metadata aws.appmesh.metric_filter level "1"
    tags: StatsTags
    flush_interval: float  # seconds
    dogstatsd: tuple[str, int] | str | None  # (ip, port), a Unix socket path, or off
    cloudwatch: CloudWatchConfig | None


@dataclass(frozen=True)
class ObservabilityConfig:
    identity: MeshIdentity | None
    tracing: TracingConfig | None
    metrics: MetricsConfig


OFF = ObservabilityConfig(
    None, None, MetricsConfig(False, StatsTags(), DEFAULT_FLUSH_INTERVAL, None, None)
)
