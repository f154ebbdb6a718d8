"""The Envoy v3 bootstrap compiled into the proxy's start-up settings, as Envoy reads it.

``appmesh-proxy`` starts the way Envoy does: from a bootstrap, either the one
``envoy_bootstrap`` builds from the App Mesh image's environment (what ``appmesh-local
bootstrap`` prints) or a file named with ``-c``. This module reads its ``node``,
``admin``, ``static_resources`` (the control-plane cluster), ``dynamic_resources``,
``cluster_manager``, ``layered_runtime``, ``tracing``, ``stats_sinks``, ``stats_config``
and ``stats_flush_interval``.

What the proxy cannot honour is refused with one line naming the field, before anything
starts, as Envoy refuses a bootstrap naming an extension it was not built with: another
tracer or stats sink, static listeners or extra static clusters, a control plane
reached by ``google_grpc`` or a Unix socket, runtime keys it does not know. One static
cluster besides the control plane's is read: a gRPC cluster on a Unix socket (the image's
``static_cluster_sds_unix_socket`` from ``APPMESH_SDS_SOCKET_PATH``), the local SDS agent
(SPIRE's) that TLS contexts may fetch secrets from (``proxy.sds_client``).

The control plane is reached at the ADS cluster's address. With ``api_type: GRPC``
(State of the World) the proxy speaks REST-JSON discovery there (``POST
/v3/discovery:<type>``, long-polled, ``proxy.xds.rest``): the same service, which
appmesh-local serves over both (REST on its main port, gRPC ADS on ``--xds-port``). With
``api_type: DELTA_GRPC`` it opens incremental ADS over gRPC to that address, as Envoy
does (``proxy.xds.delta``: ``--xds-port``, or ``--xds-tls-port`` behind a TLS transport
socket). Other API types (``REST``, ``AGGREGATED_GRPC``, ``AGGREGATED_DELTA_GRPC``) are
refused. Requests and
streams are SigV4-signed (``proxy.xds_auth``), which is what the ``initial_metadata``
account claim a real Envoy sends stands in for.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from envoy_bootstrap import envoy_types as types
from envoy_bootstrap.envvars import mesh_resource
from proxy.config.observability import (
    DEFAULT_FLUSH_INTERVAL,
    CloudWatchConfig,
    MeshIdentity,
    MetricsConfig,
    ObservabilityConfig,
    StatsTags,
    TracingConfig,
)
from proxy.config.protojson import ConfigError, duration, type_url

NOT_SUPPORTED = "is not supported by appmesh-proxy"
METADATA = "appmesh_local."
_SECTIONS = {
    "node",
    "admin",
    "static_resources",
    "dynamic_resources",
    "cluster_manager",
    "layered_runtime",
    "tracing",
    "stats_sinks",
    "stats_config",
    "stats_flush_interval",
}
# Runtime keys this proxy knows, and what their value does here. A key that is not
# listed is refused; a value the proxy does not act on is said at start.
_RUNTIME = {
    "envoy.features.enable_all_deprecated_features": "nothing deprecated is refused here",
    "re2.max_program_size.error_level": "Python regexes have no program-size limit",
    "envoy.reloadable_features.no_extension_lookup_by_name": "extensions are found by type URL"
    " (and by name for configs without one)",
    "envoy.reloadable_features.tcp_pool_idle_timeout": "tcp_proxy keeps no idle upstream pool",
}
_RUNTIME_NOT_ACTED_ON = {
    "envoy.reloadable_features.http_set_tracing_decision_in_request_id": "x-request-id does "
    "not carry the tracing decision",
    "envoy.reloadable_features.sanitize_original_path": "x-envoy-original-path is not "
    "stripped from edge requests",
    "envoy.reloadable_features.successful_active_health_check_uneject_host": "a passing "
    "health check does not uneject an outlier",
}


@dataclass(frozen=True)
class SdsAgent:
    """A static gRPC cluster on a Unix socket: where local SDS secrets are fetched."""

    cluster: str
    socket_path: str


@dataclass(frozen=True)
class BootstrapConfig:
    """What the bootstrap decides for the life of the process."""

    node: dict[str, Any]  # sent as-is in every DiscoveryRequest
    xds_endpoints: tuple[str, ...]  # http(s)://host:port of each ADS cluster endpoint
    admin_address: tuple[str, int] | None
    admin_access_log: str | None
    outlier_event_log: str | None
    observability: ObservabilityConfig
    raw: dict[str, Any]  # for /config_dump
    notes: tuple[str, ...] = ()  # runtime flags accepted but not acted on, logged at start
    sds_agent: SdsAgent | None = None  # the local SDS agent's static cluster, if any
    xds_delta: bool = False  # ads_config.api_type DELTA_GRPC: incremental ADS over gRPC
    #: The ADS cluster's HTTP/2 ``connection_keepalive`` (interval, timeout, jitter as a
    #: fraction); ``None`` when it names none (the Delta client then pings at its default).
    xds_keepalive: tuple[float, float, float] | None = None

    @property
    def xds_endpoint(self) -> str:
        """The first control-plane endpoint (the one tried first)."""
        return self.xds_endpoints[0]

    @property
    def node_id(self) -> str:
        return str(self.node.get("id", ""))

    def metadata(self, name: str, default: Any = None) -> Any:
        """One of the node's ``appmesh_local.*`` metadata values."""
        return (self.node.get("metadata") or {}).get(METADATA + name, default)


def compile_bootstrap(spec: Any) -> BootstrapConfig:
    """Raises ``ConfigError`` (one line) for what the proxy cannot honour."""
    if not isinstance(spec, dict):
        raise ConfigError("bootstrap: must be a JSON object")
    unknown = sorted(set(spec) - _SECTIONS)
    if unknown:
        raise ConfigError(f"bootstrap: {', '.join(unknown)} {NOT_SUPPORTED}")
    node = _node(spec.get("node"))
    identity = _identity(node)
    tracing = _tracing(spec.get("tracing"), identity)  # before the tracers' static clusters
    address, access_log = _admin(spec.get("admin"))
    notes = _runtime(spec.get("layered_runtime"))
    metrics = MetricsConfig(
        extension=_metric_filter(node) and identity is not None,
        tags=_stats_tags(spec.get("stats_config")),
        flush_interval=_flush_interval(spec.get("stats_flush_interval")),
        dogstatsd=_stats_sinks(spec.get("stats_sinks")),
        cloudwatch=_cloudwatch(node),
    )
    return BootstrapConfig(
        node=node,
        xds_endpoints=_xds_endpoints(spec.get("dynamic_resources"), spec.get("static_resources")),
        sds_agent=_sds_agent(spec.get("dynamic_resources"), spec.get("static_resources")),
        admin_address=address,
        admin_access_log=access_log,
        outlier_event_log=_cluster_manager(spec.get("cluster_manager")),
        observability=ObservabilityConfig(identity, tracing, metrics),
        raw=spec,
        notes=notes,
        xds_delta=_ads_config(spec.get("dynamic_resources"))[1] == "DELTA_GRPC",
        xds_keepalive=_xds_keepalive(spec.get("dynamic_resources"), spec.get("static_resources")),
    )


def load_bootstrap(path: str) -> dict[str, Any]:
    """A ``-c`` file: JSON, or YAML when PyYAML is installed (Envoy reads both)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        return dict(json.loads(text))
    except ValueError as exc:
        if not path.endswith((".yaml", ".yml")):
            raise ConfigError(f"bootstrap {path}: not JSON: {exc}") from None
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"bootstrap {path}: YAML needs PyYAML; give JSON instead") from None
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ConfigError(f"bootstrap {path}: must be a mapping")
    return loaded


# -- node and admin -------------------------------------------------------------------------
def _node(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict) or not isinstance(spec.get("id"), str) or not spec["id"]:
        raise ConfigError("bootstrap: node.id must name the virtual node or gateway served")
    node = dict(spec)
    node.setdefault("cluster", node["id"])
    if not isinstance(node.get("metadata", {}), dict):
        raise ConfigError("bootstrap: node.metadata must be an object")
    return node


def _identity(node: dict[str, Any]) -> MeshIdentity | None:
    try:
        resource = mesh_resource(node["id"])
    except ValueError:
        return None
    return MeshIdentity(resource.mesh, resource.type, resource.name)


def _admin(spec: Any) -> tuple[tuple[str, int] | None, str | None]:
    """The admin listener's address and its access log (``None``, ``None``: no admin)."""
    if spec is None:
        return None, None
    unknown = sorted(set(spec) - {"address", "access_log", "access_log_path"})
    if unknown:
        raise ConfigError(f"bootstrap: admin.{unknown[0]} {NOT_SUPPORTED}")
    address = (spec.get("address") or {}).get("socket_address")
    if not isinstance(address, dict):
        raise ConfigError(f"bootstrap: an admin address other than a TCP socket {NOT_SUPPORTED}")
    host, port = _ip_port(address, "admin.address")
    logs = spec.get("access_log") or []
    paths = [_file_log_path(entry, "admin.access_log") for entry in logs]
    if spec.get("access_log_path"):
        paths.append(str(spec["access_log_path"]))
    if len(paths) > 1:
        raise ConfigError(f"bootstrap: more than one admin access log {NOT_SUPPORTED}")
    return (host, port), (paths[0] if paths else None)


def _file_log_path(entry: Any, where: str) -> str:
    config = entry.get("typed_config") if isinstance(entry, dict) else None
    if not isinstance(config, dict) or type_url(config) != types.FILE_ACCESS_LOG:
        raise ConfigError(f"bootstrap: {where}: only file access logs are supported")
    if entry.get("filter") or set(config) - {"@type", "path"}:
        raise ConfigError(f"bootstrap: {where}: filters and formats {NOT_SUPPORTED}")
    path = config.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"bootstrap: {where}: a file access log needs a path")
    return path


def _ip_port(address: dict[str, Any], where: str) -> tuple[str, int]:
    """An IP and port, as Envoy requires of a socket address it binds or sends to."""
    host = str(address.get("address", ""))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"bootstrap: {where} must be an IP address, not {host!r}") from None
    port = address.get("port_value")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"bootstrap: {where} needs a port_value")
    return host, port


# -- the control plane ----------------------------------------------------------------------
def _xds_endpoints(dynamic: Any, static: Any) -> tuple[str, ...]:
    """The ADS cluster's addresses, as the URLs the REST-JSON discovery client calls.

    Every ``lb_endpoints`` entry of every locality counts, in order: several are
    replicas of one control plane, and the client fails over from one to the next.
    """
    cluster_name = _ads_cluster(dynamic)
    clusters = {c.get("name"): c for c in (static or {}).get("clusters") or () if c}
    if static and set(static) - {"clusters"}:
        extra = sorted(set(static) - {"clusters"})[0]
        raise ConfigError(f"bootstrap: static_resources.{extra} {NOT_SUPPORTED}")
    agents = [name for name, c in clusters.items() if name != cluster_name and _pipe(c)]
    for name in clusters:
        if name != cluster_name and name not in agents[:1]:
            why = "a second SDS agent" if name in agents else "static clusters"
            raise ConfigError(f"bootstrap: static cluster {name}: {why} {NOT_SUPPORTED}")
    cluster = clusters.get(cluster_name)
    if cluster is None:
        raise ConfigError(f"bootstrap: ADS names cluster {cluster_name}, which is not defined")
    scheme = "https" if cluster.get("transport_socket") else "http"
    localities = (cluster.get("load_assignment") or {}).get("endpoints") or [{}]
    entries = [entry for locality in localities for entry in locality.get("lb_endpoints") or ()]
    return tuple(_endpoint_url(cluster_name, entry, scheme) for entry in entries or [{}])


def _sds_agent(dynamic: Any, static: Any) -> SdsAgent | None:
    """The static cluster on a Unix socket that is not the control plane's (checked by
    ``_xds_endpoints``): the local SDS agent, plaintext gRPC as Envoy speaks to it."""
    ads = _ads_cluster(dynamic)
    for cluster in (static or {}).get("clusters") or ():
        path = _pipe(cluster) if cluster and cluster.get("name") != ads else None
        if path is not None:
            if cluster.get("transport_socket"):
                raise ConfigError(
                    f"bootstrap: static cluster {cluster['name']}: TLS to an SDS agent "
                    f"{NOT_SUPPORTED}"
                )
            return SdsAgent(str(cluster["name"]), path)
    return None


def _pipe(cluster: Any) -> str | None:
    """The Unix socket path of a cluster whose one endpoint is a ``pipe``."""
    localities = ((cluster or {}).get("load_assignment") or {}).get("endpoints") or ()
    entries = [entry for locality in localities for entry in locality.get("lb_endpoints") or ()]
    if len(entries) != 1:
        return None
    pipe = ((entries[0].get("endpoint") or {}).get("address") or {}).get("pipe")
    path = pipe.get("path") if isinstance(pipe, dict) else None
    return path if isinstance(path, str) and path else None


def _endpoint_url(cluster_name: str, entry: Any, scheme: str) -> str:
    address = ((entry.get("endpoint") or {}).get("address")) or {}
    socket = address.get("socket_address")
    if not isinstance(socket, dict):
        raise ConfigError(
            f"bootstrap: cluster {cluster_name}: a control plane on a Unix socket {NOT_SUPPORTED}"
        )
    host, port = str(socket.get("address", "")), socket.get("port_value")
    if not host or not isinstance(port, int):
        raise ConfigError(f"bootstrap: cluster {cluster_name} needs an address and port_value")
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _xds_keepalive(dynamic: Any, static: Any) -> tuple[float, float, float] | None:
    """The ADS cluster's ``http2_protocol_options.connection_keepalive``, as the Delta
    client's PING interval, timeout and jitter; an interval of 0 sends no PINGs, as in
    Envoy. ``connection_idle_interval`` (a PING before a new stream on an idle
    connection) is moot: every stream of the client opens a connection of its own."""
    name = _ads_cluster(dynamic)
    clusters = (static or {}).get("clusters") or ()
    cluster: dict[str, Any] = next((c for c in clusters if c and c.get("name") == name), {})
    options = (cluster.get("typed_extension_protocol_options") or {}).get(
        types.HTTP_PROTOCOL_OPTIONS.removeprefix(types.PREFIX)
    )
    explicit = (options or {}).get("explicit_http_config") or {}
    keepalive = (explicit.get("http2_protocol_options") or {}).get("connection_keepalive")
    if keepalive is None:
        return None
    known = {"interval", "timeout", "interval_jitter", "connection_idle_interval"}
    if not isinstance(keepalive, dict) or set(keepalive) - known:
        extra = sorted(set(keepalive) - known) if isinstance(keepalive, dict) else [keepalive]
        raise ConfigError(
            f"bootstrap: cluster {name}: connection_keepalive {extra} {NOT_SUPPORTED}"
        )
    timeout = duration(keepalive.get("timeout"))
    if not timeout or timeout <= 0:
        raise ConfigError(f"bootstrap: cluster {name}: connection_keepalive needs a timeout")
    jitter = (keepalive.get("interval_jitter") or {}).get("value", 15.0)
    return duration(keepalive.get("interval"), 0.0) or 0.0, timeout, float(jitter) / 100


def _ads_cluster(dynamic: Any) -> str:
    return _ads_config(dynamic)[0]


def _ads_config(dynamic: Any) -> tuple[str, str]:
    """The ADS cluster's name and the API type: ``GRPC`` or ``DELTA_GRPC``."""
    if not isinstance(dynamic, dict) or not isinstance(dynamic.get("ads_config"), dict):
        raise ConfigError("bootstrap: dynamic_resources.ads_config is required (ADS)")
    unknown = sorted(set(dynamic) - {"ads_config", "lds_config", "cds_config"})
    if unknown:
        raise ConfigError(f"bootstrap: dynamic_resources.{unknown[0]} {NOT_SUPPORTED}")
    for key in ("lds_config", "cds_config"):
        _ads_source(dynamic.get(key), f"dynamic_resources.{key}")
    ads = dynamic["ads_config"]
    api_type = ads.get("api_type", "GRPC")
    if api_type not in ("GRPC", "DELTA_GRPC"):
        raise ConfigError(
            f"bootstrap: ads_config api_type {api_type} {NOT_SUPPORTED} (GRPC and DELTA_GRPC are)"
        )
    services = ads.get("grpc_services") or []
    grpc = services[0].get("envoy_grpc") if len(services) == 1 else None
    if not isinstance(grpc, dict) or not grpc.get("cluster_name"):
        raise ConfigError(
            "bootstrap: ads_config must name one envoy_grpc cluster (google_grpc, App Mesh's "
            f"SigV4 channel to its regional endpoint, {NOT_SUPPORTED})"
        )
    return str(grpc["cluster_name"]), str(api_type)


def _ads_source(source: Any, where: str) -> None:
    if not isinstance(source, dict) or not isinstance(source.get("ads"), dict):
        raise ConfigError(f"bootstrap: {where} must be ADS ({{ads: {{}}}})")
    timeout = duration(source.get("initial_fetch_timeout"), 0.0)
    if timeout:
        raise ConfigError(
            f"bootstrap: {where}.initial_fetch_timeout {NOT_SUPPORTED} (the proxy waits for "
            "its first config, as with 0s)"
        )


def _cluster_manager(spec: Any) -> str | None:
    """``outlier_detection.event_log_path``: where ejection events are written."""
    if not spec:
        return None
    if set(spec) - {"outlier_detection"}:
        raise ConfigError(f"bootstrap: cluster_manager.{sorted(spec)[0]} {NOT_SUPPORTED}")
    outlier = spec.get("outlier_detection") or {}
    if set(outlier) - {"event_log_path"}:
        raise ConfigError(f"bootstrap: cluster_manager.outlier_detection {NOT_SUPPORTED}")
    path = outlier.get("event_log_path")
    return str(path) if path else None


def _runtime(spec: Any) -> tuple[str, ...]:
    """The static runtime layer: known keys only; notes for the values not acted on."""
    notes: list[str] = []
    for layer in (spec or {}).get("layers") or ():
        if "admin_layer" in layer:
            continue
        if "static_layer" not in layer:
            raise ConfigError(f"bootstrap: runtime layer {layer.get('name')} {NOT_SUPPORTED}")
        for key, value in (layer.get("static_layer") or {}).items():
            if key in _RUNTIME_NOT_ACTED_ON and value:
                notes.append(f"runtime {key}={value}: {_RUNTIME_NOT_ACTED_ON[key]}")
            elif key not in _RUNTIME and key not in _RUNTIME_NOT_ACTED_ON:
                raise ConfigError(f"bootstrap: runtime key {key} {NOT_SUPPORTED}")
    return tuple(notes)


# -- tracing and stats ----------------------------------------------------------------------
def _tracing(spec: Any, identity: MeshIdentity | None) -> TracingConfig | None:
    if not spec:
        return None
    http = spec.get("http") if isinstance(spec, dict) else None
    config = (http or {}).get("typed_config")
    kind = type_url(config) if isinstance(config, dict) else ""
    if kind != types.XRAY:
        name = (http or {}).get("name") or kind or "without a type"
        raise ConfigError(f"bootstrap: tracer {name} {NOT_SUPPORTED} (X-Ray is)")
    assert isinstance(config, dict)
    daemon = _ip_port(config.get("daemon_endpoint") or {}, "tracing daemon_endpoint")
    fields = config.get("segment_fields") or {}
    default_name = f"{identity.mesh}/{identity.name}" if identity else "appmesh-proxy"
    manifest = config.get("sampling_rule_manifest") or {}
    inline = manifest.get("inline_string")
    try:
        parsed = json.loads(inline) if inline else None
    except ValueError as exc:
        raise ConfigError(f"bootstrap: tracing sampling_rule_manifest: {exc}") from None
    return TracingConfig(
        segment_name=str(config.get("segment_name") or default_name),
        daemon=daemon,
        origin=str(fields.get("origin") or "AWS::AppMesh::Proxy"),
        aws=dict(fields.get("aws") or {}),
        manifest_path=manifest.get("filename") or None,
        manifest=parsed,
    )


def _stats_sinks(spec: Any) -> tuple[str, int] | str | None:
    """The DogStatsD sink's UDP address or Unix socket path; other sinks are refused."""
    sinks = list(spec or ())
    if len(sinks) > 1:
        raise ConfigError(f"bootstrap: more than one stats sink {NOT_SUPPORTED}")
    if not sinks:
        return None
    config = sinks[0].get("typed_config") or {}
    if type_url(config) != types.DOG_STATSD:
        name = sinks[0].get("name") or type_url(config) or "without a type"
        raise ConfigError(f"bootstrap: stats sink {name} {NOT_SUPPORTED} (dog_statsd is)")
    if set(config) - {"@type", "address"}:
        raise ConfigError(f"bootstrap: dog_statsd {sorted(set(config) - {'@type', 'address'})[0]}"
                          f" {NOT_SUPPORTED}")  # fmt: skip
    address = config.get("address") or {}
    if isinstance(address.get("pipe"), dict) and address["pipe"].get("path"):
        return str(address["pipe"]["path"])
    return _ip_port(address.get("socket_address") or {}, "dog_statsd address")


def _stats_tags(spec: Any) -> StatsTags:
    if not spec:
        return StatsTags()
    if set(spec) - {"stats_tags", "use_all_default_tags"}:
        extra = sorted(set(spec) - {"stats_tags", "use_all_default_tags"})[0]
        raise ConfigError(f"bootstrap: stats_config.{extra} {NOT_SUPPORTED}")
    if spec.get("use_all_default_tags", True) is not True:
        raise ConfigError(f"bootstrap: use_all_default_tags false {NOT_SUPPORTED}")
    fixed: list[tuple[str, str]] = []
    regex: list[tuple[str, re.Pattern[str]]] = []
    for tag in spec.get("stats_tags") or ():
        name = str(tag.get("tag_name", ""))
        if "fixed_value" in tag:
            fixed.append((name, str(tag["fixed_value"])))
        elif "regex" in tag:
            try:
                regex.append((name, re.compile(str(tag["regex"]))))
            except re.error as exc:
                raise ConfigError(f"bootstrap: stats tag {name}: bad regex: {exc}") from None
        else:
            raise ConfigError(f"bootstrap: stats tag {name} needs a regex or fixed_value")
    return StatsTags(tuple(fixed), tuple(regex))


def _flush_interval(spec: Any) -> float:
    seconds = duration(spec, DEFAULT_FLUSH_INTERVAL)
    if not seconds or seconds <= 0:
        raise ConfigError("bootstrap: stats_flush_interval must be positive")
    return seconds


def _metric_filter(node: dict[str, Any]) -> bool:
    """App Mesh's metrics extension is on when the node announces its filter level 1."""
    level = ((node.get("metadata") or {}).get("aws.appmesh.metric_filter") or {}).get("level")
    return str(level) == "1"


def _cloudwatch(node: dict[str, Any]) -> CloudWatchConfig | None:
    spec = (node.get("metadata") or {}).get(METADATA + "cloudwatch")
    if not isinstance(spec, dict) or not spec.get("endpoint"):
        return None
    region = str(spec.get("region") or "us-east-1")
    return CloudWatchConfig(str(spec["endpoint"]), region, str(spec.get("namespace") or "CWAgent"))
