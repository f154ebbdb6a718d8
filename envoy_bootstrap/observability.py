"""Tracing, stats tags and stats sinks of the bootstrap, as the App Mesh image set them.

Source: amazon-ecs-service-connect-agent ``envoy_bootstrap.go`` and ``metric_filter``.
One tracer at most (X-Ray, Datadog or Jaeger); a custom config file named by
``ENVOY_TRACING_CFG_FILE``, ``ENVOY_STATS_CONFIG_FILE`` or ``ENVOY_STATS_SINKS_CFG_FILE``
replaces the generated section (we do no file I/O, so that section is left out).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from envoy_bootstrap import durations
from envoy_bootstrap import envoy_types as types
from envoy_bootstrap.envvars import Env, MeshResource

XRAY_DEFAULT_RATE = 0.05
TARGET_VIRTUAL_NODE_REGEX = (
    r"^appmesh(?:\..+?\..+?)*(\.TargetVirtualNode\.(.+?))(?:\..+?\..+?)*\.(?:.+)$"
)
TARGET_VIRTUAL_SERVICE_REGEX = (
    r"^appmesh(?:\..+?\..+?)*(\.TargetVirtualService\.([^MVT]+))(?:\..+?\..+?)*\.(?:.+)$"
)
LISTENER_PROTOCOL_REGEX = r".*?\.ingress\.((\w+?)\.)[0-9]+?\.(.+?)$"
LISTENER_PORT_REGEX = r".*?\.ingress\.\w+?\.(([0-9]+?)\.)(.+?)$"
RDS_ROUTE_CONFIG_REGEX = r".*?\.ingress\.\w+?\.[0-9]+?\.rds\.((.*?)\.)(.+?)$"


def tracing(env: Env, resource: MeshResource) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The ``tracing`` section and any static clusters the tracer needs."""
    if env.get("ENVOY_TRACING_CFG_FILE"):
        return None, []
    chosen = [k for k in ("XRAY", "DATADOG", "JAEGER") if env.truthy(f"ENABLE_ENVOY_{k}_TRACING")]
    if len(chosen) > 1:
        raise ValueError(
            "Only a single envoy trace driver can be configured; please enable only one of "
            "ENABLE_ENVOY_XRAY_TRACING, ENABLE_ENVOY_DATADOG_TRACING or "
            "ENABLE_ENVOY_JAEGER_TRACING."
        )
    if not chosen:
        return None, []
    builder = {"XRAY": _xray, "DATADOG": _datadog, "JAEGER": _jaeger}[chosen[0]]
    return builder(env, resource)


def stats_config(env: Env, resource: MeshResource) -> dict[str, Any] | None:
    """Stats tags: App Mesh names (``ENABLE_ENVOY_STATS_TAGS``), the metrics extension's
    dimensions (``APPMESH_METRIC_EXTENSION_VERSION=1``), and the listener tags the image
    always adds for ``ingress.<protocol>.<port>`` stat prefixes."""
    if env.get("ENVOY_STATS_CONFIG_FILE"):
        return None
    tags: list[dict[str, Any]] = []
    if env.truthy("ENABLE_ENVOY_STATS_TAGS"):
        tags.append(_fixed("appmesh.mesh", resource.mesh))
        tags.append(_fixed(f"appmesh.{resource.snake_type}", resource.name))
    if metric_extension_level(env) == "1":
        tags.append(_regex("TargetVirtualNode", TARGET_VIRTUAL_NODE_REGEX))
        tags.append(_regex("TargetVirtualService", TARGET_VIRTUAL_SERVICE_REGEX))
        tags.append(_fixed("Mesh", resource.mesh))
        tags.append(_fixed(resource.upper_camel_type, resource.name))
    tags.append(_regex("appmesh.listener_protocol", LISTENER_PROTOCOL_REGEX))
    tags.append(_regex("appmesh.listener_port", LISTENER_PORT_REGEX))
    tags.append(_regex("envoy_rds_route_config", RDS_ROUTE_CONFIG_REGEX))
    return {"stats_tags": tags}


def stats_sinks(env: Env) -> list[dict[str, Any]]:
    """A DogStatsD sink when ``ENABLE_ENVOY_DOG_STATSD`` is set: a Unix socket from
    ``STATSD_SOCKET_PATH``, else UDP to ``STATSD_ADDRESS``:``STATSD_PORT``."""
    if env.get("ENVOY_STATS_SINKS_CFG_FILE") or not env.truthy("ENABLE_ENVOY_DOG_STATSD"):
        return []
    socket_path = env.get("STATSD_SOCKET_PATH")
    if socket_path:
        address: dict[str, Any] = {"pipe": {"path": socket_path}}
    else:
        host = env.or_("STATSD_ADDRESS", "127.0.0.1")
        address = _udp(host, env.integer("STATSD_PORT", 8125))
    sink = types.extension("envoy.stat_sinks.dog_statsd", types.DOG_STATSD, {"address": address})
    return [sink]


def stats_flush_interval(env: Env) -> str | None:
    value = env.get("ENVOY_STATS_FLUSH_INTERVAL")
    return durations.parse_go_duration(value) if value else None


def metric_extension_level(env: Env) -> str:
    return env.or_("APPMESH_METRIC_EXTENSION_VERSION", "0")


def _xray(env: Env, resource: MeshResource) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    host, port = _xray_daemon(env)
    config: dict[str, Any] = {
        "segment_name": env.or_("XRAY_SEGMENT_NAME", f"{resource.mesh}/{resource.name}"),
        "daemon_endpoint": _udp(host, port)["socket_address"],
        "segment_fields": {
            "origin": "AWS::AppMesh::Proxy",
            "aws": {"app_mesh": {"mesh_name": resource.mesh, "virtual_node_name": resource.name}},
        },
    }
    manifest = _sampling_manifest(env)
    if manifest:
        config["sampling_rule_manifest"] = manifest
    return {"http": types.extension("envoy.tracers.xray", types.XRAY, config)}, []


def _xray_daemon(env: Env) -> tuple[str, int]:
    """``AWS_XRAY_DAEMON_ADDRESS`` (``host`` or ``host:port``, a static IP) overrides
    127.0.0.1 and ``XRAY_DAEMON_PORT`` (2000)."""
    port = env.integer("XRAY_DAEMON_PORT", 2000)
    value = env.get("AWS_XRAY_DAEMON_ADDRESS")
    if not value:
        return "127.0.0.1", port
    host = value
    if value.count(":") == 1 or value.startswith("["):
        host, _, port_text = value.rpartition(":")
        host, port = host.strip("[]"), int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            'AWS_XRAY_DAEMON_ADDRESS must be a static IPv4 or IPv6 address such as "127.0.0.1".'
        ) from None
    return host, port


def parse_sampling_rate(text: str) -> float:
    """``XRAY_SAMPLING_RATE``: a decimal 0..1, rounded to hundredths as the image did;
    anything else stops start-up with the image's own message."""
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0 <= rate <= 1:
        raise ValueError(
            f'XRAY_SAMPLING_RATE environment variable ("{text}") '
            "must be a decimal between 0 and 1.00 (100%)"
        )
    return round(rate * 100) / 100


def _sampling_manifest(env: Env) -> dict[str, Any] | None:
    """A manifest file, or an inline manifest for ``XRAY_SAMPLING_RATE`` (the image wrote
    the same JSON to /tmp; inline keeps us free of I/O). 0.05 is X-Ray's own default."""
    path = env.get("XRAY_SAMPLING_RULE_MANIFEST")
    if path:
        return {"filename": path}
    text = env.get("XRAY_SAMPLING_RATE")
    if not text:
        return None
    rate = parse_sampling_rate(text)
    if rate == XRAY_DEFAULT_RATE:
        return None
    manifest = {"version": 2, "default": {"fixed_target": 1, "rate": rate}, "rules": []}
    return {"inline_string": json.dumps(manifest)}


def _datadog(env: Env, resource: MeshResource) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    host = env.or_("DATADOG_TRACER_ADDRESS", "127.0.0.1")
    port = env.integer("DATADOG_TRACER_PORT", 8126)
    service = env.or_("DD_SERVICE", f"envoy-{resource.mesh}/{resource.name}")
    config = {"collector_cluster": "datadog_agent", "service_name": service}
    tracer = {"http": types.extension("envoy.tracers.datadog", types.DATADOG, config)}
    return tracer, [_collector_cluster("datadog_agent", host, port)]


def _jaeger(env: Env, _resource: MeshResource) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    host = env.or_("JAEGER_TRACER_ADDRESS", "127.0.0.1")
    port = env.integer("JAEGER_TRACER_PORT", 9411)
    version = "HTTP_JSON" if "json" in env.get("JAEGER_TRACER_VERSION").lower() else "HTTP_PROTO"
    config = {
        "collector_cluster": "jaeger",
        "collector_endpoint": "/api/v2/spans",
        "collector_endpoint_version": version,
        "shared_span_context": False,
    }
    tracer = {"http": types.extension("envoy.tracers.zipkin", types.ZIPKIN, config)}
    return tracer, [_collector_cluster("jaeger", host, port)]


def _collector_cluster(name: str, host: str, port: int) -> dict[str, Any]:
    address = {"socket_address": {"address": host, "port_value": port}}
    return {
        "name": name,
        "connect_timeout": "1s",
        "type": "STRICT_DNS",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _udp(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"protocol": "UDP", "address": host, "port_value": port}}


def _fixed(name: str, value: str) -> dict[str, Any]:
    return {"tag_name": name, "fixed_value": value}


def _regex(name: str, regex: str) -> dict[str, Any]:
    return {"tag_name": name, "regex": regex}
