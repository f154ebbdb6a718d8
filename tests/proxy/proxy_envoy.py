"""Envoy v3 resources as JSON dicts, written by hand for the proxy tests.

These builders produce exactly the shapes Envoy's v3 API defines (with ``@type`` URLs),
independent of the translator in ``envoy_bootstrap``, so the proxy is tested against
Envoy's contract rather than against our own translation of App Mesh.
"""

from __future__ import annotations

from typing import Any

T = "type.googleapis.com/"
LISTENER = T + "envoy.config.listener.v3.Listener"
ROUTE_CONFIGURATION = T + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = T + "envoy.config.cluster.v3.Cluster"
CLA = T + "envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
FILE_LOG = T + "envoy.extensions.access_loggers.file.v3.FileAccessLog"

LOCALHOST = "127.0.0.1"


def address(port: int, host: str = LOCALHOST) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def load_assignment(name: str, ports: list[int], **lb_extra: Any) -> dict[str, Any]:
    """A ``ClusterLoadAssignment`` with every port on 127.0.0.1 as one endpoint."""
    endpoints = [{"endpoint": {"address": address(port)}, **lb_extra} for port in ports]
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}


def cluster(name: str, ports: list[int], **extra: Any) -> dict[str, Any]:
    """A STATIC cluster on 127.0.0.1; ``extra`` adds Envoy fields (outlier_detection...)."""
    return {
        "@type": CLUSTER,
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": load_assignment(name, ports),
        **extra,
    }


def eds_cluster(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "@type": CLUSTER,
        "name": name,
        "type": "EDS",
        "connect_timeout": "0.25s",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
        **extra,
    }


def cla(name: str, ports: list[int]) -> dict[str, Any]:
    return {"@type": CLA, **load_assignment(name, ports)}


def route(match: dict[str, Any], cluster_name: str | None = None, **action: Any) -> dict[str, Any]:
    """A route to ``cluster_name`` (or ``weighted_clusters`` etc. given in ``action``)."""
    route_action = dict(action)
    if cluster_name is not None:
        route_action["cluster"] = cluster_name
    return {"match": match, "route": route_action}


def weighted(**weights: int) -> dict[str, Any]:
    return {"clusters": [{"name": name, "weight": weight} for name, weight in weights.items()]}


def vhost(name: str, domains: list[str], routes: list[dict[str, Any]], **extra: Any) -> dict:
    return {"name": name, "domains": domains, "routes": routes, **extra}


def route_config(name: str, vhosts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "virtual_hosts": vhosts, **extra}


def rds_resource(name: str, vhosts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"@type": ROUTE_CONFIGURATION, **route_config(name, vhosts)}


def file_access_log(path: str, text: str | None = None, json: dict | None = None) -> dict:
    log_format: dict[str, Any] = {}
    if text is not None:
        log_format["text_format_source"] = {"inline_string": text}
    if json is not None:
        log_format["json_format"] = json
    config: dict[str, Any] = {"@type": FILE_LOG, "path": path}
    if log_format:
        config["log_format"] = log_format
    return {"name": "envoy.access_loggers.file", "typed_config": config}


def http_listener(
    name: str,
    vhosts: list[dict[str, Any]] | None = None,
    *,
    port: int = 0,
    rds: str | None = None,
    stat_prefix: str = "ingress",
    **hcm_extra: Any,
) -> dict[str, Any]:
    """A listener whose one filter chain is an HCM with inline routes or RDS."""
    hcm: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        **hcm_extra,
    }
    if rds is not None:
        hcm["rds"] = {"route_config_name": rds, "config_source": {"ads": {}}}
    else:
        hcm["route_config"] = route_config(f"{name}-routes", vhosts or [])
    return {
        "@type": LISTENER,
        "name": name,
        "address": address(port),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def tcp_listener(name: str, *, port: int = 0, **tcp: Any) -> dict[str, Any]:
    config = {"@type": TCP_PROXY, "stat_prefix": name, **tcp}
    return {
        "@type": LISTENER,
        "name": name,
        "address": address(port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": config}]}
        ],
    }


def simple_proxy(
    cluster_name: str, ports: list[int], *, route_extra: dict | None = None, **cluster_extra: Any
) -> list[dict[str, Any]]:
    """One listener routing everything to one cluster: the most common fixture."""
    routes = [route({"prefix": "/"}, cluster_name, **(route_extra or {}))]
    return [
        cluster(cluster_name, ports, **cluster_extra),
        http_listener("ingress", [vhost("all", ["*"], routes)]),
    ]
