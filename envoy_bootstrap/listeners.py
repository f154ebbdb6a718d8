"""Listeners: a node's ingress and egress listeners, a gateway's listeners.

From App Mesh's gateway config dump and User Guide:
- A node's traffic arrives at ``lds_ingress_0.0.0.0_15000`` and leaves through
  ``lds_egress_0.0.0.0_15001`` (iptables redirects both), so filter chains are matched
  on the original destination port: one ingress chain per node listener port, one egress
  chain per service port. A wrong port gives "No matching filter chain found".
- The TLS inspector runs on every listener; STRICT chains require TLS, PERMISSIVE has a
  TLS chain and a plaintext chain, DISABLED a plaintext chain.
- HTTP connection managers normalize paths, merge slashes, keep escaped slashes, allow
  websockets and trace; a gateway listener is ``lds_ingress_0.0.0.0_<port>``.
Beyond App Mesh, for proxies that are not behind iptables (our explicit mode): the
ingress listener's default chain serves the node's first listener in its TLS mode
(STRICT: TLS only; PERMISSIVE: a ``transport_protocol: tls`` twin beside a plaintext
default; DISABLED: plaintext), and the egress listener answers connections made to the
egress port itself (an application using the proxy directly), as a gateway's own
self-redirect does.
"""

from __future__ import annotations

import copy
from typing import Any

from envoy_bootstrap import envoy_types as types
from envoy_bootstrap import names, resilience, routes, tls
from envoy_bootstrap.access_log import access_logs
from envoy_bootstrap.egress import EgressPlan
from envoy_bootstrap.snapshot import (
    HTTP_FAMILY,
    MeshSnapshot,
    NodeIdentity,
    PortMapping,
    Spec,
    listener_at,
    own_listeners,
    own_logging,
    port_mappings,
)


def ingress_listener(snapshot: MeshSnapshot, identity: NodeIdentity) -> dict[str, Any] | None:
    """``lds_ingress_<address>_<ingress port>``; none for a node without listeners."""
    specs = own_listeners(snapshot, identity)
    mappings = port_mappings(specs)
    if not mappings:
        return None
    logs = access_logs(own_logging(snapshot, identity))
    chains: list[dict[str, Any]] = []
    first: list[dict[str, Any]] = []
    for mapping in mappings:
        spec = listener_at(specs, mapping.port)
        filters = [_ingress_filter(snapshot, identity, mapping, spec, len(mappings) > 1, logs)]
        port_chains = _tls_chains(
            f"ingress_{mapping.protocol}_{mapping.port}", mapping, spec, filters
        )
        first = first or port_chains
        chains.extend(port_chains)
    name = names.listener(names.INGRESS, identity.listen_address, identity.ingress_port)
    if len(first) == 2:  # PERMISSIVE: unredirected TLS and plaintext both reach the first port
        chains.append(_unmatched_copy(first[0], {"transport_protocol": "tls"}))
    default = _unmatched_copy(first[-1])
    return _listener(name, identity, identity.ingress_port, chains, "INBOUND", default=default)


def egress_listener(
    snapshot: MeshSnapshot, identity: NodeIdentity, plan: EgressPlan
) -> dict[str, Any]:
    """``lds_egress_<address>_<egress port>`` of a virtual node."""
    mesh = snapshot.mesh_name
    logs = access_logs(own_logging(snapshot, identity))
    chains = [
        _chain(f"egress_http_{port}", {"destination_port": port}, [_egress_hcm(port, logs)])
        for port in plan.http_ports()
    ]
    chains.extend(_egress_tcp_chains(mesh, plan, logs))
    if plan.serves_proxy_port(identity.egress_port):
        chains.append(_proxy_chain(identity, logs))
    default = None
    if snapshot.egress_filter == "ALLOW_ALL":
        default = _passthrough_chain("egress_allow_all", names.allow_all_cluster(mesh), logs)
    else:
        chains.append(_amazonaws_chain(mesh, logs))
    name = names.listener(names.EGRESS, identity.listen_address, identity.egress_port)
    return _listener(name, identity, identity.egress_port, chains, "OUTBOUND", default=default)


def gateway_listeners(snapshot: MeshSnapshot, identity: NodeIdentity) -> list[dict[str, Any]]:
    """One ``lds_ingress_<address>_<port>`` per gateway listener, then the gateway's
    egress listener, which its self-redirect clusters point at."""
    specs = own_listeners(snapshot, identity)
    mappings = port_mappings(specs)
    logs = access_logs(own_logging(snapshot, identity))
    result = []
    for mapping in mappings:
        spec = listener_at(specs, mapping.port)
        hcm = _gateway_hcm(mapping, spec, len(mappings) > 1, logs)
        chains = _tls_chains(f"ingress_{mapping.protocol}_{mapping.port}", mapping, spec, [hcm])
        name = names.listener(names.INGRESS, identity.listen_address, mapping.port)
        result.append(
            _listener(name, identity, mapping.port, chains, "INBOUND", inspect_original=False)
        )
    egress = [_proxy_chain(identity, logs)]
    name = names.listener(names.EGRESS, identity.listen_address, identity.egress_port)
    result.append(
        _listener(name, identity, identity.egress_port, egress, "OUTBOUND", inspect_original=False)
    )
    return result


def http_connection_manager(
    stat_prefix: str,
    route_config: str,
    logs: list[dict[str, Any]],
    idle: str = routes.DEFAULT_IDLE_TIMEOUT,
    extra_filters: tuple[dict[str, Any], ...] = (),
    strip_port: bool = False,
    edge: bool = False,
) -> dict[str, Any]:
    """The HTTP connection manager App Mesh used, fetching routes by name over ADS.

    ``http2_protocol_options.allow_connect`` goes beyond App Mesh, whose HCMs left it
    off: WebSockets then work from HTTP/2 clients too (RFC 8441 extended CONNECT).

    ``edge`` (ingress and gateway listeners): the connection comes from outside the
    proxy's task, so its address is appended to ``x-forwarded-for`` (Envoy's
    ``use_remote_address``). UNCONFIRMED for App Mesh; the egress side, where the
    peer is the local app, leaves the header alone, as Envoy's default does.
    """
    body: dict[str, Any] = {
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "rds": {"config_source": types.ads_source(), "route_config_name": route_config},
        "http_filters": [*extra_filters, types.extension(types.ROUTER_NAME, types.ROUTER)],
        "tracing": {},
        "upgrade_configs": [{"upgrade_type": "websocket", "enabled": True}],
        # Beyond App Mesh: RFC 8441 WebSockets over HTTP/2, which App Mesh users asked
        # for and never got (see docs/compatibility.md).
        "http2_protocol_options": {"allow_connect": True},
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "stream_idle_timeout": idle,
    }
    if strip_port:
        body["strip_any_host_port"] = True
    if edge:
        body["use_remote_address"] = True
    if logs:
        body["access_log"] = copy.deepcopy(logs)
    return types.extension(types.HCM_NAME, types.HTTP_CONNECTION_MANAGER, body)


def _ingress_filter(
    snapshot: MeshSnapshot,
    identity: NodeIdentity,
    mapping: PortMapping,
    spec: Spec,
    several: bool,
    logs: list,
) -> dict[str, Any]:
    stat_prefix = names.ingress_stat_prefix(mapping.protocol, mapping.port, several)
    timeout = (spec.get("timeout") or {}).get(mapping.protocol)
    if mapping.protocol in HTTP_FAMILY:
        route_config = names.ingress_route_config(mapping.protocol, mapping.port)
        return http_connection_manager(
            stat_prefix, route_config, logs, routes.idle_timeout(timeout), edge=True
        )
    cluster = names.ingress_cluster(
        snapshot.mesh_name, identity.name, mapping.protocol, mapping.port
    )
    return _tcp_proxy(
        stat_prefix, {"cluster": cluster, "idle_timeout": routes.idle_timeout(timeout)}, logs
    )


def _gateway_hcm(mapping: PortMapping, spec: Spec, several: bool, logs: list) -> dict[str, Any]:
    """A gateway listener's connection manager; a listener ``healthCheck`` makes the
    gateway answer its own health checks at ``path`` (UNCONFIRMED: App Mesh never said
    what the gateway did with it; answering lets a load balancer probe the listener)."""
    check = spec.get("healthCheck")
    extra = (_health_check_filter(check),) if check else ()
    return http_connection_manager(
        names.ingress_stat_prefix(mapping.protocol, mapping.port, several),
        names.ingress_route_config(mapping.protocol, mapping.port),
        logs,
        extra_filters=extra,
        strip_port=True,
        edge=True,
    )


def _health_check_filter(check: Spec) -> dict[str, Any]:
    path = (
        resilience.GRPC_HEALTH_PATH if check.get("protocol") == "grpc" else check.get("path") or "/"
    )
    body = {
        "pass_through_mode": False,
        "headers": [{"name": ":path", "string_match": {"exact": path}}],
    }
    return types.extension(types.HEALTH_CHECK_NAME, types.HEALTH_CHECK_FILTER, body)


def _egress_tcp_chains(mesh: str, plan: EgressPlan, logs: list) -> list[dict[str, Any]]:
    """One chain per port owned by a TCP service that has somewhere to send traffic."""
    chains = []
    for port, owner in plan.tcp_ports():
        target = routes.tcp_proxy_target(mesh, owner)
        if target:
            proxy = _tcp_proxy(names.EGRESS, target, logs)
            chains.append(_chain(f"egress_tcp_{port}", {"destination_port": port}, [proxy]))
    return chains


def _unmatched_copy(chain: dict[str, Any], match: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chain's twin without its port match (only ``match``, if given), for connections
    that were not redirected: the default chain, and for PERMISSIVE its TLS twin, since
    one default chain cannot be both TLS and plaintext."""
    rest = {
        k: copy.deepcopy(v) for k, v in chain.items() if k not in ("name", "filter_chain_match")
    }
    twin = {"name": f"{chain['name']}_default", **rest}
    if match:
        twin["filter_chain_match"] = match
    return twin


def _egress_hcm(port: int, logs: list) -> dict[str, Any]:
    return http_connection_manager(names.EGRESS, names.egress_route_config(port), logs)


def _proxy_chain(identity: NodeIdentity, logs: list) -> dict[str, Any]:
    port = identity.egress_port
    return _chain(f"egress_http_{port}", {"destination_port": port}, [_egress_hcm(port, logs)])


def _amazonaws_chain(mesh: str, logs: list) -> dict[str, Any]:
    """TLS to ``*.amazonaws.com`` (matched by SNI) passes under DROP_ALL."""
    match = {"server_names": [names.AMAZONAWS_DOMAIN], "transport_protocol": "tls"}
    return {
        **_passthrough_chain("egress_amazonaws", names.amazonaws_cluster(mesh), logs),
        "filter_chain_match": match,
    }


def _passthrough_chain(name: str, cluster: str, logs: list) -> dict[str, Any]:
    target = {"cluster": cluster, "idle_timeout": routes.DEFAULT_IDLE_TIMEOUT}
    return {"name": name, "filters": [_tcp_proxy(names.EGRESS, target, logs)]}


def _tcp_proxy(stat_prefix: str, target: dict[str, Any], logs: list) -> dict[str, Any]:
    body = {"stat_prefix": stat_prefix, **target}
    if logs:
        body["access_log"] = copy.deepcopy(logs)
    return types.extension(types.TCP_PROXY_NAME, types.TCP_PROXY, body)


def _tls_chains(name: str, mapping: PortMapping, spec: Spec, filters: list) -> list[dict[str, Any]]:
    """Filter chains for one listener port under its TLS mode."""
    server_tls = spec.get("tls") or {}
    mode = server_tls.get("mode", "DISABLED")
    port_match = {"destination_port": mapping.port}
    if mode == "DISABLED":
        return [_chain(name, port_match, filters)]
    secure = _chain(f"{name}_tls", {**port_match, "transport_protocol": "tls"}, filters)
    secure["transport_socket"] = tls.downstream_socket(server_tls, mapping.protocol in HTTP_FAMILY)
    if mode == "STRICT":
        return [secure]
    plain = {**port_match, "transport_protocol": "raw_buffer"}
    return [secure, _chain(name, plain, copy.deepcopy(filters))]


def _chain(name: str, match: dict[str, Any], filters: list) -> dict[str, Any]:
    return {"name": name, "filter_chain_match": match, "filters": filters}


def _listener(
    name: str,
    identity: NodeIdentity,
    port: int,
    chains: list[dict[str, Any]],
    direction: str,
    default: dict[str, Any] | None = None,
    inspect_original: bool = True,
) -> dict[str, Any]:
    filters = [types.extension(types.TLS_INSPECTOR_NAME, types.TLS_INSPECTOR)]
    if inspect_original:
        filters.insert(0, types.extension(types.ORIGINAL_DST_NAME, types.ORIGINAL_DST))
    body: dict[str, Any] = {
        "name": name,
        "address": {"socket_address": {"address": identity.listen_address, "port_value": port}},
        "filter_chains": chains,
        "listener_filters": filters,
        "traffic_direction": direction,
    }
    if default:
        body["default_filter_chain"] = default
    return types.typed(types.LISTENER, body)
