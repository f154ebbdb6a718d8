"""The Envoy v3 Bootstrap the App Mesh Envoy image generated from its environment.

Source: amazon-ecs-service-connect-agent ``agent/envoy_bootstrap/envoy_bootstrap.go`` (the
agent inside the App Mesh image), and a published App Mesh config dump. Differences, all
because we point Envoy at appmesh-local rather than at App Mesh's regional endpoint:
- ADS goes to ``xds_endpoint`` through a static cluster named ``xds_cluster`` with
  ``envoy_grpc`` (App Mesh used ``google_grpc`` with TLS and SigV4 call credentials to
  ``appmesh-envoy-management.<region>.amazonaws.com:443``). The API stays gRPC ADS, v3,
  which a real Envoy needs; ``https://`` endpoints get TLS. ``APPMESH_XDS_ENDPOINT`` may
  list several replicas (comma-separated): one ``lb_endpoints`` entry each.
  ``like_appmesh_image`` keeps the image's ``google_grpc`` with TLS and SigV4 instead
  (``image_ads.py``).
- File-based overrides (``ENVOY_CONFIG_FILE``, ``ENVOY_RESOURCES_CONFIG_FILE``, the
  tracing/stats config files) need file reads; we leave the generated section out when
  one is named, like the image, and leave the merge to the caller.
- Node metadata the agent collected by probing the host (interfaces, ECS/EKS platform
  info) is left out; ``ENVOY_LOG_LEVEL`` and ``ENVOY_CONCURRENCY`` are command-line
  flags, not bootstrap (``command_line.py``).
- Node metadata gains ``appmesh_local.*`` keys: where this proxy listens and where other
  proxies reach its ingress (``APPMESH_INGRESS_PORT``, ``APPMESH_EGRESS_PORT``,
  ``APPMESH_APP_HOST``, ``APPMESH_LISTEN_ADDRESS``, ``APPMESH_INGRESS_ADDRESS``), the
  region, the mesh owner, and the CloudWatch endpoint the metrics extension writes to.
  App Mesh knew these from ECS or EKS; appmesh-local's control plane learns them from
  the node, so an Envoy started from this bootstrap registers exactly as
  ``appmesh-proxy`` does. Envoy passes node metadata through untouched.
- The admin address is ``APPMESH_LISTEN_ADDRESS`` when that is set (``127.0.0.1`` keeps
  a laptop's proxies off the network), else the image's ``0.0.0.0`` / ``::``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy_bootstrap import envoy_types as types
from envoy_bootstrap import names, observability
from envoy_bootstrap.clusters import http2_protocol_options, is_ip
from envoy_bootstrap.envvars import Env, mesh_resource
from envoy_bootstrap.image_ads import IMAGE_ROOT_CERTS, image_ads_service

ADMIN_ACCESS_LOG = "/tmp/envoy_admin_access.log"
ADMIN_PORT = 9901
INGRESS_PORT = 15000
EGRESS_PORT = 15001
METADATA = "appmesh_local."
CLOUDWATCH_NAMESPACE = "CWAgent"
#: HTTP/2 PINGs on the ADS connection (Envoy's ``connection_keepalive``): one after 30 s
#: with nothing received, the connection dropped (and the next replica tried) when 10 s
#: pass without an answer, so a replica that stops without a reset is left within 40 s.
XDS_KEEPALIVE = {"interval": "30s", "timeout": "10s"}


def xds_endpoint(env: Mapping[str, str], default: str) -> str:
    """``APPMESH_XDS_ENDPOINT``, else ``default`` (the image's default is App Mesh's
    regional endpoint, which a local mesh has no use for). A comma-separated list names
    several control-plane replicas (``xds_cluster``)."""
    return Env(env).or_("APPMESH_XDS_ENDPOINT", default)


def xds_delta(env: Mapping[str, str]) -> bool:
    """``APPMESH_XDS_DELTA``: ADS as incremental xDS (``api_type: DELTA_GRPC``), which
    sends a proxy only the resources that changed. Off by default: App Mesh's image used
    State of the World (``GRPC``), and appmesh-proxy then needs no gRPC at all."""
    return Env(env).truthy("APPMESH_XDS_DELTA")


def build_bootstrap(
    env: Mapping[str, str],
    xds_endpoint: str,
    like_appmesh_image: bool = False,
    root_certs: str = IMAGE_ROOT_CERTS,
) -> dict[str, Any]:
    """Build the bootstrap for the proxy described by ``env`` (its environment).

    ``like_appmesh_image`` reaches ADS as the image did (``image_ads.py``: Google gRPC over
    TLS trusting ``root_certs``, signed by the ``aws_iam`` call credentials) instead of
    through ``xds_cluster``, always with State of the World (``api_type: GRPC``), as the
    image did; otherwise ``APPMESH_XDS_DELTA`` picks incremental ADS (``xds_delta``).

    Raises ``ValueError`` where the App Mesh image refused to start: no node id, a node
    id that is not ``[arn:...:]mesh/<mesh>/<type>/<name>``, a malformed number, boolean,
    duration or X-Ray address, or more than one tracer.
    """
    values = Env(env)
    node_id = values.first(
        "APPMESH_RESOURCE_ARN", "APPMESH_RESOURCE_NAME", "APPMESH_VIRTUAL_NODE_NAME"
    )
    if not node_id:
        raise ValueError("APPMESH_RESOURCE_ARN environment variable must be set.")
    resource = mesh_resource(node_id)
    tracing, tracer_clusters = observability.tracing(values, resource)
    static = _static_clusters(values, xds_endpoint)
    ads = None
    if like_appmesh_image:
        static = static[1:]  # the image had no xds_cluster: Google gRPC dials target_uri
        ads = image_ads_service(values, xds_endpoint, root_certs)
    bootstrap: dict[str, Any] = {
        "node": _node(values, node_id),
        "admin": _admin(values),
        "static_resources": {"clusters": static + tracer_clusters},
        "dynamic_resources": _dynamic_resources(values, node_id, ads),
        "cluster_manager": {
            "outlier_detection": {
                "event_log_path": values.or_(
                    "ENVOY_OUTLIER_DETECTION_EVENT_LOG_PATH", "/dev/stdout"
                )
            }
        },
        "layered_runtime": _layered_runtime(values),
    }
    _add_optional(bootstrap, "tracing", tracing)
    _add_optional(bootstrap, "stats_config", observability.stats_config(values, resource))
    _add_optional(bootstrap, "stats_sinks", observability.stats_sinks(values))
    _add_optional(bootstrap, "stats_flush_interval", observability.stats_flush_interval(values))
    return bootstrap


def _node(env: Env, node_id: str) -> dict[str, Any]:
    """Node id and cluster; the cluster defaults to the id (``node.cluster`` is what
    stats and tracing use as the service name). The metadata says where the proxy
    listens, for the control plane to register it."""
    cluster = env.first("APPMESH_RESOURCE_CLUSTER", "APPMESH_VIRTUAL_NODE_CLUSTER") or node_id
    metadata = _local_metadata(env)
    if observability.metric_extension_level(env) == "1":
        metadata["aws.appmesh.metric_filter"] = {"level": "1"}
        cloudwatch = _cloudwatch(env)
        if cloudwatch:
            metadata[METADATA + "cloudwatch"] = cloudwatch
    return {"id": node_id, "cluster": cluster, "metadata": metadata}


def _local_metadata(env: Env) -> dict[str, Any]:
    """Ports and addresses (appmesh-local's additions; App Mesh knew them from ECS)."""
    ingress_port = env.integer("APPMESH_INGRESS_PORT", INGRESS_PORT)
    metadata: dict[str, Any] = {
        "ingress_port": ingress_port,
        "egress_port": env.integer("APPMESH_EGRESS_PORT", EGRESS_PORT),
        "app_host": env.or_("APPMESH_APP_HOST", "127.0.0.1"),
        "listen_address": env.or_("APPMESH_LISTEN_ADDRESS", "0.0.0.0"),
        "ingress_address": env.or_("APPMESH_INGRESS_ADDRESS", f"127.0.0.1:{ingress_port}"),
        "region": env.first("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
    }
    owner = env.get("APPMESH_MESH_OWNER")
    if owner:
        metadata["mesh_owner"] = owner
    return {METADATA + key: value for key, value in metadata.items()}


def _cloudwatch(env: Env) -> dict[str, str] | None:
    """Where the metrics extension writes (appmesh-local's addition: App Mesh left
    CloudWatch to an agent sidecar), when ``AWS_ENDPOINT_URL_CLOUDWATCH`` or
    ``AWS_ENDPOINT_URL`` names an endpoint; ``APPMESH_CLOUDWATCH_NAMESPACE`` defaults to
    the CloudWatch agent's own ``CWAgent``."""
    endpoint = env.first("AWS_ENDPOINT_URL_CLOUDWATCH", "AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    return {
        "endpoint": endpoint,
        "region": env.first("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
        "namespace": env.or_("APPMESH_CLOUDWATCH_NAMESPACE", CLOUDWATCH_NAMESPACE),
    }


def _admin(env: Env) -> dict[str, Any]:
    """Admin on loopback, port 9901, unless ``ENVOY_ADMIN_ACCESS_ADDRESS`` opens it.

    App Mesh's image bound the admin to 0.0.0.0 (``::`` with
    ``ENVOY_ADMIN_ACCESS_ENABLE_IPV6``). The admin port reads every stat and config and
    can ``/quitquitquit`` the proxy, and on a laptop nothing outside the host needs it,
    so appmesh-local keeps it on 127.0.0.1 (``::1``) unless told otherwise.
    """
    ipv6 = env.truthy("ENVOY_ADMIN_ACCESS_ENABLE_IPV6")
    host = env.get("ENVOY_ADMIN_ACCESS_ADDRESS") or ("::1" if ipv6 else "127.0.0.1")
    address: dict[str, Any] = {
        "address": host,
        "port_value": env.integer("ENVOY_ADMIN_ACCESS_PORT", ADMIN_PORT),
    }
    if host == "::":
        address["ipv4_compat"] = True
    log = {"path": env.or_("ENVOY_ADMIN_ACCESS_LOG_FILE", ADMIN_ACCESS_LOG)}
    return {
        "access_log": [types.extension(types.FILE_ACCESS_LOG_NAME, types.FILE_ACCESS_LOG, log)],
        "address": {"socket_address": address},
    }


def _dynamic_resources(
    env: Env, node_id: str, grpc_service: dict[str, Any] | None
) -> dict[str, Any]:
    """LDS and CDS over ADS (routes, endpoints and secrets follow from them); ADS through
    ``xds_cluster`` (State of the World, or incremental with ``APPMESH_XDS_DELTA``)
    unless ``grpc_service`` (the image's, State of the World) says otherwise."""
    timeout = env.integer("ENVOY_INITIAL_FETCH_TIMEOUT", 0)
    source = {"ads": {}, "initial_fetch_timeout": f"{timeout}s", "resource_api_version": "V3"}
    api_type = "GRPC"
    if grpc_service is None:
        grpc_service = {
            "envoy_grpc": {"cluster_name": names.XDS_CLUSTER},
            "initial_metadata": [{"key": "authorization", "value": _account_claim(env, node_id)}],
        }
        api_type = "DELTA_GRPC" if env.truthy("APPMESH_XDS_DELTA") else "GRPC"
    ads = {"api_type": api_type, "transport_api_version": "V3", "grpc_services": [grpc_service]}
    return {"lds_config": source, "cds_config": dict(source), "ads_config": ads}


def _account_claim(env: Env, node_id: str) -> str:
    """A SigV4-shaped ``authorization`` naming the node's account, sent on every ADS call.

    appmesh-local serves a node's config only to its own account, read from the credential
    scope (App Mesh checked ``appmesh:StreamAggregatedResources`` on the node's ARN). This
    plaintext ``envoy_grpc`` channel cannot carry the ``aws_iam`` call credentials (gRPC
    sends them only over TLS; ``like_appmesh_image`` does that), so it states its account
    in static metadata instead: a scope with no real signature, which a control plane
    started with ``--verify-signatures`` refuses.
    """
    parts = node_id.split(":")
    account = parts[4] if node_id.startswith("arn:") and len(parts) > 4 else ""
    account = account or env.or_("APPMESH_MESH_OWNER", "123456789012")
    region = env.first("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
    return (
        f"AWS4-HMAC-SHA256 Credential={account}/20190125/{region}/appmesh/aws4_request, "
        f"SignedHeaders=host, Signature={'0' * 64}"
    )


def _static_clusters(env: Env, xds_endpoint: str) -> list[dict[str, Any]]:
    clusters = [xds_cluster(xds_endpoint)]
    socket_path = env.get("APPMESH_SDS_SOCKET_PATH")
    if socket_path:
        clusters.append(_pipe_cluster(names.SDS_CLUSTER, socket_path))
    return clusters


def xds_cluster(endpoint: str) -> dict[str, Any]:
    """The control-plane cluster: ``host:port``, ``[v6]:port``, optionally behind a
    ``grpc://``, ``http://`` or ``https://`` scheme, or ``unix:///path``.

    A comma-separated list (``a:15010,b:15010``) names several replicas of one control
    plane: one ``lb_endpoints`` entry each, so Envoy opens its ADS stream to one of them
    and, when that one goes away, reconnects to another (``appmesh-proxy`` fails over in
    list order). The replicas share one scheme; over TLS they share one host name too,
    because the cluster has one transport socket and so one SNI.
    """
    listed = [part.strip() for part in endpoint.split(",")]
    if not all(listed):
        raise ValueError(f"xds endpoint list has an empty entry: {endpoint!r}")
    if listed[0].startswith("unix:"):
        if len(listed) > 1:
            raise ValueError("a Unix-socket xds endpoint cannot be one of several")
        path = listed[0].removeprefix("unix:").removeprefix("//")
        return _pipe_cluster(names.XDS_CLUSTER, path)
    parsed = [_host_port(part) for part in listed]
    schemes = {scheme for scheme, _, _ in parsed}
    if len(schemes) > 1:
        raise ValueError(f"xds endpoints mix schemes ({', '.join(sorted(schemes))}): {endpoint!r}")
    hosts = [host for _, host, _ in parsed]
    cluster: dict[str, Any] = {
        "name": names.XDS_CLUSTER,
        "type": "STATIC" if all(is_ip(host) for host in hosts) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2_protocol_options(keepalive=XDS_KEEPALIVE),
        "load_assignment": _assignment(
            names.XDS_CLUSTER,
            *(
                {"socket_address": {"address": host, "port_value": port}}
                for _, host, port in parsed
            ),
        ),
    }
    if schemes == {"https"}:
        if len(set(hosts)) > 1:
            raise ValueError(
                "https xds endpoints must share one host name (one TLS SNI per cluster); "
                f"got {', '.join(sorted(set(hosts)))}"
            )
        context = {"sni": hosts[0]}
        cluster["transport_socket"] = types.extension(
            types.TLS_SOCKET_NAME, types.UPSTREAM_TLS, context
        )
    return cluster


def _host_port(endpoint: str) -> tuple[str, str, int]:
    """``[scheme://]host:port`` -> (scheme or "", host without brackets, port)."""
    scheme, _, rest = endpoint.rpartition("://")
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"xds endpoint must be host:port, got {endpoint!r}")
    return scheme, host.strip("[]"), int(port)


def _pipe_cluster(name: str, path: str) -> dict[str, Any]:
    """A gRPC cluster over a Unix socket, like ``static_cluster_sds_unix_socket``."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2_protocol_options(),
        "load_assignment": _assignment(name, {"pipe": {"path": path}}),
    }


def _layered_runtime(env: Env) -> dict[str, Any]:
    """The image's runtime opt-ins, each overridable by its environment variable."""
    static = {
        "envoy.features.enable_all_deprecated_features": True,
        "re2.max_program_size.error_level": 1000,
        "envoy.reloadable_features.http_set_tracing_decision_in_request_id": env.truthy(
            "APPMESH_SET_TRACING_DECISION", True
        ),
        "envoy.reloadable_features.no_extension_lookup_by_name": env.truthy(
            "ENVOY_NO_EXTENSION_LOOKUP_BY_NAME", True
        ),
        "envoy.reloadable_features.tcp_pool_idle_timeout": env.truthy(
            "ENVOY_ENABLE_TCP_POOL_IDLE_TIMEOUT", True
        ),
        "envoy.reloadable_features.sanitize_original_path": env.truthy(
            "ENVOY_SANITIZE_ORIGINAL_PATH", True
        ),
    }
    layers = [
        {"name": "static_layer_0", "static_layer": static},
        {"name": "admin_layer", "admin_layer": {}},
    ]
    return {"layers": layers}


def _assignment(name: str, *addresses: dict[str, Any]) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": address}} for address in addresses]
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}


def _add_optional(bootstrap: dict[str, Any], key: str, value: Any) -> None:
    if value:
        bootstrap[key] = value
