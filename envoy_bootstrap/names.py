"""App Mesh's names for the Envoy resources it generated, in one place.

Users read these names in Envoy stats and in App Mesh's own troubleshooting guide, so
they are part of the interface. Sources: the App Mesh User Guide pages "metrics" and
"envoy-metrics", aws-app-mesh-examples walkthroughs, and a published config dump of an
App Mesh virtual gateway (2022). Names no source shows are marked UNCONFIRMED.
"""

from __future__ import annotations

import json
from functools import lru_cache

# Virtual-host names seen in the gateway config dump.
SELF_REDIRECT_VHOST = "self_redirect"
DEFAULT_BACKEND_VHOST = "default_backend"
# Header a gateway adds when it keeps the client's Host (hostname rewrite DISABLED), so its
# own egress listener still knows which virtual service the request is for.
VIRTUAL_SERVICE_HEADER = "x-app-mesh-virtual-service"
# UNCONFIRMED: App Mesh's names for these two virtual hosts were never published.
ALLOW_ALL_VHOST = "mesh-allow-all"
AMAZONAWS_VHOST = "amazonaws"
AMAZONAWS_DOMAIN = "*.amazonaws.com"

# Static cluster the App Mesh image adds when APPMESH_SDS_SOCKET_PATH is set.
SDS_CLUSTER = "static_cluster_sds_unix_socket"
# Our name for the bootstrap's control-plane cluster (App Mesh used a google_grpc target
# instead of a cluster; a cluster works with both Envoy and our proxy).
XDS_CLUSTER = "xds_cluster"

INGRESS = "ingress"
EGRESS = "egress"


def listener(direction: str, address: str, port: int) -> str:
    """``lds_<direction>_<address>_<port>``, e.g. ``lds_ingress_0.0.0.0_15000``."""
    return f"lds_{direction}_{address}_{port}"


def ingress_route_config(protocol: str, port: int) -> str:
    """``rds_ingress_<protocol>_<port>``: one per node or gateway listener."""
    return f"rds_ingress_{protocol}_{port}"


def egress_route_config(port: int) -> str:
    """``rds_egress_http_<port>``, as seen in the gateway config dump for port 15001.

    We use the same shape for every egress port that carries HTTP-family traffic; the
    protocol part is always ``http`` because one HTTP connection manager serves http,
    http2 and grpc on a port (its codec is AUTO).
    """
    return f"rds_egress_http_{port}"


def ingress_cluster(mesh: str, node: str, protocol: str, port: int) -> str:
    """``cds_ingress_<mesh>_<vnode>_<protocol>_<port>``: the local application."""
    return f"cds_ingress_{mesh}_{node}_{protocol}_{port}"


def egress_cluster(mesh: str, node: str, protocol: str, port: int) -> str:
    """``cds_egress_<mesh>_<targetVnode>_<protocol>_<port>``: one target node listener."""
    return f"cds_egress_{mesh}_{node}_{protocol}_{port}"


def allow_all_cluster(mesh: str) -> str:
    """``cds_egress_<mesh>_mesh-allow-all``: original-destination passthrough."""
    return f"cds_egress_{mesh}_mesh-allow-all"


def amazonaws_cluster(mesh: str) -> str:
    """``cds_egress_<mesh>_amazonaws``: passthrough to ``*.amazonaws.com`` under DROP_ALL."""
    return f"cds_egress_{mesh}_amazonaws"


def self_redirect_cluster(
    mesh: str, gateway: str, protocol: str, egress_port: int, listener_port: int | None
) -> str:
    """A gateway's cluster that loops requests into its own egress listener.

    ``cds_ingress_<mesh>_<vg>_self_redirect_<protocol>_<egress>`` for one listener and
    ``cds_ingress_<mesh>_<vg>_self_redirect_<lport>_<protocol>_<egress>`` for several.
    """
    middle = f"{listener_port}_" if listener_port is not None else ""
    return f"cds_ingress_{mesh}_{gateway}_self_redirect_{middle}{protocol}_{egress_port}"


def ingress_stat_prefix(protocol: str, port: int, multiple_listeners: bool) -> str:
    """``ingress`` for one listener, ``ingress.<protocol>.<port>`` for several."""
    return f"ingress.{protocol}.{port}" if multiple_listeners else INGRESS


def ingress_virtual_host(protocol: str, port: int) -> str:
    """UNCONFIRMED: the virtual host of a node's ingress route configuration."""
    return f"ingress_{protocol}_{port}"


def service_virtual_host(service: str, port: int, several_ports: bool) -> str:
    """The egress virtual host of a virtual service: its name (as in the dump), with the
    port appended when the service listens on several ports (UNCONFIRMED)."""
    return f"{service}:{port}" if several_ports else service


def acm_certificate_secret(certificate_arn: str) -> str:
    """UNCONFIRMED: SDS name of an ACM certificate App Mesh sent as a secret; the ARN is
    unique and readable, so it is the name."""
    return certificate_arn


def acm_trust_secret(authority_arns: tuple[str, ...]) -> str:
    """UNCONFIRMED: SDS name of the validation context built from ACM PCA roots."""
    return "validation:" + ",".join(authority_arns)


def aggregate_stats(key: str, value: str) -> dict:
    """The ``aws.appmesh.aggregate_stats`` metadata App Mesh attached to egress routes
    (``TargetVirtualService``) and clusters (``TargetVirtualNode``); the metrics
    extension reads it to tag per-target stats."""
    config = _aggregate_stats_config(key, value)
    return {"filter_metadata": {"aws.appmesh.aggregate_stats": {"config": config}}}


@lru_cache(maxsize=65536)
def _aggregate_stats_config(key: str, value: str) -> str:
    return json.dumps({"tags": [{"key": key, "value": value}]}, separators=(",", ":"))
