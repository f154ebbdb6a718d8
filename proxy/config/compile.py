"""One config version: Envoy v3 resources compiled into immutable lookup tables.

``compile_resources`` is pure: it takes the resource dicts xDS delivered (Listener,
RouteConfiguration, Cluster, ClusterLoadAssignment, Secret, each with its ``@type``) and
returns a ``CompiledConfig`` whose listeners already point at compiled filter chains,
HTTP connection manager settings, route tables and access-log formatters. The data path
only ever looks things up in it; a new version is a new object swapped in atomically.

Fields this proxy does not act on are ignored (Envoy's config is large); a set Envoy
would reject as a whole (a resource without a name, two of one name) and features this
proxy cannot honour yet (``proxy.config.unsupported``: HTTP/2...) raise ``ConfigError``,
which the xDS client turns into a NACK. A listener, route configuration or cluster that
does not compile on its own (an invalid regex, a certificate file that is not there) is
refused alone (``CompiledConfig.refused``), as Envoy loads each resource apart.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

try:  # hashlib.blake2b is this type; hashlib itself sets up OpenSSL's digests (0.5 MB)
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it: hashlib's (maybe OpenSSL's) one
    from hashlib import blake2b

from envoy_bootstrap.envoy_types import (
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    HEALTH_CHECK_FILTER,
    HEALTH_CHECK_NAME,
    HTTP_CONNECTION_MANAGER,
    LISTENER,
    ORIGINAL_DST,
    ROUTE_CONFIGURATION,
    ROUTER,
    ROUTER_NAME,
    SECRET,
    TCP_PROXY,
    TLS_INSPECTOR,
    TLS_INSPECTOR_NAME,
)
from proxy.config import unsupported
from proxy.config.access_log import AccessLogConfig, compile_access_logs
from proxy.config.cluster import (
    ClusterConfig,
    LoadAssignment,
    compile_cluster,
    compile_load_assignment,
)
from proxy.config.protojson import (
    ConfigError,
    duration,
    flag,
    socket_address,
    type_url,
    typed_config,
    uint,
)
from proxy.config.routing import RouteTable, compile_route_configuration, compile_upgrades
from proxy.config.tls import (
    NO_SECRETS,
    SecretMap,
    SecretNotReady,
    Secrets,
    ServerTls,
    compile_server,
)

_HCM_NAMES = (HTTP_CONNECTION_MANAGER, "envoy.filters.network.http_connection_manager")
_TCP_NAMES = (TCP_PROXY, "envoy.filters.network.tcp_proxy")
_ORIGINAL_DST_NAMES = (ORIGINAL_DST, "envoy.filters.listener.original_dst")
_TLS_INSPECTOR_NAMES = (TLS_INSPECTOR, TLS_INSPECTOR_NAME)
_HEALTH_CHECK_NAMES = (HEALTH_CHECK_FILTER, HEALTH_CHECK_NAME)
_ROUTER_NAMES = (ROUTER, ROUTER_NAME)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class HttpConnectionManagerConfig:
    """The HCM settings the HTTP codec and router read per request."""

    stat_prefix: str
    route_table: RouteTable | None
    rds_name: str | None
    access_logs: tuple[AccessLogConfig, ...]
    server_name: str = "envoy"
    server_header_transformation: str = "OVERWRITE"
    use_remote_address: bool = False
    skip_xff_append: bool = False
    generate_request_id: bool = True
    always_set_request_id_in_response: bool = False
    idle_timeout: float | None = 3600.0
    stream_idle_timeout: float | None = 300.0
    strip_any_host_port: bool = False
    normalize_path: bool = False
    merge_slashes: bool = False
    accept_http_10: bool = False
    default_host_for_http_10: str = ""
    via: str = ""
    codec_type: str = "AUTO"
    health_check_paths: frozenset[str] = frozenset()  # answered by the health_check filter
    max_request_headers_kb: int = 60  # Envoy's default; over it (or the count): 431
    max_headers_count: int = 100
    request_headers_timeout: float | None = None  # off unless configured, as in Envoy
    # ``upgrade_configs``: upgrade type (lower-cased) → enabled by default; a type not
    # listed is refused with 403, as Envoy's HCM refuses it.
    upgrades: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    allow_connect: bool = False  # ``http2_protocol_options.allow_connect`` (RFC 8441)
    # The router filter's ``respect_expected_rq_timeout``: an internal request's
    # ``x-envoy-expected-rq-timeout-ms`` (the caller's proxy's budget) is the timeout.
    respect_expected_rq_timeout: bool = False


@dataclass(frozen=True, slots=True)
class TcpProxyConfig:
    stat_prefix: str
    cluster: str | None
    weighted: tuple[tuple[str, int], ...]
    idle_timeout: float | None
    max_connect_attempts: int
    access_logs: tuple[AccessLogConfig, ...]


@dataclass(frozen=True, slots=True)
class FilterChainMatch:
    """The parts of ``filter_chain_match`` a plaintext connection can be matched on."""

    destination_port: int | None = None
    prefix_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    source_prefix_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    transport_protocol: str | None = None  # "tls" or "raw_buffer", from the TLS inspector
    needs_sni: bool = False  # server_names / ALPN: not inspected yet, so never matched

    def matches(
        self, local: tuple[str, int], remote: tuple[str, int], transport: str = "raw_buffer"
    ) -> bool:
        if self.needs_sni:
            return False
        if self.transport_protocol is not None and self.transport_protocol != transport:
            return False
        if self.destination_port is not None and local[1] != self.destination_port:
            return False
        if self.prefix_ranges and not _in_ranges(local[0], self.prefix_ranges):
            return False
        return not self.source_prefix_ranges or _in_ranges(remote[0], self.source_prefix_ranges)

    @property
    def specificity(self) -> tuple[int, int, int]:
        longest = max((net.prefixlen for net in self.prefix_ranges), default=-1)
        return (self.destination_port is not None, longest, self.transport_protocol is not None)


def _in_ranges(address: str, ranges: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in ranges if net.version == ip.version)


@dataclass(frozen=True, slots=True)
class FilterChain:
    """A filter chain's terminal network filter: an HCM (``http``) or ``tcp_proxy``, and
    its TLS context when the chain terminates TLS.

    ``key`` names the chain's config across versions: equal when the chain's message, its
    place (a chain or the default chain) and the rest of its listener are equal, as
    Envoy's in-place filter chain update compares them. A listener update keeps the
    connections of a chain whose key survives and drains the others; SDS secrets are not
    in it (a rotated certificate applies to new connections, as in Envoy)."""

    name: str
    match: FilterChainMatch
    http: HttpConnectionManagerConfig | None
    tcp: TcpProxyConfig | None
    transport_socket: Mapping[str, Any] | None
    tls: ServerTls | None = None
    key: str = ""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """A compiled ``Listener``. ``original_dst``: it runs the original_dst listener filter,
    so connections are matched (and ORIGINAL_DST clusters connect) by where they were
    going before iptables redirected them, not by the proxy port they landed on.
    ``tls_inspector``: the first bytes of a connection tell TLS from plaintext."""

    name: str
    address: tuple[str, int]
    filter_chains: tuple[FilterChain, ...]
    default_chain: FilterChain | None
    bind_to_port: bool
    raw: Mapping[str, Any]
    original_dst: bool = False
    tls_inspector: bool = False

    def select_chain(
        self, local: tuple[str, int], remote: tuple[str, int], transport: str = "raw_buffer"
    ) -> FilterChain | None:
        """Envoy picks the most specific matching chain, else the default chain."""
        best: FilterChain | None = None
        for chain in self.filter_chains:
            if chain.match.matches(local, remote, transport) and (
                best is None or chain.match.specificity > best.match.specificity
            ):
                best = chain
        return best or self.default_chain

    @property
    def inspects(self) -> bool:
        """A connection's first bytes decide its chain or must go through TLS."""
        chains = (*self.filter_chains, self.default_chain)
        return any(
            c is not None and (c.tls is not None or c.match.transport_protocol is not None)
            for c in chains
        )

    @property
    def single_chain(self) -> FilterChain | None:
        """The only possible chain when nothing needs matching (the common case)."""
        if len(self.filter_chains) == 1 and self.filter_chains[0].match == FilterChainMatch():
            return self.filter_chains[0]
        if not self.filter_chains:
            return self.default_chain
        return None


@dataclass(frozen=True)
class CompiledConfig:
    """Everything one config version says, by resource name."""

    version: str
    listeners: Mapping[str, ListenerConfig]
    route_tables: Mapping[str, RouteTable]
    clusters: Mapping[str, ClusterConfig]
    load_assignments: Mapping[str, LoadAssignment]
    secrets: Mapping[str, Mapping[str, Any]]
    resources: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    # Listeners and clusters waiting for a local SDS agent's secret: name -> the reason.
    # Each serves its last version that had its secrets, or is not served at all.
    warming_listeners: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warming_clusters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Listeners, route configurations and clusters that do not compile (a certificate file
    # that will not load, a bad regex), and listeners whose address will not bind: type URL
    # -> name -> the reason. Each keeps its version in the previous config, or is left out,
    # and the rest goes live, as Envoy loads each one on its own. A listener whose RDS
    # route configuration was refused with none before it answers 404 (``NR``), as
    # Envoy's RDS provider serves its null config until one is accepted.
    refused: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    local_secrets: SecretMap = field(default_factory=lambda: MappingProxyType({}))

    def route_table(self, http: HttpConnectionManagerConfig) -> RouteTable | None:
        """An HCM's routes: inline, or the RDS route configuration it names."""
        if http.route_table is not None:
            return http.route_table
        return self.route_tables.get(http.rds_name or "")

    def endpoints_for(self, cluster: ClusterConfig) -> LoadAssignment | None:
        if cluster.discovery == "EDS":
            return self.load_assignments.get(cluster.eds_service_name)
        return cluster.load_assignment


EMPTY_CONFIG = CompiledConfig(
    version="",
    listeners=MappingProxyType({}),
    route_tables=MappingProxyType({}),
    clusters=MappingProxyType({}),
    load_assignments=MappingProxyType({}),
    secrets=MappingProxyType({}),
)


def compile_resources(
    resources: list[dict[str, Any]],
    version: str,
    *,
    local_secrets: SecretMap | None = None,
    agent_cluster: str = "",
    previous: CompiledConfig | None = None,
) -> CompiledConfig:
    """Compile one complete set of resources; raises ``ConfigError`` on what Envoy rejects.

    ``local_secrets`` are the local SDS agent's (reached through the bootstrap's
    ``agent_cluster``). A listener or cluster naming one that has not arrived warms: it
    keeps its version in ``previous`` if there is one, else it is left out.
    """
    buckets: dict[str, dict[str, Any]] = {
        LISTENER: {},
        ROUTE_CONFIGURATION: {},
        CLUSTER: {},
        CLUSTER_LOAD_ASSIGNMENT: {},
        SECRET: {},
    }
    for resource in resources:
        if not isinstance(resource, dict):
            raise ConfigError(f"resource is not an object: {resource!r}")
        _add_resource(buckets, resource, agent_cluster)
    local = _frozen(dict(local_secrets or {}))
    secrets = Secrets(_frozen(dict(buckets[SECRET])), local, agent_cluster)
    old = previous or EMPTY_CONFIG
    listeners, warming_listeners, refused_listeners = _warmed(
        buckets[LISTENER],
        lambda r: compile_listener(r, secrets, old.listeners.get(str(r.get("name", "")))),
        old.listeners,
    )
    clusters, warming_clusters, refused_clusters = _warmed(
        buckets[CLUSTER], lambda r: compile_cluster(r, secrets), old.clusters
    )
    route_tables, _, refused_routes = _warmed(
        buckets[ROUTE_CONFIGURATION], compile_route_configuration, old.route_tables
    )
    refused = {
        LISTENER: refused_listeners,
        ROUTE_CONFIGURATION: refused_routes,
        CLUSTER: refused_clusters,
    }
    return CompiledConfig(
        version=version,
        listeners=listeners,
        route_tables=route_tables,
        clusters=clusters,
        load_assignments=_frozen(
            {n: compile_load_assignment(r) for n, r in buckets[CLUSTER_LOAD_ASSIGNMENT].items()}
        ),
        secrets=secrets.ads,
        resources=tuple(r for r in resources if type_url(r) in buckets),
        warming_listeners=warming_listeners,
        warming_clusters=warming_clusters,
        refused=_frozen({kind: names for kind, names in refused.items() if names}),
        local_secrets=local,
    )


def _warmed(
    specs: dict[str, dict[str, Any]],
    compile_one: Callable[[dict[str, Any]], _T],
    previous: Mapping[str, _T],
) -> tuple[Mapping[str, _T], Mapping[str, str], Mapping[str, str]]:
    """Compile each resource on its own. One whose local SDS secret has not arrived is
    warming, one that does not compile is refused (each with the reason), and both keep
    their previous version, or none. (Route configurations name no secret: they are
    only ever refused.)"""
    compiled: dict[str, _T] = {}
    warming: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, spec in specs.items():
        try:
            compiled[name] = compile_one(spec)
            continue
        except SecretNotReady as exc:
            warming[name] = str(exc)
        except ConfigError as exc:
            refused[name] = str(exc)
        if name in previous:
            compiled[name] = previous[name]
    return _frozen(compiled), _frozen(warming), _frozen(refused)


def _add_resource(
    buckets: dict[str, dict[str, Any]], resource: dict[str, Any], agent_cluster: str
) -> None:
    """File one resource under its type, refusing duplicates and what cannot be served."""
    kind = type_url(resource)
    if kind not in buckets:
        return  # unknown resource types are not ours to judge
    key = "cluster_name" if kind == CLUSTER_LOAD_ASSIGNMENT else "name"
    name = resource.get(key)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{kind} without {key}")
    if name in buckets[kind]:
        raise ConfigError(f"duplicate {kind} {name!r}")
    problem = unsupported.problem(kind, resource, agent_cluster=agent_cluster)
    if problem:
        raise ConfigError(problem)
    buckets[kind][name] = resource


def _frozen(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)


def compile_listener(
    spec: dict[str, Any], secrets: Secrets = NO_SECRETS, previous: ListenerConfig | None = None
) -> ListenerConfig:
    """A listener; ``previous`` (its last version) lends its chain keys when the
    resource is unchanged, sparing their digests (most versions change other things)."""
    name = str(spec.get("name", ""))
    keys = _chain_keys(spec, previous)
    chains = tuple(
        _compile_chain(chain, f"{name}#{i}", secrets, keys[i])
        for i, chain in enumerate(spec.get("filter_chains") or ())
    )
    default = spec.get("default_filter_chain")
    return ListenerConfig(
        name=name,
        address=socket_address(spec.get("address")),
        filter_chains=chains,
        default_chain=_compile_chain(default, f"{name}#default", secrets, keys[-1])
        if isinstance(default, dict)
        else None,
        bind_to_port=flag(spec.get("bind_to_port"), True),
        raw=spec,
        original_dst=_has_listener_filter(spec, _ORIGINAL_DST_NAMES),
        tls_inspector=_has_listener_filter(spec, _TLS_INSPECTOR_NAMES),
    )


def listener_frame(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A listener without its filter chains: when this changes, Envoy cannot update the
    listener in place and drains all of its connections."""
    return {k: v for k, v in spec.items() if k not in ("filter_chains", "default_filter_chain")}


def _chain_keys(spec: dict[str, Any], previous: ListenerConfig | None) -> list[str]:
    """``FilterChain.key`` of each chain in order, then of the default chain."""
    if previous is not None and previous.raw == spec:
        kept = previous.default_chain.key if previous.default_chain is not None else ""
        return [c.key for c in previous.filter_chains] + [kept]
    frame = _canonical(listener_frame(spec))
    keys = [_chain_key(frame, "chain", c) for c in spec.get("filter_chains") or ()]
    default = spec.get("default_filter_chain")
    keys.append(_chain_key(frame, "default", default) if isinstance(default, dict) else "")
    return keys


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _chain_key(frame: str, place: str, spec: Any) -> str:
    """``FilterChain.key``: a digest of the listener's frame, the place and the chain."""
    text = f"{frame}\n{place}\n{_canonical(spec)}"
    return blake2b(text.encode(), digest_size=16).hexdigest()


def _has_listener_filter(spec: dict[str, Any], names: tuple[str, ...]) -> bool:
    return any(
        typed_config(f)[0] in names or f.get("name") in names
        for f in spec.get("listener_filters") or ()
        if isinstance(f, dict)
    )


def _networks(specs: Any) -> tuple[Any, ...]:
    nets = []
    for cidr in specs or ():
        text = f"{cidr.get('address_prefix')}/{uint(cidr.get('prefix_len'), 32)}"
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ConfigError(f"invalid CIDR range {cidr!r}") from exc
    return tuple(nets)


def _compile_match(spec: Any) -> FilterChainMatch:
    if not isinstance(spec, dict) or not spec:
        return FilterChainMatch()
    port = spec.get("destination_port")
    return FilterChainMatch(
        destination_port=None if port is None else uint(port, 0),
        prefix_ranges=_networks(spec.get("prefix_ranges")),
        source_prefix_ranges=_networks(spec.get("source_prefix_ranges")),
        transport_protocol=str(spec["transport_protocol"])
        if spec.get("transport_protocol")
        else None,
        needs_sni=bool(spec.get("server_names") or spec.get("application_protocols")),
    )


def _compile_chain(
    spec: dict[str, Any], fallback_name: str, secrets: Secrets, key: str
) -> FilterChain:
    http = tcp = None
    for network_filter in spec.get("filters") or ():
        kind, config = typed_config(network_filter)
        if kind in _HCM_NAMES:
            http = compile_http_connection_manager(config)
        elif kind in _TCP_NAMES:
            tcp = compile_tcp_proxy(config)
    return FilterChain(
        name=str(spec.get("name") or fallback_name),
        match=_compile_match(spec.get("filter_chain_match")),
        http=http,
        tcp=tcp,
        transport_socket=spec.get("transport_socket"),
        tls=_server_tls(
            spec.get("transport_socket"), secrets, str(spec.get("name") or fallback_name)
        ),
        key=key,
    )


def _server_tls(socket: Any, secrets: Secrets, chain: str) -> ServerTls | None:
    if not isinstance(socket, dict) or unsupported.socket_kind(socket) != "tls":
        return None
    try:
        return compile_server(socket, secrets)
    except ConfigError as exc:
        raise ConfigError(f"filter chain {chain}: {exc}") from exc


def compile_http_connection_manager(spec: dict[str, Any]) -> HttpConnectionManagerConfig:
    stat_prefix = spec.get("stat_prefix")
    if not isinstance(stat_prefix, str):
        raise ConfigError("http_connection_manager without stat_prefix")
    route_table = rds_name = None
    if isinstance(spec.get("route_config"), dict):
        route_table = compile_route_configuration(spec["route_config"])
    elif isinstance(spec.get("rds"), dict):
        rds_name = str(spec["rds"].get("route_config_name", ""))
    common = spec.get("common_http_protocol_options") or {}
    http1 = spec.get("http_protocol_options") or {}
    return HttpConnectionManagerConfig(
        stat_prefix=stat_prefix,
        route_table=route_table,
        rds_name=rds_name,
        access_logs=compile_access_logs(spec.get("access_log")),
        server_name=str(spec.get("server_name") or "envoy"),
        server_header_transformation=str(spec.get("server_header_transformation", "OVERWRITE")),
        use_remote_address=flag(spec.get("use_remote_address"), False),
        skip_xff_append=bool(spec.get("skip_xff_append", False)),
        generate_request_id=flag(spec.get("generate_request_id"), True),
        always_set_request_id_in_response=bool(spec.get("always_set_request_id_in_response")),
        idle_timeout=duration(common.get("idle_timeout"), 3600.0) or None,
        stream_idle_timeout=duration(spec.get("stream_idle_timeout"), 300.0) or None,
        strip_any_host_port=bool(spec.get("strip_any_host_port", False)),
        normalize_path=flag(spec.get("normalize_path"), False),
        merge_slashes=bool(spec.get("merge_slashes", False)),
        accept_http_10=bool(http1.get("accept_http_10", False)),
        default_host_for_http_10=str(http1.get("default_host_for_http_10", "")),
        via=str(spec.get("via", "")),
        codec_type=str(spec.get("codec_type", "AUTO")),
        health_check_paths=_health_check_paths(spec.get("http_filters")),
        max_request_headers_kb=int(spec.get("max_request_headers_kb") or 60),
        max_headers_count=int(common.get("max_headers_count") or 100),
        request_headers_timeout=duration(spec.get("request_headers_timeout"), 0.0) or None,
        upgrades=compile_upgrades(spec.get("upgrade_configs")),
        allow_connect=flag((spec.get("http2_protocol_options") or {}).get("allow_connect"), False),
        respect_expected_rq_timeout=flag(
            _router_config(spec.get("http_filters")).get("respect_expected_rq_timeout"), False
        ),
    )


def _router_config(http_filters: Any) -> dict[str, Any]:
    """The router filter's own settings (Envoy's ``Router`` message); ``{}`` if none."""
    for http_filter in http_filters or ():
        kind, config = typed_config(http_filter)
        if kind in _ROUTER_NAMES:
            return config
    return {}


def _health_check_paths(http_filters: Any) -> frozenset[str]:
    paths = set()
    for http_filter in http_filters or ():
        kind, config = typed_config(http_filter)
        if kind in _HEALTH_CHECK_NAMES:
            path = unsupported.health_check_path(config)
            if path is None:
                raise ConfigError(f"health_check filter: unsupported configuration {config!r}")
            paths.add(path)
    return frozenset(paths)


def compile_tcp_proxy(spec: dict[str, Any]) -> TcpProxyConfig:
    stat_prefix = spec.get("stat_prefix")
    if not isinstance(stat_prefix, str):
        raise ConfigError("tcp_proxy without stat_prefix")
    weighted = tuple(
        (str(c.get("name")), uint(c.get("weight"), 0))
        for c in (spec.get("weighted_clusters") or {}).get("clusters", ()) or ()
        if uint(c.get("weight"), 0) > 0
    )
    cluster = spec.get("cluster")
    if not weighted and not isinstance(cluster, str):
        raise ConfigError(f"tcp_proxy {stat_prefix}: no cluster")
    return TcpProxyConfig(
        stat_prefix=stat_prefix,
        cluster=cluster if isinstance(cluster, str) else None,
        weighted=weighted,
        idle_timeout=duration(spec.get("idle_timeout"), 3600.0) or None,
        max_connect_attempts=max(1, uint(spec.get("max_connect_attempts"), 1)),
        access_logs=compile_access_logs(spec.get("access_log")),
    )
