"""``appmesh-local bootstrap`` prints an Envoy Bootstrap that Envoy's own schema accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from envoy.config.grpc_credential.v3 import aws_iam_pb2

from envoy_bootstrap.validate import parse_bootstrap

ARN = "arn:aws:appmesh:us-east-1:123456789012:mesh/demo/virtualNode/blue"


def run_bootstrap(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("APPMESH_", "ENVOY_"))}
    environment.update(env)
    command = [sys.executable, "-m", "appmesh_api.cli", "bootstrap", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)


def test_bootstrap_points_ads_at_the_given_endpoint_and_parses():
    result = run_bootstrap("--resource-arn", ARN, "--xds-endpoint", "127.0.0.1:16000")
    assert result.returncode == 0, result.stderr
    bootstrap = json.loads(result.stdout)
    parse_bootstrap(bootstrap)
    assert bootstrap["node"]["id"] == ARN
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    xds = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds_cluster")
    address = json.dumps(xds["load_assignment"])
    assert '"port_value": 16000' in address and "127.0.0.1" in address
    assert bootstrap["admin"]["address"]["socket_address"]["port_value"] == 9901


def test_bootstrap_emits_every_replica_of_an_endpoint_list():
    result = run_bootstrap(
        "--resource-arn", ARN, "--xds-endpoint", "127.0.0.1:15010,127.0.0.1:15011,127.0.0.1:15012"
    )
    assert result.returncode == 0, result.stderr
    bootstrap = json.loads(result.stdout)
    parse_bootstrap(bootstrap)  # Envoy's Bootstrap proto
    xds = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds_cluster")
    (locality,) = xds["load_assignment"]["endpoints"]
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"] for e in locality["lb_endpoints"]
    ]
    assert ports == [15010, 15011, 15012]
    mixed = run_bootstrap("--resource-arn", ARN, "--xds-endpoint", "http://a:1,https://b:2")
    assert mixed.returncode == 2 and "mix schemes" in mixed.stderr
    assert "--resource-arn" not in mixed.stderr  # the identity was given: no hint about it


def test_bootstrap_reads_the_envoy_image_environment():
    result = run_bootstrap(
        APPMESH_VIRTUAL_NODE_NAME="mesh/demo/virtualNode/blue",
        ENVOY_ADMIN_ACCESS_PORT="9999",
        ENABLE_ENVOY_XRAY_TRACING="1",
        XRAY_DAEMON_PORT="2001",
    )
    assert result.returncode == 0, result.stderr
    bootstrap = json.loads(result.stdout)
    parse_bootstrap(bootstrap)
    assert bootstrap["node"]["id"] == "mesh/demo/virtualNode/blue"
    assert bootstrap["admin"]["address"]["socket_address"]["port_value"] == 9999
    assert "envoy.tracers.xray" in json.dumps(bootstrap["tracing"])
    assert "2001" in json.dumps(bootstrap)


def test_bootstrap_without_an_identity_says_what_to_set():
    result = run_bootstrap()
    assert result.returncode == 2
    assert "--resource-arn" in result.stderr


def test_like_appmesh_image_reaches_ads_with_google_grpc_tls_and_aws_iam():
    """The image's ADS service: no xds_cluster, Google gRPC over TLS, SigV4 per call."""
    result = run_bootstrap(
        "--resource-arn",
        ARN,
        "--like-appmesh-image",
        "--xds-endpoint",
        "appmesh-local.internal:15011",
        "--xds-ca-file",
        "/etc/appmesh-local/ads-ca.pem",
        AWS_REGION="eu-west-1",
    )
    assert result.returncode == 0, result.stderr
    bootstrap = json.loads(result.stdout)
    parsed = parse_bootstrap(bootstrap)  # Envoy's own Bootstrap proto, typed_config included
    (service,) = parsed.dynamic_resources.ads_config.grpc_services
    google = service.google_grpc
    assert google.target_uri == "appmesh-local.internal:15011"
    assert google.stat_prefix == "ads"
    roots = google.channel_credentials.ssl_credentials.root_certs
    assert roots.filename == "/etc/appmesh-local/ads-ca.pem"
    assert google.credentials_factory_name == "envoy.grpc_credentials.aws_iam"
    (plugin,) = google.call_credentials
    assert plugin.from_plugin.name == "envoy.grpc_credentials.aws_iam"
    iam = aws_iam_pb2.AwsIamConfig()
    assert plugin.from_plugin.typed_config.Unpack(iam)
    assert (iam.service_name, iam.region) == ("appmesh", "eu-west-1")
    assert google.channel_args.args["grpc.keepalive_time_ms"].int_value == 10000
    assert not service.HasField("envoy_grpc") and not list(service.initial_metadata)
    names = [c["name"] for c in bootstrap["static_resources"]["clusters"]]
    assert "xds_cluster" not in names
    assert bootstrap["node"]["id"] == ARN


def test_like_appmesh_image_defaults_to_the_images_trust_store_and_signing_name():
    result = run_bootstrap(
        "--resource-arn", ARN, "--like-appmesh-image", APPMESH_SIGNING_NAME="appmesh-preview"
    )
    assert result.returncode == 0, result.stderr
    google = json.loads(result.stdout)["dynamic_resources"]["ads_config"]["grpc_services"][0]
    google = google["google_grpc"]
    assert google["target_uri"] == "127.0.0.1:15011"
    assert google["channel_credentials"]["ssl_credentials"]["root_certs"] == {
        "filename": "/etc/pki/tls/cert.pem"
    }
    iam = google["call_credentials"][0]["from_plugin"]["typed_config"]
    assert iam["service_name"] == "appmesh-preview"
