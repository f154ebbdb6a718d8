"""ADS as App Mesh's own Envoy image reached it: Google gRPC, TLS, and SigV4 per call.

Source: amazon-ecs-service-connect-agent ``agent/envoy_bootstrap/envoy_bootstrap.go``
(``buildRegionalAdsGrpcService``). The image gave Envoy no ``xds_cluster``: its ADS
service is ``google_grpc`` to ``APPMESH_XDS_ENDPOINT`` (default
``appmesh-envoy-management.<region>.amazonaws.com:443``) with SSL channel credentials
trusting ``/etc/pki/tls/cert.pem`` and the ``envoy.grpc_credentials.aws_iam`` call
credentials, which sign every call for ``APPMESH_SIGNING_NAME`` (default ``appmesh``,
``appmesh-preview`` with ``APPMESH_PREVIEW``) in the task's region with the task's AWS
credentials. ``appmesh-local bootstrap --like-appmesh-image`` prints it pointed at
appmesh-local's TLS ADS port, so a team can check what its unchanged Envoy will send.
"""

from __future__ import annotations

from typing import Any

from envoy_bootstrap.envvars import Env

IMAGE_ROOT_CERTS = "/etc/pki/tls/cert.pem"
AWS_IAM = "envoy.grpc_credentials.aws_iam"
AWS_IAM_CONFIG = "type.googleapis.com/envoy.config.grpc_credential.v3.AwsIamConfig"
#: The image's keepalive, reconnect and connection-age settings for the ADS channel.
CHANNEL_ARGS = {
    "grpc.http2.max_pings_without_data": 0,
    "grpc.keepalive_time_ms": 10000,
    "grpc.keepalive_timeout_ms": 20000,
    "grpc.initial_reconnect_backoff_ms": 10000,
    "grpc.max_connection_age_ms": 2400000,
    "grpc.max_connection_age_grace_ms": 5000,
}


def signing_name(env: Env) -> str:
    """The service the call credentials sign for, as the image chose it."""
    explicit = env.get("APPMESH_SIGNING_NAME")
    if explicit:
        return explicit
    return "appmesh-preview" if env.truthy("APPMESH_PREVIEW") else "appmesh"


def image_ads_service(env: Env, endpoint: str, root_certs: str) -> dict[str, Any]:
    """The image's ADS ``GrpcService``: Google gRPC to ``endpoint`` over TLS, signed."""
    target = endpoint.rpartition("://")[2].rstrip("/")
    host, _, port = target.rpartition(":")
    if endpoint.startswith("unix:") or "," in target or not host or not port.isdigit():
        raise ValueError(f"App Mesh's image reached ADS at one HOST:PORT, got {endpoint!r}")
    region = env.first("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
    iam = {"@type": AWS_IAM_CONFIG, "service_name": signing_name(env), "region": region}
    return {
        "google_grpc": {
            "target_uri": target,
            "stat_prefix": "ads",
            "channel_credentials": {"ssl_credentials": {"root_certs": {"filename": root_certs}}},
            "credentials_factory_name": AWS_IAM,
            "call_credentials": [{"from_plugin": {"name": AWS_IAM, "typed_config": iam}}],
            "channel_args": {"args": {name: {"int_value": v} for name, v in CHANNEL_ARGS.items()}},
        }
    }
