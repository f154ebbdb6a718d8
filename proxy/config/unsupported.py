"""What appmesh-proxy cannot honour yet, found before a resource is compiled.

Envoy rejects a listener or cluster that names an extension it was not built with;
this proxy does the same for the features it has not implemented, so a mesh that asks
for tuned HTTP/2 settings, a TLS setting this proxy does not act on (cipher lists,
certificate pins, CRLs), hash balancing or mirrored routes gets a NACK with a reason
(in the proxy's log, ``/_appmesh/proxies`` and the console) instead of something
weaker in its place.
Keeping the list in one module makes it the one place to shrink as the features land.

Each check returns the reason a resource cannot be served, or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy_bootstrap.envoy_types import (
    CLUSTER,
    DOWNSTREAM_TLS,
    HEALTH_CHECK_FILTER,
    HEALTH_CHECK_NAME,
    HTTP_CONNECTION_MANAGER,
    HTTP_PROTOCOL_OPTIONS,
    LISTENER,
    ROUTE_CONFIGURATION,
    ROUTER,
    ROUTER_NAME,
    TCP_PROXY,
    UPSTREAM_TLS,
)
from proxy.config.protojson import flag, objects_in, type_url, typed_config, uint

NOT_YET = "is not supported by appmesh-proxy yet"

_NETWORK_FILTERS = {
    HTTP_CONNECTION_MANAGER,
    "envoy.filters.network.http_connection_manager",
    TCP_PROXY,
    "envoy.filters.network.tcp_proxy",
}
_HTTP_FILTERS = {ROUTER, ROUTER_NAME, HEALTH_CHECK_FILTER, HEALTH_CHECK_NAME}


def problem(kind: str, resource: dict[str, Any], *, agent_cluster: str = "") -> str | None:
    """Why a resource of type URL ``kind`` cannot be served; ``None`` if it can.

    ``agent_cluster`` is the bootstrap's static cluster to a local SDS agent (``""``:
    none), the only cluster a secret may be fetched from other than over ADS."""
    if kind == LISTENER:
        found = listener_problem(resource)
    elif kind == CLUSTER:
        found = cluster_problem(resource)
    elif kind == ROUTE_CONFIGURATION:
        return route_configuration_problem(resource)
    else:
        return None
    return found or _agent_problem(kind, resource, agent_cluster)


def _agent_problem(kind: str, resource: dict[str, Any], agent_cluster: str) -> str | None:
    """A secret from a local SDS agent the bootstrap does not have (Envoy rejects an
    ``envoy_grpc`` source naming an unknown cluster): refused, never served without."""
    for ref in objects_in(resource):
        cluster = sds_agent_cluster(ref) if isinstance(ref.get("sds_config"), dict) else None
        if cluster is not None and cluster != agent_cluster:
            what = "listener" if kind == LISTENER else "cluster"
            return (
                f"{what} {resource.get('name', '')}: SDS secret {ref.get('name')!r} comes from "
                f"cluster {cluster!r}, which is not the bootstrap's local SDS agent (set "
                "APPMESH_SDS_SOCKET_PATH to the agent's socket); refusing rather than serving "
                "without it"
            )
    return None


def sds_agent_cluster(ref: Mapping[str, Any]) -> str | None:
    """The cluster an ``SdsSecretConfig`` fetches from over gRPC; ``None`` for ADS.
    (Any other shape of ``sds_config`` is refused by ``_sds_source_problem``.)"""
    config = ref.get("sds_config") or {}
    if "ads" in config:
        return None
    services = (config.get("api_config_source") or {}).get("grpc_services") or [{}]
    return str((services[0].get("envoy_grpc") or {}).get("cluster_name", ""))


def listener_problem(spec: dict[str, Any]) -> str | None:
    """Why a ``Listener`` cannot be served as written, if it cannot."""
    name = spec.get("name", "")
    problem = _buffer_limit_problem(spec)
    if problem:
        return f"listener {name}: {problem}"
    chains = list(spec.get("filter_chains") or ())
    if isinstance(spec.get("default_filter_chain"), dict):
        chains.append(spec["default_filter_chain"])
    for chain in chains:
        if not isinstance(chain, dict):
            continue
        problem = _chain_problem(chain)
        if problem:
            label = chain.get("name") or "unnamed"
            return f"listener {name}, filter chain {label}: {problem}"
    return None


def _chain_problem(chain: dict[str, Any]) -> str | None:
    socket = chain.get("transport_socket")
    if isinstance(socket, dict):
        problem = transport_socket_problem(socket, DOWNSTREAM_TLS)
        if problem:
            return f"downstream {problem}"
    for network_filter in chain.get("filters") or ():
        if not isinstance(network_filter, dict):
            continue
        kind, config = typed_config(network_filter)
        if kind not in _NETWORK_FILTERS:
            return f"network filter {kind or 'without a type'} {NOT_YET}"
        if kind in (HTTP_CONNECTION_MANAGER, "envoy.filters.network.http_connection_manager"):
            problem = _hcm_problem(config)
            if problem:
                return problem
    return None


#: Envoy's default per_connection_buffer_limit_bytes. A stream here holds less than this
#: (the sockets' write buffers, one read, a request body kept for retries up to 1 MiB),
#: so a limit at least this large is kept; a smaller one is not promised.
DEFAULT_BUFFER_LIMIT = 1 << 20


def _buffer_limit_problem(spec: dict[str, Any]) -> str | None:
    limit = spec.get("per_connection_buffer_limit_bytes")
    if isinstance(limit, dict):
        limit = limit.get("value")
    if limit is None or int(limit) >= DEFAULT_BUFFER_LIMIT:
        return None
    return (
        f"per_connection_buffer_limit_bytes below {DEFAULT_BUFFER_LIMIT} {NOT_YET} "
        f"(asked for {int(limit)})"
    )


def _hcm_problem(config: dict[str, Any]) -> str | None:
    common = config.get("common_http_protocol_options") or {}
    if isinstance(common, dict) and "max_response_headers_kb" in common:
        # Envoy's own rule: response heads are bounded per cluster, not per listener.
        return "max_response_headers_kb cannot be set on http_connection_manager"
    if isinstance(common, dict) and common.get("max_stream_duration"):
        # Routes' max_stream_duration is honoured; the listener-wide default is not.
        return f"common_http_protocol_options.max_stream_duration {NOT_YET} (set it per route)"
    for field in ("internal_address_config", "xff_num_trusted_hops"):
        if config.get(field):
            # Which requests are internal follows Envoy's default rule only.
            return f"{field} {NOT_YET}"
    codec = str(config.get("codec_type", "AUTO"))
    if codec == "HTTP3":
        return f"codec_type {codec} {NOT_YET}; this proxy speaks HTTP/1.1 and HTTP/2"
    h2_options = config.get("http2_protocol_options")
    if h2_options and (not isinstance(h2_options, dict) or set(h2_options) - {"allow_connect"}):
        # ``allow_connect`` (RFC 8441 extended CONNECT, WebSockets over HTTP/2) is honoured.
        return _http2_options_problem(h2_options)
    problem = _upgrades_problem(config.get("upgrade_configs"))
    if problem:
        return problem
    if isinstance(config.get("route_config"), dict):
        problem = route_configuration_problem(config["route_config"])
        if problem:
            return problem
    for http_filter in config.get("http_filters") or ():
        if not isinstance(http_filter, dict) or http_filter.get("is_optional"):
            continue
        kind, filter_config = typed_config(http_filter)
        if kind not in _HTTP_FILTERS:
            return f"HTTP filter {kind or 'without a type'} {NOT_YET}"
        if kind in (ROUTER, ROUTER_NAME) and (problem := _router_problem(filter_config)):
            return problem
        is_health_check = kind in (HEALTH_CHECK_FILTER, HEALTH_CHECK_NAME)
        if is_health_check and health_check_path(filter_config) is None:
            return (
                f"this health_check filter {NOT_YET}: only pass_through_mode false with one "
                "exact :path match is"
            )
    return None


# Router filter settings this proxy does not act on, off unless set (``dynamic_stats`` is
# on unless set false). ``respect_expected_rq_timeout`` is honoured, and
# ``suppress_grpc_request_failure_code_stats`` has nothing to suppress here (no
# per-gRPC-status failure stats are kept).
_ROUTER_NOT_YET = ("start_child_span", "suppress_envoy_headers", "strict_check_headers",
                   "upstream_log", "upstream_log_options", "upstream_http_filters")  # fmt: skip


def _router_problem(config: dict[str, Any]) -> str | None:
    """A router setting this proxy does not act on, set to anything but its default."""
    if not flag(config.get("dynamic_stats"), True):
        return f"router filter dynamic_stats false {NOT_YET}"
    for name in _ROUTER_NOT_YET:
        if config.get(name):
            return f"router filter {name} {NOT_YET}"
    return None


#: Route action fields Envoy's router acts on that this proxy's router does not: each would
#: be dropped without a word (no mirrored copy, no redirect followed), so a route asking
#: for one is refused.
_ROUTE_ACTION_FIELDS = ("request_mirror_policies", "internal_redirect_policy")


def route_configuration_problem(spec: dict[str, Any]) -> str | None:
    """Why a ``RouteConfiguration`` (from RDS, or inline in an HCM) cannot be served."""
    name = spec.get("name", "")
    for vhost in spec.get("virtual_hosts") or ():
        if not isinstance(vhost, dict):
            continue
        problem = _hedge_problem(vhost.get("hedge_policy"))
        if problem:
            return f"route config {name}, virtual host {vhost.get('name', '')}: {problem}"
        for route in vhost.get("routes") or ():
            action = route.get("route") if isinstance(route, dict) else None
            if not isinstance(action, dict):
                continue
            label = route.get("name") or "unnamed"
            problem = _hedge_problem(action.get("hedge_policy"))
            if problem:
                return f"route config {name}, route {label}: {problem}"
            for field in _ROUTE_ACTION_FIELDS:
                if action.get(field):
                    return f"route config {name}, route {label}: {field} {NOT_YET}"
    return None


def _hedge_problem(policy: Any) -> str | None:
    """``hedge_on_per_try_timeout`` is served; more initial requests or a chance of an
    additional one (fields Envoy documents as not implemented) are refused, not ignored."""
    if not isinstance(policy, dict):
        return None
    initial = policy.get("initial_requests")
    if initial is not None and uint(initial, 1) != 1:
        return f"hedge_policy.initial_requests {NOT_YET}"
    chance = policy.get("additional_request_chance")
    if isinstance(chance, dict) and chance.get("numerator"):
        return f"hedge_policy.additional_request_chance {NOT_YET}"
    return None


def _upgrades_problem(upgrades: Any) -> str | None:
    """HCM ``upgrade_configs``: WebSocket-style upgrades through the HCM's own filters are
    implemented; a custom filter chain per upgrade and CONNECT tunnelling are not."""
    for upgrade in upgrades or ():
        if not isinstance(upgrade, dict):
            continue
        kind = str(upgrade.get("upgrade_type", ""))
        if upgrade.get("filters"):
            return f"upgrade_configs {kind}: a custom upgrade filter chain {NOT_YET}"
        if kind.upper() == "CONNECT":
            return f"upgrade_configs CONNECT (HTTP CONNECT tunnelling) {NOT_YET}"
    return None


def health_check_path(config: dict[str, Any]) -> str | None:
    """The ``:path`` a ``health_check`` HTTP filter answers itself, when it is the one form
    this proxy implements (what App Mesh's gateway listeners used): not pass-through, one
    exact ``:path`` header match, no cluster-health conditions."""
    if config.get("pass_through_mode") not in (None, False) or config.get(
        "cluster_min_healthy_percentages"
    ):
        return None
    headers = config.get("headers") or []
    if len(headers) != 1 or not isinstance(headers[0], dict) or headers[0].get("name") != ":path":
        return None
    match = headers[0].get("string_match") or {}
    exact = match.get("exact", headers[0].get("exact_match"))
    return exact if isinstance(exact, str) and len(match) <= 1 else None


_LB_POLICIES = frozenset({"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "CLUSTER_PROVIDED"})


def cluster_problem(spec: dict[str, Any]) -> str | None:
    """Why a ``Cluster`` cannot be served as written, if it cannot."""
    name = spec.get("name", "")
    socket = spec.get("transport_socket")
    if isinstance(socket, dict):
        problem = transport_socket_problem(socket, UPSTREAM_TLS)
        if problem:
            return f"cluster {name}: upstream {problem}"
    if spec.get("transport_socket_matches"):
        return f"cluster {name}: transport_socket_matches {NOT_YET}"
    lb_policy = str(spec.get("lb_policy", "ROUND_ROBIN"))
    if lb_policy not in _LB_POLICIES:
        # RING_HASH, MAGLEV: balanced round robin instead, no request would stick to a host.
        return f"cluster {name}: lb_policy {lb_policy} {NOT_YET}"
    for field in ("load_balancing_policy", "lb_subset_config"):
        if spec.get(field):
            return f"cluster {name}: {field} {NOT_YET}"
    problem = _buffer_limit_problem(spec)
    if problem:
        return f"cluster {name}: {problem}"
    options = _explicit_http2_options(spec)
    if options and (not isinstance(options, dict) or set(options) - {"allow_connect"}):
        # ``allow_connect`` (upgrades as RFC 8441 extended CONNECT upstream) is honoured.
        problem = _http2_options_problem(options)
        return f"cluster {name}: upstream {problem}"
    if _follows_downstream(spec):
        return f"cluster {name}: use_downstream_protocol_config and auto_config {NOT_YET}"
    for check in spec.get("health_checks") or ():
        problem = _health_check_problem(check) if isinstance(check, dict) else None
        if problem:
            return f"cluster {name}: {problem}"
    return None


def _http2_options_problem(options: Any) -> str:
    """HTTP/2 settings (stream limits, windows, keep-alive pings...) are not applied: the
    codecs run with their own fixed settings, so any field set is refused, not ignored."""
    fields = sorted(options) if isinstance(options, dict) else [str(options)]
    return f"http2_protocol_options fields {fields} {NOT_YET}"


def _explicit_http2_options(spec: dict[str, Any]) -> Any:
    """The cluster's ``http2_protocol_options`` (typed extension or legacy field)."""
    options = (spec.get("typed_extension_protocol_options") or {}).get(
        HTTP_PROTOCOL_OPTIONS.rsplit("/", 1)[-1]
    )
    explicit = (options or {}).get("explicit_http_config") if isinstance(options, dict) else None
    if isinstance(explicit, dict) and explicit.get("http2_protocol_options"):
        return explicit["http2_protocol_options"]
    return spec.get("http2_protocol_options")


def _follows_downstream(spec: dict[str, Any]) -> bool:
    """Upstream protocol chosen per request or by ALPN: only explicit HTTP/1 or HTTP/2
    (what App Mesh's clusters use) is implemented."""
    options = (spec.get("typed_extension_protocol_options") or {}).get(
        HTTP_PROTOCOL_OPTIONS.rsplit("/", 1)[-1]
    )
    if not isinstance(options, dict):
        return False
    return bool(options.get("use_downstream_protocol_config") or options.get("auto_config"))


def _health_check_problem(check: dict[str, Any]) -> str | None:
    grpc = check.get("grpc_health_check")
    extra = sorted(set(grpc) - {"service_name", "authority"}) if isinstance(grpc, dict) else []
    if extra:
        return f"gRPC health check fields {extra} {NOT_YET}"
    http = check.get("http_health_check")
    if isinstance(http, dict) and http.get("codec_client_type", "HTTP1") not in ("HTTP1", "HTTP2"):
        return f"{http['codec_client_type']} health checks {NOT_YET}"
    if isinstance(check.get("custom_health_check"), dict):
        return f"custom health checks {NOT_YET}"
    if check.get("transport_socket_match_criteria") or check.get("tls_options"):
        return f"health check transport_socket_match_criteria and tls_options {NOT_YET}"
    return None


_CONTEXT_FIELDS = {
    DOWNSTREAM_TLS: {"common_tls_context", "require_client_certificate"},
    UPSTREAM_TLS: {"common_tls_context", "sni"},
}
_COMMON_FIELDS = {
    "tls_certificates",
    "tls_certificate_sds_secret_configs",
    "validation_context",
    "validation_context_sds_secret_config",
    "combined_validation_context",
    "alpn_protocols",
    "tls_params",
}
_VALIDATION_FIELDS = {"trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names"}
_TLS_PARAMS = {"tls_minimum_protocol_version", "tls_maximum_protocol_version"}


def transport_socket_problem(socket: dict[str, Any], context_type: str) -> str | None:
    """Why a ``transport_socket`` cannot be honoured: an unknown socket, or a TLS context
    asking for something ``proxy.config.tls`` does not do."""
    kind = socket_kind(socket)
    if kind == "raw_buffer":
        return None
    if kind != "tls":
        return f"transport socket {kind} {NOT_YET}"
    config = socket.get("typed_config") or {}
    if type_url(config) != context_type:
        return f"TLS transport socket with {type_url(config) or 'no'} context"
    extra = set(config) - {"@type"} - _CONTEXT_FIELDS[context_type]
    if extra:
        return f"TLS context fields {sorted(extra)} {NOT_YET}"
    return _common_context_problem(config.get("common_tls_context") or {})


def _common_context_problem(common: dict[str, Any]) -> str | None:
    extra = set(common) - _COMMON_FIELDS
    if extra:
        return f"TLS common_tls_context fields {sorted(extra)} {NOT_YET}"
    params = set(common.get("tls_params") or {}) - _TLS_PARAMS
    if params:
        return f"TLS tls_params {sorted(params)} {NOT_YET}"
    validations = [common.get("validation_context")]
    combined = common.get("combined_validation_context") or {}
    validations.append(combined.get("default_validation_context"))
    for validation in validations:
        extra = set(validation or {}) - _VALIDATION_FIELDS - {"trust_chain_verification"}
        if extra:
            return f"TLS validation context fields {sorted(extra)} {NOT_YET}"
        if (validation or {}).get("trust_chain_verification", "VERIFY_TRUST_CHAIN") != (
            "VERIFY_TRUST_CHAIN"
        ):
            return f"TLS trust_chain_verification ACCEPT_UNTRUSTED {NOT_YET}"
    for ref in _sds_references(common):
        problem = _sds_source_problem(ref)
        if problem:
            return problem
    return None


def _sds_source_problem(ref: dict[str, Any]) -> str | None:
    """An SDS secret comes over ADS, or from a local agent over one ``envoy_grpc``
    cluster (App Mesh's ``static_cluster_sds_unix_socket``); nothing else is fetched."""
    config = ref.get("sds_config") or {}
    if "ads" in config:
        return None
    source = config.get("api_config_source") or {}
    services = source.get("grpc_services") or ()
    cluster = (services[0].get("envoy_grpc") or {}).get("cluster_name") if services else None
    if source.get("api_type") != "GRPC" or len(services) != 1 or not cluster:
        return (
            f"TLS secret {ref.get('name')!r}: an SDS source other than ADS or one envoy_grpc "
            f"cluster (a local SDS agent) {NOT_YET}; refusing rather than serving without it"
        )
    return None


def _sds_references(common: dict[str, Any]) -> list[dict[str, Any]]:
    refs = list(common.get("tls_certificate_sds_secret_configs") or ())
    if isinstance(common.get("validation_context_sds_secret_config"), dict):
        refs.append(common["validation_context_sds_secret_config"])
    combined = common.get("combined_validation_context") or {}
    if isinstance(combined.get("validation_context_sds_secret_config"), dict):
        refs.append(combined["validation_context_sds_secret_config"])
    return [ref for ref in refs if isinstance(ref, dict)]


def socket_kind(socket: dict[str, Any]) -> str:
    """``tls`` for a TLS context, ``raw_buffer`` for plaintext, else the extension named."""
    kind = type_url(socket.get("typed_config") or {}) or str(socket.get("name", ""))
    if kind.endswith("TlsContext") or kind == "envoy.transport_sockets.tls":
        return "tls"
    if kind.endswith("RawBuffer") or kind == "envoy.transport_sockets.raw_buffer":
        return "raw_buffer"
    return kind or "unnamed transport socket"
