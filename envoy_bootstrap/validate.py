"""Check generated resources against Envoy's own protobuf types, and for references.

``parse_resource`` is the contract with Envoy: every dict we emit must parse into its
message with no unknown field. The typed-config modules are imported here so that the
``Any`` fields inside (connection managers, TLS contexts, tracers...) resolve.
``reference_problems`` catches what protobuf cannot: names that point at nothing, and
duplicates Envoy would reject when it loads the configuration.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

# Imported for their side effect: registering message types in the default pool.
from envoy.config.bootstrap.v3 import bootstrap_pb2  # noqa: F401
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.grpc_credential.v3 import aws_iam_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.metrics.v3 import stats_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.config.trace.v3 import datadog_pb2, xray_pb2, zipkin_pb2  # noqa: F401
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import descriptor_pool, json_format, message, message_factory

from envoy_bootstrap import envoy_types as types


def message_class(type_url: str) -> type[message.Message]:
    """The generated class for a ``type.googleapis.com/...`` URL."""
    full_name = type_url.removeprefix(types.PREFIX)
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


def parse_resource(resource: Mapping[str, Any]) -> message.Message:
    """Parse one resource (with its ``@type``) into its Envoy message.

    Raises ``json_format.ParseError`` on an unknown field or a wrong value, and
    ``KeyError`` when the dict has no ``@type``.
    """
    # ParseDict briefly rewrites nested ``Any`` dicts, so give it a copy of our resource.
    body = copy.deepcopy({key: value for key, value in resource.items() if key != "@type"})
    return json_format.ParseDict(
        body, message_class(resource["@type"])(), ignore_unknown_fields=False
    )


def parse_bootstrap(bootstrap: Mapping[str, Any]) -> message.Message:
    """Parse a Bootstrap dict (which carries no ``@type`` of its own)."""
    return json_format.ParseDict(
        copy.deepcopy(dict(bootstrap)),
        message_class(types.BOOTSTRAP)(),
        ignore_unknown_fields=False,
    )


def reference_problems(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """Dangling names and duplicates across one proxy's resources, as readable lines."""
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["@type"], []).append(resource)
    problems = _duplicates(by_type)
    clusters = {c["name"] for c in by_type.get(types.CLUSTER, [])}
    route_configs = {r["name"] for r in by_type.get(types.ROUTE_CONFIGURATION, [])}
    for name in _walk_values(by_type.get(types.LISTENER, []), "route_config_name"):
        if name not in route_configs:
            problems.append(f"listener cites missing route configuration {name}")
    everything = [r for group in by_type.values() for r in group]
    for name in _walk_values(everything, "cluster") + _walk_values(everything, "name", "weight"):
        if name not in clusters:
            problems.append(f"missing cluster {name}")
    problems.extend(_eds_problems(by_type))
    problems.extend(_domain_problems(by_type.get(types.ROUTE_CONFIGURATION, [])))
    return problems


def _duplicates(by_type: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    problems = []
    for type_url, group in by_type.items():
        key = "cluster_name" if type_url == types.CLUSTER_LOAD_ASSIGNMENT else "name"
        counts = Counter(resource[key] for resource in group)
        problems += [f"duplicate {type_url} {name}" for name, n in counts.items() if n > 1]
    return problems


def _eds_problems(by_type: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    assigned = {a["cluster_name"] for a in by_type.get(types.CLUSTER_LOAD_ASSIGNMENT, [])}
    eds = {c["name"] for c in by_type.get(types.CLUSTER, []) if c.get("type") == "EDS"}
    return [f"EDS cluster {n} has no assignment" for n in sorted(eds - assigned)] + [
        f"assignment for non-EDS cluster {n}" for n in sorted(assigned - eds)
    ]


def _domain_problems(route_configs: list[Mapping[str, Any]]) -> list[str]:
    """Envoy rejects a route configuration in which two virtual hosts share a domain."""
    problems = []
    for config in route_configs:
        counts = Counter(d for vhost in config.get("virtual_hosts", []) for d in vhost["domains"])
        problems += [f"{config['name']}: duplicate domain {d}" for d, n in counts.items() if n > 1]
    return problems


def _walk_values(nodes: Iterable[Any], key: str, sibling: str | None = None) -> list[str]:
    """Every string value stored under ``key`` anywhere in ``nodes`` (only in dicts that
    also hold ``sibling``, when given)."""
    found: list[str] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            value = node.get(key)
            if isinstance(value, str) and (sibling is None or sibling in node):
                found.append(value)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
