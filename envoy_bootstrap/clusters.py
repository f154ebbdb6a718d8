"""Clusters and their endpoints: the local app, target node listeners, passthroughs.

How a target's hosts are found (App Mesh UG "virtual_nodes" and the API model):
- proxy ingress addresses registered for the node win (EDS, with a ClusterLoadAssignment
  we send), because then traffic goes proxy to proxy as in App Mesh;
- else DNS: LOGICAL_DNS for ``responseType`` LOADBALANCER (the default: "Envoy chooses
  one of the addresses"), STRICT_DNS for ENDPOINTS; the IP preference of the node
  overrides the mesh's;
- else (Cloud Map, or no discovery) EDS, whose endpoints the control plane fills in.
Connect timeouts are those of the gateway config dump: 1 s to targets, 0.25 s locally.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from envoy_bootstrap import envoy_types as types
from envoy_bootstrap import names, resilience, tls
from envoy_bootstrap.egress import Target
from envoy_bootstrap.snapshot import (
    MeshSnapshot,
    NodeIdentity,
    PortMapping,
    Spec,
    client_policy,
    node_listener,
)

EGRESS_CONNECT_TIMEOUT = "1s"
LOCAL_CONNECT_TIMEOUT = "0.250s"
DNS_LOOKUP_FAMILY = {
    "IPv4_ONLY": "V4_ONLY",
    "IPv6_ONLY": "V6_ONLY",
    "IPv4_PREFERRED": "V4_PREFERRED",
    "IPv6_PREFERRED": "AUTO",
}


def egress_cluster(
    snapshot: MeshSnapshot, identity: NodeIdentity, target: Target, service: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The cluster for one target listener, and its ClusterLoadAssignment if it uses EDS.
    TLS follows the client policy this proxy has toward ``service``."""
    name = names.egress_cluster(snapshot.mesh_name, target.node, target.protocol, target.port)
    listener = node_listener(snapshot, target.node, target.port)
    cluster: dict[str, Any] = {"name": name, "connect_timeout": EGRESS_CONNECT_TIMEOUT}
    assignment = _discovery(snapshot, target, cluster)
    cluster["circuit_breakers"] = resilience.circuit_breakers()
    if listener.get("outlierDetection"):
        cluster["outlier_detection"] = resilience.outlier_detection(listener["outlierDetection"])
    if listener.get("healthCheck"):
        cluster["health_checks"] = [resilience.health_check(listener["healthCheck"])]
    _add_protocol_options(cluster, target.protocol)
    socket = tls.upstream_socket(
        client_policy(snapshot, identity, service),
        listener.get("tls") or {},
        target.port,
        expected_sans(snapshot, target.node),
        target.protocol in ("http2", "grpc"),
    )
    if socket:
        cluster["transport_socket"] = socket
    cluster["metadata"] = names.aggregate_stats("TargetVirtualNode", target.node)
    return types.typed(types.CLUSTER, cluster), assignment


def local_cluster(
    name: str, host: str, port: int, protocol: str, pool: Spec | None
) -> dict[str, Any]:
    """A cluster of one local address: a node's application, or a gateway's own egress
    listener (self-redirect). Its circuit breaker comes from the listener's pool."""
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if is_ip(host) else "STRICT_DNS",
        "connect_timeout": LOCAL_CONNECT_TIMEOUT,
        "circuit_breakers": resilience.circuit_breakers(pool),
        "load_assignment": load_assignment(name, ((host, port),)),
    }
    _add_protocol_options(cluster, protocol)
    return types.typed(types.CLUSTER, cluster)


def ingress_cluster(
    snapshot: MeshSnapshot, identity: NodeIdentity, mapping: PortMapping
) -> dict[str, Any]:
    """``cds_ingress_<mesh>_<vnode>_<protocol>_<port>``: the app next to the proxy."""
    listener = node_listener(snapshot, identity.name, mapping.port)
    name = names.ingress_cluster(snapshot.mesh_name, identity.name, mapping.protocol, mapping.port)
    pool = listener.get("connectionPool") or None
    return local_cluster(name, identity.app_host, mapping.port, mapping.protocol, pool)


def passthrough_cluster(name: str) -> dict[str, Any]:
    """An ORIGINAL_DST cluster: ``mesh-allow-all`` and ``amazonaws``."""
    cluster = {
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": EGRESS_CONNECT_TIMEOUT,
        "circuit_breakers": resilience.circuit_breakers(),
    }
    return types.typed(types.CLUSTER, cluster)


def load_assignment(name: str, addresses: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    """A ClusterLoadAssignment body (no ``@type``) with one locality of ``addresses``."""
    assignment: dict[str, Any] = {"cluster_name": name}
    if addresses:
        endpoints = [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in addresses
        ]
        assignment["endpoints"] = [{"lb_endpoints": endpoints}]
    return assignment


def expected_sans(snapshot: MeshSnapshot, node: str) -> tuple[str, ...]:
    """What a target's certificate must name without client-side SANs (UG tls): its DNS
    hostname, or ``service.namespace`` for Cloud Map."""
    discovery = snapshot.node_spec(node).get("serviceDiscovery") or {}
    if "dns" in discovery:
        return (discovery["dns"]["hostname"],)
    if "awsCloudMap" in discovery:
        cloud_map = discovery["awsCloudMap"]
        return (f"{cloud_map['serviceName']}.{cloud_map['namespaceName']}",)
    return ()


def _discovery(
    snapshot: MeshSnapshot, target: Target, cluster: dict[str, Any]
) -> dict[str, Any] | None:
    """Fill the cluster's discovery fields; return the EDS assignment when there is one."""
    registered = tuple(snapshot.registered_endpoints.get(target.node) or ())
    discovery = snapshot.node_spec(target.node).get("serviceDiscovery") or {}
    if not registered and "dns" in discovery:
        dns = discovery["dns"]
        endpoints = ((dns["hostname"], target.port),)
        cluster["type"] = "STRICT_DNS" if dns.get("responseType") == "ENDPOINTS" else "LOGICAL_DNS"
        family = DNS_LOOKUP_FAMILY.get(dns.get("ipPreference") or snapshot.ip_preference or "")
        if family:
            cluster["dns_lookup_family"] = family
        cluster["load_assignment"] = load_assignment(cluster["name"], endpoints)
        return None
    cluster["type"] = "EDS"
    cluster["eds_cluster_config"] = {"eds_config": types.ads_source()}
    body = load_assignment(cluster["name"], registered)
    return types.typed(types.CLUSTER_LOAD_ASSIGNMENT, body)


def http2_protocol_options(
    allow_connect: bool = False, keepalive: dict[str, str] | None = None
) -> dict[str, Any]:
    """``typed_extension_protocol_options`` making a cluster speak HTTP/2 upstream;
    ``allow_connect`` lets WebSockets cross it as RFC 8441 extended CONNECT (Envoy:
    "Allows proxying Websocket and other upgrades over H2 connect"); ``keepalive`` is
    its ``connection_keepalive`` (PING ``interval`` and ``timeout``)."""
    h2: dict[str, Any] = {"allow_connect": True} if allow_connect else {}
    if keepalive:
        h2["connection_keepalive"] = dict(keepalive)
    options = types.typed(
        types.HTTP_PROTOCOL_OPTIONS, {"explicit_http_config": {"http2_protocol_options": h2}}
    )
    return {types.HTTP_PROTOCOL_OPTIONS.removeprefix(types.PREFIX): options}


def _add_protocol_options(cluster: dict[str, Any], protocol: str) -> None:
    """HTTP/2 upstream for http2 and grpc listeners; Envoy's default is HTTP/1.1. Beyond
    App Mesh, ``allow_connect``: the HCMs accept WebSockets (``upgrade_configs``), and
    without it none could reach an HTTP/2 target."""
    if protocol in ("http2", "grpc"):
        cluster["typed_extension_protocol_options"] = http2_protocol_options(allow_connect=True)


def is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 literal (STATIC cluster), False for a name (DNS cluster)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
